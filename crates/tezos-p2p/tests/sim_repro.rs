//! Simulations on the link model (issue 16) at a small size: the same seed
//! gives the same figures, a different seed other ones. Virtual time only:
//! nothing here depends on the machine's speed.

use std::collections::BTreeMap;
use std::time::Duration;

use tezos_p2p::sim::{Gossip, Leave, NodeTotals, SimConfig, Simulation};

/// Everything a run reports.
#[derive(Debug, PartialEq)]
struct Figures {
    converged: Option<Duration>,
    topology: Vec<Vec<usize>>,
    totals: NodeTotals,
    events: BTreeMap<String, u64>,
    gossip: Vec<Option<Duration>>,
    after_churn: Vec<usize>,
}

async fn run(seed: u64) -> Figures {
    let mut cfg = SimConfig::new(24, 3, 4, 6, seed).internet(Duration::from_millis(100));
    cfg.nat = 0.25;
    cfg.known = 2;
    cfg.join_every = Duration::from_millis(50);
    let mut sim = Simulation::start(cfg).await.expect("simulation");
    let converged = sim
        .run_until_converged(Duration::from_secs(600), Duration::from_millis(500))
        .await;
    let topology = sim.topology();
    let gossip = Gossip::start(&sim);
    gossip.send(&sim, 3, 1, 2000);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let arrivals = gossip.arrivals(1);
    drop(gossip);
    // Churn: two graceful leaves and a crash, replaced.
    for (slot, how) in [
        (5, Leave::Graceful),
        (9, Leave::Crash),
        (17, Leave::Graceful),
    ] {
        sim.replace(slot, how).await.expect("join");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after_churn = sim.connection_counts();
    let figures = Figures {
        converged,
        topology,
        totals: sim.totals(),
        events: sim.event_totals(),
        gossip: arrivals,
        after_churn,
    };
    sim.shutdown().await;
    figures
}

fn run_paused(seed: u64) -> Figures {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
        .block_on(run(seed))
}

#[test]
fn the_same_seed_gives_the_same_figures_on_the_link_model() {
    let a = run_paused(5);
    let b = run_paused(5);
    assert!(a.converged.is_some(), "not converged: {:?}", a.topology);
    assert!(
        a.gossip.iter().filter(|t| t.is_some()).count() >= 20,
        "the flood reached too few nodes: {:?}",
        a.gossip
    );
    assert!(a.totals.bytes_sent > 0 && a.totals.dials > 0);
    assert_eq!(a, b);
    // Another seed: another run (keys, regions, NAT'd nodes, jitter).
    let c = run_paused(6);
    assert_ne!(a.topology, c.topology);
    assert_ne!(a.totals, c.totals);
}
