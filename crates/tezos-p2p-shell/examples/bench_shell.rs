//! Decoding and encoding throughput of the shell codec on real messages:
//! the captured session's messages (the 132 `captured-*` vectors of
//! `shared/vectors/shell_messages.json`, 6 B to 1.6 KB, 38 KB in all) and
//! the largest real message, TezEdge's 170 KB
//! `Operations_for_blocks` (`shell_messages_large.json`).
//!
//! ```text
//! cargo run --release -p tezos-p2p-shell --example bench_shell [seconds]
//! ```
//!
//! Each figure is the median of 5 runs sharing `seconds` (default 2) and
//! counts the bytes of tag and body (what the size field counts).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;
use tezos_p2p_shell::ShellMessage;
use tezos_p2p_wire::message::{AppMessage, MessageDecoder, P2pMessage};

const MIB: f64 = (1u64 << 20) as f64;
const RUNS: usize = 5;
const HUGE: &str = "fixture-tezedge-resource-operations_for_blocks-mainnet-huge";

fn vectors(file: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).expect("JSON");
    json["vectors"].as_array().expect("vectors").clone()
}

/// `tag ‖ body` of the valid vectors whose name passes `keep`.
fn messages(file: &str, keep: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    vectors(file)
        .iter()
        .filter(|v| v["kind"] == "shell_message" && keep(v["name"].as_str().unwrap()))
        .map(|v| hex::decode(v["inputs"]["hex"].as_str().unwrap()).unwrap())
        .collect()
}

/// Median MiB/s of `RUNS` runs of `secs / RUNS` seconds each; `f` handles
/// `bytes` bytes per call.
fn rate(secs: f64, bytes: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..8 {
        f();
    }
    let per_run = secs / RUNS as f64;
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed().as_secs_f64() < per_run {
                for _ in 0..8 {
                    f();
                }
                n += 8;
            }
            n as f64 * bytes as f64 / start.elapsed().as_secs_f64() / MIB
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}

fn decode_all(set: &[Vec<u8>]) {
    for m in set {
        let tag = u16::from_be_bytes([m[0], m[1]]);
        black_box(ShellMessage::decode(tag, black_box(&m[2..])).expect("valid"));
    }
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .map_or(2.0, |s| s.parse().expect("seconds"));
    let captured = messages("shell_messages.json", |n| n.starts_with("captured-"));
    let huge = messages("shell_messages_large.json", |n| n == HUGE);
    assert_eq!(huge.len(), 1, "{HUGE} not found");
    let captured_bytes: usize = captured.iter().map(Vec::len).sum();
    let huge_bytes = huge[0].len();
    println!(
        "captured set: {} messages, {captured_bytes} bytes; {HUGE}: {huge_bytes} bytes",
        captured.len()
    );

    let decoded: Vec<ShellMessage> = captured
        .iter()
        .chain(&huge)
        .map(|m| ShellMessage::from_bytes(m).expect("valid"))
        .collect();
    let (dec_captured, dec_huge) = decoded.split_at(captured.len());

    let r = rate(secs, captured_bytes, || decode_all(&captured));
    println!("decode, captured set:        {r:8.0} MiB/s");
    let r = rate(secs, huge_bytes, || decode_all(&huge));
    println!("decode, 170 KB message:      {r:8.0} MiB/s");

    // The same message through the wire crate's stream decoder (body copy
    // into its buffer included).
    let mut wire = ((huge_bytes as u32).to_be_bytes()).to_vec();
    wire.extend_from_slice(&huge[0]);
    let mut d = MessageDecoder::<ShellMessage>::new();
    let r = rate(secs, huge_bytes, || {
        d.feed(&wire);
        match d.next() {
            Ok(Some((_, P2pMessage::Message(m)))) => {
                black_box(m);
            }
            other => panic!("{other:?}"),
        }
    });
    println!("stream decoder, 170 KB:      {r:8.0} MiB/s");

    let mut out = Vec::with_capacity(huge_bytes);
    let r = rate(secs, captured_bytes, || {
        for m in dec_captured {
            out.clear();
            m.encode_body(&mut out).unwrap();
            black_box(&out);
        }
    });
    println!("encode, captured set:        {r:8.0} MiB/s");
    let r = rate(secs, huge_bytes, || {
        out.clear();
        dec_huge[0].encode_body(&mut out).unwrap();
        black_box(&out);
    });
    println!("encode, 170 KB message:      {r:8.0} MiB/s");
}
