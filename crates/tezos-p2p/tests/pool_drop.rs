//! No leaks at the pool level: pools that are shut down, and pools whose
//! last handle is simply dropped, leave no task and no file descriptor
//! behind. Alone in its binary so that nothing else opens sockets meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tezos_p2p::limits::Limits;
use tezos_p2p::sim::node_identity;
use tezos_p2p::transport::{TcpOptions, Transport};
use tezos_p2p::wire::identity::PowTarget;
use tezos_p2p::wire::message::{OctezMetadata, RawMessage};
use tezos_p2p::wire::version::{ChainName, SupportedVersions};
use tezos_p2p::{Config, Net};

type TestNet = Net<RawMessage, OctezMetadata, ()>;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

async fn pool(i: usize) -> TestNet {
    let config = {
        let mut config = Config::new(
            Arc::new(node_identity(5, i)),
            SupportedVersions::octez(ChainName::from("DROP_TEST")),
        );
        config.listening_addr = Some("127.0.0.1:0".parse().unwrap());
        config.proof_of_work_target = PowTarget::new(0.0).unwrap();
        config.transport = Transport::Tcp(TcpOptions::default());
        config.seed = Some(i as u64);
        config
    };
    let net = Net::create(config, Limits::default()).await.unwrap();
    net.activate();
    net
}

/// Two connected pools exchange a message; returns them.
async fn connected_pair() -> (TestNet, TestNet) {
    let (a, b) = (pool(1).await, pool(2).await);
    let point = format!("127.0.0.1:{}", b.listening_port().unwrap())
        .parse()
        .unwrap();
    let conn = a.connect(point).await.unwrap();
    a.send(
        &conn,
        RawMessage {
            tag: 0x10,
            body: vec![1; 1000],
        },
    )
    .await
    .unwrap();
    let (_, _, msg) = tokio::time::timeout(Duration::from_secs(5), b.recv_any())
        .await
        .unwrap();
    assert_eq!(msg.body.len(), 1000);
    (a, b)
}

async fn settles(fds: usize, tasks: usize) -> bool {
    let metrics = tokio::runtime::Handle::current().metrics();
    for _ in 0..500 {
        if open_fds() <= fds && metrics.num_alive_tasks() <= tasks {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_shut_down_or_dropped_leave_nothing_behind() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let (fds, tasks) = (open_fds(), metrics.num_alive_tasks());

    let (a, b) = connected_pair().await;
    assert!(metrics.num_alive_tasks() > tasks);
    a.shutdown().await;
    b.shutdown().await;
    drop((a, b));
    assert!(
        settles(fds, tasks).await,
        "after shutdown: fds {fds} -> {}, tasks {tasks} -> {}",
        open_fds(),
        metrics.num_alive_tasks()
    );

    let (a, b) = connected_pair().await;
    drop((a, b));
    assert!(
        settles(fds, tasks).await,
        "after drop: fds {fds} -> {}, tasks {tasks} -> {}",
        open_fds(),
        metrics.num_alive_tasks()
    );
}
