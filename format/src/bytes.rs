//! Little-endian field reading: the one place where ppyc decodes fixed-width integers from
//! bytes (the pack header and sections here, worker frames and marshal data in
//! `ppyc-compiler`, module images in the runtime).
//!
//! [`Cursor`] reads a sequence of fields and never panics: every read is bounds checked
//! and returns `None` past the end. The `*_at` functions read one field at an offset the
//! caller has already bounds checked (they panic otherwise, which the callers rule out).

/// Sequential little-endian reads over a byte slice.
#[derive(Clone, Debug)]
pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `data`.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// How many bytes have been read.
    #[must_use]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Whether every byte has been read.
    #[must_use]
    pub fn is_at_end(&self) -> bool {
        self.pos == self.data.len()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len())?;
        let chunk = &self.data[self.pos..end];
        self.pos = end;
        Some(chunk)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Some(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|a| a[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian `i32`.
    pub fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_le_bytes)
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A little-endian `i64`.
    pub fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }

    /// A `u32` length followed by that many bytes.
    pub fn blob(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
}

/// Appends `u32 length + bytes`; `None` if `bytes` is 4 GiB or more.
pub fn put_blob(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    let len = u32::try_from(bytes.len()).ok()?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Some(())
}

/// The `u16` at `at` (bounds checked by the caller).
#[inline]
#[must_use]
pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(array_at(b, at))
}

/// The `u32` at `at` (bounds checked by the caller).
#[inline]
#[must_use]
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array_at(b, at))
}

/// The `u64` at `at` (bounds checked by the caller).
#[inline]
#[must_use]
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array_at(b, at))
}

/// The `i64` at `at` (bounds checked by the caller).
#[inline]
#[must_use]
pub fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(array_at(b, at))
}

/// The `N` bytes at `at` (bounds checked by the caller).
#[inline]
#[must_use]
pub fn array_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_reads_and_stops_at_the_end() {
        let data = [1, 2, 0, 3, 0, 0, 0, 2, 0, 0, 0, b'a', b'b', 9];
        let mut c = Cursor::new(&data);
        assert_eq!(c.u8(), Some(1));
        assert_eq!(c.u16(), Some(2));
        assert_eq!(c.u32(), Some(3));
        assert_eq!(c.blob(), Some(&b"ab"[..]));
        assert_eq!(c.remaining(), 1);
        assert_eq!(c.u16(), None);
        assert_eq!(c.position(), 13, "a failed read consumes nothing");
        assert_eq!(c.u8(), Some(9));
        assert!(c.is_at_end());
        assert_eq!(Cursor::new(&[0xff, 0xff, 0xff, 0xff]).blob(), None);
        let mut out = Vec::new();
        put_blob(&mut out, b"xyz").unwrap();
        assert_eq!(Cursor::new(&out).blob(), Some(&b"xyz"[..]));
        assert_eq!(u32_at(&out, 0), 3);
    }
}
