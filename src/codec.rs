//! Message framing: what a slot's `tag` says about its bytes. The JavaScript
//! side owns the mapping between tags and JS types (`lib/codec.ts`); this side
//! checks that a tag and length read from shared memory make sense.
//!
//! Tags: 0 Buffer, 1..=11 the typed arrays (in `lib/codec.ts` order),
//! 12 DataView, 13 ArrayBuffer, 14 string, 15 `v8.serialize` output.

/// UTF-8 bytes, delivered as a JS string.
pub const TAG_STRING: u32 = 14;

/// Bytes per element for each tag (1 for byte-oriented ones).
const ELEMENT_SIZE: [u64; 16] = [1, 1, 1, 1, 2, 2, 4, 4, 4, 8, 8, 8, 1, 1, 1, 1];

/// True if `len` bytes can be a message with this tag.
pub fn valid(tag: u32, len: u64) -> bool {
    ELEMENT_SIZE
        .get(tag as usize)
        .is_some_and(|&size| len.is_multiple_of(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_tags_and_ragged_lengths() {
        assert!(valid(0, 7));
        assert!(valid(15, 0));
        assert!(valid(9, 16));
        assert!(!valid(9, 12));
        assert!(!valid(16, 8));
        assert!(!valid(u32::MAX, 0));
    }
}
