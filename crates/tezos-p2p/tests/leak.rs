//! No leaks: after 1 000 connections were opened and closed (locally, with
//! and without flushing, by the peer, or by dropping every handle), the
//! process has as many open file descriptors and live tasks as before.
//!
//! Alone in its binary so that no other test opens sockets meanwhile.

use std::time::Duration;

use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};
use tezos_p2p::socket::AcceptOptions;

mod common;
use common::*;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable on Linux")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_leave_no_fd_and_no_task_behind() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let metrics = tokio::runtime::Handle::current().metrics();
    // Warm up once so that lazily created runtime resources exist.
    let (c, s) = connected_pair_on(&sched, &sched, AcceptOptions::default()).await;
    c.close(false).await;
    s.close(false).await;
    drop((c, s));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fds_before = open_fds();
    let tasks_before = metrics.num_alive_tasks();

    for round in 0..50 {
        let mut handles = Vec::new();
        for i in 0..10 {
            let sched = sched.clone();
            handles.push(tokio::spawn(async move {
                for j in 0..2 {
                    let (c, s) = connected_pair_on(&sched, &sched, AcceptOptions::default()).await;
                    c.write(&app(0x10, vec![1; 100])).await.unwrap();
                    s.read().await.unwrap();
                    match (round + i + j) % 4 {
                        0 => {
                            c.close(false).await;
                            s.close(false).await;
                        }
                        1 => {
                            c.close(true).await;
                            s.closed().await;
                            s.close(false).await;
                        }
                        2 => {
                            // Closed by the peer: the other side notices EOF.
                            c.close(false).await;
                            s.closed().await;
                        }
                        _ => {
                            // Every handle dropped, nothing closed explicitly.
                            drop(c);
                            drop(s);
                        }
                    }
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    }

    // Dropped connections end their tasks asynchronously.
    let mut settled = false;
    for _ in 0..200 {
        if open_fds() <= fds_before
            && metrics.num_alive_tasks() <= tasks_before
            && sched.connections() == 0
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        settled,
        "fds {} -> {}, tasks {} -> {}, registrations {}",
        fds_before,
        open_fds(),
        tasks_before,
        metrics.num_alive_tasks(),
        sched.connections()
    );
    assert_eq!(sched.connections(), 0, "every registration was dropped");
}
