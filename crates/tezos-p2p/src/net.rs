//! The facade a user holds (pool spec §1.2, §7.8, §9.1): create, activate,
//! connect, disconnect, send, try_send, broadcast, recv, recv_any, ban and
//! trust, events, shutdown. The pool itself is in [`crate::pool`].

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use tezos_p2p_wire::identity::PeerId;
use tezos_p2p_wire::message::{AppMessage, ConnMeta, P2pMessage};
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::version::NetworkVersion;

use crate::pool::acl::Acl;
use crate::pool::core::{periodic_jobs, Inner, Registrations};
pub use crate::pool::core::{Config, NetError, PeerConnection, Triggers};
use crate::pool::events::{EventKind, P2pEvent};
use crate::pool::limits::Limits;
use crate::pool::peers::PeerMeta;
use crate::pool::{ExpectedIdAction, Tables};
use crate::socket::scheduler::Stat;
pub use crate::socket::IoError;
use crate::socket::{Connection, SocketError};

/// How [`Net::connect_with`] connects.
///
/// ```
/// # use std::time::Duration;
/// # use tezos_p2p::ConnectOptions;
/// let options = ConnectOptions::default()
///     .trusted()
///     .timeout(Duration::from_secs(3));
/// assert!(options.trusted && options.expected_peer_id.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Register the point as trusted (default: no).
    pub trusted: bool,
    /// Pin the point to this peer: another peer met there is refused and
    /// its address greylisted (default: any peer).
    pub expected_peer_id: Option<PeerId>,
    /// The whole attempt's deadline, handshake included (default: the
    /// limits' `connection_timeout`).
    pub timeout: Option<Duration>,
}

impl ConnectOptions {
    /// Registers the point as trusted.
    pub fn trusted(mut self) -> Self {
        self.trusted = true;
        self
    }

    /// Pins the point to `peer`.
    pub fn expected_peer_id(mut self, peer: PeerId) -> Self {
        self.expected_peer_id = Some(peer);
        self
    }

    /// Gives the attempt `timeout` instead of the limits'.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// What [`Net::broadcast`] did with a message, connection by connection.
///
/// Octez drops a broadcast message silently where a connection's write
/// queue is full (`P2p_socket.write_encoded_now`) and counts it sent all
/// the same (`octez_p2p_messages_broadcast_message_sent` counts
/// `queued + dropped`); here the drops are told apart, and the pool counts
/// them ([`Net::broadcast_dropped`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BroadcastOutcome {
    /// Connections the message was queued on.
    pub queued: usize,
    /// Connections it was dropped on: their write queue was full (or
    /// closed, the connection ending).
    pub dropped: usize,
}

/// The pool of connections. Cheap to clone.
///
/// `Net<A, C, P>`: `A` is the application's message type (any
/// [`AppMessage`], tags from 0x10; [`RawMessage`](tezos_p2p_wire::message::RawMessage)
/// keeps them as bytes), `C` the metadata sent in the handshake
/// ([`OctezMetadata`](tezos_p2p_wire::message::OctezMetadata) for Octez's),
/// `P` what the pool keeps per peer (`()` for nothing).
/// [`create`](Net::create) it, [`activate`](Net::activate) it, then
/// connect, send and receive. Here two pools on an in-memory network (a
/// [`Transport::Memory`](crate::transport::Transport::Memory); the default
/// is TCP):
///
/// ```
/// use std::sync::Arc;
///
/// use tezos_p2p::limits::Limits;
/// use tezos_p2p::transport::{MemoryNetwork, Transport};
/// use tezos_p2p::wire::identity::{Identity, PowSearch, PowTarget};
/// use tezos_p2p::wire::message::{OctezMetadata, RawMessage};
/// use tezos_p2p::wire::point::Point;
/// use tezos_p2p::wire::version::{ChainName, SupportedVersions};
/// use tezos_p2p::{Config, Net, NetError};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let network = MemoryNetwork::new();
/// let target = PowTarget::new(0.0).unwrap(); // no proof of work, for tests
/// // A pool listening on `ip`, port 9732, of the in-memory network.
/// let pool = |ip: [u8; 4]| {
///     let identity = Identity::generate(&target, &PowSearch::default(), |_| {}).unwrap();
///     let chain = SupportedVersions::octez(ChainName::from("SANDBOXED_TEZOS"));
///     let mut config = Config::new(Arc::new(identity), chain)
///         .listen((ip, 9732).into())
///         .transport(Transport::Memory(network.with_local_ip(ip.into())));
///     config.proof_of_work_target = target;
///     Net::<RawMessage, OctezMetadata, ()>::create(config, Limits::default())
/// };
/// let a = pool([10, 0, 0, 1]).await?;
/// let b = pool([10, 0, 0, 2]).await?;
/// let to_b = Point::new([10, 0, 0, 2].into(), 9732);
///
/// // Nothing connects before `activate`.
/// assert!(matches!(a.connect(to_b).await, Err(NetError::NotActivated)));
/// a.activate();
/// b.activate();
///
/// let conn = a.connect(to_b).await?;
/// assert_eq!(conn.peer_id(), b.peer_id());
/// let hello = RawMessage { tag: 0x10, body: b"hello".to_vec() };
/// a.send(&conn, hello.clone()).await?;
/// // B receives from any connection, and answers on that one.
/// let (from, _size, msg) = b.recv_any().await;
/// assert_eq!((from.peer_id(), msg), (a.peer_id(), hello));
/// b.send(&from, RawMessage { tag: 0x11, body: vec![] }).await?;
/// let (_size, answer) = a.recv(&conn).await?;
/// assert_eq!(answer.tag, 0x11);
///
/// a.shutdown().await;
/// b.shutdown().await;
/// # Ok::<(), NetError>(())
/// # }).unwrap();
/// ```
///
/// The pool's tasks hold the pool, not a `Net`: when the last `Net` handle
/// is dropped without [`shutdown`](Net::shutdown), every task, connection
/// and socket of the pool still ends.
pub struct Net<A, C, P> {
    pub(crate) inner: Arc<Inner<A, C, P>>,
    handle: Arc<Handle>,
}

impl<A, C, P> Clone for Net<A, C, P> {
    fn clone(&self) -> Self {
        Net {
            inner: Arc::clone(&self.inner),
            handle: Arc::clone(&self.handle),
        }
    }
}

/// What the user handles share: whether [`Net::activate`] has run, and
/// the pool's cancellation, fired when the last handle goes.
struct Handle {
    cancel: CancellationToken,
    activated: AtomicBool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl<A: AppMessage + Clone + Sync, C: ConnMeta, P: PeerMeta> Net<A, C, P> {
    /// Validates the limits, builds the components, loads the peers file and
    /// binds the listening socket (so [`listening_port`](Self::listening_port)
    /// is known at once). Must run inside a tokio runtime.
    ///
    /// The pool is inert until [`activate`](Self::activate): it accepts no
    /// connection, runs no job and no maintenance, and
    /// [`connect`](Self::connect) fails at once with
    /// [`NetError::NotActivated`]. That is the time to register the hooks
    /// ([`on_new_connection`](Self::on_new_connection),
    /// [`on_disconnection`](Self::on_disconnection)) so that they see every
    /// connection.
    ///
    /// The listening socket is bound here, as Octez binds it at creation: a
    /// peer that dials a pool not yet activated is connected by the system
    /// but gets no handshake, and its attempt ends with its own timeout
    /// ([`NetError::Timeout`] after `connection_timeout`, 10 s by default,
    /// for a `tezos-p2p` peer), unless this pool is activated meanwhile.
    pub async fn create(config: Config<C>, limits: Limits) -> Result<Self, NetError> {
        let inner = Inner::create(config, limits).await?;
        let handle = Arc::new(Handle {
            cancel: inner.cancel.clone(),
            activated: AtomicBool::new(false),
        });
        Ok(Net { inner, handle })
    }

    /// Starts the pool: the accept loop, the periodic jobs (greylist
    /// decay, peers-file saving) and the maintenance (unless
    /// `maintenance_idle_time` is `None`). From then on it connects and
    /// accepts. Calling it again does nothing.
    pub fn activate(&self) {
        if self.handle.activated.swap(true, Ordering::AcqRel) {
            return;
        }
        let listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(listener) = listener {
            let inner = self.inner.clone();
            self.inner
                .spawn(crate::pool::welcome::accept_loop(inner, listener));
        }
        let inner = self.inner.clone();
        self.inner.spawn(periodic_jobs(inner));
        if let Some(idle) = self.inner.limits.maintenance_idle_time {
            let inner = self.inner.clone();
            self.inner.spawn(crate::pool::maintenance::run(inner, idle));
        }
    }

    /// Starts local discovery: needs a listening port. Runs until shutdown.
    pub fn start_discovery(
        &self,
        cfg: crate::pool::discovery::DiscoveryConfig,
    ) -> std::io::Result<()> {
        crate::pool::discovery::start(&self.inner, cfg)
    }

    /// Asks the maintenance for a round and waits until one has run.
    /// Unlike Octez, it returns after the round even when the connection
    /// count was already within its thresholds. Returns at once when the
    /// maintenance is disabled or the pool not [activated](Self::activate).
    pub async fn maintain(&self) {
        if self.inner.limits.maintenance_idle_time.is_none() || !self.is_activated() {
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
            warn!(parent: &self.inner.span, error = %e, "cannot save the peers file");
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

    /// Whether [`activate`](Self::activate) has been called.
    pub fn is_activated(&self) -> bool {
        self.handle.activated.load(Ordering::Acquire)
    }

    /// The span the pool's tasks run in, `pool{me=<our peer id>}`, under
    /// which each connection has its `conn{dir,addr,peer}` span. Run your
    /// own tasks about this pool in it
    /// ([`Instrument::instrument`](tracing::Instrument::instrument)) and
    /// their lines say which pool they are about too.
    pub fn span(&self) -> &tracing::Span {
        &self.inner.span
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

    /// How many events of `kind` the pool has logged since it was created:
    /// exact, where a subscriber of [`events`](Self::events) that falls
    /// behind loses some (the node's metrics count Octez's swap, bootstrap
    /// and advertise messages so).
    pub fn event_count(&self, kind: EventKind) -> u64 {
        self.inner
            .event_counts
            .get(usize::from(kind.tag()))
            .map_or(0, |n| n.load(Ordering::Relaxed))
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

    /// Connects to `point` (Octez's `P2p.connect`) with the default
    /// [`ConnectOptions`]: untrusted, any peer id, the limits'
    /// `connection_timeout`.
    ///
    /// Fails at once with [`NetError::NotActivated`] before
    /// [`activate`](Self::activate). The peer at `point` must be activated
    /// too: one that is not answers no handshake, and the attempt ends with
    /// [`NetError::Timeout`].
    pub async fn connect(&self, point: Point) -> Result<Arc<PeerConnection<A, C>>, NetError> {
        self.connect_with(point, ConnectOptions::default()).await
    }

    /// Connects to `point` with `options`; fails at once with
    /// [`NetError::NotActivated`] before [`activate`](Self::activate), as
    /// [`connect`](Self::connect).
    pub async fn connect_with(
        &self,
        point: Point,
        options: ConnectOptions,
    ) -> Result<Arc<PeerConnection<A, C>>, NetError> {
        if !self.is_activated() {
            return Err(NetError::NotActivated);
        }
        crate::pool::connect::connect(
            &self.inner,
            point,
            options.trusted.then_some(true),
            options.expected_peer_id,
            options.timeout,
        )
        .await
    }

    /// Closes `conn`; with `wait`, what is queued is written first.
    pub async fn disconnect(&self, conn: &PeerConnection<A, C>, wait: bool, reason: &str) {
        info!(parent: &self.inner.span, peer = %conn.peer_id(), reason, "disconnecting");
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
    /// encoded once; a full queue drops it (best effort, as Octez). Returns
    /// how many connections it was queued on and dropped on; the drops are
    /// also counted in [`broadcast_dropped`](Self::broadcast_dropped).
    #[allow(clippy::type_complexity)]
    pub fn broadcast(
        &self,
        msg: &A,
        except: Option<&dyn Fn(&PeerConnection<A, C>) -> bool>,
        alt: Option<(&dyn Fn(&PeerConnection<A, C>) -> bool, &A)>,
    ) -> Result<BroadcastOutcome, NetError> {
        let main = Connection::<A, C>::encode(&P2pMessage::Message(msg.clone()))?;
        let mut alt_bytes: Option<Bytes> = None;
        let mut outcome = BroadcastOutcome::default();
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
                outcome.queued += 1;
            } else {
                outcome.dropped += 1;
            }
        }
        if outcome.dropped > 0 {
            let dropped = u64::try_from(outcome.dropped).unwrap_or(u64::MAX);
            self.inner
                .broadcast_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
        Ok(outcome)
    }

    /// How many broadcast writes the pool has dropped since it was created,
    /// over every [`broadcast`](Self::broadcast): one per connection whose
    /// write queue was full (or closed). Octez drops them without a count.
    pub fn broadcast_dropped(&self) -> u64 {
        self.inner.broadcast_dropped.load(Ordering::Relaxed)
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
        let mut regs = Registrations::default();
        regs.point(&mut self.inner.state().tables, point, Some(true), None, now);
        self.inner.announce(regs);
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
        let mut regs = Registrations::default();
        {
            let mut st = self.inner.state();
            st.acl.unban_peer(&peer);
            regs.peer(&mut st.tables, peer, now);
            if let Some(i) = st.tables.known_peers.get_mut(&peer) {
                i.trusted = true;
            }
        }
        self.inner.announce(regs);
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
        let mut regs = Registrations::default();
        {
            let mut st = self.inner.state();
            regs.peer(&mut st.tables, peer, now);
            if let Some(p) = st.tables.known_peers.get_mut(&peer) {
                p.metadata = meta;
            }
        }
        self.inner.announce(regs);
    }

    /// Up to `size` known public points to share (Octez's sampling).
    pub fn list_known_points(&self, size: usize) -> Vec<Point> {
        self.inner.list_known_points(size)
    }
}
