//! Byte-level mutations of seed files, in the manner of AFL's havoc stage: bit flips, boundary
//! values written over bytes and little-endian integers, ASCII numbers replaced by extreme ones,
//! chunks deleted, duplicated or spliced in from another seed, and truncation.

/// SplitMix64: small, fast, and the same sequence on every platform (a case is its seed file,
/// campaign seed and index).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// Values at the edges of integer types and of the sizes parsers compute with.
const INTS: [u64; 14] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 40,
    i64::MAX as u64,
    u64::MAX,
];

/// ASCII numbers that break naive parsers: overflow, NaN, infinities, negatives, subnormals.
const NUMBERS: [&str; 16] = [
    "0",
    "-1",
    "-0",
    "1e308",
    "1e309",
    "-1e309",
    "1e-400",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999999",
    "3e38",
    "0.5",
];

/// Bytes that carry structure in the text formats (JSON, TOML, CSV, npy headers, pickle).
const TOKENS: [&[u8]; 18] = [
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"=",
    b"\n",
    b"\r\n",
    b"'",
    b"(",
    b")",
    b"null",
    b"true",
    b"\\u0000",
    b"\xff\xfe",
    b"\x00",
];

/// `input` with 1 to 8 random mutations applied (fewer more often); `other` is a second seed
/// for splicing. The result is at most `max_len` bytes.
pub fn mutate(input: &[u8], other: &[u8], rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(8).min(rng.below(8));
    for _ in 0..rounds {
        mutate_once(&mut out, other, rng);
        out.truncate(max_len);
    }
    out
}

fn mutate_once(b: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    if b.is_empty() {
        let token: &[u8] = TOKENS[rng.below(TOKENS.len())];
        b.extend_from_slice(token);
        return;
    }
    let at = rng.below(b.len());
    match rng.below(10) {
        0 => b[at] ^= 1 << rng.below(8),
        1 => b[at] = *rng.pick(&INTS) as u8,
        2 => {
            let width = *rng.pick(&[2usize, 4, 8]);
            let v = rng.pick(&INTS).to_le_bytes();
            let end = (at + width).min(b.len());
            b[at..end].copy_from_slice(&v[..end - at]);
        }
        3 => replace_number(b, rng),
        4 => {
            let end = (at + 1 + rng.below(64.min(b.len() - at))).min(b.len());
            b.drain(at..end);
        }
        5 => {
            let len = 1 + rng.below(64.min(b.len() - at));
            let chunk = b[at..at + len].to_vec();
            let to = rng.below(b.len() + 1);
            b.splice(to..to, chunk);
        }
        6 => {
            let tok = *rng.pick(&TOKENS);
            b.splice(at..at, tok.iter().copied());
        }
        7 => b.truncate(at),
        8 if !other.is_empty() => {
            let from = rng.below(other.len());
            b.truncate(at);
            b.extend_from_slice(&other[from..]);
        }
        _ => {
            // A random run of bytes over the input.
            let len = 1 + rng.below(16);
            for i in at..(at + len).min(b.len()) {
                b[i] = rng.next_u64() as u8;
            }
        }
    }
}

/// Replaces one run of ASCII digits (with its sign, point and exponent) by one of [`NUMBERS`].
fn replace_number(b: &mut Vec<u8>, rng: &mut Rng) {
    let starts: Vec<usize> = (0..b.len())
        .filter(|&i| b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return;
    }
    let start = *rng.pick(&starts);
    let end = (start..b.len())
        .find(|&i| !(b[i].is_ascii_digit() || matches!(b[i], b'.' | b'e' | b'E' | b'+' | b'-')))
        .unwrap_or(b.len());
    let start = if start > 0 && b[start - 1] == b'-' {
        start - 1
    } else {
        start
    };
    b.splice(start..end, rng.pick(&NUMBERS).bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_bounded_and_change_the_input() {
        let seed = br#"{"shape": (20, 17, 3), "descr": "<f4"}"#;
        let run = |s| {
            let mut r = Rng::new(s);
            (0..200)
                .map(|_| mutate(seed, b"other seed", &mut r, 64))
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        assert!(a.iter().all(|m| m.len() <= 64));
        let changed = a.iter().filter(|m| m.as_slice() != seed.as_slice()).count();
        assert!(changed > 180, "{changed} of 200 changed");
        // Number replacement reaches the header's numbers.
        assert!(
            a.iter()
                .any(|m| m.windows(3).any(|w| w == b"nan" || w == b"1e3"))
        );
    }
}
