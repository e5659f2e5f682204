//! Pieces shared by `bench_socket` and the benchmark crate in `bench/`
//! (which includes this file with `#[path]`): the counting allocator, our
//! connection setup, the handshake server loop, the throughput writer, the
//! `open_chunk` rate and a few readings from /proc.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use tezos_p2p::scheduler::IoScheduler;
use tezos_p2p::socket::{authenticate, AcceptOptions, AuthConfig, Connection};
use tezos_p2p::transport::{BoxStream, Listener, TcpOptions, Transport};
use tezos_p2p::wire::crypto::{ChunkCipher, Nonce, SessionKey, MAX_CHUNK_PLAINTEXT};
use tezos_p2p::wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
use tezos_p2p::wire::message::{OctezMetadata, P2pMessage, RawMessage};
use tezos_p2p::wire::version::{ChainName, NetworkVersion};

// ---------------------------------------------------------------------------
// Counting allocator: live bytes, counted only while `COUNTING` is on so that
// the other benchmarks do not pay for a contended atomic on every allocation.

pub struct Counting;

pub static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

pub fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------
// Machine state.

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
pub fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<i64> = after
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // utime and stime (fields 14 and 15; the numeric fields after the
    // name and the state start at field 4).
    f.get(10)
        .zip(f.get(11))
        .map_or(0.0, |(u, s)| (u + s) as f64 / 100.0)
}

/// RLIMIT_NOFILE as "soft/hard", from /proc/self/limits.
pub fn nofile_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| {
                    l.split_whitespace()
                        .skip(3)
                        .take(2)
                        .collect::<Vec<_>>()
                        .join("/")
                })
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Our stack: identities, configuration, session setup.

pub type Conn = Connection<RawMessage, OctezMetadata>;

pub fn identity(seed: u8) -> Arc<Identity> {
    Arc::new(Identity::from_secret_key(
        SecretKey([seed; 32]),
        PowStamp([seed; 24]),
    ))
}

pub fn auth_cfg(
    id: &Arc<Identity>,
    incoming: bool,
    remote_addr: SocketAddr,
) -> AuthConfig<OctezMetadata> {
    AuthConfig {
        identity: id.clone(),
        pow_target: PowTarget::new(0.0).unwrap(),
        incoming,
        remote_addr,
        listening_port: Some(9732),
        version: NetworkVersion {
            chain_name: ChainName::from("TEZOS_BENCH"),
            distributed_db_version: 2,
            p2p_version: 1,
        },
        metadata: OctezMetadata::default(),
        cancel: CancellationToken::new(),
        timeout: Some(Duration::from_secs(30)),
    }
}

pub fn transport() -> Transport {
    Transport::Tcp(TcpOptions::octez())
}

pub fn raw(body_len: usize) -> P2pMessage<RawMessage> {
    P2pMessage::Message(RawMessage {
        tag: 0x10,
        body: (0..body_len).map(|i| i as u8).collect(),
    })
}

/// Client side of one full session setup: connect, authenticate, accept.
pub async fn ours_dial(
    t: &Transport,
    sched: &IoScheduler,
    id: &Arc<Identity>,
    saddr: SocketAddr,
) -> Result<Conn, String> {
    let stream = t.connect(saddr).await.map_err(|e| e.to_string())?;
    let (_, a) = authenticate(stream, sched.register(), auth_cfg(id, false, saddr))
        .await
        .map_err(|e| e.to_string())?;
    a.accept(AcceptOptions::default())
        .await
        .map_err(|e| e.to_string())
}

/// Server side of one session setup on an accepted stream.
pub async fn ours_serve(
    stream: BoxStream,
    caddr: SocketAddr,
    sched: &IoScheduler,
    id: &Arc<Identity>,
) -> Result<Conn, String> {
    let (_, a) = authenticate(stream, sched.register(), auth_cfg(id, true, caddr))
        .await
        .map_err(|e| e.to_string())?;
    a.accept(AcceptOptions::default())
        .await
        .map_err(|e| e.to_string())
}

/// The server of the handshake benchmarks: accepts sessions on `listener`
/// until aborted, each one held until the client closes it. Returns the
/// task and the count of failed accepts and setups.
pub fn spawn_handshake_server(
    listener: Listener,
    sched: IoScheduler,
    sid: Arc<Identity>,
) -> (JoinHandle<()>, Arc<AtomicU64>) {
    let server_errors = Arc::new(AtomicU64::new(0));
    let server = tokio::spawn({
        let server_errors = server_errors.clone();
        async move {
            loop {
                let Ok((stream, caddr)) = listener.accept().await else {
                    server_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let sched = sched.clone();
                let sid = sid.clone();
                let server_errors = server_errors.clone();
                tokio::spawn(async move {
                    match ours_serve(stream, caddr, &sched, &sid).await {
                        Ok(c) => {
                            c.closed().await;
                            c.close(false).await;
                        }
                        Err(_) => {
                            server_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        }
    });
    (server, server_errors)
}

/// Runs `conc` client tasks, each calling `session` in a loop until
/// `deadline`, and returns the sessions that succeeded and failed.
pub async fn run_clients<F, Fut>(conc: usize, deadline: Instant, session: F) -> (u64, u64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let mut clients = Vec::new();
    for _ in 0..conc {
        let session = session.clone();
        clients.push(tokio::spawn(async move {
            let (mut ok, mut err) = (0u64, 0u64);
            while Instant::now() < deadline {
                match session().await {
                    Ok(()) => ok += 1,
                    Err(_) => err += 1,
                }
            }
            (ok, err)
        }));
    }
    let (mut ok, mut err) = (0, 0);
    for c in clients {
        let (o, e) = c.await.unwrap();
        ok += o;
        err += e;
    }
    (ok, err)
}

// ---------------------------------------------------------------------------
// Throughput.

/// Writes `msg` on `c` in a loop until `stop` is set or the connection
/// fails: encoded once and queued with `write_encoded` (a `Bytes` clone)
/// with `pre_encoded`, otherwise encoded by each `write`.
pub fn spawn_writer(
    c: Conn,
    msg: P2pMessage<RawMessage>,
    pre_encoded: bool,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if pre_encoded {
            let bytes = Conn::encode(&msg).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if c.write_encoded(bytes.clone()).await.is_err() {
                    break;
                }
            }
        } else {
            while !stop.load(Ordering::Relaxed) {
                if c.write(&msg).await.is_err() {
                    break;
                }
            }
        }
    })
}

/// Plaintext bytes/s of `open_chunk` on `plain`-sized chunks under `key`:
/// 64 chunks sealed once, reopened from a fresh copy each round while
/// `more(chunks opened so far)` holds; only the `open_chunk` calls are
/// timed.
pub fn open_rate(key: &SessionKey, plain: &[u8], mut more: impl FnMut(u64) -> bool) -> f64 {
    const K: usize = 64;
    let mut sealer = ChunkCipher::new(key.clone(), Nonce([0; 24]));
    let mut sealed = Vec::new();
    for _ in 0..K {
        sealer.seal_chunk(plain, &mut sealed).unwrap();
    }
    let chunk = MAX_CHUNK_PLAINTEXT + 18;
    let mut work = sealed.clone();
    let mut timed = Duration::ZERO;
    let mut n = 0u64;
    while more(n) {
        work.copy_from_slice(&sealed);
        let mut opener = ChunkCipher::new(key.clone(), Nonce([0; 24]));
        let t = Instant::now();
        for i in 0..K {
            let body = &mut work[i * chunk + 2..(i + 1) * chunk];
            black_box(opener.open_chunk(body).unwrap());
        }
        timed += t.elapsed();
        n += K as u64;
    }
    (n * MAX_CHUNK_PLAINTEXT as u64) as f64 / timed.as_secs_f64()
}

/// Plaintext bytes/s of the bare pipeline every implementation needs:
/// one OS thread seals 65 517-byte chunks and writes them four at a time
/// (256 KiB) to a blocking loopback TCP socket, another reads (256 KiB at a
/// time) and opens them in place. No runtime, queues, framing or
/// scheduler: the practical ceiling of an encrypted connection on this
/// machine, with the CPU it keeps busy. Runs until `volume` plaintext
/// bytes or `secs` seconds, whichever comes first.
pub fn pipeline_ceiling(volume: u64, secs: f64) -> (f64, f64) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut tx = std::net::TcpStream::connect(addr).unwrap();
    let (mut rx, _) = listener.accept().unwrap();
    tx.set_nodelay(true).unwrap();
    let key = SessionKey([7; 32]);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = std::thread::spawn({
        let (key, stop) = (key.clone(), stop.clone());
        move || {
            let plain = vec![0x33u8; MAX_CHUNK_PLAINTEXT];
            let mut cipher = ChunkCipher::new(key, Nonce([0; 24]));
            let mut out = Vec::with_capacity(4 * (MAX_CHUNK_PLAINTEXT + 18));
            while !stop.load(Ordering::Relaxed) {
                out.clear();
                for _ in 0..4 {
                    cipher.seal_chunk(&plain, &mut out).unwrap();
                }
                if tx.write_all(&out).is_err() {
                    break;
                }
            }
        }
    });
    let mut cipher = ChunkCipher::new(key, Nonce([0; 24]));
    let mut buf = vec![0u8; 256 << 10];
    let (mut filled, mut opened) = (0usize, 0u64);
    let mut start = None;
    let mut cpu0 = 0.0;
    loop {
        let n = rx.read(&mut buf[filled..]).unwrap();
        assert!(n > 0, "sender hung up");
        filled += n;
        let mut off = 0;
        while filled - off >= 2 {
            let body = usize::from(u16::from_be_bytes([buf[off], buf[off + 1]]));
            if filled - off < 2 + body {
                break;
            }
            black_box(
                cipher
                    .open_chunk(&mut buf[off + 2..off + 2 + body])
                    .unwrap(),
            );
            off += 2 + body;
            opened += (body - 16) as u64;
        }
        buf.copy_within(off..filled, 0);
        filled -= off;
        let t0 = *start.get_or_insert_with(|| {
            cpu0 = cpu_secs();
            opened = 0;
            Instant::now()
        });
        if opened >= volume || t0.elapsed().as_secs_f64() >= secs {
            break;
        }
    }
    let t = start.unwrap().elapsed().as_secs_f64();
    let cpu = (cpu_secs() - cpu0) / t;
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    sender.join().unwrap();
    (opened as f64 / t, cpu)
}
