//! Many pools in one process (issue 5): a network of nodes on the
//! in-memory transport, each knowing only node 0, for tests and
//! simulations. Run it on a current-thread runtime with tokio's time
//! paused: the clock is then virtual (it jumps whenever every task waits),
//! and with a fixed seed a run is reproducible.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tezos_p2p_wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
use tezos_p2p_wire::message::{OctezMetadata, RawMessage};
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::version::{ChainName, SupportedVersions};

use crate::net::{Config, Net, NetError};
use crate::pool::limits::Limits;
use crate::socket::transport::{MemoryNetwork, Transport};

/// The pools of a simulation.
pub type SimNet = Net<RawMessage, OctezMetadata, ()>;

/// The shape of a simulated network.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Limits of every node (connection bounds, maintenance idle time…).
    pub limits: Limits,
    /// Seed of every random choice (keys, pools' RNGs).
    pub seed: u64,
    /// Listening port of every node (each has its own IP).
    pub port: u16,
    /// Delay between two nodes' activations: a network whose nodes all
    /// dial node 0 at the same instant overflows its incoming-handshake
    /// limit, and the refused nodes, backing off in lockstep, come back
    /// together (a thundering herd that kept a quarter of a 1 000-node
    /// network isolated for an hour of virtual time). `ZERO`: all at once.
    pub join_every: Duration,
}

impl SimConfig {
    /// `nodes` nodes with min/expected/max connections.
    pub fn new(nodes: usize, min: usize, expected: usize, max: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            limits: Limits {
                min_connections: min,
                expected_connections: expected,
                max_connections: max,
                max_incoming_connections: max.max(20),
                maintenance_idle_time: Some(Duration::from_secs(10)),
                // The default 2 MiB greylist filter per node is most of a
                // large simulation's memory (glibc hands out zeroed memory
                // that is already resident once its mmap threshold rose).
                ip_greylist_size_in_kilobytes: 64,
                ..Limits::default()
            },
            seed,
            port: 9732,
            join_every: Duration::from_millis(10),
        }
    }
}

/// The IP of node `i`: distinct per node, in 10.0.0.0/8 (virtual: nothing
/// leaves the process).
pub fn node_ip(i: usize) -> IpAddr {
    let i = i as u32 + 1;
    IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8))
}

/// A deterministic identity at PoW 0 for node `i`.
pub fn node_identity(seed: u64, i: usize) -> Identity {
    let mut sk = [0u8; 32];
    sk[..8].copy_from_slice(&seed.to_be_bytes());
    sk[8..16].copy_from_slice(&(i as u64).to_be_bytes());
    sk[31] = 1;
    Identity::from_secret_key(SecretKey(sk), PowStamp([0; 24]))
}

/// A running simulated network.
pub struct Simulation {
    /// The nodes, node 0 first.
    pub nets: Vec<SimNet>,
    /// The shared in-memory network.
    pub network: MemoryNetwork,
    cfg: SimConfig,
}

impl Simulation {
    /// Creates and activates every node, `join_every` apart; each knows
    /// only node 0.
    pub async fn start(cfg: SimConfig) -> Result<Self, NetError> {
        let sim = Self::create(cfg).await?;
        sim.activate().await;
        Ok(sim)
    }

    /// Creates every node without activating it (subscribe to events
    /// first, then [`activate`](Self::activate)).
    pub async fn create(cfg: SimConfig) -> Result<Self, NetError> {
        let network = MemoryNetwork::new();
        let first = Point::new(node_ip(0), cfg.port);
        let mut nets = Vec::with_capacity(cfg.nodes);
        for i in 0..cfg.nodes {
            let config = Config {
                listening_addr: Some(SocketAddr::new(node_ip(i), cfg.port)),
                advertised_port: None,
                trusted_points: if i == 0 { vec![] } else { vec![(first, None)] },
                peers_file: None,
                private_mode: false,
                identity: Arc::new(node_identity(cfg.seed, i)),
                proof_of_work_target: PowTarget::new(0.0).expect("0 is a valid level"),
                versions: SupportedVersions::octez(ChainName::from("SIMULATED_TEZOS")),
                metadata: OctezMetadata::default(),
                reconnection: Default::default(),
                disable_peer_discovery: false,
                transport: Transport::Memory(network.with_local_ip(node_ip(i))),
                seed: Some(cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64)),
            };
            nets.push(Net::create(config, cfg.limits.clone()).await?);
        }
        Ok(Simulation { nets, network, cfg })
    }

    /// Activates the nodes in order, `join_every` apart.
    pub async fn activate(&self) {
        for (i, n) in self.nets.iter().enumerate() {
            if i > 0 && !self.cfg.join_every.is_zero() {
                tokio::time::sleep(self.cfg.join_every).await;
            }
            n.activate();
        }
    }

    /// Active connections of every node.
    pub fn connection_counts(&self) -> Vec<usize> {
        self.nets.iter().map(|n| n.active_connections()).collect()
    }

    /// Whether every node is within its maintenance thresholds.
    pub fn converged(&self) -> bool {
        let b = self.cfg.limits.bounds();
        self.connection_counts()
            .iter()
            .all(|&n| b.min_threshold <= n && n <= b.max_threshold)
    }

    /// Steps the (virtual) clock until every node is within its thresholds;
    /// returns the time it took, or `None` after `limit`.
    pub async fn run_until_converged(&self, limit: Duration, step: Duration) -> Option<Duration> {
        let start = tokio::time::Instant::now();
        loop {
            if self.converged() {
                return Some(start.elapsed());
            }
            if start.elapsed() >= limit {
                return None;
            }
            tokio::time::sleep(step).await;
        }
    }

    /// Each node's neighbours (node indices, sorted): the shape of the
    /// network.
    pub fn topology(&self) -> Vec<Vec<usize>> {
        let index: std::collections::HashMap<_, _> = self
            .nets
            .iter()
            .enumerate()
            .map(|(i, n)| (n.peer_id(), i))
            .collect();
        self.nets
            .iter()
            .map(|n| {
                let mut v: Vec<usize> = n
                    .connections()
                    .iter()
                    .filter_map(|c| index.get(&c.peer_id()).copied())
                    .collect();
                v.sort_unstable();
                v
            })
            .collect()
    }

    /// Bytes sent by all nodes since the start.
    pub fn bytes_sent(&self) -> u64 {
        self.nets.iter().map(|n| n.global_stat().total_sent).sum()
    }

    /// Shuts every node down.
    pub async fn shutdown(self) {
        for n in &self.nets {
            n.shutdown().await;
        }
    }
}
