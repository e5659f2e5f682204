//! Throughput of the wire core's hot paths: proof-of-work search and chunk
//! sealing/opening.
//!
//! ```text
//! cargo run --release -p tezos-p2p-wire --example bench_wire [seconds] [repeats]
//! ```
//!
//! `seconds` (default 2) is the length of one measurement and each number
//! is the best of `repeats` (default 3) runs, which filters out other load
//! on a shared machine. Reference loops over `blake2b_simd` give the
//! "limit" the PoW search is compared with.

use std::hint::black_box;
use std::time::Instant;

use tezos_p2p_wire::crypto::{ChunkCipher, Nonce, SessionKey, MAX_CHUNK_PLAINTEXT};
use tezos_p2p_wire::identity::SecretKey;

#[path = "support/pow.rs"]
mod pow;
use pow::{blake_many, blake_one_lane, pow_search, run_on};

const GIB: f64 = (1u64 << 30) as f64;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn time_per_iter(secs: f64, mut f: impl FnMut()) -> f64 {
    // Warm up.
    for _ in 0..16 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    start.elapsed().as_secs_f64() / n as f64
}

/// The best of `repeats` runs of a rate (higher is better).
fn best(repeats: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..repeats).map(|_| f()).fold(0.0, f64::max)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().map_or(2.0, |s| s.parse().expect("seconds"));
    let repeats: usize = args.next().map_or(3, |s| s.parse().expect("repeats"));
    let r = repeats.max(1);
    let pk = SecretKey([7; 32]).public_key();
    let n = cores();
    println!(
        "cores: {n}, blake2b_simd degree: {}",
        blake2b_simd::many::degree()
    );
    println!();
    println!("== Proof of work (Blake2b-256 of 56 bytes) ==");
    let all = best(r, || pow_search(&pk, 0, secs));
    println!("generate_stamp, {n} threads : {:8.2} M hashes/s", all / 1e6);
    let one = best(r, || pow_search(&pk, 1, secs));
    println!("generate_stamp, 1 thread   : {:8.2} M hashes/s", one / 1e6);
    let l1 = best(r, || run_on(1, secs, || blake_one_lane(&pk)));
    println!("blake2b_simd 1 lane, 1 thr : {:8.2} M hashes/s", l1 / 1e6);
    let l4 = best(r, || run_on(1, secs, || blake_many::<4>(&pk)));
    println!("hash_many 4 lanes, 1 thr   : {:8.2} M hashes/s", l4 / 1e6);
    let l8 = best(r, || run_on(1, secs, || blake_many::<8>(&pk)));
    println!("hash_many 8 lanes, 1 thr   : {:8.2} M hashes/s", l8 / 1e6);
    let l4n = best(r, || run_on(n, secs, || blake_many::<4>(&pk)));
    println!(
        "hash_many 4 lanes, {n} thr   : {:8.2} M hashes/s",
        l4n / 1e6
    );
    println!(
        "search / limit: all cores {:.0}%, one thread {:.0}%",
        100.0 * all / l4n,
        100.0 * one / l4
    );

    println!();
    println!("== Chunks ({MAX_CHUNK_PLAINTEXT}-byte plaintext, one core) ==");
    let a = SecretKey([1; 32]);
    let b = SecretKey([2; 32]);
    let key = SessionKey::precompute(&b.public_key(), &a).unwrap();
    let nonce = Nonce([9; 24]);
    let plaintext = vec![0x5au8; MAX_CHUNK_PLAINTEXT];
    let bytes = MAX_CHUNK_PLAINTEXT as f64;

    // Seal: framing, copy of the plaintext and encryption, into a reused buffer.
    let mut tx = ChunkCipher::new(key.clone(), nonce);
    let mut out = Vec::with_capacity(MAX_CHUNK_PLAINTEXT + 18);
    let seal = best(r, || {
        bytes
            / time_per_iter(secs, || {
                out.clear();
                tx.seal_chunk(black_box(&plaintext), &mut out).unwrap();
                black_box(&out);
            })
    });
    println!("seal_chunk                 : {:8.2} GiB/s", seal / GIB);

    // Raw in-place seal, no copy.
    let mut buf = plaintext.clone();
    let mut nn = nonce;
    let raw = best(r, || {
        bytes
            / time_per_iter(secs, || {
                black_box(key.seal_in_place(&nn.fetch_increment(), &mut buf));
            })
    });
    println!("seal_in_place (no copy)    : {:8.2} GiB/s", raw / GIB);

    // Open: each iteration copies the sealed body back (a 64 KiB memcpy)
    // and opens it with a cipher at its nonce.
    let mut sealed = Vec::new();
    ChunkCipher::new(key.clone(), nonce)
        .seal_chunk(&plaintext, &mut sealed)
        .unwrap();
    let body = sealed[2..].to_vec();
    let mut work = body.clone();
    let open = best(r, || {
        bytes
            / time_per_iter(secs, || {
                work.copy_from_slice(&body);
                let mut rx = ChunkCipher::new(key.clone(), nonce);
                black_box(rx.open_chunk(&mut work).unwrap());
            })
    });
    println!("open_chunk (incl. copy)    : {:8.2} GiB/s", open / GIB);

    // Both: seal a chunk and open it again.
    let mut tx = ChunkCipher::new(key.clone(), nonce);
    let mut rx = ChunkCipher::new(key.clone(), nonce);
    let both = best(r, || {
        bytes
            / time_per_iter(secs, || {
                out.clear();
                tx.seal_chunk(black_box(&plaintext), &mut out).unwrap();
                black_box(rx.open_chunk(&mut out[2..]).unwrap());
            })
    });
    println!("seal + open                : {:8.2} GiB/s", both / GIB);
}
