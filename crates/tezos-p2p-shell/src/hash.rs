//! Identifiers (spec §2.1): chain ids and the 32-byte BLAKE2b hashes, raw on
//! the wire and Base58Check in text and JSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// BLAKE2b-256 of `data` (Octez's `Blake2B.hash_bytes`).
pub fn blake2b_256(data: &[u8]) -> [u8; 32] {
    let h = blake2b_simd::Params::new().hash_length(32).hash(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(h.as_bytes());
    out
}

/// BLAKE2b-256 of `a ‖ b` (a Merkle node).
pub(crate) fn blake2b_256_pair(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut st = blake2b_simd::Params::new().hash_length(32).to_state();
    st.update(a);
    st.update(b);
    let mut out = [0u8; 32];
    out.copy_from_slice(st.finalize().as_bytes());
    out
}

/// Why a Base58Check text is not an identifier of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseHashError {
    /// A character outside the Bitcoin Base58 alphabet.
    #[error("invalid base58 character")]
    InvalidCharacter,
    /// The 4-byte checksum does not match (or the text is too short to
    /// hold one).
    #[error("bad base58check checksum")]
    BadChecksum,
    /// The decoded bytes do not start with the kind's prefix.
    #[error("not a {kind}: wrong base58check prefix")]
    WrongPrefix {
        /// The expected kind (`Block_hash`, `Chain_id`...).
        kind: &'static str,
    },
    /// The prefix matches but the payload has the wrong length.
    #[error("not a {kind}: payload of {got} bytes instead of {expected}")]
    WrongLength {
        /// The expected kind.
        kind: &'static str,
        /// Expected payload length.
        expected: usize,
        /// Decoded payload length.
        got: usize,
    },
}

/// Decodes `s` as Base58Check and strips `prefix`, requiring `N` bytes.
fn b58_decode<const N: usize>(
    s: &str,
    prefix: &[u8],
    kind: &'static str,
) -> Result<[u8; N], ParseHashError> {
    let raw = bs58::decode(s)
        .with_check(None)
        .into_vec()
        .map_err(|e| match e {
            bs58::decode::Error::InvalidCharacter { .. }
            | bs58::decode::Error::NonAsciiCharacter { .. } => ParseHashError::InvalidCharacter,
            _ => ParseHashError::BadChecksum,
        })?;
    let Some(payload) = raw.strip_prefix(prefix) else {
        return Err(ParseHashError::WrongPrefix { kind });
    };
    <[u8; N]>::try_from(payload).map_err(|_| ParseHashError::WrongLength {
        kind,
        expected: N,
        got: payload.len(),
    })
}

fn b58_encode(prefix: &[u8], payload: &[u8]) -> String {
    let mut raw = Vec::with_capacity(prefix.len() + payload.len());
    raw.extend_from_slice(prefix);
    raw.extend_from_slice(payload);
    bs58::encode(raw).with_check().into_string()
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $len:expr, $prefix:expr, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length of the raw identifier on the wire.
            pub const LEN: usize = $len;
            /// Base58Check prefix bytes (`src/lib_crypto/base58.ml`).
            pub const B58_PREFIX: &'static [u8] = &$prefix;
            /// Octez's name of the kind.
            pub const KIND: &'static str = $kind;

            /// The identifier with these raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// The identifier in `bytes`, if it has exactly the right length.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(bytes).ok().map(Self)
            }

            /// The Base58Check text (what `Display` prints).
            pub fn to_b58check(&self) -> String {
                b58_encode(Self::B58_PREFIX, &self.0)
            }

            /// Parses the Base58Check text, checking checksum, prefix and
            /// length (what `FromStr` does).
            pub fn from_b58check(s: &str) -> Result<Self, ParseHashError> {
                b58_decode::<$len>(s, Self::B58_PREFIX, Self::KIND).map(Self)
            }

            /// Lowercase hex of the raw bytes.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl From<[u8; $len]> for $name {
            fn from(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }
        }

        impl From<$name> for [u8; $len] {
            fn from(h: $name) -> Self {
                h.0
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_b58check())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_b58check())
            }
        }

        impl FromStr for $name {
            type Err = ParseHashError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_b58check(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_b58check())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Self::from_b58check(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

macro_rules! hash32 {
    ($(#[$doc:meta])* $name:ident, $prefix:expr, $kind:expr) => {
        identifier!($(#[$doc])* $name, 32, $prefix, $kind);

        impl $name {
            /// BLAKE2b-256 of `data`.
            pub fn hash_of(data: &[u8]) -> Self {
                Self(blake2b_256(data))
            }
        }
    };
}

identifier!(
    /// A chain id: 4 bytes, `Net…` in Base58Check (prefix `57 52 00`).
    ChainId,
    4,
    [0x57, 0x52, 0x00],
    "Chain_id"
);

impl ChainId {
    /// `Chain_id.of_block_hash`: the first 4 bytes of BLAKE2b-256 of the
    /// (genesis) block hash.
    pub fn of_block_hash(genesis: &BlockHash) -> ChainId {
        let h = blake2b_256(genesis.as_bytes());
        ChainId([h[0], h[1], h[2], h[3]])
    }
}

hash32!(
    /// A block hash, `B…` (prefix `01 34`): BLAKE2b-256 of the header.
    BlockHash,
    [0x01, 0x34],
    "Block_hash"
);
hash32!(
    /// An operation hash, `o…` (prefix `05 74`): BLAKE2b-256 of the
    /// operation (branch ‖ data).
    OperationHash,
    [0x05, 0x74],
    "Operation_hash"
);
hash32!(
    /// The Merkle root of one validation pass's operation hashes, `Lo…`
    /// (prefix `85 e9`).
    OperationListHash,
    [0x85, 0xe9],
    "Operation_list_hash"
);
hash32!(
    /// The Merkle root of the list hashes of all passes, `LLo…` (prefix
    /// `1d 9f 6d`); a header's `operations_hash`, and the siblings of a
    /// Merkle path.
    OperationListListHash,
    [0x1d, 0x9f, 0x6d],
    "Operation_list_list_hash"
);
hash32!(
    /// A protocol hash, `P…` (prefix `02 aa`): BLAKE2b-256 of the protocol.
    ProtocolHash,
    [0x02, 0xaa],
    "Protocol_hash"
);
hash32!(
    /// A context hash, `Co…` (prefix `4f c7`).
    ContextHash,
    [0x4f, 0xc7],
    "Context_hash"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mainnet_chain_id_is_the_hash_of_its_genesis() {
        let genesis: BlockHash = "BLockGenesisGenesisGenesisGenesisGenesisf79b5d1CoW2"
            .parse()
            .unwrap();
        let id = ChainId::of_block_hash(&genesis);
        assert_eq!(id.to_string(), "NetXdQprcVkpaWU");
        assert_eq!(id.as_bytes(), &[0x7a, 0x06, 0xa7, 0x70]);
    }

    #[test]
    fn base58_round_trips_and_names_the_kind() {
        let h = OperationListListHash::hash_of(b"");
        let s = h.to_string();
        assert_eq!(s, "LLoZS2LW3rEi7KYU4ouBQtorua37aWWCtpDmv1n2x3xoKi6sVXLWp");
        assert_eq!(s.parse::<OperationListListHash>().unwrap(), h);
        assert_eq!(format!("{h:?}"), format!("OperationListListHash({s})"));
        let c: ChainId = "NetXjD3HPJJjmcd".parse().unwrap();
        assert_eq!(c.to_hex(), "9caecab9");
        for (b, p) in [
            (&BlockHash::B58_PREFIX, "B"),
            (&OperationHash::B58_PREFIX, "o"),
            (&OperationListHash::B58_PREFIX, "Lo"),
            (&ProtocolHash::B58_PREFIX, "P"),
            (&ContextHash::B58_PREFIX, "Co"),
        ] {
            assert!(b58_encode(b, &[0xAB; 32]).starts_with(p));
        }
    }

    #[test]
    fn bad_checksum_prefix_length_and_characters_are_refused() {
        let good = "BLockGenesisGenesisGenesisGenesisGenesisf79b5d1CoW2";
        let mut bad = good.to_string();
        bad.replace_range(50.., "3");
        assert_eq!(bad.parse::<BlockHash>(), Err(ParseHashError::BadChecksum));
        assert_eq!(
            good.parse::<OperationHash>(),
            Err(ParseHashError::WrongPrefix {
                kind: "Operation_hash"
            })
        );
        assert_eq!(
            "0OIl".parse::<BlockHash>(),
            Err(ParseHashError::InvalidCharacter)
        );
        assert_eq!("".parse::<BlockHash>(), Err(ParseHashError::BadChecksum));
        // Right prefix, 31-byte payload.
        let short = b58_encode(BlockHash::B58_PREFIX, &[1; 31]);
        assert_eq!(
            short.parse::<BlockHash>(),
            Err(ParseHashError::WrongLength {
                kind: "Block_hash",
                expected: 32,
                got: 31
            })
        );
    }

    #[test]
    fn serde_uses_the_b58_text() {
        let h = BlockHash::from([7; 32]);
        let v = serde_json::to_value(h).unwrap();
        assert_eq!(v, serde_json::Value::String(h.to_string()));
        assert_eq!(serde_json::from_value::<BlockHash>(v).unwrap(), h);
        assert!(serde_json::from_str::<BlockHash>("\"NetXdQprcVkpaWU\"").is_err());
    }
}
