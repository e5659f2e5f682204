//! No message is lost at a close: what a peer sent before it closed (FIN),
//! before its `Disconnect`, or before bytes that do not decode, reaches the
//! application — through the socket's `read`, the pool's `recv` and its
//! `recv_any` — before the end is reported, as in a TCP half-close. Each
//! case runs in a loop, on two worker threads, to catch races; nothing
//! depends on the speed of the clock (timeouts only guard against hangs).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use tezos_p2p::events::P2pEvent;
use tezos_p2p::limits::Limits;
use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};
use tezos_p2p::socket::{self, AcceptOptions, AuthConfig, Connection, SocketError};
use tezos_p2p::transport::{MemoryNetwork, Transport};
use tezos_p2p::wire::identity::{Identity, PeerId, PowStamp, PowTarget, SecretKey};
use tezos_p2p::wire::message::{OctezMetadata, P2pMessage, RawMessage};
use tezos_p2p::wire::version::{ChainName, SupportedVersions};
use tezos_p2p::{Config, Net, NetError, PeerConnection};

mod common;

type TestNet = Net<RawMessage, OctezMetadata, ()>;
type Conn = Arc<PeerConnection<RawMessage, OctezMetadata>>;
type RawConn = Connection<RawMessage, OctezMetadata>;

const PORT: u16 = 9732;
const ITERATIONS: usize = 200;
/// A guard against hangs, not a measure of speed.
const HANG: Duration = Duration::from_secs(60);

/// Bytes inside the encrypted channel that do not decode: size 4, then an
/// unknown tag.
const GARBAGE: &[u8] = &[0, 0, 0, 4, 0, 0x07, 0xff, 0xff];

fn identity(i: usize) -> Arc<Identity> {
    let mut sk = [7u8; 32];
    sk[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Arc::new(Identity::from_secret_key(SecretKey(sk), PowStamp([0; 24])))
}

/// The address of the raw peer of iteration `i` (a greylisted one is not
/// used again).
fn peer_ip(i: usize) -> IpAddr {
    IpAddr::from([10, 1, (i >> 8) as u8, i as u8])
}

fn versions() -> SupportedVersions {
    SupportedVersions::octez(ChainName::from("TEST"))
}

/// Message `j` of iteration `i`: sizes from empty to several chunks.
fn message(i: usize, j: usize) -> RawMessage {
    let len = match (i + j) % 7 {
        0 => 0,
        1 => 70_000,
        _ => (i * 131 + j * 17) % 3_000,
    };
    RawMessage {
        tag: 0x10 + (j % 5) as u16,
        body: (0..len).map(|b| (b + i + j) as u8).collect(),
    }
}

/// How the peer ends after its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// It closes its side (FIN), after flushing.
    Fin,
    /// It sends `Disconnect`, then closes.
    Disconnect,
    /// It sends bytes that do not decode, then closes.
    Garbage,
}

async fn send_then_end(peer: &RawConn, msgs: &[RawMessage], end: End) {
    for m in msgs {
        peer.write(&P2pMessage::Message(m.clone())).await.unwrap();
    }
    match end {
        End::Fin => {}
        End::Disconnect => peer.write(&P2pMessage::Disconnect).await.unwrap(),
        End::Garbage => peer
            .write_encoded(Bytes::from_static(GARBAGE))
            .await
            .unwrap(),
    }
    peer.close(true).await;
}

// ---------------------------------------------------------------------------
// The socket's read API

/// For each end, K messages then the end: `read` returns the K messages,
/// then the end (a decoding error for garbage), then `ConnectionClosed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_reads_every_message_before_the_end() {
    for i in 0..ITERATIONS {
        let end = [End::Fin, End::Disconnect, End::Garbage][i % 3];
        let k = 1 + (i * 7) % 30;
        let opts = AcceptOptions {
            // Sometimes a read queue too small for all of it: the end waits.
            incoming_message_queue_size: if i % 2 == 0 { 4096 } else { 8 << 20 },
            ..AcceptOptions::default()
        };
        let (c, s) = common::memory_pair(64 << 10, 16 << 10, opts).await;
        let msgs: Vec<_> = (0..k).map(|j| message(i, j)).collect();
        if i % 4 == 1 {
            // The end is in before the reader starts.
            send_then_end(&c, &msgs, end).await;
            tokio::time::timeout(HANG, s.closed()).await.unwrap();
        } else {
            let c = c.clone();
            let msgs = msgs.clone();
            tokio::spawn(async move { send_then_end(&c, &msgs, end).await });
        }
        let read = |s: &RawConn| {
            let s = s.clone();
            async move { tokio::time::timeout(HANG, s.read()).await.unwrap() }
        };
        for (j, m) in msgs.iter().enumerate() {
            match read(&s).await {
                Ok((_, P2pMessage::Message(got))) => assert_eq!(&got, m, "{i}/{j} {end:?}"),
                other => panic!("{i}/{j} {end:?}: {other:?}"),
            }
        }
        match (end, read(&s).await) {
            (End::Disconnect, Ok((_, P2pMessage::Disconnect))) => {
                assert_eq!(read(&s).await.unwrap_err(), SocketError::ConnectionClosed)
            }
            (End::Garbage, Err(SocketError::Decoding(_))) => {}
            (End::Fin, Err(SocketError::ConnectionClosed)) => {}
            (end, other) => panic!("{i} {end:?}: end seen as {other:?}"),
        }
        assert_eq!(read(&s).await.unwrap_err(), SocketError::ConnectionClosed);
    }
}

/// The peer wrote its messages and went (its socket dropped) while our
/// read side was held up by a full read queue: a write of ours then fails,
/// and the read side still delivers everything the peer sent before the
/// end. (The write side's failure used to end the connection at once.)
#[tokio::test]
async fn a_failed_write_does_not_lose_what_the_peer_sent_before_it_went() {
    for k in [5, 50] {
        let opts = AcceptOptions {
            incoming_message_queue_size: 4096,
            ..AcceptOptions::default()
        };
        let (c, s) = common::memory_pair(256 << 10, 16 << 10, opts).await;
        let msgs: Vec<_> = (0..k)
            .map(|j| common::app(0x10, vec![j as u8; 1000]))
            .collect();
        for m in &msgs {
            c.write_sync(m).await.unwrap();
        }
        c.close(false).await;
        drop(c);
        // Our write fails: the peer is gone.
        assert!(s
            .write_sync(&common::app(0x11, vec![0; 100_000]))
            .await
            .is_err());
        assert!(!s.is_closed(), "the read side goes on");
        for m in &msgs {
            let (_, got) = tokio::time::timeout(HANG, s.read()).await.unwrap().unwrap();
            assert_eq!(&got, m);
        }
        assert_eq!(s.read().await.unwrap_err(), SocketError::ConnectionClosed);
        assert!(s.is_closed());
    }
}

// ---------------------------------------------------------------------------
// The pool's recv and recv_any

fn pool_limits() -> Limits {
    {
        let mut limits = Limits::default();
        limits.maintenance_idle_time = None;
        limits.min_connections = 0;
        limits.expected_connections = 5;
        limits.max_connections = 10;
        limits
    }
}

async fn pool(mem: &MemoryNetwork, limits: Limits) -> TestNet {
    let at = IpAddr::from([10, 0, 0, 1]);
    let config = {
        let mut config = Config::new(identity(usize::MAX), versions());
        config.listening_addr = Some(SocketAddr::new(at, PORT));
        config.proof_of_work_target = PowTarget::new(0.0).unwrap();
        config.disable_peer_discovery = true;
        config.transport = Transport::Memory(mem.with_local_ip(at));
        config.seed = Some(1);
        config
    };
    let net = Net::create(config, limits).await.unwrap();
    net.activate();
    net
}

/// A peer that dials the pool through the socket layer, so that it
/// controls what it sends and how it ends.
async fn raw_peer(mem: &MemoryNetwork, i: usize, sched: &IoScheduler) -> RawConn {
    let target = SocketAddr::new(IpAddr::from([10, 0, 0, 1]), PORT);
    let stream = Transport::Memory(mem.with_local_ip(peer_ip(i)))
        .connect(target)
        .await
        .unwrap();
    let cfg = AuthConfig {
        identity: identity(i),
        pow_target: PowTarget::new(0.0).unwrap(),
        incoming: false,
        remote_addr: target,
        listening_port: None,
        version: versions().announced(),
        metadata: OctezMetadata::default(),
        cancel: Default::default(),
        timeout: Some(HANG),
    };
    let (_, auth) = socket::authenticate(stream, sched.register(), cfg)
        .await
        .unwrap();
    auth.accept(AcceptOptions::default()).await.unwrap()
}

async fn disconnection_of(events: &mut broadcast::Receiver<P2pEvent>, peer: PeerId) {
    tokio::time::timeout(HANG, async {
        loop {
            match events.recv().await {
                Ok(P2pEvent::Disconnection { peer_id }) if peer_id == peer => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .expect("no disconnection");
}

/// How the application reads.
#[derive(Debug, Clone, Copy)]
enum Reader {
    Recv,
    RecvAny,
}

/// `ITERATIONS` peers, one after the other, each sending K messages (1 to
/// 30: more than the application queue's 10) then ending with `end`. The
/// application reads them with `reader`, sometimes only once the pool has
/// torn the connection down, sometimes while the peer sends, sometimes
/// while the pool writes to the peer too (so that the pool's write fails
/// at the end). It gets all K in order, then the end; the pool keeps
/// nothing of the connection afterwards.
async fn every_message_reaches_the_application(end: End, reader: Reader) {
    let mem = MemoryNetwork::new();
    let net = pool(&mem, pool_limits()).await;
    let (tx, mut new_conns) = mpsc::unbounded_channel::<Conn>();
    net.on_new_connection(move |c| {
        let _ = tx.send(c.clone());
    });
    let sched = IoScheduler::new(SchedulerConfig::default());
    for i in 0..ITERATIONS {
        let mut events = net.events();
        let k = 1 + (i * 7) % 30;
        let msgs: Vec<_> = (0..k).map(|j| message(i, j)).collect();
        let peer = raw_peer(&mem, i, &sched).await;
        let conn = tokio::time::timeout(HANG, new_conns.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conn.peer_id(), identity(i).peer_id);
        if i % 3 == 0 {
            // The pool writes to the peer meanwhile.
            for _ in 0..5 {
                net.try_send(
                    &conn,
                    RawMessage {
                        tag: 0x10,
                        body: vec![1; 10_000],
                    },
                );
            }
        }
        let sending = tokio::spawn({
            let msgs = msgs.clone();
            async move { send_then_end(&peer, &msgs, end).await }
        });
        if i % 2 == 0 {
            // Read only once the connection is gone from the pool.
            disconnection_of(&mut events, conn.peer_id()).await;
            assert!(net.find_connection_by_peer_id(&conn.peer_id()).is_none());
        }
        for (j, m) in msgs.iter().enumerate() {
            let got = match reader {
                Reader::Recv => {
                    tokio::time::timeout(HANG, net.recv(&conn))
                        .await
                        .expect("recv hangs")
                        .unwrap_or_else(|e| panic!("{i}/{j} of {k} {end:?}: {e}"))
                        .1
                }
                Reader::RecvAny => {
                    let (from, _, got) = tokio::time::timeout(HANG, net.recv_any())
                        .await
                        .unwrap_or_else(|_| panic!("{i}/{j} of {k} {end:?}: recv_any hangs"));
                    assert!(Arc::ptr_eq(&from, &conn));
                    got
                }
            };
            assert_eq!(&got, m, "{i}/{j} of {k} {end:?}");
        }
        sending.await.unwrap();
        // Then the end.
        assert_eq!(
            tokio::time::timeout(HANG, net.recv(&conn)).await.unwrap(),
            Err(NetError::Socket(SocketError::ConnectionClosed))
        );
        if i % 2 == 1 {
            disconnection_of(&mut events, conn.peer_id()).await;
        }
        assert_eq!(net.undrained_connections(), 0, "{i}: drained, forgotten");
        // Nobody but us holds the connection (its buffers go with it).
        let deadline = tokio::time::Instant::now() + HANG;
        while Arc::strong_count(&conn) > 1 {
            assert!(tokio::time::Instant::now() < deadline, "the pool keeps {i}");
            tokio::task::yield_now().await;
        }
        let greylisted = net.with_acl(|a| a.banned_peer(&conn.peer_id()));
        assert_eq!(greylisted, end == End::Garbage, "{i} {end:?}");
    }
    assert_eq!(net.active_connections(), 0);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_a_fin_reach_recv() {
    every_message_reaches_the_application(End::Fin, Reader::Recv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_a_fin_reach_recv_any() {
    every_message_reaches_the_application(End::Fin, Reader::RecvAny).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_a_disconnect_reach_recv() {
    every_message_reaches_the_application(End::Disconnect, Reader::Recv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_a_disconnect_reach_recv_any() {
    every_message_reaches_the_application(End::Disconnect, Reader::RecvAny).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_garbage_reach_recv_and_the_peer_is_greylisted() {
    every_message_reaches_the_application(End::Garbage, Reader::Recv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_garbage_reach_recv_any_and_the_peer_is_greylisted() {
    every_message_reaches_the_application(End::Garbage, Reader::RecvAny).await;
}

/// Closed connections with unread messages are kept for `recv_any` up to
/// `max_connections`, the oldest dropped beyond; shutdown drops them all.
#[tokio::test(start_paused = true)]
async fn undrained_connections_are_bounded_and_dropped_at_shutdown() {
    let mem = MemoryNetwork::new();
    let limits = {
        let mut limits = pool_limits();
        limits.max_connections = 3;
        limits.expected_connections = 3;
        limits
    };
    let net = pool(&mem, limits).await;
    let sched = IoScheduler::new(SchedulerConfig::default());
    let mut events = net.events();
    for i in 0..5 {
        let peer = raw_peer(&mem, i, &sched).await;
        send_then_end(&peer, &[message(0, i)], End::Fin).await;
        disconnection_of(&mut events, identity(i).peer_id).await;
        assert_eq!(net.undrained_connections(), (i + 1).min(3));
    }
    // The three newest are left.
    let mut left = Vec::new();
    for _ in 2..5 {
        let (from, _, got) = net.recv_any().await;
        let i = (0..5)
            .find(|&i| identity(i).peer_id == from.peer_id())
            .unwrap();
        assert_eq!(got, message(0, i));
        left.push(i);
    }
    left.sort_unstable();
    assert_eq!(left, vec![2, 3, 4]);
    assert_eq!(net.undrained_connections(), 0);
    let peer = raw_peer(&mem, 9, &sched).await;
    send_then_end(&peer, &[message(0, 9)], End::Fin).await;
    disconnection_of(&mut events, identity(9).peer_id).await;
    assert_eq!(net.undrained_connections(), 1);
    net.shutdown().await;
    assert_eq!(net.undrained_connections(), 0);
}

/// The same over loopback TCP: the peer's kernel answers our write with a
/// reset, and what the peer sent before is still in ours, to be read.
/// (Large messages: the peer's data fits in our receive window, so none of
/// it is still in the peer's kernel when the reset discards what is
/// there.)
#[tokio::test]
async fn over_tcp_a_failed_write_does_not_lose_what_the_peer_sent_before_it_went() {
    for k in [2, 8] {
        let opts = AcceptOptions {
            incoming_message_queue_size: 4096,
            ..AcceptOptions::default()
        };
        let sched = IoScheduler::new(SchedulerConfig::default());
        let (c, s) = common::connected_pair_on(&sched, &sched, opts).await;
        let msgs: Vec<_> = (0..k)
            .map(|j| common::app(0x10, vec![j as u8; 8000]))
            .collect();
        for m in &msgs {
            c.write_sync(m).await.unwrap();
        }
        c.close(false).await;
        drop(c);
        // The first write draws the reset, a next one fails.
        let mut failed = false;
        for _ in 0..100 {
            if s.write_sync(&common::app(0x11, vec![0; 1000]))
                .await
                .is_err()
            {
                failed = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(failed, "writing to a closed peer never failed");
        for m in &msgs {
            let (_, got) = tokio::time::timeout(HANG, s.read()).await.unwrap().unwrap();
            assert_eq!(&got, m);
        }
        assert_eq!(s.read().await.unwrap_err(), SocketError::ConnectionClosed);
    }
}
