//! tezos-p2p against rust-libp2p 0.57 over loopback TCP.
//!
//! ```text
//! cargo run --release --manifest-path bench/Cargo.toml -- [all|handshake|throughput|memory|pow] [--json]
//!     [--reps 5] [--secs 2] [--volume-mib 2048] [--small-volume-mib 64] [--conns 1000,5000]
//!     [--only IMPL,IMPL]   (e.g. --only tezos-p2p, for profiling one implementation)
//! ```
//!
//! Every bench runs its implementations interleaved (ours, theirs, ours,
//! theirs, …) `--reps` times and reports the median, min and max. Progress
//! goes to stderr; the table goes to stdout, or with `--json` one JSON
//! object per line (`{"bench", "impl", "metric", "value", "unit"}`; the
//! metric ends in `.median`, `.min` or `.max`; goal lines have
//! `"impl": "goal"` plus `target` and `met`) while the table goes to stderr.

mod common;
mod handshake;
mod memory;
mod pow;
#[path = "../../crates/tezos-p2p/examples/support/mod.rs"]
mod support;
mod throughput;

use common::*;

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Opts {
    what: String,
    json: bool,
    reps: usize,
    secs: f64,
    volume: u64,
    small_volume: u64,
    conns: Vec<usize>,
}

fn usage() -> ! {
    eprintln!(
        "usage: tezos-p2p-bench [all|handshake|throughput|memory|pow] [--json] [--reps N] [--secs S] \
         [--volume-mib M] [--small-volume-mib M] [--conns 1000,5000] [--only IMPL,...]"
    );
    std::process::exit(2)
}

fn parse() -> Opts {
    let mut o = Opts {
        what: "all".into(),
        json: false,
        reps: 5,
        secs: 2.0,
        volume: 2048 << 20,
        small_volume: 64 << 20,
        conns: vec![1000, 5000],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--json" => o.json = true,
            "--reps" => o.reps = val().parse().unwrap_or_else(|_| usage()),
            "--secs" => o.secs = val().parse().unwrap_or_else(|_| usage()),
            "--volume-mib" => o.volume = val().parse::<u64>().unwrap_or_else(|_| usage()) << 20,
            "--small-volume-mib" => {
                o.small_volume = val().parse::<u64>().unwrap_or_else(|_| usage()) << 20
            }
            "--conns" => {
                o.conns = val()
                    .split(',')
                    .map(|s| s.parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--only" => {
                let _ = ONLY.set(val().split(',').map(str::to_owned).collect());
            }
            "all" | "handshake" | "throughput" | "memory" | "pow" => o.what = a,
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    o
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default()
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("memory-client") {
        // Child process of the memory bench: memory-client <impl> <addr> <n>.
        memory::client_main(&argv[2], &argv[3], argv[4].parse().unwrap());
        return;
    }
    let o = parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let load0 = loadavg();
    eprintln!(
        "tezos-p2p-bench {}: {} cores ({}), tokio multi-thread runtime, RLIMIT_NOFILE {}, load average {load0}",
        o.what,
        cores(),
        cpu_model(),
        nofile_limit()
    );
    let mut report = Report::default();
    let all = o.what == "all";
    rt.block_on(async {
        if all || o.what == "handshake" {
            handshake::run(&mut report, o.reps, o.secs).await;
        }
        if all || o.what == "throughput" {
            throughput::run(&mut report, o.reps, o.volume, o.small_volume).await;
        }
        if all || o.what == "memory" {
            memory::run(&mut report, o.reps, &o.conns).await;
        }
    });
    if all || o.what == "pow" {
        pow::run(&mut report, o.reps, o.secs);
    }
    report.notes.push(format!(
        "\n{} cores ({}), load average at start {load0}, at end {}; {} runs per measurement",
        cores(),
        cpu_model(),
        loadavg(),
        o.reps
    ));
    if o.json {
        report.print_table(&mut std::io::stderr());
        report.print_json();
    } else {
        report.print_table(&mut std::io::stdout());
    }
}
