//! Hashes/s of identity generation (`identity::generate_stamp` on all
//! cores, against an unreachable target, from its own progress reports)
//! against a plain 4-lane Blake2b loop (`blake2b_simd::many::hash_many`
//! over 56-byte inputs) on all cores. As in
//! crates/tezos-p2p-wire/examples/bench_wire.rs.

use tezos_p2p::wire::identity::SecretKey;

use crate::common::*;

#[path = "../../crates/tezos-p2p-wire/examples/support/pow.rs"]
mod support_pow;
use support_pow::{blake_many, pow_search, run_on};

pub const BENCH: &str = "pow";

pub fn run(report: &mut Report, reps: usize, secs: f64) {
    let n = cores();
    eprintln!(
        "== pow ({secs} s per run, {n} threads, blake2b_simd degree {}, {reps} runs interleaved; load {}) ==",
        blake2b_simd::many::degree(),
        loadavg()
    );
    let pk = SecretKey([7; 32]).public_key();
    let metric = format!("hashes_{n}threads");
    for rep in 0..reps {
        if selected("tezos-p2p-generate_stamp") {
            // Measured from 0.3 s to 0.3 s + `secs`.
            let a = pow_search(&pk, 0, secs + 0.3);
            eprintln!(
                "  run {rep} generate_stamp : {:.2} M hashes/s (load {})",
                a / 1e6,
                loadavg()
            );
            report.add(
                BENCH,
                "tezos-p2p-generate_stamp",
                &metric,
                "Mhash/s",
                a / 1e6,
            );
        }
        if selected("blake2b-4lane-loop") {
            let b = run_on(n, secs, || blake_many::<4>(&pk));
            eprintln!(
                "  run {rep} blake2b 4-lane : {:.2} M hashes/s (load {})",
                b / 1e6,
                loadavg()
            );
            report.add(BENCH, "blake2b-4lane-loop", &metric, "Mhash/s", b / 1e6);
        }
    }
    let r = report.median(BENCH, "tezos-p2p-generate_stamp", &metric)
        / report.median(BENCH, "blake2b-4lane-loop", &metric);
    report.goal(
        BENCH,
        "generate_stamp / plain 4-lane Blake2b loop",
        100.0 * r,
        "%",
        ">= 90 %",
        r >= 0.9,
    );
}
