//! A fixed-universe bitset of patch indices, and the word-level helpers the
//! masking loops use on reusable buffers (no allocation per sample).

/// A set of patch indices in `0..num_patches`, stored as bits (patch `p` is bit
/// `p % 64` of word `p / 64`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PatchSet {
    words: Vec<u64>,
    num_patches: usize,
}

impl PatchSet {
    /// The empty set over `num_patches` patches.
    pub fn empty(num_patches: usize) -> Self {
        Self {
            words: vec![0; words_for(num_patches)],
            num_patches,
        }
    }

    /// The set of patches whose entry in `mask` is non-zero (`mask.len()` patches).
    pub fn from_mask(mask: &[u8]) -> Self {
        let mut s = Self::empty(mask.len());
        for (p, &m) in mask.iter().enumerate() {
            if m != 0 {
                s.words[p / 64] |= 1 << (p % 64);
            }
        }
        s
    }

    /// The size of the universe (`P`).
    pub fn num_patches(&self) -> usize {
        self.num_patches
    }

    /// Number of patches in the set.
    pub fn count(&self) -> usize {
        count(&self.words)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Whether patch `p` is in the set (`false` for `p >= num_patches`).
    pub fn contains(&self, p: usize) -> bool {
        p < self.num_patches && self.words[p / 64] >> (p % 64) & 1 == 1
    }

    /// The patch indices in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        iter_ones(&self.words)
    }

    /// The set as a `[P]` 0/1 mask (1 = in the set).
    pub fn to_mask(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.num_patches];
        write_mask(&self.words, &mut out);
        out
    }

    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }

    pub(crate) fn from_words(words: Vec<u64>, num_patches: usize) -> Self {
        debug_assert_eq!(words.len(), words_for(num_patches));
        Self { words, num_patches }
    }
}

/// Number of `u64` words for `n` bits.
pub(crate) fn words_for(n: usize) -> usize {
    n.div_ceil(64)
}

/// Mask of the valid bits in the last word of an `n`-bit set.
pub(crate) fn last_word_mask(n: usize) -> u64 {
    match n % 64 {
        0 => u64::MAX,
        r => (1u64 << r) - 1,
    }
}

pub(crate) fn count(words: &[u64]) -> usize {
    words.iter().map(|w| w.count_ones() as usize).sum()
}

/// Appends the indices of the set bits, in increasing order, to `out`.
pub(crate) fn push_ones(words: &[u64], out: &mut Vec<u32>) {
    for (wi, &w) in words.iter().enumerate() {
        let mut w = w;
        while w != 0 {
            let b = w.trailing_zeros();
            out.push(wi as u32 * 64 + b);
            w &= w - 1;
        }
    }
}

pub(crate) fn iter_ones(words: &[u64]) -> impl Iterator<Item = usize> + '_ {
    words.iter().enumerate().flat_map(|(wi, &w)| {
        let mut w = w;
        std::iter::from_fn(move || {
            (w != 0).then(|| {
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                wi * 64 + b
            })
        })
    })
}

/// Writes the set as 0/1 bytes into `out` (`out.len()` = number of patches).
pub(crate) fn write_mask(words: &[u64], out: &mut [u8]) {
    for (chunk, &w) in out.chunks_mut(64).zip(words) {
        for (b, slot) in chunk.iter_mut().enumerate() {
            *slot = (w >> b & 1) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_counts_across_word_boundaries() {
        let mut mask = vec![0u8; 130];
        for p in [0, 5, 63, 64, 127, 128, 129] {
            mask[p] = 1;
        }
        let s = PatchSet::from_mask(&mask);
        assert_eq!(s.count(), 7);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![0, 5, 63, 64, 127, 128, 129]
        );
        assert_eq!(s.to_mask(), mask);
        assert!(s.contains(129) && !s.contains(130) && !s.contains(1));
        let mut idx = Vec::new();
        push_ones(s.words(), &mut idx);
        assert_eq!(idx, vec![0, 5, 63, 64, 127, 128, 129]);
        assert_eq!(last_word_mask(130), 0b11);
        assert_eq!(last_word_mask(128), u64::MAX);
    }
}
