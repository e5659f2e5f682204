//! Many pools in one process (issues 5 and 16): a network of nodes on the
//! in-memory transport, for tests and simulations. Run it on a
//! current-thread runtime with tokio's time paused: the clock is then
//! virtual (it jumps whenever every task waits), and with a fixed seed a
//! run is reproducible.
//!
//! With [`SimConfig::links`] the nodes talk over a
//! [`LinkModel`] (latency by region, jitter,
//! loss, bandwidth), some behind NAT ([`SimConfig::nat`]); the network can
//! be partitioned and healed ([`Simulation::partition`]), and nodes
//! replaced ([`Simulation::replace`]: a graceful leave or a crash, then a
//! new node in the slot). [`Gossip`] floods application messages to
//! measure how fast news travels.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use tezos_p2p_wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
use tezos_p2p_wire::message::{OctezMetadata, RawMessage};
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::version::{ChainName, SupportedVersions};

use crate::net::{Config, Net, NetError};
use crate::pool::events::EventKind;
use crate::pool::limits::Limits;
use crate::socket::transport::{HostProfile, LinkModel, MemoryNetwork, Transport};

mod gossip;

pub use gossip::{reach_time, Gossip, GOSSIP_TAG};

/// The pools of a simulation.
pub type SimNet = Net<RawMessage, OctezMetadata, ()>;

/// The shape of a simulated network.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes (slots: a replaced node's successor takes its slot).
    pub nodes: usize,
    /// Limits of every node (connection bounds, maintenance idle time…).
    pub limits: Limits,
    /// Seed of every random choice (keys, pools' RNGs, links, churn).
    pub seed: u64,
    /// Listening port of every node (each has its own IP).
    pub port: u16,
    /// Delay between two nodes' activations: a network whose nodes all
    /// dial node 0 at the same instant overflows its incoming-handshake
    /// limit, and the refused nodes, backing off in lockstep, come back
    /// together (a thundering herd that kept a quarter of a 1 000-node
    /// network isolated for an hour of virtual time). `ZERO`: all at once.
    pub join_every: Duration,
    /// Points each joining node knows: node 0 and up to `known - 1` other
    /// nodes already there (public ones, drawn at random). At least 1.
    pub known: usize,
    /// The links between nodes; `None`: instant links without limits.
    pub links: Option<LinkModel>,
    /// Upload and download rates of every node, in bytes per second
    /// (with [`links`](Self::links) only).
    pub upload: Option<u64>,
    /// See [`upload`](Self::upload).
    pub download: Option<u64>,
    /// Fraction of nodes behind NAT, drawn at random (node 0, the
    /// bootstrap node, is always reachable; with links only).
    pub nat: f64,
}

impl SimConfig {
    /// `nodes` nodes with min/expected/max connections, instant links.
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
            known: 1,
            links: None,
            upload: None,
            download: None,
            nat: 0.0,
        }
    }

    /// Nodes spread over the five regions of
    /// [`LinkModel::five_regions`] (one-way median `median`, 10 % jitter),
    /// with 20 Mbit/s up and 100 Mbit/s down each.
    pub fn internet(mut self, median: Duration) -> Self {
        self.links = Some(LinkModel::five_regions(self.seed, median));
        self.upload = Some(20_000_000 / 8);
        self.download = Some(100_000_000 / 8);
        self
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

/// What a slot holds now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// How many nodes held the slot before this one.
    pub generation: u32,
    /// The node's address.
    pub ip: IpAddr,
    /// Behind NAT.
    pub nat: bool,
    /// Its region in the link model.
    pub region: usize,
    /// Running (false between a leave and the next join).
    pub alive: bool,
}

/// Counts of one node, or of many added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NodeTotals {
    /// Bytes sent and received (handshakes included).
    pub bytes_sent: u64,
    /// See [`bytes_sent`](Self::bytes_sent).
    pub bytes_received: u64,
    /// P2P messages sent: Bootstrap, Advertise, Swap request, Swap ack.
    pub bootstrap: u64,
    /// See [`bootstrap`](Self::bootstrap).
    pub advertise: u64,
    /// See [`bootstrap`](Self::bootstrap).
    pub swap_request: u64,
    /// See [`bootstrap`](Self::bootstrap).
    pub swap_ack: u64,
    /// Connections established and ended.
    pub established: u64,
    /// See [`established`](Self::established).
    pub disconnections: u64,
    /// Outgoing connection attempts.
    pub dials: u64,
}

impl NodeTotals {
    /// Counts of `net` since it was created.
    pub fn of(net: &SimNet) -> Self {
        let count = |k: EventKind| net.event_count(k);
        let stat = net.global_stat();
        NodeTotals {
            bytes_sent: stat.total_sent,
            bytes_received: stat.total_recv,
            bootstrap: count(EventKind::BootstrapSent),
            advertise: count(EventKind::AdvertiseSent),
            swap_request: count(EventKind::SwapRequestSent),
            swap_ack: count(EventKind::SwapAckSent),
            established: count(EventKind::ConnectionEstablished),
            disconnections: count(EventKind::Disconnection),
            dials: count(EventKind::OutgoingConnection),
        }
    }

    /// P2P messages sent (Bootstrap, Advertise, Swap request and ack).
    pub fn p2p_messages(&self) -> u64 {
        self.bootstrap + self.advertise + self.swap_request + self.swap_ack
    }

    fn add(&mut self, o: &NodeTotals) {
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.bootstrap += o.bootstrap;
        self.advertise += o.advertise;
        self.swap_request += o.swap_request;
        self.swap_ack += o.swap_ack;
        self.established += o.established;
        self.disconnections += o.disconnections;
        self.dials += o.dials;
    }
}

/// How a node leaves its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Leave {
    /// Shuts down: its peers see its connections end at once.
    Graceful,
    /// Its host goes down: nothing more leaves it, and its peers' links
    /// to it are reset only after the user timeout (needs links; without
    /// them it is a graceful leave).
    Crash,
}

/// A running simulated network.
pub struct Simulation {
    /// The node of every slot, node 0 first (a slot whose node left keeps
    /// it, shut down, until the next join).
    pub nets: Vec<SimNet>,
    /// The shared in-memory network.
    pub network: MemoryNetwork,
    slots: Vec<Slot>,
    /// Counts of the nodes that left.
    retired: NodeTotals,
    rng: StdRng,
    cfg: SimConfig,
}

impl Simulation {
    /// Creates and activates every node, `join_every` apart.
    pub async fn start(cfg: SimConfig) -> Result<Self, NetError> {
        let sim = Self::create(cfg).await?;
        sim.activate().await;
        Ok(sim)
    }

    /// Creates every node without activating it (subscribe to events
    /// first, then [`activate`](Self::activate)).
    pub async fn create(cfg: SimConfig) -> Result<Self, NetError> {
        let network = match &cfg.links {
            Some(model) => MemoryNetwork::with_links(model.clone()),
            None => MemoryNetwork::new(),
        };
        let regions = cfg.links.as_ref().map_or(1, |m| m.latency.len().max(1));
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x005E_ED0F_5109);
        let mut sim = Simulation {
            nets: Vec::with_capacity(cfg.nodes),
            network,
            slots: Vec::with_capacity(cfg.nodes),
            retired: NodeTotals::default(),
            rng: StdRng::seed_from_u64(0),
            cfg,
        };
        for i in 0..sim.cfg.nodes {
            let nat = i > 0 && sim.cfg.links.is_some() && rng.gen::<f64>() < sim.cfg.nat;
            let region = rng.gen_range(0..regions);
            let slot = Slot {
                generation: 0,
                ip: node_ip(i),
                nat,
                region,
                alive: true,
            };
            let known = sim.known_points(&mut rng, i, i);
            let net = sim.node(i, &slot, known).await?;
            sim.slots.push(slot);
            sim.nets.push(net);
        }
        sim.rng = rng;
        Ok(sim)
    }

    /// The points a node joining slot `slot` knows: node 0 and up to
    /// `known - 1` public nodes among the first `among` slots.
    fn known_points(&self, rng: &mut StdRng, slot: usize, among: usize) -> Vec<Point> {
        let mut out = Vec::new();
        if slot != 0 {
            out.push(Point::new(self.slots[0].ip, self.cfg.port));
        }
        let candidates: Vec<usize> = (1..among.min(self.slots.len()))
            .filter(|&j| j != slot && self.slots[j].alive && !self.slots[j].nat)
            .collect();
        for _ in 1..self.cfg.known.max(1) {
            if candidates.is_empty() {
                break;
            }
            let j = candidates[rng.gen_range(0..candidates.len())];
            let p = Point::new(self.slots[j].ip, self.cfg.port);
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Creates the node of `slot` (not activated).
    async fn node(&self, index: usize, slot: &Slot, known: Vec<Point>) -> Result<SimNet, NetError> {
        let cfg = &self.cfg;
        self.network.set_host(
            slot.ip,
            HostProfile {
                region: slot.region,
                upload: cfg.upload,
                download: cfg.download,
                nat: slot.nat,
            },
        );
        let generation = u64::from(slot.generation);
        let seed = cfg
            .seed
            .wrapping_add(generation.wrapping_mul(0x1_0000_0001));
        let config = Config {
            listening_addr: Some(SocketAddr::new(slot.ip, cfg.port)),
            advertised_port: None,
            trusted_points: known.into_iter().map(|p| (p, None)).collect(),
            peers_file: None,
            private_mode: false,
            identity: Arc::new(node_identity(seed, index)),
            proof_of_work_target: PowTarget::new(0.0).expect("0 is a valid level"),
            versions: SupportedVersions::octez(ChainName::from("SIMULATED_TEZOS")),
            metadata: OctezMetadata::default(),
            reconnection: Default::default(),
            disable_peer_discovery: false,
            transport: Transport::Memory(self.network.with_local_ip(slot.ip)),
            seed: Some(seed.wrapping_mul(1_000_003).wrapping_add(index as u64)),
        };
        Net::create(config, cfg.limits.clone()).await
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

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// What every slot holds.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Active connections of every node (0 for a slot whose node left).
    pub fn connection_counts(&self) -> Vec<usize> {
        self.nets
            .iter()
            .zip(&self.slots)
            .map(|(n, s)| if s.alive { n.active_connections() } else { 0 })
            .collect()
    }

    /// Whether a node with `n` connections is within its thresholds.
    pub fn within_thresholds(&self, n: usize) -> bool {
        let b = self.cfg.limits.bounds();
        b.min_threshold <= n && n <= b.max_threshold
    }

    /// Running nodes, and how many of them are within their thresholds.
    pub fn within(&self) -> (usize, usize) {
        let mut alive = 0;
        let mut within = 0;
        for (n, s) in self.nets.iter().zip(&self.slots) {
            if s.alive {
                alive += 1;
                if self.within_thresholds(n.active_connections()) {
                    within += 1;
                }
            }
        }
        (within, alive)
    }

    /// Whether every running node is within its maintenance thresholds.
    pub fn converged(&self) -> bool {
        let (within, alive) = self.within();
        within == alive
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

    /// Each node's neighbours (slot indices, sorted): the shape of the
    /// network. Empty for a slot whose node left.
    pub fn topology(&self) -> Vec<Vec<usize>> {
        let index: HashMap<_, _> = self
            .nets
            .iter()
            .enumerate()
            .filter(|(i, _)| self.slots[*i].alive)
            .map(|(i, n)| (n.peer_id(), i))
            .collect();
        self.nets
            .iter()
            .zip(&self.slots)
            .map(|(n, s)| {
                if !s.alive {
                    return Vec::new();
                }
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

    /// The sizes of the connected components of the running nodes,
    /// largest first (a connection counts when either end has it).
    pub fn components(&self) -> Vec<usize> {
        let topology = self.topology();
        let mut parent: Vec<usize> = (0..topology.len()).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        for (a, ns) in topology.iter().enumerate() {
            for &b in ns {
                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                if ra != rb {
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
        let mut sizes: HashMap<usize, usize> = HashMap::new();
        for i in 0..topology.len() {
            if self.slots[i].alive {
                *sizes.entry(find(&mut parent, i)).or_default() += 1;
            }
        }
        let mut v: Vec<usize> = sizes.into_values().collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }

    /// Bytes sent by all nodes since the start (those that left included).
    pub fn bytes_sent(&self) -> u64 {
        self.totals().bytes_sent
    }

    /// Counts of every running node, by slot (`None` for a slot whose
    /// node left).
    pub fn node_totals(&self) -> Vec<Option<NodeTotals>> {
        self.nets
            .iter()
            .zip(&self.slots)
            .map(|(n, s)| s.alive.then(|| NodeTotals::of(n)))
            .collect()
    }

    /// Counts of every node since the start, those that left included.
    pub fn totals(&self) -> NodeTotals {
        let mut t = self.retired;
        for n in self.node_totals().iter().flatten() {
            t.add(n);
        }
        t
    }

    /// How many events of each kind the running nodes logged, by kind
    /// name (nodes that left are not counted).
    pub fn event_totals(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for (n, s) in self.nets.iter().zip(&self.slots) {
            if s.alive {
                for &k in EventKind::ALL {
                    *out.entry(format!("{k:?}")).or_default() += n.event_count(k);
                }
            }
        }
        out
    }

    /// Partitions the network: slots for which `side` returns the same
    /// number reach each other (see [`MemoryNetwork::partition`]). Nodes
    /// that join later are on side 0. Needs links.
    pub fn partition(&self, side: impl Fn(usize) -> u32) {
        let sides: HashMap<IpAddr, u32> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.ip, side(i)))
            .collect();
        self.network
            .partition(move |ip| sides.get(&ip).copied().unwrap_or(0));
    }

    /// Ends the partition.
    pub fn heal(&self) {
        self.network.heal();
    }

    /// The node of `slot` leaves (it stays out until [`join`](Self::join)).
    pub async fn leave(&mut self, slot: usize, how: Leave) {
        if !self.slots[slot].alive {
            return;
        }
        self.slots[slot].alive = false;
        if how == Leave::Crash {
            self.network.set_down(self.slots[slot].ip, true);
        }
        let net = &self.nets[slot];
        net.shutdown().await;
        let t = NodeTotals::of(net);
        self.retired.add(&t);
    }

    /// A new node joins in `slot` (whose node must have left): a new
    /// identity and address, the same region and NAT status, knowing node
    /// 0 and up to [`SimConfig::known`]` - 1` running public nodes.
    /// Activated at once.
    pub async fn join(&mut self, slot: usize) -> Result<(), NetError> {
        assert!(!self.slots[slot].alive, "slot {slot} is taken");
        let generation = self.slots[slot].generation + 1;
        let n = self.cfg.nodes;
        let ip = node_ip(generation as usize * n + slot);
        let next = Slot {
            generation,
            ip,
            alive: true,
            ..self.slots[slot].clone()
        };
        let mut rng = std::mem::replace(&mut self.rng, StdRng::seed_from_u64(0));
        let known = self.known_points(&mut rng, slot, self.slots.len());
        self.rng = rng;
        let net = self.node(slot, &next, known).await?;
        net.activate();
        self.slots[slot] = next;
        self.nets[slot] = net;
        Ok(())
    }

    /// The node of `slot` leaves and a new one takes its place.
    pub async fn replace(&mut self, slot: usize, how: Leave) -> Result<(), NetError> {
        self.leave(slot, how).await;
        self.join(slot).await
    }

    /// A draw from the simulation's seeded generator (for scenarios).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Shuts every node down.
    pub async fn shutdown(self) {
        for (n, s) in self.nets.iter().zip(&self.slots) {
            if s.alive {
                n.shutdown().await;
            }
        }
    }
}
