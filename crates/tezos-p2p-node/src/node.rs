//! A running node: the pool, the inbox of received messages, counters for
//! the metrics, and the background tasks (receive loop, event counting,
//! first dial of the trusted points, ping).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tracing::{debug, info};

use tezos_p2p::discovery::DiscoveryConfig;
use tezos_p2p::events::P2pEvent;
use tezos_p2p::limits::Limits;
use tezos_p2p::peers::OctezPeerMetadata;
use tezos_p2p::transport::{TcpOptions, Transport};
use tezos_p2p::{Config, Net, NetError};
use tezos_p2p_wire::identity::{Identity, PeerId, PowTarget};
use tezos_p2p_wire::message::OctezMetadata;
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::version::{ChainName, SupportedVersions};

use crate::message::NodeMessage;

/// The pool type of the node.
pub type P2p = Net<NodeMessage, OctezMetadata, OctezPeerMetadata>;

/// Messages kept for `GET /messages`.
pub const INBOX_SIZE: usize = 1000;

/// A received application message.
#[derive(Debug, Clone)]
pub struct Received {
    /// Sequence number, from 1.
    pub seq: u64,
    /// The sender.
    pub peer_id: PeerId,
    /// The message's tag.
    pub tag: u16,
    /// Its size on the wire.
    pub size: usize,
    /// Its body after the tag.
    pub body: Vec<u8>,
    /// Its text, for a Text message.
    pub text: Option<String>,
    /// When it arrived.
    pub received_at: SystemTime,
}

/// The most recent received messages.
#[derive(Debug, Default)]
pub struct Inbox {
    next_seq: u64,
    items: VecDeque<Received>,
}

impl Inbox {
    /// Messages after `since`, oldest first.
    pub fn since(&self, since: u64) -> Vec<Received> {
        self.items
            .iter()
            .filter(|m| m.seq > since)
            .cloned()
            .collect()
    }
}

/// Counters behind the `octez_p2p_*` metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub broadcast_message_sent: AtomicU64,
    pub user_message_sent: AtomicU64,
    pub user_message_received: AtomicU64,
    pub user_message_received_error: AtomicU64,
    pub user_bytes_received: AtomicU64,
    pub advertise_received: AtomicU64,
    pub advertise_sent: AtomicU64,
    pub bootstrap_received: AtomicU64,
    pub bootstrap_sent: AtomicU64,
    pub swap_requests_sent: AtomicU64,
    pub swap_requests_received: AtomicU64,
    pub swap_ack_sent: AtomicU64,
    pub swap_ack_received: AtomicU64,
    pub swap_ignored: AtomicU64,
    pub swap_success: AtomicU64,
    pub swap_fail: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn count(&self, e: &P2pEvent) {
        use P2pEvent::*;
        match e {
            SwapRequestReceived { .. } => inc(&self.swap_requests_received),
            SwapAckReceived { .. } => inc(&self.swap_ack_received),
            SwapRequestSent { .. } => inc(&self.swap_requests_sent),
            SwapAckSent { .. } => inc(&self.swap_ack_sent),
            SwapRequestIgnored { .. } => inc(&self.swap_ignored),
            SwapSuccess { .. } => inc(&self.swap_success),
            SwapFailure { .. } => inc(&self.swap_fail),
            BootstrapSent { .. } => inc(&self.bootstrap_sent),
            BootstrapReceived { .. } => inc(&self.bootstrap_received),
            AdvertiseSent { .. } => inc(&self.advertise_sent),
            AdvertiseReceived { .. } => inc(&self.advertise_received),
            _ => {}
        }
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeParams {
    pub identity: Arc<Identity>,
    pub listen: SocketAddr,
    pub advertised_port: Option<u16>,
    pub trusted_points: Vec<(Point, Option<PeerId>)>,
    pub peers_file: Option<PathBuf>,
    pub chain_name: ChainName,
    pub expected_pow: f64,
    pub private_mode: bool,
    pub disable_peer_discovery: bool,
    pub limits: Limits,
    pub ping_interval: Option<Duration>,
    /// Local discovery's (broadcast) address, if on.
    pub discovery: Option<SocketAddr>,
}

/// A running node.
pub struct Node {
    /// The pool.
    pub net: P2p,
    /// Received messages.
    pub inbox: Mutex<Inbox>,
    /// Metric counters.
    pub counters: Counters,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// How many times the trusted points are dialed at start (once a second)
/// until a connection runs.
const FIRST_DIALS: usize = 10;

impl Node {
    /// Creates and activates the pool and starts the node's tasks.
    pub async fn start(p: NodeParams) -> Result<Arc<Node>, String> {
        let target = PowTarget::new(p.expected_pow)
            .map_err(|_| format!("invalid proof-of-work level {}", p.expected_pow))?;
        let config = Config {
            listening_addr: Some(p.listen),
            advertised_port: p.advertised_port,
            trusted_points: p.trusted_points.clone(),
            peers_file: p.peers_file.clone(),
            private_mode: p.private_mode,
            identity: p.identity.clone(),
            proof_of_work_target: target,
            versions: SupportedVersions::octez(p.chain_name.clone()),
            metadata: OctezMetadata {
                disable_mempool: false,
                private_node: p.private_mode,
            },
            reconnection: Default::default(),
            disable_peer_discovery: p.disable_peer_discovery,
            transport: Transport::Tcp(TcpOptions::from_env()),
            seed: None,
        };
        let net: P2p = Net::create(config, p.limits.clone())
            .await
            .map_err(|e| match e {
                NetError::FailedToOpenListeningSocket { addr, reason } => {
                    format!("cannot listen on {addr}: {reason}")
                }
                e => format!("cannot create the pool: {e}"),
            })?;
        net.activate();
        if let Some(addr) = p.discovery {
            net.start_discovery(DiscoveryConfig {
                addr,
                trust_discovered_peers: false,
            })
            .map_err(|e| format!("cannot start local discovery on {addr}: {e}"))?;
        }
        let node = Arc::new(Node {
            net,
            inbox: Mutex::new(Inbox::default()),
            counters: Counters::default(),
            tasks: Mutex::new(Vec::new()),
        });
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(recv_loop(node.clone())));
        tasks.push(tokio::spawn(count_events(node.clone())));
        for (point, expected) in p.trusted_points {
            tasks.push(tokio::spawn(first_dial(node.net.clone(), point, expected)));
        }
        if let Some(every) = p.ping_interval {
            tasks.push(tokio::spawn(ping_loop(node.clone(), every)));
        }
        *node.tasks.lock().unwrap() = tasks;
        Ok(node)
    }

    /// Broadcasts `msg` to every running connection; returns to how many
    /// it was queued.
    pub fn broadcast(&self, msg: &NodeMessage) -> Result<usize, NetError> {
        let n = self.net.broadcast(msg, None, None)?;
        inc(&self.counters.broadcast_message_sent);
        self.counters
            .user_message_sent
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    /// Sends `msg` to `peer`.
    pub async fn send(&self, peer: &PeerId, msg: NodeMessage) -> Result<(), NetError> {
        let conn = self
            .net
            .find_connection_by_peer_id(peer)
            .ok_or(NetError::NotConnected)?;
        self.net.send(&conn, msg).await?;
        inc(&self.counters.user_message_sent);
        Ok(())
    }

    /// Stops the tasks and the pool (which saves the peers file).
    pub async fn shutdown(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        self.net.shutdown().await;
    }
}

async fn recv_loop(node: Arc<Node>) {
    loop {
        let (conn, size, msg) = node.net.recv_any().await;
        let peer_id = conn.peer_id();
        let text = msg.text().map(str::to_owned);
        match &text {
            Some(t) => info!(peer = %peer_id, text = %t, "text message received"),
            None => debug!(peer = %peer_id, tag = msg_tag(&msg), size, "message received"),
        }
        inc(&node.counters.user_message_received);
        node.counters
            .user_bytes_received
            .fetch_add(size as u64, Ordering::Relaxed);
        let mut inbox = node.inbox.lock().unwrap();
        inbox.next_seq += 1;
        let seq = inbox.next_seq;
        if inbox.items.len() == INBOX_SIZE {
            inbox.items.pop_front();
        }
        inbox.items.push_back(Received {
            seq,
            peer_id,
            tag: msg_tag(&msg),
            size,
            body: msg.body(),
            text,
            received_at: SystemTime::now(),
        });
    }
}

fn msg_tag(m: &NodeMessage) -> u16 {
    use tezos_p2p_wire::message::AppMessage;
    m.tag()
}

async fn count_events(node: Arc<Node>) {
    let mut rx = node.net.events();
    loop {
        match rx.recv().await {
            Ok(e) => {
                debug!(event = ?e, "p2p event");
                node.counters.count(&e);
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Dials a trusted point at start, so that it is contacted even without the
/// maintenance; gives up after a few attempts (the maintenance, when on,
/// keeps trying).
async fn first_dial(net: P2p, point: Point, expected: Option<PeerId>) {
    for attempt in 0..FIRST_DIALS {
        if net.find_connection_by_point(&point).is_some()
            || expected.is_some_and(|p| net.find_connection_by_peer_id(&p).is_some())
        {
            return;
        }
        match net
            .connect(point, false, expected, Some(Duration::from_secs(5)))
            .await
        {
            Ok(c) => {
                info!(point = %point, peer = %c.peer_id(), "connected to trusted point");
                return;
            }
            Err(NetError::Connected(_)) => return,
            Err(e) => {
                debug!(point = %point, attempt, error = %e, "cannot connect to trusted point yet")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn ping_loop(node: Arc<Node>, every: Duration) {
    let mut n = 0u64;
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        n += 1;
        let msg = NodeMessage::Text(format!("ping {n} from {}", node.net.peer_id()));
        match node.broadcast(&msg) {
            Ok(k) => debug!(sent_to = k, "ping broadcast"),
            Err(e) => debug!(error = %e, "ping broadcast failed"),
        }
    }
}
