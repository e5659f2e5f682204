//! The answerer (pool spec §7.2–7.4, §7.9): one task per running
//! connection that reads its messages and dispatches them — application
//! messages to the connection's bounded queue, Bootstrap to an Advertise of
//! known points, Advertise to the point table, the swap protocol, and
//! Disconnect. Each kind is throttled per connection: a message that comes
//! too soon after the previous one of its kind is delayed, never dropped.
//! Nothing read before the connection's end is lost either: the
//! application messages read before a close, a `Disconnect` or an error
//! reach the application queue before the teardown.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use tezos_p2p_wire::identity::PeerId;
use tezos_p2p_wire::message::{AppMessage, ConnMeta, P2pMessage};
use tezos_p2p_wire::point::Point;

use crate::pool::core::{Inner, NetError, PeerConnection, Registrations};
use crate::pool::events::P2pEvent;
use crate::pool::peers::PeerMeta;
use crate::pool::points::PointState;
use crate::socket::queue::Queue;
use crate::socket::SocketError;

/// Points in an Advertise answer.
const ADVERTISE_POINTS: usize = 50;

/// Per-connection throttle: the time each kind was last handled.
#[derive(Default)]
struct Throttle {
    last: HashMap<u16, Instant>,
}

impl Throttle {
    /// Waits until `cooldown` has passed since the last message of `tag`.
    async fn wait(&mut self, tag: u16, cooldown: Duration) {
        if cooldown.is_zero() {
            return;
        }
        if let Some(last) = self.last.get(&tag) {
            tokio::time::sleep_until(*last + cooldown).await;
        }
        self.last.insert(tag, Instant::now());
    }
}

fn cooldown<A>(msg: &P2pMessage<A>) -> Duration {
    match msg {
        P2pMessage::Bootstrap | P2pMessage::Advertise(_) => Duration::from_millis(100),
        P2pMessage::SwapRequest(..) | P2pMessage::SwapAck(..) => Duration::from_secs(60),
        _ => Duration::ZERO,
    }
}

/// How the answerer dials a point for a swap: the connect handler's
/// `connect`, handed in by the connect handler that runs the answerer (so
/// that the answerer does not depend on it). Boxed: a whole outgoing
/// connection's future would otherwise live in every connection's
/// answerer (6.5 KiB each, most of them idle).
pub(crate) type Dial<A, C, P> =
    fn(Arc<Inner<A, C, P>>, Point) -> Pin<Box<dyn Future<Output = Result<(), NetError>> + Send>>;

/// Runs the answerer of `conn` until the connection ends; the caller then
/// tears it down. Every application message read before the end (the peer's close,
/// its `Disconnect`, an error) is in the application queue first, so that
/// `recv` and `recv_any` get it.
pub(crate) async fn run<A, C, P>(
    inner: Arc<Inner<A, C, P>>,
    conn: Arc<PeerConnection<A, C>>,
    dial: Dial<A, C, P>,
) where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    // However the answerer ends (even dropped with the runtime), the
    // application queue is closed, so that `recv` ends once it is drained.
    let _closing = CloseOnDrop(&conn.app_q);
    let mut throttle = Throttle::default();
    loop {
        let read = tokio::select! {
            biased;
            r = conn.socket.read() => r,
            _ = inner.cancel.cancelled() => break,
        };
        let (size, msg) = match read {
            Ok(m) => m,
            Err(e) => {
                on_read_error(&inner, &conn, e);
                break;
            }
        };
        let tag = msg.tag();
        let wait = cooldown(&msg);
        let in_time = tokio::select! {
            biased;
            _ = throttle.wait(tag, wait) => true,
            _ = conn.socket.closed() => false,
        };
        if !in_time {
            // A gossip message of a connection that is over: not worth
            // handling, but what follows it may be for the application.
            drain(&inner, &conn, None);
            break;
        }
        let keep_going = match msg {
            P2pMessage::Message(m) => match forward(&inner, &conn, (size, m)).await {
                Ok(()) => true,
                Err(unsent) => {
                    drain(&inner, &conn, Some(unsent));
                    false
                }
            },
            P2pMessage::Disconnect => false,
            P2pMessage::Bootstrap => {
                on_bootstrap(&inner, &conn);
                true
            }
            P2pMessage::Advertise(points) => {
                on_advertise(&inner, &conn, &points);
                true
            }
            P2pMessage::SwapRequest(point, proposed) => {
                on_swap_request(&inner, &conn, point, proposed, dial).await;
                true
            }
            P2pMessage::SwapAck(point, proposed) => {
                on_swap_ack(&inner, &conn, point, proposed, dial).await;
                true
            }
        };
        if !keep_going {
            break;
        }
    }
    // Before the teardown (by the caller), which keeps the connection
    // reachable to `recv_any` while its queue holds messages.
    conn.app_q.close();
    conn.socket.close(false).await;
}

/// Closes the application queue when dropped.
struct CloseOnDrop<'a, T>(&'a Queue<T>);

impl<T> Drop for CloseOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The end of the connection as the answerer reads it: an undecodable
/// message greylists the peer and its address (Octez's policy).
fn on_read_error<A, C, P>(inner: &Inner<A, C, P>, conn: &PeerConnection<A, C>, e: SocketError) {
    let peer = conn.peer_id();
    if let SocketError::Decoding(e) = e {
        warn!(%peer, error = %e, "undecodable message: greylisting the peer");
        let now = inner.now();
        let mut st = inner.state();
        st.acl.greylist_addr(conn.conn_id.addr, now);
        st.acl.greylist_peer(peer);
    } else {
        debug!(%peer, error = %e, "connection ends");
    }
}

/// Puts an application message into the connection's queue, waiting for
/// room (back-pressure down to the peer). Gives it back if the connection
/// ends meanwhile.
async fn forward<A, C, P>(
    inner: &Inner<A, C, P>,
    conn: &PeerConnection<A, C>,
    mut item: (usize, A),
) -> Result<(), (usize, A)> {
    loop {
        match conn.app_q.try_push_or_return(item, 1) {
            Ok(()) => {
                inner.app_message.notify_waiters();
                return Ok(());
            }
            Err(back) => item = back,
        }
        tokio::select! {
            biased;
            room = conn.app_q.room(1) => {
                // Only the answerer closes it, after its loop.
                if room.is_err() {
                    return Err(item);
                }
            }
            _ = conn.socket.closed() => return Err(item),
        }
    }
}

/// The connection has ended (its read queue holds all it will ever hold)
/// while the answerer waited: `unsent` and every application message left
/// before the end (up to a `Disconnect` or an error) go into the
/// application queue past its bound. They were already in memory, counted
/// by the read queue's bound, and there is no more peer to push back on.
fn drain<A, C, P>(inner: &Inner<A, C, P>, conn: &PeerConnection<A, C>, unsent: Option<(usize, A)>)
where
    A: AppMessage,
    C: ConnMeta,
{
    let mut forwarded = 0;
    let mut push = |item| {
        if conn.app_q.force_push(item).is_ok() {
            forwarded += 1;
        }
    };
    if let Some(item) = unsent {
        push(item);
    }
    while let Some(read) = conn.socket.read_now() {
        match read {
            Ok((size, P2pMessage::Message(m))) => push((size, m)),
            Ok((_, P2pMessage::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                on_read_error(inner, conn, e);
                break;
            }
        }
    }
    if forwarded > 0 {
        inner.app_message.notify_waiters();
    }
}

fn on_bootstrap<A, C, P>(inner: &Inner<A, C, P>, conn: &PeerConnection<A, C>)
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let peer_id = conn.peer_id();
    inner.log(P2pEvent::BootstrapReceived { source: peer_id });
    if inner.config.private_mode || inner.config.disable_peer_discovery {
        return;
    }
    if conn.socket.private_node() {
        debug!(peer = %peer_id, "bootstrap from a private node ignored");
        return;
    }
    let points = inner.list_known_points(ADVERTISE_POINTS);
    if points.is_empty() {
        return;
    }
    if conn
        .socket
        .write_now(&P2pMessage::Advertise(points))
        .unwrap_or(false)
    {
        inner.log(P2pEvent::AdvertiseSent { source: peer_id });
    }
}

fn on_advertise<A, C, P>(inner: &Inner<A, C, P>, conn: &PeerConnection<A, C>, points: &[Point])
where
    P: PeerMeta,
{
    inner.log(P2pEvent::AdvertiseReceived {
        source: conn.peer_id(),
    });
    if inner.config.private_mode || inner.config.disable_peer_discovery {
        return;
    }
    let now = inner.now();
    let mut regs = Registrations::default();
    {
        let mut st = inner.state();
        for &p in points {
            regs.new_point(&mut st.tables, p, None, now);
        }
    }
    inner.announce(regs);
}

/// Answers `Swap_request(point, _)` from `conn`'s peer (§7.4).
async fn on_swap_request<A, C, P>(
    inner: &Arc<Inner<A, C, P>>,
    conn: &Arc<PeerConnection<A, C>>,
    point: Point,
    _proposed: PeerId,
    dial: Dial<A, C, P>,
) where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let source = conn.peer_id();
    inner.log(P2pEvent::SwapRequestReceived { source });
    if inner.config.private_mode {
        return;
    }
    let Some(linger) = inner.limits.swap_linger else {
        return;
    };
    let now = inner.now();
    let candidate = {
        let st = inner.state();
        let too_soon = st.swap_lingers(now, linger, false);
        let busy = st
            .tables
            .known_points
            .get(&point)
            .is_some_and(|i| !matches!(i.state, PointState::Disconnected));
        if too_soon || busy {
            None
        } else {
            let candidates: Vec<_> = st
                .connections
                .values()
                .filter(|c| c.peer_id() != source && !c.socket.private_node() && c.point.is_some())
                .cloned()
                .collect();
            drop(st);
            let mut rng = inner
                .rng
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            use rand::seq::SliceRandom;
            Some(candidates.choose(&mut *rng).cloned())
        }
    };
    let Some(candidate) = candidate else {
        inner.log(P2pEvent::SwapRequestIgnored { source });
        return;
    };
    let Some(q) = candidate else {
        debug!("no swap candidate");
        return;
    };
    let Some(q_point) = q.point else { return };
    if !conn
        .socket
        .write_now(&P2pMessage::SwapAck(q_point, q.peer_id()))
        .unwrap_or(false)
    {
        return;
    }
    inner.log(P2pEvent::SwapAckSent { source });
    swap(inner, point, q.peer_id(), dial).await;
}

/// Answers `Swap_ack(point, _)`: acts only on a connection where we sent a
/// Swap_request.
async fn on_swap_ack<A, C, P>(
    inner: &Arc<Inner<A, C, P>>,
    conn: &Arc<PeerConnection<A, C>>,
    point: Point,
    _proposed: PeerId,
    dial: Dial<A, C, P>,
) where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let source = conn.peer_id();
    inner.log(P2pEvent::SwapAckReceived { source });
    if inner.config.private_mode || inner.limits.swap_linger.is_none() {
        return;
    }
    // Taking the request makes a later, unsolicited Swap_ack a no-op
    // (Octez never clears it).
    let request = conn
        .last_sent_swap_request
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some((_, proposed)) = request else {
        return;
    };
    let running = inner
        .state()
        .tables
        .known_points
        .get(&point)
        .is_some_and(|i| matches!(i.state, PointState::Running { .. }));
    if running {
        return;
    }
    swap(inner, point, proposed, dial).await;
}

/// Connects to `point`; on success drops the connection to `drop_peer`.
async fn swap<A, C, P>(
    inner: &Arc<Inner<A, C, P>>,
    point: Point,
    drop_peer: PeerId,
    dial: Dial<A, C, P>,
) where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let now = inner.now();
    let previous = {
        let mut st = inner.state();
        let previous = st.latest_successful_swap;
        st.latest_accepted_swap = Some(now);
        previous
    };
    match dial(inner.clone(), point).await {
        Ok(_) => {
            inner.state().latest_successful_swap = Some(inner.now());
            inner.log(P2pEvent::SwapSuccess { source: drop_peer });
            let victim = inner.state().connections.get(&drop_peer).cloned();
            if let Some(v) = victim {
                v.socket.close(false).await;
            }
        }
        Err(e) => {
            debug!(%point, error = %e, "swap failed");
            inner.state().latest_accepted_swap = previous;
            inner.log(P2pEvent::SwapFailure { source: drop_peer });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn throttle_delays_a_burst_and_never_drops() {
        let mut t = Throttle::default();
        let start = Instant::now();
        let cooldown = Duration::from_millis(100);
        // A burst of five Bootstraps: the first passes at once, each next
        // one a cooldown after the previous; all five pass.
        let mut handled = Vec::new();
        for _ in 0..5 {
            t.wait(0x02, cooldown).await;
            handled.push(start.elapsed());
        }
        assert_eq!(handled, (0..5).map(|i| cooldown * i).collect::<Vec<_>>());
        // Another kind is not delayed by the first, nor are app messages.
        let before = Instant::now();
        t.wait(0x04, Duration::from_secs(60)).await;
        t.wait(0x10, Duration::ZERO).await;
        t.wait(0x10, Duration::ZERO).await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[test]
    fn cooldowns_are_octez_s() {
        type M = P2pMessage<tezos_p2p_wire::message::RawMessage>;
        let p: Point = "1.2.3.4:5".parse().unwrap();
        let id = PeerId([0; 16]);
        assert_eq!(cooldown(&M::Bootstrap), Duration::from_millis(100));
        assert_eq!(cooldown(&M::Advertise(vec![])), Duration::from_millis(100));
        assert_eq!(cooldown(&M::SwapRequest(p, id)), Duration::from_secs(60));
        assert_eq!(cooldown(&M::SwapAck(p, id)), Duration::from_secs(60));
        assert_eq!(cooldown(&M::Disconnect), Duration::ZERO);
    }
}
