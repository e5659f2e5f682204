//! The networks the node can join: Octez's built-in Tezos chains (from
//! `src/lib_node_config/config_file.ml`), any other Tezos chain given by
//! name and id, and `octez-p2p-node`'s message-only network.

use std::fmt;

use tezos_p2p_shell::{BlockHash, ChainId};
use tezos_p2p_wire::version::{
    ChainName, GHOSTNET_CHAIN_NAME, MAINNET_CHAIN_NAME, SANDBOXED_SANDBOX_CHAIN_NAME,
    SHADOWNET_CHAIN_NAME,
};

/// --network: a built-in network (its variants' docs are --help text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkName {
    /// Tezos mainnet (TEZOS_MAINNET).
    Mainnet,
    /// Ghostnet, the long-running test network.
    Ghostnet,
    /// Shadownet, the test network that replaces ghostnet.
    Shadownet,
    /// Octez's sandbox network, as octez-node --sandbox announces it
    /// (SANDBOXED_TEZOS).
    Sandbox,
    /// octez-p2p-node's network: empty chain name, distributed_db version 0,
    /// Text and Bytes messages.
    P2pNode,
}

impl fmt::Display for NetworkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkName::Mainnet => "mainnet",
            NetworkName::Ghostnet => "ghostnet",
            NetworkName::Shadownet => "shadownet",
            NetworkName::Sandbox => "sandbox",
            NetworkName::P2pNode => "p2p-node",
        })
    }
}

/// A built-in Tezos chain: Octez's `blockchain_network` values.
struct Builtin {
    chain_name: &'static str,
    genesis: &'static str,
    bootstrap_peers: &'static [&'static str],
}

impl NetworkName {
    fn builtin(self) -> Option<Builtin> {
        Some(match self {
            NetworkName::Mainnet => Builtin {
                chain_name: MAINNET_CHAIN_NAME,
                genesis: "BLockGenesisGenesisGenesisGenesisGenesisf79b5d1CoW2",
                bootstrap_peers: &["boot.tzinit.org", "boot.tzboot.net", "boot.tzbeta.net"],
            },
            NetworkName::Ghostnet => Builtin {
                chain_name: GHOSTNET_CHAIN_NAME,
                genesis: "BLockGenesisGenesisGenesisGenesisGenesis1db77eJNeJ9",
                bootstrap_peers: &[
                    "ghostnet.teztnets.com",
                    "ghostnet.tzinit.org",
                    "ghostnet.tzboot.net",
                    "ghostnet.boot.ecadinfra.com",
                    "ghostnet.stakenow.de:9733",
                ],
            },
            NetworkName::Shadownet => Builtin {
                chain_name: SHADOWNET_CHAIN_NAME,
                genesis: "BMJTFWBgqGUzsvW4JLS1XuCYnpH18pBsLb5UvPCv2eiNC5vUeps",
                bootstrap_peers: &["shadownet.teztnets.com", "shadownet.tzinit.org"],
            },
            NetworkName::Sandbox => Builtin {
                chain_name: SANDBOXED_SANDBOX_CHAIN_NAME,
                genesis: "BLockGenesisGenesisGenesisGenesisGenesisf79b5d1CoW2",
                bootstrap_peers: &[],
            },
            NetworkName::P2pNode => return None,
        })
    }
}

/// What the node speaks, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// A Tezos chain: shell messages for `chain_id`.
    Chain {
        /// The chain name announced in the handshake.
        chain_name: ChainName,
        /// The chain the shell messages are about.
        chain_id: ChainId,
        /// Host names (with an optional `:port`) dialed when no `--peer`
        /// is given.
        bootstrap_peers: Vec<String>,
    },
    /// `octez-p2p-node`'s network (Text and Bytes messages).
    P2pNode {
        /// The chain name announced, normally empty.
        chain_name: ChainName,
    },
}

impl Network {
    /// A built-in network.
    pub fn builtin(name: NetworkName) -> Network {
        match name.builtin() {
            Some(b) => {
                let genesis: BlockHash = b.genesis.parse().expect("built-in genesis hashes parse");
                Network::Chain {
                    chain_name: ChainName::from(b.chain_name),
                    chain_id: ChainId::of_block_hash(&genesis),
                    bootstrap_peers: b.bootstrap_peers.iter().map(|s| s.to_string()).collect(),
                }
            }
            None => Network::P2pNode {
                chain_name: ChainName::default(),
            },
        }
    }

    /// `--network`, then `--chain-name` and `--chain-id` over it. An empty
    /// chain name is `octez-p2p-node`'s network; another name needs a chain
    /// id unless the network already has one.
    pub fn from_flags(
        network: NetworkName,
        chain_name: Option<String>,
        chain_id: Option<String>,
    ) -> Result<Network, String> {
        let chain_id = chain_id
            .map(|s| {
                s.parse::<ChainId>().map_err(|e| {
                    format!("invalid --chain-id {s:?}: {e} (expected Net…, e.g. NetXdQprcVkpaWU)")
                })
            })
            .transpose()?;
        if let Some(name) = &chain_name {
            if name.len() > 128 {
                return Err(format!("invalid --chain-name {name:?}: at most 128 bytes"));
            }
        }
        let base = Network::builtin(network);
        Ok(match (base, chain_name, chain_id) {
            (_, Some(name), None) if name.is_empty() => Network::P2pNode {
                chain_name: ChainName::default(),
            },
            (_, Some(name), Some(_)) if name.is_empty() => {
                return Err(
                    "--chain-id makes no sense with an empty --chain-name (octez-p2p-node's network has no chain)"
                        .into(),
                )
            }
            (Network::P2pNode { .. }, Some(name), Some(id)) => Network::Chain {
                chain_name: ChainName::from(name),
                chain_id: id,
                bootstrap_peers: vec![],
            },
            (Network::P2pNode { .. }, Some(name), None) => {
                return Err(format!(
                    "--chain-name {name:?} on --network p2p-node needs --chain-id (or an empty name)"
                ))
            }
            (Network::P2pNode { .. }, None, Some(_)) => {
                return Err("--chain-id makes no sense on --network p2p-node".into())
            }
            (p2p @ Network::P2pNode { .. }, None, None) => p2p,
            (
                Network::Chain {
                    chain_name: old_name,
                    chain_id: old_id,
                    bootstrap_peers,
                },
                name,
                id,
            ) => {
                // Another chain's name or id: the built-in peers are not its.
                let same = name.is_none() && id.is_none();
                Network::Chain {
                    chain_name: name.map(ChainName::from).unwrap_or(old_name),
                    chain_id: id.unwrap_or(old_id),
                    bootstrap_peers: if same { bootstrap_peers } else { vec![] },
                }
            }
        })
    }

    /// The chain name announced in the handshake.
    pub fn chain_name(&self) -> &ChainName {
        match self {
            Network::Chain { chain_name, .. } | Network::P2pNode { chain_name } => chain_name,
        }
    }

    /// The shell's chain, if this is a Tezos chain.
    pub fn chain_id(&self) -> Option<ChainId> {
        match self {
            Network::Chain { chain_id, .. } => Some(*chain_id),
            Network::P2pNode { .. } => None,
        }
    }

    /// The default bootstrap peers.
    pub fn bootstrap_peers(&self) -> &[String] {
        match self {
            Network::Chain {
                bootstrap_peers, ..
            } => bootstrap_peers,
            Network::P2pNode { .. } => &[],
        }
    }

    /// The distributed_db versions supported: Octez's `[0, 1, 2]` on a
    /// Tezos chain, `[0]` on `octez-p2p-node`'s network.
    pub fn distributed_db_versions(&self) -> &'static [u16] {
        match self {
            Network::Chain { .. } => tezos_p2p_wire::version::OCTEZ_DISTRIBUTED_DB_VERSIONS,
            Network::P2pNode { .. } => &[0],
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Network::Chain {
                chain_name,
                chain_id,
                ..
            } => write!(f, "chain {:?} ({chain_id})", chain_name.to_string()),
            Network::P2pNode { chain_name } => write!(
                f,
                "octez-p2p-node's network (chain name {:?})",
                chain_name.to_string()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: NetworkName) -> String {
        Network::builtin(n).chain_id().unwrap().to_string()
    }

    #[test]
    fn builtin_chain_ids_come_from_the_genesis_blocks() {
        assert_eq!(id(NetworkName::Mainnet), "NetXdQprcVkpaWU");
        assert_eq!(id(NetworkName::Ghostnet), "NetXnHfVqm9iesp");
        assert_eq!(id(NetworkName::Shadownet), "NetXsqzbfFenSTS");
        assert_eq!(id(NetworkName::Sandbox), "NetXdQprcVkpaWU");
        assert_eq!(Network::builtin(NetworkName::P2pNode).chain_id(), None);
        assert_eq!(
            Network::builtin(NetworkName::Mainnet).chain_name(),
            &ChainName::from("TEZOS_MAINNET")
        );
    }

    #[test]
    fn flags_pick_a_chain() {
        let m = Network::from_flags(NetworkName::Mainnet, None, None).unwrap();
        assert_eq!(m.bootstrap_peers().len(), 3);
        // An empty chain name is octez-p2p-node's network.
        let p = Network::from_flags(NetworkName::Mainnet, Some(String::new()), None).unwrap();
        assert_eq!(p.chain_id(), None);
        assert_eq!(p.distributed_db_versions(), &[0]);
        // Another chain: its own name and id, no built-in peers.
        let c = Network::from_flags(
            NetworkName::Mainnet,
            Some("MY_CHAIN".into()),
            Some("NetXjD3HPJJjmcd".into()),
        )
        .unwrap();
        assert_eq!(c.chain_name(), &ChainName::from("MY_CHAIN"));
        assert_eq!(c.chain_id().unwrap().to_string(), "NetXjD3HPJJjmcd");
        assert!(c.bootstrap_peers().is_empty());
        assert!(Network::from_flags(NetworkName::P2pNode, Some("X".into()), None).is_err());
        assert!(Network::from_flags(NetworkName::Mainnet, None, Some("nope".into())).is_err());
    }
}
