//! The maintenance over real loopback TCP: twenty nodes, each knowing only
//! node 0, converge within their thresholds in bounded real time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tezos_p2p::limits::Limits;
use tezos_p2p::sim::node_identity;
use tezos_p2p::transport::{TcpOptions, Transport};
use tezos_p2p::wire::identity::PowTarget;
use tezos_p2p::wire::message::{OctezMetadata, RawMessage};
use tezos_p2p::wire::point::Point;
use tezos_p2p::wire::version::{ChainName, SupportedVersions};
use tezos_p2p::{Config, Net};

type TestNet = Net<RawMessage, OctezMetadata, ()>;

const NODES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_tcp_nodes_knowing_only_node_0_converge() {
    let limits = {
        let mut limits = Limits::default();
        limits.min_connections = 4;
        limits.expected_connections = 6;
        limits.max_connections = 8;
        limits.max_incoming_connections = 20;
        limits.maintenance_idle_time = Some(Duration::from_secs(1));
        limits
    };
    let b = limits.bounds();
    let started = Instant::now();
    let mut nets: Vec<TestNet> = Vec::new();
    let mut first: Option<Point> = None;
    for i in 0..NODES {
        let config = {
            let mut config = Config::new(
                Arc::new(node_identity(17, i)),
                SupportedVersions::octez(ChainName::from("MAINTENANCE_TCP")),
            );
            config.listening_addr = Some("127.0.0.1:0".parse().unwrap());
            config.trusted_points = first.map(|p| (p, None)).into_iter().collect();
            config.proof_of_work_target = PowTarget::new(0.0).unwrap();
            config.transport = Transport::Tcp(TcpOptions::default());
            config.seed = Some(i as u64);
            config
        };
        let net = Net::create(config, limits.clone()).await.unwrap();
        if i == 0 {
            let port = net.listening_port().unwrap();
            first = Some(Point::new("127.0.0.1".parse().unwrap(), port));
        }
        nets.push(net);
    }
    for n in &nets {
        n.activate();
    }
    let converged = |nets: &[TestNet]| {
        nets.iter().all(|n| {
            let c = n.active_connections();
            b.min_threshold <= c && c <= b.max_threshold
        })
    };
    let ok = tokio::time::timeout(Duration::from_secs(60), async {
        while !converged(&nets) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok();
    let took = started.elapsed();
    let counts: Vec<_> = nets.iter().map(|n| n.active_connections()).collect();
    eprintln!("{NODES} TCP nodes converged: {ok} in {took:?}: {counts:?}");
    for n in &nets {
        n.shutdown().await;
    }
    assert!(ok, "not converged in 60 s: {counts:?}");
}
