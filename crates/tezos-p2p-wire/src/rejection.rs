//! Rejection motives carried by a `Nack` (wire spec §7.4,
//! `P2p_rejection.encoding`).
//!
//! On the wire a motive is a signed big-endian `int16`. Codes 0 to 5 have
//! names; any other code is `Unknown_motive code`, which Octez accepts and is
//! not a decoding error. Note that code 3 is the *p2p* version and code 4 the
//! *distributed_db* version, the reverse of the order Octez declares them in.

use std::fmt;

use crate::encoding::{Decode, DecodeError, Encode, EncodeError, Reader, WriteExt};

/// Why a peer refused a connection (`P2p_rejection.t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Motive {
    /// Code 0, `No_motive`; also what a `Nack_v_0` stands for.
    NoMotive,
    /// Code 1, `Too_many_connections`.
    TooManyConnections,
    /// Code 2, `Unknown_chain_name`: the announced chain names differ.
    UnknownChainName,
    /// Code 3, `Deprecated_p2p_version`.
    DeprecatedP2pVersion,
    /// Code 4, `Deprecated_distributed_db_version`.
    DeprecatedDistributedDbVersion,
    /// Code 5, `Already_connected`.
    AlreadyConnected,
    /// Any other code, `Unknown_motive`. [`Motive::from_code`] never builds it
    /// for codes 0 to 5; one built by hand with such a code still encodes to
    /// that code.
    Unknown(i16),
}

impl Motive {
    /// The code written on the wire.
    pub fn code(self) -> i16 {
        match self {
            Motive::NoMotive => 0,
            Motive::TooManyConnections => 1,
            Motive::UnknownChainName => 2,
            Motive::DeprecatedP2pVersion => 3,
            Motive::DeprecatedDistributedDbVersion => 4,
            Motive::AlreadyConnected => 5,
            Motive::Unknown(c) => c,
        }
    }

    /// The motive of a wire code; every `i16` is accepted.
    pub fn from_code(code: i16) -> Self {
        match code {
            0 => Motive::NoMotive,
            1 => Motive::TooManyConnections,
            2 => Motive::UnknownChainName,
            3 => Motive::DeprecatedP2pVersion,
            4 => Motive::DeprecatedDistributedDbVersion,
            5 => Motive::AlreadyConnected,
            c => Motive::Unknown(c),
        }
    }

    /// Octez's name of the case (the encoding's case title), e.g.
    /// `Too_many_connections`; `Unknown_motive` for unknown codes.
    pub fn name(self) -> &'static str {
        match self {
            Motive::NoMotive => "No_motive",
            Motive::TooManyConnections => "Too_many_connections",
            Motive::UnknownChainName => "Unknown_chain_name",
            Motive::DeprecatedP2pVersion => "Deprecated_p2p_version",
            Motive::DeprecatedDistributedDbVersion => "Deprecated_distributed_db_version",
            Motive::AlreadyConnected => "Already_connected",
            Motive::Unknown(_) => "Unknown_motive",
        }
    }
}

impl fmt::Display for Motive {
    /// The Octez name; unknown motives also show their code,
    /// e.g. `Unknown_motive(42)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Motive::Unknown(c) => write!(f, "Unknown_motive({c})"),
            m => f.write_str(m.name()),
        }
    }
}

impl Encode for Motive {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_i16(self.code());
        Ok(())
    }
}

impl Decode for Motive {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Motive::from_code(r.i16()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_three_and_four_are_p2p_then_ddb() {
        assert_eq!(Motive::DeprecatedP2pVersion.code(), 3);
        assert_eq!(Motive::DeprecatedDistributedDbVersion.code(), 4);
        assert_eq!(Motive::from_code(3), Motive::DeprecatedP2pVersion);
        assert_eq!(Motive::from_code(4), Motive::DeprecatedDistributedDbVersion);
    }

    #[test]
    fn every_code_round_trips() {
        for code in [i16::MIN, -1, 0, 1, 2, 3, 4, 5, 6, 42, i16::MAX] {
            let m = Motive::from_code(code);
            assert_eq!(m.code(), code);
            let bytes = m.to_bytes().unwrap();
            assert_eq!(bytes, code.to_be_bytes());
            assert_eq!(Motive::from_bytes(&bytes).unwrap(), m);
        }
    }

    #[test]
    fn unknown_codes_are_accepted_not_errors() {
        assert_eq!(
            Motive::from_bytes(&[0xFF, 0xFF]).unwrap(),
            Motive::Unknown(-1)
        );
        assert_eq!(
            Motive::from_bytes(&[0x00, 0x06]).unwrap(),
            Motive::Unknown(6)
        );
    }

    #[test]
    fn display_uses_octez_names() {
        assert_eq!(
            Motive::TooManyConnections.to_string(),
            "Too_many_connections"
        );
        assert_eq!(Motive::AlreadyConnected.to_string(), "Already_connected");
        assert_eq!(Motive::Unknown(42).to_string(), "Unknown_motive(42)");
        assert_eq!(Motive::Unknown(42).name(), "Unknown_motive");
    }

    #[test]
    fn short_input_is_not_enough_data() {
        assert_eq!(Motive::from_bytes(&[0]), Err(DecodeError::NotEnoughData));
        assert_eq!(
            Motive::from_bytes(&[0, 1, 2]),
            Err(DecodeError::ExtraBytes(1))
        );
    }
}
