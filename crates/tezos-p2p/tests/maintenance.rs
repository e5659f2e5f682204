//! Maintenance at scale on the in-memory network, with virtual time.

use std::time::Duration;

use tezos_p2p::sim::{SimConfig, Simulation};

#[tokio::test(start_paused = true)]
async fn fifty_nodes_knowing_only_node_0_converge() {
    let sim = Simulation::start(SimConfig::new(50, 4, 6, 8, 7))
        .await
        .unwrap();
    let took = sim
        .run_until_converged(Duration::from_secs(600), Duration::from_millis(500))
        .await;
    let counts = sim.connection_counts();
    assert!(took.is_some(), "not converged: {counts:?}");
    eprintln!("converged in {:?} (virtual): {counts:?}", took.unwrap());
    sim.shutdown().await;
}

async fn run_once(seed: u64) -> (Option<Duration>, Vec<Vec<usize>>) {
    let sim = Simulation::start(SimConfig::new(20, 4, 6, 8, seed))
        .await
        .unwrap();
    let took = sim
        .run_until_converged(Duration::from_secs(600), Duration::from_millis(500))
        .await;
    let topology = sim.topology();
    eprintln!("{took:?} {:?}", sim.connection_counts());
    for (i, n) in sim.nets.iter().enumerate() {
        let known = n.with_tables(|t| t.known_points.len());
        eprintln!("node {i}: known points {known}");
    }
    sim.shutdown().await;
    (took, topology)
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = |seed| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(run_once(seed))
    };
    let a = run(11);
    let b = run(11);
    assert!(a.0.is_some());
    assert_eq!(a, b);
}
