//! Binary encoding with Octez `data-encoding` rules (wire spec §1).
//!
//! Big-endian integers, `u32`-prefixed strings, bytes and lists, 1- and
//! 2-byte union tags, `check_size`, and booleans written `0xFF` and read as
//! any non-zero byte. A [`Reader`] works on a borrowed slice and never
//! allocates more than what it is asked to copy out of that slice, so a
//! decoder's allocations are bounded by its input length.

use thiserror::Error;

/// Why a value could not be decoded (Octez's `Data_encoding.Binary.read_error`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("not enough data")]
    NotEnoughData,
    /// The value ended before its input (or its sized context) did.
    #[error("extra bytes: {0} left over")]
    ExtraBytes(usize),
    /// A union tag that no case matches.
    #[error("unexpected tag {0}")]
    UnexpectedTag(u16),
    /// A `check_size` bound, or a length prefix larger than allowed.
    #[error("size limit exceeded: {size} > {limit}")]
    SizeLimitExceeded {
        /// The size the input announced.
        size: usize,
        /// The bound it had to respect.
        limit: usize,
    },
    /// A list with more elements than its `max_length`.
    #[error("list too long: more than {max} elements")]
    ListTooLong {
        /// The maximal number of elements.
        max: usize,
    },
    /// An integer outside of its allowed range.
    #[error("invalid int {value} (expected {min}..={max})")]
    InvalidInt {
        /// Smallest allowed value.
        min: i64,
        /// The value read.
        value: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// A point that does not parse (Octez raises it from `of_string_exn`).
    #[error("invalid point {0:?}")]
    InvalidPoint(String),
    /// A string that must be UTF-8 and is not.
    #[error("invalid UTF-8 string")]
    InvalidUtf8,
    /// A value the encoding's own check refuses (Octez: a `conv` whose
    /// function raises, e.g. an unknown protocol environment version).
    #[error("invalid value: {0}")]
    InvalidValue(&'static str),
}

impl DecodeError {
    /// The constructor of Octez's `Data_encoding.Binary.read_error` that
    /// Octez's stream reader raises for this error: `Not_enough_data`,
    /// `Extra_bytes`, `Unexpected_tag`, `Size_limit_exceeded`,
    /// `List_too_long`, `Invalid_int`, `Invalid_string` or
    /// `Exception_raised_in_user_function`.
    pub fn octez_class(&self) -> &'static str {
        match self {
            DecodeError::NotEnoughData => "Not_enough_data",
            DecodeError::ExtraBytes(_) => "Extra_bytes",
            DecodeError::UnexpectedTag(_) => "Unexpected_tag",
            DecodeError::SizeLimitExceeded { .. } => "Size_limit_exceeded",
            DecodeError::ListTooLong { .. } => "List_too_long",
            DecodeError::InvalidInt { .. } => "Invalid_int",
            DecodeError::InvalidUtf8 => "Invalid_string",
            DecodeError::InvalidPoint(_) | DecodeError::InvalidValue(_) => {
                "Exception_raised_in_user_function"
            }
        }
    }
}

/// Why a value could not be encoded (Octez's `Encoding_error`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded value exceeds a `check_size` bound or a length field.
    #[error("size limit exceeded: {size} > {limit}")]
    SizeLimitExceeded {
        /// The encoded size.
        size: usize,
        /// The bound it had to respect.
        limit: usize,
    },
    /// A list with more elements than its `max_length`.
    #[error("list too long: {len} > {max}")]
    ListTooLong {
        /// Number of elements.
        len: usize,
        /// The maximal number of elements.
        max: usize,
    },
    /// A union tag that the encoding does not allow for this value (e.g. an
    /// application message tag below `0x10`).
    #[error("invalid tag {0}")]
    InvalidTag(u16),
    /// A value the encoding's own check refuses (e.g. an unknown protocol
    /// environment version).
    #[error("invalid value: {0}")]
    InvalidValue(&'static str),
}

/// The largest length a `dynamic_size` (`Uint30`) field may announce.
pub const MAX_DYNAMIC_SIZE: usize = (1 << 30) - 1;

/// A cursor over a byte slice with the data-encoding read primitives.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over the whole of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails with [`DecodeError::ExtraBytes`] unless everything was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::ExtraBytes(n)),
        }
    }

    /// The next `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::NotEnoughData);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// All remaining bytes (`Variable.bytes`).
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// Exactly `N` raw bytes (`Fixed.bytes N`).
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// `uint8`.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.fixed::<1>()?[0])
    }

    /// `uint16`, big-endian.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.fixed()?))
    }

    /// `int16`, big-endian.
    pub fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.fixed()?))
    }

    /// A raw `u32`, big-endian.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.fixed()?))
    }

    /// `int32`, big-endian.
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.fixed()?))
    }

    /// `int64`, big-endian.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.fixed()?))
    }

    /// `bool`: any non-zero byte is true, as Octez reads it.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.u8()? != 0)
    }

    /// The length field of a `dynamic_size` (`Uint30`) value. Octez rejects
    /// only values that are negative as an `int32`; the bytes must be present.
    pub fn dynamic_len(&mut self) -> Result<usize, DecodeError> {
        let n = self.i32()?;
        if n < 0 {
            return Err(DecodeError::InvalidInt {
                min: 0,
                value: i64::from(n),
                max: i64::from(i32::MAX),
            });
        }
        let n = n as usize;
        if n > self.remaining() {
            return Err(DecodeError::NotEnoughData);
        }
        Ok(n)
    }

    /// A `dynamic_size` value: a sub-reader over exactly the announced bytes.
    /// The caller must [`finish`](Reader::finish) it.
    pub fn dynamic(&mut self) -> Result<Reader<'a>, DecodeError> {
        let n = self.dynamic_len()?;
        Ok(Reader::new(self.take(n)?))
    }

    /// `bytes` / `string`: a `u32` length, then that many bytes.
    pub fn dynamic_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.dynamic_len()?;
        self.take(n)
    }

    /// `check_size limit (string)`: the limit counts the 4-byte prefix.
    pub fn bounded_bytes(&mut self, limit: usize) -> Result<&'a [u8], DecodeError> {
        let mut peek = self.clone();
        let n = peek.i32()?;
        if n < 0 || (n as usize).saturating_add(4) > limit {
            return Err(DecodeError::SizeLimitExceeded {
                size: (n as u32 as usize).saturating_add(4),
                limit,
            });
        }
        self.dynamic_bytes()
    }
}

/// Appends data-encoding primitives to a `Vec<u8>`.
pub trait WriteExt {
    /// `uint8`.
    fn put_u8(&mut self, v: u8);
    /// `uint16`, big-endian.
    fn put_u16(&mut self, v: u16);
    /// `int16`, big-endian.
    fn put_i16(&mut self, v: i16);
    /// A raw `u32`, big-endian.
    fn put_u32(&mut self, v: u32);
    /// `int32`, big-endian.
    fn put_i32(&mut self, v: i32);
    /// `int64`, big-endian.
    fn put_i64(&mut self, v: i64);
    /// `bool`, written `0xFF` / `0x00` as Octez does.
    fn put_bool(&mut self, v: bool);
    /// `bytes` / `string`: `u32` length then the bytes.
    fn put_dynamic_bytes(&mut self, b: &[u8]) -> Result<(), EncodeError>;
    /// A `dynamic_size` value: reserves the `u32` length, runs `f`, then
    /// back-patches the length with what `f` wrote.
    fn put_dynamic<E>(&mut self, f: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E>
    where
        E: From<EncodeError>;
}

impl WriteExt for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_i16(&mut self, v: i16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_i32(&mut self, v: i32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_bool(&mut self, v: bool) {
        self.push(if v { 0xFF } else { 0x00 });
    }
    fn put_dynamic_bytes(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        if b.len() > MAX_DYNAMIC_SIZE {
            return Err(EncodeError::SizeLimitExceeded {
                size: b.len(),
                limit: MAX_DYNAMIC_SIZE,
            });
        }
        self.put_u32(b.len() as u32);
        self.extend_from_slice(b);
        Ok(())
    }
    fn put_dynamic<E>(&mut self, f: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E>
    where
        E: From<EncodeError>,
    {
        let at = self.len();
        self.put_u32(0);
        f(self)?;
        let n = self.len() - at - 4;
        if n > MAX_DYNAMIC_SIZE {
            self.truncate(at);
            return Err(EncodeError::SizeLimitExceeded {
                size: n,
                limit: MAX_DYNAMIC_SIZE,
            }
            .into());
        }
        self[at..at + 4].copy_from_slice(&(n as u32).to_be_bytes());
        Ok(())
    }
}

/// A value with a binary encoding.
pub trait Encode {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// The encoding of `self` in a new buffer.
    fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// A value that can be read back from its binary encoding.
pub trait Decode: Sized {
    /// Reads one value from `r`, leaving what follows it.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Reads one value that must span the whole of `bytes`.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian() {
        let mut out = Vec::new();
        out.put_u16(0x0102);
        out.put_i16(-2);
        out.put_u32(0x0304_0506);
        out.put_i64(-1);
        assert_eq!(hex::encode(&out), "0102fffe03040506ffffffffffffffff");
        let mut r = Reader::new(&out);
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert_eq!(r.i16().unwrap(), -2);
        assert_eq!(r.u32().unwrap(), 0x0304_0506);
        assert_eq!(r.i64().unwrap(), -1);
        r.finish().unwrap();
    }

    #[test]
    fn bool_is_written_ff_and_read_as_any_non_zero() {
        let mut out = Vec::new();
        out.put_bool(true);
        out.put_bool(false);
        assert_eq!(out, [0xFF, 0x00]);
        let mut r = Reader::new(&[0x01, 0x00, 0x80]);
        assert!(r.bool().unwrap());
        assert!(!r.bool().unwrap());
        assert!(r.bool().unwrap());
    }

    #[test]
    fn short_input_is_not_enough_data() {
        assert_eq!(Reader::new(&[1]).u16(), Err(DecodeError::NotEnoughData));
        assert_eq!(
            Reader::new(&[0, 0, 0, 5, 1, 2]).dynamic_bytes(),
            Err(DecodeError::NotEnoughData)
        );
    }

    #[test]
    fn negative_dynamic_size_is_an_invalid_int() {
        let r = Reader::new(&[0x80, 0, 0, 0]).dynamic_bytes();
        assert!(matches!(r, Err(DecodeError::InvalidInt { .. })));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A 1 GiB announcement over 4 bytes fails before any allocation.
        let r = Reader::new(&[0x3F, 0xFF, 0xFF, 0xFF]).dynamic_bytes();
        assert_eq!(r, Err(DecodeError::NotEnoughData));
    }

    #[test]
    fn leftover_bytes_are_extra_bytes() {
        let mut r = Reader::new(&[0, 1, 2]);
        r.u16().unwrap();
        assert_eq!(r.finish(), Err(DecodeError::ExtraBytes(1)));
    }

    #[test]
    fn bounded_bytes_counts_the_prefix() {
        let mut ok = vec![];
        ok.put_dynamic_bytes(&[b'a'; 47]).unwrap();
        assert_eq!(Reader::new(&ok).bounded_bytes(51).unwrap().len(), 47);
        let mut big = vec![];
        big.put_dynamic_bytes(&[b'a'; 48]).unwrap();
        assert!(matches!(
            Reader::new(&big).bounded_bytes(51),
            Err(DecodeError::SizeLimitExceeded {
                size: 52,
                limit: 51
            })
        ));
    }

    #[test]
    fn put_dynamic_back_patches_the_length() {
        let mut out = vec![9];
        out.put_dynamic::<EncodeError>(|o| {
            o.extend_from_slice(b"abc");
            Ok(())
        })
        .unwrap();
        assert_eq!(out, [9, 0, 0, 0, 3, b'a', b'b', b'c']);
        let mut r = Reader::new(&out[1..]);
        let mut sub = r.dynamic().unwrap();
        assert_eq!(sub.rest(), b"abc");
        r.finish().unwrap();
    }
}
