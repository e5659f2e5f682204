//! Memory per connection of a whole pool (issue 12): VmRSS and live heap
//! of the accepting side, idle, with N authenticated connections, and
//! after they all closed.
//!
//! ```text
//! cargo run --release -p tezos-p2p --example mem_conns -- node [N] [--bin PATH] [--conc C] [-- NODE_ARGS…]
//! cargo run --release -p tezos-p2p --example mem_conns -- pool [N] [--conc C]
//! ```
//!
//! * `node`: starts the node binary (default `target/release/tezos-p2p-node`)
//!   on octez-p2p-node's network with room for N connections and no
//!   maintenance, opens N honest connections to it from this process (each
//!   from its own address of 127.0.0.0/8, C handshakes at once, default
//!   16), and reads the node's VmRSS from /proc. `NODE_ARGS` are added to
//!   the node's command line.
//! * `pool`: the accepting side is a `Net` in this process (the counting
//!   allocator of `support` gives its live heap too); the clients run in a
//!   child process (`client` mode).
//!
//! Each reading is the median of five samples 100 ms apart. The clients
//! keep the connections idle (they read what the node sends and send
//! nothing). RLIMIT_NOFILE must exceed N plus a few dozens.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;

use tezos_p2p::limits::Limits;
use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};
use tezos_p2p::socket::{authenticate, AcceptOptions, AuthConfig, Connection};
use tezos_p2p::transport::{TcpOptions, Transport};
use tezos_p2p::wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
use tezos_p2p::wire::message::{OctezMetadata, RawMessage};
use tezos_p2p::wire::version::{ChainName, NetworkVersion, SupportedVersions};
use tezos_p2p::{Config, Net};

mod support;
use support::*;

#[global_allocator]
static GLOBAL: Counting = Counting;

type Client = Connection<RawMessage, OctezMetadata>;

const USAGE: &str =
    "usage: mem_conns node [N] [--bin PATH] [--conc C] [-- NODE_ARGS…] | pool [N] [--conc C]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mine, node_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], args[i + 1..].to_vec()),
        None => (&args[..], vec![]),
    };
    let mode = mine.first().map(String::as_str).unwrap_or("");
    if mode == "client" {
        // Internal: `client ADDR N CONC`, driven through stdin/stdout.
        let addr: SocketAddr = mine[1].parse().expect(USAGE);
        let n = mine[2].parse().expect(USAGE);
        let conc = mine[3].parse().expect(USAGE);
        return client_mode(addr, n, conc);
    }
    let mut n = 10_000usize;
    let mut conc = 16usize;
    let mut bin = None;
    let mut rest = mine.iter().skip(1);
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--bin" => bin = rest.next().cloned(),
            "--conc" => conc = rest.next().and_then(|v| v.parse().ok()).expect(USAGE),
            v => n = v.parse().expect(USAGE),
        }
    }
    match mode {
        "node" => node_mode(n, conc, bin, &node_args),
        "pool" => pool_mode(n, conc),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------
// Readings.

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// RssAnon, RssFile and the thread count of `pid`.
fn rss_parts(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter(|l| {
            l.starts_with("RssAnon") || l.starts_with("RssFile") || l.starts_with("Threads")
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The median of five readings 100 ms apart.
fn settled<T: Ord + Copy>(mut read: impl FnMut() -> T) -> T {
    let mut v: Vec<T> = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            read()
        })
        .collect();
    v.sort_unstable();
    v[2]
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A sample of the node's Prometheus `/metrics`.
fn metric(rpc: SocketAddr, name: &str) -> Option<f64> {
    let mut s = TcpStream::connect_timeout(&rpc, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {rpc}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

fn report(what: &str, idle: u64, full: u64, after: u64, n: usize) {
    let per = full.saturating_sub(idle) as f64 / n.max(1) as f64;
    println!(
        "{what}: VmRSS idle {:.1} MiB, with {n} connections {:.1} MiB = {per:.2} KiB per connection; \
         after all closed {:.1} MiB = {:.2} x idle",
        idle as f64 / 1024.0,
        full as f64 / 1024.0,
        after as f64 / 1024.0,
        after as f64 / idle.max(1) as f64
    );
}

/// With `MEM_CONNS_HOLD=SECONDS`, waits that long with every connection
/// open, and again after they all closed (to take a heap profile of the
/// node then).
fn hold() {
    if let Some(secs) = std::env::var("MEM_CONNS_HOLD")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        println!("holding the connections for {secs} s");
        std::thread::sleep(Duration::from_secs(secs));
    }
}

// ---------------------------------------------------------------------------
// Clients.

/// The `i`-th source address, 127.10.x.y.
fn source(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 10, (1 + (i / 250) % 250) as u8, (1 + i % 250) as u8)
}

fn client_identity(i: usize) -> Arc<Identity> {
    let mut sk = [0x5a; 32];
    sk[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Arc::new(Identity::from_secret_key(SecretKey(sk), PowStamp([0; 24])))
}

/// What octez-p2p-node announces (chain "", distributed_db 0).
fn p2p_node_version() -> NetworkVersion {
    SupportedVersions {
        distributed_db_versions: vec![0],
        ..SupportedVersions::octez(ChainName::from(""))
    }
    .announced()
}

async fn dial_one(
    i: usize,
    to: SocketAddr,
    sched: &IoScheduler,
    version: NetworkVersion,
) -> Result<Client, String> {
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(SocketAddr::new(source(i).into(), 0))
        .map_err(|e| e.to_string())?;
    let stream = sock.connect(to).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let cfg = AuthConfig {
        identity: client_identity(i),
        pow_target: PowTarget::new(0.0).unwrap(),
        incoming: false,
        remote_addr: to,
        listening_port: None,
        version,
        metadata: OctezMetadata {
            disable_mempool: true,
            private_node: false,
        },
        cancel: CancellationToken::new(),
        timeout: Some(Duration::from_secs(10)),
    };
    let (_, auth) = authenticate(Box::new(stream), sched.register(), cfg)
        .await
        .map_err(|e| e.to_string())?;
    auth.accept(AcceptOptions::default())
        .await
        .map_err(|e| e.to_string())
}

/// Opens `n` connections to `to`, `conc` handshakes at once; a failed one
/// is tried again (up to three times).
async fn open_clients(
    to: SocketAddr,
    n: usize,
    conc: usize,
    version: NetworkVersion,
) -> Vec<Client> {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let sem = Arc::new(tokio::sync::Semaphore::new(conc));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (sched, version) = (sched.clone(), version.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let mut last = String::new();
            for _ in 0..3 {
                match dial_one(i, to, &sched, version.clone()).await {
                    Ok(c) => return Ok(c),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }));
    }
    let mut conns = Vec::with_capacity(n);
    let mut errors = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => conns.push(c),
            Err(e) => {
                if errors < 3 {
                    eprintln!("handshake failed: {e}");
                }
                errors += 1;
            }
        }
    }
    if errors > 0 {
        eprintln!("{errors} handshakes failed");
    }
    conns
}

/// Closes every connection at once (dropping the last handle aborts each
/// connection's task, which closes its socket), as a crowd of peers that
/// leave together.
async fn close_all(conns: Vec<Client>) {
    drop(conns);
    tokio::time::sleep(Duration::from_millis(200)).await;
}

// ---------------------------------------------------------------------------
// node

fn node_mode(n: usize, conc: usize, bin: Option<String>, extra: &[String]) {
    let bin = bin.unwrap_or_else(|| {
        let root = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/release/tezos-p2p-node"
        );
        root.to_string()
    });
    let dir = std::env::temp_dir().join(format!("mem_conns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p2p: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let rpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let max = (n + 100).to_string();
    let mut child = Command::new(&bin)
        .args(["run", "--data-dir"])
        .arg(&dir)
        .args(["--expected-pow", "0", "--network", "p2p-node", "--net-addr"])
        .arg(p2p.to_string())
        .arg("--rpc-addr")
        .arg(rpc.to_string())
        .args(["--max-connections", &max, "--expected-connections", &max])
        .arg("--disable-p2p-maintenance")
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(rpc, "octez_p2p_connections_active").is_none() {
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    println!(
        "node {bin} {} (pid {pid}, RPC http://{rpc}/); load {}",
        extra.join(" "),
        loadavg()
    );
    let idle = settled(|| rss_kib(pid));
    println!("node /proc status idle: {}", rss_parts(pid));
    let rt = runtime();
    let t = Instant::now();
    let conns = rt.block_on(open_clients(p2p, n, conc, p2p_node_version()));
    let got = conns.len();
    let wait = |want: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while metric(rpc, "octez_p2p_connections_active") != Some(want as f64) {
            if Instant::now() > deadline {
                eprintln!("the node does not count {want} connections");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait(got);
    println!(
        "{got}/{n} connections in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    let full = settled(|| rss_kib(pid));
    hold();
    rt.block_on(close_all(conns));
    wait(0);
    std::thread::sleep(Duration::from_secs(3));
    let after = settled(|| rss_kib(pid));
    report("node", idle, full, after, got);
    println!("node /proc status after close: {}", rss_parts(pid));
    hold();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// pool (server here, clients in a child)

fn pool_mode(n: usize, conc: usize) {
    let rt = runtime();
    let id = Arc::new(Identity::from_secret_key(
        SecretKey([0x11; 32]),
        PowStamp([0; 24]),
    ));
    let config = {
        let mut config = Config::new(
            id,
            SupportedVersions {
                distributed_db_versions: vec![0],
                ..SupportedVersions::octez(ChainName::from(""))
            },
        );
        config.listening_addr = Some("127.0.0.1:0".parse().unwrap());
        config.proof_of_work_target = PowTarget::new(0.0).unwrap();
        config.metadata = OctezMetadata {
            disable_mempool: true,
            private_node: false,
        };
        config.disable_peer_discovery = true;
        config.transport = Transport::Tcp(TcpOptions::octez());
        config
    };
    let limits = {
        let mut limits = Limits::default();
        limits.max_connections = n + 100;
        limits.expected_connections = n + 100;
        limits.maintenance_idle_time = None;
        limits
    };
    let net: Net<RawMessage, OctezMetadata, ()> = rt.block_on(Net::create(config, limits)).unwrap();
    {
        let _in_rt = rt.enter();
        net.activate();
    }
    let port = net.listening_port().expect("listening");
    let me = std::process::id();
    COUNTING.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    let (idle, heap0) = (settled(|| rss_kib(me)), live());
    println!("pool in this process; load {}", loadavg());
    let mut child: Child = Command::new(std::env::current_exe().unwrap())
        .args([
            "client",
            &format!("127.0.0.1:{port}"),
            &n.to_string(),
            &conc.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    from_child.read_line(&mut line).unwrap();
    let got: usize = line.trim().parse().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while net.connections().len() < got && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (full, heap1) = (settled(|| rss_kib(me)), live());
    hold();
    writeln!(to_child, "close").unwrap();
    line.clear();
    from_child.read_line(&mut line).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !net.connections().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let (after, heap2) = (settled(|| rss_kib(me)), live());
    report("pool", idle, full, after, got);
    println!(
        "pool: live heap +{:.2} KiB per connection with {got} connections, +{:.1} KiB after all closed",
        (heap1 - heap0) as f64 / got.max(1) as f64 / 1024.0,
        (heap2 - heap0) as f64 / 1024.0
    );
    drop(to_child);
    let _ = child.wait();
    rt.block_on(net.shutdown());
}

fn client_mode(to: SocketAddr, n: usize, conc: usize) {
    let rt = runtime();
    let conns = rt.block_on(open_clients(to, n, conc, p2p_node_version()));
    println!("{}", conns.len());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    rt.block_on(close_all(conns));
    println!("closed");
    std::io::stdout().flush().unwrap();
}
