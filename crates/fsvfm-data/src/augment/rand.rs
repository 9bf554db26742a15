//! The few distributions the augmentations draw from, on any `RngCore` (callers pass a
//! `fsvfm_masking::rng_for_sample` ChaCha stream so a run and its resume draw the same values).
//! Own implementations rather than `rand_distr`, whose algorithms may change between releases.

use rand_core::RngCore;

/// Draws on top of an `RngCore`.
pub struct Draw<'a> {
    rng: &'a mut dyn RngCore,
}

impl std::fmt::Debug for Draw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Draw")
    }
}

impl<'a> Draw<'a> {
    /// Wraps `rng`.
    pub fn new(rng: &'a mut dyn RngCore) -> Self {
        Self { rng }
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform integer in `[0, n)` (Lemire's multiply-and-reject); 0 when `n == 0`.
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = self.rng.next_u32() as u64 * n as u64;
            if (m as u32) >= threshold {
                return (m >> 32) as u32;
            }
        }
    }

    /// Uniform integer in `[lo, hi]` (Python's `random.randint`).
    pub fn int_incl(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u32) as i64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Gamma(shape, 1) by Marsaglia–Tsang (with the `U^(1/a)` boost for shape < 1).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = 1.0 - self.unit();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = 1.0 - self.unit();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// Beta(a, b) as `X / (X + Y)` with `X ~ Γ(a)`, `Y ~ Γ(b)`.
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        x / (x + y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct SplitMix(u64);
    impl RngCore for SplitMix {
        fn next_u32(&mut self) -> u32 {
            (self.next_u64() >> 32) as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            for b in dst {
                *b = self.next_u32() as u8;
            }
        }
    }

    fn moments(n: usize, mut f: impl FnMut() -> f64) -> (f64, f64) {
        let xs: Vec<f64> = (0..n).map(|_| f()).collect();
        let m = xs.iter().sum::<f64>() / n as f64;
        let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n as f64;
        (m, v)
    }

    /// Sample moments against the closed forms; 200k draws put the standard error of the mean
    /// near 1e-3 of the scale, so the 1e-2 tolerances fail only for a wrong sampler.
    #[test]
    fn distributions_have_their_moments() {
        let mut rng = SplitMix(7);
        let mut d = Draw::new(&mut rng);
        let (m, v) = moments(200_000, || d.normal());
        assert!(m.abs() < 1e-2 && (v - 1.0).abs() < 1e-2, "normal {m} {v}");
        for (a, b) in [(0.8, 0.8), (1.0, 1.0), (2.5, 0.5)] {
            let (m, v) = moments(200_000, || d.beta(a, b));
            let (em, ev) = (a / (a + b), a * b / ((a + b).powi(2) * (a + b + 1.0)));
            assert!(
                (m - em).abs() < 1e-2 && (v - ev).abs() < 1e-2,
                "beta({a},{b}) {m} {v}"
            );
        }
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[d.below(7) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (c as i64 - 10_000).abs() < 500),
            "{counts:?}"
        );
    }
}
