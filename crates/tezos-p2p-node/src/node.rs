//! A running node: the pool, the inbox of received messages, counters for
//! the metrics, the chain state on a Tezos chain, and the background tasks
//! (receive loop, event counting, first dial of the trusted points, ping).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tracing::{debug, info, warn, Instrument};

use serde_json::{Map, Value};
use tezos_p2p::discovery::DiscoveryConfig;
use tezos_p2p::events::P2pEvent;
use tezos_p2p::limits::Limits;
use tezos_p2p::net::PeerConnection;
use tezos_p2p::peers::OctezPeerMetadata;
use tezos_p2p::{Config, Net, NetError};
use tezos_p2p_wire::identity::PeerId;
use tezos_p2p_wire::message::{AppMessage, OctezMetadata};
use tezos_p2p_wire::point::Point;

use crate::chain::Chain;
use crate::network::Network;

/// A running connection of the node.
pub type Conn<M> = PeerConnection<M, OctezMetadata>;

/// An application message type the node can run with.
/// What the node needs of the application messages of its network: names
/// and JSON for the RPC, the ping, and the behaviour on a new connection
/// and on each message.
pub trait App: AppMessage + Clone + Sync {
    /// Octez's case title ("Text", "Current_head", …).
    fn name(&self) -> &'static str;

    /// The message in Octez's JSON.
    fn to_json(&self) -> Value;

    /// The fields `GET /messages` shows besides `seq`, `peer_id`, `tag`,
    /// `name`, `size`, `received_at` and `message`.
    fn extra_json(&self, _out: &mut Map<String, Value>) {}

    /// A message from a POST body: `{"tag": N, "hex": BODY}`, `{"hex":
    /// TAG_AND_BODY}`, or a form of the network's own.
    fn from_post(body: &Value) -> Result<Self, String>;

    /// What `--ping-interval` broadcasts, if anything.
    fn ping(_from: &PeerId) -> Option<Self> {
        None
    }

    /// Called on each new running connection, before any of its messages
    /// is read.
    fn on_connection(_node: &Node<Self>, _conn: &Arc<Conn<Self>>) {}

    /// Called on each received message.
    fn on_message(node: &Node<Self>, conn: &Arc<Conn<Self>>, msg: &Self);
}

/// The pool type of a node running `M`.
pub type P2p<M> = Net<M, OctezMetadata, OctezPeerMetadata>;

/// At most this many messages are kept for `GET /messages`…
pub const INBOX_LEN: usize = 1000;
/// …and at most this many bytes of them (sizes on the wire).
pub const INBOX_BYTES: usize = 16 << 20;

/// A received application message.
#[derive(Debug, Clone)]
pub struct Received<M> {
    /// Sequence number, from 1.
    pub seq: u64,
    /// The sender.
    pub peer_id: PeerId,
    /// Its size on the wire.
    pub size: usize,
    /// The message.
    pub msg: M,
    /// When it arrived.
    pub received_at: SystemTime,
}

/// The most recent received messages, bounded in number and bytes.
#[derive(Debug)]
pub struct Inbox<M> {
    next_seq: u64,
    bytes: usize,
    items: VecDeque<Received<M>>,
}

impl<M> Default for Inbox<M> {
    fn default() -> Self {
        Inbox {
            next_seq: 0,
            bytes: 0,
            items: VecDeque::new(),
        }
    }
}

impl<M: Clone> Inbox<M> {
    /// Messages after `since`, oldest first.
    pub fn since(&self, since: u64) -> Vec<Received<M>> {
        self.items
            .iter()
            .filter(|m| m.seq > since)
            .cloned()
            .collect()
    }

    fn push(&mut self, peer_id: PeerId, size: usize, msg: M) {
        self.next_seq += 1;
        while !self.items.is_empty()
            && (self.items.len() >= INBOX_LEN || self.bytes + size > INBOX_BYTES)
        {
            if let Some(old) = self.items.pop_front() {
                self.bytes -= old.size;
            }
        }
        self.bytes += size;
        self.items.push_back(Received {
            seq: self.next_seq,
            peer_id,
            size,
            msg,
            received_at: SystemTime::now(),
        });
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
    /// Application messages received and sent, per kind (Octez's case
    /// title).
    pub by_kind: Mutex<BTreeMap<&'static str, KindCount>>,
}

/// Messages of one kind received and sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct KindCount {
    /// Received.
    pub received: u64,
    /// Sent (queued).
    pub sent: u64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn kind(&self, name: &'static str, f: impl FnOnce(&mut KindCount)) {
        f(self
            .by_kind
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name)
            .or_default());
    }

    /// The per-kind counts.
    pub fn kinds(&self) -> BTreeMap<&'static str, KindCount> {
        self.by_kind
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// What a node needs to start: the pool's configuration and limits (from
/// [`crate::config::Settings::node_params`]), and what the node itself does
/// besides.
#[derive(Debug, Clone)]
pub struct NodeParams {
    /// The pool's configuration; its trusted points are also dialed at
    /// start.
    pub config: Config<OctezMetadata>,
    /// The pool's limits.
    pub limits: Limits,
    /// The network (the chain the shell follows, if any).
    pub network: Network,
    /// Host names to resolve and dial at start (bootstrap peers); one that
    /// does not resolve is a warning.
    pub bootstrap_hosts: Vec<String>,
    /// The period of the Text ping, if any.
    pub ping_interval: Option<Duration>,
    /// Local discovery's (broadcast) address, if on.
    pub discovery: Option<SocketAddr>,
}

/// A running node.
pub struct Node<M: App> {
    /// The pool.
    pub net: P2p<M>,
    /// The span of the node's own tasks and lines, `node{me=<peer id>}`
    /// (target `tezos_p2p_node::node`); the pool's are in `pool{me=…}`
    /// (target `tezos_p2p::pool::core`), so each filter keeps its span.
    pub span: tracing::Span,
    /// The network it is on.
    pub network: Network,
    /// The chain state, on a Tezos chain.
    pub chain: Option<Arc<Chain>>,
    /// Received messages.
    pub inbox: Mutex<Inbox<M>>,
    /// Metric counters.
    pub counters: Counters,
    /// When the node started.
    pub started_at: SystemTime,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// How many times the trusted points are dialed at start (once a second)
/// until a connection runs.
const FIRST_DIALS: usize = 10;

impl<M: App> Node<M> {
    /// Creates and activates the pool and starts the node's tasks.
    pub async fn start(p: NodeParams) -> Result<Arc<Node<M>>, String> {
        let trusted_points = p.config.trusted_points.clone();
        let net: P2p<M> = Net::create(p.config, p.limits).await.map_err(|e| match e {
            NetError::FailedToOpenListeningSocket { addr, source, .. } => {
                format!("cannot listen on {addr}: {source}")
            }
            e => format!("cannot create the pool: {e}"),
        })?;
        let span = tracing::info_span!("node", me = %net.peer_id());
        let node = Arc::new(Node {
            span,
            net,
            chain: p.network.chain_id().map(|id| Arc::new(Chain::new(id))),
            network: p.network.clone(),
            inbox: Mutex::new(Inbox::default()),
            counters: Counters::default(),
            started_at: SystemTime::now(),
            tasks: Mutex::new(Vec::new()),
        });
        // The hooks hold the node weakly: the pool holds the hooks.
        let weak: Weak<Node<M>> = Arc::downgrade(&node);
        node.net.on_new_connection(move |conn| {
            if let Some(node) = weak.upgrade() {
                node.span.in_scope(|| M::on_connection(&node, conn));
            }
        });
        // Octez counts a failed read of a connection's messages, that is
        // each connection that ends under its reader.
        let weak = Arc::downgrade(&node);
        node.net.on_disconnection(move |_| {
            if let Some(node) = weak.upgrade() {
                inc(&node.counters.user_message_received_error);
            }
        });
        if let Some(chain) = &node.chain {
            let chain = Arc::downgrade(chain);
            node.net.on_disconnection(move |conn| {
                if let Some(chain) = chain.upgrade() {
                    chain.forget_peer(&conn.peer_id());
                }
            });
        }
        node.net.activate();
        if let Some(addr) = p.discovery {
            node.net
                .start_discovery(DiscoveryConfig {
                    addr,
                    trust_discovered_peers: false,
                })
                .map_err(|e| format!("cannot start local discovery on {addr}: {e}"))?;
        }
        // The node's tasks run in its span: their lines say which node
        // they are about.
        let span = &node.span;
        let mut tasks = vec![
            spawn_in(span, recv_loop(node.clone())),
            spawn_in(span, count_events(node.clone())),
        ];
        for (point, expected) in trusted_points {
            tasks.push(spawn_in(
                span,
                first_dial(node.net.clone(), point, expected),
            ));
        }
        for host in p.bootstrap_hosts {
            tasks.push(spawn_in(span, bootstrap(node.net.clone(), host)));
        }
        if let Some(every) = p.ping_interval {
            tasks.push(spawn_in(span, ping_loop(node.clone(), every)));
        }
        *node.tasks.lock().unwrap() = tasks;
        Ok(node)
    }

    /// Counts `n` messages of kind `name` queued.
    fn sent(&self, name: &'static str, n: usize) {
        if n > 0 {
            self.counters.kind(name, |k| k.sent += n as u64);
        }
    }

    /// Broadcasts `msg` to every running connection; returns to how many
    /// it was queued. Counted as Octez does: once per connection in
    /// `broadcast_message_sent`, queued or dropped on a full queue (the
    /// pool counts the drops), not in `user_message_sent`.
    pub fn broadcast(&self, msg: &M) -> Result<usize, NetError> {
        let out = self.net.broadcast(msg, None, None)?;
        self.counters
            .broadcast_message_sent
            .fetch_add((out.queued + out.dropped) as u64, Ordering::Relaxed);
        self.counters
            .kind(msg.name(), |k| k.sent += out.queued as u64);
        Ok(out.queued)
    }

    /// Sends `msg` to `peer`.
    pub async fn send(&self, peer: &PeerId, msg: M) -> Result<(), NetError> {
        let conn = self
            .net
            .find_connection_by_peer_id(peer)
            .ok_or(NetError::NotConnected)?;
        let name = msg.name();
        let sent = self.net.send(&conn, msg).await;
        // Octez counts every write, queued or not.
        inc(&self.counters.user_message_sent);
        self.sent(name, usize::from(sent.is_ok()));
        sent
    }

    /// Queues `msg` on `conn` if there is room.
    pub fn try_send(&self, conn: &Conn<M>, msg: M) -> bool {
        let name = msg.name();
        let queued = conn.try_send(msg);
        inc(&self.counters.user_message_sent);
        self.sent(name, usize::from(queued));
        queued
    }

    /// Stops the tasks and the pool (which saves the peers file).
    pub async fn shutdown(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        self.net.shutdown().await;
    }
}

async fn recv_loop<M: App>(node: Arc<Node<M>>) {
    loop {
        let (conn, size, msg) = node.net.recv_any().await;
        inc(&node.counters.user_message_received);
        node.counters
            .user_bytes_received
            .fetch_add(size as u64, Ordering::Relaxed);
        node.counters.kind(msg.name(), |k| k.received += 1);
        M::on_message(&node, &conn, &msg);
        node.inbox.lock().unwrap().push(conn.peer_id(), size, msg);
    }
}

async fn count_events<M: App>(node: Arc<Node<M>>) {
    let mut rx = node.net.events();
    loop {
        match rx.recv().await {
            Ok(e) => {
                log_event(&e);
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Spawns `task` in `span`.
fn spawn_in(
    span: &tracing::Span,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(task.instrument(span.clone()))
}

/// Logs a pool event at debug level as fields: `event`, its kind as on
/// `/network/log` (`connection_established`...), and its data, each as its
/// own field (`point`, `peer`, `conn`: the connection's id point), written
/// as in Octez's JSON.
fn log_event(e: &P2pEvent) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let Ok(Value::Object(mut fields)) = serde_json::to_value(e) else {
        debug!(event = e.tag(), "p2p event");
        return;
    };
    let mut text = |key: &str| match fields.remove(key) {
        Some(Value::String(s)) => Some(s),
        Some(Value::Null) | None => None,
        Some(v) => Some(v.to_string()),
    };
    let kind = text("event");
    let point = text("point");
    let (mut conn, mut peer) = (text("id_point"), text("peer_id").or_else(|| text("source")));
    // `request_rejected`: `identity`, the connection id and the peer.
    if let Some(Value::Array(identity)) = fields.remove("identity") {
        if let [Value::String(c), Value::String(p)] = &identity[..] {
            conn = Some(c.clone());
            peer = Some(p.clone());
        }
    }
    let rest = (!fields.is_empty()).then(|| Value::Object(fields).to_string());
    fn shown(v: &Option<String>) -> Option<tracing::field::DisplayValue<&str>> {
        v.as_deref().map(tracing::field::display)
    }
    debug!(
        event = %kind.as_deref().unwrap_or("unknown"),
        point = shown(&point),
        peer = shown(&peer),
        conn = shown(&conn),
        data = shown(&rest),
        "p2p event"
    );
}

/// Dials a trusted point at start, so that it is contacted even without the
/// maintenance; gives up after a few attempts (the maintenance, when on,
/// keeps trying).
async fn first_dial<M: App>(net: P2p<M>, point: Point, expected: Option<PeerId>) {
    let mut options = tezos_p2p::ConnectOptions::default().timeout(Duration::from_secs(5));
    options.expected_peer_id = expected;
    for attempt in 0..FIRST_DIALS {
        if net.find_connection_by_point(&point).is_some()
            || expected.is_some_and(|p| net.find_connection_by_peer_id(&p).is_some())
        {
            return;
        }
        match net.connect_with(point, options.clone()).await {
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

/// Resolves a default bootstrap peer (`host[:port]`, port 9732 by
/// default), registers its addresses as trusted points and dials one. A
/// host that does not resolve is a warning.
async fn bootstrap<M: App>(net: P2p<M>, host: String) {
    let target = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.clone()
    } else {
        format!("{host}:9732")
    };
    let resolved = tokio::net::lookup_host(target.as_str()).await;
    let addrs: Vec<SocketAddr> = match resolved {
        Ok(a) => a.collect(),
        Err(e) => {
            warn!(host = ?host, error = %e, "bootstrap peer does not resolve");
            return;
        }
    };
    let Some(addr) = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) else {
        warn!(host = ?host, "bootstrap peer resolves to no address");
        return;
    };
    let point = Point::from(*addr);
    net.trust_point(point);
    first_dial(net, point, None).await;
}

async fn ping_loop<M: App>(node: Arc<Node<M>>, every: Duration) {
    let Some(msg) = M::ping(&node.net.peer_id()) else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        match node.broadcast(&msg) {
            Ok(k) => debug!(sent_to = k, "ping broadcast"),
            Err(e) => debug!(error = %e, "ping broadcast failed"),
        }
    }
}
