//! The pool's Prometheus metrics, for an embedder's
//! [`prometheus_client`] registry (cargo feature `metrics`).
//!
//! ```
//! # use tezos_p2p::{Net, peers::OctezPeerMetadata};
//! # use tezos_p2p_wire::message::{OctezMetadata, RawMessage};
//! # fn f(net: &Net<RawMessage, OctezMetadata, OctezPeerMetadata>) {
//! use prometheus_client::registry::Registry;
//!
//! let mut registry = Registry::default();
//! tezos_p2p::metrics::register(net, &mut registry);
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
//! # }
//! ```
//!
//! [`register`] adds a collector that reads the pool at every scrape (no
//! task, no counting on the side): it holds the pool weakly, so a registry
//! does not keep a pool alive, and a pool that is gone shows no samples.
//!
//! Octez's metrics of `P2p_metrics_collectors`, under Octez's names, with
//! Octez's help texts:
//!
//! | name | type | value |
//! |---|---|---|
//! | `octez_p2p_connections_{active,incoming,outgoing,private}` | gauge | running connections: all, by direction, to private nodes |
//! | `octez_p2p_peers_{accepted,running,disconnected}` | gauge | known peers by state |
//! | `octez_p2p_points_{accepted,running,disconnected}` | gauge | known points by state (`requested` ones are in none) |
//! | `octez_p2p_points_greylisted` | gauge | known points with a reconnection delay (Octez's `reconnection_time <> None`) |
//! | `octez_p2p_points_trusted` | gauge | trusted known points (Octez declares it and always shows 0) |
//! | `octez_p2p_io_scheduler_total_{sent,recv}` | **counter** | bytes since the start ([`Net::global_stat`]) |
//! | `octez_p2p_io_scheduler_current_{inflow,outflow}` | gauge | moving averages of the rates, in B/s |
//!
//! Octez declares every one of them a gauge; the two byte totals only grow,
//! so they are counters here. `prometheus_client`, following OpenMetrics,
//! adds `_total` to a counter's samples (and, in the Prometheus text
//! format, to its family's name): the series are
//! `octez_p2p_io_scheduler_total_sent_total` and
//! `octez_p2p_io_scheduler_total_recv_total`, where Octez has
//! `octez_p2p_io_scheduler_total_sent` and `…_total_recv`.
//!
//! Besides, this library's own (no Octez equivalent):
//!
//! | name | type | value |
//! |---|---|---|
//! | `tezos_p2p_greylist_ips` | gauge | greylisted addresses the display list holds (`/network/greylist/ips`) |
//! | `tezos_p2p_greylist_peers` | gauge | greylisted peer ids |
//! | `tezos_p2p_partial_message_bytes` | gauge | bytes reserved in the budget for partially received messages ([`Net::partial_message_bytes`]) |
//! | `tezos_p2p_partial_message_waiting_connections` | gauge | connections waiting for room in that budget ([`Net::partial_message_waiting`]) |
//! | `tezos_p2p_incoming_handshakes` | gauge | incoming handshakes in progress ([`Net::incoming_handshakes`]) |
//! | `tezos_p2p_incoming_handshake_sources` | gauge | their sources: IPv4 addresses and IPv6 /64s ([`Net::incoming_handshake_sources`]) |
//! | `tezos_p2p_undrained_connections` | gauge | ended connections with messages not yet received ([`Net::undrained_connections`]) |
//! | `tezos_p2p_broadcast_dropped` | counter | broadcast writes dropped on a full write queue ([`Net::broadcast_dropped`]; Octez drops them without a count) |
//!
//! Octez's message counters (`octez_p2p_messages_*`, `octez_p2p_swap_*`)
//! count what an application does with the pool and its events; the node
//! (`tezos-p2p-node`) registers them beside these.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::net::Net;
use crate::peers::{PeerMeta, PeerState};
use crate::points::PointState;
use crate::pool::core::Inner;
use crate::scheduler::Stat;
use tezos_p2p_wire::message::{AppMessage, ConnMeta};

/// Registers the pool's metrics (see the [module](self) documentation) in
/// `registry`: a collector that reads `net` at every scrape. Register in a
/// [`Registry::sub_registry_with_prefix`] to prefix the names.
pub fn register<A, C, P>(net: &Net<A, C, P>, registry: &mut Registry)
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    registry.register_collector(Box::new(PoolCollector {
        inner: Arc::downgrade(&net.inner),
    }));
}

/// The values at one scrape.
#[derive(Debug, Default)]
struct Snapshot {
    active: u64,
    incoming: u64,
    private: u64,
    peers: [u64; 3],
    points: [u64; 3],
    points_trusted: u64,
    points_greylisted: u64,
    stat: Stat,
    greylist_ips: u64,
    greylist_peers: u64,
    partial_bytes: u64,
    partial_waiting: u64,
    handshakes: u64,
    handshake_sources: u64,
    undrained: u64,
    broadcast_dropped: u64,
}

struct PoolCollector<A, C, P> {
    inner: Weak<Inner<A, C, P>>,
}

impl<A, C, P> fmt::Debug for PoolCollector<A, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolCollector").finish_non_exhaustive()
    }
}

fn n(x: usize) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

impl<A, C: ConnMeta, P> PoolCollector<A, C, P> {
    fn snapshot(&self) -> Option<Snapshot> {
        let inner = self.inner.upgrade()?;
        let mut s = Snapshot {
            stat: inner.scheduler.stat(),
            partial_bytes: n(inner.budget.used()),
            partial_waiting: n(inner.budget.waiting()),
            broadcast_dropped: inner.broadcast_dropped.load(Ordering::Relaxed),
            ..Snapshot::default()
        };
        let st = inner.state();
        for c in st.connections.values() {
            s.active += 1;
            s.incoming += u64::from(c.info().incoming);
            s.private += u64::from(c.info().private_node);
        }
        for p in st.tables.known_peers.values() {
            s.peers[match p.state {
                PeerState::Accepted { .. } => 0,
                PeerState::Running { .. } => 1,
                PeerState::Disconnected => 2,
            }] += 1;
        }
        for p in st.tables.known_points.values() {
            s.points_trusted += u64::from(p.trusted);
            s.points_greylisted += u64::from(p.reconnection_time().is_some());
            match p.state {
                PointState::Accepted { .. } => s.points[0] += 1,
                PointState::Running { .. } => s.points[1] += 1,
                PointState::Disconnected => s.points[2] += 1,
                PointState::Requested => {}
            }
        }
        s.greylist_ips = n(st.acl.greylisted_ips().ips.len());
        s.greylist_peers = n(st.acl.greylisted_peers().len());
        s.handshakes = n(st.incoming.total());
        s.handshake_sources = n(st.incoming.sources());
        s.undrained = n(st.draining.len());
        Some(s)
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

impl<A, C, P> Collector for PoolCollector<A, C, P>
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let Some(s) = self.snapshot() else {
            return Ok(());
        };
        let e = &mut e;
        // Octez's, with Octez's help texts.
        for (name, help, v) in [
            (
                "octez_p2p_connections_active",
                "Number of active connections",
                s.active,
            ),
            (
                "octez_p2p_connections_incoming",
                "Number of incoming connections",
                s.incoming,
            ),
            (
                "octez_p2p_connections_outgoing",
                "Number of outgoing connections",
                s.active - s.incoming,
            ),
            (
                "octez_p2p_connections_private",
                "Number of private connections",
                s.private,
            ),
            (
                "octez_p2p_peers_accepted",
                "Number of accepted connections",
                s.peers[0],
            ),
            (
                "octez_p2p_peers_running",
                "Number of running peers",
                s.peers[1],
            ),
            (
                "octez_p2p_peers_disconnected",
                "Number of disconnected peers",
                s.peers[2],
            ),
            (
                "octez_p2p_points_trusted",
                "Number of trusted points",
                s.points_trusted,
            ),
            (
                "octez_p2p_points_greylisted",
                "Number of greylisted points",
                s.points_greylisted,
            ),
            (
                "octez_p2p_points_accepted",
                "Number of accepted points",
                s.points[0],
            ),
            (
                "octez_p2p_points_running",
                "Number of running points",
                s.points[1],
            ),
            (
                "octez_p2p_points_disconnected",
                "Number of disconnected points",
                s.points[2],
            ),
        ] {
            gauge(e, name, help, v)?;
        }
        counter(
            e,
            "octez_p2p_io_scheduler_total_sent",
            "Total amount of sent data (in bytes)",
            s.stat.total_sent,
        )?;
        counter(
            e,
            "octez_p2p_io_scheduler_total_recv",
            "Total amount of received data",
            s.stat.total_recv,
        )?;
        gauge(
            e,
            "octez_p2p_io_scheduler_current_inflow",
            "Current ingoing data rate",
            s.stat.current_inflow,
        )?;
        gauge(
            e,
            "octez_p2p_io_scheduler_current_outflow",
            "Current outgoing data rate",
            s.stat.current_outflow,
        )?;
        // This library's own.
        for (name, help, v) in [
            (
                "tezos_p2p_greylist_ips",
                "Greylisted addresses in the display list",
                s.greylist_ips,
            ),
            (
                "tezos_p2p_greylist_peers",
                "Greylisted peer ids",
                s.greylist_peers,
            ),
            (
                "tezos_p2p_partial_message_bytes",
                "Bytes reserved in the budget for partially received messages",
                s.partial_bytes,
            ),
            (
                "tezos_p2p_partial_message_waiting_connections",
                "Connections waiting for room in the budget for partially received messages",
                s.partial_waiting,
            ),
            (
                "tezos_p2p_incoming_handshakes",
                "Incoming handshakes in progress",
                s.handshakes,
            ),
            (
                "tezos_p2p_incoming_handshake_sources",
                "Sources (IPv4 addresses, IPv6 /64s) of the incoming handshakes in progress",
                s.handshake_sources,
            ),
            (
                "tezos_p2p_undrained_connections",
                "Ended connections with application messages not yet received",
                s.undrained,
            ),
        ] {
            gauge(e, name, help, v)?;
        }
        counter(
            e,
            "tezos_p2p_broadcast_dropped",
            "Broadcast writes dropped because the connection's write queue was full",
            s.broadcast_dropped,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use prometheus_client::encoding::{prometheus_text, text};
    use prometheus_client::registry::Registry;
    use tezos_p2p_wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
    use tezos_p2p_wire::message::{OctezMetadata, RawMessage};
    use tezos_p2p_wire::version::{ChainName, SupportedVersions};

    use crate::limits::Limits;
    use crate::transport::{MemoryNetwork, Transport};
    use crate::{Config, Net};

    type TestNet = Net<RawMessage, OctezMetadata, ()>;

    fn config(seed: u8, mem: &MemoryNetwork) -> Config<OctezMetadata> {
        let ip = format!("127.0.0.{seed}");
        Config {
            listening_addr: Some(format!("{ip}:9732").parse().unwrap()),
            advertised_port: None,
            trusted_points: vec![],
            peers_file: None,
            private_mode: false,
            identity: Arc::new(Identity::from_secret_key(
                SecretKey([seed; 32]),
                PowStamp([0; 24]),
            )),
            proof_of_work_target: PowTarget::new(0.0).unwrap(),
            versions: SupportedVersions::octez(ChainName::from("TEST")),
            metadata: OctezMetadata::default(),
            reconnection: Default::default(),
            disable_peer_discovery: false,
            transport: Transport::Memory(mem.with_local_ip(ip.parse().unwrap())),
            seed: Some(u64::from(seed)),
        }
    }

    /// The sample lines of an exposition, `name{labels} value` → value.
    fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').unwrap();
                (k.to_string(), v.parse().unwrap())
            })
            .collect()
    }

    fn scrape(reg: &Registry) -> (String, String) {
        let mut om = String::new();
        text::encode(&mut om, reg).unwrap();
        let mut prom = String::new();
        prometheus_text::encode(&mut prom, reg).unwrap();
        (om, prom)
    }

    #[tokio::test]
    async fn a_pool_with_a_connection_shows_its_values() {
        let mem = MemoryNetwork::new();
        let a: TestNet = Net::create(config(1, &mem), Limits::default())
            .await
            .unwrap();
        let b: TestNet = Net::create(config(2, &mem), Limits::default())
            .await
            .unwrap();
        a.activate();
        b.activate();
        let mut ra = Registry::default();
        super::register(&a, &mut ra);
        let mut rb = Registry::default();
        super::register(&b, &mut rb);

        let before = samples(&scrape(&ra).0);
        assert_eq!(before["octez_p2p_connections_active"], 0.0);
        assert_eq!(before["octez_p2p_io_scheduler_total_sent_total"], 0.0);

        let conn = a
            .connect_with(
                "127.0.0.2:9732".parse().unwrap(),
                crate::net::ConnectOptions::default().trusted(),
            )
            .await
            .unwrap();
        a.send(
            &conn,
            RawMessage {
                tag: 0x10,
                body: b"hi".to_vec(),
            },
        )
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), b.recv_any())
            .await
            .unwrap();

        let (om, prom) = scrape(&ra);
        let s = samples(&om);
        for (name, v) in [
            ("octez_p2p_connections_active", 1.0),
            ("octez_p2p_connections_incoming", 0.0),
            ("octez_p2p_connections_outgoing", 1.0),
            ("octez_p2p_connections_private", 0.0),
            ("octez_p2p_peers_accepted", 0.0),
            ("octez_p2p_peers_running", 1.0),
            ("octez_p2p_peers_disconnected", 0.0),
            ("octez_p2p_points_trusted", 1.0),
            ("octez_p2p_points_greylisted", 0.0),
            ("octez_p2p_points_accepted", 0.0),
            ("octez_p2p_points_running", 1.0),
            ("octez_p2p_points_disconnected", 0.0),
            ("tezos_p2p_greylist_ips", 0.0),
            ("tezos_p2p_greylist_peers", 0.0),
            ("tezos_p2p_partial_message_bytes", 0.0),
            ("tezos_p2p_partial_message_waiting_connections", 0.0),
            ("tezos_p2p_incoming_handshakes", 0.0),
            ("tezos_p2p_undrained_connections", 0.0),
            ("tezos_p2p_broadcast_dropped_total", 0.0),
        ] {
            assert_eq!(s[name], v, "{name}");
        }
        // The byte totals are counters, as the pool counts them.
        let stat = a.global_stat();
        assert!(stat.total_sent > 0 && stat.total_recv > 0);
        assert!(s["octez_p2p_io_scheduler_total_sent_total"] >= stat.total_sent as f64);
        assert!(s["octez_p2p_io_scheduler_total_recv_total"] >= stat.total_recv as f64);
        assert!(om.contains("# TYPE octez_p2p_io_scheduler_total_sent counter\n"));
        assert!(om.contains("# TYPE octez_p2p_connections_active gauge\n"));
        assert!(om.ends_with("# EOF\n"));
        // The Prometheus text format names the counter's family with its
        // `_total` too, and has no `# EOF`.
        assert!(prom.contains("# TYPE octez_p2p_io_scheduler_total_sent_total counter\n"));
        assert!(!prom.contains("# EOF"));
        assert_eq!(samples(&prom).len(), s.len());

        // The other side: one incoming connection, a point accepted from
        // an ephemeral port is not known, the peer is.
        let s = samples(&scrape(&rb).0);
        assert_eq!(s["octez_p2p_connections_active"], 1.0);
        assert_eq!(s["octez_p2p_connections_incoming"], 1.0);
        assert_eq!(s["octez_p2p_connections_outgoing"], 0.0);
        assert_eq!(s["octez_p2p_peers_running"], 1.0);
        assert_eq!(s["octez_p2p_points_trusted"], 0.0);

        // Greylisting shows at once (a connected peer's address with it).
        a.greylist_peer(b.peer_id());
        a.greylist_addr("10.0.0.1".parse().unwrap());
        let s = samples(&scrape(&ra).0);
        assert_eq!(s["tezos_p2p_greylist_peers"], 1.0);
        assert_eq!(s["tezos_p2p_greylist_ips"], 2.0);

        // A registry does not keep the pool: once it is gone, no samples.
        a.shutdown().await;
        drop(a);
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (om, _) = scrape(&ra);
        assert_eq!(om, "# EOF\n");
        b.shutdown().await;
    }
}
