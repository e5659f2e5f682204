//! A reader with the semantics of Octez's stream reader
//! (`data-encoding/src/binary_stream_reader.ml`), over a message body of
//! announced length of which only a prefix may be present.
//!
//! Octez checks every read against two bounds *before* looking at the data:
//! the bytes left in the enclosing `dynamic_size` context (`remaining`,
//! `Not_enough_data`) and those left under the enclosing `check_size`
//! (`allowed`, `Size_limit_exceeded`); only then does it wait for the
//! bytes. A `check_size` that spans the whole of its context fails at once
//! when the context is larger than its limit. Keeping both bounds here as
//! absolute offsets gives, for the same decoding code:
//!
//! * on a whole body, exactly Octez's error class;
//! * on a prefix, [`Fail::Incomplete`] where Octez would still wait, and
//!   the error where it would already have failed.

use tezos_p2p_wire::encoding::DecodeError;

/// Why a read stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fail {
    /// The message is wrong, whatever bytes follow.
    Bad(DecodeError),
    /// The bytes read so far are fine; more are needed to go on.
    Incomplete,
}

impl From<DecodeError> for Fail {
    fn from(e: DecodeError) -> Self {
        Fail::Bad(e)
    }
}

pub(crate) type Res<T> = Result<T, Fail>;

/// Largest `Uint30` value.
const MAX_UINT30: i64 = (1 << 30) - 1;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Cur<'a> {
    /// The bytes present (a prefix of the body, or all of it).
    buf: &'a [u8],
    /// Next byte to read.
    pos: usize,
    /// End of the current `dynamic_size` context (the body's announced
    /// length at the top).
    end: usize,
    /// End allowed by the innermost `check_size` (`usize::MAX`: none).
    allowed: usize,
}

impl<'a> Cur<'a> {
    /// A body of `announced` bytes of which `buf` is present.
    pub(crate) fn new(buf: &'a [u8], announced: usize) -> Self {
        Cur {
            buf: &buf[..buf.len().min(announced)],
            pos: 0,
            end: announced,
            allowed: usize::MAX,
        }
    }

    /// The bytes present from the current position on, within the context.
    pub(crate) fn present(&self) -> &'a [u8] {
        self.buf
            .get(self.pos..self.end.min(self.buf.len()))
            .unwrap_or(&[])
    }

    /// Octez's checks before reading `n` bytes (`check_remaining_bytes`,
    /// then `check_allowed_bytes`); also the up-front check of a
    /// fixed-size object.
    pub(crate) fn need(&self, n: usize) -> Res<()> {
        if n > self.end - self.pos {
            return Err(DecodeError::NotEnoughData.into());
        }
        if n > self.allowed.saturating_sub(self.pos) {
            return Err(DecodeError::SizeLimitExceeded {
                size: n,
                limit: self.allowed.saturating_sub(self.pos),
            }
            .into());
        }
        Ok(())
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        self.need(n)?;
        let Some(s) = self.buf.get(self.pos..self.pos + n) else {
            return Err(Fail::Incomplete);
        };
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn fixed<const N: usize>(&mut self) -> Res<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Res<u8> {
        Ok(self.fixed::<1>()?[0])
    }

    pub(crate) fn i8(&mut self) -> Res<i8> {
        Ok(i8::from_be_bytes(self.fixed()?))
    }

    pub(crate) fn u16(&mut self) -> Res<u16> {
        Ok(u16::from_be_bytes(self.fixed()?))
    }

    pub(crate) fn i32(&mut self) -> Res<i32> {
        Ok(i32::from_be_bytes(self.fixed()?))
    }

    pub(crate) fn i64(&mut self) -> Res<i64> {
        Ok(i64::from_be_bytes(self.fixed()?))
    }

    /// A `Uint30` length: a negative `int32` is `Invalid_int`.
    pub(crate) fn uint30(&mut self) -> Res<usize> {
        let v = self.i32()?;
        if v < 0 {
            return Err(DecodeError::InvalidInt {
                min: 0,
                value: i64::from(v),
                max: MAX_UINT30,
            }
            .into());
        }
        Ok(v as usize)
    }

    /// `dynamic_size e`: a `Uint30` size, checked against `remaining`
    /// then `allowed`, then `f` reads `e` (which spans the whole new
    /// context) and must use all of it (`Extra_bytes`).
    pub(crate) fn dynamic<T>(&mut self, f: impl FnOnce(&mut Self) -> Res<T>) -> Res<T> {
        let size = self.uint30()?;
        if size > self.end - self.pos {
            return Err(DecodeError::NotEnoughData.into());
        }
        if size > self.allowed.saturating_sub(self.pos) {
            return Err(DecodeError::SizeLimitExceeded {
                size,
                limit: self.allowed.saturating_sub(self.pos),
            }
            .into());
        }
        let outer = self.end;
        self.end = self.pos + size;
        let v = f(self)?;
        if self.pos != self.end {
            return Err(DecodeError::ExtraBytes(self.end - self.pos).into());
        }
        self.end = outer;
        Ok(v)
    }

    /// `check_size limit e`. With `whole` (the value takes the rest of its
    /// context), a context larger than the limit fails at once.
    pub(crate) fn check_size<T>(
        &mut self,
        limit: usize,
        whole: bool,
        f: impl FnOnce(&mut Self) -> Res<T>,
    ) -> Res<T> {
        let outer = self.allowed;
        let inner = outer.min(self.pos.saturating_add(limit));
        if whole && inner < self.end {
            return Err(DecodeError::SizeLimitExceeded {
                size: self.end - self.pos,
                limit: inner - self.pos,
            }
            .into());
        }
        self.allowed = inner;
        let v = f(self)?;
        self.allowed = outer;
        Ok(v)
    }

    /// `Variable.bytes`: every byte left in the context.
    pub(crate) fn rest(&mut self) -> Res<&'a [u8]> {
        self.take(self.end - self.pos)
    }

    /// Whether the context is used up (the loop test of a variable list).
    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.end
    }

    /// The end of a top-level decode: everything must have been used.
    pub(crate) fn finish(&self) -> Res<()> {
        if self.pos != self.end {
            return Err(DecodeError::ExtraBytes(self.end - self.pos).into());
        }
        Ok(())
    }
}

/// Runs a decoder over a whole body: [`Fail::Incomplete`] cannot happen
/// (every read is checked against the body's length first) and would be
/// reported as `Not_enough_data`.
pub(crate) fn whole<T>(
    body: &[u8],
    f: impl FnOnce(&mut Cur<'_>) -> Res<T>,
) -> Result<T, DecodeError> {
    let mut c = Cur::new(body, body.len());
    let v = f(&mut c).and_then(|v| c.finish().map(|()| v));
    v.map_err(|e| match e {
        Fail::Bad(e) => e,
        Fail::Incomplete => DecodeError::NotEnoughData,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_is_checked_before_allowed_before_data() {
        // 10 bytes announced, 2 present.
        let mut c = Cur::new(&[1, 2], 10);
        assert_eq!(c.take(11), Err(DecodeError::NotEnoughData.into()));
        assert_eq!(c.take(3), Err(Fail::Incomplete));
        assert_eq!(c.take(2).unwrap(), &[1, 2]);
        let r = c.check_size(4, false, |c| c.take(5));
        assert!(matches!(
            r,
            Err(Fail::Bad(DecodeError::SizeLimitExceeded { .. }))
        ));
    }

    #[test]
    fn whole_check_size_fails_before_any_byte() {
        let mut c = Cur::new(&[], 101);
        let r = c.check_size(100, true, |c| c.rest().map(<[u8]>::len));
        assert!(matches!(
            r,
            Err(Fail::Bad(DecodeError::SizeLimitExceeded { .. }))
        ));
        let mut c = Cur::new(&[], 100);
        assert_eq!(
            c.check_size(100, true, |c| c.rest().map(<[u8]>::len)),
            Err(Fail::Incomplete)
        );
    }

    #[test]
    fn dynamic_size_checks_and_restores() {
        let body = [0, 0, 0, 2, 7, 8, 9];
        let v = whole(&body, |c| {
            let a = c.dynamic(|c| c.rest().map(<[u8]>::to_vec))?;
            Ok((a, c.u8()?))
        });
        assert_eq!(v, Ok((vec![7, 8], 9)));
        assert_eq!(
            whole(&[0, 0, 0, 9, 1], |c| c
                .dynamic(|c| c.rest().map(<[u8]>::len))),
            Err(DecodeError::NotEnoughData)
        );
        assert_eq!(
            whole(&[0, 0, 0, 2, 1, 2], |c| c.dynamic(|c| c.u8())),
            Err(DecodeError::ExtraBytes(1))
        );
        assert!(matches!(
            whole(&[0x80, 0, 0, 0], |c| c.dynamic(|c| c.u8())),
            Err(DecodeError::InvalidInt { .. })
        ));
    }
}
