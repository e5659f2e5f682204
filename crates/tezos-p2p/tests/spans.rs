//! Every line a pool logs says whose it is: the pool's span carries our
//! peer id, a connection's span its direction, address and peer id.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tezos_p2p::limits::Limits;
use tezos_p2p::transport::{MemoryNetwork, Transport};
use tezos_p2p::wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
use tezos_p2p::wire::message::{OctezMetadata, RawMessage};
use tezos_p2p::wire::version::{ChainName, SupportedVersions};
use tezos_p2p::{Config, Net};

type TestNet = Net<RawMessage, OctezMetadata, ()>;

fn config(seed: u8, net: &MemoryNetwork) -> Config<OctezMetadata> {
    let ip = format!("127.0.0.{seed}").parse().unwrap();
    {
        let mut config = Config::new(
            Arc::new(Identity::from_secret_key(
                SecretKey([seed; 32]),
                PowStamp([0; 24]),
            )),
            SupportedVersions::octez(ChainName::from("TEST")),
        );
        config.listening_addr = Some(std::net::SocketAddr::new(ip, 9732));
        config.proof_of_work_target = PowTarget::new(0.0).unwrap();
        config.transport = Transport::Memory(net.with_local_ip(ip));
        config.seed = Some(u64::from(seed));
        config
    }
}

/// The log, shared with the subscriber.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn every_pool_and_connection_line_names_its_node_and_peer() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // This runtime has one thread: every task of both pools logs here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let mem = MemoryNetwork::new();
    let limits = {
        let mut limits = Limits::default();
        limits.maintenance_idle_time = Some(Duration::from_secs(5));
        limits.min_connections = 1;
        limits.expected_connections = 1;
        limits.max_connections = 2;
        limits
    };
    let a: TestNet = Net::create(config(1, &mem), limits.clone()).await.unwrap();
    let b: TestNet = Net::create(config(2, &mem), limits).await.unwrap();
    a.activate();
    b.activate();
    let conn = a.connect("127.0.0.2:9732".parse().unwrap()).await.unwrap();
    a.maintain().await;
    a.disconnect(&conn, true, "test over").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.shutdown().await;
    b.shutdown().await;

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let (ida, idb) = (a.peer_id().to_string(), b.peer_id().to_string());
    let pool_a = format!("pool{{me={ida}}}");
    let pool_b = format!("pool{{me={idb}}}");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" tezos_p2p")).collect();
    assert!(lines.len() >= 4, "too few lines to judge:\n{text}");
    for line in &lines {
        // Logged by user calls on the facade (`Net::disconnect`), or
        // inside one of the pools' spans.
        let facade = line.contains("tezos_p2p::net:");
        assert!(
            facade || line.contains(&pool_a) || line.contains(&pool_b),
            "a line with no pool: {line}"
        );
    }
    // Both ends' "connection established" lines name the two peers and the
    // direction.
    let established: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("connection established"))
        .collect();
    assert_eq!(established.len(), 2, "{text}");
    assert!(established.iter().any(|l| l.contains(&pool_a)
        && l.contains("conn{dir=\"out\"")
        && l.contains(&format!("peer={idb}"))));
    assert!(established.iter().any(|l| l.contains(&pool_b)
        && l.contains("conn{dir=\"in\"")
        && l.contains(&format!("peer={ida}"))));
}
