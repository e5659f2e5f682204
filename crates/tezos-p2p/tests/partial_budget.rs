//! The pool's budget for partially received messages (issue 12, part 3):
//! peers announcing large messages and sending them slowly never make the
//! bytes reserved for them exceed `Limits::partial_message_budget`; a
//! connection over the budget stops reading and completes once others
//! finish; small messages on other connections keep flowing; everything
//! is given back when connections close, also by those waiting. In-memory
//! transport, on tokio's paused clock.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use tezos_p2p::limits::Limits;
use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};
use tezos_p2p::socket::{self, AcceptOptions, AuthConfig, Connection};
use tezos_p2p::transport::{MemoryNetwork, Transport};
use tezos_p2p::wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
use tezos_p2p::wire::message::{OctezMetadata, P2pMessage, RawMessage};
use tezos_p2p::wire::version::{ChainName, SupportedVersions};
use tezos_p2p::{Config, Net};

type TestNet = Net<RawMessage, OctezMetadata, ()>;
type RawConn = Connection<RawMessage, OctezMetadata>;

const PORT: u16 = 9732;
/// A guard against hangs (virtual time).
const HANG: Duration = Duration::from_secs(600);

fn identity(i: usize) -> Arc<Identity> {
    let mut sk = [9u8; 32];
    sk[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Arc::new(Identity::from_secret_key(SecretKey(sk), PowStamp([0; 24])))
}

fn versions() -> SupportedVersions {
    SupportedVersions::octez(ChainName::from("TEST"))
}

fn pool_at() -> IpAddr {
    IpAddr::from([10, 0, 0, 1])
}

async fn pool(mem: &MemoryNetwork, budget: usize) -> TestNet {
    let config = {
        let mut config = Config::new(identity(usize::MAX), versions());
        config.listening_addr = Some(SocketAddr::new(pool_at(), PORT));
        config.proof_of_work_target = PowTarget::new(0.0).unwrap();
        config.disable_peer_discovery = true;
        config.transport = Transport::Memory(mem.with_local_ip(pool_at()));
        config.seed = Some(1);
        config
    };
    let limits = {
        let mut limits = Limits::default();
        limits.maintenance_idle_time = None;
        limits.min_connections = 0;
        limits.expected_connections = 20;
        limits.max_connections = 40;
        limits.max_incoming_connections_per_ip = 20;
        limits.partial_message_budget = budget;
        limits
    };
    let net = Net::create(config, limits).await.unwrap();
    net.activate();
    net
}

/// A peer dialling the pool through the socket layer, so that it sends
/// what it likes (pieces of a message, when it likes).
async fn raw_peer(mem: &MemoryNetwork, i: usize, sched: &IoScheduler) -> RawConn {
    let target = SocketAddr::new(pool_at(), PORT);
    let stream = Transport::Memory(mem.with_local_ip(IpAddr::from([10, 1, 0, i as u8])))
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

/// `n` peers connected to `net` (waits until the pool runs them all).
async fn peers(net: &TestNet, mem: &MemoryNetwork, n: usize) -> Vec<RawConn> {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let mut out = Vec::new();
    for i in 0..n {
        out.push(raw_peer(mem, i, &sched).await);
    }
    tokio::time::timeout(HANG, async {
        while net.connections().len() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap();
    out
}

fn message(i: usize, len: usize) -> RawMessage {
    RawMessage {
        tag: 0x10,
        body: (0..len).map(|b| (b * 7 + i) as u8).collect(),
    }
}

fn encoded(m: &RawMessage) -> Bytes {
    RawConn::encode(&P2pMessage::Message(m.clone())).unwrap()
}

/// Sends `bytes[from..to]` in pieces of `piece` bytes, one every `every`.
async fn trickle(
    peer: &RawConn,
    bytes: &Bytes,
    from: usize,
    to: usize,
    piece: usize,
    every: Duration,
) {
    let mut at = from;
    while at < to {
        let end = (at + piece).min(to);
        peer.write_encoded(bytes.slice(at..end)).await.unwrap();
        at = end;
        tokio::time::sleep(every).await;
    }
}

/// Samples the pool's reserved bytes and waiting connections every
/// millisecond until stopped: (largest reserved, largest waiting).
fn watch(net: &TestNet) -> (Arc<AtomicBool>, tokio::task::JoinHandle<(usize, usize)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let (net, stop) = (net.clone(), stop.clone());
        async move {
            let (mut bytes, mut waiting) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                bytes = net.partial_message_bytes().max(bytes);
                waiting = net.partial_message_waiting().max(waiting);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (bytes, waiting)
        }
    });
    (stop, task)
}

async fn settle(net: &TestNet, what: &str, cond: impl Fn(&TestNet) -> bool) {
    tokio::time::timeout(HANG, async {
        while !cond(net) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never: {what}"));
}

/// Ten peers trickle 300 kB messages into a pool whose budget holds three:
/// the reserved total never exceeds the budget, some connections wait,
/// every message arrives whole, and the budget is empty at the end.
#[tokio::test(start_paused = true)]
async fn many_trickling_peers_stay_within_the_budget() {
    const N: usize = 10;
    const LEN: usize = 300_000;
    const BUDGET: usize = 1 << 20;
    let mem = MemoryNetwork::new();
    let net = pool(&mem, BUDGET).await;
    let peers = peers(&net, &mem, N).await;
    let (stop, watcher) = watch(&net);
    let mut senders = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        let (p, bytes) = (p.clone(), encoded(&message(i, LEN)));
        senders.push(tokio::spawn(async move {
            trickle(&p, &bytes, 0, bytes.len(), 8_000, Duration::from_millis(5)).await;
        }));
    }
    let mut got = [false; N];
    for _ in 0..N {
        let (from, _, m) = tokio::time::timeout(HANG, net.recv_any()).await.unwrap();
        let i = (0..N)
            .position(|i| identity(i).peer_id == from.peer_id())
            .unwrap();
        assert_eq!(m, message(i, LEN), "message of peer {i}");
        got[i] = true;
    }
    assert!(got.iter().all(|&g| g));
    for s in senders {
        s.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (max_bytes, max_waiting) = watcher.await.unwrap();
    assert!(max_bytes <= BUDGET, "{max_bytes} bytes reserved");
    assert!(max_bytes >= 3 * LEN, "the budget was used: {max_bytes}");
    assert!(max_waiting >= 1, "no connection ever waited");
    assert_eq!(net.partial_message_bytes(), 0);
    assert_eq!(net.partial_message_waiting(), 0);
    net.shutdown().await;
}

/// A peer holds room for a message it does not finish: a second peer's
/// large message waits (its connection reads nothing), small messages of a
/// third peer flow meanwhile; once the first finishes, the second's
/// message arrives too.
#[tokio::test(start_paused = true)]
async fn a_connection_over_budget_waits_and_small_messages_flow() {
    const BUDGET: usize = 200_000;
    let mem = MemoryNetwork::new();
    let net = pool(&mem, BUDGET).await;
    let p = peers(&net, &mem, 3).await;
    let (slow, waiting, small) = (&p[0], &p[1], &p[2]);
    let _ = waiting;
    let slow_msg = message(0, 150_000);
    let slow_bytes = encoded(&slow_msg);
    // 100 kB of 150 kB, then nothing.
    trickle(
        slow,
        &slow_bytes,
        0,
        100_000,
        10_000,
        Duration::from_millis(1),
    )
    .await;
    settle(&net, "room for the slow message", |n| {
        n.partial_message_bytes() == slow_bytes.len()
    })
    .await;
    // The second sends a whole 150 kB message: it waits for room.
    let waiting_msg = message(1, 150_000);
    let w = waiting.clone();
    let sent = tokio::spawn(async move {
        w.write(&P2pMessage::Message(waiting_msg.clone()))
            .await
            .unwrap();
    });
    settle(&net, "a connection waits", |n| {
        n.partial_message_waiting() == 1
    })
    .await;
    // Small messages of the third keep flowing, one by one.
    let arrived = Arc::new(AtomicUsize::new(0));
    for k in 0..20 {
        small
            .write(&P2pMessage::Message(message(100 + k, 1_000)))
            .await
            .unwrap();
        let (from, _, m) = tokio::time::timeout(Duration::from_secs(1), net.recv_any())
            .await
            .expect("a small message is held up");
        assert_eq!(from.peer_id(), identity(2).peer_id);
        assert_eq!(m, message(100 + k, 1_000));
        arrived.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(net.partial_message_waiting(), 1, "still waiting");
    assert!(net.partial_message_bytes() <= BUDGET);
    // The first finishes: both large messages arrive, the first first.
    trickle(
        slow,
        &slow_bytes,
        100_000,
        slow_bytes.len(),
        10_000,
        Duration::from_millis(1),
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let (from, _, m) = tokio::time::timeout(HANG, net.recv_any()).await.unwrap();
        got.push((from.peer_id(), m));
    }
    got.sort_by_key(|(_, m)| m.body[0]);
    assert_eq!(
        got,
        vec![
            (identity(0).peer_id, slow_msg),
            (identity(1).peer_id, message(1, 150_000))
        ]
    );
    sent.await.unwrap();
    assert_eq!(net.partial_message_bytes(), 0);
    assert_eq!(net.partial_message_waiting(), 0);
    net.shutdown().await;
}

/// Connections that hold room, and connections that wait for it, give it
/// all back when they close; a waiting connection then gets the room of a
/// holder that went away. (A waiting connection reads nothing, so it sees
/// its peer's close only when its turn comes; closed by the pool, it
/// leaves the line at once.)
#[tokio::test(start_paused = true)]
async fn closing_gives_everything_back() {
    const BUDGET: usize = 300_000;
    let mem = MemoryNetwork::new();
    let net = pool(&mem, BUDGET).await;
    let p = peers(&net, &mem, 6).await;
    // Each announces 200 kB and sends 90 kB of it: one holds room, the
    // others wait, in line.
    let msgs: Vec<Bytes> = (0..6).map(|i| encoded(&message(i, 200_000))).collect();
    for (peer, bytes) in p.iter().zip(&msgs) {
        trickle(peer, bytes, 0, 90_000, 30_000, Duration::from_millis(1)).await;
    }
    settle(&net, "one holds, five wait", |n| {
        n.partial_message_bytes() == msgs[0].len() && n.partial_message_waiting() == 5
    })
    .await;
    // The pool closes a waiting one: one fewer in line, nothing else
    // changes.
    let conn3 = net
        .find_connection_by_peer_id(&identity(3).peer_id)
        .unwrap();
    net.disconnect(&conn3, false, "test").await;
    settle(&net, "four wait", |n| n.partial_message_waiting() == 4).await;
    assert_eq!(net.partial_message_bytes(), msgs[0].len());
    // The holder goes: the next in line (peer 1) gets the room.
    p[0].close(false).await;
    settle(&net, "the next holds", |n| n.partial_message_waiting() == 3).await;
    assert_eq!(net.partial_message_bytes(), msgs[1].len());
    // It finishes; its message arrives; the next gets the room.
    trickle(
        &p[1],
        &msgs[1],
        90_000,
        msgs[1].len(),
        30_000,
        Duration::from_millis(1),
    )
    .await;
    let (from, _, m) = tokio::time::timeout(HANG, net.recv_any()).await.unwrap();
    assert_eq!(
        (from.peer_id(), m),
        (identity(1).peer_id, message(1, 200_000))
    );
    settle(&net, "peer 2 holds", |n| n.partial_message_waiting() == 2).await;
    // The others go: each waiting one sees its end when its turn comes,
    // and nothing is left reserved or waiting.
    for peer in [&p[2], &p[4], &p[5]] {
        peer.close(false).await;
    }
    settle(&net, "all given back", |n| {
        n.partial_message_bytes() == 0 && n.partial_message_waiting() == 0
    })
    .await;
    settle(&net, "no connection left", |n| n.connections().len() == 1).await;
    p[1].close(false).await;
    settle(&net, "none", |n| n.connections().is_empty()).await;
    assert_eq!(net.partial_message_bytes(), 0);
    net.shutdown().await;
}

/// A message larger than the whole budget is received alone, once nothing
/// else holds room.
#[tokio::test(start_paused = true)]
async fn a_message_larger_than_the_budget_arrives_alone() {
    const BUDGET: usize = 100_000;
    let mem = MemoryNetwork::new();
    let net = pool(&mem, BUDGET).await;
    let p = peers(&net, &mem, 2).await;
    let first = encoded(&message(0, 80_000));
    trickle(&p[0], &first, 0, 70_000, 10_000, Duration::from_millis(1)).await;
    settle(&net, "the first holds", |n| {
        n.partial_message_bytes() == first.len()
    })
    .await;
    let big = message(1, 300_000);
    let w = p[1].clone();
    let big2 = big.clone();
    let sent = tokio::spawn(async move { w.write(&P2pMessage::Message(big2)).await.unwrap() });
    settle(&net, "the big one waits", |n| {
        n.partial_message_waiting() == 1
    })
    .await;
    trickle(
        &p[0],
        &first,
        70_000,
        first.len(),
        10_000,
        Duration::from_millis(1),
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let (_, _, m) = tokio::time::timeout(HANG, net.recv_any()).await.unwrap();
        got.push(m);
    }
    got.sort_by_key(|m| m.body.len());
    assert_eq!(got, vec![message(0, 80_000), big]);
    sent.await.unwrap();
    assert_eq!(net.partial_message_bytes(), 0);
    net.shutdown().await;
}
