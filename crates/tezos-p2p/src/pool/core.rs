//! The pool's core: its configuration, errors, state and the shared
//! `Inner` every worker holds (pool spec §1.2, §7.8).
//!
//! All the pool's tables live in one `State` behind a mutex that is never
//! held across an `.await`: every decision that must be atomic (admission
//! against the connection limit, point and peer transitions) is taken in
//! one critical section, so parallel handshakes cannot overshoot the limit.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::SeedableRng;
use thiserror::Error;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use tezos_p2p_wire::identity::{Identity, PeerId, PowTarget};
use tezos_p2p_wire::message::{AppMessage, ConnMeta, P2pMessage};
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::rejection::Motive;
use tezos_p2p_wire::version::{NetworkVersion, SupportedVersions};

use crate::pool::acl::Acl;
use crate::pool::events::{EventKind, P2pEvent};
use crate::pool::limits::{Limits, LimitsError};
use crate::pool::peers::{ConnId, PeerMeta};
use crate::pool::points::ReconnectionConfig;
use crate::pool::tables::{PoolLimits, RegisterOutcome, RegisterPeerOutcome, Tables};
use crate::socket::budget::MessageBudget;
use crate::socket::queue::Queue;
use crate::socket::scheduler::{IoScheduler, SchedulerConfig, Stat};
use crate::socket::transport::{Listener, Transport};
use crate::socket::{Connection, ConnectionInfo, IoError, SocketError};

/// What a pool needs besides its [`Limits`] (Octez's `P2p.config`).
///
/// [`Config::new`] takes the two things without a default, the identity
/// and the chain; every other field holds Octez's default and can be
/// changed in place:
///
/// ```
/// # use std::sync::Arc;
/// use tezos_p2p::wire::identity::Identity;
/// use tezos_p2p::wire::message::OctezMetadata;
/// use tezos_p2p::wire::version::{ChainName, SupportedVersions};
/// use tezos_p2p::Config;
///
/// use tezos_p2p::wire::identity::{PowStamp, SecretKey};
/// let identity = Arc::new(Identity::from_secret_key(SecretKey([7; 32]), PowStamp([0; 24])));
/// let chain = SupportedVersions::octez(ChainName::from("TEZOS_MAINNET"));
/// let mut config = Config::<OctezMetadata>::new(identity, chain)
///     .listen("127.0.0.1:9732".parse().unwrap());
/// config.private_mode = true;
/// assert_eq!(config.proof_of_work_target.level(), 26.0);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config<C> {
    /// Where to listen; `None` accepts no connection.
    pub listening_addr: Option<SocketAddr>,
    /// The port announced in handshakes; defaults to the listening port.
    pub advertised_port: Option<u16>,
    /// Points registered as trusted at start, optionally pinned to a peer id.
    pub trusted_points: Vec<(Point, Option<PeerId>)>,
    /// The peers file (`peers.json`); `None` keeps nothing across restarts.
    pub peers_file: Option<PathBuf>,
    /// Accept and contact only trusted points and peers, and answer no
    /// gossip. Peers learn it from our metadata: set its private flag too
    /// (`OctezMetadata::private_node`); the pool cannot, the metadata type
    /// being the application's.
    pub private_mode: bool,
    /// Our identity.
    pub identity: Arc<Identity>,
    /// The proof of work required of peers.
    pub proof_of_work_target: PowTarget,
    /// Our chain name and supported versions.
    pub versions: SupportedVersions,
    /// The metadata we send in handshakes.
    pub metadata: C,
    /// Reconnection back-off.
    pub reconnection: ReconnectionConfig,
    /// Neither answer nor use Bootstrap/Advertise gossip.
    pub disable_peer_discovery: bool,
    /// How bytes reach peers.
    pub transport: Transport,
    /// Seed of the pool's random choices (`None`: from the OS).
    pub seed: Option<u64>,
}

/// Octez's default `expected-proof-of-work`.
pub const OCTEZ_POW_LEVEL: f64 = 26.0;

impl<C: Default> Config<C> {
    /// A pool of `identity` on `versions`' chain, with Octez's defaults:
    /// listening nowhere, no trusted point, no peers file, public, a proof
    /// of work of 26 required of peers, peer discovery on, default
    /// metadata, TCP with Octez's socket options, and seeded from the OS.
    pub fn new(identity: Arc<Identity>, versions: SupportedVersions) -> Self {
        Config {
            listening_addr: None,
            advertised_port: None,
            trusted_points: Vec::new(),
            peers_file: None,
            private_mode: false,
            identity,
            proof_of_work_target: PowTarget::new(OCTEZ_POW_LEVEL).expect("a valid level"),
            versions,
            metadata: C::default(),
            reconnection: ReconnectionConfig::default(),
            disable_peer_discovery: false,
            transport: Transport::default(),
            seed: None,
        }
    }
}

impl<C> Config<C> {
    /// Listens on `addr` (port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listening_addr = Some(addr);
        self
    }

    /// Reaches peers through `transport` (e.g. an in-memory network).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }
}

/// Errors of the pool, named after Octez's.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum NetError {
    /// The limits do not validate.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// Cannot listen.
    #[error("failed to open listening socket on {addr}")]
    FailedToOpenListeningSocket {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: IoError,
    },
    /// The point's IP is banned or greylisted.
    #[error("point {0} is banned")]
    PointBanned(Point),
    /// The peer is banned or greylisted.
    #[error("peer {0} is banned")]
    PeerBanned(PeerId),
    /// No slot left.
    #[error("too many connections")]
    TooManyConnections,
    /// Private mode and the point is not trusted.
    #[error("private mode: {0} is not trusted")]
    PrivateMode(Point),
    /// A connection to this point is already being set up.
    #[error("pending connection to {0}")]
    PendingConnection(Point),
    /// Already connected to this point.
    #[error("already connected to {0}")]
    Connected(Point),
    /// The TCP connection failed.
    #[error("connection to {point} failed")]
    ConnectionFailed {
        /// Where.
        point: Point,
        /// Why.
        #[source]
        source: IoError,
    },
    /// The point table is full of points that cannot be forgotten (all
    /// trusted or connected): the point cannot be registered.
    #[error("point table full: cannot register {0}")]
    PointTableFull(Point),
    /// The peer is not the one pinned for that point.
    #[error("identity check failure at {point}: expected {expected}, got {received}")]
    IdentityCheckFailure {
        /// The point.
        point: Point,
        /// The pinned peer id.
        expected: PeerId,
        /// The peer id met.
        received: PeerId,
    },
    /// We refused the peer with a Nack.
    #[error("rejected {peer}: {motive}")]
    Rejected {
        /// The peer.
        peer: PeerId,
        /// Why.
        motive: Motive,
    },
    /// We refused the peer: no common chain or version.
    #[error("no common protocol with {announced:?}")]
    RejectedNoCommonProtocol {
        /// What the peer announced.
        announced: NetworkVersion,
    },
    /// An error of the socket layer (handshake, peer's Nack, IO).
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// The operation did not finish in time.
    #[error("timeout")]
    Timeout,
    /// The pool is shut down.
    #[error("the pool is shut down")]
    ShutDown,
    /// No running connection to that peer.
    #[error("not connected")]
    NotConnected,
    /// [`Net::connect`](crate::Net::connect) on a pool not yet started:
    /// [`Net::activate`](crate::Net::activate) has not been called.
    #[error("the pool is not activated: call Net::activate first")]
    NotActivated,
}

/// The events of the pool's triggers (Octez's `P2p_trigger`), used by the
/// maintenance.
#[derive(Debug, Default)]
pub struct Triggers {
    /// Active connections fell below `min_connections`.
    pub too_few_connections: Notify,
    /// Active connections reached `max_connections`.
    pub too_many_connections: Notify,
    /// A point was registered.
    pub new_point: Notify,
    /// A peer was registered.
    pub new_peer: Notify,
    /// A connection is running.
    pub new_connection: Notify,
}

/// What registrations made under the state's lock owe the pool once the
/// lock is released: the `new_point` and `new_peer` triggers and the
/// `NewPoint`, `NewPeer`, `GcPoints` and `GcPeerIds` events. Every
/// registration of a point or a peer goes through it, and
/// [`Inner::announce`] then fires what it collected.
#[derive(Debug, Default)]
#[must_use = "registrations are announced by Inner::announce"]
pub(crate) struct Registrations {
    points: Vec<Point>,
    peers: Vec<PeerId>,
    gc_points: bool,
    gc_peers: bool,
}

impl Registrations {
    /// Registers `point` ([`Tables::register_point`]).
    pub(crate) fn point<P: PeerMeta>(
        &mut self,
        tables: &mut Tables<P>,
        point: Point,
        trusted: Option<bool>,
        expected_peer_id: Option<PeerId>,
        now: SystemTime,
    ) -> RegisterOutcome {
        let o = tables.register_point(point, trusted, expected_peer_id, now);
        self.note_point(point, &o);
        o
    }

    /// Registers `point` unless it is one of ours
    /// ([`Tables::register_new_point`]); whether it is new.
    pub(crate) fn new_point<P: PeerMeta>(
        &mut self,
        tables: &mut Tables<P>,
        point: Point,
        trusted: Option<bool>,
        now: SystemTime,
    ) -> bool {
        match tables.register_new_point(point, trusted, now) {
            Some(o) => {
                self.note_point(point, &o);
                o.is_new
            }
            None => false,
        }
    }

    /// Registers `peer` ([`Tables::register_peer`]).
    pub(crate) fn peer<P: PeerMeta>(
        &mut self,
        tables: &mut Tables<P>,
        peer: PeerId,
        now: SystemTime,
    ) -> RegisterPeerOutcome {
        let o = tables.register_peer(peer, now);
        if o.is_new {
            self.peers.push(peer);
        }
        self.gc_peers |= o.gc_ran;
        o
    }

    fn note_point(&mut self, point: Point, o: &RegisterOutcome) {
        if o.is_new {
            self.points.push(point);
        }
        self.gc_points |= o.gc_ran;
    }
}

/// The maintenance worker's signals.
#[derive(Debug, Default)]
pub(crate) struct MaintenanceSignals {
    /// Asks for a round (`P2p.maintain`).
    pub(crate) please: Notify,
    /// Signalled after every round.
    pub(crate) done: Notify,
    /// Wakes the discovery sender when short of candidates.
    pub(crate) wake_discovery: Notify,
}

/// A running connection as the pool's user sees it.
pub struct PeerConnection<A, C> {
    pub(crate) socket: Connection<A, C>,
    /// Application messages read and not yet received, with their sizes;
    /// bounded by `incoming_app_message_queue_size` while the connection
    /// runs, closed (and drained by `recv`/`recv_any`) once it ends.
    pub(crate) app_q: Queue<(usize, A)>,
    /// The point in the point table this connection runs on, if any.
    pub(crate) point: Option<Point>,
    pub(crate) conn_id: ConnId,
    pub(crate) negotiated_version: NetworkVersion,
    pub(crate) trusted: bool,
    pub(crate) last_sent_swap_request: Mutex<Option<(SystemTime, PeerId)>>,
    pub(crate) cancel: CancellationToken,
}

impl<A, C> std::fmt::Debug for PeerConnection<A, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerConnection({})", self.socket)
    }
}

impl<A, C> PeerConnection<A, C> {
    /// The peer's id.
    pub fn peer_id(&self) -> PeerId {
        self.socket.info().peer_id
    }

    /// What is known of the peer.
    pub fn info(&self) -> &ConnectionInfo<C> {
        self.socket.info()
    }

    /// The point of the point table this connection runs on.
    pub fn point(&self) -> Option<Point> {
        self.point
    }

    /// The peer's address and listening port (if known).
    pub fn conn_id(&self) -> ConnId {
        self.conn_id
    }

    /// The version negotiated with the peer.
    pub fn negotiated_version(&self) -> &NetworkVersion {
        &self.negotiated_version
    }

    /// Bandwidth statistics.
    pub fn stat(&self) -> Stat {
        self.socket.stat()
    }

    /// Whether the peer or its point is trusted.
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

impl<A: AppMessage, C: ConnMeta> PeerConnection<A, C> {
    /// Queues `msg` if there is room: `false` when dropped (a full queue,
    /// a closed connection, or a message that cannot be encoded). Usable
    /// from the pool's hooks, which get the connection but not the pool.
    pub fn try_send(&self, msg: A) -> bool {
        self.socket
            .write_now(&P2pMessage::Message(msg))
            .unwrap_or(false)
    }
}

type Hook<A, C> = Arc<dyn Fn(&Arc<PeerConnection<A, C>>) + Send + Sync>;

pub(crate) struct State<A, C, P> {
    pub(crate) tables: Tables<P>,
    pub(crate) acl: Acl,
    /// Running connections by peer (ordered, so that iterating is
    /// deterministic and a seeded simulation reproducible).
    pub(crate) connections: BTreeMap<PeerId, Arc<PeerConnection<A, C>>>,
    /// Connections that have ended with application messages still
    /// unread, oldest first: `recv_any` still takes from them. At most
    /// `max_connections`; each leaves once drained, all at shutdown.
    pub(crate) draining: VecDeque<Arc<PeerConnection<A, C>>>,
    /// Handshakes admitted and not yet running (they hold a slot).
    pub(crate) admitted: usize,
    /// Incoming handshakes in progress, in all and per source address.
    pub(crate) incoming: crate::pool::admission::IncomingHandshakes,
    pub(crate) latest_accepted_swap: Option<SystemTime>,
    pub(crate) latest_successful_swap: Option<SystemTime>,
    /// When the maintenance last proposed a swap.
    pub(crate) latest_swap_request: Option<SystemTime>,
    pub(crate) shut_down: bool,
}

impl<A, C, P> State<A, C, P> {
    /// Whether the last swap we accepted or made (and, with
    /// `with_requests`, the last one we proposed) is less than `linger` old.
    pub(crate) fn swap_lingers(
        &self,
        now: SystemTime,
        linger: Duration,
        with_requests: bool,
    ) -> bool {
        let mut latest = self.latest_accepted_swap.max(self.latest_successful_swap);
        if with_requests {
            latest = latest.max(self.latest_swap_request);
        }
        latest.is_some_and(|t| now.duration_since(t).unwrap_or_default() < linger)
    }
}

pub(crate) struct Inner<A, C, P> {
    pub(crate) config: Config<C>,
    pub(crate) limits: Limits,
    pub(crate) scheduler: IoScheduler,
    /// The budget for partially received messages, shared by every
    /// connection.
    pub(crate) budget: MessageBudget,
    pub(crate) state: Mutex<State<A, C, P>>,
    pub(crate) events: broadcast::Sender<P2pEvent>,
    pub(crate) triggers: Triggers,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) rng: Mutex<StdRng>,
    pub(crate) on_new_connection: Mutex<Vec<Hook<A, C>>>,
    pub(crate) on_disconnection: Mutex<Vec<Hook<A, C>>>,
    /// Signalled when an application message is queued anywhere.
    pub(crate) app_message: Notify,
    /// Where the next `recv_any` starts looking.
    pub(crate) recv_any_turn: AtomicUsize,
    /// Events logged since the start, by [`P2pEvent::tag`]: exact, where a
    /// subscriber of `events` that lags loses some.
    pub(crate) event_counts: [AtomicU64; EVENT_KINDS],
    /// Broadcast writes dropped since the start: the connection's write
    /// queue was full or closed.
    pub(crate) broadcast_dropped: AtomicU64,
    pub(crate) listener: Mutex<Option<Listener>>,
    pub(crate) listening_port: Option<u16>,
    /// The maintenance worker's signals.
    pub(crate) maintenance: MaintenanceSignals,
    /// Wall-clock time at the pool's start, and tokio's instant then: the
    /// pool's clock follows tokio's (pausable) time.
    pub(crate) epoch: (SystemTime, tokio::time::Instant),
    /// The span every task of the pool runs in (`pool{me=<our peer id>}`),
    /// parent of each connection's.
    pub(crate) span: tracing::Span,
}

/// Kinds of [`P2pEvent`] (its tags are below this).
pub(crate) const EVENT_KINDS: usize = EventKind::ALL.len();

/// Events kept for slow subscribers before they lag.
const EVENT_BUFFER: usize = 1024;

impl<A, C, P> Inner<A, C, P> {
    pub(crate) fn state(&self) -> MutexGuard<'_, State<A, C, P>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pool's clock: wall-clock time that follows tokio's time, so
    /// paused-time tests and simulations control it.
    pub(crate) fn now(&self) -> SystemTime {
        self.epoch.0 + self.epoch.1.elapsed()
    }

    pub(crate) fn log(&self, event: P2pEvent) {
        if let Some(n) = self.event_counts.get(usize::from(event.tag())) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.events.send(event);
    }

    /// Fires what `regs` collected, in Octez's order: a GC before the
    /// registration that ran it.
    pub(crate) fn announce(&self, regs: Registrations) {
        if regs.gc_points {
            self.log(P2pEvent::GcPoints);
        }
        for point in regs.points {
            self.triggers.new_point.notify_waiters();
            self.log(P2pEvent::NewPoint { point });
        }
        if regs.gc_peers {
            self.log(P2pEvent::GcPeerIds);
        }
        for peer_id in regs.peers {
            self.triggers.new_peer.notify_waiters();
            self.log(P2pEvent::NewPeer { peer_id });
        }
    }

    /// Spawns one of the pool's tasks, in the pool's span.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task.instrument(self.span.clone()));
    }

    /// The span of a connection of this pool: its direction, the remote
    /// address, and the peer id once the handshake has told it.
    pub(crate) fn conn_span(
        &self,
        incoming: bool,
        remote: impl std::fmt::Display,
    ) -> tracing::Span {
        let dir = if incoming { "in" } else { "out" };
        tracing::info_span!(parent: &self.span, "conn", dir, addr = %remote, peer = tracing::field::Empty)
    }

    pub(crate) fn active(&self) -> usize {
        self.state().connections.len()
    }

    /// `conn` is no longer kept for `recv_any` once its queue is over.
    pub(crate) fn forget_drained(&self, conn: &PeerConnection<A, C>) {
        let mut st = self.state();
        st.draining.retain(|c| !std::ptr::eq(Arc::as_ptr(c), conn));
        if st.draining.is_empty() {
            st.draining = VecDeque::new();
        }
    }

    /// Calls `hooks` on `conn`, the most recently registered first, with no
    /// lock held (a hook may use the pool).
    pub(crate) fn run_hooks(
        &self,
        hooks: &Mutex<Vec<Hook<A, C>>>,
        conn: &Arc<PeerConnection<A, C>>,
    ) {
        let hooks: Vec<_> = hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .cloned()
            .collect();
        for h in hooks {
            h(conn);
        }
    }
}

impl<A, C: ConnMeta, P: PeerMeta> Inner<A, C, P> {
    /// Validates the limits, builds the components, loads the peers file
    /// and binds the listening socket (see [`Net::create`](crate::Net::create)).
    pub(crate) async fn create(config: Config<C>, limits: Limits) -> Result<Arc<Self>, NetError> {
        limits.validate()?;
        let scheduler = IoScheduler::new(SchedulerConfig {
            max_download_speed: limits.max_download_speed,
            max_upload_speed: limits.max_upload_speed,
            read_buffer_size: limits.read_buffer_size,
        });
        // Validated with the limits.
        let acl = Acl::new(&limits.acl_config()).map_err(|e| LimitsError::Invalid {
            field: e.field(),
            why: e.to_string(),
        })?;
        let epoch = (SystemTime::now(), tokio::time::Instant::now());
        let now = epoch.0;
        let mut tables = Tables::new(PoolLimits {
            max_known_points: limits.max_known_points,
            max_known_peer_ids: limits.max_known_peer_ids,
        });
        for (point, expected) in &config.trusted_points {
            tables.register_point(*point, Some(true), *expected, now);
        }
        if let Some(path) = &config.peers_file {
            match crate::pool::peers::load_peers_file::<P>(path) {
                Ok(outcome) => {
                    if let Some(moved) = &outcome.corrupt_moved_to {
                        warn!(file = %path.display(), kept = %moved.display(), "corrupt peers file kept aside; starting empty");
                    }
                    for peer in outcome.peers {
                        // The point it was last seen at, when it has a port.
                        if let Some(point) = peer.last_seen().and_then(|(c, _)| c.to_point()) {
                            tables.register_point(point, None, None, now);
                        }
                        tables.known_peers.insert(peer.peer_id, peer);
                    }
                }
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "cannot read the peers file; starting empty")
                }
            }
        }
        let (listener, listening_port) = match config.listening_addr {
            Some(addr) => {
                let l = config
                    .transport
                    .bind_with_backlog(addr, limits.backlog)
                    .await
                    .map_err(|e| NetError::FailedToOpenListeningSocket {
                        addr,
                        source: e.into(),
                    })?;
                let port = l.local_addr().port();
                (Some(l), Some(port))
            }
            None => (None, None),
        };
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let span = tracing::info_span!("pool", me = %config.identity.peer_id);
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                tables,
                acl,
                connections: BTreeMap::new(),
                draining: VecDeque::new(),
                admitted: 0,
                incoming: Default::default(),
                latest_accepted_swap: None,
                latest_successful_swap: None,
                latest_swap_request: None,
                shut_down: false,
            }),
            budget: MessageBudget::new(limits.partial_message_budget),
            config,
            limits,
            scheduler,
            events,
            triggers: Triggers::default(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            rng: Mutex::new(rng),
            on_new_connection: Mutex::new(Vec::new()),
            on_disconnection: Mutex::new(Vec::new()),
            app_message: Notify::new(),
            recv_any_turn: AtomicUsize::new(0),
            event_counts: Default::default(),
            broadcast_dropped: AtomicU64::new(0),
            listener: Mutex::new(listener),
            listening_port,
            maintenance: Default::default(),
            epoch,
            span,
        });
        Ok(inner)
    }
}

impl<A, C, P: PeerMeta> Inner<A, C, P> {
    pub(crate) fn save_peers_file(&self) -> std::io::Result<()> {
        let Some(path) = &self.config.peers_file else {
            return Ok(());
        };
        let peers = self.state().tables.peers_for_file();
        crate::pool::peers::save_peers_file(path, &peers)
    }

    pub(crate) fn list_known_points(&self, size: usize) -> Vec<Point> {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let st = self.state();
        let acl = &st.acl;
        st.tables
            .list_known_points(true, size, |ip| acl.banned_addr(ip), &mut *rng)
    }
}

/// Greylist decay every 1/16 of the cleanup delay, and a peers-file save
/// every few minutes, until shutdown.
pub(crate) async fn periodic_jobs<A: AppMessage + Clone + Sync, C: ConnMeta, P: PeerMeta>(
    inner: Arc<Inner<A, C, P>>,
) {
    const SAVE_EVERY: Duration = Duration::from_secs(300);
    let countdown_every = inner.state().acl.countdown_interval();
    let mut countdown = tokio::time::interval(countdown_every);
    let mut save = tokio::time::interval(SAVE_EVERY);
    countdown.tick().await;
    save.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = inner.cancel.cancelled() => return,
            _ = countdown.tick() => inner.state().acl.countdown(),
            _ = save.tick() => {
                if let Err(e) = inner.save_peers_file() {
                    warn!(error = %e, "cannot save the peers file");
                } else {
                    debug!("peers file saved");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_kind_has_a_count() {
        // Each kind has its own slot in `event_counts`.
        let mut slots = [false; EVENT_KINDS];
        for kind in EventKind::ALL {
            let slot = &mut slots[usize::from(kind.tag())];
            assert!(!*slot, "{kind:?}");
            *slot = true;
        }
        assert!(slots.iter().all(|s| *s));
    }
}
