//! Pool-level tests: ports of Octez's `test_p2p_pool`, `test_p2p_connect_handler`,
//! `test_p2p_broadcast`, `test_p2p_conn`, plus admission, bad input, ACL,
//! discovery, swap, peers-file and quirk-fix tests.
//!
//! Almost everything runs on the in-memory transport with paused time (one
//! IP per node, `127.0.0.<seed>`, port 9732); a few tests use loopback TCP.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use tezos_p2p::events::P2pEvent;
use tezos_p2p::limits::Limits;
use tezos_p2p::points::PointState;
use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};
use tezos_p2p::socket::{self, AcceptOptions, AuthConfig, Connection, SocketError};
use tezos_p2p::transport::{MemoryNetwork, TcpOptions, Transport};
use tezos_p2p::wire::encoding::Encode;
use tezos_p2p::wire::identity::{Identity, PeerId, PowStamp, PowTarget, SecretKey};
use tezos_p2p::wire::message::{OctezMetadata, P2pMessage, RawMessage};
use tezos_p2p::wire::point::{encode_points_to_end, Point};
use tezos_p2p::wire::rejection::Motive;
use tezos_p2p::wire::version::{ChainName, SupportedVersions};
use tezos_p2p::{Config, Net, NetError, PeerConnection};

type TestNet = Net<RawMessage, OctezMetadata, ()>;
type Conn = Arc<PeerConnection<RawMessage, OctezMetadata>>;

const PORT: u16 = 9732;

fn ip(seed: u8) -> IpAddr {
    format!("127.0.0.{seed}").parse().unwrap()
}

fn point(seed: u8) -> Point {
    Point::new(ip(seed), PORT)
}

fn identity(seed: u8) -> Arc<Identity> {
    Arc::new(Identity::from_secret_key(
        SecretKey([seed; 32]),
        PowStamp([0; 24]),
    ))
}

fn peer_id(seed: u8) -> PeerId {
    identity(seed).peer_id
}

fn ping() -> RawMessage {
    RawMessage {
        tag: 0x10,
        body: vec![],
    }
}

/// No maintenance (so the admission threshold is `max_connections`), room
/// for many incoming handshakes.
fn limits() -> Limits {
    {
        let mut limits = Limits::default();
        limits.maintenance_idle_time = None;
        limits.min_connections = 0;
        limits.expected_connections = 10;
        limits.max_connections = 20;
        limits.max_incoming_connections = 64;
        limits.backlog = 64;
        limits
    }
}

fn config(mem: &MemoryNetwork, seed: u8) -> Config<OctezMetadata> {
    {
        let mut config = Config::new(
            identity(seed),
            SupportedVersions::octez(ChainName::from("TEST")),
        );
        config.listening_addr = Some(SocketAddr::new(ip(seed), PORT));
        config.proof_of_work_target = PowTarget::new(0.0).unwrap();
        config.transport = Transport::Memory(mem.with_local_ip(ip(seed)));
        config.seed = Some(u64::from(seed));
        config
    }
}

async fn node_with(
    mem: &MemoryNetwork,
    seed: u8,
    f: impl FnOnce(&mut Config<OctezMetadata>, &mut Limits),
) -> TestNet {
    let mut cfg = config(mem, seed);
    let mut lim = limits();
    f(&mut cfg, &mut lim);
    let net = Net::create(cfg, lim).await.unwrap();
    net.activate();
    net
}

async fn node(mem: &MemoryNetwork, seed: u8) -> TestNet {
    node_with(mem, seed, |_, _| {}).await
}

/// Polls `cond` until it holds (at most 60 s of, usually paused, time).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for an event matching `pred` on `rx`.
async fn wait_event(rx: &mut broadcast::Receiver<P2pEvent>, pred: impl Fn(&P2pEvent) -> bool) {
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("event not seen")
}

fn drain_events(rx: &mut broadcast::Receiver<P2pEvent>) -> Vec<P2pEvent> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

/// Octez's retrying `connect` helper: returns the running connection to
/// `to`, whichever side dialled it.
async fn connect_retry(net: &TestNet, to: u8) -> Conn {
    let peer = peer_id(to);
    for _ in 0..200 {
        if let Some(c) = net.find_connection_by_peer_id(&peer) {
            return c;
        }
        match net
            .connect_with(
                point(to),
                tezos_p2p::ConnectOptions::default().timeout(Duration::from_secs(2)),
            )
            .await
        {
            Ok(c) => return c,
            Err(NetError::Connected(_))
            | Err(NetError::PendingConnection(_))
            | Err(NetError::Rejected { .. })
            | Err(NetError::Timeout)
            | Err(NetError::ConnectionFailed { .. })
            | Err(NetError::Socket(
                SocketError::RejectedByNack { .. }
                | SocketError::RejectedSocketConnection
                | SocketError::ConnectionClosed,
            )) => {
                let ms = rand::thread_rng().gen_range(20..200);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Err(e) => panic!("connect to {to}: {e}"),
        }
    }
    panic!("could not connect to {to}")
}

async fn recv_within(net: &TestNet, conn: &Conn) -> RawMessage {
    tokio::time::timeout(Duration::from_secs(10), net.recv(conn))
        .await
        .expect("no message in time")
        .expect("connection closed")
        .1
}

/// A peer speaking the protocol through the socket layer directly, so it
/// can write raw bytes inside the encrypted channel.
struct RawPeer {
    conn: Connection<RawMessage, OctezMetadata>,
    _sched: IoScheduler,
}

fn auth_config(
    seed: u8,
    target: SocketAddr,
    versions: &SupportedVersions,
    listening_port: Option<u16>,
) -> AuthConfig<OctezMetadata> {
    AuthConfig {
        identity: identity(seed),
        pow_target: PowTarget::new(0.0).unwrap(),
        incoming: false,
        remote_addr: target,
        listening_port,
        version: versions.announced(),
        metadata: OctezMetadata::default(),
        cancel: CancellationToken::new(),
        timeout: Some(Duration::from_secs(5)),
    }
}

async fn raw_peer(
    mem: &MemoryNetwork,
    seed: u8,
    target: Point,
    listening_port: Option<u16>,
) -> Result<RawPeer, SocketError> {
    let transport = Transport::Memory(mem.with_local_ip(ip(seed)));
    let stream = transport
        .connect(target.to_socket_addr())
        .await
        .map_err(|e| SocketError::ConnectionError(e.into()))?;
    let sched = IoScheduler::new(SchedulerConfig::default());
    let versions = SupportedVersions::octez(ChainName::from("TEST"));
    let cfg = auth_config(seed, target.to_socket_addr(), &versions, listening_port);
    let (_, auth) = socket::authenticate(stream, sched.register(), cfg).await?;
    let conn = auth.accept::<RawMessage>(AcceptOptions::default()).await?;
    Ok(RawPeer {
        conn,
        _sched: sched,
    })
}

/// Sends a message both ways on a running connection pair.
async fn assert_exchange(a: &TestNet, b: &TestNet) {
    let ab = a.find_connection_by_peer_id(&b.peer_id()).expect("a-b");
    let ba = b.find_connection_by_peer_id(&a.peer_id()).expect("b-a");
    a.send(
        &ab,
        RawMessage {
            tag: 0x12,
            body: b"a->b".to_vec(),
        },
    )
    .await
    .unwrap();
    assert_eq!(recv_within(b, &ba).await.body, b"a->b");
    b.send(
        &ba,
        RawMessage {
            tag: 0x12,
            body: b"b->a".to_vec(),
        },
    )
    .await
    .unwrap();
    assert_eq!(recv_within(a, &ab).await.body, b"b->a");
}

fn point_state(net: &TestNet, p: Point) -> Option<PointState> {
    net.with_tables(|t| t.known_points.get(&p).map(|i| i.state))
}

fn knows_point(net: &TestNet, p: Point) -> bool {
    net.with_tables(|t| t.known_points.contains_key(&p))
}

async fn shutdown_all(nets: &[TestNet]) {
    for n in nets {
        n.shutdown().await;
    }
}

// ---------------------------------------------------------------------------
// test_p2p_pool

/// `p2p-connection-pool (simple)`: every node dials every other at once;
/// Ping on every connection; each node reads one Ping per connection.
#[tokio::test(start_paused = true)]
async fn pool_simple_full_mesh() {
    const N: u8 = 6;
    let mem = MemoryNetwork::new();
    let mut nets = Vec::new();
    for s in 1..=N {
        nets.push(node(&mem, s).await);
    }
    let mut tasks = Vec::new();
    for (i, net) in nets.iter().enumerate() {
        let net = net.clone();
        let me = i as u8 + 1;
        tasks.push(tokio::spawn(async move {
            for to in (1..=N).filter(|&t| t != me) {
                connect_retry(&net, to).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for net in &nets {
        eventually("full mesh", || net.active_connections() == N as usize - 1).await;
    }
    for net in &nets {
        for c in net.connections() {
            net.send(&c, ping()).await.unwrap();
        }
    }
    for net in &nets {
        for c in net.connections() {
            assert_eq!(recv_within(net, &c).await, ping());
        }
    }
    for net in &nets {
        for c in net.connections() {
            net.disconnect(&c, true, "test").await;
        }
    }
    for net in &nets {
        eventually("all closed", || net.active_connections() == 0).await;
    }
    shutdown_all(&nets).await;
}

/// `p2p-connection-pool (random)`, shortened: nodes repeatedly connect to
/// random others, send a Ping and disconnect, concurrently. No error, and at
/// the end the tables are consistent (nothing stuck Requested/Accepted) and
/// a fresh connection still works.
#[tokio::test(start_paused = true)]
async fn pool_random_connect_disconnect() {
    const N: u8 = 4;
    let mem = MemoryNetwork::new();
    let mut nets = Vec::new();
    for s in 1..=N {
        nets.push(node(&mem, s).await);
    }
    let mut tasks = Vec::new();
    for (i, net) in nets.iter().enumerate() {
        let net = net.clone();
        let me = i as u8 + 1;
        tasks.push(tokio::spawn(async move {
            for _round in 0..3 {
                for to in (1..=N).filter(|&t| t != me) {
                    let ms = rand::thread_rng().gen_range(20..120);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let c = connect_retry(&net, to).await;
                    let _ = net.try_send(&c, ping());
                    let ms = rand::thread_rng().gen_range(20..120);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    net.disconnect(&c, false, "random").await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for net in &nets {
        eventually("all closed", || net.active_connections() == 0).await;
        let stuck = net.with_tables(|t| {
            t.known_points
                .values()
                .filter(|i| !matches!(i.state, PointState::Disconnected))
                .count()
        });
        assert_eq!(stuck, 0, "points not Disconnected");
    }
    // Back-off does not block an explicit connect.
    let c = nets[0].connect(point(2)).await.unwrap();
    nets[0].send(&c, ping()).await.unwrap();
    shutdown_all(&nets).await;
}

/// `p2p-connection-pool (garbled)`: 16 zero bytes inside the encrypted
/// channel; the receiver fails to decode, greylists and closes, and the
/// sender's next read fails with `ConnectionClosed`.
#[tokio::test(start_paused = true)]
async fn pool_garbled_message_closes_the_connection() {
    let mem = MemoryNetwork::new();
    let target = node(&mem, 1).await;
    let raw = raw_peer(&mem, 2, point(1), Some(PORT)).await.unwrap();
    eventually("running", || target.active_connections() == 1).await;
    raw.conn
        .write_encoded(Bytes::from(vec![0u8; 16]))
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), raw.conn.read())
        .await
        .unwrap();
    assert_eq!(r.unwrap_err(), SocketError::ConnectionClosed);
    eventually("closed", || target.active_connections() == 0).await;
    assert!(target.with_acl(|a| a.is_greylisted_peer(&peer_id(2))));
    target.shutdown().await;
}

fn is_too_many_nack(e: &NetError) -> Option<&Option<Vec<Point>>> {
    match e {
        NetError::Socket(SocketError::RejectedByNack {
            motive: Motive::TooManyConnections,
            alternative_points,
        }) => Some(alternative_points),
        _ => None,
    }
}

/// `p2p-connection-pool (overcrowded)` and `(overcrowded-mixed)`: a target
/// that accepts nobody Nacks with a point list (p2p v1 clients) and learns
/// every client's point; the second round's lists teach each client every
/// other client's point. p2p v0 clients get a list-less `Nack_v_0` and learn
/// nothing.
async fn overcrowded(mixed: bool) {
    const CLIENTS: u8 = 9;
    let mem = MemoryNetwork::new();
    let target = node_with(&mem, 1, |_, l| {
        l.min_connections = 0;
        l.expected_connections = 0;
        l.max_connections = 0;
    })
    .await;
    let v0 = |seed: u8| mixed && seed % 2 == 1;
    let mut clients = Vec::new();
    for s in 2..2 + CLIENTS {
        let legacy = v0(s);
        clients.push(
            node_with(&mem, s, |c, l| {
                l.min_connections = 0;
                l.expected_connections = 1;
                l.max_connections = 1;
                c.trusted_points = vec![(point(1), None)];
                if legacy {
                    c.versions.p2p_versions = vec![0];
                }
            })
            .await,
        );
    }
    for round in 0..2 {
        for (i, c) in clients.iter().enumerate() {
            let seed = i as u8 + 2;
            let e = c
                .connect_with(point(1), tezos_p2p::ConnectOptions::default().trusted())
                .await
                .unwrap_err();
            if v0(seed) {
                // `Nack_v_0` carries neither motive nor points.
                assert_eq!(
                    e,
                    NetError::Socket(SocketError::RejectedByNack {
                        motive: Motive::NoMotive,
                        alternative_points: None
                    }),
                    "v0 peers get Nack_v_0"
                );
            } else {
                let list = is_too_many_nack(&e).unwrap_or_else(|| panic!("unexpected {e}"));
                let list = list.as_ref().expect("a v1 peer gets a point list");
                if round == 1 {
                    for other in 2..2 + CLIENTS {
                        assert!(list.contains(&point(other)), "{other} in the list");
                    }
                }
            }
        }
    }
    for (i, c) in clients.iter().enumerate() {
        let seed = i as u8 + 2;
        let knows_all = (2..2 + CLIENTS)
            .filter(|&o| o != seed)
            .all(|o| knows_point(c, point(o)));
        assert_eq!(knows_all, !v0(seed), "client {seed}");
        assert_eq!(c.active_connections(), 0);
    }
    assert_eq!(target.active_connections(), 0);
    shutdown_all(&clients).await;
    target.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pool_overcrowded_nack_carries_alternative_points() {
    overcrowded(false).await;
}

#[tokio::test(start_paused = true)]
async fn pool_overcrowded_mixed_v0_peers_get_nack_v0_without_points() {
    overcrowded(true).await;
}

/// `p2p-connection-pool (no-common-network-protocol)`: target speaks p2p
/// [0], clients only [1]: each client refuses with
/// `Rejected_no_common_protocol` and forgets the dialled point.
#[tokio::test(start_paused = true)]
async fn pool_no_common_network_protocol() {
    let mem = MemoryNetwork::new();
    let target = node_with(&mem, 1, |c, _| c.versions.p2p_versions = vec![0]).await;
    let mut clients = Vec::new();
    for s in 2..5 {
        clients.push(node_with(&mem, s, |c, _| c.versions.p2p_versions = vec![1]).await);
    }
    for c in &clients {
        let e = c.connect(point(1)).await.unwrap_err();
        assert!(
            matches!(e, NetError::RejectedNoCommonProtocol { ref announced } if announced.p2p_version == 0),
            "{e:?}"
        );
        assert!(!knows_point(c, point(1)), "foreign point forgotten");
    }
    eventually("none running", || target.active_connections() == 0).await;
    shutdown_all(&clients).await;
    target.shutdown().await;
}

/// Chain-name mismatch: Nack `Unknown_chain_name` from the dialler's side.
#[tokio::test(start_paused = true)]
async fn unknown_chain_name_is_no_common_protocol() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node_with(&mem, 2, |c, _| {
        c.versions = SupportedVersions::octez(ChainName::from("OTHER"))
    })
    .await;
    let e = a.connect(point(2)).await.unwrap_err();
    assert!(
        matches!(e, NetError::RejectedNoCommonProtocol { .. }),
        "{e:?}"
    );
    shutdown_all(&[a, b]).await;
}

// ---------------------------------------------------------------------------
// test_p2p_connect_handler

/// `Connect then destroy`.
#[tokio::test(start_paused = true)]
async fn connect_handler_connect_then_shutdown() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node(&mem, 2).await;
    a.connect(point(2)).await.unwrap();
    a.shutdown().await;
    eventually("b sees the end", || b.active_connections() == 0).await;
    b.shutdown().await;
    assert!(matches!(a.connect(point(2)).await, Err(NetError::ShutDown)));
}

/// `Don't remove incoming connections too early`: an incoming handshake
/// holds its `max_incoming_connections` slot from the accept on (taken
/// synchronously) until it ends, here by the authentication timeout.
#[tokio::test(start_paused = true)]
async fn connect_handler_incoming_handshake_is_tracked_until_it_ends() {
    let mem = MemoryNetwork::new();
    let target = node_with(&mem, 1, |_, l| l.max_incoming_connections = 1).await;
    let mut ev = target.events();
    // A silent connection: never sends its connection message.
    let silent = Transport::Memory(mem.with_local_ip(ip(50)))
        .connect(point(1).to_socket_addr())
        .await
        .unwrap();
    wait_event(&mut ev, |e| {
        matches!(e, P2pEvent::IncomingConnection { .. })
    })
    .await;
    let b = node(&mem, 2).await;
    let e = b.connect(point(1)).await.unwrap_err();
    assert!(
        matches!(e, NetError::Socket(SocketError::ConnectionClosed)),
        "refused without a handshake: {e:?}"
    );
    // The silent handshake times out (5 s): the slot is free again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    b.connect(point(1)).await.unwrap();
    drop(silent);
    shutdown_all(&[b, target]).await;
}

/// `on_new_connection hook is triggered on new connection`: 0/0, 1/0 after
/// connect, 1/1 after `disconnect ~wait:true`, still 1/1 after shutdown.
#[tokio::test(start_paused = true)]
async fn connect_handler_hooks_count_new_connections_and_disconnections() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node(&mem, 2).await;
    let new = Arc::new(AtomicUsize::new(0));
    let gone = Arc::new(AtomicUsize::new(0));
    let (n2, g2) = (new.clone(), gone.clone());
    a.on_new_connection(move |_| {
        n2.fetch_add(1, Ordering::SeqCst);
    });
    a.on_disconnection(move |_| {
        g2.fetch_add(1, Ordering::SeqCst);
    });
    let counts = || (new.load(Ordering::SeqCst), gone.load(Ordering::SeqCst));
    assert_eq!(counts(), (0, 0));
    let c = a.connect(point(2)).await.unwrap();
    assert_eq!(counts(), (1, 0));
    a.disconnect(&c, true, "test").await;
    assert_eq!(counts(), (1, 1));
    a.shutdown().await;
    assert_eq!(counts(), (1, 1));
    b.shutdown().await;
}

/// Neither hook fires for a rejected handshake.
#[tokio::test(start_paused = true)]
async fn hooks_do_not_fire_for_rejected_handshakes() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node_with(&mem, 2, |_, l| {
        l.expected_connections = 0;
        l.max_connections = 0
    })
    .await;
    let count = Arc::new(AtomicUsize::new(0));
    for net in [&a, &b] {
        let c1 = count.clone();
        let c2 = count.clone();
        net.on_new_connection(move |_| {
            c1.fetch_add(1, Ordering::SeqCst);
        });
        net.on_disconnection(move |_| {
            c2.fetch_add(1, Ordering::SeqCst);
        });
    }
    assert!(a.connect(point(2)).await.is_err());
    assert_eq!(count.load(Ordering::SeqCst), 0);
    shutdown_all(&[a, b]).await;
}

// ---------------------------------------------------------------------------
// test_p2p_banned_peers / test_p2p_peerset (the containers are unit-tested in
// acl.rs; these are the Octez sequences through the pool's ACL)

#[tokio::test(start_paused = true)]
async fn banned_peers_empty_ban_clear() {
    let mem = MemoryNetwork::new();
    let net = node(&mem, 1).await;
    let addrs: Vec<IpAddr> = ["ffff::3", "ffff::ff", "a::2"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    net.with_acl(|a| assert!(addrs.iter().all(|&ip| !a.banned_addr(ip))));
    for &ip in &addrs {
        net.greylist_addr(ip);
    }
    net.with_acl(|a| assert!(addrs.iter().all(|&ip| a.banned_addr(ip))));
    net.with_acl(|a| a.clear_greylists());
    net.with_acl(|a| assert!(addrs.iter().all(|&ip| !a.banned_addr(ip))));
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn peerset_lru_overflow_through_the_pool() {
    let mem = MemoryNetwork::new();
    let net = node_with(&mem, 1, |_, l| l.peer_greylist_size = 3).await;
    let [foo, bar, baz, zor, qux] = [11u8, 12, 13, 14, 15].map(peer_id);
    for p in [foo, bar, baz, foo, zor] {
        net.greylist_peer(p);
    }
    net.with_acl(|a| {
        assert!(a.banned_peer(&zor) && a.banned_peer(&foo) && a.banned_peer(&baz));
        assert!(!a.banned_peer(&bar));
    });
    for p in [baz, baz, baz, qux] {
        net.greylist_peer(p);
    }
    net.with_acl(|a| {
        assert!(!a.banned_peer(&foo));
        assert!(a.banned_peer(&zor) && a.banned_peer(&baz) && a.banned_peer(&qux));
    });
    net.unban_peer(zor);
    net.with_acl(|a| assert!(!a.banned_peer(&zor)));
    net.shutdown().await;
}

// ---------------------------------------------------------------------------
// test_p2p_broadcast

/// `p2p-broadcast (simple)`: node 1 broadcasts five ~33 KB messages to
/// nodes 2 and 3, which receive identical payloads; then `except` and `alt`.
#[tokio::test(start_paused = true)]
async fn broadcast_delivers_identical_payloads() {
    let mem = MemoryNetwork::new();
    let n1 = node(&mem, 1).await;
    let n2 = node(&mem, 2).await;
    let n3 = node(&mem, 3).await;
    let c12 = n1.connect(point(2)).await.unwrap();
    n1.connect(point(3)).await.unwrap();
    eventually("running", || {
        n2.active_connections() == 1 && n3.active_connections() == 1
    })
    .await;
    let r2 = n2.find_connection_by_peer_id(&n1.peer_id()).unwrap();
    let r3 = n3.find_connection_by_peer_id(&n1.peer_id()).unwrap();
    for round in 0..5u8 {
        // 1000 "operation hashes" of 32 bytes.
        let body: Vec<u8> = (0..32_000u32)
            .map(|i| (i as u8) ^ round.wrapping_mul(37))
            .collect();
        let msg = RawMessage { tag: 0x11, body };
        assert_eq!(n1.broadcast(&msg, None, None).unwrap().queued, 2);
        assert_eq!(recv_within(&n2, &r2).await, msg);
        assert_eq!(recv_within(&n3, &r3).await, msg);
    }
    // except: not to node 2.
    let p2 = n2.peer_id();
    let except = |c: &PeerConnection<RawMessage, OctezMetadata>| c.peer_id() == p2;
    let m = RawMessage {
        tag: 0x10,
        body: b"not for 2".to_vec(),
    };
    assert_eq!(n1.broadcast(&m, Some(&except), None).unwrap().queued, 1);
    assert_eq!(recv_within(&n3, &r3).await, m);
    // alt: node 2 gets the alternative.
    let alt = RawMessage {
        tag: 0x12,
        body: b"alt".to_vec(),
    };
    assert_eq!(
        n1.broadcast(&m, None, Some((&except, &alt)))
            .unwrap()
            .queued,
        2
    );
    assert_eq!(recv_within(&n2, &r2).await, alt);
    assert_eq!(recv_within(&n3, &r3).await, m);
    // Nothing else arrived at node 2 (the excepted message never came).
    n1.send(&c12, ping()).await.unwrap();
    assert_eq!(recv_within(&n2, &r2).await, ping());
    shutdown_all(&[n1, n2, n3]).await;
}

/// A broadcast is dropped on a connection whose write queue is full, and
/// the drop is told and counted: node 2 reads nothing, so its queues, the
/// pipe and then node 1's write queue towards it fill up; a broadcast then
/// reaches node 3, connected since, and is dropped towards node 2.
#[tokio::test(start_paused = true)]
async fn broadcast_counts_writes_dropped_by_a_full_queue() {
    let mem = MemoryNetwork::new();
    let small_queues = |_: &mut Config<OctezMetadata>, l: &mut Limits| {
        l.outgoing_message_queue_size = 8 * 1024;
        l.incoming_message_queue_size = 8 * 1024;
        l.incoming_app_message_queue_size = 4;
    };
    let n1 = node_with(&mem, 1, small_queues).await;
    let n2 = node_with(&mem, 2, small_queues).await;
    let n3 = node(&mem, 3).await;
    n1.connect(point(2)).await.unwrap();
    eventually("running", || n2.active_connections() == 1).await;
    let msg = RawMessage {
        tag: 0x10,
        body: vec![7; 1000],
    };
    // Nothing full yet.
    let first = n1.broadcast(&msg, None, None).unwrap();
    assert_eq!((first.queued, first.dropped), (1, 0));
    assert_eq!(n1.broadcast_dropped(), 0);
    // Broadcast until node 1's queue towards node 2 stays full: a drop
    // right after a rest in which the drivers moved all they could.
    let (mut queued, mut dropped, mut rested, mut stuck) = (1, 0, false, false);
    for _ in 0..100_000 {
        let out = n1.broadcast(&msg, None, None).unwrap();
        assert_eq!(out.queued + out.dropped, 1);
        queued += out.queued;
        dropped += out.dropped;
        if out.dropped == 0 {
            rested = false;
        } else if rested {
            stuck = true;
            break;
        } else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            rested = true;
        }
    }
    assert!(stuck, "the queue never stayed full ({queued} queued)");
    assert!(dropped >= 2);
    assert_eq!(n1.broadcast_dropped(), dropped as u64);
    // Node 3 connects: one broadcast is queued towards it and dropped
    // towards node 2, whose queue is still full.
    let c13 = n1.connect(point(3)).await.unwrap();
    let r3 = n3.find_connection_by_peer_id(&n1.peer_id()).unwrap();
    let out = n1.broadcast(&msg, None, None).unwrap();
    assert_eq!((out.queued, out.dropped), (1, 1));
    assert_eq!(n1.broadcast_dropped(), dropped as u64 + 1);
    assert_eq!(recv_within(&n3, &r3).await, msg);
    // Node 2 still holds the connection: the drops did not end it.
    assert_eq!(n1.active_connections(), 2);
    drop(c13);
    shutdown_all(&[n1, n2, n3]).await;
}

// ---------------------------------------------------------------------------
// test_p2p_conn

/// `p2p msg consumption without peer_discovery`: Bootstrap and Advertise
/// are skipped and do not hold back the following application message.
#[tokio::test(start_paused = true)]
async fn msg_consumption_without_peer_discovery() {
    let mem = MemoryNetwork::new();
    let a = node_with(&mem, 1, |c, _| c.disable_peer_discovery = true).await;
    let b = node(&mem, 2).await;
    let ba = b.connect(point(1)).await.unwrap();
    eventually("running", || a.active_connections() == 1).await;
    let ab = a.find_connection_by_peer_id(&b.peer_id()).unwrap();
    assert!(b.send_p2p(&ba, &P2pMessage::Bootstrap));
    assert!(b.send_p2p(&ba, &P2pMessage::Advertise(vec![])));
    b.send(&ba, ping()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(1), a.recv(&ab))
        .await
        .expect("consumed within 1 s")
        .unwrap();
    assert_eq!(got.1, ping());
    shutdown_all(&[a, b]).await;
}

// ---------------------------------------------------------------------------
// Admission

/// Quirk 14 fixed: 50 parallel dials against `max_connections = 10`
/// (no maintenance: threshold = max) end with exactly 10 running; the 40
/// others are Nacked `Too_many_connections`. Multi-threaded on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_handshakes_never_overshoot_max_connections() {
    let mem = MemoryNetwork::new();
    let target = node_with(&mem, 1, |_, l| {
        l.expected_connections = 10;
        l.max_connections = 10;
    })
    .await;
    let mut ev = target.events();
    let mut dialers = Vec::new();
    for s in 2..52 {
        dialers.push(node(&mem, s).await);
    }
    let tasks: Vec<_> = dialers
        .iter()
        .map(|d| {
            let d = d.clone();
            tokio::spawn(async move { d.connect(point(1)).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert!(is_too_many_nack(&e).is_some(), "{e:?}"),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(target.active_connections(), 10);
    let rejected = drain_events(&mut ev)
        .iter()
        .filter(|e| matches!(e, P2pEvent::RejectingRequest { .. }))
        .count();
    assert_eq!(rejected, 40);
    shutdown_all(&dialers).await;
    target.shutdown().await;
}

/// Quirk 13 fixed: `connect` refuses at `active = max_connections` before
/// dialling (Octez checks `active ≤ max`).
#[tokio::test(start_paused = true)]
async fn connect_refuses_before_dialling_when_at_max_connections() {
    let mem = MemoryNetwork::new();
    let a = node_with(&mem, 1, |_, l| {
        l.expected_connections = 1;
        l.max_connections = 1
    })
    .await;
    let b = node(&mem, 2).await;
    let c = node(&mem, 3).await;
    let mut cev = c.events();
    a.connect(point(2)).await.unwrap();
    let e = a.connect(point(3)).await.unwrap_err();
    assert!(matches!(e, NetError::TooManyConnections), "{e:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !drain_events(&mut cev)
            .iter()
            .any(|e| matches!(e, P2pEvent::IncomingConnection { .. })),
        "no dial happened"
    );
    assert_eq!(point_state(&a, point(3)), None, "nothing registered");
    shutdown_all(&[a, b, c]).await;
}

/// The second connect to a point: `Connected` once running,
/// `PendingConnection` while the first is in progress.
#[tokio::test(start_paused = true)]
async fn second_connect_to_a_point_is_connected_or_pending() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node(&mem, 2).await;
    let (r1, r2) = tokio::join!(a.connect(point(2)), a.connect(point(2)));
    assert!(r1.is_ok());
    assert!(matches!(r2, Err(NetError::PendingConnection(p)) if p == point(2)));
    assert_eq!(
        a.connect(point(2)).await.unwrap_err(),
        NetError::Connected(point(2))
    );
    assert_eq!(a.active_connections(), 1);
    shutdown_all(&[a, b]).await;
}

/// An incoming handshake from a peer already running (same identity, other
/// address) is Nacked `Already_connected`.
#[tokio::test(start_paused = true)]
async fn incoming_from_an_already_connected_peer_is_nacked() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node(&mem, 2).await;
    a.connect(point(2)).await.unwrap();
    // Same identity as `a`, other IP.
    let twin = node_with(&mem, 3, |c, _| c.identity = identity(1)).await;
    let e = twin.connect(point(2)).await.unwrap_err();
    assert!(
        matches!(
            e,
            NetError::Socket(SocketError::RejectedByNack {
                motive: Motive::AlreadyConnected,
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(b.active_connections(), 1);
    assert_exchange(&a, &b).await;
    shutdown_all(&[a, b, twin]).await;
}

/// Simultaneous dial: both sides dial each other; after retries exactly
/// one connection runs between them, seen by both.
#[tokio::test(start_paused = true)]
async fn simultaneous_dial_ends_with_one_connection() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node(&mem, 2).await;
    let (ca, cb) = tokio::join!(connect_retry(&a, 2), connect_retry(&b, 1));
    assert_eq!(ca.peer_id(), b.peer_id());
    assert_eq!(cb.peer_id(), a.peer_id());
    assert_eq!(a.active_connections(), 1);
    assert_eq!(b.active_connections(), 1);
    assert_exchange(&a, &b).await;
    shutdown_all(&[a, b]).await;
}

/// Private mode: an untrusted incoming peer is refused without a Nack (the
/// dialler sees the socket closed during the Ack exchange); once trusted it
/// is accepted. An untrusted outgoing dial is refused locally.
#[tokio::test(start_paused = true)]
async fn private_mode_admits_only_trusted_peers() {
    let mem = MemoryNetwork::new();
    let private = node_with(&mem, 1, |c, _| c.private_mode = true).await;
    let a = node(&mem, 2).await;
    let e = a.connect(point(1)).await.unwrap_err();
    assert_eq!(
        e,
        NetError::Socket(SocketError::RejectedSocketConnection),
        "no Nack"
    );
    assert_eq!(private.active_connections(), 0);
    private.trust_peer(a.peer_id());
    a.connect(point(1)).await.unwrap();
    assert_eq!(private.active_connections(), 1);
    let b = node(&mem, 3).await;
    assert_eq!(
        private.connect(point(3)).await.unwrap_err(),
        NetError::PrivateMode(point(3))
    );
    private
        .connect_with(point(3), tezos_p2p::ConnectOptions::default().trusted())
        .await
        .unwrap();
    shutdown_all(&[private, a, b]).await;
}

// ---------------------------------------------------------------------------
// Bad input on a running connection: peer + IP greylisted, only that
// connection closed.

async fn bad_input_closes_only_that_connection(bytes: Vec<u8>) {
    let mem = MemoryNetwork::new();
    let target = node(&mem, 1).await;
    let good = node(&mem, 2).await;
    good.connect(point(1)).await.unwrap();
    let raw = raw_peer(&mem, 3, point(1), Some(PORT)).await.unwrap();
    eventually("running", || target.active_connections() == 2).await;
    raw.conn.write_encoded(Bytes::from(bytes)).await.unwrap();
    eventually("bad connection closed", || {
        target.find_connection_by_peer_id(&peer_id(3)).is_none()
    })
    .await;
    let r = tokio::time::timeout(Duration::from_secs(10), raw.conn.read())
        .await
        .unwrap();
    assert!(r.is_err());
    target.with_acl(|a| {
        assert!(a.is_greylisted_peer(&peer_id(3)), "peer greylisted");
        assert!(a.is_greylisted_addr(ip(3)), "IP greylisted");
        assert!(!a.banned_peer(&peer_id(2)) && !a.banned_addr(ip(2)));
    });
    assert_eq!(target.active_connections(), 1);
    assert_exchange(&target, &good).await;
    // A later connection from the greylisted IP is refused.
    assert!(raw_peer(&mem, 3, point(1), Some(PORT)).await.is_err());
    shutdown_all(&[target, good]).await;
}

#[tokio::test(start_paused = true)]
async fn undecodable_message_greylists_peer_and_ip() {
    // Size 2, tag 0x0000: not a message.
    bad_input_closes_only_that_connection(vec![0, 0, 0, 2, 0, 0]).await;
}

#[tokio::test(start_paused = true)]
async fn advertise_with_101_points_greylists_peer_and_ip() {
    let points: Vec<Point> = (0..101u16).map(|i| Point::new(ip(200), 1000 + i)).collect();
    let mut body = vec![0x00, 0x03];
    encode_points_to_end(&points[..100], &mut body).unwrap();
    points[100].encode(&mut body).unwrap();
    let mut msg = (body.len() as u32).to_be_bytes().to_vec();
    msg.extend(body);
    bad_input_closes_only_that_connection(msg).await;
}

#[tokio::test(start_paused = true)]
async fn unknown_p2p_tag_greylists_peer_and_ip() {
    bad_input_closes_only_that_connection(vec![0, 0, 0, 2, 0, 0x07]).await;
}

// ---------------------------------------------------------------------------
// Handshake-level greylisting

/// Garbage instead of a connection message greylists the IP; a later
/// connection from it is closed before any byte is exchanged.
#[tokio::test(start_paused = true)]
async fn garbage_connection_message_greylists_the_ip() {
    let mem = MemoryNetwork::new();
    let target = node(&mem, 1).await;
    let transport = Transport::Memory(mem.with_local_ip(ip(7)));
    let mut s = transport.connect(point(1).to_socket_addr()).await.unwrap();
    s.write_all(b"\x00\x0aHello, world. This is garbage, greylist me !")
        .await
        .unwrap();
    eventually("greylisted", || {
        target.with_acl(|a| a.is_greylisted_addr(ip(7)))
    })
    .await;
    let mut s2 = transport.connect(point(1).to_socket_addr()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(1), s2.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "not even the connection message was sent");
    // The target refuses to dial it too.
    assert_eq!(
        target.connect(Point::new(ip(7), PORT)).await.unwrap_err(),
        NetError::PointBanned(Point::new(ip(7), PORT))
    );
    target.shutdown().await;
}

/// Not enough proof of work greylists the IP.
#[tokio::test(start_paused = true)]
async fn pow_too_low_greylists_the_ip() {
    let mem = MemoryNetwork::new();
    let target = node_with(&mem, 1, |c, _| {
        c.proof_of_work_target = PowTarget::new(24.0).unwrap()
    })
    .await;
    let a = node(&mem, 2).await;
    assert!(a.connect(point(1)).await.is_err());
    eventually("greylisted", || {
        target.with_acl(|acl| acl.is_greylisted_addr(ip(2)))
    })
    .await;
    assert_eq!(target.active_connections(), 0);
    shutdown_all(&[target, a]).await;
}

/// Expected peer id pinning: a different peer answers →
/// `Identity_check_failure` and its IP greylisted. Quirk 4 fixed: the point
/// goes back to Disconnected (not stuck Requested).
#[tokio::test(start_paused = true)]
async fn identity_check_failure_greylists_and_resets_the_point() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node(&mem, 2).await;
    let e = a
        .connect_with(
            point(2),
            tezos_p2p::ConnectOptions::default().expected_peer_id(peer_id(9)),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e,
        NetError::IdentityCheckFailure {
            point: point(2),
            expected: peer_id(9),
            received: b.peer_id(),
        }
    );
    assert!(a.with_acl(|acl| acl.is_greylisted_addr(ip(2))));
    assert_eq!(point_state(&a, point(2)), Some(PointState::Disconnected));
    assert_eq!(a.active_connections(), 0);
    // The right pin connects once the IP is forgiven.
    a.unban_point(point(2));
    a.connect_with(
        point(2),
        tezos_p2p::ConnectOptions::default().expected_peer_id(b.peer_id()),
    )
    .await
    .unwrap();
    shutdown_all(&[a, b]).await;
}

/// Quirk 4 fixed for `Peer_banned`: the point is reset, so the next connect
/// is refused for the ban again, not `Pending_connection`.
#[tokio::test(start_paused = true)]
async fn peer_banned_resets_the_point() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node(&mem, 2).await;
    a.ban_peer(b.peer_id()).await;
    for _ in 0..2 {
        assert_eq!(
            a.connect(point(2)).await.unwrap_err(),
            NetError::PeerBanned(b.peer_id())
        );
        assert_eq!(point_state(&a, point(2)), Some(PointState::Disconnected));
    }
    shutdown_all(&[a, b]).await;
}

/// Connecting to our own listening point fails with `Myself` and records
/// the point as ours; it is not dialled again.
#[tokio::test(start_paused = true)]
async fn connecting_to_myself_is_refused() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let e = a.connect(point(1)).await.unwrap_err();
    assert!(
        matches!(e, NetError::Socket(SocketError::Myself(_))),
        "{e:?}"
    );
    assert!(a.with_tables(|t| t.my_id_points.contains(&point(1))));
    assert_eq!(a.active_connections(), 0);
    a.shutdown().await;
}

// ---------------------------------------------------------------------------
// Discovery

/// Bootstrap → Advertise: a node learns the points its peer knows as
/// public.
#[tokio::test(start_paused = true)]
async fn points_learned_from_bootstrap_and_advertise() {
    let mem = MemoryNetwork::new();
    let center = node(&mem, 1).await;
    let a = node(&mem, 2).await;
    let b = node(&mem, 3).await;
    center.connect(point(3)).await.unwrap();
    let ac = a.connect(point(1)).await.unwrap();
    assert!(!knows_point(&a, point(3)));
    let mut ev = a.events();
    assert!(a.send_p2p(&ac, &P2pMessage::Bootstrap));
    wait_event(&mut ev, |e| matches!(e, P2pEvent::AdvertiseReceived { .. })).await;
    eventually("learned", || knows_point(&a, point(3))).await;
    shutdown_all(&[center, a, b]).await;
}

/// With discovery disabled, neither Nack lists nor Advertise teach points.
#[tokio::test(start_paused = true)]
async fn disabled_discovery_learns_nothing() {
    let mem = MemoryNetwork::new();
    let a = node_with(&mem, 1, |c, _| c.disable_peer_discovery = true).await;
    let b = node(&mem, 2).await;
    let ba = b.connect(point(1)).await.unwrap();
    let p = Point::new(ip(99), 1234);
    let mut ev = a.events();
    assert!(b.send_p2p(&ba, &P2pMessage::Advertise(vec![p])));
    wait_event(&mut ev, |e| matches!(e, P2pEvent::AdvertiseReceived { .. })).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!knows_point(&a, p));
    shutdown_all(&[a, b]).await;
}

// ---------------------------------------------------------------------------
// Swap

/// Four nodes: R runs connections to A and Q. A asks R to swap for P: R
/// answers Swap_ack(Q), connects to P and drops Q. A second request within
/// `swap_linger` is ignored.
#[tokio::test(start_paused = true)]
async fn swap_request_is_answered_and_the_swap_happens() {
    let mem = MemoryNetwork::new();
    let r = node_with(&mem, 1, |_, l| {
        l.swap_linger = Some(Duration::from_secs(120))
    })
    .await;
    let a = node(&mem, 2).await;
    let q = node(&mem, 3).await;
    let p = node(&mem, 4).await;
    let p5 = node(&mem, 5).await;
    r.connect(point(2)).await.unwrap();
    r.connect(point(3)).await.unwrap();
    eventually("a sees r", || a.active_connections() == 1).await;
    let ar = a.find_connection_by_peer_id(&r.peer_id()).unwrap();
    let mut rev = r.events();
    let mut aev = a.events();
    assert!(a.send_p2p(&ar, &P2pMessage::SwapRequest(point(4), p.peer_id())));
    wait_event(&mut rev, |e| matches!(e, P2pEvent::SwapSuccess { .. })).await;
    wait_event(&mut aev, |e| matches!(e, P2pEvent::SwapAckReceived { .. })).await;
    eventually("r dropped q", || {
        r.find_connection_by_peer_id(&q.peer_id()).is_none()
    })
    .await;
    assert!(r.find_connection_by_peer_id(&p.peer_id()).is_some());
    assert!(r.find_connection_by_peer_id(&a.peer_id()).is_some());
    // Unsolicited on A's side (A sent the request by hand, not through the
    // maintenance): A does not dial Q.
    assert!(a.find_connection_by_peer_id(&q.peer_id()).is_none());
    // Within the linger: ignored (after the 60 s throttle of the kind).
    assert!(a.send_p2p(&ar, &P2pMessage::SwapRequest(point(5), p5.peer_id())));
    wait_event(&mut rev, |e| {
        matches!(e, P2pEvent::SwapRequestIgnored { .. })
    })
    .await;
    assert!(r.find_connection_by_peer_id(&p5.peer_id()).is_none());
    shutdown_all(&[r, a, q, p, p5]).await;
}

/// `swap_linger = None` disables answering: no Swap_ack, no swap.
#[tokio::test(start_paused = true)]
async fn swap_disabled_ignores_requests() {
    let mem = MemoryNetwork::new();
    let r = node_with(&mem, 1, |_, l| l.swap_linger = None).await;
    let a = node(&mem, 2).await;
    let q = node(&mem, 3).await;
    let p = node(&mem, 4).await;
    r.connect(point(2)).await.unwrap();
    r.connect(point(3)).await.unwrap();
    eventually("a sees r", || a.active_connections() == 1).await;
    let ar = a.find_connection_by_peer_id(&r.peer_id()).unwrap();
    let mut rev = r.events();
    assert!(a.send_p2p(&ar, &P2pMessage::SwapRequest(point(4), p.peer_id())));
    wait_event(&mut rev, |e| {
        matches!(e, P2pEvent::SwapRequestReceived { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let evs = drain_events(&mut rev);
    assert!(
        !evs.iter().any(|e| matches!(
            e,
            P2pEvent::SwapAckSent { .. } | P2pEvent::SwapSuccess { .. }
        )),
        "{evs:?}"
    );
    assert_eq!(r.active_connections(), 2);
    assert!(r.find_connection_by_peer_id(&q.peer_id()).is_some());
    assert!(r.find_connection_by_peer_id(&p.peer_id()).is_none());
    shutdown_all(&[r, a, q, p]).await;
}

/// Quirk 20 fixed: a Swap_ack on a connection where we sent no Swap_request
/// is ignored (no dial, no disconnection).
#[tokio::test(start_paused = true)]
async fn unsolicited_swap_ack_is_ignored() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let r = node(&mem, 2).await;
    let q = node(&mem, 3).await;
    let ra = r.connect(point(1)).await.unwrap();
    let mut aev = a.events();
    assert!(r.send_p2p(&ra, &P2pMessage::SwapAck(point(3), q.peer_id())));
    wait_event(&mut aev, |e| matches!(e, P2pEvent::SwapAckReceived { .. })).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(a.active_connections(), 1);
    assert_eq!(q.active_connections(), 0);
    assert!(!drain_events(&mut aev)
        .iter()
        .any(|e| matches!(e, P2pEvent::OutgoingConnection { .. })));
    shutdown_all(&[a, r, q]).await;
}

// ---------------------------------------------------------------------------
// ACL operations at the pool level

/// Quirk 15 fixed: `greylist_peer` on a peer that is not running still
/// greylists the peer; on a running peer it also greylists its IP and the
/// connection is refused next time.
#[tokio::test(start_paused = true)]
async fn greylist_peer_on_a_non_running_peer_greylists_the_peer() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node(&mem, 2).await;
    a.greylist_peer(peer_id(42));
    assert!(a.with_acl(|acl| acl.is_greylisted_peer(&peer_id(42))));
    a.connect(point(2)).await.unwrap();
    a.greylist_peer(b.peer_id());
    a.with_acl(|acl| {
        assert!(acl.is_greylisted_peer(&b.peer_id()));
        assert!(acl.is_greylisted_addr(ip(2)));
    });
    shutdown_all(&[a, b]).await;
}

/// Quirk 16 fixed: banning an IP kicks every connection from it, including
/// incoming ones without an advertised listening port.
#[tokio::test(start_paused = true)]
async fn ban_point_kicks_incoming_connections_without_a_listening_port() {
    let mem = MemoryNetwork::new();
    let target = node(&mem, 1).await;
    let raw = raw_peer(&mem, 2, point(1), None).await.unwrap();
    eventually("running", || target.active_connections() == 1).await;
    assert_eq!(
        target.connections()[0].point(),
        None,
        "no point for a peer without a listening port"
    );
    target.ban_point(Point::new(ip(2), 1), false).await;
    eventually("kicked", || target.active_connections() == 0).await;
    let r = tokio::time::timeout(Duration::from_secs(5), raw.conn.read())
        .await
        .unwrap();
    assert!(r.is_err());
    assert!(target.with_acl(|a| a.is_blacklisted_addr(ip(2))));
    target.shutdown().await;
}

/// `ban_peer` disconnects it; incoming connections from it are refused.
#[tokio::test(start_paused = true)]
async fn banned_peer_is_disconnected_and_refused() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node(&mem, 2).await;
    b.connect(point(1)).await.unwrap();
    a.ban_peer(b.peer_id()).await;
    eventually("disconnected", || {
        a.active_connections() == 0 && b.active_connections() == 0
    })
    .await;
    assert!(b.connect(point(1)).await.is_err());
    assert_eq!(a.active_connections(), 0);
    a.unban_peer(b.peer_id());
    b.connect(point(1)).await.unwrap();
    shutdown_all(&[a, b]).await;
}

// ---------------------------------------------------------------------------
// Peers file

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tezos-p2p-pool-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(start_paused = true)]
async fn peers_file_is_saved_at_shutdown_and_reloaded() {
    let dir = temp_dir("reload");
    let file = dir.join("peers.json");
    let mem = MemoryNetwork::new();
    let b = node(&mem, 2).await;
    let a = node_with(&mem, 1, |c, _| c.peers_file = Some(file.clone())).await;
    a.connect(point(2)).await.unwrap();
    a.shutdown().await;
    assert!(file.exists());
    let a2 = node_with(&mem, 1, |c, _| c.peers_file = Some(file.clone())).await;
    assert!(a2.with_tables(|t| t.known_peers.contains_key(&b.peer_id())));
    assert!(knows_point(&a2, point(2)), "last seen point registered");
    a2.connect(point(2)).await.unwrap();
    shutdown_all(&[a2, b]).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(start_paused = true)]
async fn corrupt_peers_file_is_kept_aside_and_the_pool_starts_empty() {
    let dir = temp_dir("corrupt");
    let file = dir.join("peers.json");
    std::fs::write(&file, b"{ this is not json").unwrap();
    let mem = MemoryNetwork::new();
    let a = node_with(&mem, 1, |c, _| c.peers_file = Some(file.clone())).await;
    assert!(a.with_tables(|t| t.known_peers.is_empty()));
    let aside = dir.join("peers.json.corrupt");
    assert_eq!(std::fs::read(&aside).unwrap(), b"{ this is not json");
    a.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------
// Loopback TCP

fn tcp_config(seed: u8) -> Config<OctezMetadata> {
    {
        let mut config = config(&MemoryNetwork::new(), seed);
        config.listening_addr = Some("127.0.0.1:0".parse().unwrap());
        config.transport = Transport::Tcp(TcpOptions::default());
        config
    }
}

async fn tcp_node(seed: u8) -> TestNet {
    let net = Net::create(tcp_config(seed), limits()).await.unwrap();
    net.activate();
    net
}

fn tcp_point(net: &TestNet) -> Point {
    Point::new(ip(1), net.listening_port().unwrap())
}

#[tokio::test]
async fn tcp_three_nodes_connect_broadcast_and_shut_down() {
    let nets = [tcp_node(1).await, tcp_node(2).await, tcp_node(3).await];
    for i in 0..3 {
        for j in i + 1..3 {
            nets[i].connect(tcp_point(&nets[j])).await.unwrap();
        }
    }
    for n in &nets {
        eventually("mesh", || n.active_connections() == 2).await;
    }
    let msg = RawMessage {
        tag: 0x11,
        body: vec![7; 40_000],
    };
    assert_eq!(nets[0].broadcast(&msg, None, None).unwrap().queued, 2);
    for n in &nets[1..] {
        let c = n.find_connection_by_peer_id(&nets[0].peer_id()).unwrap();
        assert_eq!(recv_within(n, &c).await, msg);
    }
    let ids: HashSet<_> = nets[0].connections().iter().map(|c| c.peer_id()).collect();
    assert_eq!(ids.len(), 2);
    shutdown_all(&nets).await;
}

#[tokio::test]
async fn tcp_garbage_greylists_the_ip() {
    let target = tcp_node(1).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", target.listening_port().unwrap()))
        .await
        .unwrap();
    s.write_all(b"\x00\x0aHello, world. This is garbage, greylist me !")
        .await
        .unwrap();
    eventually("greylisted", || {
        target.with_acl(|a| a.is_greylisted_addr(ip(1)))
    })
    .await;
    let mut s2 = tokio::net::TcpStream::connect(("127.0.0.1", target.listening_port().unwrap()))
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s2.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
    target.shutdown().await;
}

/// `disconnect` returns only once the `on_disconnection` hooks have run,
/// even when the answerer's teardown runs on another worker thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_returns_after_the_disconnection_hooks() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node(&mem, 2).await;
    let gone = Arc::new(AtomicUsize::new(0));
    let g2 = gone.clone();
    a.on_disconnection(move |_| {
        std::thread::sleep(Duration::from_millis(2));
        g2.fetch_add(1, Ordering::SeqCst);
    });
    for round in 1..=20 {
        let c = connect_retry(&a, 2).await;
        a.disconnect(&c, true, "test").await;
        assert_eq!(gone.load(Ordering::SeqCst), round);
        assert!(c.is_closed());
    }
    shutdown_all(&[a, b]).await;
}

/// Two peers dialling each other at the same instant, once each, end with
/// one connection: the one the smaller peer id opened (Octez refuses the
/// incoming side on both ends, so neither attempt succeeds).
#[tokio::test(start_paused = true)]
async fn simultaneous_dial_without_retry_keeps_the_smaller_ids_connection() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node(&mem, 2).await;
    let (ra, rb) = tokio::join!(a.connect(point(2)), b.connect(point(1)));
    assert_eq!(
        usize::from(ra.is_ok()) + usize::from(rb.is_ok()),
        1,
        "{ra:?} / {rb:?}"
    );
    let smaller_dialled_ok = if a.peer_id() < b.peer_id() {
        ra.is_ok()
    } else {
        rb.is_ok()
    };
    assert!(smaller_dialled_ok, "{ra:?} / {rb:?}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(a.active_connections(), 1);
    assert_eq!(b.active_connections(), 1);
    assert_exchange(&a, &b).await;
    shutdown_all(&[a, b]).await;
}

/// `Net::set_expected_peer_id`: pinning a point another peer runs on
/// greylists that peer's address and disconnects it; pinning it to the peer
/// running there, or an unknown point, changes nothing else.
#[tokio::test(start_paused = true)]
async fn pinning_a_point_to_another_peer_greylists_and_disconnects_the_one_there() {
    let mem = MemoryNetwork::new();
    let a = node(&mem, 1).await;
    let b = node(&mem, 2).await;
    let conn = connect_retry(&a, 2).await;
    // The right peer: nothing happens.
    a.set_expected_peer_id(point(2), peer_id(2)).await;
    assert!(!conn.is_closed());
    assert!(a.with_acl(|acl| acl.greylisted_ips()).ips.is_empty());
    // An unknown point: nothing happens either.
    a.set_expected_peer_id(point(9), peer_id(9)).await;
    assert!(a.with_acl(|acl| acl.greylisted_ips()).ips.is_empty());
    // Another peer: B's address is greylisted and B disconnected.
    a.set_expected_peer_id(point(2), peer_id(3)).await;
    assert!(conn.is_closed());
    assert!(a.find_connection_by_peer_id(&peer_id(2)).is_none());
    assert_eq!(a.with_acl(|acl| acl.greylisted_ips()).ips, vec![ip(2)]);
    a.shutdown().await;
    b.shutdown().await;
}

/// Every registration announces itself (Octez's `register_point` and
/// `register_peer`): `NewPoint`/`NewPeer` for what is new, `GcPoints` and
/// `GcPeerIds` when the registration ran the table's GC — also for the
/// points and peers an operator trusts by hand.
#[tokio::test(start_paused = true)]
async fn registrations_log_new_entries_and_gc_runs() {
    let mem = MemoryNetwork::new();
    let net = node_with(&mem, 1, |_, l| {
        l.max_known_points = Some((2, 1));
        l.max_known_peer_ids = Some((2, 1));
    })
    .await;
    let mut rx = net.events();
    net.trust_point(point(10));
    net.trust_point(point(11));
    net.trust_point(point(10)); // known: nothing new
    assert_eq!(
        drain_events(&mut rx),
        vec![
            P2pEvent::NewPoint { point: point(10) },
            P2pEvent::NewPoint { point: point(11) },
        ]
    );
    // The table is at its maximum: the next new point runs the GC first
    // (which removes nothing here, every point being trusted).
    net.trust_point(point(12));
    assert_eq!(
        drain_events(&mut rx),
        vec![P2pEvent::GcPoints, P2pEvent::NewPoint { point: point(12) }]
    );
    net.trust_peer(peer_id(20));
    net.set_peer_metadata(peer_id(21), ());
    net.set_peer_metadata(peer_id(21), ());
    net.trust_peer(peer_id(22));
    assert_eq!(
        drain_events(&mut rx),
        vec![
            P2pEvent::NewPeer {
                peer_id: peer_id(20)
            },
            P2pEvent::NewPeer {
                peer_id: peer_id(21)
            },
            P2pEvent::GcPeerIds,
            P2pEvent::NewPeer {
                peer_id: peer_id(22)
            },
        ]
    );
    // The counts are exact, subscriber or not.
    let count = |e: P2pEvent| net.event_count(e.kind());
    assert_eq!(count(P2pEvent::NewPoint { point: point(0) }), 3);
    assert_eq!(count(P2pEvent::GcPoints), 1);
    assert_eq!(
        count(P2pEvent::NewPeer {
            peer_id: peer_id(0)
        }),
        3
    );
    assert_eq!(count(P2pEvent::GcPeerIds), 1);
    // A subscriber that falls 1 024 events behind loses some; the counts
    // do not.
    let lagging = net.events();
    for i in 0..1100u16 {
        net.trust_point(Point::new(ip(1), 10_000 + i));
    }
    assert_eq!(count(P2pEvent::NewPoint { point: point(0) }), 3 + 1100);
    drop(lagging);
    net.shutdown().await;
}

/// `activate` starts the pool: before it, `connect` fails at once with
/// `NotActivated` (and registers nothing), `maintain` returns at once, and
/// a peer dialing the pool gets no handshake (its attempt times out, the
/// listening socket being bound at `create`, as in Octez). Once activated
/// the same calls work, and activating again changes nothing.
#[tokio::test(start_paused = true)]
async fn connect_before_activate_fails_at_once() {
    let mem = MemoryNetwork::new();
    let a: TestNet = Net::create(config(&mem, 1), limits()).await.unwrap();
    let b: TestNet = Net::create(config(&mem, 2), limits()).await.unwrap();
    let mut with_maintenance = limits();
    with_maintenance.maintenance_idle_time = Some(Duration::from_secs(60));
    let c: TestNet = Net::create(config(&mem, 3), with_maintenance)
        .await
        .unwrap();
    assert!(!a.is_activated() && !b.is_activated());
    assert_eq!(b.listening_port(), Some(PORT));

    // Before `activate`: an immediate, clear error, the point untouched.
    let started = tokio::time::Instant::now();
    let e = a.connect(point(2)).await.unwrap_err();
    assert!(matches!(e, NetError::NotActivated), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the pool is not activated: call Net::activate first"
    );
    let e = a
        .connect_with(point(2), tezos_p2p::ConnectOptions::default().trusted())
        .await
        .unwrap_err();
    assert!(matches!(e, NetError::NotActivated), "{e:?}");
    assert!(a.with_tables(|t| !t.known_points.contains_key(&point(2))));
    // No maintenance worker to wait for: `maintain` returns.
    c.maintain().await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    c.shutdown().await;

    // A activated, B not: B's socket is bound but nobody answers, A's
    // attempt ends with its timeout.
    a.activate();
    assert!(a.is_activated());
    let e = a
        .connect_with(
            point(2),
            tezos_p2p::ConnectOptions::default().timeout(Duration::from_secs(3)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, NetError::Timeout), "{e:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(b.active_connections(), 0);

    // Both activated (twice: the second call does nothing): it connects.
    b.activate();
    b.activate();
    let conn = a.connect(point(2)).await.unwrap();
    assert_eq!(conn.peer_id(), peer_id(2));
    a.send(&conn, ping()).await.unwrap();
    let (from, _, msg) = b.recv_any().await;
    assert_eq!((from.peer_id(), msg), (peer_id(1), ping()));
    a.shutdown().await;
    b.shutdown().await;
}
