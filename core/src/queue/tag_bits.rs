//! A set of tags, inline: one bit for each of the most tags a queue can have, so that a queue
//! can mark tags without allocating.

use crate::abi::io::UBLK_MAX_QUEUE_DEPTH;

const WORDS: usize = UBLK_MAX_QUEUE_DEPTH as usize / 64;

/// A set of tags (`0..4096`), 512 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct TagBits([u64; WORDS]);

impl TagBits {
    pub(crate) const EMPTY: TagBits = TagBits([0; WORDS]);

    fn at(tag: u16) -> Option<(usize, u64)> {
        let i = usize::from(tag);
        (i < WORDS * 64).then(|| (i / 64, 1u64 << (i % 64)))
    }

    /// Adds `tag`; a tag beyond the set's range is ignored (no queue has one).
    pub(crate) fn insert(&mut self, tag: u16) {
        if let Some((w, bit)) = Self::at(tag) {
            self.0[w] |= bit;
        }
    }

    /// Removes `tag`; true if it was in the set.
    pub(crate) fn take(&mut self, tag: u16) -> bool {
        match Self::at(tag) {
            Some((w, bit)) => {
                let had = self.0[w] & bit != 0;
                self.0[w] &= !bit;
                had
            }
            None => false,
        }
    }

    /// True if `tag` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, tag: u16) -> bool {
        Self::at(tag).is_some_and(|(w, bit)| self.0[w] & bit != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_go_in_and_out_one_at_a_time() {
        let mut set = TagBits::EMPTY;
        for tag in [0, 63, 64, 4095] {
            assert!(!set.contains(tag));
            set.insert(tag);
            assert!(set.contains(tag));
        }
        assert!(!set.contains(1) && !set.contains(65));
        assert!(set.take(64));
        assert!(!set.take(64), "taken once");
        assert!(set.contains(63) && set.contains(4095));
        // Out of range: ignored, never a panic.
        set.insert(u16::MAX);
        assert!(!set.contains(u16::MAX) && !set.take(u16::MAX));
    }
}
