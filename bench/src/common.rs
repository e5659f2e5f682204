//! Shared pieces: the counting allocator, our connection setup, the
//! results table and its JSON form.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use tezos_p2p::scheduler::IoScheduler;
use tezos_p2p::socket::{authenticate, AcceptOptions, AuthConfig, Connection};
use tezos_p2p::transport::{BoxStream, Listener, TcpOptions, Transport};
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

/// `--only a,b`: the implementations to run (all when empty).
pub static ONLY: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

pub fn selected(imp: &str) -> bool {
    ONLY.get()
        .is_none_or(|o| o.is_empty() || o.iter().any(|x| x == imp))
}

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

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// ---------------------------------------------------------------------------
// Our stack, set up as in crates/tezos-p2p/examples/bench_socket.rs.

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

/// A connected, authenticated, accepted pair (client, server).
pub async fn ours_pair(sched: &IoScheduler) -> (Conn, Conn) {
    let t = transport();
    let listener: Listener = t.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let saddr = listener.local_addr();
    let (cid, sid) = (identity(1), identity(2));
    let (c, s) = tokio::join!(ours_dial(&t, sched, &cid, saddr), async {
        let (stream, caddr) = listener.accept().await.unwrap();
        ours_serve(stream, caddr, sched, &sid).await
    });
    (c.unwrap(), s.unwrap())
}

pub fn raw(body_len: usize) -> P2pMessage<RawMessage> {
    P2pMessage::Message(RawMessage {
        tag: 0x10,
        body: (0..body_len).map(|i| i as u8).collect(),
    })
}

// ---------------------------------------------------------------------------
// Results.

pub struct Row {
    pub bench: &'static str,
    pub imp: String,
    pub metric: String,
    pub unit: &'static str,
    pub samples: Vec<f64>,
}

impl Row {
    pub fn median(&self) -> f64 {
        let mut v = self.samples.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = v.len();
        if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    pub fn min(&self) -> f64 {
        self.samples.iter().cloned().fold(f64::INFINITY, f64::min)
    }
    pub fn max(&self) -> f64 {
        self.samples
            .iter()
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

pub struct Goal {
    pub bench: &'static str,
    pub what: String,
    pub value: f64,
    pub unit: &'static str,
    pub target: String,
    pub met: bool,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub goals: Vec<Goal>,
    pub notes: Vec<String>,
}

impl Report {
    /// Adds one sample to the row (bench, impl, metric), creating it.
    pub fn add(
        &mut self,
        bench: &'static str,
        imp: &str,
        metric: &str,
        unit: &'static str,
        v: f64,
    ) {
        if let Some(r) = self
            .rows
            .iter_mut()
            .find(|r| r.bench == bench && r.imp == imp && r.metric == metric)
        {
            r.samples.push(v);
        } else {
            self.rows.push(Row {
                bench,
                imp: imp.to_owned(),
                metric: metric.to_owned(),
                unit,
                samples: vec![v],
            });
        }
    }

    pub fn median(&self, bench: &str, imp: &str, metric: &str) -> f64 {
        self.rows
            .iter()
            .find(|r| r.bench == bench && r.imp == imp && r.metric == metric)
            .map_or(f64::NAN, Row::median)
    }

    pub fn goal(
        &mut self,
        bench: &'static str,
        what: impl Into<String>,
        value: f64,
        unit: &'static str,
        target: impl Into<String>,
        met: bool,
    ) {
        self.goals.push(Goal {
            bench,
            what: what.into(),
            value,
            unit,
            target: target.into(),
            met,
        });
    }

    pub fn print_table(&self, out: &mut dyn std::io::Write) {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| bench | impl | metric | median | min | max | unit | runs |"
        );
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---|---:|");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.bench,
                r.imp,
                r.metric,
                fmt(r.median()),
                fmt(r.min()),
                fmt(r.max()),
                r.unit,
                r.samples.len()
            );
        }
        if !self.goals.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "| bench | goal (medians of this run) | value | target | met |"
            );
            let _ = writeln!(out, "|---|---|---:|---|---|");
            for g in &self.goals {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} {} | {} | {} |",
                    g.bench,
                    g.what,
                    fmt(g.value),
                    g.unit,
                    g.target,
                    if g.met { "yes" } else { "**no**" }
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "{n}");
        }
    }

    pub fn print_json(&self) {
        for r in &self.rows {
            for (stat, v) in [("median", r.median()), ("min", r.min()), ("max", r.max())] {
                println!(
                    "{{\"bench\": {}, \"impl\": {}, \"metric\": {}, \"value\": {}, \"unit\": {}}}",
                    js(r.bench),
                    js(&r.imp),
                    js(&format!("{}.{}", r.metric, stat)),
                    jnum(v),
                    js(r.unit)
                );
            }
        }
        for g in &self.goals {
            println!(
                "{{\"bench\": {}, \"impl\": \"goal\", \"metric\": {}, \"value\": {}, \"unit\": {}, \"target\": {}, \"met\": {}}}",
                js(g.bench),
                js(&g.what),
                jnum(g.value),
                js(g.unit),
                js(&g.target),
                g.met
            );
        }
    }
}

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn js(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn jnum(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}
