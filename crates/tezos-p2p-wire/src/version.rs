//! Network versions (wire spec §3.2 and §7.2, `Network_version`).
//!
//! Each side announces one [`NetworkVersion`] in its connection message: its
//! chain name and the greatest distributed-DB and p2p versions it supports.
//! The version actually used is computed locally by each side with
//! [`SupportedVersions::select`] and never sent. Encoding:
//! `u32 len || chain_name || u16 distributed_db_version || u16 p2p_version`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::encoding::{Decode, DecodeError, Encode, EncodeError, Reader, WriteExt};
use crate::rejection::Motive;

/// Chain name of mainnet.
pub const MAINNET_CHAIN_NAME: &str = "TEZOS_MAINNET";
/// Chain name of ghostnet.
pub const GHOSTNET_CHAIN_NAME: &str = "TEZOS_ITHACANET_2022-01-25T15:00:00Z";
/// Chain name of shadownet.
pub const SHADOWNET_CHAIN_NAME: &str = "TEZOS_SHADOWNET_2025-08-07T20:00:00Z";
/// Chain name of Octez's built-in sandbox network.
pub const SANDBOX_CHAIN_NAME: &str = "TEZOS";
/// Chain name a node of the sandbox network announces in sandbox mode.
pub const SANDBOXED_SANDBOX_CHAIN_NAME: &str = "SANDBOXED_TEZOS";
/// Chain name a mainnet node announces in sandbox mode.
pub const SANDBOXED_MAINNET_CHAIN_NAME: &str = "SANDBOXED_TEZOS_MAINNET";

/// The distributed-DB versions current Octez supports (it announces 2).
pub const OCTEZ_DISTRIBUTED_DB_VERSIONS: &[u16] = &[0, 1, 2];
/// The p2p versions current Octez supports (it announces 1).
pub const OCTEZ_P2P_VERSIONS: &[u16] = &[0, 1];

/// A chain name: raw bytes, normally ASCII, compared byte for byte.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChainName(pub Vec<u8>);

impl ChainName {
    /// A chain name from its bytes.
    pub fn new(name: impl Into<Vec<u8>>) -> Self {
        ChainName(name.into())
    }

    /// `TEZOS_MAINNET`.
    pub fn mainnet() -> Self {
        Self::new(MAINNET_CHAIN_NAME)
    }

    /// Ghostnet's chain name.
    pub fn ghostnet() -> Self {
        Self::new(GHOSTNET_CHAIN_NAME)
    }

    /// `TEZOS`, the built-in sandbox network.
    pub fn sandbox() -> Self {
        Self::new(SANDBOX_CHAIN_NAME)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for ChainName {
    fn from(s: &str) -> Self {
        ChainName::new(s)
    }
}

impl From<String> for ChainName {
    fn from(s: String) -> Self {
        ChainName::new(s)
    }
}

impl fmt::Display for ChainName {
    /// The name as text, invalid UTF-8 replaced by U+FFFD.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for ChainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainName({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for ChainName {
    /// As a string (lossy for non-UTF-8 names).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChainName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ChainName::from(String::deserialize(d)?))
    }
}

impl Encode for ChainName {
    /// `u32` length then the bytes.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_dynamic_bytes(&self.0)
    }
}

impl Decode for ChainName {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ChainName(r.dynamic_bytes()?.to_vec()))
    }
}

/// The version record of a connection message (`Network_version.t`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkVersion {
    /// The chain the sender is on.
    pub chain_name: ChainName,
    /// Its (greatest, when announced) distributed-DB version.
    pub distributed_db_version: u16,
    /// Its (greatest, when announced) p2p version.
    pub p2p_version: u16,
}

impl Encode for NetworkVersion {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.chain_name.encode(out)?;
        out.put_u16(self.distributed_db_version);
        out.put_u16(self.p2p_version);
        Ok(())
    }
}

impl Decode for NetworkVersion {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(NetworkVersion {
            chain_name: ChainName::decode(r)?,
            distributed_db_version: r.u16()?,
            p2p_version: r.u16()?,
        })
    }
}

/// What a node supports: its chain name and its version lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportedVersions {
    /// The chain name; the peer's must be equal.
    pub chain_name: ChainName,
    /// Supported distributed-DB versions.
    pub distributed_db_versions: Vec<u16>,
    /// Supported p2p versions.
    pub p2p_versions: Vec<u16>,
}

/// Octez's `pick`: our best if the peer is at least as new, else the peer's
/// version if we support it, else a rejection.
fn pick(supported: &[u16], remote: u16, motive: Motive) -> Result<u16, Motive> {
    let best = supported.iter().copied().max().ok_or(motive)?;
    if best <= remote {
        Ok(best)
    } else if supported.contains(&remote) {
        Ok(remote)
    } else {
        Err(motive)
    }
}

impl SupportedVersions {
    /// Current Octez's lists (ddb `[0, 1, 2]`, p2p `[0, 1]`) for `chain_name`.
    pub fn octez(chain_name: ChainName) -> Self {
        SupportedVersions {
            chain_name,
            distributed_db_versions: OCTEZ_DISTRIBUTED_DB_VERSIONS.to_vec(),
            p2p_versions: OCTEZ_P2P_VERSIONS.to_vec(),
        }
    }

    /// What to put in our connection message: the chain name and the
    /// greatest version of each list (0 for an empty list).
    pub fn announced(&self) -> NetworkVersion {
        NetworkVersion {
            chain_name: self.chain_name.clone(),
            distributed_db_version: self
                .distributed_db_versions
                .iter()
                .copied()
                .max()
                .unwrap_or(0),
            p2p_version: self.p2p_versions.iter().copied().max().unwrap_or(0),
        }
    }

    /// The version to use with a peer that announced `remote` (§7.2), or the
    /// motive to nack it with: [`Motive::UnknownChainName`],
    /// [`Motive::DeprecatedDistributedDbVersion`] or
    /// [`Motive::DeprecatedP2pVersion`], checked in that order.
    pub fn select(&self, remote: &NetworkVersion) -> Result<NetworkVersion, Motive> {
        if self.chain_name != remote.chain_name {
            return Err(Motive::UnknownChainName);
        }
        let ddb = pick(
            &self.distributed_db_versions,
            remote.distributed_db_version,
            Motive::DeprecatedDistributedDbVersion,
        )?;
        let p2p = pick(
            &self.p2p_versions,
            remote.p2p_version,
            Motive::DeprecatedP2pVersion,
        )?;
        Ok(NetworkVersion {
            chain_name: self.chain_name.clone(),
            distributed_db_version: ddb,
            p2p_version: p2p,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nv(name: &str, ddb: u16, p2p: u16) -> NetworkVersion {
        NetworkVersion {
            chain_name: name.into(),
            distributed_db_version: ddb,
            p2p_version: p2p,
        }
    }

    #[test]
    fn octez_sample_decodes_and_re_encodes() {
        let bytes = hex::decode("000000046d61696e00010000").unwrap();
        let v = NetworkVersion::from_bytes(&bytes).unwrap();
        assert_eq!(v, nv("main", 1, 0));
        assert_eq!(v.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn truncated_or_padded_version_is_rejected() {
        let bytes = hex::decode("000000046d61696e00010000").unwrap();
        assert_eq!(
            NetworkVersion::from_bytes(&bytes[..11]),
            Err(DecodeError::NotEnoughData)
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            NetworkVersion::from_bytes(&long),
            Err(DecodeError::ExtraBytes(1))
        );
    }

    #[test]
    fn octez_announces_ddb_2_and_p2p_1() {
        let s = SupportedVersions::octez(ChainName::mainnet());
        assert_eq!(s.announced(), nv(MAINNET_CHAIN_NAME, 2, 1));
    }

    #[test]
    fn newer_or_equal_peer_gets_our_best() {
        let s = SupportedVersions::octez(ChainName::mainnet());
        assert_eq!(
            s.select(&nv("TEZOS_MAINNET", 2, 1)),
            Ok(nv("TEZOS_MAINNET", 2, 1))
        );
        assert_eq!(
            s.select(&nv("TEZOS_MAINNET", 9, 7)),
            Ok(nv("TEZOS_MAINNET", 2, 1))
        );
    }

    #[test]
    fn older_supported_peer_gets_its_own_version() {
        let s = SupportedVersions::octez(ChainName::mainnet());
        assert_eq!(
            s.select(&nv("TEZOS_MAINNET", 0, 1)),
            Ok(nv("TEZOS_MAINNET", 0, 1))
        );
        assert_eq!(
            s.select(&nv("TEZOS_MAINNET", 1, 0)),
            Ok(nv("TEZOS_MAINNET", 1, 0))
        );
    }

    #[test]
    fn other_chain_is_unknown_chain_name() {
        let s = SupportedVersions::octez(ChainName::mainnet());
        assert_eq!(s.select(&nv("TEZOS", 2, 1)), Err(Motive::UnknownChainName));
        assert_eq!(
            s.select(&nv("TEZOS_MAINNET ", 2, 1)),
            Err(Motive::UnknownChainName)
        );
    }

    #[test]
    fn unsupported_older_versions_are_deprecated() {
        let s = SupportedVersions {
            chain_name: ChainName::sandbox(),
            distributed_db_versions: vec![2, 3],
            p2p_versions: vec![1],
        };
        assert_eq!(
            s.select(&nv("TEZOS", 1, 1)),
            Err(Motive::DeprecatedDistributedDbVersion)
        );
        assert_eq!(
            s.select(&nv("TEZOS", 2, 0)),
            Err(Motive::DeprecatedP2pVersion)
        );
        // The distributed-DB version is checked first.
        assert_eq!(
            s.select(&nv("TEZOS", 0, 0)),
            Err(Motive::DeprecatedDistributedDbVersion)
        );
        assert_eq!(s.select(&nv("TEZOS", 2, 5)), Ok(nv("TEZOS", 2, 1)));
    }

    #[test]
    fn empty_lists_reject_everything() {
        let s = SupportedVersions {
            chain_name: ChainName::sandbox(),
            distributed_db_versions: vec![],
            p2p_versions: vec![0],
        };
        assert_eq!(s.announced().distributed_db_version, 0);
        assert_eq!(
            s.select(&nv("TEZOS", 0, 0)),
            Err(Motive::DeprecatedDistributedDbVersion)
        );
    }

    #[test]
    fn chain_name_display_and_serde_are_text() {
        assert_eq!(ChainName::ghostnet().to_string(), GHOSTNET_CHAIN_NAME);
        let json = serde_json::to_string(&ChainName::mainnet()).unwrap();
        assert_eq!(json, "\"TEZOS_MAINNET\"");
        assert_eq!(
            serde_json::from_str::<ChainName>(&json).unwrap(),
            ChainName::mainnet()
        );
        assert_eq!(ChainName::new(vec![0xFF]).to_string(), "\u{FFFD}");
    }
}
