//! Simulated networks (issues 5 and 16): `--nodes` pools on the in-memory
//! transport, over links with latency by region, jitter and bandwidth
//! (`--latency 0`: instant links), on a current-thread runtime with tokio's
//! clock paused (virtual time; a seed gives the same run). Each scenario is
//! a subcommand:
//!
//! ```text
//! cargo run --release -p tezos-p2p --example sim -- SCENARIO [options]
//!
//! converge    N nodes join (node 0 first, --join-every ms apart) and run
//!             until every node is within its thresholds
//! churn       converge, then replace --rate % of the nodes per minute for
//!             --minutes minutes (--crash % of the leavers crash, the others
//!             shut down), spread evenly over each minute (--batch: all
//!             at the minute's start)
//! partition   converge, split the nodes 50/50 for --secs seconds, heal, and
//!             run until the network is one connected component again
//! nat         converge with --nat % of the nodes behind NAT (default 30)
//! gossip      converge, flood --messages messages of --size bytes from
//!             random nodes, then follow a new node's address
//!
//! options (`--help` lists them with their defaults): --nodes N --seed S
//!          --min --expected --max --idle --latency MS --nat PCT --known K
//!          --join-every MS --limit --sample --out DIR --plots 0|1
//!          --swap-linger SECS --diag SECS, and each scenario's own
//! ```
//!
//! Prints a summary and writes `results.json` (parameters, figures, the
//! timeline of connections per node) and SVG plots into `--out`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};

use tezos_p2p::sim::{reach_time, Gossip, Leave, NodeTotals, SimConfig, Simulation};
use tezos_p2p::wire::point::Point;

#[path = "support/sim_plot.rs"]
mod plot;
mod support;
use support::loadavg;

/// Simulated networks: pools on the in-memory transport over modelled
/// links, on virtual time; the same seed gives the same run.
#[derive(clap::Parser, Debug)]
#[command(name = "sim")]
struct Args {
    /// What to run.
    #[arg(value_parser = ["converge", "churn", "partition", "nat", "gossip"], default_value = "converge")]
    scenario: String,
    /// Number of nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Seed of the run (the same seed gives the same run).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The nodes' min_connections.
    #[arg(long, default_value_t = 4)]
    min: usize,
    /// The nodes' expected_connections.
    #[arg(long, default_value_t = 6)]
    expected: usize,
    /// The nodes' max_connections.
    #[arg(long, default_value_t = 8)]
    max: usize,
    /// Median one-way latency in ms (0: instant links, no link model).
    #[arg(long, value_name = "MS", default_value_t = 100.0)]
    latency: f64,
    /// Percentage of nodes behind NAT [default: 30 for `nat`, else 0].
    #[arg(long, value_name = "PCT")]
    nat: Option<f64>,
    /// The maintenance's idle time, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    idle: u64,
    /// Octez's swap_linger in seconds; 0 turns swaps off (as
    /// `--disable-p2p-swap`: no request sent, none answered).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    swap_linger: u64,
    /// Points a joining node knows (1: node 0 only).
    #[arg(long, value_name = "K", default_value_t = 1)]
    known: usize,
    /// Milliseconds between two nodes' joins.
    #[arg(long, value_name = "MS", default_value_t = 10.0)]
    join_every: f64,
    /// Give up after this many virtual seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    limit: u64,
    /// Seconds between two samples of the network.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    sample: f64,
    /// Where to write results.json and the plots [default: target/sim/SCENARIO-N].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// 1: write the SVG plots; 0: not.
    #[arg(long, value_name = "0|1", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    plots: u8,
    /// While converging, every SECS print the nodes below their minimum
    /// (known points, back-offs, dials); 0: off.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    diag: u64,
    /// churn: percentage of the nodes replaced per minute.
    #[arg(long, value_name = "PCT", default_value_t = 10.0)]
    rate: f64,
    /// churn: minutes of churn.
    #[arg(long, default_value_t = 10)]
    minutes: usize,
    /// churn: percentage of the leavers that crash (the others shut down).
    #[arg(long, value_name = "PCT", default_value_t = 50.0)]
    crash: f64,
    /// churn: replace each minute's nodes together at its start (--join-every
    /// apart) and look at the network at its end, instead of spreading the
    /// replacements evenly over the minute.
    #[arg(long)]
    batch: bool,
    /// partition: seconds the network stays split.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    secs: u64,
    /// partition: give up healing after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    heal_limit: u64,
    /// gossip: messages flooded.
    #[arg(long, default_value_t = 10)]
    messages: u32,
    /// gossip: size of each message, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    size: usize,
    /// gossip: seconds to wait for each flood.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    gossip_wait: u64,
    /// gossip: seconds to follow a new node's address.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    point_secs: u64,
}

fn proc_status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One look at the network.
#[derive(Clone, Debug)]
struct Sample {
    t: f64,
    alive: usize,
    within: usize,
    min: usize,
    mean: f64,
    max: usize,
    p2p: u64,
    bytes: u64,
    components: Option<usize>,
}

fn sample(sim: &Simulation, t0: tokio::time::Instant, components: bool) -> Sample {
    let counts: Vec<usize> = sim
        .connection_counts()
        .into_iter()
        .zip(sim.slots())
        .filter(|(_, s)| s.alive)
        .map(|(c, _)| c)
        .collect();
    let (within, alive) = sim.within();
    let totals = sim.totals();
    Sample {
        t: t0.elapsed().as_secs_f64(),
        alive,
        within,
        min: counts.iter().copied().min().unwrap_or(0),
        mean: counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64,
        max: counts.iter().copied().max().unwrap_or(0),
        p2p: totals.p2p_messages(),
        bytes: totals.bytes_sent,
        components: components.then(|| sim.components().len()),
    }
}

/// Runs the clock, sampling every `every`, until `done` or `limit`;
/// returns the time `done` became true.
async fn run(
    sim: &Simulation,
    t0: tokio::time::Instant,
    timeline: &mut Vec<Sample>,
    every: Duration,
    limit: Duration,
    components: bool,
    mut done: impl FnMut(&Simulation, &Sample) -> bool,
) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    loop {
        let s = sample(sim, t0, components);
        let finished = done(sim, &s);
        timeline.push(s);
        if finished {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// Prints, for each node below its minimum, what its pool knows: how
/// many points, in which state, how many wait out a back-off and for how
/// long, and its counts of dials and maintenance events (`--diag SECS`).
fn diagnose(sim: &Simulation, s: &Sample) {
    use tezos_p2p::events::EventKind as K;
    use tezos_p2p::points::PointState;
    let b = sim.config().limits.bounds();
    let low: Vec<usize> = sim
        .connection_counts()
        .into_iter()
        .enumerate()
        .filter(|&(i, c)| sim.slots()[i].alive && c < b.min_threshold)
        .map(|(i, _)| i)
        .collect();
    println!(
        "diag t={:.0}: {} nodes below {}",
        s.t,
        low.len(),
        b.min_threshold
    );
    for &i in low.iter().take(8) {
        let n = &sim.nets[i];
        let now = n.now();
        let line = n.with_tables(|t| {
            let (mut disc, mut blocked, mut free, mut busy, mut public) = (0, 0, 0, 0, 0);
            let mut waits: Vec<f64> = Vec::new();
            let mut delays: Vec<f64> = Vec::new();
            for p in t.known_points.values() {
                if p.known_public {
                    public += 1;
                }
                if p.state != PointState::Disconnected {
                    busy += 1;
                    continue;
                }
                disc += 1;
                if let Some(r) = p.reconnection {
                    delays.push(r.delay.as_secs_f64());
                }
                if p.cannot_reconnect_yet(now) {
                    blocked += 1;
                    let r = p.reconnection.expect("blocked");
                    waits.push(r.end_time.duration_since(now).unwrap_or_default().as_secs_f64());
                } else {
                    free += 1;
                }
            }
            waits.sort_by(f64::total_cmp);
            delays.sort_by(f64::total_cmp);
            let q = |v: &[f64], f: f64| v.get(((v.len() as f64 - 1.0) * f) as usize).copied().unwrap_or(0.0);
            format!(
                "known {} (public {public}) busy {busy} disconnected {disc}: free {free}, backing off {blocked} (wait min {:.0} med {:.0} max {:.0} s; delay med {:.0} max {:.0} s)",
                t.known_points.len(), q(&waits, 0.0), q(&waits, 0.5), q(&waits, 1.0), q(&delays, 0.5), q(&delays, 1.0)
            )
        });
        println!(
            "  node {i} (gen {}): {} conns; {line}; dials {} refused(nack rx) {} auth-failed {} too-few {} bootstrap-sent {} new-points {} incoming {} rejecting {}",
            sim.slots()[i].generation,
            n.active_connections(),
            n.event_count(K::OutgoingConnection),
            n.event_count(K::RequestRejected),
            n.event_count(K::AuthenticationFailed),
            n.event_count(K::TooFewConnections),
            n.event_count(K::BootstrapSent),
            n.event_count(K::NewPoint),
            n.event_count(K::IncomingConnection),
            n.event_count(K::RejectingRequest),
        );
    }
}

/// The joiners' times from their join to their minimum (those
/// [`joiners::Trace::counted`] with a 60 s horizon), printed and returned
/// as JSON; with `detail`, where the slow ones' (> 10 s) time went.
fn joiner_report(
    j: &joiners::Joiners,
    sim: &Simulation,
    t0: tokio::time::Instant,
    detail: bool,
) -> Value {
    const HORIZON: f64 = 60.0;
    let end = t0.elapsed().as_secs_f64();
    let v = j.times(end, HORIZON);
    let q = |f| joiners::quantile(&v, f);
    let fmt = |x: Option<f64>| x.map_or(format!("> {HORIZON:.0}"), |x| format!("{x:.1}"));
    let slow = v.iter().filter(|x| x.is_none_or(|x| x > 10.0)).count();
    let over5 = v.iter().filter(|x| x.is_none_or(|x| x > 5.0)).count();
    let mean = v.iter().map(|x| x.unwrap_or(HORIZON)).sum::<f64>() / v.len().max(1) as f64;
    let node0 = sim.slots()[0].ip;
    let traces = j.traces.lock().unwrap();
    let old_enough = traces
        .iter()
        .filter(|tr| end - tr.joined >= HORIZON)
        .count();
    let replaced_first = old_enough - v.len();
    println!(
        "time to {} connections, {} joiners: mean {mean:.1} s, median {} s, p90 {} s, p99 {} s, max {} s; > 5 s: {over5}, > 10 s: {slow} ({replaced_first} more replaced before reaching it)",
        sim.config().limits.bounds().min_threshold,
        v.len(), fmt(q(0.5)), fmt(q(0.9)), fmt(q(0.99)), fmt(q(1.0)),
    );
    let mut groups: [(usize, joiners::Breakdown, f64); 3] = Default::default();
    for tr in traces.iter().filter(|tr| tr.counted(end, HORIZON)) {
        let r = tr.reached.filter(|&r| r <= HORIZON);
        let g = match r {
            Some(r) if r <= 5.0 => 0,
            Some(r) if r <= 10.0 => 1,
            _ => 2,
        };
        let until = r.unwrap_or(HORIZON);
        let b = joiners::breakdown(tr, &j.gone, node0, until);
        let s = &mut groups[g];
        s.0 += 1;
        s.2 += until;
        s.1 += b;
        if detail && g == 2 {
            let first: Vec<String> = tr
                .log
                .iter()
                .filter(|(t, e)| *t <= until && !matches!(e, joiners::Ev::NewPoint))
                .take(60)
                .map(|(t, e)| format!("{t:.2}:{e:?}"))
                .collect();
            println!(
                "  slow joiner slot {} joined {:.1} s: {} s{}; {b:?}\n    {}",
                tr.slot,
                tr.joined,
                fmt(r),
                if tr.lagged { " (events lagged)" } else { "" },
                first.join(" ")
            );
        }
    }
    let mut out = Vec::new();
    for (name, (n, a, time)) in ["<= 5 s", "5-10 s", "> 10 s"].iter().zip(groups) {
        let k = n.max(1) as f64;
        let per = |x: u32| x as f64 / k;
        println!(
            "  joiners {name}: {n}, per joiner until the minimum ({:.1} s): dials {:.1} (up {:.1}, nacked {:.1}, auth-failed {:.1}, to crashed {:.2}, to left {:.2}, silent {:.2}; to node 0 {:.2}), rounds {:.1}, bootstrap sent {:.1}, new points {:.0}, incoming {:.1}, refusing {:.1}; no dial in flight {:.1} s (longest {:.1} s), only dials to crashed hosts {:.1} s",
            time / k, per(a.dials), per(a.up), per(a.nacked), per(a.auth_failed), per(a.to_crashed), per(a.to_left), per(a.silent), per(a.to_node0),
            per(a.rounds), per(a.bootstraps), per(a.new_points), per(a.incoming), per(a.refusing), a.idle / k, a.longest_idle / k, a.only_dead / k,
        );
        out.push(json!({
            "group": name, "joiners": n, "mean_time_s": time / k,
            "dials": per(a.dials), "up": per(a.up), "nacked": per(a.nacked), "auth_failed": per(a.auth_failed),
            "to_crashed": per(a.to_crashed), "to_left": per(a.to_left), "silent": per(a.silent), "to_node0": per(a.to_node0),
            "rounds": per(a.rounds), "bootstrap_sent": per(a.bootstraps), "new_points": per(a.new_points),
            "no_dial_in_flight_s": a.idle / k, "longest_no_dial_s": a.longest_idle / k, "only_crashed_dials_s": a.only_dead / k,
        }));
    }
    json!({
        "joiners": v.len(), "replaced_before_min": replaced_first, "horizon_s": HORIZON, "mean_s": mean,
        "median_s": q(0.5), "p90_s": q(0.9), "p99_s": q(0.99), "max_s": q(1.0),
        "over_5s": over5, "over_10s": slow, "groups": out,
    })
}

fn histogram(sim: &Simulation) -> Vec<usize> {
    let mut h = Vec::new();
    for (c, s) in sim.connection_counts().into_iter().zip(sim.slots()) {
        if s.alive {
            if h.len() <= c {
                h.resize(c + 1, 0);
            }
            h[c] += 1;
        }
    }
    h
}

fn per_node(sim: &Simulation, elapsed: f64) -> Value {
    let totals: Vec<NodeTotals> = sim.node_totals().into_iter().flatten().collect();
    let n = totals.len().max(1) as f64;
    let stat = |f: &dyn Fn(&NodeTotals) -> u64| {
        let mut v: Vec<u64> = totals.iter().map(f).collect();
        v.sort_unstable();
        json!({
            "mean": v.iter().sum::<u64>() as f64 / n,
            "median": v.get(v.len() / 2).copied().unwrap_or(0),
            "max": v.last().copied().unwrap_or(0),
            "per_minute_mean": v.iter().sum::<u64>() as f64 / n / (elapsed / 60.0).max(1e-9),
        })
    };
    json!({
        "p2p_messages_sent": stat(&|t| t.p2p_messages()),
        "bytes_sent": stat(&|t| t.bytes_sent),
        "bytes_received": stat(&|t| t.bytes_received),
        "dials": stat(&|t| t.dials),
        "connections_established": stat(&|t| t.established),
    })
}

fn timeline_json(timeline: &[Sample]) -> Value {
    let col = |f: &dyn Fn(&Sample) -> Value| Value::Array(timeline.iter().map(f).collect());
    json!({
        "t": col(&|s| json!((s.t * 10.0).round() / 10.0)),
        "alive": col(&|s| json!(s.alive)),
        "within": col(&|s| json!(s.within)),
        "min": col(&|s| json!(s.min)),
        "mean": col(&|s| json!((s.mean * 100.0).round() / 100.0)),
        "max": col(&|s| json!(s.max)),
        "p2p_messages": col(&|s| json!(s.p2p)),
        "bytes_sent": col(&|s| json!(s.bytes)),
        "components": col(&|s| json!(s.components)),
    })
}

fn secs(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        json!((d.as_secs_f64() * 1000.0).round() / 1000.0)
    })
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let scenario = args.scenario.clone();
    let nodes = args.nodes;
    let seed = args.seed;
    let (min, expected, max) = (args.min, args.expected, args.max);
    let latency_ms = args.latency;
    let default_nat = if scenario == "nat" { 30.0 } else { 0.0 };
    let nat_pct = args.nat.unwrap_or(default_nat);
    let mut cfg = SimConfig::new(nodes, min, expected, max, seed);
    cfg.limits.maintenance_idle_time = Some(Duration::from_secs(args.idle));
    // --swap-linger SECS: Octez's `swap_linger` (30 s); 0 turns swaps off
    // (`--disable-p2p-swap`: no request sent, none answered).
    let swap_linger = args.swap_linger;
    cfg.limits.swap_linger = (swap_linger > 0).then(|| Duration::from_secs(swap_linger));
    cfg.known = args.known;
    let cfg_join_every = Duration::from_micros((args.join_every * 1000.0) as u64);
    cfg.join_every = cfg_join_every;
    if latency_ms > 0.0 {
        cfg = cfg.internet(Duration::from_secs_f64(latency_ms / 1000.0));
    }
    cfg.nat = nat_pct / 100.0;
    let limit = Duration::from_secs(args.limit);
    let every = Duration::from_secs_f64(args.sample);
    let out: PathBuf = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/sim/{scenario}-{nodes}")));
    let plots = args.plots == 1;
    let bounds = cfg.limits.bounds();
    let params = json!({
        "scenario": scenario, "nodes": nodes, "seed": seed,
        "min": min, "expected": expected, "max": max,
        "thresholds": [bounds.min_threshold, bounds.max_threshold],
        "idle_s": cfg.limits.maintenance_idle_time.map(|d| d.as_secs()),
        "swap_linger_s": cfg.limits.swap_linger.map(|d| d.as_secs()),
        "median_latency_ms": latency_ms, "nat_percent": nat_pct, "known": cfg.known,
        "join_every_ms": cfg.join_every.as_secs_f64() * 1000.0,
        "upload_bytes_per_s": cfg.upload, "download_bytes_per_s": cfg.download,
        "args": std::env::args().skip(1).collect::<Vec<_>>(),
    });
    let load_start = loadavg();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let wall = Instant::now();
    let mut results = rt.block_on(async {
        let t0 = tokio::time::Instant::now();
        let mut timeline = Vec::new();
        let mut sim = Simulation::create(cfg).await.expect("simulation");
        let wall_created = wall.elapsed();
        sim.activate().await;
        let wall_activated = wall.elapsed();
        let joined = t0.elapsed();
        let partition = scenario == "partition";
        let diag = Duration::from_secs(args.diag);
        let mut last_diag = tokio::time::Instant::now();
        let converged = run(&sim, t0, &mut timeline, every, limit, partition, |sim, s| {
            if !diag.is_zero() && last_diag.elapsed() >= diag {
                last_diag = tokio::time::Instant::now();
                diagnose(sim, s);
            }
            sim.converged()
        })
        .await;
        let wall_converged = wall.elapsed();
        let mut r = json!({
            "converged_after_s": secs(converged.map(|c| c + joined)),
            "converged_after_last_join_s": secs(converged),
            "joined_s": secs(Some(joined)),
            "wall_create_s": wall_created.as_secs_f64(),
            "wall_activate_s": (wall_activated - wall_created).as_secs_f64(),
            "wall_converge_s": wall_converged.as_secs_f64(),
            "histogram_at_convergence": histogram(&sim),
            "per_node_at_convergence": per_node(&sim, t0.elapsed().as_secs_f64()),
        });
        println!(
            "{scenario}: {nodes} nodes, seed {seed}: {} after {:.1} s virtual ({:.1} s after the last join); \
             wall {:.1} s (create {:.1} s, activate {:.1} s)",
            if converged.is_some() { "converged" } else { "NOT converged" },
            (converged.unwrap_or(limit) + joined).as_secs_f64(),
            converged.unwrap_or(limit).as_secs_f64(),
            wall_converged.as_secs_f64(),
            wall_created.as_secs_f64(),
            (wall_activated - wall_created).as_secs_f64(),
        );
        let mut extra = json!({});
        match scenario.as_str() {
            "churn" => {
                let rate = args.rate;
                let minutes = args.minutes;
                let crash_pct = args.crash;
                let per_minute = ((nodes as f64) * rate / 100.0).round().max(1.0) as usize;
                let gap = Duration::from_secs(60) / per_minute as u32;
                let mut ends = Vec::new();
                let mut joined_at = vec![tokio::time::Instant::now() - Duration::from_secs(3600); nodes];
                let mut joiners = joiners::Joiners::default();
                let min_threshold = sim.config().limits.bounds().min_threshold;
                for minute in 0..minutes {
                    let mut crashed = 0;
                    let minute_start = tokio::time::Instant::now();
                    for k in 0..per_minute {
                        if !args.batch {
                            tokio::time::sleep(gap).await;
                        } else if k > 0 {
                            tokio::time::sleep(cfg_join_every).await;
                        }
                        let slot = sim.rng().gen_range(1..nodes);
                        let how = if sim.rng().gen::<f64>() * 100.0 < crash_pct {
                            crashed += 1;
                            Leave::Crash
                        } else {
                            Leave::Graceful
                        };
                        joiners.left(slot, sim.slots()[slot].ip, how, t0.elapsed().as_secs_f64());
                        sim.replace(slot, how).await.expect("join");
                        joiners.track(&sim.nets[slot], slot, t0, min_threshold);
                        joined_at[slot] = tokio::time::Instant::now();
                        if timeline.last().is_none_or(|s: &Sample| t0.elapsed().as_secs_f64() - s.t >= every.as_secs_f64()) {
                            timeline.push(sample(&sim, t0, false));
                        }
                    }
                    if args.batch {
                        // The rest of the minute, sampled.
                        let end = minute_start + Duration::from_secs(60);
                        loop {
                            let now = tokio::time::Instant::now();
                            if now >= end {
                                break;
                            }
                            tokio::time::sleep(every.min(end - now)).await;
                            timeline.push(sample(&sim, t0, false));
                        }
                    }
                    let s = sample(&sim, t0, false);
                    let fraction = s.within as f64 / s.alive.max(1) as f64;
                    // The nodes out of their thresholds, by how long ago
                    // they joined: < 30 s, < 60 s, earlier.
                    let mut out_by_age = [0usize; 3];
                    for (i, c) in sim.connection_counts().into_iter().enumerate() {
                        if sim.slots()[i].alive && !sim.within_thresholds(c) {
                            let age = joined_at[i].elapsed();
                            out_by_age[usize::from(age >= Duration::from_secs(30))
                                + usize::from(age >= Duration::from_secs(60))] += 1;
                        }
                    }
                    println!(
                        "churn minute {}: replaced {per_minute} ({crashed} crashed); {}/{} live nodes within thresholds ({:.2} %), min {} mean {:.2} max {}; out of thresholds by age: {out_by_age:?} (joined < 30 s, 30–60 s, earlier)",
                        minute + 1, s.within, s.alive, 100.0 * fraction, s.min, s.mean, s.max
                    );
                    ends.push(json!({
                        "minute": minute + 1, "replaced": per_minute, "crashed": crashed,
                        "within": s.within, "alive": s.alive, "fraction_within": fraction,
                        "min": s.min, "mean": s.mean, "max": s.max,
                        "out_joined_under_30s": out_by_age[0], "out_joined_30_to_60s": out_by_age[1],
                        "out_older": out_by_age[2],
                    }));
                    timeline.push(s);
                }
                let join_times = joiner_report(&joiners, &sim, t0, args.diag > 0);
                let worst = ends
                    .iter()
                    .map(|e| e["fraction_within"].as_f64().unwrap_or(0.0))
                    .fold(1.0, f64::min);
                extra = json!({
                    "rate_percent_per_minute": rate, "minutes": minutes, "crash_percent": crash_pct,
                    "batch": args.batch,
                    "per_minute": ends, "worst_fraction_within": worst,
                    "time_to_min": join_times,
                    "histogram_at_end": histogram(&sim),
                });
            }
            "partition" => {
                let hold = Duration::from_secs(args.secs);
                let split_at = t0.elapsed();
                sim.partition(|i| (i % 2) as u32);
                run(&sim, t0, &mut timeline, every, hold, true, |_, _| false).await;
                let at_heal = sample(&sim, t0, true);
                let heal_at = t0.elapsed();
                sim.heal();
                let heal_limit = Duration::from_secs(args.heal_limit);
                let one = run(&sim, t0, &mut timeline, every, heal_limit, true, |_, s| {
                    s.components == Some(1)
                })
                .await;
                let within_again = run(&sim, t0, &mut timeline, every, heal_limit, true, |sim, _| {
                    sim.converged()
                })
                .await;
                println!(
                    "partition at {:.1} s for {:.0} s: {} components at the heal; one connected network {} after the heal",
                    split_at.as_secs_f64(),
                    hold.as_secs_f64(),
                    at_heal.components.unwrap_or(0),
                    one.map_or("NEVER".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
                );
                extra = json!({
                    "partition_at_s": split_at.as_secs_f64(), "held_s": hold.as_secs_f64(),
                    "healed_at_s": heal_at.as_secs_f64(),
                    "components_at_heal": at_heal.components,
                    "within_at_heal": at_heal.within,
                    "one_component_after_heal_s": secs(one),
                    "all_within_after_one_component_s": secs(within_again),
                    "histogram_at_end": histogram(&sim),
                });
            }
            "nat" => {
                let b = sim.config().limits.bounds();
                let counts = sim.connection_counts();
                let nat: Vec<usize> = sim
                    .slots()
                    .iter()
                    .zip(&counts)
                    .filter(|(s, _)| s.nat)
                    .map(|(_, &c)| c)
                    .collect();
                let public: Vec<usize> = sim
                    .slots()
                    .iter()
                    .zip(&counts)
                    .filter(|(s, _)| !s.nat)
                    .map(|(_, &c)| c)
                    .collect();
                let reached = nat.iter().filter(|&&c| c >= b.min_threshold).count();
                let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
                println!(
                    "nat: {} of {} NAT'd nodes have at least {} connections (min {}, mean {:.2}); public nodes mean {:.2}",
                    reached, nat.len(), b.min_threshold,
                    nat.iter().min().unwrap_or(&0), mean(&nat), mean(&public),
                );
                extra = json!({
                    "nat_nodes": nat.len(), "nat_reaching_min": reached,
                    "nat_min_connections": nat.iter().min(),
                    "nat_mean_connections": mean(&nat), "public_mean_connections": mean(&public),
                });
            }
            "gossip" => {
                let messages = args.messages;
                let size = args.size;
                let gossip = Gossip::start(&sim);
                let mut reach = Vec::new();
                let mut curves = Vec::new();
                for id in 0..messages {
                    let from = sim.rng().gen_range(0..nodes);
                    gossip.send(&sim, from, id, size);
                    tokio::time::sleep(Duration::from_secs(args.gossip_wait)).await;
                    let a = gossip.arrivals(id);
                    let r = |f| secs(reach_time(&a, nodes, f));
                    let reached = a.iter().flatten().count();
                    reach.push(json!({
                        "from": from, "reached": reached,
                        "t50_s": r(0.5), "t90_s": r(0.9), "t99_s": r(0.99), "t100_s": r(1.0),
                    }));
                    let mut times: Vec<f64> = a.iter().flatten().map(|d| d.as_secs_f64()).collect();
                    times.sort_by(f64::total_cmp);
                    curves.push(times);
                }
                drop(gossip);
                let t = |k: &str| {
                    let mut v: Vec<f64> = reach.iter().filter_map(|r| r[k].as_f64()).collect();
                    v.sort_by(f64::total_cmp);
                    v.get(v.len() / 2).copied()
                };
                let shown = |x: Option<f64>| x.map_or("never".to_string(), |x| format!("{x:.3} s"));
                println!(
                    "gossip: {messages} messages of {size} bytes: median time to 50 % {}, 90 % {}, 99 % {}",
                    shown(t("t50_s")), shown(t("t90_s")), shown(t("t99_s")),
                );
                // A new node's address: a node leaves, a new one takes its
                // slot; how many nodes know its point over time.
                let slot = sim.rng().gen_range(1..nodes);
                sim.replace(slot, Leave::Graceful).await.expect("join");
                let point = Point::new(sim.slots()[slot].ip, sim.config().port);
                let joined_at = tokio::time::Instant::now();
                let point_limit = Duration::from_secs(args.point_secs);
                let mut known_curve = Vec::new();
                let mut times = [None; 3];
                loop {
                    let knowing = sim
                        .nets
                        .iter()
                        .zip(sim.slots())
                        .enumerate()
                        .filter(|(i, (n, s))| {
                            *i != slot
                                && s.alive
                                && n.with_tables(|t| t.known_points.contains_key(&point))
                        })
                        .count();
                    let f = knowing as f64 / (nodes - 1) as f64;
                    let e = joined_at.elapsed();
                    known_curve.push((e.as_secs_f64(), f));
                    for (k, th) in [0.5, 0.9, 0.99].into_iter().enumerate() {
                        if times[k].is_none() && f >= th {
                            times[k] = Some(e);
                        }
                    }
                    if f >= 0.99 || e >= point_limit {
                        break;
                    }
                    tokio::time::sleep(every.max(Duration::from_secs(1))).await;
                }
                let last = known_curve.last().map_or(0.0, |p| p.1);
                println!(
                    "new point: known by {:.1} % of nodes after {:.0} s (50 % {}, 90 % {}, 99 % {})",
                    100.0 * last,
                    joined_at.elapsed().as_secs_f64(),
                    shown(times[0].map(|d| d.as_secs_f64())),
                    shown(times[1].map(|d| d.as_secs_f64())),
                    shown(times[2].map(|d| d.as_secs_f64())),
                );
                extra = json!({
                    "messages": messages, "size": size, "reach": reach,
                    "median_t50_s": t("t50_s"), "median_t90_s": t("t90_s"), "median_t99_s": t("t99_s"),
                    "curves_s": curves,
                    "new_point": {
                        "t50_s": secs(times[0]), "t90_s": secs(times[1]), "t99_s": secs(times[2]),
                        "fraction_at_end": last, "followed_s": joined_at.elapsed().as_secs_f64(),
                        "curve": known_curve,
                    },
                });
            }
            _ => {}
        }
        let totals = sim.totals();
        let end = t0.elapsed().as_secs_f64();
        r["scenario"] = extra;
        r["virtual_s"] = json!(end);
        r["totals"] = json!(totals);
        r["events"] = json!(sim.event_totals());
        r["per_node"] = per_node(&sim, end);
        r["timeline"] = timeline_json(&timeline);
        r["samples"] = json!(timeline.len());
        let wall_run = wall.elapsed();
        r["peak_memory_mib"] = json!(proc_status("VmHWM:").map(|k| k as f64 / 1024.0));
        r["wall_run_s"] = json!(wall_run.as_secs_f64());
        sim.shutdown().await;
        (r, timeline)
    });
    let (ref mut r, ref timeline) = results;
    r["wall_total_s"] = json!(wall.elapsed().as_secs_f64());
    r["load_average"] = json!({ "start": load_start, "end": loadavg() });
    r["params"] = params;
    println!(
        "peak memory (VmHWM) {:.1} MiB; wall {:.1} s; load average {} → {}",
        r["peak_memory_mib"].as_f64().unwrap_or(0.0),
        wall.elapsed().as_secs_f64(),
        load_start,
        loadavg()
    );
    println!(
        "totals: {}",
        serde_json::to_string(&r["totals"]).expect("json")
    );
    std::fs::create_dir_all(&out).expect("output directory");
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(r).expect("json"),
    )
    .expect("results.json");
    if plots {
        if let Err(e) = draw(&out, &scenario, nodes, r, timeline) {
            eprintln!("plots: {e}");
        }
    }
    println!("results in {}", out.display());
}

fn draw(
    out: &Path,
    scenario: &str,
    nodes: usize,
    r: &Value,
    timeline: &[Sample],
) -> Result<(), Box<dyn std::error::Error>> {
    let th = &r["params"]["thresholds"];
    let (lo, hi) = (
        th[0].as_u64().unwrap_or(0) as usize,
        th[1].as_u64().unwrap_or(0) as usize,
    );
    let pts = |f: &dyn Fn(&Sample) -> f64| timeline.iter().map(|s| (s.t, f(s))).collect();
    plot::lines(
        &out.join("connections.svg"),
        &format!("{scenario}, {nodes} nodes: connections per node"),
        "virtual time (s)",
        "connections",
        &[
            plot::Series {
                label: "min",
                points: pts(&|s| s.min as f64),
            },
            plot::Series {
                label: "mean",
                points: pts(&|s| s.mean),
            },
            plot::Series {
                label: "max",
                points: pts(&|s| s.max as f64),
            },
        ],
        None,
    )?;
    plot::lines(
        &out.join("convergence.svg"),
        &format!("{scenario}, {nodes} nodes: nodes within {lo}..={hi} connections"),
        "virtual time (s)",
        "fraction of live nodes",
        &[plot::Series {
            label: "within thresholds",
            points: pts(&|s| s.within as f64 / s.alive.max(1) as f64),
        }],
        Some((0.0, 1.02)),
    )?;
    let hist_key = if r["scenario"]["histogram_at_end"].is_array() {
        &r["scenario"]["histogram_at_end"]
    } else {
        &r["histogram_at_convergence"]
    };
    let hist: Vec<usize> = hist_key
        .as_array()
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(0) as usize).collect())
        .unwrap_or_default();
    plot::histogram(
        &out.join("degrees.svg"),
        &format!("{scenario}, {nodes} nodes: connections per node at the end"),
        &hist,
        lo,
        hi,
    )?;
    if scenario == "partition" {
        plot::lines(
            &out.join("components.svg"),
            &format!("partition, {nodes} nodes: connected components"),
            "virtual time (s)",
            "components",
            &[plot::Series {
                label: "components",
                points: timeline
                    .iter()
                    .filter_map(|s| s.components.map(|c| (s.t, c as f64)))
                    .collect(),
            }],
            None,
        )?;
    }
    if scenario == "gossip" {
        let mut series = Vec::new();
        let labels: Vec<String> = (0..r["scenario"]["curves_s"].as_array().map_or(0, Vec::len))
            .map(|i| format!("message {i}"))
            .collect();
        if let Some(curves) = r["scenario"]["curves_s"].as_array() {
            for (i, c) in curves.iter().enumerate().take(6) {
                let times: Vec<f64> = c
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                let points = times
                    .iter()
                    .enumerate()
                    .map(|(k, &t)| (t, (k + 1) as f64 / nodes as f64))
                    .collect();
                series.push(plot::Series {
                    label: &labels[i],
                    points,
                });
            }
        }
        plot::lines(
            &out.join("gossip.svg"),
            &format!("gossip, {nodes} nodes: fraction of nodes reached"),
            "time since sent (s)",
            "fraction of nodes",
            &series,
            Some((0.0, 1.02)),
        )?;
        let curve: Vec<(f64, f64)> = r["scenario"]["new_point"]["curve"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        plot::lines(
            &out.join("new_point.svg"),
            &format!("gossip, {nodes} nodes: nodes knowing a new node's address"),
            "time since it joined (s)",
            "fraction of nodes",
            &[plot::Series {
                label: "knowing the point",
                points: curve,
            }],
            Some((0.0, 1.02)),
        )?;
    }
    Ok(())
}

/// Joiners' paths to their minimum (churn): each new node's events from
/// its join, until it first has `min_threshold` connections (or 120 s).
mod joiners {
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::sync::{Arc, Mutex};

    use tezos_p2p::events::P2pEvent;
    use tezos_p2p::sim::{Leave, SimNet};
    use tokio::sync::broadcast::error::RecvError;
    use tokio::time::Instant;

    /// What a joiner's pool did, as far as its path to the minimum goes.
    #[derive(Clone, Copy, Debug)]
    pub enum Ev {
        /// A maintenance round (or re-check) began.
        Round,
        /// A dial started.
        Dial(IpAddr),
        /// The handshake of a dial failed (closed before it, …).
        AuthFailed(IpAddr),
        /// A dial was refused after the handshake (a Nack received).
        Nacked(IpAddr),
        /// We refused a handshake (Nack sent).
        Refusing,
        /// A connection started.
        Up(IpAddr),
        /// A connection ended.
        Down,
        /// Bootstrap sent to a peer.
        Bootstrap,
        /// A point became known.
        NewPoint,
        /// An incoming connection arrived.
        Incoming,
    }

    /// One joiner.
    pub struct Trace {
        pub slot: usize,
        /// Join time, seconds since the start of the run.
        pub joined: f64,
        /// Seconds from the join to `min` connections.
        pub reached: Option<f64>,
        /// Events, seconds after the join.
        pub log: Vec<(f64, Ev)>,
        pub lagged: bool,
        /// When it was replaced in turn (seconds since the start).
        pub left: Option<f64>,
    }

    impl Trace {
        /// Whether its time to the minimum is known within `horizon`:
        /// it joined at least `horizon` before `end`, and did not leave
        /// (replaced by the churn) before reaching its minimum within it.
        pub fn counted(&self, end: f64, horizon: f64) -> bool {
            let reached = self.reached.filter(|&r| r <= horizon);
            end - self.joined >= horizon
                && self.left.is_none_or(|l| {
                    l - self.joined >= horizon || reached.is_some_and(|r| self.joined + r <= l)
                })
        }
    }

    /// Every joiner's trace, and the fate of every address that left.
    #[derive(Default)]
    pub struct Joiners {
        pub traces: Arc<Mutex<Vec<Trace>>>,
        /// Address → how and when (seconds since the start) its node left.
        pub gone: HashMap<IpAddr, (Leave, f64)>,
    }

    impl Joiners {
        /// Follows the node that just joined `slot` (call before yielding).
        pub fn track(&self, net: &SimNet, slot: usize, t0: Instant, min: usize) {
            let mut rx = net.events();
            let start = Instant::now();
            let idx = {
                let mut t = self.traces.lock().unwrap();
                t.push(Trace {
                    slot,
                    joined: (start - t0).as_secs_f64(),
                    reached: None,
                    log: Vec::new(),
                    lagged: false,
                    left: None,
                });
                t.len() - 1
            };
            let traces = self.traces.clone();
            tokio::spawn(async move {
                let mut conns = 0usize;
                loop {
                    let e = match rx.recv().await {
                        Ok(e) => e,
                        Err(RecvError::Lagged(_)) => {
                            traces.lock().unwrap()[idx].lagged = true;
                            continue;
                        }
                        Err(RecvError::Closed) => return,
                    };
                    let t = start.elapsed().as_secs_f64();
                    let ev = match e {
                        P2pEvent::MaintenanceStarted => Ev::Round,
                        P2pEvent::OutgoingConnection { point } => Ev::Dial(point.ip()),
                        P2pEvent::AuthenticationFailed { point } => Ev::AuthFailed(point.ip()),
                        P2pEvent::RequestRejected { point, .. } => Ev::Nacked(point.ip()),
                        P2pEvent::RejectingRequest { .. } => Ev::Refusing,
                        P2pEvent::ConnectionEstablished { id_point, .. } => {
                            conns += 1;
                            Ev::Up(id_point.addr)
                        }
                        P2pEvent::Disconnection { .. } => {
                            conns = conns.saturating_sub(1);
                            Ev::Down
                        }
                        P2pEvent::BootstrapSent { .. } => Ev::Bootstrap,
                        P2pEvent::NewPoint { .. } => Ev::NewPoint,
                        P2pEvent::IncomingConnection { .. } => Ev::Incoming,
                        _ => continue,
                    };
                    let mut all = traces.lock().unwrap();
                    let tr = &mut all[idx];
                    tr.log.push((t, ev));
                    if conns >= min {
                        tr.reached = Some(t);
                        return;
                    }
                    if t > 120.0 {
                        return;
                    }
                }
            });
        }

        /// The node of `slot`, at `ip`, leaves at `t` (seconds since the
        /// start).
        pub fn left(&mut self, slot: usize, ip: IpAddr, how: Leave, t: f64) {
            self.gone.insert(ip, (how, t));
            if let Some(tr) = self
                .traces
                .lock()
                .unwrap()
                .iter_mut()
                .rev()
                .find(|tr| tr.slot == slot)
            {
                tr.left = Some(t);
            }
        }

        /// Times to the minimum of the joiners [`Trace::counted`]
        /// (`None`: not reached within the horizon), sorted, unreached
        /// last.
        pub fn times(&self, end: f64, horizon: f64) -> Vec<Option<f64>> {
            let t = self.traces.lock().unwrap();
            let mut v: Vec<Option<f64>> = t
                .iter()
                .filter(|tr| tr.counted(end, horizon))
                .map(|tr| tr.reached.filter(|&r| r <= horizon))
                .collect();
            v.sort_by(|a, b| match (a, b) {
                (Some(a), Some(b)) => a.total_cmp(b),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
            v
        }
    }

    /// Quantile of sorted times (`None` past the reached ones: > horizon).
    pub fn quantile(v: &[Option<f64>], q: f64) -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        v[(((v.len() - 1) as f64) * q).round() as usize]
    }

    /// How one joiner's dials ended, and where its time went.
    #[derive(Default, Debug, Clone, Copy)]
    pub struct Breakdown {
        pub dials: u32,
        pub up: u32,
        pub nacked: u32,
        pub auth_failed: u32,
        /// No outcome event: the target had crashed (10 s timeout).
        pub to_crashed: u32,
        /// No outcome event: the target had left gracefully (refused).
        pub to_left: u32,
        /// No outcome event, target alive (or outcome after the horizon).
        pub silent: u32,
        /// Dials to node 0.
        pub to_node0: u32,
        pub rounds: u32,
        pub bootstraps: u32,
        pub new_points: u32,
        pub incoming: u32,
        pub refusing: u32,
        /// Seconds below the minimum with no dial in flight.
        pub idle: f64,
        /// Seconds below the minimum whose dials in flight all go to
        /// crashed hosts.
        pub only_dead: f64,
        /// The longest stretch with no dial in flight.
        pub longest_idle: f64,
    }

    impl std::ops::AddAssign for Breakdown {
        fn add_assign(&mut self, b: Breakdown) {
            self.dials += b.dials;
            self.up += b.up;
            self.nacked += b.nacked;
            self.auth_failed += b.auth_failed;
            self.to_crashed += b.to_crashed;
            self.to_left += b.to_left;
            self.silent += b.silent;
            self.to_node0 += b.to_node0;
            self.rounds += b.rounds;
            self.bootstraps += b.bootstraps;
            self.new_points += b.new_points;
            self.incoming += b.incoming;
            self.refusing += b.refusing;
            self.idle += b.idle;
            self.only_dead += b.only_dead;
            self.longest_idle += b.longest_idle;
        }
    }

    /// The breakdown of `tr` up to `until` seconds after its join.
    pub fn breakdown(
        tr: &Trace,
        gone: &HashMap<IpAddr, (Leave, f64)>,
        node0: IpAddr,
        until: f64,
    ) -> Breakdown {
        let mut b = Breakdown::default();
        // Open dials: ip → (start, dead target).
        let mut open: Vec<(IpAddr, f64, bool)> = Vec::new();
        // Intervals of each dial, to measure idle time.
        let mut spans: Vec<(f64, f64, bool)> = Vec::new();
        let close = |open: &mut Vec<(IpAddr, f64, bool)>,
                     spans: &mut Vec<(f64, f64, bool)>,
                     ip: IpAddr,
                     t: f64|
         -> bool {
            if let Some(k) = open.iter().position(|o| o.0 == ip) {
                let (_, s, dead) = open.remove(k);
                spans.push((s, t, dead));
                true
            } else {
                false
            }
        };
        for &(t, ev) in tr.log.iter().filter(|(t, _)| *t <= until) {
            match ev {
                Ev::Round => b.rounds += 1,
                Ev::Dial(ip) => {
                    b.dials += 1;
                    if ip == node0 {
                        b.to_node0 += 1;
                    }
                    let dead = gone
                        .get(&ip)
                        .is_some_and(|&(how, at)| how == Leave::Crash && at <= tr.joined + t);
                    open.push((ip, t, dead));
                }
                Ev::AuthFailed(ip) => {
                    if close(&mut open, &mut spans, ip, t) {
                        b.auth_failed += 1;
                    }
                }
                Ev::Nacked(ip) => {
                    if close(&mut open, &mut spans, ip, t) {
                        b.nacked += 1;
                    }
                }
                Ev::Up(ip) => {
                    if close(&mut open, &mut spans, ip, t) {
                        b.up += 1;
                    }
                }
                Ev::Refusing => b.refusing += 1,
                Ev::Down => {}
                Ev::Bootstrap => b.bootstraps += 1,
                Ev::NewPoint => b.new_points += 1,
                Ev::Incoming => b.incoming += 1,
            }
        }
        let end = tr.reached.unwrap_or(until).min(until);
        for (ip, s, dead) in open {
            let fate = gone.get(&ip).filter(|&&(_, at)| at <= tr.joined + s);
            match fate {
                Some((Leave::Crash, _)) => {
                    b.to_crashed += 1;
                    spans.push((s, (s + 10.0).min(end), dead));
                }
                Some((Leave::Graceful, _)) => {
                    b.to_left += 1;
                    spans.push((s, (s + 0.3).min(end), dead));
                }
                None => {
                    b.silent += 1;
                    spans.push((s, end, dead));
                }
            }
        }
        // Sweep: idle = no span covers; only_dead = every covering span dead.
        let mut pts: Vec<f64> = spans.iter().flat_map(|s| [s.0, s.1]).collect();
        pts.push(0.0);
        pts.push(end);
        pts.sort_by(f64::total_cmp);
        pts.dedup();
        let mut run = 0.0f64;
        for w in pts.windows(2) {
            let (a, z) = (w[0], w[1]);
            if z > end || a >= end {
                break;
            }
            let mid = (a + z) / 2.0;
            let cover: Vec<bool> = spans
                .iter()
                .filter(|s| s.0 <= mid && mid < s.1)
                .map(|s| s.2)
                .collect();
            if cover.is_empty() {
                b.idle += z - a;
                run += z - a;
                b.longest_idle = b.longest_idle.max(run);
            } else {
                run = 0.0;
                if cover.iter().all(|&d| d) {
                    b.only_dead += z - a;
                }
            }
        }
        b
    }
}
