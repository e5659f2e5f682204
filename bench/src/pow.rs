//! Hashes/s of identity generation (`identity::generate_stamp` on all
//! cores, against an unreachable target, from its own progress reports)
//! against a plain 4-lane Blake2b loop (`blake2b_simd::many::hash_many`
//! over 56-byte inputs) on all cores. As in
//! crates/tezos-p2p-wire/examples/bench_wire.rs.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use blake2b_simd::many::{hash_many, HashManyJob};
use tezos_p2p::wire::identity::{generate_stamp, PowSearch, PowTarget, PublicKey, SecretKey};

use crate::common::*;

pub const BENCH: &str = "pow";

fn pow_search(pk: &PublicKey, secs: f64) -> f64 {
    // Level 256: only an all-zero hash passes.
    let target = PowTarget::new(256.0).unwrap();
    let cancel = AtomicBool::new(false);
    let search = PowSearch {
        threads: 0,
        cancel: Some(&cancel),
        progress_every: Duration::from_millis(100),
    };
    let mut first = None;
    let mut last = None;
    let found = generate_stamp(pk, &target, &search, |p| {
        // Skip the ramp-up (thread start) before measuring.
        if p.elapsed.as_secs_f64() >= 0.3 && first.is_none() {
            first = Some((p.attempts, p.elapsed));
        }
        last = Some((p.attempts, p.elapsed));
        if p.elapsed.as_secs_f64() >= secs + 0.3 {
            cancel.store(true, Ordering::Relaxed);
        }
    });
    assert!(found.is_none(), "an unreachable target was reached");
    let (a0, t0) = first.expect("progress was reported");
    let (a1, t1) = last.unwrap();
    (a1 - a0) as f64 / (t1 - t0).as_secs_f64()
}

fn run_on(threads: usize, secs: f64, f: impl Fn() -> u64 + Sync) -> f64 {
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed().as_secs_f64() < secs {
                        n += f();
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// `hash_many` over batches of 4 56-byte inputs (`pk ‖ stamp`).
fn blake_many4(pk: &PublicKey) -> u64 {
    const LANES: usize = 4;
    let mut params = blake2b_simd::Params::new();
    params.hash_length(32);
    let mut inputs = [[0u8; 56]; LANES];
    for input in inputs.iter_mut() {
        input[..32].copy_from_slice(&pk.0);
    }
    const ROUNDS: u64 = 1 << 13;
    let mut ctr = 0u64;
    for _ in 0..ROUNDS {
        for input in inputs.iter_mut() {
            input[48..56].copy_from_slice(&ctr.to_le_bytes());
            ctr += 1;
        }
        let mut jobs: [HashManyJob; LANES] =
            std::array::from_fn(|i| HashManyJob::new(&params, &inputs[i]));
        hash_many(jobs.iter_mut());
        for job in &jobs {
            black_box(job.to_hash());
        }
    }
    ROUNDS * LANES as u64
}

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
            let a = pow_search(&pk, secs);
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
            let b = run_on(n, secs, || blake_many4(&pk));
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
