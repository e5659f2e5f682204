//! Helpers shared by the integration tests: identities at PoW 0 and
//! authenticated connection pairs over loopback TCP.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};
use tezos_p2p::socket::{authenticate, AcceptOptions, AuthConfig, Connection};
use tezos_p2p::transport::{BoxStream, MemoryNetwork, TcpOptions, Transport};
use tezos_p2p::wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
use tezos_p2p::wire::message::{OctezMetadata, P2pMessage, RawMessage};
use tezos_p2p::wire::version::{ChainName, NetworkVersion};

pub type Conn = Connection<RawMessage, OctezMetadata>;

/// A fixed identity whose stamp passes PoW 0.
pub fn identity(seed: u8) -> Arc<Identity> {
    Arc::new(Identity::from_secret_key(
        SecretKey([seed; 32]),
        PowStamp([seed; 24]),
    ))
}

pub fn version(p2p_version: u16) -> NetworkVersion {
    NetworkVersion {
        chain_name: ChainName::from("TEZOS_TEST"),
        distributed_db_version: 2,
        p2p_version,
    }
}

pub fn auth(
    id: Arc<Identity>,
    incoming: bool,
    remote_addr: SocketAddr,
) -> AuthConfig<OctezMetadata> {
    AuthConfig {
        identity: id,
        pow_target: PowTarget::new(0.0).unwrap(),
        incoming,
        remote_addr,
        listening_port: Some(9732),
        version: version(1),
        metadata: OctezMetadata::default(),
        cancel: CancellationToken::new(),
        timeout: Some(Duration::from_secs(10)),
    }
}

/// A connected pair of TCP streams: (client, server, client's address,
/// server's address).
pub async fn tcp_pair() -> (BoxStream, BoxStream, SocketAddr, SocketAddr) {
    let transport = Transport::Tcp(TcpOptions::default());
    let listener = transport
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let server_addr = listener.local_addr();
    let (client, accepted) = tokio::join!(transport.connect(server_addr), listener.accept());
    let (server, client_addr) = accepted.unwrap();
    (client.unwrap(), server, client_addr, server_addr)
}

/// Two accepted connections over loopback TCP, the client's IO going
/// through `client_sched` and the server's through `server_sched`.
pub async fn connected_pair_on(
    client_sched: &IoScheduler,
    server_sched: &IoScheduler,
    opts: AcceptOptions,
) -> (Conn, Conn) {
    let (c, s, caddr, saddr) = tcp_pair().await;
    let (c, s) = tokio::join!(
        authenticate(c, client_sched.register(), auth(identity(1), false, saddr)),
        authenticate(s, server_sched.register(), auth(identity(2), true, caddr))
    );
    let (_, c) = c.unwrap();
    let (_, s) = s.unwrap();
    let (c, s) = tokio::join!(c.accept(opts.clone()), s.accept(opts));
    (c.unwrap(), s.unwrap())
}

/// Two accepted connections over the in-memory transport, whose pipe holds
/// `pipe` bytes each way, both reading `read_buffer_size` bytes at a time.
pub async fn memory_pair(
    pipe: usize,
    read_buffer_size: usize,
    opts: AcceptOptions,
) -> (Conn, Conn) {
    let transport = Transport::Memory(MemoryNetwork::new().with_buffer_size(pipe));
    let listener = transport
        .bind("127.0.0.1:9732".parse().unwrap())
        .await
        .unwrap();
    let (c, s) = tokio::join!(transport.connect(listener.local_addr()), listener.accept());
    let (s, caddr) = s.unwrap();
    let sched = IoScheduler::new(SchedulerConfig {
        read_buffer_size,
        ..SchedulerConfig::default()
    });
    let (c, s) = tokio::join!(
        authenticate(
            c.unwrap(),
            sched.register(),
            auth(identity(1), false, listener.local_addr())
        ),
        authenticate(s, sched.register(), auth(identity(2), true, caddr))
    );
    let (c, s) = tokio::join!(c.unwrap().1.accept(opts.clone()), s.unwrap().1.accept(opts));
    (c.unwrap(), s.unwrap())
}

pub fn app(tag: u16, body: Vec<u8>) -> P2pMessage<RawMessage> {
    P2pMessage::Message(RawMessage { tag, body })
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}
