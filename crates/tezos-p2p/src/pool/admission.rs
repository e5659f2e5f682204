//! Admission: who may connect, decided over the pool's state with no IO.
//!
//! [`admit`] is Octez's `P2p_connect_handler` checks after authentication
//! (pool spec §3.4 steps 4–9) as a pure function of the tables, the ACL,
//! the slots in use and the pool's rules: the connect handler applies its
//! [`Decision`] (greylisting, Nack, state transitions) in the same critical
//! section.
//!
//! Also the count of incoming handshakes in progress
//! ([`IncomingHandshakes`]): in all (Octez's `max_incoming_connections`)
//! and per source address (ours, `max_incoming_connections_per_ip`), so
//! that one address cannot hold every slot.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use tezos_p2p_wire::identity::PeerId;
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::rejection::Motive;
use tezos_p2p_wire::version::{NetworkVersion, SupportedVersions};

use crate::pool::acl::Acl;
use crate::pool::peers::PeerState;
use crate::pool::points::PointState;
use crate::pool::tables::Tables;

/// The pool's side of an admission: who we are and what we accept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    /// Our own peer id (it settles simultaneous dials).
    pub(crate) local_peer: PeerId,
    /// Our chain name and versions.
    pub(crate) versions: &'a SupportedVersions,
    /// Connections (running and admitted) beyond which a handshake is
    /// refused (`Limits::connections_threshold`).
    pub(crate) threshold: usize,
    /// Only trusted points and peers are admitted.
    pub(crate) private_mode: bool,
}

/// An authenticated handshake asking to be admitted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    /// The peer's id, as proved in the handshake.
    pub(crate) peer: PeerId,
    /// The peer dialled us.
    pub(crate) incoming: bool,
    /// The point the connection runs on: the one we dialled, or the
    /// peer's listening point for an incoming connection (if it has one).
    pub(crate) point: Option<Point>,
    /// The versions the peer announced.
    pub(crate) announced: &'a NetworkVersion,
}

/// What the admission decides (in Octez's order of checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The peer is banned or greylisted: close, no Nack.
    PeerBanned,
    /// The point is pinned to another peer: greylist the address and close.
    UnexpectedPeer {
        /// The pinned peer id.
        expected: PeerId,
    },
    /// Answer with a Nack: no common version, too many connections, or
    /// already connected.
    Nack(Motive),
    /// Private mode, and neither the point nor the peer is trusted: close.
    NotTrusted,
    /// Admit: take a slot; the point and the peer become Accepted.
    Accept,
}

/// Decides whether `c` is admitted, given the tables and ACL as they are,
/// `in_use` connections running or admitted, and the pool's `rules`.
pub(crate) fn admit<P>(
    tables: &Tables<P>,
    acl: &Acl,
    in_use: usize,
    rules: &Rules<'_>,
    c: &Candidate<'_>,
) -> Decision {
    if acl.banned_peer(&c.peer) {
        return Decision::PeerBanned;
    }
    let point = c.point.and_then(|p| tables.known_points.get(&p));
    if let Some(expected) = point.and_then(|i| i.expected_peer_id) {
        if expected != c.peer {
            return Decision::UnexpectedPeer { expected };
        }
    }
    if let Err(motive) = rules.versions.select(c.announced) {
        return Decision::Nack(motive);
    }
    if in_use >= rules.threshold {
        return Decision::Nack(Motive::TooManyConnections);
    }
    let peer = tables.known_peers.get(&c.peer);
    let trusted = point.is_some_and(|i| i.trusted) || peer.is_some_and(|i| i.trusted);
    if rules.private_mode && !trusted {
        return Decision::NotTrusted;
    }
    // Simultaneous dial: Octez always refuses the incoming side, so two
    // peers dialling each other at once refuse each other, again and
    // again. We keep the connection opened by the smaller peer id: an
    // incoming connection from a smaller id wins over our own attempt to
    // that peer (which its side refuses), one from a larger id loses to it.
    let incoming_wins = c.incoming && c.peer < rules.local_peer;
    let point_busy = point.is_some_and(|i| match i.state {
        PointState::Running { .. } => true,
        PointState::Accepted { .. } => !incoming_wins,
        PointState::Requested => c.incoming && !incoming_wins,
        PointState::Disconnected => false,
    });
    let peer_busy = peer.is_some_and(|i| match i.state {
        PeerState::Running { .. } => true,
        PeerState::Accepted { .. } => !incoming_wins,
        PeerState::Disconnected => false,
    });
    if point_busy || peer_busy {
        return Decision::Nack(Motive::AlreadyConnected);
    }
    Decision::Accept
}

/// The source an incoming connection counts against: an IPv4 address
/// (IPv4-mapped IPv6 addresses included), or the /64 of an IPv6 address —
/// the usual allocation of one site, whose addresses cost an attacker
/// nothing.
pub(crate) fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Why an incoming connection was refused before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_incoming_connections` handshakes are in progress.
    TooMany,
    /// `max_incoming_connections_per_ip` handshakes from that source are.
    TooManyFromSource,
}

/// Incoming handshakes in progress, in all and per source
/// ([`source_of`]). The table holds only sources with a handshake in
/// progress, so it has at most `max_incoming_connections` entries and is
/// empty when no handshake is.
#[derive(Debug, Default)]
pub(crate) struct IncomingHandshakes {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

impl IncomingHandshakes {
    /// Counts a handshake from `ip` if both limits allow it.
    pub(crate) fn admit(
        &mut self,
        ip: IpAddr,
        max_total: usize,
        max_per_source: usize,
    ) -> Result<(), Refusal> {
        if self.total >= max_total {
            return Err(Refusal::TooMany);
        }
        let source = source_of(ip);
        let n = self.per_source.get(&source).copied().unwrap_or(0);
        if n >= max_per_source {
            return Err(Refusal::TooManyFromSource);
        }
        self.per_source.insert(source, n + 1);
        self.total += 1;
        Ok(())
    }

    /// Uncounts a handshake from `ip` that [`admit`](Self::admit) counted.
    pub(crate) fn release(&mut self, ip: IpAddr) {
        let source = source_of(ip);
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
                if self.per_source.is_empty() {
                    // Give a burst's memory back.
                    self.per_source = HashMap::new();
                }
            }
            self.total -= 1;
        }
    }

    /// Handshakes in progress.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Handshakes in progress from `ip`'s source.
    pub(crate) fn of_source(&self, ip: IpAddr) -> usize {
        self.per_source.get(&source_of(ip)).copied().unwrap_or(0)
    }

    /// Sources with a handshake in progress (entries of the table).
    pub(crate) fn sources(&self) -> usize {
        self.per_source.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    use std::time::SystemTime;

    use crate::pool::acl::AclConfig;
    use crate::pool::conn_id::ConnId;
    use crate::pool::tables::PoolLimits;

    fn pid(b: u8) -> PeerId {
        PeerId([b; 16])
    }

    fn pt(i: u8) -> Point {
        format!("10.0.0.{i}:9732").parse().unwrap()
    }

    fn conn(i: u8) -> ConnId {
        ConnId {
            addr: pt(i).ip(),
            port: Some(9732),
        }
    }

    /// The pool of these tests: peer id 50, chain "TEZOS", p2p 1, ddb 2.
    struct World {
        tables: Tables<()>,
        acl: Acl,
        in_use: usize,
        versions: SupportedVersions,
        threshold: usize,
        private_mode: bool,
    }

    impl World {
        fn new() -> Self {
            World {
                tables: Tables::new(PoolLimits::default()),
                acl: Acl::new(&AclConfig::default()).unwrap(),
                in_use: 0,
                versions: SupportedVersions {
                    chain_name: "TEZOS".into(),
                    distributed_db_versions: vec![2],
                    p2p_versions: vec![1],
                },
                threshold: 10,
                private_mode: false,
            }
        }

        fn admit(&self, peer: u8, incoming: bool, point: Option<Point>) -> Decision {
            self.admit_announcing(peer, incoming, point, &self.versions.announced())
        }

        fn admit_announcing(
            &self,
            peer: u8,
            incoming: bool,
            point: Option<Point>,
            announced: &NetworkVersion,
        ) -> Decision {
            let rules = Rules {
                local_peer: pid(50),
                versions: &self.versions,
                threshold: self.threshold,
                private_mode: self.private_mode,
            };
            let c = Candidate {
                peer: pid(peer),
                incoming,
                point,
                announced,
            };
            admit(&self.tables, &self.acl, self.in_use, &rules, &c)
        }

        fn register(&mut self, point: u8, trusted: bool, expected: Option<u8>) {
            let now = SystemTime::UNIX_EPOCH;
            self.tables
                .register_point(pt(point), Some(trusted), expected.map(pid), now);
        }
    }

    #[test]
    fn an_unknown_peer_on_an_unknown_point_is_admitted() {
        let w = World::new();
        assert_eq!(w.admit(1, true, None), Decision::Accept);
        assert_eq!(w.admit(1, true, Some(pt(1))), Decision::Accept);
        assert_eq!(w.admit(1, false, Some(pt(1))), Decision::Accept);
    }

    #[test]
    fn a_banned_or_greylisted_peer_is_refused_first() {
        let mut w = World::new();
        w.acl.ban_peer(pid(1));
        w.acl.greylist_peer(pid(2));
        // Banned wins over every other rule, even a full pool.
        w.in_use = 100;
        assert_eq!(w.admit(1, true, None), Decision::PeerBanned);
        assert_eq!(w.admit(2, false, Some(pt(2))), Decision::PeerBanned);
        assert_eq!(
            w.admit(3, true, None),
            Decision::Nack(Motive::TooManyConnections)
        );
    }

    #[test]
    fn a_point_pinned_to_another_peer_refuses_it() {
        let mut w = World::new();
        w.register(1, false, Some(7));
        assert_eq!(
            w.admit(8, false, Some(pt(1))),
            Decision::UnexpectedPeer { expected: pid(7) }
        );
        // The pinned peer itself passes; so does anyone elsewhere.
        assert_eq!(w.admit(7, false, Some(pt(1))), Decision::Accept);
        assert_eq!(w.admit(8, false, Some(pt(2))), Decision::Accept);
        // The pin is checked before the versions and the slots.
        w.in_use = 100;
        assert_eq!(
            w.admit(8, true, Some(pt(1))),
            Decision::UnexpectedPeer { expected: pid(7) }
        );
    }

    #[test]
    fn no_common_version_is_a_nack_with_its_motive() {
        let w = World::new();
        let mut other_chain = w.versions.announced();
        other_chain.chain_name = "TEZOS_GHOSTNET".into();
        assert_eq!(
            w.admit_announcing(1, true, None, &other_chain),
            Decision::Nack(Motive::UnknownChainName)
        );
        let mut old_p2p = w.versions.announced();
        old_p2p.p2p_version = 0;
        assert_eq!(
            w.admit_announcing(1, true, None, &old_p2p),
            Decision::Nack(Motive::DeprecatedP2pVersion)
        );
    }

    #[test]
    fn the_threshold_counts_running_and_admitted_connections() {
        let mut w = World::new();
        w.in_use = 9;
        assert_eq!(w.admit(1, true, None), Decision::Accept);
        w.in_use = 10;
        assert_eq!(
            w.admit(1, true, None),
            Decision::Nack(Motive::TooManyConnections)
        );
        // Outgoing connections count against it too.
        assert_eq!(
            w.admit(1, false, Some(pt(1))),
            Decision::Nack(Motive::TooManyConnections)
        );
    }

    #[test]
    fn private_mode_admits_only_a_trusted_point_or_peer() {
        let mut w = World::new();
        w.private_mode = true;
        assert_eq!(w.admit(1, true, None), Decision::NotTrusted);
        assert_eq!(w.admit(1, false, Some(pt(1))), Decision::NotTrusted);
        w.register(1, true, None);
        assert_eq!(w.admit(1, false, Some(pt(1))), Decision::Accept);
        let now = SystemTime::UNIX_EPOCH;
        w.tables.register_peer(pid(2), now);
        w.tables.known_peers.get_mut(&pid(2)).unwrap().trusted = true;
        assert_eq!(w.admit(2, true, Some(pt(9))), Decision::Accept);
    }

    #[test]
    fn a_running_point_or_peer_is_already_connected() {
        let now = SystemTime::UNIX_EPOCH;
        let mut w = World::new();
        w.register(1, false, None);
        w.tables.register_peer(pid(1), now);
        w.tables
            .set_running(Some(pt(1)), pid(1), conn(1), now)
            .unwrap();
        // The same peer again, elsewhere, or someone else on its point.
        assert_eq!(
            w.admit(1, true, None),
            Decision::Nack(Motive::AlreadyConnected)
        );
        assert_eq!(
            w.admit(2, true, Some(pt(1))),
            Decision::Nack(Motive::AlreadyConnected)
        );
        // Even from a smaller peer id: a running connection is never replaced.
        assert!(pid(1) < pid(50));
        assert_eq!(
            w.admit(1, false, None),
            Decision::Nack(Motive::AlreadyConnected)
        );
    }

    #[test]
    fn a_simultaneous_dial_keeps_the_smaller_peer_ids_connection() {
        let now = SystemTime::UNIX_EPOCH;
        // We (50) dial peer 1 at point 1 while it dials us: the point is
        // Requested by our attempt.
        let mut w = World::new();
        w.register(1, false, None);
        w.tables
            .known_points
            .get_mut(&pt(1))
            .unwrap()
            .set_requested(now)
            .unwrap();
        // Its incoming connection (smaller id) wins over our attempt…
        assert_eq!(w.admit(1, true, Some(pt(1))), Decision::Accept);
        // …while one from a larger id loses to it.
        w.register(2, false, None);
        w.tables
            .known_points
            .get_mut(&pt(2))
            .unwrap()
            .set_requested(now)
            .unwrap();
        assert_eq!(
            w.admit(60, true, Some(pt(2))),
            Decision::Nack(Motive::AlreadyConnected)
        );
        // Our own outgoing attempt on a Requested point is that attempt.
        assert_eq!(w.admit(60, false, Some(pt(2))), Decision::Accept);
    }

    #[test]
    fn an_accepted_peer_loses_unless_the_newcomer_wins_the_tie() {
        let now = SystemTime::UNIX_EPOCH;
        let mut w = World::new();
        w.tables.register_peer(pid(1), now);
        w.tables.register_peer(pid(60), now);
        w.tables.set_accepted(None, pid(1), conn(1), now).unwrap();
        w.tables.set_accepted(None, pid(60), conn(2), now).unwrap();
        // An incoming connection from a smaller id than ours replaces the
        // handshake in progress; from a larger id, or outgoing, it does not.
        assert_eq!(w.admit(1, true, None), Decision::Accept);
        assert_eq!(
            w.admit(60, true, None),
            Decision::Nack(Motive::AlreadyConnected)
        );
        assert_eq!(
            w.admit(1, false, None),
            Decision::Nack(Motive::AlreadyConnected)
        );
    }

    #[test]
    fn deciding_changes_nothing() {
        let mut w = World::new();
        w.register(1, false, None);
        let before = format!("{:?}", w.tables.known_points);
        for peer in [1, 2, 60] {
            w.admit(peer, true, Some(pt(1)));
            w.admit(peer, false, Some(pt(3)));
        }
        assert_eq!(format!("{:?}", w.tables.known_points), before);
        assert!(w.tables.known_peers.is_empty());
        assert!(!w.tables.known_points.contains_key(&pt(3)));
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_slash_64s() {
        assert_eq!(source_of(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(source_of(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("::1")), ip("::"));
    }

    #[test]
    fn a_source_over_its_limit_is_refused_while_others_pass() {
        let mut t = IncomingHandshakes::default();
        for _ in 0..3 {
            t.admit(ip("10.0.0.1"), 20, 3).unwrap();
        }
        assert_eq!(
            t.admit(ip("10.0.0.1"), 20, 3),
            Err(Refusal::TooManyFromSource)
        );
        assert_eq!(
            t.admit(ip("::ffff:10.0.0.1"), 20, 3),
            Err(Refusal::TooManyFromSource)
        );
        t.admit(ip("10.0.0.2"), 20, 3).unwrap();
        assert_eq!((t.total(), t.sources()), (4, 2));
        assert_eq!(t.of_source(ip("10.0.0.1")), 3);
        // The global limit still holds.
        assert_eq!(t.admit(ip("10.0.0.3"), 4, 3), Err(Refusal::TooMany));
        t.release(ip("10.0.0.1"));
        t.admit(ip("10.0.0.1"), 20, 3).unwrap();
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_count() {
        let mut t = IncomingHandshakes::default();
        t.admit(ip("2001:db8:0:1::1"), 20, 2).unwrap();
        t.admit(ip("2001:db8:0:1::2"), 20, 2).unwrap();
        assert_eq!(
            t.admit(ip("2001:db8:0:1:ffff::3"), 20, 2),
            Err(Refusal::TooManyFromSource)
        );
        t.admit(ip("2001:db8:0:2::1"), 20, 2).unwrap();
        assert_eq!(t.of_source(ip("2001:db8:0:1::9")), 2);
    }

    #[test]
    fn the_table_empties_as_handshakes_end() {
        let mut t = IncomingHandshakes::default();
        let ips: Vec<IpAddr> = (1..=20).map(|i| ip(&format!("10.0.0.{i}"))).collect();
        for &a in &ips {
            t.admit(a, 20, 4).unwrap();
        }
        assert_eq!(t.sources(), 20);
        for &a in &ips {
            t.release(a);
        }
        assert_eq!((t.total(), t.sources()), (0, 0));
        assert_eq!(t.per_source.capacity(), 0);
        // Releasing what was never admitted changes nothing.
        t.release(ip("10.0.0.1"));
        assert_eq!(t.total(), 0);
    }
}
