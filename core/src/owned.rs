//! Copies of values that leave the wire or a loader, owning exactly their own memory.
//!
//! Decoded `bytes` fields and RESP arguments are slices of a connection's receive buffer, and a
//! loader may hand out a slice of a larger buffer: a stored key or value kept as such a slice
//! would keep the whole buffer alive (kilobytes per entry). Every key and value is therefore
//! copied once, where it leaves the wire or the loader; values through [`owned`].
//!
//! A small copy keeps its reference count in the same allocation as its bytes, right before
//! them. A copy made with `Bytes::copy_from_slice` gets its count only when first cloned, in
//! an allocation of its own made then, so every later read of a stored value (each clones it)
//! touched two unrelated cache lines, the count's and the bytes', both cold when the store is
//! larger than the cache: the clone showed as 3 % of a node's CPU per get in a profile of the
//! uniform 100 B GET benchmark. Large copies (over [`INLINE_MAX`] bytes) keep the plain
//! layout, where one more line matters less. Only values go through here: a stored key is
//! compared, not cloned, on a read, and a plain copy of it allocates no count at all.

use bytes::Bytes;

/// Largest copy whose bytes share an allocation with its reference count.
pub const INLINE_MAX: usize = 128;

/// A copy of `bytes` that owns exactly its own memory (see the module docs). A small copy's
/// inline buffer is its length rounded up to 16 bytes: at most 15 bytes more than the bytes,
/// less than the separate 24-byte count a plain copy allocates at its first clone.
pub fn owned(bytes: &[u8]) -> Bytes {
    match bytes.len().div_ceil(16) {
        0 => Bytes::new(),
        1 => inline::<16>(bytes),
        2 => inline::<32>(bytes),
        3 => inline::<48>(bytes),
        4 => inline::<64>(bytes),
        5 => inline::<80>(bytes),
        6 => inline::<96>(bytes),
        7 => inline::<112>(bytes),
        8 => inline::<INLINE_MAX>(bytes),
        _ => Bytes::copy_from_slice(bytes),
    }
}

/// Up to `N` bytes held inline, so that `Bytes::from_owner` puts them in the one allocation
/// that also holds the reference count.
struct Inline<const N: usize> {
    len: usize,
    bytes: [u8; N],
}

impl<const N: usize> AsRef<[u8]> for Inline<N> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// `bytes` (at most `N` long) in an [`Inline`] of size class `N`.
fn inline<const N: usize>(bytes: &[u8]) -> Bytes {
    debug_assert!(bytes.len() <= N);
    let len = bytes.len().min(N);
    let mut inline = Inline { len, bytes: [0; N] };
    inline.bytes[..len].copy_from_slice(&bytes[..len]);
    Bytes::from_owner(inline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_of_every_size_class_and_its_edges_hold_exactly_the_bytes() {
        for len in [
            0, 1, 31, 32, 33, 64, 65, 100, 128, 129, 255, 256, 257, 4_096,
        ] {
            let source: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let copy = owned(&source);
            assert_eq!(copy.as_ref(), &source[..], "len {len}");
            let clone = copy.clone();
            drop(copy);
            assert_eq!(clone.as_ref(), &source[..], "a clone outlives the original");
        }
    }

    #[test]
    fn a_copy_does_not_alias_the_buffer_it_came_from() {
        let mut source = vec![7u8; 100];
        let copy = owned(&source);
        source.fill(0);
        assert!(copy.iter().all(|&b| b == 7));
        assert_ne!(copy.as_ptr(), source.as_ptr());
    }
}
