//! Numeric flags checked in one place, when they are parsed: counts within a range and real
//! numbers that are finite and within theirs, the range in the message. A count's upper bound is
//! what keeps an absurd value (`--frames 10000000000`, `--threads 100000`) from becoming an
//! allocation that aborts or a thread pool that never starts.

/// A whole number in `LO..=HI`.
pub fn count<const LO: u64, const HI: u64>(s: &str) -> Result<usize, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number (expected {LO}..={HI})"))?;
    if !(LO..=HI).contains(&v) {
        return Err(format!("{v} is out of range: expected {LO}..={HI}"));
    }
    usize::try_from(v).map_err(|_| format!("{v} does not fit this machine's word size"))
}

fn real(s: &str, ok: impl Fn(f64) -> bool, range: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number (expected {range})"))?;
    if !v.is_finite() || !ok(v) {
        return Err(format!(
            "{s} is out of range: expected a finite number {range}"
        ));
    }
    Ok(v)
}

/// A learning rate: finite, in `(0, 10]`.
pub fn learning_rate(s: &str) -> Result<f64, String> {
    real(s, |v| v > 0.0 && v <= 10.0, "in (0, 10]")
}

/// A finite number `≥ 0` (weight decay, warm-up epochs, mixing strengths).
pub fn non_negative(s: &str) -> Result<f64, String> {
    real(s, |v| v >= 0.0, "≥ 0")
}

/// A fraction in `[0, 1]` (probabilities, smoothing, drop-path rates).
pub fn unit(s: &str) -> Result<f64, String> {
    real(s, |v| (0.0..=1.0).contains(&v), "in [0, 1]")
}

/// A fraction in `[0, 1)` (a validation split, a mask ratio).
pub fn unit_open(s: &str) -> Result<f64, String> {
    real(s, |v| (0.0..1.0).contains(&v), "in [0, 1)")
}

/// A positive finite number (a crop scale).
pub fn positive(s: &str) -> Result<f64, String> {
    real(s, |v| v > 0.0, "> 0")
}

/// The thread counts `--threads` takes: up to 1024 (rayon starts every thread up front).
pub const THREADS: fn(&str) -> Result<usize, String> = count::<1, 1024>;
/// `--frames`: 1 to 100 000 frames a video.
pub const FRAMES: fn(&str) -> Result<usize, String> = count::<1, 100_000>;
/// Batch sizes of inference commands: 1 to 4096.
pub const BATCH: fn(&str) -> Result<usize, String> = count::<1, 4096>;
/// Batch sizes of training commands: 1 to 65 536 (gradient accumulation reaches larger ones).
pub const TRAIN_BATCH: fn(&str) -> Result<usize, String> = count::<1, 65_536>;
/// Epoch counts: 1 to 100 000.
pub const EPOCHS: fn(&str) -> Result<usize, String> = count::<1, 100_000>;
/// Iteration counts (`bench --iters`, `fas --iterations`): 1 to 100 million.
pub const ITERATIONS: fn(&str) -> Result<usize, String> = count::<1, 100_000_000>;
/// Bootstrap resamples: 1 to 1 million.
pub const RESAMPLES: fn(&str) -> Result<usize, String> = count::<1, 1_000_000>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outside_their_range_are_refused_with_the_range() {
        assert_eq!(FRAMES("32"), Ok(32));
        assert_eq!(
            FRAMES("10000000000").unwrap_err(),
            "10000000000 is out of range: expected 1..=100000"
        );
        assert!(FRAMES("0").unwrap_err().contains("1..=100000"));
        assert!(THREADS("100000").unwrap_err().contains("1..=1024"));
        assert!(RESAMPLES("-3").unwrap_err().contains("not a whole number"));
        assert_eq!(count::<0, 5>("0"), Ok(0));
    }

    #[test]
    fn reals_must_be_finite_and_in_range() {
        assert_eq!(learning_rate("1.5e-4"), Ok(1.5e-4));
        for bad in ["nan", "inf", "-1", "0", "11"] {
            let e = learning_rate(bad).unwrap_err();
            assert!(e.contains("finite number in (0, 10]"), "{bad}: {e}");
        }
        assert!(non_negative("-0.1").is_err() && non_negative("0").is_ok());
        assert!(unit("1").is_ok() && unit("1.01").is_err());
        assert!(unit_open("1").is_err() && unit_open("0.9").is_ok());
        assert!(positive("NaN").is_err() && positive("1.3").is_ok());
        assert!(non_negative("x").unwrap_err().contains("not a number"));
    }
}
