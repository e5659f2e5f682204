//! `run`'s settings: command-line flags merged over a JSON config file,
//! then checked and turned into the pool's configuration.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use tezos_p2p::limits::Limits;
use tezos_p2p_wire::identity::PeerId;
use tezos_p2p_wire::point::{Point, PointParseError};

use crate::network::{Network, NetworkName};

/// Settings shared by the flags of `run` and its config file (whose keys
/// are the flags' names without `--`; `peer` may also be written `peers`).
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Listening address and port [default: `[::]:9732`].
    #[arg(long, value_name = "ADDR:PORT")]
    pub net_addr: Option<String>,
    /// The port announced to peers (NAT) [default: the listening port].
    #[arg(long, value_name = "PORT")]
    pub advertised_net_port: Option<u16>,
    /// A trusted point, optionally pinned to a peer id; host names are
    /// resolved. Repeatable.
    #[arg(long = "peer", value_name = "POINT[#PEER_ID]")]
    #[serde(default, alias = "peers")]
    pub peer: Vec<String>,
    /// The network: a Tezos chain (the node speaks the shell's messages)
    /// or octez-p2p-node's network (Text and Bytes) [default: sandbox].
    #[arg(long, value_name = "NAME")]
    pub network: Option<NetworkName>,
    /// A chain name, overriding the network's; empty ("") for
    /// octez-p2p-node's network.
    #[arg(long, value_name = "NAME")]
    pub chain_name: Option<String>,
    /// The chain id (Net…) of a chain given by --chain-name [default: the
    /// network's, from its genesis block].
    #[arg(long, value_name = "ID")]
    pub chain_id: Option<String>,
    /// Dial only the --peer points, not the network's default bootstrap
    /// peers.
    #[arg(long)]
    #[serde(default)]
    pub no_bootstrap_peers: bool,
    /// Announce that the node keeps no mempool: peers then send their
    /// heads without their mempool's operations.
    #[arg(long)]
    #[serde(default)]
    pub disable_mempool: bool,
    /// Proof of work required of peers, and of a generated identity
    /// [default: 26].
    #[arg(long, value_name = "F")]
    pub expected_pow: Option<f64>,
    /// Accept and contact only trusted points and peers.
    #[arg(long)]
    #[serde(default)]
    pub private_mode: bool,
    /// Sets min N/2 (1 when N = 1), expected N, max 3N/2 connections.
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Below this the maintenance connects [default: 10].
    #[arg(long, value_name = "N")]
    pub min_connections: Option<usize>,
    /// What the maintenance aims at [default: 50].
    #[arg(long, value_name = "N")]
    pub expected_connections: Option<usize>,
    /// Above this the maintenance disconnects [default: 100].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Incoming handshakes in progress at once [default: 20].
    #[arg(long, value_name = "N")]
    pub max_incoming_connections: Option<usize>,
    /// Incoming handshakes in progress at once from one source (an IPv4
    /// address or an IPv6 /64) [default: 4].
    #[arg(long, value_name = "N")]
    pub max_incoming_connections_per_ip: Option<usize>,
    /// Global download cap, in KiB/s.
    #[arg(long, value_name = "KIB")]
    pub max_download_speed: Option<u64>,
    /// Global upload cap, in KiB/s.
    #[arg(long, value_name = "KIB")]
    pub max_upload_speed: Option<u64>,
    /// Size of the chunks sent, 19..=65535 bytes.
    #[arg(long, value_name = "BYTES")]
    pub binary_chunks_size: Option<usize>,
    /// Memory for partially received messages, all connections together,
    /// in MiB: a connection whose large message would exceed it stops
    /// reading until others finish [default: 32].
    #[arg(long, value_name = "MIB")]
    pub partial_message_budget: Option<usize>,
    /// Local peer discovery over UDP: announce to and listen on this
    /// (broadcast) IPv4 address, e.g. 255.255.255.255:10732.
    #[arg(long, value_name = "ADDR:PORT")]
    pub discovery_addr: Option<String>,
    /// No maintenance: no automatic connection or disconnection.
    #[arg(long)]
    #[serde(default)]
    pub disable_p2p_maintenance: bool,
    /// Neither ask nor answer swaps.
    #[arg(long)]
    #[serde(default)]
    pub disable_p2p_swap: bool,
    /// Neither ask nor answer Bootstrap/Advertise gossip.
    #[arg(long)]
    #[serde(default)]
    pub disable_peer_discovery: bool,
    /// RPC and /metrics address [default: 127.0.0.1:8732].
    #[arg(long, value_name = "ADDR:PORT")]
    pub rpc_addr: Option<String>,
    /// Broadcast a Text ping every SECONDS (0 = off) [default: 0].
    #[arg(long, value_name = "SECONDS")]
    pub ping_interval: Option<f64>,
}

impl Settings {
    /// `self` (the flags) over `file`.
    pub fn over(self, file: Settings) -> Settings {
        Settings {
            net_addr: self.net_addr.or(file.net_addr),
            advertised_net_port: self.advertised_net_port.or(file.advertised_net_port),
            peer: if self.peer.is_empty() {
                file.peer
            } else {
                self.peer
            },
            network: self.network.or(file.network),
            chain_name: self.chain_name.or(file.chain_name),
            chain_id: self.chain_id.or(file.chain_id),
            no_bootstrap_peers: self.no_bootstrap_peers || file.no_bootstrap_peers,
            disable_mempool: self.disable_mempool || file.disable_mempool,
            expected_pow: self.expected_pow.or(file.expected_pow),
            private_mode: self.private_mode || file.private_mode,
            connections: self.connections.or(file.connections),
            min_connections: self.min_connections.or(file.min_connections),
            expected_connections: self.expected_connections.or(file.expected_connections),
            max_connections: self.max_connections.or(file.max_connections),
            max_incoming_connections: self
                .max_incoming_connections
                .or(file.max_incoming_connections),
            max_incoming_connections_per_ip: self
                .max_incoming_connections_per_ip
                .or(file.max_incoming_connections_per_ip),
            max_download_speed: self.max_download_speed.or(file.max_download_speed),
            max_upload_speed: self.max_upload_speed.or(file.max_upload_speed),
            binary_chunks_size: self.binary_chunks_size.or(file.binary_chunks_size),
            partial_message_budget: self.partial_message_budget.or(file.partial_message_budget),
            discovery_addr: self.discovery_addr.or(file.discovery_addr),
            disable_p2p_maintenance: self.disable_p2p_maintenance || file.disable_p2p_maintenance,
            disable_p2p_swap: self.disable_p2p_swap || file.disable_p2p_swap,
            disable_peer_discovery: self.disable_peer_discovery || file.disable_peer_discovery,
            rpc_addr: self.rpc_addr.or(file.rpc_addr),
            ping_interval: self.ping_interval.or(file.ping_interval),
        }
    }
}

/// Reads a config file.
pub fn read_file(path: &Path) -> Result<Settings, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
}

/// `run`'s settings, checked.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub net_addr: SocketAddr,
    pub advertised_port: Option<u16>,
    pub trusted_points: Vec<(Point, Option<PeerId>)>,
    pub bootstrap_hosts: Vec<String>,
    pub network: Network,
    pub disable_mempool: bool,
    pub expected_pow: f64,
    pub private_mode: bool,
    pub limits: Limits,
    pub discovery_addr: Option<SocketAddr>,
    pub disable_peer_discovery: bool,
    pub rpc_addr: SocketAddr,
    pub ping_interval: Option<Duration>,
}

/// Parses `ADDR:PORT` (an IP literal, IPv6 in brackets).
pub fn parse_addr(flag: &str, s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("invalid {flag} {s:?}: expected ADDR:PORT, e.g. 127.0.0.1:9732 or [::]:9732")
    })
}

/// Parses `POINT[#PEER_ID]`, resolving a host name.
pub fn parse_peer(s: &str) -> Result<(Point, Option<PeerId>), String> {
    let bad = |why: String| format!("invalid --peer {s:?}: {why}");
    let (main, id) = match s.split_once('#') {
        Some((main, id)) => {
            let id = id
                .parse::<PeerId>()
                .map_err(|_| bad(format!("{id:?} is not a peer id (idt…/ids…)")))?;
            (main, Some(id))
        }
        None => (s, None),
    };
    match main.parse::<Point>() {
        Ok(p) => Ok((p, id)),
        Err(PointParseError::InvalidAddress(_)) if !main.starts_with('[') => {
            // A host name: resolve it, preferring IPv4.
            let addrs: Vec<SocketAddr> = main
                .to_socket_addrs()
                .map_err(|e| bad(format!("cannot resolve host: {e}")))?
                .collect();
            let addr = addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or(addrs.first())
                .ok_or_else(|| bad("host resolves to no address".into()))?;
            Ok((Point::from(*addr), id))
        }
        Err(PointParseError::MissingPort(_)) => Err(bad("missing :PORT".into())),
        Err(PointParseError::InvalidPort(_)) => Err(bad("the port must be in 0..=65535".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Limits from `--connections N`: min N/2 (1 when N = 1), expected N, max
/// 3N/2, known tables (8N, 6N).
pub fn apply_connections(limits: &mut Limits, n: usize) {
    limits.min_connections = if n == 1 { 1 } else { n / 2 };
    limits.expected_connections = n;
    limits.max_connections = 3 * n / 2;
    limits.max_known_points = Some((8 * n.max(1), 6 * n.max(1)));
    limits.max_known_peer_ids = Some((8 * n.max(1), 6 * n.max(1)));
}

impl Settings {
    /// Checks everything and applies the defaults.
    pub fn finish(self) -> Result<RunConfig, String> {
        let net_addr = parse_addr(
            "--net-addr",
            self.net_addr.as_deref().unwrap_or("[::]:9732"),
        )?;
        let rpc_addr = parse_addr(
            "--rpc-addr",
            self.rpc_addr.as_deref().unwrap_or("127.0.0.1:8732"),
        )?;
        let discovery_addr = self
            .discovery_addr
            .as_deref()
            .map(|s| parse_addr("--discovery-addr", s))
            .transpose()?;
        if let Some(a) = discovery_addr {
            if !a.is_ipv4() {
                return Err(format!("invalid --discovery-addr {a}: must be an IPv4 address, e.g. 255.255.255.255:10732"));
            }
        }
        let trusted_points = self
            .peer
            .iter()
            .map(|p| parse_peer(p))
            .collect::<Result<Vec<_>, _>>()?;
        let network = Network::from_flags(
            self.network.unwrap_or(NetworkName::Sandbox),
            self.chain_name,
            self.chain_id,
        )?;
        let bootstrap_hosts = if self.no_bootstrap_peers {
            vec![]
        } else {
            network.bootstrap_peers().to_vec()
        };
        let expected_pow = self.expected_pow.unwrap_or(26.0);
        if !(0.0..=256.0).contains(&expected_pow) {
            return Err(format!(
                "invalid --expected-pow {expected_pow}: must be in 0..=256"
            ));
        }
        let mut limits = Limits::default();
        if let Some(n) = self.connections {
            if n == 0 || n > 100 {
                return Err(format!("invalid --connections {n}: must be in 1..=100"));
            }
            apply_connections(&mut limits, n);
        }
        if let Some(n) = self.min_connections {
            limits.min_connections = n;
        }
        if let Some(n) = self.expected_connections {
            limits.expected_connections = n;
        }
        if let Some(n) = self.max_connections {
            limits.max_connections = n;
        }
        if let Some(n) = self.max_incoming_connections {
            limits.max_incoming_connections = n;
        }
        if let Some(n) = self.max_incoming_connections_per_ip {
            limits.max_incoming_connections_per_ip = n;
        }
        if !(limits.min_connections <= limits.expected_connections
            && limits.expected_connections <= limits.max_connections)
        {
            return Err(format!(
                "invalid connection limits: need min ({}) <= expected ({}) <= max ({})",
                limits.min_connections, limits.expected_connections, limits.max_connections
            ));
        }
        limits.max_download_speed = self.max_download_speed.map(|k| k * 1024);
        limits.max_upload_speed = self.max_upload_speed.map(|k| k * 1024);
        if let Some(size) = self.binary_chunks_size {
            if !(19..=65_535).contains(&size) {
                return Err(format!(
                    "invalid --binary-chunks-size {size}: must be in 19..=65535 bytes"
                ));
            }
            limits.binary_chunks_size = Some(size);
        }
        if let Some(mib) = self.partial_message_budget {
            if !(1..=1 << 20).contains(&mib) {
                return Err(format!(
                    "invalid --partial-message-budget {mib}: must be in 1..=1048576 MiB"
                ));
            }
            limits.partial_message_budget = mib << 20;
        }
        if self.disable_p2p_maintenance {
            limits.maintenance_idle_time = None;
        }
        if self.disable_p2p_swap {
            limits.swap_linger = None;
        }
        limits.validate().map_err(|e| e.to_string())?;
        let ping_interval = match self.ping_interval {
            None => None,
            Some(s) if s.is_finite() && s >= 0.0 => (s > 0.0).then(|| Duration::from_secs_f64(s)),
            Some(s) => return Err(format!("invalid --ping-interval {s}: must be >= 0 seconds")),
        };
        Ok(RunConfig {
            net_addr,
            advertised_port: self.advertised_net_port,
            trusted_points,
            bootstrap_hosts,
            // octez-p2p-node announces `disable_mempool`: its network has none.
            disable_mempool: self.disable_mempool || network.chain_id().is_none(),
            network,
            expected_pow,
            private_mode: self.private_mode,
            limits,
            discovery_addr,
            disable_peer_discovery: self.disable_peer_discovery,
            rpc_addr,
            ping_interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_shortcut_matches_octez() {
        let mut l = Limits::default();
        apply_connections(&mut l, 1);
        assert_eq!(
            (l.min_connections, l.expected_connections, l.max_connections),
            (1, 1, 1)
        );
        apply_connections(&mut l, 4);
        assert_eq!(
            (l.min_connections, l.expected_connections, l.max_connections),
            (2, 4, 6)
        );
        assert_eq!(l.max_known_points, Some((32, 24)));
    }

    #[test]
    fn peers_parse_with_ids_and_host_names() {
        let (p, id) = parse_peer("127.0.0.1:9732").unwrap();
        assert_eq!(p.to_string(), "127.0.0.1:9732");
        assert_eq!(id, None);
        let (p, _) = parse_peer("localhost:9732").unwrap();
        assert_eq!(p.port(), 9732);
        assert!(p.ip().is_loopback());
        assert!(parse_peer("127.0.0.1")
            .unwrap_err()
            .contains("missing :PORT"));
        assert!(parse_peer("127.0.0.1:99999").is_err());
        assert!(parse_peer("127.0.0.1:1#nope").is_err());
    }

    #[test]
    fn flags_win_over_the_file() {
        let file: Settings = serde_json::from_str(
            r#"{"net-addr": "127.0.0.1:1", "peers": ["127.0.0.1:2"], "connections": 4}"#,
        )
        .unwrap();
        let flags = Settings {
            net_addr: Some("127.0.0.1:3".into()),
            ..Settings::default()
        };
        let c = flags.over(file).finish().unwrap();
        assert_eq!(c.net_addr.port(), 3);
        assert_eq!(c.trusted_points.len(), 1);
        assert_eq!(c.limits.expected_connections, 4);
        assert!(serde_json::from_str::<Settings>(r#"{"bogus": 1}"#).is_err());
        let file: Settings = serde_json::from_str(r#"{"partial-message-budget": 8}"#).unwrap();
        let c = Settings::default().over(file).finish().unwrap();
        assert_eq!(c.limits.partial_message_budget, 8 << 20);
        assert_eq!(
            Settings::default()
                .finish()
                .unwrap()
                .limits
                .partial_message_budget,
            32 << 20
        );
        let zero = Settings {
            partial_message_budget: Some(0),
            ..Settings::default()
        };
        assert!(zero.finish().is_err());
    }
}
