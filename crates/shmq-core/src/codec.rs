//! Message framing: what a slot's `tag` says about its bytes, defined here
//! once for every binding (the JS one gets them generated, `lib/constants.ts`);
//! this side checks that a tag and length read from shared memory make sense.

/// Raw bytes (a Node Buffer).
pub const TAG_BUFFER: u32 = 0;
/// Tags 1..=11: arrays of these elements, by name and size in bytes (the
/// JavaScript typed arrays of those names; NumPy dtypes of that kind).
pub const TYPED_ARRAYS: [(&str, u64); 11] = [
    ("Uint8Array", 1),
    ("Uint8ClampedArray", 1),
    ("Int8Array", 1),
    ("Uint16Array", 2),
    ("Int16Array", 2),
    ("Uint32Array", 4),
    ("Int32Array", 4),
    ("Float32Array", 4),
    ("Float64Array", 8),
    ("BigInt64Array", 8),
    ("BigUint64Array", 8),
];
pub const TAG_DATAVIEW: u32 = 12;
pub const TAG_ARRAYBUFFER: u32 = 13;
/// UTF-8 bytes, delivered as a string.
pub const TAG_STRING: u32 = 14;
/// A value serialized by V8's `serialize` (a Node.js sender).
pub const TAG_V8: u32 = 15;
/// A value pickled (protocol 5) by a Python sender.
pub const TAG_PICKLE: u32 = 16;
/// An N-dimensional array (NumPy's): a header, then its elements in C
/// order. Header, little-endian: u32 element tag (1..=11, `TYPED_ARRAYS`),
/// u32 ndim, then ndim u64 dimensions: `ndarray_header_len(ndim)` bytes, a
/// multiple of 8, so the elements stay aligned. A runtime without
/// N-dimensional arrays reads the elements as the 1-D typed array.
pub const TAG_NDARRAY: u32 = 17;

/// Bytes of an ndarray header with `ndim` dimensions.
pub const fn ndarray_header_len(ndim: usize) -> usize {
    8 + 8 * ndim
}

/// True if `len` bytes can be a message with this tag.
pub fn valid(tag: u32, len: u64) -> bool {
    let element = match tag {
        1..=11 => TYPED_ARRAYS[tag as usize - 1].1,
        TAG_BUFFER | TAG_DATAVIEW | TAG_ARRAYBUFFER | TAG_STRING | TAG_V8 | TAG_PICKLE => 1,
        // The header is checked by the reader (it lies in the message).
        TAG_NDARRAY => return len >= ndarray_header_len(0) as u64,
        _ => return false,
    };
    len.is_multiple_of(element)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_tags_and_ragged_lengths() {
        assert!(valid(0, 7));
        assert!(valid(15, 0));
        assert!(valid(16, 3));
        assert!(valid(9, 16));
        assert!(!valid(9, 12));
        assert!(valid(17, 8));
        assert!(!valid(17, 4));
        assert!(!valid(18, 8));
        assert!(!valid(u32::MAX, 0));
    }
}
