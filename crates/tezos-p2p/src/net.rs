//! The facade a user holds (pool spec §1.2, §7.8, §9.1): create, activate,
//! connect, disconnect, send, try_send, broadcast, recv, recv_any, ban and
//! trust, events, shutdown.
//!
//! All the pool's tables live in one `State` behind a mutex that is never
//! held across an `.await`: every decision that must be atomic (admission
//! against the connection limit, point and peer transitions) is taken in
//! one critical section, so parallel handshakes cannot overshoot the limit.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use thiserror::Error;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use tezos_p2p_wire::identity::{Identity, PeerId, PowTarget};
use tezos_p2p_wire::message::{AppMessage, ConnMeta, P2pMessage};
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::rejection::Motive;
use tezos_p2p_wire::version::{NetworkVersion, SupportedVersions};

use crate::acl::{Acl, AclConfig};
use crate::budget::MessageBudget;
use crate::events::P2pEvent;
use crate::limits::{Limits, LimitsError};
use crate::peers::{ConnId, PeerMeta};
use crate::points::ReconnectionConfig;
use crate::pool::{ExpectedIdAction, PoolLimits, Tables};
use crate::queue::Queue;
use crate::scheduler::{IoScheduler, SchedulerConfig, Stat};
use crate::socket::{Connection, ConnectionInfo, SocketError};
use crate::transport::{Listener, Transport};

/// What a pool needs besides its [`Limits`] (Octez's `P2p.config`).
#[derive(Clone, Debug)]
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

/// Errors of the pool, named after Octez's.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum NetError {
    /// The limits do not validate.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// Cannot listen.
    #[error("failed to open listening socket on {addr}: {reason}")]
    FailedToOpenListeningSocket {
        /// Where.
        addr: SocketAddr,
        /// Why.
        reason: String,
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
    #[error("connection to {point} failed: {reason}")]
    ConnectionFailed {
        /// Where.
        point: Point,
        /// Why.
        reason: String,
    },
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
    pub(crate) incoming: crate::welcome::IncomingHandshakes,
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
    pub(crate) listener: Mutex<Option<Listener>>,
    pub(crate) listening_port: Option<u16>,
    /// The maintenance worker's signals.
    pub(crate) maintenance: crate::maintenance::Handle,
    /// Wall-clock time at the pool's start, and tokio's instant then: the
    /// pool's clock follows tokio's (pausable) time.
    pub(crate) epoch: (SystemTime, tokio::time::Instant),
}

/// The pool of connections. Cheap to clone.
///
/// The pool's tasks hold the pool, not a `Net`: when the last `Net` handle
/// is dropped without [`shutdown`](Net::shutdown), every task, connection
/// and socket of the pool still ends.
pub struct Net<A, C, P> {
    pub(crate) inner: Arc<Inner<A, C, P>>,
    _handle: Arc<CancelOnDrop>,
}

impl<A, C, P> Clone for Net<A, C, P> {
    fn clone(&self) -> Self {
        Net {
            inner: Arc::clone(&self.inner),
            _handle: Arc::clone(&self._handle),
        }
    }
}

/// Cancels the pool when the last user handle goes.
struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

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
        let _ = self.events.send(event);
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

impl<A: AppMessage + Clone + Sync, C: ConnMeta, P: PeerMeta> Net<A, C, P> {
    /// Validates the limits, builds the components, loads the peers file and
    /// binds the listening socket. Nothing connects or accepts before
    /// [`activate`](Self::activate). Must run inside a tokio runtime.
    pub async fn create(config: Config<C>, limits: Limits) -> Result<Self, NetError> {
        limits.validate()?;
        let scheduler = IoScheduler::new(SchedulerConfig {
            max_download_speed: limits.max_download_speed,
            max_upload_speed: limits.max_upload_speed,
            read_buffer_size: limits.read_buffer_size,
        });
        let acl = Acl::new(&AclConfig {
            ip_greylist_size_in_kilobytes: limits.ip_greylist_size_in_kilobytes,
            ip_greylist_cleanup_delay: limits.ip_greylist_cleanup_delay,
            peer_greylist_size: limits.peer_greylist_size,
        })
        .map_err(|e| LimitsError::Invalid {
            field: "acl",
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
            match crate::peers::load_peers_file::<P>(path) {
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
                        reason: e.to_string(),
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
            listener: Mutex::new(listener),
            listening_port,
            maintenance: Default::default(),
            epoch,
        });
        let handle = Arc::new(CancelOnDrop(inner.cancel.clone()));
        Ok(Net {
            inner,
            _handle: handle,
        })
    }

    /// Starts accepting connections (and the periodic jobs: greylist decay,
    /// peers-file saving).
    pub fn activate(&self) {
        let listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(listener) = listener {
            let inner = self.inner.clone();
            self.inner
                .tasks
                .spawn(crate::welcome::accept_loop(inner, listener));
        }
        let inner = self.inner.clone();
        self.inner.tasks.spawn(periodic_jobs(inner));
        if let Some(idle) = self.inner.limits.maintenance_idle_time {
            let inner = self.inner.clone();
            self.inner.tasks.spawn(crate::maintenance::run(inner, idle));
        }
    }

    /// Asks the maintenance for a round and waits until one has run.
    /// Unlike Octez, it returns after the round even when the connection
    /// count was already within its thresholds. Returns at once when the
    /// maintenance is disabled.
    pub async fn maintain(&self) {
        if self.inner.limits.maintenance_idle_time.is_none() {
            return;
        }
        let done = self.inner.maintenance.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        self.inner.maintenance.please.notify_one();
        tokio::select! {
            biased;
            _ = done => {}
            _ = self.inner.cancel.cancelled() => {}
        }
    }

    /// Stops everything in Octez's order: the accept loop, then saves the
    /// peers file, then closes every connection, then the IO scheduler.
    pub async fn shutdown(&self) {
        self.inner.state().shut_down = true;
        self.inner.cancel.cancel();
        self.inner
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Err(e) = self.save_peers_file() {
            warn!(error = %e, "cannot save the peers file");
        }
        let conns: Vec<_> = self.inner.state().connections.values().cloned().collect();
        for c in conns {
            c.socket.close(false).await;
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        // Teardowns after the shutdown keep nothing, and nothing is kept
        // from before it.
        self.inner.state().draining = VecDeque::new();
        self.inner.scheduler.shutdown();
    }

    /// Writes the peers file now (atomically).
    pub fn save_peers_file(&self) -> std::io::Result<()> {
        self.inner.save_peers_file()
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.config.identity.peer_id
    }

    /// The port we listen on, if any.
    pub fn listening_port(&self) -> Option<u16> {
        self.inner.listening_port
    }

    /// The version we announce.
    pub fn announced_version(&self) -> NetworkVersion {
        self.inner.config.versions.announced()
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The pool's configuration.
    pub fn config(&self) -> &Config<C> {
        &self.inner.config
    }

    /// The triggers the maintenance waits on.
    pub fn triggers(&self) -> &Triggers {
        &self.inner.triggers
    }

    /// Subscribes to the pool's events (those after the call only).
    pub fn events(&self) -> broadcast::Receiver<P2pEvent> {
        self.inner.events.subscribe()
    }

    /// The pool's current time (follows tokio's clock).
    pub fn now(&self) -> SystemTime {
        self.inner.now()
    }

    /// Running connections.
    pub fn connections(&self) -> Vec<Arc<PeerConnection<A, C>>> {
        self.inner.state().connections.values().cloned().collect()
    }

    /// Number of running connections.
    pub fn active_connections(&self) -> usize {
        self.inner.active()
    }

    /// Connections that have ended with application messages not yet
    /// received: [`recv_any`](Self::recv_any) still returns those. Each
    /// is dropped once drained, the oldest beyond `max_connections`, all
    /// at shutdown.
    pub fn undrained_connections(&self) -> usize {
        self.inner.state().draining.len()
    }

    /// The running connection to `peer`.
    pub fn find_connection_by_peer_id(&self, peer: &PeerId) -> Option<Arc<PeerConnection<A, C>>> {
        self.inner.state().connections.get(peer).cloned()
    }

    /// The running connection on `point`.
    pub fn find_connection_by_point(&self, point: &Point) -> Option<Arc<PeerConnection<A, C>>> {
        self.inner
            .state()
            .connections
            .values()
            .find(|c| c.point.as_ref() == Some(point))
            .cloned()
    }

    /// Incoming handshakes in progress (at most
    /// [`Limits::max_incoming_connections`]).
    pub fn incoming_handshakes(&self) -> usize {
        self.inner.state().incoming.total()
    }

    /// Incoming handshakes in progress from `ip`'s source: its IPv4
    /// address, or its IPv6 /64 (at most
    /// [`Limits::max_incoming_connections_per_ip`]).
    pub fn incoming_handshakes_from(&self, ip: IpAddr) -> usize {
        self.inner.state().incoming.of_source(ip)
    }

    /// Sources (IPv4 addresses, IPv6 /64s) with an incoming handshake in
    /// progress: the size of the per-source table, 0 when no handshake is.
    pub fn incoming_handshake_sources(&self) -> usize {
        self.inner.state().incoming.sources()
    }

    /// Global bandwidth statistics since the start.
    pub fn global_stat(&self) -> Stat {
        self.inner.scheduler.stat()
    }

    /// Bytes reserved now in the budget for partially received messages
    /// ([`Limits::partial_message_budget`]): never more than the budget,
    /// but for a single message larger than the whole budget.
    pub fn partial_message_bytes(&self) -> usize {
        self.inner.budget.used()
    }

    /// Connections waiting now for room in the budget for partially
    /// received messages (their read side stopped).
    pub fn partial_message_waiting(&self) -> usize {
        self.inner.budget.waiting()
    }

    /// Registers a hook called for every new running connection.
    pub fn on_new_connection(
        &self,
        f: impl Fn(&Arc<PeerConnection<A, C>>) + Send + Sync + 'static,
    ) {
        self.inner
            .on_new_connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(f));
    }

    /// Registers a hook called when a running connection ends.
    pub fn on_disconnection(&self, f: impl Fn(&Arc<PeerConnection<A, C>>) + Send + Sync + 'static) {
        self.inner
            .on_disconnection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(f));
    }

    /// Connects to `point` (Octez's `P2p.connect`).
    pub async fn connect(
        &self,
        point: Point,
        trusted: bool,
        expected_peer_id: Option<PeerId>,
        timeout: Option<Duration>,
    ) -> Result<Arc<PeerConnection<A, C>>, NetError> {
        crate::connect::connect(
            &self.inner,
            point,
            trusted.then_some(true),
            expected_peer_id,
            timeout,
        )
        .await
    }

    /// Closes `conn`; with `wait`, what is queued is written first.
    pub async fn disconnect(&self, conn: &PeerConnection<A, C>, wait: bool, reason: &str) {
        info!(peer = %conn.peer_id(), reason, "disconnecting");
        conn.socket.close(wait).await;
        conn.cancel.cancelled().await;
    }

    /// Queues `msg` on `conn`, waiting for room.
    pub async fn send(&self, conn: &PeerConnection<A, C>, msg: A) -> Result<(), NetError> {
        Ok(conn.socket.write(&P2pMessage::Message(msg)).await?)
    }

    /// Queues `msg` on `conn` if there is room: `false` when dropped.
    pub fn try_send(&self, conn: &PeerConnection<A, C>, msg: A) -> bool {
        conn.try_send(msg)
    }

    /// Sends `msg` to every running connection but those `except` selects;
    /// connections `alt` selects get `alt`'s message instead. Each message is
    /// encoded once; a full queue drops it (best effort). Returns how many
    /// connections it was queued on.
    #[allow(clippy::type_complexity)]
    pub fn broadcast(
        &self,
        msg: &A,
        except: Option<&dyn Fn(&PeerConnection<A, C>) -> bool>,
        alt: Option<(&dyn Fn(&PeerConnection<A, C>) -> bool, &A)>,
    ) -> Result<usize, NetError> {
        let main = Connection::<A, C>::encode(&P2pMessage::Message(msg.clone()))?;
        let mut alt_bytes: Option<Bytes> = None;
        let mut sent = 0;
        for conn in self.connections() {
            if except.is_some_and(|f| f(&conn)) {
                continue;
            }
            let bytes = match alt {
                Some((pred, alt_msg)) if pred(&conn) => match &alt_bytes {
                    Some(b) => b.clone(),
                    None => {
                        let b = Connection::<A, C>::encode(&P2pMessage::Message(alt_msg.clone()))?;
                        alt_bytes = Some(b.clone());
                        b
                    }
                },
                _ => main.clone(),
            };
            if conn.socket.write_encoded_now(bytes).unwrap_or(false) {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Sends a P2P-layer message (Bootstrap, Advertise…) without waiting.
    pub fn send_p2p(&self, conn: &PeerConnection<A, C>, msg: &P2pMessage<A>) -> bool {
        conn.socket.write_now(msg).unwrap_or(false)
    }

    /// The next application message of `conn` and its size; fails with
    /// `ConnectionClosed` once it is closed and drained. Every message read
    /// before the connection ended (closed by the peer, after its
    /// `Disconnect`, on an error) is returned before that.
    pub async fn recv(&self, conn: &PeerConnection<A, C>) -> Result<(usize, A), NetError> {
        let item = conn.app_q.pop().await;
        if conn.app_q.is_over() {
            self.inner.forget_drained(conn);
        }
        item.ok_or(NetError::Socket(SocketError::ConnectionClosed))
    }

    /// The next application message of any connection. Connections take
    /// turns: each call starts looking one connection further than the
    /// last, so a busy connection cannot starve the others. A connection
    /// that has ended is still looked at until its messages are all
    /// taken (up to `max_connections` such connections, the oldest
    /// dropped beyond).
    pub async fn recv_any(&self) -> (Arc<PeerConnection<A, C>>, usize, A) {
        loop {
            let notified = self.inner.app_message.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut conns: Vec<_> = {
                let st = self.inner.state();
                st.connections
                    .values()
                    .chain(st.draining.iter())
                    .cloned()
                    .collect()
            };
            if !conns.is_empty() {
                let turn = self.inner.recv_any_turn.fetch_add(1, Ordering::Relaxed);
                let n = conns.len();
                conns.rotate_left(turn % n);
            }
            for conn in conns {
                if let Some((size, msg)) = conn.app_q.try_pop() {
                    if conn.app_q.is_over() {
                        self.inner.forget_drained(&conn);
                    }
                    return (conn, size, msg);
                }
            }
            notified.await;
        }
    }

    /// Greylists an address: its connections are refused for a while.
    pub fn greylist_addr(&self, ip: IpAddr) {
        let now = self.inner.now();
        self.inner.state().acl.greylist_addr(ip, now);
    }

    /// Greylists a peer and its current address (if connected; otherwise
    /// the peer alone — Octez then does nothing).
    pub fn greylist_peer(&self, peer: PeerId) {
        let now = self.inner.now();
        let mut st = self.inner.state();
        if let Some(c) = st.connections.get(&peer) {
            let ip = c.conn_id.addr;
            st.acl.greylist_addr(ip, now);
        }
        st.acl.greylist_peer(peer);
    }

    /// Runs `f` on the ACL (for the RPC and tests).
    pub fn with_acl<T>(&self, f: impl FnOnce(&mut Acl) -> T) -> T {
        f(&mut self.inner.state().acl)
    }

    /// Runs `f` on the point and peer tables.
    pub fn with_tables<T>(&self, f: impl FnOnce(&mut Tables<P>) -> T) -> T {
        f(&mut self.inner.state().tables)
    }

    /// Bans `point`'s IP, and the peers connected from it when `ban_peers`;
    /// disconnects them.
    pub async fn ban_point(&self, point: Point, ban_peers: bool) {
        let victims: Vec<_> = {
            let mut st = self.inner.state();
            st.acl.ban_addr(point.ip());
            let victims: Vec<_> = st
                .connections
                .values()
                .filter(|c| c.conn_id.addr == point.ip())
                .cloned()
                .collect();
            if ban_peers {
                for v in &victims {
                    st.acl.ban_peer(v.peer_id());
                }
            }
            victims
        };
        for v in victims {
            v.socket.close(false).await;
        }
    }

    /// Unbans `point`'s IP and the peers connected from it.
    pub fn unban_point(&self, point: Point) {
        let mut st = self.inner.state();
        st.acl.unban_addr(point.ip());
        let peers: Vec<_> = st
            .connections
            .values()
            .filter(|c| c.conn_id.addr == point.ip())
            .map(|c| c.peer_id())
            .collect();
        for p in peers {
            st.acl.unban_peer(&p);
        }
    }

    /// Unbans `point` and registers it as trusted.
    pub fn trust_point(&self, point: Point) {
        self.unban_point(point);
        let now = self.inner.now();
        self.inner
            .state()
            .tables
            .register_point(point, Some(true), None, now);
    }

    /// Clears `point`'s trusted flag.
    pub fn untrust_point(&self, point: Point) {
        if let Some(i) = self.inner.state().tables.known_points.get_mut(&point) {
            i.trusted = false;
        }
    }

    /// Pins `point` to `peer` (Octez's `P2p_pool.Points.set_expected_peer_id`,
    /// behind `PATCH /network/points/POINT {"peer_id"}`): a known point is
    /// pinned; another peer running on it has its address greylisted and is
    /// disconnected, and another peer being accepted on it has its address
    /// greylisted.
    pub async fn set_expected_peer_id(&self, point: Point, peer: PeerId) {
        let action = self.with_tables(|t| t.set_expected_peer_id(point, peer));
        match action {
            ExpectedIdAction::None => {}
            ExpectedIdAction::GreylistOnly { ip } => self.greylist_addr(ip),
            ExpectedIdAction::GreylistAndDisconnect { ip, peer } => {
                self.greylist_addr(ip);
                if let Some(c) = self.find_connection_by_peer_id(&peer) {
                    self.disconnect(&c, false, "unexpected peer id").await;
                }
            }
        }
    }

    /// Bans `peer` and disconnects it.
    pub async fn ban_peer(&self, peer: PeerId) {
        let victim = {
            let mut st = self.inner.state();
            st.acl.ban_peer(peer);
            st.connections.get(&peer).cloned()
        };
        if let Some(v) = victim {
            v.socket.close(false).await;
        }
    }

    /// Unbans `peer` (blacklist and greylist).
    pub fn unban_peer(&self, peer: PeerId) {
        self.inner.state().acl.unban_peer(&peer);
    }

    /// Unbans `peer`, registers it and trusts it.
    pub fn trust_peer(&self, peer: PeerId) {
        let now = self.inner.now();
        let mut st = self.inner.state();
        st.acl.unban_peer(&peer);
        st.tables.register_peer(peer, now);
        if let Some(i) = st.tables.known_peers.get_mut(&peer) {
            i.trusted = true;
        }
    }

    /// Clears `peer`'s trusted flag.
    pub fn untrust_peer(&self, peer: PeerId) {
        if let Some(i) = self.inner.state().tables.known_peers.get_mut(&peer) {
            i.trusted = false;
        }
    }

    /// The stored metadata of `peer`, or the initial value.
    pub fn get_peer_metadata(&self, peer: &PeerId) -> P {
        self.inner
            .state()
            .tables
            .known_peers
            .get(peer)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// Stores `meta` for `peer`, registering it if unknown.
    pub fn set_peer_metadata(&self, peer: PeerId, meta: P) {
        let now = self.inner.now();
        let mut st = self.inner.state();
        st.tables.register_peer(peer, now);
        if let Some(p) = st.tables.known_peers.get_mut(&peer) {
            p.metadata = meta;
        }
    }

    /// Up to `size` known public points to share (Octez's sampling).
    pub fn list_known_points(&self, size: usize) -> Vec<Point> {
        self.inner.list_known_points(size)
    }
}

impl<A, C, P: PeerMeta> Inner<A, C, P> {
    pub(crate) fn save_peers_file(&self) -> std::io::Result<()> {
        let Some(path) = &self.config.peers_file else {
            return Ok(());
        };
        let peers = self.state().tables.peers_for_file();
        crate::peers::save_peers_file(path, &peers)
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
async fn periodic_jobs<A: AppMessage + Clone + Sync, C: ConnMeta, P: PeerMeta>(
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
