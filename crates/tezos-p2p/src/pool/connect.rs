//! The connect handler (pool spec §3.2–3.9): pre-checks of incoming and
//! outgoing connections, authentication, admission in Octez's order, the
//! Nack with alternative points, registration of a running connection and
//! its teardown.
//!
//! Admission is atomic: the slot check and the reservation of the slot
//! happen in one critical section (a handshake admitted but not yet running
//! holds a slot), so parallel handshakes never overshoot the limit.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use tezos_p2p_wire::identity::PeerId;
use tezos_p2p_wire::message::{AppMessage, ConnMeta};
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::rejection::Motive;

use crate::pool::admission::{self, Candidate, Decision, Rules};
use crate::pool::answerer;
use crate::pool::core::{Inner, NetError, PeerConnection, Registrations};
use crate::pool::events::P2pEvent;
use crate::pool::peers::{ConnId, PeerMeta};
use crate::pool::points::PointState;
use crate::socket::queue::Queue;
use crate::socket::transport::BoxStream;
use crate::socket::{self, AcceptOptions, AuthConfig, SocketError};

/// Alternative points sent in a Nack.
const NACK_POINTS: usize = 50;

/// Whether a handshake failure greylists the remote IP (spec §3.4 step 2).
fn greylists_ip(e: &SocketError) -> bool {
    matches!(
        e,
        SocketError::NotEnoughProofOfWork(_)
            | SocketError::InvalidAuth
            | SocketError::DecipherError
            | SocketError::InvalidMessageSize
            | SocketError::Encoding(_)
            | SocketError::Decoding(_)
            | SocketError::InvalidChunksSize(_)
            | SocketError::InvalidIncomingCiphertextSize(_)
            | SocketError::InvalidPublicKey
    )
}

/// An outgoing connection (Octez's `P2p_connect_handler.connect`).
pub(crate) async fn connect<A, C, P>(
    inner: &Arc<Inner<A, C, P>>,
    point: Point,
    trusted: Option<bool>,
    expected_peer_id: Option<PeerId>,
    timeout: Option<Duration>,
) -> Result<Arc<PeerConnection<A, C>>, NetError>
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let now = inner.now();
    let mut regs = Registrations::default();
    let checked = (|| {
        let mut st = inner.state();
        let st = &mut *st;
        if st.shut_down {
            return Err(NetError::ShutDown);
        }
        if st.acl.banned_addr(point.ip()) {
            return Err(NetError::PointBanned(point));
        }
        // Octez allows a dial when exactly at the maximum (`<=`); we refuse
        // it, since the admission would refuse it anyway.
        if st.connections.len() + st.admitted >= inner.limits.max_connections {
            return Err(NetError::TooManyConnections);
        }
        regs.point(&mut st.tables, point, trusted, expected_peer_id, now);
        let info = st
            .tables
            .known_points
            .get_mut(&point)
            .ok_or(NetError::PointTableFull(point))?;
        if inner.config.private_mode && !info.trusted {
            return Err(NetError::PrivateMode(point));
        }
        match info.state {
            PointState::Requested | PointState::Accepted { .. } => {
                Err(NetError::PendingConnection(point))
            }
            PointState::Running { .. } => Err(NetError::Connected(point)),
            PointState::Disconnected => {
                info.set_requested(now).map_err(|e| {
                    // Cannot happen from Disconnected.
                    warn!(%point, error = %e, "dial: point out of step");
                    NetError::PendingConnection(point)
                })
            }
        }
    })();
    inner.announce(regs);
    checked?;
    inner.log(P2pEvent::OutgoingConnection { point });
    let timeout = timeout.unwrap_or(inner.limits.connection_timeout);
    let attempt = async {
        let stream = inner
            .config
            .transport
            .connect(point.to_socket_addr())
            .await
            .map_err(|e| NetError::ConnectionFailed {
                point,
                source: e.into(),
            });
        match stream {
            Ok(stream) => authenticate(inner, stream, point.to_socket_addr(), Some(point)).await,
            Err(e) => {
                point_failed(inner, point);
                Err(e)
            }
        }
    };
    let attempt = attempt.instrument(inner.conn_span(false, point));
    tokio::select! {
        biased;
        r = tokio::time::timeout(timeout, attempt) => match r {
            Ok(r) => r,
            Err(_) => {
                point_failed(inner, point);
                Err(NetError::Timeout)
            }
        },
        _ = inner.cancel.cancelled() => {
            point_failed(inner, point);
            Err(NetError::ShutDown)
        }
    }
}

/// An outgoing attempt failed before admission: the point, still
/// Requested by it, goes back to Disconnected with a back-off step. A point
/// that another connection made Accepted or Running is left alone (an
/// admitted attempt is undone by its [`Admission`] guard).
fn point_failed<A, C, P: PeerMeta>(inner: &Inner<A, C, P>, point: Point) {
    let now = inner.now();
    let cfg = inner.config.reconnection;
    let mut st = inner.state();
    if let Some(info) = st.tables.known_points.get_mut(&point) {
        if info.state == PointState::Requested {
            // Cannot fail from Requested.
            let _ = info.set_disconnected(&cfg, now, false);
        }
    }
}

/// An outgoing attempt refused after the peer's id was learnt: the peer
/// (if known and not connected otherwise) records it as its
/// `last_failed_connection` (Octez never sets it).
fn peer_failed<A, C, P: PeerMeta>(inner: &Inner<A, C, P>, peer: PeerId, point: ConnId) {
    let now = inner.now();
    if let Some(info) = inner.state().tables.known_peers.get_mut(&peer) {
        if info.is_disconnected() {
            info.set_failed_connection(point, now);
        }
    }
}

/// An admitted handshake: it holds a connection slot and keeps its point
/// and peer Accepted. Dropped before it becomes a running connection
/// (failed Ack exchange, timeout, shutdown), it gives the slot back and
/// puts the point and the peer back to Disconnected.
struct Admission<A, C, P: PeerMeta> {
    inner: Arc<Inner<A, C, P>>,
    point: Option<Point>,
    peer: PeerId,
    armed: bool,
}

impl<A, C, P: PeerMeta> Admission<A, C, P> {
    /// The connection runs: the caller moves the slot to the connection
    /// table (decrementing `admitted`) in the same critical section.
    fn into_running(mut self) {
        self.armed = false;
    }
}

impl<A, C, P: PeerMeta> Drop for Admission<A, C, P> {
    fn drop(&mut self) {
        let now = self.inner.now();
        let cfg = self.inner.config.reconnection;
        if !self.armed {
            return;
        }
        let mut st = self.inner.state();
        st.admitted -= 1;
        st.tables.unset_accepted(self.point, self.peer, &cfg, now);
    }
}

/// An incoming handshake's place in the pool's `State::incoming`:
/// given back when the handshake ends, however it ends.
struct IncomingSlot<A, C, P> {
    inner: Arc<Inner<A, C, P>>,
    ip: IpAddr,
}

impl<A, C, P> Drop for IncomingSlot<A, C, P> {
    fn drop(&mut self) {
        self.inner.state().incoming.release(self.ip);
    }
}

/// An incoming connection (Octez's `P2p_connect_handler.accept`): pre-checks,
/// then the handshake in the background under the authentication timeout.
pub(crate) fn accept<A, C, P>(inner: &Arc<Inner<A, C, P>>, stream: BoxStream, remote: SocketAddr)
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let ip = Point::from(remote).ip();
    inner.log(P2pEvent::IncomingConnection {
        point: Point::from(remote),
    });
    {
        let mut st = inner.state();
        let max = inner.limits.max_incoming_connections;
        if st.shut_down || st.incoming.total() >= max {
            debug!(%remote, "too many incoming connections");
            return;
        }
        if st.acl.banned_addr(ip) {
            debug!(%remote, "incoming connection from a banned address");
            return;
        }
        // Dropping the stream closes it: no handshake work, no greylisting
        // (the source may be honest peers behind one NAT).
        let per_ip = inner.limits.max_incoming_connections_per_ip;
        if let Err(refusal) = st.incoming.admit(ip, max, per_ip) {
            debug!(%remote, ?refusal, "too many incoming connections from this address");
            return;
        }
    }
    let slot = IncomingSlot {
        inner: inner.clone(),
        ip,
    };
    let span = inner.conn_span(true, remote);
    inner.spawn(async move {
        let inner2 = &slot.inner;
        let timeout = inner2.limits.authentication_timeout;
        let cancel = inner2.cancel.clone();
        let res = tokio::select! {
            biased;
            r = tokio::time::timeout(timeout, authenticate(inner2, stream, remote, None)) => r.ok(),
            _ = cancel.cancelled() => None,
        };
        drop(slot);
        if let Some(Err(e)) = res {
            debug!(%remote, error = %e, "incoming connection refused");
        }
    }.instrument(span));
}

/// Authentication and admission, common to both directions (§3.4).
/// `out_point` is the dialled point of an outgoing connection.
async fn authenticate<A, C, P>(
    inner: &Arc<Inner<A, C, P>>,
    stream: BoxStream,
    remote: SocketAddr,
    out_point: Option<Point>,
) -> Result<Arc<PeerConnection<A, C>>, NetError>
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let incoming = out_point.is_none();
    let remote_ip = Point::from(remote).ip();
    let io = inner.scheduler.register();
    let cfg = AuthConfig {
        identity: inner.config.identity.clone(),
        pow_target: inner.config.proof_of_work_target,
        incoming,
        remote_addr: remote,
        listening_port: inner.config.advertised_port.or(inner.listening_port),
        version: inner.config.versions.announced(),
        metadata: inner.config.metadata.clone(),
        cancel: inner.cancel.clone(),
        timeout: None,
    };
    let (info, auth) = match socket::authenticate(stream, io, cfg).await {
        Ok(x) => x,
        Err(e) => {
            let now = inner.now();
            let mut st = inner.state();
            if greylists_ip(&e) {
                st.acl.greylist_addr(remote_ip, now);
            }
            if let SocketError::Myself(_) = e {
                if let Some(p) = out_point {
                    st.tables.add_my_id_point(p);
                }
            }
            drop(st);
            inner.log(P2pEvent::AuthenticationFailed {
                point: Point::from(remote),
            });
            if let Some(p) = out_point {
                point_failed(inner, p);
            }
            return Err(e.into());
        }
    };
    let peer = info.peer_id;
    tracing::Span::current().record("peer", tracing::field::display(peer));
    let now = inner.now();
    let id_point = ConnId {
        addr: info.id_point.0,
        port: info.id_point.1,
    };
    // Steps 4 to 9, in one critical section: the decision, then its
    // effects on the state.
    let mut regs = Registrations::default();
    let (decision, conn_point) = {
        let mut st = inner.state();
        let st = &mut *st;
        let remote_point = info.point();
        let conn_point = out_point.or(remote_point);
        let candidate = Candidate {
            peer,
            incoming,
            point: conn_point,
            announced: &info.announced_version,
        };
        let rules = Rules {
            local_peer: inner.config.identity.peer_id,
            versions: &inner.config.versions,
            threshold: inner.limits.connections_threshold(),
            private_mode: inner.config.private_mode,
        };
        let in_use = st.connections.len() + st.admitted;
        let decision = admission::admit(&st.tables, &st.acl, in_use, &rules, &candidate);
        if decision != Decision::PeerBanned {
            if let Some(p) = remote_point {
                regs.new_point(&mut st.tables, p, None, now);
            }
        }
        match decision {
            Decision::PeerBanned => {}
            Decision::UnexpectedPeer { .. } => st.acl.greylist_addr(remote_ip, now),
            Decision::Nack(_) | Decision::NotTrusted | Decision::Accept => {
                regs.peer(&mut st.tables, peer, now);
                if let Some(i) = conn_point.and_then(|p| st.tables.known_points.get_mut(&p)) {
                    i.known_public = !info.private_node;
                }
            }
        }
        if decision == Decision::Accept {
            if let Err(e) = st.tables.set_accepted(conn_point, peer, id_point, now) {
                warn!(%peer, error = %e, "admission: point and peer out of step");
            }
            st.admitted += 1;
        }
        (decision, conn_point)
    };
    inner.announce(regs);
    let refused = match decision {
        Decision::PeerBanned => Some(NetError::PeerBanned(peer)),
        Decision::UnexpectedPeer { expected } => Some(NetError::IdentityCheckFailure {
            point: conn_point.unwrap_or(Point::from(remote)),
            expected,
            received: peer,
        }),
        Decision::NotTrusted => Some(NetError::PrivateMode(
            conn_point.unwrap_or(Point::from(remote)),
        )),
        Decision::Nack(_) | Decision::Accept => None,
    };
    if let Some(e) = refused {
        if let Some(p) = out_point {
            point_failed(inner, p);
            peer_failed(inner, peer, id_point);
        }
        return Err(e);
    }
    if let Decision::Nack(motive) = decision {
        inner.log(P2pEvent::RejectingRequest {
            point: Point::from(remote),
            id_point,
            peer_id: peer,
        });
        let points = if inner.config.disable_peer_discovery {
            Vec::new()
        } else {
            inner.list_known_points(NACK_POINTS)
        };
        // The peer may be gone already: it is refused either way.
        let _ = auth.nack(motive, points).await;
        if let Some(p) = out_point {
            point_failed(inner, p);
            peer_failed(inner, peer, id_point);
        }
        return if matches!(
            motive,
            Motive::UnknownChainName
                | Motive::DeprecatedP2pVersion
                | Motive::DeprecatedDistributedDbVersion
        ) {
            inner
                .state()
                .tables
                .unregister_point(&out_point.unwrap_or(Point::from(remote)));
            Err(NetError::RejectedNoCommonProtocol {
                announced: info.announced_version.clone(),
            })
        } else {
            Err(NetError::Rejected { peer, motive })
        };
    }
    // Admitted: the slot is held until the connection runs or the guard
    // is dropped.
    let admission = Admission {
        inner: inner.clone(),
        point: conn_point,
        peer,
        armed: true,
    };
    inner.log(P2pEvent::AcceptingRequest {
        point: Point::from(remote),
        id_point,
        peer_id: peer,
    });
    let negotiated = inner
        .config
        .versions
        .select(&info.announced_version)
        .unwrap_or_else(|_| info.announced_version.clone());
    let opts = AcceptOptions {
        incoming_message_queue_size: inner.limits.incoming_message_queue_size,
        outgoing_message_queue_size: inner.limits.outgoing_message_queue_size,
        binary_chunks_size: inner.limits.binary_chunks_size,
        cancel: Some(inner.cancel.clone()),
        message_budget: Some(inner.budget.clone()),
        ..AcceptOptions::default()
    };
    match auth.accept::<A>(opts).await {
        Ok(socket) => Ok(register_connection(
            inner, socket, admission, id_point, negotiated,
        )),
        Err(e) => {
            drop(admission);
            let now = inner.now();
            let mut regs = Registrations::default();
            if let SocketError::RejectedByNack {
                alternative_points: Some(points),
                ..
            } = &e
            {
                if !inner.config.disable_peer_discovery {
                    let mut st = inner.state();
                    for &p in points {
                        regs.new_point(&mut st.tables, p, None, now);
                    }
                }
            }
            inner.announce(regs);
            inner.log(P2pEvent::RequestRejected {
                point: Point::from(remote),
                identity: Some((id_point, peer)),
            });
            Err(e.into())
        }
    }
}

/// Makes an accepted socket a running connection (§3.7).
fn register_connection<A, C, P>(
    inner: &Arc<Inner<A, C, P>>,
    socket: socket::Connection<A, C>,
    admission: Admission<A, C, P>,
    conn_id: ConnId,
    negotiated_version: tezos_p2p_wire::version::NetworkVersion,
) -> Arc<PeerConnection<A, C>>
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let peer = socket.info().peer_id;
    let conn_point = admission.point;
    let now = inner.now();
    admission.into_running();
    let conn = {
        let mut st = inner.state();
        let st = &mut *st;
        // The admitted slot becomes the running connection's, atomically.
        st.admitted -= 1;
        let point_trusted = conn_point
            .and_then(|p| st.tables.known_points.get(&p))
            .is_some_and(|i| i.trusted);
        let peer_trusted = st.tables.known_peers.get(&peer).is_some_and(|i| i.trusted);
        let conn = Arc::new(PeerConnection {
            cancel: CancellationToken::new(),
            socket,
            app_q: Queue::new(inner.limits.incoming_app_message_queue_size),
            point: conn_point,
            conn_id,
            negotiated_version,
            trusted: point_trusted || peer_trusted,
            last_sent_swap_request: Mutex::new(None),
        });
        if let Err(e) = st.tables.set_running(conn_point, peer, conn_id, now) {
            warn!(%peer, error = %e, "connection: point and peer out of step");
        }
        st.connections.insert(peer, conn.clone());
        conn
    };
    info!(peer = %peer, addr = %conn_id, "connection established");
    inner.log(P2pEvent::ConnectionEstablished {
        id_point: conn_id,
        peer_id: peer,
    });
    inner.triggers.new_connection.notify_waiters();
    inner.run_hooks(&inner.on_new_connection, &conn);
    if inner.active() >= inner.limits.max_connections {
        inner.log(P2pEvent::TooManyConnections);
        inner.triggers.too_many_connections.notify_waiters();
    }
    let inner2 = inner.clone();
    let conn2 = conn.clone();
    // In the span of the connection's handshake (the current one).
    inner.tasks.spawn(
        async move {
            answerer::run(inner2.clone(), conn2.clone(), dial).await;
            teardown(&inner2, &conn2);
        }
        .in_current_span(),
    );
    conn
}

/// The answerer's way to dial a point for a swap.
fn dial<A, C, P>(
    inner: Arc<Inner<A, C, P>>,
    point: Point,
) -> Pin<Box<dyn Future<Output = Result<(), NetError>> + Send>>
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    Box::pin(async move { connect(&inner, point, None, None, None).await.map(drop) })
}

/// Tears a running connection down (§3.7), once its answerer has ended
/// (and closed its application queue). A connection whose application
/// queue still holds messages is kept for `recv_any` until it is drained:
/// at most `max_connections` of them, the oldest dropped beyond.
fn teardown<A, C, P>(inner: &Inner<A, C, P>, conn: &Arc<PeerConnection<A, C>>)
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let peer = conn.peer_id();
    let now = inner.now();
    let cfg = inner.config.reconnection;
    let removed = {
        let mut st = inner.state();
        let st = &mut *st;
        let removed = match st.connections.get(&peer) {
            Some(c) if Arc::ptr_eq(c, conn) => {
                st.connections.remove(&peer);
                true
            }
            _ => false,
        };
        if removed {
            if let Err(e) = st
                .tables
                .set_disconnected(conn.point, peer, &cfg, now, false)
            {
                warn!(%peer, error = %e, "teardown: point and peer out of step");
            }
            // Tables grown past their maximum by a burst of connections
            // shrink back as they close.
            st.tables.forget_over_max(&peer, conn.point);
        }
        if !st.shut_down && !conn.app_q.is_empty() {
            st.draining.push_back(conn.clone());
            while st.draining.len() > inner.limits.max_connections {
                if let Some(old) = st.draining.pop_front() {
                    warn!(peer = %old.peer_id(), "too many closed connections with unread messages: dropping the oldest's");
                }
            }
        }
        removed
    };
    if !removed {
        conn.cancel.cancel();
        return;
    }
    inner.log(P2pEvent::Disconnection { peer_id: peer });
    inner.run_hooks(&inner.on_disconnection, conn);
    // Only now: `disconnect` waits on this, and returns after the hooks.
    conn.cancel.cancel();
    if inner.active() < inner.limits.min_connections {
        inner.log(P2pEvent::TooFewConnections);
        inner.triggers.too_few_connections.notify_waiters();
    }
}
