//! A large simulated network (issue 5): `--nodes` pools on the in-memory
//! transport, each knowing only node 0, on a current-thread runtime with
//! tokio's clock paused (virtual time; reproducible for a given seed).
//!
//! ```text
//! cargo run --release -p tezos-p2p --example sim -- --nodes 1000 [--seed S] \
//!     [--min 4 --expected 6 --max 8] [--idle SECS] [--limit SECS]
//! ```
//!
//! Prints the virtual time to converge (every node within its maintenance
//! thresholds), the wall time, the P2P messages sent (Bootstrap, Advertise,
//! Swap request/ack, counted from the pools' events), connections
//! established, bytes sent, and the peak memory (VmHWM).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tezos_p2p::events::P2pEvent;
use tezos_p2p::sim::{SimConfig, Simulation};

#[derive(Default)]
struct Counters {
    bootstrap: AtomicU64,
    advertise: AtomicU64,
    swap_request: AtomicU64,
    swap_ack: AtomicU64,
    established: AtomicU64,
    disconnections: AtomicU64,
    lagged: AtomicU64,
}

fn args() -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let Some(k) = k.strip_prefix("--") else {
            panic!("unexpected argument {k}");
        };
        let v = it.next().unwrap_or_else(|| panic!("--{k} needs a value"));
        out.insert(k.to_string(), v);
    }
    out
}

fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let a = args();
    let get = |k: &str, d: u64| a.get(k).map_or(d, |v| v.parse().expect(k));
    let nodes = get("nodes", 1000) as usize;
    let seed = get("seed", 7);
    let (min, expected, max) = (
        get("min", 4) as usize,
        get("expected", 6) as usize,
        get("max", 8) as usize,
    );
    let mut cfg = SimConfig::new(nodes, min, expected, max, seed);
    if let Some(idle) = a.get("idle") {
        cfg.limits.maintenance_idle_time = Some(Duration::from_secs(idle.parse().expect("idle")));
    }
    let limit = Duration::from_secs(get("limit", 3600));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let wall = Instant::now();
        let start_virtual = tokio::time::Instant::now();
        let sim = Simulation::create(cfg).await.expect("simulation");
        let counters = Arc::new(Counters::default());
        for n in &sim.nets {
            let mut rx = n.events();
            let c = counters.clone();
            tokio::spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    let e = match rx.recv().await {
                        Ok(e) => e,
                        Err(RecvError::Lagged(k)) => {
                            c.lagged.fetch_add(k, Ordering::Relaxed);
                            continue;
                        }
                        Err(RecvError::Closed) => return,
                    };
                    let counter = match e {
                        P2pEvent::BootstrapSent { .. } => &c.bootstrap,
                        P2pEvent::AdvertiseSent { .. } => &c.advertise,
                        P2pEvent::SwapRequestSent { .. } => &c.swap_request,
                        P2pEvent::SwapAckSent { .. } => &c.swap_ack,
                        P2pEvent::ConnectionEstablished { .. } => &c.established,
                        P2pEvent::Disconnection { .. } => &c.disconnections,
                        _ => continue,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        sim.activate().await;
        let started = wall.elapsed();
        let joined = tokio::time::Instant::now();
        let took = sim
            .run_until_converged(limit, Duration::from_millis(500))
            .await;
        let wall_converge = wall.elapsed();
        let counts = sim.connection_counts();
        let mut histogram = std::collections::BTreeMap::new();
        for c in &counts {
            *histogram.entry(*c).or_insert(0usize) += 1;
        }
        let load = |x: &AtomicU64| x.load(Ordering::Relaxed);
        let c = &counters;
        let p2p = load(&c.bootstrap) + load(&c.advertise) + load(&c.swap_request) + load(&c.swap_ack);
        println!("nodes {nodes}, seed {seed}, min/expected/max {min}/{expected}/{max}");
        match took {
            Some(t) => println!(
                "converged after {:.1} s virtual from the first activation ({:.1} s after the last)",
                (t + (joined - start_virtual)).as_secs_f64(),
                t.as_secs_f64()
            ),
            None => println!("NOT converged after {:.0} s virtual", limit.as_secs_f64()),
        }
        println!(
            "wall: {:.2} s to converge ({:.2} s to create and activate the nodes)",
            wall_converge.as_secs_f64(),
            started.as_secs_f64()
        );
        println!("connections per node (count: nodes): {histogram:?}");
        println!(
            "p2p messages sent: {p2p} (bootstrap {}, advertise {}, swap request {}, swap ack {}); \
             connections established {} (counted at both ends), disconnections {}; lagged events {}",
            load(&c.bootstrap),
            load(&c.advertise),
            load(&c.swap_request),
            load(&c.swap_ack),
            load(&c.established),
            load(&c.disconnections),
            load(&c.lagged),
        );
        println!("bytes sent: {}", sim.bytes_sent());
        if std::env::var_os("SIM_DEBUG").is_some() {
            let now = sim.nets[0].now();
            for (i, n) in sim.nets.iter().enumerate().filter(|(_, n)| n.active_connections() == 0).take(3) {
                n.with_tables(|t| {
                    eprintln!("node {i}: {} known points", t.known_points.len());
                    for (p, info) in t.known_points.iter().take(12) {
                        eprintln!(
                            "  {p} {:?} public {} retry in {:?} failed {:?} rejected {:?}",
                            info.state,
                            info.known_public,
                            info.reconnection_time().and_then(|t| t.duration_since(now).ok()),
                            info.last_failed_connection.and_then(|t| now.duration_since(t).ok()),
                            info.last_rejected_connection.and_then(|t| now.duration_since(t.1).ok()),
                        );
                    }
                });
            }
        }
        if let Some(kib) = peak_memory_kib() {
            println!("peak memory (VmHWM): {:.1} MiB", kib as f64 / 1024.0);
        }
        sim.shutdown().await;
        println!("wall total: {:.2} s", wall.elapsed().as_secs_f64());
    });
}
