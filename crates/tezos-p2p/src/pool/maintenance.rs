//! The maintenance worker (pool spec §6, F26–F29, F34): keeps the number of
//! connections between the thresholds derived from min/expected/max.
//!
//! It runs one round at activation, then whenever the idle timer fires,
//! [`Net::maintain`](crate::Net::maintain) is called, or the pool signals
//! too few or too many connections. Too few: contact candidate points in
//! parallel (never-missed first, then the oldest miss; the reconnection
//! back-off is respected, except that a node without any connection
//! retries its trusted points once a minute), and when short of candidates ask the peers for
//! more (Bootstrap) and wait for a new point or 5 s (while dials still
//! hang, too: Octez waits for them first). Too many: disconnect
//! random connections, sparing private-and-trusted ones. Within the
//! thresholds: propose one swap, if swaps are enabled and the linger has
//! passed since the last swap accepted, succeeded or proposed (Octez
//! ignores both when initiating, spec §11 quirk 2).

use std::collections::HashSet;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use rand::seq::SliceRandom;
use rand::Rng;
use tokio::task::JoinSet;
use tracing::{debug, info};

use tezos_p2p_wire::message::{AppMessage, ConnMeta, P2pMessage};
use tezos_p2p_wire::point::Point;

use crate::pool::core::Inner;
use crate::pool::events::P2pEvent;
use crate::pool::peers::PeerMeta;
use crate::pool::points::PointState;

/// The points a round has looked at.
type PointSet = HashSet<Point, foldhash::fast::RandomState>;

/// How long the worker waits for new points when short of candidates
/// (Octez's `time_between_looking_for_peers`).
pub const TIME_BETWEEN_LOOKING_FOR_PEERS: Duration = Duration::from_secs(5);

/// The shortest wait for new points when short of candidates.
pub const MIN_ASK: Duration = Duration::from_millis(500);

/// Why a round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Motive {
    Activation,
    Timer,
    External,
    TooFew,
    TooMany,
}

/// The worker's loop; ends at shutdown.
pub(crate) async fn run<A, C, P>(inner: Arc<Inner<A, C, P>>, idle: Duration)
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let mut motive = Motive::Activation;
    loop {
        debug!(?motive, "maintenance round");
        tokio::select! {
            biased;
            _ = maintain(&inner) => {}
            _ = inner.cancel.cancelled() => return,
        }
        inner.maintenance.done.notify_waiters();
        let h = &inner.maintenance;
        let t = &inner.triggers;
        motive = tokio::select! {
            biased;
            _ = tokio::time::sleep(idle) => Motive::Timer,
            _ = h.please.notified() => Motive::External,
            _ = t.too_few_connections.notified() => Motive::TooFew,
            _ = t.too_many_connections.notified() => Motive::TooMany,
            _ = inner.cancel.cancelled() => return,
        };
    }
}

/// One request: correct the connection count if it is out of bounds, else
/// propose a swap.
async fn maintain<A, C, P>(inner: &Arc<Inner<A, C, P>>)
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let b = inner.limits.bounds();
    let n = inner.active();
    if n < b.min_threshold || n > b.max_threshold {
        let started = tokio::time::Instant::now();
        loop {
            inner.log(P2pEvent::MaintenanceStarted);
            let n = inner.active();
            if n < b.min_threshold {
                inner.log(P2pEvent::TooFewConnections);
                // Octez dials up to max_target; aiming at the expected count
                // instead leaves room for nodes that join later, which
                // otherwise find every peer full.
                let aim = inner
                    .limits
                    .expected_connections
                    .clamp(b.min_target, b.max_target.max(b.min_target));
                let contacted = try_to_contact(inner, b.min_target - n, aim - n).await;
                if !contacted {
                    ask_for_more_contacts(inner).await;
                }
            } else if n > b.max_threshold {
                inner.log(P2pEvent::TooManyConnections);
                disconnect_random(inner, n - b.max_target).await;
            } else {
                break;
            }
        }
        info!(elapsed = ?started.elapsed(), active = inner.active(), "maintenance ended");
        inner.log(P2pEvent::MaintenanceEnded);
    } else if !inner.config.private_mode {
        send_swap_request(inner);
    }
}

/// Contacts candidate points until `min_to_contact` connections succeeded;
/// false when it ran out of candidates first.
///
/// Octez dials `max_to_contact` candidates in parallel and waits for all of
/// them before the next round, so one dial to a dead host holds the round
/// for the whole connection timeout (10 s) while refused ones came back in
/// a round trip. Here a dial that fails is replaced at once by the next
/// candidate: never more dials in flight than Octez's round
/// (`max_to_contact` less the connections made), the same candidates in
/// the same order, sooner. Dials still in flight when enough connections
/// are made are waited for, as in Octez.
///
/// When no candidate is left but dials are still in flight, the round asks
/// its peers for more points ([`ask_for_more_contacts`]: Bootstrap, then a
/// wait for a new point or 4–5 s) while it waits for them, and dials what
/// comes. Octez asks only once the round's last dial has ended, so a dial
/// to a crashed host (its peers list it until their connection to it times
/// out) holds a node below its minimum for the 10 s connection timeout
/// with nothing else to do: in a simulated churning network (1 000 nodes,
/// 10 % replaced a minute, half crashing) that was most of the time of
/// the joiners that took more than 10 s to reach 4 connections. The
/// messages are Octez's, and never more often than the maintenance's own
/// asks (one Bootstrap per peer per ask, asks at least 0.5 s apart).
async fn try_to_contact<A, C, P>(
    inner: &Arc<Inner<A, C, P>>,
    mut min_to_contact: usize,
    mut max_to_contact: usize,
) -> bool
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let start = inner.now();
    // foldhash: the scan below looks up every known point in this set
    // (SipHash was most of the scan's cost).
    let mut seen: PointSet = HashSet::default();
    let mut dials = JoinSet::new();
    let mut out_of_candidates = false;
    let mut asking: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
    let mut asked = false;
    loop {
        if min_to_contact > 0 && !out_of_candidates {
            let room = max_to_contact.saturating_sub(dials.len());
            if room > 0 {
                let candidates = candidates(inner, start, &mut seen, room);
                out_of_candidates = candidates.is_empty();
                for point in candidates {
                    let inner = inner.clone();
                    dials.spawn(async move {
                        crate::pool::connect::connect(&inner, point, None, None, None)
                            .await
                            .is_ok()
                    });
                }
            }
        }
        if min_to_contact == 0 {
            asking = None;
        } else if out_of_candidates && !asked && !dials.is_empty() {
            asked = true;
            asking = Some(Box::pin(ask_for_more_contacts(inner)));
        }
        let joined = match asking.as_mut() {
            Some(ask) => tokio::select! {
                biased;
                r = dials.join_next(), if !dials.is_empty() => r,
                () = ask => {
                    asking = None;
                    out_of_candidates = false;
                    continue;
                }
            },
            None => dials.join_next().await,
        };
        let Some(r) = joined else {
            if min_to_contact == 0 {
                return true;
            }
            tokio::task::yield_now().await;
            return false;
        };
        if r.unwrap_or(false) {
            min_to_contact = min_to_contact.saturating_sub(1);
            max_to_contact = max_to_contact.saturating_sub(1);
        } else {
            // A failure may have made room: new points (a Nack's) may be
            // candidates now.
            out_of_candidates = false;
        }
    }
}

/// Octez's classification (§6.4): the best `max` candidates, never-missed
/// points first, then the oldest miss. The back-off is Octez's, except
/// that a node without any connection retries its trusted points at least
/// once a minute ([`PointInfo::backs_off`](crate::pool::points::PointInfo::backs_off)).
///
/// Ties (most of all: the never-missed points, every point a Nack just
/// taught) are broken at random, by a hash of the point salted per scan.
/// Octez keeps whichever its bounded heap meets first while folding its
/// hash table: an order unrelated to the points' addresses or ages.
/// Breaking them by the point itself, as we did, made every node dial the
/// lowest addresses first: in a simulation, where addresses are given in
/// join order, the oldest and fullest nodes, so that every joiner of a
/// churning network dialed the same six neighbours of node 0 first, and
/// the newest nodes, the ones with room, last.
fn candidates<A, C, P: PeerMeta>(
    inner: &Inner<A, C, P>,
    start: SystemTime,
    seen: &mut PointSet,
    max: usize,
) -> Vec<Point> {
    let now = inner.now();
    let private = inner.config.private_mode;
    let cfg = inner.config.reconnection;
    // Drawn before the state is locked: `list_known_points` takes the two
    // locks in that order.
    let salt: u64 = inner
        .rng
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .gen();
    let tie = foldhash::fast::FixedState::with_seed(salt);
    let st = inner.state();
    // Without any connection no Bootstrap can be sent: only trusted points
    // and the Nacks of dialed ones can bring this node new points.
    let isolated = st.connections.is_empty();
    let mut found: Vec<(Option<SystemTime>, u64, Point)> = Vec::new();
    for (point, info) in &st.tables.known_points {
        if seen.contains(point) || (private && !info.trusted) {
            continue;
        }
        let last_miss = info.last_miss();
        if !matches!(info.state, PointState::Disconnected)
            || last_miss.is_some_and(|t| t > start)
            || info.backs_off(&cfg, now, isolated)
        {
            seen.insert(*point);
            continue;
        }
        // The ban check (a Blake2b hash for the greylist) only for the
        // points that would be candidates: it dominated the scan. Banned
        // points are not marked seen, as in Octez.
        if st.acl.banned_addr(point.ip()) {
            continue;
        }
        seen.insert(*point);
        found.push((last_miss, tie.hash_one(point), *point));
    }
    // Never missed first (None sorts first), then the oldest miss, ties at
    // random (a seeded run stays reproducible: the salt comes from the
    // pool's seeded generator, and the point breaks hash collisions).
    found.sort_unstable();
    found.truncate(max);
    // Every candidate is now seen, kept or not, as in Octez: a round dials
    // at most `max_to_contact` of the points it knew at its start, then
    // only new ones (letting the others wait for a free place made 1 000
    // simulated nodes dial 70 % more and converge later).
    found.into_iter().map(|(_, _, p)| p).collect()
}

/// Sends Bootstrap to every public peer, then waits for a new point or
/// peer, or 4–5 s (Octez: 5 s). (Waking up earlier, when a known point's reconnection
/// back-off expires, makes 20 TCP nodes converge in 1 s instead of 10 s
/// but a 1 000-node simulation dial in storms: 45 s of virtual time
/// instead of 15 s, and a third more wall time.)
async fn ask_for_more_contacts<A, C, P>(inner: &Arc<Inner<A, C, P>>)
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    // Listen before asking: an Advertise that answers our Bootstrap before
    // we wait must still end the wait.
    let new_point = inner.triggers.new_point.notified();
    let new_peer = inner.triggers.new_peer.notified();
    tokio::pin!(new_point, new_peer);
    new_point.as_mut().enable();
    new_peer.as_mut().enable();
    if !inner.config.private_mode && !inner.config.disable_peer_discovery {
        let conns: Vec<_> = inner.state().connections.values().cloned().collect();
        for c in conns {
            if !c.socket.private_node() {
                let _ = c.socket.write_now(&P2pMessage::Bootstrap);
                inner.log(P2pEvent::BootstrapSent {
                    source: c.peer_id(),
                });
            }
        }
        inner.maintenance.wake_discovery.notify_waiters();
    }
    // Up to a fifth less than Octez's fixed 5 s, at random: two nodes that
    // dial each other at the same instant refuse each other, and with a
    // fixed wait they retry in step forever under virtual time.
    let wait = {
        let mut rng = inner.rng.lock().unwrap_or_else(PoisonError::into_inner);
        TIME_BETWEEN_LOOKING_FOR_PEERS.mul_f64(1.0 - rng.gen::<f64>() / 5.0)
    };
    // A new point ends the wait, but not before MIN_ASK: at scale points
    // keep coming, and a round per point would flood every peer with
    // Bootstrap messages.
    let start = tokio::time::Instant::now();
    tokio::select! {
        biased;
        _ = new_point => {}
        _ = new_peer => {}
        _ = tokio::time::sleep(wait) => return,
    }
    tokio::time::sleep_until(start + MIN_ASK).await;
}

/// Closes `k` random connections, sparing the private-and-trusted ones,
/// and waits until they are torn down.
async fn disconnect_random<A, C, P>(inner: &Arc<Inner<A, C, P>>, k: usize)
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let mut victims: Vec<_> = inner
        .state()
        .connections
        .values()
        .filter(|c| !(c.socket.private_node() && c.trusted))
        .cloned()
        .collect();
    victims.sort_by_key(|c| c.peer_id());
    victims.shuffle(&mut *inner.rng.lock().unwrap_or_else(PoisonError::into_inner));
    for v in victims.into_iter().take(k) {
        v.socket.close(false).await;
        v.cancel.cancelled().await;
    }
}

/// Proposes one swap (§7.4): to a random public peer R, the point of
/// another public connection P. Skipped when swaps are disabled or the
/// last swap (accepted, successful or proposed by us) is more recent than
/// the linger, so at most one proposal per linger.
fn send_swap_request<A, C, P>(inner: &Inner<A, C, P>)
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let Some(linger) = inner.limits.swap_linger else {
        return;
    };
    let now = inner.now();
    let mut conns: Vec<_> = {
        let st = inner.state();
        if st.swap_lingers(now, linger, true) {
            return;
        }
        st.connections
            .values()
            .filter(|c| !c.socket.private_node())
            .cloned()
            .collect()
    };
    if conns.len() < 2 {
        return;
    }
    conns.sort_by_key(|c| c.peer_id());
    let (r, p) = {
        let mut rng = inner.rng.lock().unwrap_or_else(PoisonError::into_inner);
        conns.shuffle(&mut *rng);
        let r = conns[0].clone();
        let Some(p) = conns[1..].iter().find(|c| c.point.is_some()).cloned() else {
            return;
        };
        (r, p)
    };
    let Some(point) = p.point else { return };
    inner.state().latest_swap_request = Some(now);
    *r.last_sent_swap_request
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some((now, p.peer_id()));
    let _ = r
        .socket
        .write_now(&P2pMessage::SwapRequest(point, p.peer_id()));
    inner.log(P2pEvent::SwapRequestSent {
        source: r.peer_id(),
    });
}

#[cfg(test)]
mod tests {
    //! The too-many branch. With the maintenance on, the admission
    //! threshold is `max_threshold` and admission is atomic, so a pool can
    //! never exceed it (Octez only does through the race of §1.4): the
    //! target here accepts with the maintenance off (threshold
    //! `max_connections`) and the worker is started afterwards, as Octez's
    //! test creates and activates its maintenance by hand.

    use std::net::SocketAddr;

    use tezos_p2p_wire::identity::PowTarget;
    use tezos_p2p_wire::message::{OctezMetadata, RawMessage};
    use tezos_p2p_wire::version::{ChainName, SupportedVersions};

    use super::*;
    use crate::net::{Config, Net};
    use crate::pool::limits::Limits;
    use crate::sim::{node_identity, node_ip};
    use crate::socket::transport::{MemoryNetwork, Transport};

    type TestNet = Net<RawMessage, OctezMetadata, ()>;

    fn config(mem: &MemoryNetwork, i: usize, known: Vec<Point>) -> Config<OctezMetadata> {
        let mut c = base_config(mem, i, false);
        c.trusted_points = known.into_iter().map(|p| (p, None)).collect();
        c
    }

    async fn node(mem: &MemoryNetwork, i: usize, limits: Limits, private: bool) -> TestNet {
        let net = Net::create(base_config(mem, i, private), limits)
            .await
            .unwrap();
        net.activate();
        net
    }

    fn base_config(mem: &MemoryNetwork, i: usize, private: bool) -> Config<OctezMetadata> {
        Config {
            listening_addr: Some(SocketAddr::new(node_ip(i), 9732)),
            advertised_port: None,
            trusted_points: vec![],
            peers_file: None,
            private_mode: private,
            identity: Arc::new(node_identity(5, i)),
            proof_of_work_target: PowTarget::new(0.0).unwrap(),
            versions: SupportedVersions::octez(ChainName::from("MAINTENANCE_TEST")),
            metadata: OctezMetadata {
                disable_mempool: false,
                private_node: private,
            },
            reconnection: Default::default(),
            disable_peer_discovery: false,
            transport: Transport::Memory(mem.with_local_ip(node_ip(i))),
            seed: Some(i as u64),
        }
    }

    /// Limits without a maintenance, and node 1: created, never activated,
    /// so a dial to it hangs until the connection timeout.
    async fn dead_host(mem: &MemoryNetwork) -> (Limits, Net<RawMessage, OctezMetadata, ()>) {
        let open = Limits {
            maintenance_idle_time: None,
            ..Limits::default()
        };
        let dead = Net::create(config(mem, 1, vec![]), open.clone())
            .await
            .unwrap();
        (open, dead)
    }

    /// Node 0, bounds 2/4/6 (a round aims at 4), knowing nodes 1..=`known`:
    /// activated, and how long it took to have 2 connections.
    async fn two_connections(
        mem: &MemoryNetwork,
        known: usize,
    ) -> (Net<RawMessage, OctezMetadata, ()>, Duration) {
        let limits = Limits {
            min_connections: 2,
            expected_connections: 4,
            max_connections: 6,
            maintenance_idle_time: Some(Duration::from_secs(3600)),
            ..Limits::default()
        };
        let known = (1..=known).map(|i| Point::new(node_ip(i), 9732)).collect();
        let me = Net::create(config(mem, 0, known), limits).await.unwrap();
        let start = tokio::time::Instant::now();
        me.activate();
        while me.active_connections() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (me, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_dial_that_hangs_does_not_hold_back_the_others() {
        // Bounds 2/4/6: thresholds 2..=6, a round aims at 4. The node knows
        // three points and dials them at once: a host that never answers
        // (a node not activated: the handshake hangs until the 10 s
        // connection timeout), a node that refuses everyone (Nack: 0
        // connections allowed) and one that accepts. The refusal comes
        // back in a round trip with the points the refusing node knows
        // (a fourth node, which it refused before, and ours): those are
        // dialed at once, so the node has 2 connections long before the
        // dead dial times out. Octez waits for the whole round (10 s),
        // then for new points (5 s).
        let mem = MemoryNetwork::new();
        let (open, dead) = dead_host(&mem).await;
        let full_limits = Limits {
            min_connections: 0,
            expected_connections: 0,
            max_connections: 0,
            maintenance_idle_time: None,
            ..Limits::default()
        };
        let full = node(&mem, 2, full_limits, false).await;
        let a = node(&mem, 3, open.clone(), false).await;
        let b = node(&mem, 4, open, false).await;
        // The refusing node learns the fourth one's point from a refusal.
        let full_point = Point::new(node_ip(2), 9732);
        assert!(b.connect(full_point).await.is_err());
        assert_eq!(b.active_connections(), 0);
        let (me, took) = two_connections(&mem, 3).await;
        assert!(
            took < Duration::from_secs(5),
            "2 connections after {took:?}"
        );
        assert_eq!(full.active_connections(), 0);
        assert_eq!(a.active_connections(), 1);
        assert_eq!(b.active_connections(), 1);
        for n in [me, dead, full, a, b] {
            n.shutdown().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_waiting_on_a_hung_dial_asks_for_more_points() {
        // The node knows two points: a host that never answers (a node not
        // activated: the dial hangs until the 10 s connection timeout) and
        // A, which accepts. A is connected to B, which it advertises when
        // asked (Bootstrap). With nothing left to dial while the dead dial
        // hangs, the round asks A for points at once and dials B: 2
        // connections long before the timeout. Octez (and this round
        // before) waits for the dead dial first: B only after 10 s.
        let mem = MemoryNetwork::new();
        let (open, dead) = dead_host(&mem).await;
        let a = node(&mem, 2, open.clone(), false).await;
        let b = node(&mem, 3, open, false).await;
        b.connect(Point::new(node_ip(2), 9732)).await.unwrap();
        let (me, took) = two_connections(&mem, 2).await;
        assert!(
            took < Duration::from_secs(5),
            "2 connections after {took:?}"
        );
        assert_eq!(a.active_connections(), 2);
        assert_eq!(b.active_connections(), 2);
        for n in [me, dead, a, b] {
            n.shutdown().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ties_between_candidates_are_broken_at_random_not_by_address() {
        // 40 points never missed and one missed long ago (the lowest
        // address): a scan of 6 picks never-missed points only, not the 6
        // lowest addresses, and two pools (two seeds) pick differently.
        // Picking the lowest made every joiner of a simulated network dial
        // the same oldest, full nodes first.
        let mem = MemoryNetwork::new();
        let points: Vec<Point> = (0..40)
            .map(|k| Point::new(node_ip(100 + k), 9732))
            .collect();
        let missed = Point::new(node_ip(99), 9732);
        let mut picks = Vec::new();
        for i in 0..2 {
            let net = Net::<RawMessage, OctezMetadata, ()>::create(
                config(&mem, i, vec![]),
                Limits::default(),
            )
            .await
            .unwrap();
            let now = net.now();
            net.with_tables(|t| {
                for &p in points.iter().chain([&missed]) {
                    t.register_point(p, None, None, now);
                }
                let info = t.known_points.get_mut(&missed).unwrap();
                info.last_failed_connection = Some(now - Duration::from_secs(3600));
            });
            let mut seen = HashSet::default();
            let got = candidates(&net.inner, now, &mut seen, 6);
            assert_eq!(got.len(), 6);
            assert!(!got.contains(&missed), "{got:?}");
            assert_ne!(got, points[..6], "the 6 lowest addresses");
            // Every point of the scan is seen, kept or not (Octez).
            assert_eq!(seen.len(), 41);
            picks.push(got);
            net.shutdown().await;
        }
        assert_ne!(picks[0], picks[1]);
    }

    #[tokio::test(start_paused = true)]
    async fn too_many_connections_are_cut_sparing_private_and_trusted_ones() {
        let mem = MemoryNetwork::new();
        // Bounds 2/2/4/6; without a maintenance, 8 connections are admitted.
        let target_limits = Limits {
            min_connections: 2,
            expected_connections: 2,
            max_connections: 8,
            maintenance_idle_time: None,
            ..Limits::default()
        };
        let b = target_limits.bounds();
        assert_eq!((b.max_target, b.max_threshold), (4, 6));
        let target = node(&mem, 0, target_limits, false).await;
        let client_limits = Limits {
            min_connections: 0,
            expected_connections: 1,
            max_connections: 8,
            maintenance_idle_time: None,
            ..Limits::default()
        };
        // Clients 1–3: private and trusted by the target (spared); 4:
        // private, untrusted; 5: public, trusted; 6–8: public.
        let mut clients = Vec::new();
        for i in 1..=8 {
            let c = node(&mem, i, client_limits.clone(), i <= 4).await;
            if i <= 3 || i == 5 {
                target.trust_peer(c.peer_id());
            }
            clients.push(c);
        }
        let mut events = target.events();
        let target_point = Point::new(node_ip(0), 9732);
        for c in &clients {
            c.connect_with(target_point, crate::ConnectOptions::default().trusted())
                .await
                .unwrap();
        }
        assert_eq!(target.active_connections(), 8);
        let spared: Vec<_> = clients[..3].iter().map(|c| c.peer_id()).collect();
        for p in &spared {
            let conn = target.find_connection_by_peer_id(p).unwrap();
            assert!(conn.trusted() && conn.info().private_node);
        }
        // Reaching max_connections fired the trigger: nobody listens yet.
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e);
        }
        assert!(seen.contains(&P2pEvent::TooManyConnections), "{seen:?}");

        // Start the worker: its activation round finds 8 > 6.
        let inner = target.inner.clone();
        target
            .inner
            .tasks
            .spawn(run(inner, Duration::from_secs(36_000)));
        let mut log = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let e = events.recv().await.unwrap();
                let end = e == P2pEvent::MaintenanceEnded;
                if matches!(
                    e,
                    P2pEvent::MaintenanceStarted
                        | P2pEvent::MaintenanceEnded
                        | P2pEvent::TooManyConnections
                ) {
                    log.push(e);
                }
                if end {
                    return;
                }
            }
        })
        .await
        .expect("the maintenance ends");
        // Started, too many, started again (the re-check), ended.
        assert_eq!(
            log,
            [
                P2pEvent::MaintenanceStarted,
                P2pEvent::TooManyConnections,
                P2pEvent::MaintenanceStarted,
                P2pEvent::MaintenanceEnded
            ]
        );
        let n = target.active_connections();
        assert!(n <= b.max_threshold, "{n} connections left");
        assert_eq!(n, b.max_target);
        for p in &spared {
            assert!(
                target.find_connection_by_peer_id(p).is_some(),
                "a private and trusted connection was cut"
            );
        }
        target.shutdown().await;
        for c in clients {
            c.shutdown().await;
        }
    }
}
