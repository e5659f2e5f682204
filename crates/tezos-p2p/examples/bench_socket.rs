//! Benchmarks of the socket layer over loopback TCP: bulk throughput,
//! handshake rate and memory per idle connection.
//!
//! ```text
//! cargo run --release -p tezos-p2p --example bench_socket -- [throughput|handshake|memory|all] [seconds]
//! ```
//!
//! `seconds` (default 3) is the length of each timed measurement. The
//! memory benchmark opens 1 000 connection pairs (4 000 file descriptors
//! counting the listener's side): raise `ulimit -n` if it is below ~4 200.
//! `BENCH_CONNS` overrides the number of pairs.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};
use tezos_p2p::socket::{authenticate, AcceptOptions, AuthenticatedConnection};
use tezos_p2p::transport::{BoxStream, Transport};
use tezos_p2p::wire::crypto::{ChunkCipher, Nonce, SessionKey, MAX_CHUNK_PLAINTEXT};
use tezos_p2p::wire::identity::Identity;
use tezos_p2p::wire::message::{OctezMetadata, P2pMessage, RawMessage};

mod support;
use support::*;

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------
// Setup, as in tests/socket.rs.

type Auth = AuthenticatedConnection<OctezMetadata>;

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

/// A connected pair of TCP streams: (client, server, client's address,
/// server's address).
async fn tcp_pair(
    transport: &Transport,
    listener: &tezos_p2p::transport::Listener,
) -> (BoxStream, BoxStream, SocketAddr, SocketAddr) {
    let server_addr = listener.local_addr();
    let (client, accepted) = tokio::join!(transport.connect(server_addr), listener.accept());
    let (server, client_addr) = accepted.unwrap();
    (client.unwrap(), server, client_addr, server_addr)
}

async fn auth_pair(
    sched: &IoScheduler,
    ids: &(Arc<Identity>, Arc<Identity>),
    (c, s, caddr, saddr): (BoxStream, BoxStream, SocketAddr, SocketAddr),
) -> (Auth, Auth) {
    let (c, s) = tokio::join!(
        authenticate(c, sched.register(), auth_cfg(&ids.0, false, saddr)),
        authenticate(s, sched.register(), auth_cfg(&ids.1, true, caddr))
    );
    (c.unwrap().1, s.unwrap().1)
}

async fn accept_pair((c, s): (Auth, Auth)) -> (Conn, Conn) {
    let (c, s) = tokio::join!(
        c.accept(AcceptOptions::default()),
        s.accept(AcceptOptions::default())
    );
    (c.unwrap(), s.unwrap())
}

async fn connected_pair(sched: &IoScheduler) -> (Conn, Conn) {
    let t = transport();
    let listener = t.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let ids = (identity(1), identity(2));
    let p = tcp_pair(&t, &listener).await;
    accept_pair(auth_pair(sched, &ids, p).await).await
}

// ---------------------------------------------------------------------------
// Throughput.

/// Bytes/s and messages/s of `msg` sent from one end of an authenticated
/// connection to the other, for `secs` or 2 GiB, measured at the reader.
async fn ours(msg: P2pMessage<RawMessage>, secs: f64, pre_encoded: bool) -> (f64, f64) {
    let (b, m, cpu) = ours_cpu(msg, secs, pre_encoded).await;
    println!(
        "   (CPU {:.2} core-s per GiB, {:.2} cores busy)",
        cpu / (b / GIB),
        cpu
    );
    (b, m)
}

/// As [`ours`], plus the CPU cores the process kept busy meanwhile.
async fn ours_cpu(msg: P2pMessage<RawMessage>, secs: f64, pre_encoded: bool) -> (f64, f64, f64) {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let (c, s) = connected_pair(&sched).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(c.clone(), msg, pre_encoded, stop.clone());
    // Warm-up: the first message.
    s.read().await.unwrap();
    let start = Instant::now();
    let cpu0 = cpu_secs();
    let (mut bytes, mut msgs) = (0u64, 0u64);
    loop {
        let (size, m) = s.read().await.unwrap();
        black_box(m);
        bytes += size as u64;
        msgs += 1;
        if msgs % 64 == 0 && (start.elapsed().as_secs_f64() >= secs || bytes >= 2 << 30) {
            break;
        }
    }
    let t = start.elapsed().as_secs_f64();
    let cpu = (cpu_secs() - cpu0) / t;
    stop.store(true, Ordering::Relaxed);
    writer.abort();
    s.close(false).await;
    c.close(false).await;
    (bytes as f64 / t, msgs as f64 / t, cpu)
}

/// Bytes/s of plain tokio TCP over loopback with 1 MiB writes and reads.
async fn raw_tcp(secs: f64) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let (mut c, (mut s, _)) = (c.unwrap(), s.unwrap());
    c.set_nodelay(true).unwrap();
    s.set_nodelay(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let buf = vec![0x5au8; 1 << 20];
            while !stop.load(Ordering::Relaxed) {
                if c.write_all(&buf).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut buf = vec![0u8; 1 << 20];
    s.read_exact(&mut buf).await.unwrap();
    let start = Instant::now();
    let cpu0 = cpu_secs();
    let mut bytes = 0u64;
    let mut n = 0u64;
    loop {
        bytes += s.read(&mut buf).await.unwrap() as u64;
        n += 1;
        if n.is_multiple_of(16) && (start.elapsed().as_secs_f64() >= secs || bytes >= 2 << 30) {
            break;
        }
    }
    let t = start.elapsed().as_secs_f64();
    let cpu = (cpu_secs() - cpu0) / t;
    stop.store(true, Ordering::Relaxed);
    writer.abort();
    let rate = bytes as f64 / t;
    println!(
        "   (CPU {:.2} core-s per GiB, {:.2} cores busy)",
        cpu / (rate / GIB),
        cpu
    );
    rate
}

/// Plaintext bytes/s of `seal_chunk` and `open_chunk` on 65 517-byte
/// chunks, on one core.
fn seal_open(secs: f64) -> (f64, f64) {
    let key = SessionKey([7; 32]);
    let plain = vec![0x33u8; MAX_CHUNK_PLAINTEXT];
    let mut sealer = ChunkCipher::new(key.clone(), Nonce([0; 24]));
    let mut out = Vec::with_capacity(MAX_CHUNK_PLAINTEXT + 18);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..16 {
            out.clear();
            sealer.seal_chunk(&plain, &mut out).unwrap();
            black_box(&out);
        }
        n += 16;
    }
    let seal = (n * MAX_CHUNK_PLAINTEXT as u64) as f64 / start.elapsed().as_secs_f64();

    // Open, from when the timing loop starts.
    let mut wall = None;
    let open = open_rate(&key, &plain, |_| {
        wall.get_or_insert_with(Instant::now)
            .elapsed()
            .as_secs_f64()
            < secs
    });
    (seal, open)
}

async fn throughput(secs: f64) {
    println!("== throughput (loopback TCP, {secs} s per measurement) ==");
    println!("load average at start: {}", loadavg());
    let tcp = raw_tcp(secs).await;
    println!(
        "raw tokio TCP, 1 MiB write_all/read        : {:6.3} GiB/s",
        tcp / GIB
    );
    let (seal, open) = tokio::task::spawn_blocking(move || seal_open(secs))
        .await
        .unwrap();
    println!(
        "seal_chunk 65 517 B, 1 core                : {:6.3} GiB/s",
        seal / GIB
    );
    println!(
        "open_chunk 65 517 B, 1 core                : {:6.3} GiB/s",
        open / GIB
    );
    let (ceiling, ceiling_cpu) =
        tokio::task::spawn_blocking(move || pipeline_ceiling(u64::MAX, secs))
            .await
            .unwrap();
    println!(
        "   (CPU {:.2} core-s per GiB, {:.2} cores busy)",
        ceiling_cpu / (ceiling / GIB),
        ceiling_cpu
    );
    println!(
        "ceiling: seal -> TCP -> open, 2 threads    : {:6.3} GiB/s",
        ceiling / GIB
    );
    let (big, _) = ours(raw(1 << 20), secs, false).await;
    println!(
        "ours, 1 MiB RawMessage, write/read         : {:6.3} GiB/s",
        big / GIB
    );
    let (big_enc, _) = ours(raw(1 << 20), secs, true).await;
    println!(
        "ours, 1 MiB RawMessage, write_encoded/read : {:6.3} GiB/s",
        big_enc / GIB
    );
    let bound = tcp.min(seal).min(open);
    println!(
        "ratio ours(write) : raw TCP {:5.1} %, : seal {:5.1} %, : open {:5.1} %, : min(TCP, seal, open) {:5.1} % (goal >= 70 %)",
        100.0 * big / tcp,
        100.0 * big / seal,
        100.0 * big / open,
        100.0 * big / bound
    );
    println!(
        "ratio ceiling : min(TCP, seal, open) {:5.1} %; ours : ceiling {:5.1} %",
        100.0 * ceiling / bound,
        100.0 * big / ceiling
    );
    // 94-byte body: 100 bytes on the message layer (4 size + 2 tag + 94).
    let (small_b, small_m) = ours(raw(94), secs, false).await;
    println!(
        "ours, 100-byte messages, write/read        : {:8.0} msg/s  {:7.1} MiB/s",
        small_m,
        small_b / MIB
    );
    let (small_b, small_m) = ours(raw(94), secs, true).await;
    println!(
        "ours, 100-byte messages, write_encoded/read: {:8.0} msg/s  {:7.1} MiB/s",
        small_m,
        small_b / MIB
    );
}

// ---------------------------------------------------------------------------
// Handshakes.

/// Full sessions per second (connect, authenticate, accept on both sides,
/// close) with `conc` clients dialling in a loop.
async fn handshakes(conc: usize, secs: f64) -> (u64, u64, f64) {
    let t = transport();
    let listener = t
        .bind_with_backlog("127.0.0.1:0".parse().unwrap(), 1024)
        .await
        .unwrap();
    let saddr = listener.local_addr();
    let sched = IoScheduler::new(SchedulerConfig::default());
    let (cid, sid) = (identity(1), identity(2));
    let (server, server_errors) = spawn_handshake_server(listener, sched.clone(), sid);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let (ok, err) = run_clients(conc, deadline, move || {
        let (t, sched, cid) = (t.clone(), sched.clone(), cid.clone());
        async move {
            let c = ours_dial(&t, &sched, &cid, saddr).await?;
            c.close(false).await;
            Ok(())
        }
    })
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    server.abort();
    // Let the server-side tasks see the closes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (
        ok,
        err + server_errors.load(Ordering::Relaxed),
        ok as f64 / elapsed,
    )
}

async fn handshake(secs: f64) {
    println!("load average at start: {}", loadavg());
    println!("== handshake (PoW 0, loopback TCP, connect + authenticate + accept + close) ==");
    for conc in [1, 16] {
        let (ok, err, rate) = handshakes(conc, secs).await;
        println!(
            "concurrency {conc:2}: {rate:8.0} sessions/s  ({ok} sessions, {err} errors) (goal >= 5 000/s)"
        );
        // Give TIME_WAIT sockets and the runtime a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------------------------------------------------------------------------
// Memory.

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

async fn memory() {
    let n: usize = std::env::var("BENCH_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    println!("== memory ({n} idle authenticated connection pairs in one process; RLIMIT_NOFILE soft/hard {}) ==", nofile_limit());
    let t = transport();
    let listener = t
        .bind_with_backlog("127.0.0.1:0".parse().unwrap(), 1024)
        .await
        .unwrap();
    // BENCH_READ_BUF sets the scheduler's read_buffer_size (default 16 KiB),
    // to show how much of the idle footprint is the read buffer.
    let mut cfg = SchedulerConfig::default();
    if let Some(size) = std::env::var("BENCH_READ_BUF")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.read_buffer_size = size;
    }
    println!("scheduler read_buffer_size: {} B", cfg.read_buffer_size);
    let sched = IoScheduler::new(cfg);
    let ids = (identity(1), identity(2));
    let mut pairs = Vec::with_capacity(n);
    let mut auths = Vec::with_capacity(n);
    let mut conns: Vec<(Conn, Conn)> = Vec::with_capacity(n);
    tokio::time::sleep(Duration::from_millis(100)).await;
    COUNTING.store(true, Ordering::SeqCst);
    let (b0, fd0) = (live(), open_fds());

    for _ in 0..n {
        pairs.push(tcp_pair(&t, &listener).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (b1, fd1) = (live(), open_fds());

    let mut hs = Vec::with_capacity(n);
    for p in pairs.drain(..) {
        let sched = sched.clone();
        let ids = ids.clone();
        hs.push(tokio::spawn(
            async move { auth_pair(&sched, &ids, p).await },
        ));
    }
    for h in hs.drain(..) {
        auths.push(h.await.unwrap());
    }
    drop(hs);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b2 = live();

    let mut hs = Vec::with_capacity(n);
    for a in auths.drain(..) {
        hs.push(tokio::spawn(accept_pair(a)));
    }
    for h in hs.drain(..) {
        conns.push(h.await.unwrap());
    }
    drop(hs);
    // Let the readers and writers reach their idle state.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (b3, fd3) = (live(), open_fds());
    assert!(conns.iter().all(|(c, s)| !c.is_closed() && !s.is_closed()));
    let per = |a: isize, b: isize| (b - a) as f64 / (2 * n) as f64;
    println!("live heap bytes before             : {b0}");
    println!(
        "after {n} TCP pairs                : {:+} ({:.0} B per socket)",
        b1 - b0,
        per(b0, b1)
    );
    println!(
        "after authenticate (both ends)     : {:+} ({:.0} B per connection)",
        b2 - b0,
        per(b0, b2)
    );
    println!(
        "after accept, idle (both ends)     : {:+} ({:.0} B per connection)",
        b3 - b0,
        per(b0, b3)
    );
    println!(
        "=> idle authenticated connection   : {:.2} KiB per connection ((after - before) / {} connections = per pair / 2; goal <= 16 KiB)",
        per(b0, b3) / 1024.0,
        2 * n
    );
    println!(
        "   of which the Connection layer (accept: tasks, queues, buffers): {:.2} KiB per connection",
        per(b1, b3) / 1024.0
    );
    println!(
        "open fds: before {fd0}, after TCP {fd1}, idle connections {fd3} ({:.1} per pair)",
        (fd3 - fd0) as f64 / n as f64
    );
    for (c, s) in &conns {
        c.close(false).await;
        s.close(false).await;
    }
    COUNTING.store(false, Ordering::SeqCst);
}

// ---------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("all").to_owned();
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "bench_socket: {} worker threads, {secs} s per measurement",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    rt.block_on(async {
        match what.as_str() {
            "throughput" => throughput(secs).await,
            "handshake" => handshake(secs).await,
            "memory" => memory().await,
            // Single measurements, for profiling.
            "ours-big" => println!("{:.3} GiB/s", ours(raw(1 << 20), secs, false).await.0 / GIB),
            "ceiling" => {
                let (b, cpu) = pipeline_ceiling(u64::MAX, secs);
                println!("{:.3} GiB/s, {cpu:.2} cores busy", b / GIB)
            }
            "ours-small" => println!("{:.0} msg/s", ours(raw(94), secs, false).await.1),
            "handshake-1" => println!("{:.0}/s", handshakes(1, secs).await.2),
            "all" => {
                throughput(secs).await;
                handshake(secs).await;
                memory().await;
            }
            other => eprintln!(
                "unknown benchmark {other:?}: throughput|handshake|memory|all \
                 (single: ours-big|ours-small|handshake-1|ceiling)"
            ),
        }
    });
}
