//! User-space heap bytes per idle authenticated connection, server side.
//!
//! The server runs in this process under the counting allocator; the
//! clients run in a child process (this binary, `memory-client`), so only
//! the accepting side is counted. Figure: (live bytes once `n` connections
//! are established and idle for 0.5 s − live bytes before) / `n`. Kernel
//! socket buffers are not included.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::Multiaddr;

use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};

use crate::common::*;
use crate::throughput::{listen, swarm};

pub const BENCH: &str = "memory";

struct Child {
    child: std::process::Child,
}

impl Child {
    fn spawn(imp: &str, addr: &str, n: usize) -> Child {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["memory-client", imp, addr, &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the client process");
        Child { child }
    }

    /// Waits (blocking) for the child's "ready" line.
    fn ready(&mut self) -> String {
        let out = self.child.stdout.as_mut().unwrap();
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).unwrap();
        line.trim().to_owned()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Closing stdin tells the child to exit.
        if let Some(mut i) = self.child.stdin.take() {
            let _ = i.write_all(b"bye\n");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for(count: &AtomicUsize, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "{what}: only {} of {n} connections",
            count.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Bytes per idle connection, ours.
pub async fn ours(n: usize) -> f64 {
    let t = transport();
    let listener = t
        .bind_with_backlog("127.0.0.1:0".parse().unwrap(), 1024)
        .await
        .unwrap();
    let saddr = listener.local_addr();
    let sched = IoScheduler::new(SchedulerConfig::default());
    let sid = identity(2);
    let conns: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let count = Arc::new(AtomicUsize::new(0));
    tokio::time::sleep(Duration::from_millis(100)).await;
    COUNTING.store(true, Ordering::SeqCst);
    let server = tokio::spawn({
        let (conns, count) = (conns.clone(), count.clone());
        async move {
            loop {
                let Ok((stream, caddr)) = listener.accept().await else {
                    continue;
                };
                let (sched, sid, conns, count) =
                    (sched.clone(), sid.clone(), conns.clone(), count.clone());
                tokio::spawn(async move {
                    if let Ok(c) = ours_serve(stream, caddr, &sched, &sid).await {
                        conns.lock().unwrap().push(c);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b0 = live();
    let mut child = Child::spawn("tezos-p2p", &saddr.to_string(), n);
    let line = tokio::task::spawn_blocking(move || (child.ready(), child))
        .await
        .unwrap();
    let (line, child) = line;
    wait_for(&count, n, "tezos-p2p").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b1 = live();
    assert!(conns.lock().unwrap().iter().all(|c| !c.is_closed()));
    COUNTING.store(false, Ordering::SeqCst);
    eprintln!("    child: {line}");
    exit_for_profiling((b1 - b0) as f64 / n as f64);
    tokio::task::spawn_blocking(move || drop(child))
        .await
        .unwrap();
    server.abort();
    let all: Vec<Conn> = std::mem::take(&mut *conns.lock().unwrap());
    for c in &all {
        c.close(false).await;
    }
    (b1 - b0) as f64 / n as f64
}

/// Bytes per idle connection, a libp2p Swarm (tcp + noise + yamux,
/// `libp2p_stream::Behaviour`, idle timeout 1 h).
pub async fn libp2p(n: usize) -> f64 {
    let mut server = swarm(Keypair::generate_ed25519());
    let addr = listen(&mut server).await;
    let count = Arc::new(AtomicUsize::new(0));
    tokio::time::sleep(Duration::from_millis(100)).await;
    COUNTING.store(true, Ordering::SeqCst);
    let st = tokio::spawn({
        let count = count.clone();
        async move {
            loop {
                match server.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    SwarmEvent::ConnectionClosed { .. } => {
                        count.fetch_sub(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b0 = live();
    let mut child = Child::spawn("libp2p", &addr.to_string(), n);
    let (line, child) = tokio::task::spawn_blocking(move || (child.ready(), child))
        .await
        .unwrap();
    wait_for(&count, n, "libp2p").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b1 = live();
    let still = count.load(Ordering::SeqCst);
    COUNTING.store(false, Ordering::SeqCst);
    eprintln!("    child: {line}; server connections still open: {still}");
    exit_for_profiling((b1 - b0) as f64 / n as f64);
    tokio::task::spawn_blocking(move || drop(child))
        .await
        .unwrap();
    st.abort();
    (b1 - b0) as f64 / n as f64
}

/// With `BENCH_EXIT_IDLE=1`, exits with the idle connections still open,
/// so that a heap profiler's "live at exit" view (`valgrind --tool=dhat`,
/// t-end) shows what they hold.
fn exit_for_profiling(per_conn: f64) {
    if std::env::var_os("BENCH_EXIT_IDLE").is_some() {
        eprintln!(
            "BENCH_EXIT_IDLE: {per_conn:.0} B per connection; exiting with the connections open"
        );
        std::process::exit(0);
    }
}

// ---------------------------------------------------------------------------
// The client process.

pub fn client_main(imp: &str, addr: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let keep = rt.block_on(async {
        match imp {
            "tezos-p2p" => client_ours(addr.parse().unwrap(), n).await,
            _ => client_libp2p(addr.parse().unwrap(), n).await,
        }
    });
    println!("ready {n}");
    let _ = std::io::stdout().flush();
    // Hold the connections until the parent says so (or goes away).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(keep);
    // Do not wait for graceful closes.
    std::process::exit(0);
}

async fn client_ours(saddr: SocketAddr, n: usize) -> Box<dyn std::any::Any> {
    let t = transport();
    let sched = IoScheduler::new(SchedulerConfig::default());
    let cid = identity(1);
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut hs = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (t, sched, cid) = (t.clone(), sched.clone(), cid.clone());
        hs.push(tokio::spawn(async move {
            let c = ours_dial(&t, &sched, &cid, saddr).await;
            drop(permit);
            c
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for h in hs {
        conns.push(h.await.unwrap().expect("client connection"));
    }
    Box::new((conns, sched))
}

async fn client_libp2p(addr: Multiaddr, n: usize) -> Box<dyn std::any::Any> {
    let mut sw = swarm(Keypair::generate_ed25519());
    let (mut dialed, mut up, mut failed) = (0usize, 0usize, 0usize);
    while up < n {
        while dialed - up - failed < 64 && dialed < n + failed {
            sw.dial(addr.clone()).unwrap();
            dialed += 1;
        }
        match sw.select_next_some().await {
            SwarmEvent::ConnectionEstablished { .. } => up += 1,
            SwarmEvent::OutgoingConnectionError { .. } => {
                failed += 1;
                assert!(failed < 100, "too many dial errors");
            }
            SwarmEvent::ConnectionClosed { .. } => panic!("a client connection closed"),
            _ => {}
        }
    }
    // Keep driving the swarm so connections stay up.
    let t = tokio::spawn(async move {
        loop {
            sw.select_next_some().await;
        }
    });
    Box::new(t)
}

pub async fn run(report: &mut Report, reps: usize, counts: &[usize]) {
    eprintln!(
        "== memory (server side, {reps} runs interleaved; load {}) ==",
        loadavg()
    );
    for &n in counts {
        let metric = format!("idle_conn_{n}");
        for rep in 0..reps {
            if selected("tezos-p2p") {
                let o = ours(n).await;
                eprintln!(
                    "  run {rep} n={n} tezos-p2p: {o:.0} B/conn (load {})",
                    loadavg()
                );
                report.add(BENCH, "tezos-p2p", &metric, "B/conn", o);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if selected("libp2p-swarm") {
                let l = libp2p(n).await;
                eprintln!(
                    "  run {rep} n={n} libp2p   : {l:.0} B/conn (load {})",
                    loadavg()
                );
                report.add(BENCH, "libp2p-swarm", &metric, "B/conn", l);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let o = report.median(BENCH, "tezos-p2p", &metric);
        let l = report.median(BENCH, "libp2p-swarm", &metric);
        report.goal(
            BENCH,
            format!("tezos-p2p per idle connection, n = {n}"),
            o / 1024.0,
            "KiB",
            "<= 8 KiB",
            o <= 8192.0,
        );
        report.goal(
            BENCH,
            format!("tezos-p2p / libp2p-swarm, n = {n}"),
            o / l,
            "x",
            "<= 0.05x (1/20)",
            o / l <= 0.05,
        );
    }
}
