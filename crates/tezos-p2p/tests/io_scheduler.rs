//! Octez's `test_p2p_io_scheduler` (octez-p2p-tests §1.5) and the fairness
//! of a capped upload, over loopback TCP.
//!
//! These measure rates over real time; the caps are far below what
//! loopback carries, so the limiter alone sets the rates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};
use tezos_p2p::socket::{AcceptOptions, SocketError};

mod common;
use common::*;

/// 8 clients capped at 256 KiB/s each write messages of random sizes
/// (64 B to 64 KiB) to a server capped at 1 MiB/s download; everything ends
/// cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trivial_quota() {
    let server_sched = IoScheduler::new(SchedulerConfig {
        max_download_speed: Some(1 << 20),
        read_buffer_size: 16_384,
        ..SchedulerConfig::default()
    });
    let opts = AcceptOptions {
        incoming_message_queue_size: 16_384,
        outgoing_message_queue_size: 16_384,
        ..AcceptOptions::default()
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client_sched = IoScheduler::new(SchedulerConfig {
            max_upload_speed: Some(256 << 10),
            read_buffer_size: 4096,
            ..SchedulerConfig::default()
        });
        let (c, s) = connected_pair_on(&client_sched, &server_sched, opts.clone()).await;
        tasks.push(tokio::spawn(async move {
            let reader = tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    match s.read().await {
                        Ok((size, _)) => n += size as u64,
                        Err(SocketError::ConnectionClosed) => return n,
                        Err(e) => panic!("server read failed: {e}"),
                    }
                }
            });
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            let mut sent = 0u64;
            while tokio::time::Instant::now() < deadline {
                let size = 64usize << (rand::random::<u32>() % 11);
                c.write(&app(0x10, vec![0; size])).await.unwrap();
                sent += size as u64 + 6;
            }
            c.close(true).await;
            let received = reader.await.unwrap();
            assert_eq!(received, sent);
            drop(client_sched);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(server_sched.stat().total_recv > 0);
}

/// Connections sharing a capped upload each get a fair share of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_upload_is_shared_fairly() {
    capped_direction_is_shared_fairly(true).await
}

/// Connections sharing a capped download each get a fair share of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_download_is_shared_fairly() {
    capped_direction_is_shared_fairly(false).await
}

/// 8 connections, each written to as fast as it goes, share a cap of
/// 1 MiB/s on the senders' upload (`upload`) or the receivers' download:
/// the aggregate is within ±10 % of the cap, each within ±25 % of its share.
async fn capped_direction_is_shared_fairly(upload: bool) {
    const CAP: u64 = 1 << 20;
    const CONNS: usize = 8;
    let (sender_sched, receiver_sched) = if upload {
        let capped = SchedulerConfig {
            max_upload_speed: Some(CAP),
            ..SchedulerConfig::default()
        };
        (capped, SchedulerConfig::default())
    } else {
        let capped = SchedulerConfig {
            max_download_speed: Some(CAP),
            ..SchedulerConfig::default()
        };
        (SchedulerConfig::default(), capped)
    };
    let (sender_sched, receiver_sched) = (
        IoScheduler::new(sender_sched),
        IoScheduler::new(receiver_sched),
    );
    let opts = AcceptOptions {
        outgoing_message_queue_size: 64 << 10,
        ..AcceptOptions::default()
    };
    let mut counters = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        let (c, s) = connected_pair_on(&sender_sched, &receiver_sched, opts.clone()).await;
        let received = Arc::new(AtomicU64::new(0));
        counters.push(received.clone());
        tokio::spawn(async move {
            while let Ok((size, _)) = s.read().await {
                received.fetch_add(size as u64, Ordering::Relaxed);
            }
        });
        let writer = c.clone();
        tokio::spawn(async move { while writer.write(&app(0x10, vec![0; 4000])).await.is_ok() {} });
        conns.push(c);
    }
    // Let the first second's burst pass, then measure a steady window.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let start: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let t0 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secs = t0.elapsed().as_secs_f64();
    let rates: Vec<f64> = counters
        .iter()
        .zip(&start)
        .map(|(c, s)| (c.load(Ordering::Relaxed) - s) as f64 / secs)
        .collect();
    let total: f64 = rates.iter().sum();
    let fair = CAP as f64 / CONNS as f64;
    for c in &conns {
        c.close(false).await;
    }
    assert!(
        (total - CAP as f64).abs() <= 0.10 * CAP as f64,
        "aggregate {total:.0} B/s vs cap {CAP}"
    );
    for (i, r) in rates.iter().enumerate() {
        assert!(
            (r - fair).abs() <= 0.25 * fair,
            "connection {i}: {r:.0} B/s vs fair share {fair:.0} ({rates:?})"
        );
    }
}
