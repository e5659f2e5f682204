//! Two pools over loopback TCP: they connect and exchange one message.
//!
//! ```text
//! cargo run -p tezos-p2p --example two_pools
//! ```

use std::sync::Arc;

use tezos_p2p::limits::Limits;
use tezos_p2p::wire::identity::{Identity, PowSearch, PowTarget};
use tezos_p2p::wire::message::{OctezMetadata, RawMessage};
use tezos_p2p::wire::point::Point;
use tezos_p2p::wire::version::{ChainName, SupportedVersions};
use tezos_p2p::{Config, Net};

type Pool = Net<RawMessage, OctezMetadata, ()>;

/// A pool with a fresh identity, listening on a free loopback port.
async fn pool() -> Pool {
    let target = PowTarget::new(0.0).unwrap();
    let identity = Identity::generate(&target, &PowSearch::default(), |_| {}).unwrap();
    let chain = SupportedVersions::octez(ChainName::from("SANDBOXED_TEZOS"));
    let mut config = Config::new(Arc::new(identity), chain).listen("127.0.0.1:0".parse().unwrap());
    config.proof_of_work_target = target;
    let pool = Net::create(config, Limits::default()).await.unwrap();
    pool.activate();
    pool
}

#[tokio::main]
async fn main() {
    let (a, b) = (pool().await, pool().await);
    let to_b = Point::new([127, 0, 0, 1].into(), b.listening_port().unwrap());
    let conn = a.connect(to_b).await.unwrap();
    let hello = RawMessage {
        tag: 0x10,
        body: b"hello".to_vec(),
    };
    a.send(&conn, hello.clone()).await.unwrap();
    let (from, _size, received) = b.recv_any().await;
    assert_eq!((from.peer_id(), received), (a.peer_id(), hello));
    println!("{} said hello to {}", a.peer_id(), b.peer_id());
    a.shutdown().await;
    b.shutdown().await;
}
