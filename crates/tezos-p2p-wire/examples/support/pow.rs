//! Proof-of-work measurements shared by `bench_wire` and the benchmark
//! crate in `bench/` (which includes this file with `#[path]`): the search
//! rate of `generate_stamp` and plain Blake2b reference loops.

#![allow(dead_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use blake2b_simd::many::{hash_many, HashManyJob};
use tezos_p2p_wire::identity::{generate_stamp, PowSearch, PowTarget, PublicKey};

/// Hashes per second of `generate_stamp` on `threads` threads (0: all
/// cores) against an unreachable target, from its own progress reports,
/// measured from 0.3 s (after the ramp-up) and cancelled once `stop_at`
/// seconds have elapsed.
pub fn pow_search(pk: &PublicKey, threads: usize, stop_at: f64) -> f64 {
    // Level 256: only an all-zero hash passes.
    let target = PowTarget::new(256.0).unwrap();
    let cancel = AtomicBool::new(false);
    let search = PowSearch {
        threads,
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
        if p.elapsed.as_secs_f64() >= stop_at {
            cancel.store(true, Ordering::Relaxed);
        }
    });
    assert!(found.is_none(), "an unreachable target was reached");
    let (a0, t0) = first.expect("progress was reported");
    let (a1, t1) = last.unwrap();
    (a1 - a0) as f64 / (t1 - t0).as_secs_f64()
}

/// Runs `f` (which returns how many items it did) on `threads` threads for
/// `secs` and returns items per second over all of them.
pub fn run_on(threads: usize, secs: f64, f: impl Fn() -> u64 + Sync) -> f64 {
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

/// One-lane Blake2b-256 of 56-byte inputs (one compression each).
pub fn blake_one_lane(pk: &PublicKey) -> u64 {
    let mut params = blake2b_simd::Params::new();
    params.hash_length(32);
    let mut input = [0u8; 56];
    input[..32].copy_from_slice(&pk.0);
    const N: u64 = 1 << 16;
    for i in 0..N {
        input[48..56].copy_from_slice(&i.to_le_bytes());
        black_box(params.hash(black_box(&input)));
    }
    N
}

/// `hash_many` over batches of `LANES` 56-byte inputs (`pk ‖ stamp`).
pub fn blake_many<const LANES: usize>(pk: &PublicKey) -> u64 {
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
