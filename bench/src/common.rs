//! Shared pieces: the counting allocator and our connection setup (from
//! crates/tezos-p2p/examples/support, re-exported), the results table and
//! its JSON form.

use tezos_p2p::scheduler::IoScheduler;
use tezos_p2p::transport::Listener;

pub use crate::support::*;

// ---------------------------------------------------------------------------
// Machine state.

/// `--only a,b`: the implementations to run (all when empty).
pub static ONLY: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

pub fn selected(imp: &str) -> bool {
    ONLY.get()
        .is_none_or(|o| o.is_empty() || o.iter().any(|x| x == imp))
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// ---------------------------------------------------------------------------
// Our stack, set up as in crates/tezos-p2p/examples/bench_socket.rs.

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
