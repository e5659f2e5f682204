//! Two pools on the in-memory network connect and exchange messages.

use std::sync::Arc;
use std::time::Duration;

use tezos_p2p::limits::Limits;
use tezos_p2p::transport::{MemoryNetwork, Transport};
use tezos_p2p::wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
use tezos_p2p::wire::message::{OctezMetadata, RawMessage};
use tezos_p2p::wire::version::{ChainName, SupportedVersions};
use tezos_p2p::{Config, Net};

type TestNet = Net<RawMessage, OctezMetadata, ()>;

fn config(seed: u8, net: &MemoryNetwork, port: u16) -> Config<OctezMetadata> {
    {
        let mut config = Config::new(
            Arc::new(Identity::from_secret_key(
                SecretKey([seed; 32]),
                PowStamp([0; 24]),
            )),
            SupportedVersions::octez(ChainName::from("TEST")),
        );
        config.listening_addr = Some(format!("127.0.0.{seed}:{port}").parse().unwrap());
        config.proof_of_work_target = PowTarget::new(0.0).unwrap();
        config.transport =
            Transport::Memory(net.with_local_ip(format!("127.0.0.{seed}").parse().unwrap()));
        config.seed = Some(u64::from(seed));
        config
    }
}

#[tokio::test]
async fn two_pools_connect_and_exchange_messages() {
    let mem = MemoryNetwork::new();
    let a: TestNet = Net::create(config(1, &mem, 9732), Limits::default())
        .await
        .unwrap();
    let b: TestNet = Net::create(config(2, &mem, 9732), Limits::default())
        .await
        .unwrap();
    a.activate();
    b.activate();
    let conn = a.connect("127.0.0.2:9732".parse().unwrap()).await.unwrap();
    assert_eq!(conn.peer_id(), b.peer_id());
    a.send(
        &conn,
        RawMessage {
            tag: 0x10,
            body: b"hi".to_vec(),
        },
    )
    .await
    .unwrap();
    let (from, size, msg) = tokio::time::timeout(Duration::from_secs(5), b.recv_any())
        .await
        .unwrap();
    assert_eq!(from.peer_id(), a.peer_id());
    assert_eq!(size, 8);
    assert_eq!(msg.body, b"hi");
    assert_eq!(a.active_connections(), 1);
    assert_eq!(b.active_connections(), 1);
    a.shutdown().await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while b.active_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn recv_any_lets_connections_take_turns() {
    let mem = MemoryNetwork::new();
    let a: TestNet = Net::create(config(1, &mem, 9732), Limits::default())
        .await
        .unwrap();
    let b: TestNet = Net::create(config(2, &mem, 9732), Limits::default())
        .await
        .unwrap();
    let c: TestNet = Net::create(config(3, &mem, 9732), Limits::default())
        .await
        .unwrap();
    for n in [&a, &b, &c] {
        n.activate();
    }
    let to_a: tezos_p2p::wire::point::Point = "127.0.0.1:9732".parse().unwrap();
    let from_b = b.connect(to_a).await.unwrap();
    let from_c = c.connect(to_a).await.unwrap();
    // Both peers fill a's application queues before a reads anything.
    for i in 0..6u8 {
        b.send(
            &from_b,
            RawMessage {
                tag: 0x10,
                body: vec![i],
            },
        )
        .await
        .unwrap();
        c.send(
            &from_c,
            RawMessage {
                tag: 0x10,
                body: vec![i],
            },
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (conn, _, _) = a.recv_any().await;
        senders.push(conn.peer_id());
    }
    assert!(senders.contains(&b.peer_id()), "{senders:?}");
    assert!(senders.contains(&c.peer_id()), "{senders:?}");
    for n in [a, b, c] {
        n.shutdown().await;
    }
}

/// An outgoing attempt that we refuse after learning the peer's id (here:
/// another chain) is recorded as the peer's `last_failed_connection`
/// (Octez never sets it).
#[tokio::test(start_paused = true)]
async fn a_refused_dial_is_the_peers_last_failed_connection() {
    let mem = MemoryNetwork::new();
    let a: TestNet = Net::create(config(1, &mem, 9732), Limits::default())
        .await
        .unwrap();
    let mut other_chain = config(2, &mem, 9732);
    other_chain.versions = SupportedVersions::octez(ChainName::from("OTHER"));
    let b: TestNet = Net::create(other_chain, Limits::default()).await.unwrap();
    a.activate();
    b.activate();
    let e = a
        .connect("127.0.0.2:9732".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(e, tezos_p2p::NetError::RejectedNoCommonProtocol { .. }),
        "{e:?}"
    );
    let failed = a.with_tables(|t| {
        t.known_peers
            .get(&b.peer_id())
            .and_then(|p| p.last_failed_connection)
    });
    assert!(failed.is_some(), "no last_failed_connection recorded");
    a.shutdown().await;
    b.shutdown().await;
}
