//! Fair admission of incoming connections: handshakes in progress are
//! limited per source address (an IPv4 address, an IPv6 /64) as well as in
//! all, so that one address, flooding at any rate, cannot keep peers on
//! other addresses out. In memory, on paused (virtual) time.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tezos_p2p::limits::Limits;
use tezos_p2p::transport::{BoxStream, MemoryNetwork, Transport};
use tezos_p2p::wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
use tezos_p2p::wire::message::{OctezMetadata, RawMessage};
use tezos_p2p::wire::point::Point;
use tezos_p2p::wire::version::{ChainName, SupportedVersions};
use tezos_p2p::{Config, Net};

type TestNet = Net<RawMessage, OctezMetadata, ()>;

const PORT: u16 = 9732;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn identity(seed: u8) -> Arc<Identity> {
    Arc::new(Identity::from_secret_key(
        SecretKey([seed; 32]),
        PowStamp([0; 24]),
    ))
}

/// Octez's incoming limits (20 in all, and our default per source); no
/// maintenance, room for the honest peers' connections.
fn limits() -> Limits {
    {
        let mut limits = Limits::default();
        limits.maintenance_idle_time = None;
        limits.min_connections = 0;
        limits.expected_connections = 20;
        limits.max_connections = 40;
        limits.backlog = 64;
        limits
    }
}

async fn node_with(mem: &MemoryNetwork, at: IpAddr, seed: u8, limits: Limits) -> TestNet {
    let config = {
        let mut config = Config::new(
            identity(seed),
            SupportedVersions::octez(ChainName::from("TEST")),
        );
        config.listening_addr = Some(SocketAddr::new(at, PORT));
        config.proof_of_work_target = PowTarget::new(0.0).unwrap();
        config.transport = Transport::Memory(mem.with_local_ip(at));
        config.seed = Some(u64::from(seed));
        config
    };
    let net = Net::create(config, limits).await.unwrap();
    net.activate();
    net
}

async fn node(mem: &MemoryNetwork, at: IpAddr, seed: u8) -> TestNet {
    node_with(mem, at, seed, limits()).await
}

/// Polls `cond` until it holds (at most 60 s of virtual time).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A raw connection from `from` to `to` that never speaks.
async fn silent(mem: &MemoryNetwork, from: IpAddr, to: Point) -> BoxStream {
    Transport::Memory(mem.with_local_ip(from))
        .connect(to.to_socket_addr())
        .await
        .unwrap()
}

/// Reads from a connection the node refused: it must end at once (no
/// virtual time passes) without a byte (no handshake was started: the node
/// would have sent its connection message).
async fn assert_refused_at_once(mut s: BoxStream) {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "the node started a handshake");
    assert_eq!(start.elapsed(), Duration::ZERO, "not refused at once");
}

/// Reads the first bytes of the node's connection message: the handshake
/// was started.
async fn assert_handshake_started(s: &mut BoxStream) {
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).await.expect("a connection message");
}

/// N handshakes stuck from one address: a further one from it is closed
/// at once, before any handshake work and without greylisting, while a
/// peer on another address completes its handshake; when the stuck ones
/// time out, the address may connect again and the table is empty.
#[tokio::test(start_paused = true)]
async fn a_source_over_its_limit_is_refused_at_once_while_others_connect() {
    let mem = MemoryNetwork::new();
    let target_ip = ip("10.0.0.1");
    let target = node(&mem, target_ip, 1).await;
    let to = Point::new(target_ip, PORT);
    let per_ip = target.limits().max_incoming_connections_per_ip;
    assert_eq!(per_ip, 4, "the documented default");
    let flood = ip("10.66.0.1");
    let mut stuck = Vec::new();
    for _ in 0..per_ip {
        let mut s = silent(&mem, flood, to).await;
        assert_handshake_started(&mut s).await;
        stuck.push(s);
    }
    assert_eq!(target.incoming_handshakes_from(flood), per_ip);
    assert_refused_at_once(silent(&mem, flood, to).await).await;
    // The same address, IPv4-mapped, is the same source.
    assert_refused_at_once(silent(&mem, ip("::ffff:10.66.0.1"), to).await).await;
    assert!(
        !target.with_acl(|a| a.banned_addr(flood)),
        "no greylisting for this"
    );

    let honest = node(&mem, ip("10.0.0.2"), 2).await;
    let start = Instant::now();
    let conn = honest.connect(to).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(conn.peer_id(), target.peer_id());
    assert_eq!(
        target.incoming_handshakes_from(flood),
        per_ip,
        "still stuck"
    );

    // The stuck handshakes time out (5 s): the address is welcome again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(target.incoming_handshakes(), 0);
    assert_eq!(target.incoming_handshake_sources(), 0);
    let mut again = silent(&mem, flood, to).await;
    assert_handshake_started(&mut again).await;
    drop((stuck, again));
    honest.shutdown().await;
    target.shutdown().await;
}

/// IPv6 addresses of one /64 share a count; another /64 has its own.
#[tokio::test(start_paused = true)]
async fn ipv6_addresses_share_the_limit_per_slash_64() {
    let mem = MemoryNetwork::new();
    let target_ip = ip("2001:db8:ff::1");
    let target = node(&mem, target_ip, 1).await;
    let to = Point::new(target_ip, PORT);
    let mut stuck = Vec::new();
    for i in 1..=4 {
        let from = ip(&format!("2001:db8:1:2::{i}"));
        let mut s = silent(&mem, from, to).await;
        assert_handshake_started(&mut s).await;
        stuck.push(s);
    }
    assert_eq!(
        target.incoming_handshakes_from(ip("2001:db8:1:2:ffff::99")),
        4
    );
    assert_eq!(target.incoming_handshake_sources(), 1);
    // Another address of the same /64: refused.
    assert_refused_at_once(silent(&mem, ip("2001:db8:1:2:abcd::5"), to).await).await;
    // Another /64 (next to it): a stuck handshake is admitted, and a peer
    // there connects.
    let mut other = silent(&mem, ip("2001:db8:1:3::1"), to).await;
    assert_handshake_started(&mut other).await;
    assert_eq!(target.incoming_handshake_sources(), 2);
    let honest = node(&mem, ip("2001:db8:1:3::2"), 2).await;
    honest.connect(to).await.unwrap();
    drop((stuck, other));
    eventually("the table empties", || {
        target.incoming_handshakes() == 0 && target.incoming_handshake_sources() == 0
    })
    .await;
    honest.shutdown().await;
    target.shutdown().await;
}

/// What a flood from one address let through.
struct FloodOutcome {
    honest_attempts: usize,
    honest_successes: usize,
    flood_connects: usize,
}

/// `flooders` sockets from one address, each reopened as soon as the node
/// closes it (2 or 20 ms of virtual time later), half silent, half sending
/// the start of a connection message and stalling; meanwhile 12 honest
/// peers on other addresses each connect, disconnect and connect again,
/// over several authentication timeouts. Then the flood stops and the
/// node's count of handshakes must come back to 0 with an empty table.
async fn flood(per_ip: usize, flooders: usize) -> FloodOutcome {
    let mem = MemoryNetwork::new();
    let target_ip = ip("10.0.0.1");
    let target = node_with(&mem, target_ip, 1, {
        let mut limits = limits();
        limits.max_incoming_connections_per_ip = per_ip;
        limits
    })
    .await;
    let to = Point::new(target_ip, PORT);
    let flood_ip = ip("10.66.0.1");
    let stop = CancellationToken::new();
    let connects = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for f in 0..flooders {
        let (mem, stop, connects) = (mem.clone(), stop.clone(), connects.clone());
        tasks.push(tokio::spawn(async move {
            let transport = Transport::Memory(mem.with_local_ip(flood_ip));
            let pause = Duration::from_millis(if f % 2 == 0 { 2 } else { 20 });
            while !stop.is_cancelled() {
                if let Ok(mut s) = transport.connect(to.to_socket_addr()).await {
                    connects.fetch_add(1, Ordering::Relaxed);
                    if f % 4 == 1 {
                        // A connection message of 128 bytes, never sent.
                        let _ = s.write_all(&[0, 128, 1, 2]).await;
                    }
                    let mut sink = [0u8; 256];
                    loop {
                        tokio::select! {
                            r = s.read(&mut sink) => if !matches!(r, Ok(n) if n > 0) { break },
                            _ = stop.cancelled() => break,
                        }
                    }
                }
                tokio::time::sleep(pause).await;
            }
        }));
    }
    eventually("the flood holds its slots", || {
        target.incoming_handshakes_from(flood_ip) == per_ip.min(20)
    })
    .await;

    let mut honest = Vec::new();
    for i in 0..12u8 {
        honest.push(node(&mem, ip(&format!("10.0.1.{}", i + 1)), 10 + i).await);
    }
    let (mut attempts, mut successes) = (0, 0);
    for _round in 0..3 {
        let tries: Vec<_> = honest
            .iter()
            .map(|h| {
                let h = h.clone();
                tokio::spawn(async move {
                    match h
                        .connect_with(
                            to,
                            tezos_p2p::ConnectOptions::default().timeout(Duration::from_secs(2)),
                        )
                        .await
                    {
                        Ok(conn) => {
                            h.disconnect(&conn, false, "next round").await;
                            true
                        }
                        Err(_) => false,
                    }
                })
            })
            .collect();
        for t in tries {
            attempts += 1;
            successes += usize::from(t.await.unwrap());
        }
        // Let the flood's handshakes time out and be reopened.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert!(
        !target.with_acl(|a| a.banned_addr(flood_ip)),
        "the flooding address is not greylisted"
    );

    stop.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    eventually("no handshake left, an empty table", || {
        target.incoming_handshakes() == 0 && target.incoming_handshake_sources() == 0
    })
    .await;
    for h in &honest {
        h.shutdown().await;
    }
    target.shutdown().await;
    eprintln!(
        "per-source limit {per_ip}: {successes}/{attempts} honest handshakes, {} flood connects",
        connects.load(Ordering::Relaxed)
    );
    FloodOutcome {
        honest_attempts: attempts,
        honest_successes: successes,
        flood_connects: connects.load(Ordering::Relaxed),
    }
}

/// The scenario, in memory: a flood from one address, reconnecting
/// as fast as it is closed, and every honest attempt from other addresses
/// completes its handshake (with the default per-source limit); the count
/// of handshakes in progress and the per-source table return to empty.
#[tokio::test(start_paused = true)]
async fn a_flood_from_one_address_leaves_other_addresses_able_to_connect() {
    let outcome = flood(Limits::default().max_incoming_connections_per_ip, 20).await;
    assert_eq!(outcome.honest_attempts, 36);
    assert_eq!(
        outcome.honest_successes, outcome.honest_attempts,
        "every honest peer connects"
    );
    assert!(
        outcome.flood_connects > 1000,
        "the flood was one ({} connects)",
        outcome.flood_connects
    );
}

/// The control: without a per-source limit (one source may take all 20
/// slots, as in Octez) the same flood keeps the honest peers out. This is
/// what the limit fixes, and shows the flood test can fail.
#[tokio::test(start_paused = true)]
async fn without_a_per_source_limit_the_same_flood_keeps_others_out() {
    let outcome = flood(20, 20).await;
    assert!(
        outcome.honest_successes * 4 < outcome.honest_attempts,
        "{} of {} honest attempts succeeded",
        outcome.honest_successes,
        outcome.honest_attempts
    );
}
