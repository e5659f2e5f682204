//! Local discovery: five nodes on loopback with no known peer find each
//! other through UDP announcements alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tezos_p2p::discovery::DiscoveryConfig;
use tezos_p2p::limits::Limits;
use tezos_p2p::sim::node_identity;
use tezos_p2p::transport::{TcpOptions, Transport};
use tezos_p2p::wire::identity::PowTarget;
use tezos_p2p::wire::message::{OctezMetadata, RawMessage};
use tezos_p2p::wire::version::{ChainName, SupportedVersions};
use tezos_p2p::{Config, Net};

type TestNet = Net<RawMessage, OctezMetadata, ()>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_find_each_other_by_discovery_alone() {
    // A discovery port of our own: bind once to learn a free one.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let discovery: SocketAddr = format!("127.255.255.255:{port}").parse().unwrap();
    let limits = {
        let mut limits = Limits::default();
        limits.min_connections = 4;
        limits.expected_connections = 4;
        limits.max_connections = 4;
        limits.maintenance_idle_time = Some(Duration::from_secs(1));
        // A swap answered by a node still short of its mesh drops one of
        // its links, which then stays blocked for the 60 s disconnection
        // delay: the mesh would not be complete within the test's limit.
        limits.swap_linger = None;
        limits
    };
    let mut nets: Vec<TestNet> = Vec::new();
    for i in 0..5 {
        let config = {
            let mut config = Config::new(
                Arc::new(node_identity(99, i)),
                SupportedVersions::octez(ChainName::from("DISCOVERY_TEST")),
            );
            config.listening_addr = Some("127.0.0.1:0".parse().unwrap());
            config.proof_of_work_target = PowTarget::new(0.0).unwrap();
            config.transport = Transport::Tcp(TcpOptions::default());
            config.seed = Some(i as u64);
            config
        };
        let net = Net::create(config, limits.clone()).await.unwrap();
        net.start_discovery(DiscoveryConfig {
            addr: discovery,
            trust_discovered_peers: false,
        })
        .unwrap();
        net.activate();
        nets.push(net);
    }
    let all_connected = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if nets.iter().all(|n| n.active_connections() == 4) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let counts: Vec<_> = nets.iter().map(|n| n.active_connections()).collect();
    if all_connected.is_err() {
        // What the short nodes think of the points they know.
        for (i, n) in nets
            .iter()
            .enumerate()
            .filter(|(_, n)| n.active_connections() < 4)
        {
            n.with_tables(|t| {
                for (p, info) in &t.known_points {
                    eprintln!(
                        "node {i} (port {:?}): {p} {:?}",
                        n.listening_port(),
                        info.state
                    );
                }
                for (p, info) in &t.known_peers {
                    eprintln!("node {i}: peer {p} {:?}", info.state);
                }
            });
        }
    }
    for n in &nets {
        n.shutdown().await;
    }
    assert!(all_connected.is_ok(), "connections per node: {counts:?}");
}
