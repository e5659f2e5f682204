//! `swarm`: N nodes in one process on loopback, on `octez-p2p-node`'s
//! network, each knowing only node 0; a live table, a few broadcast Text
//! messages, and a summary saying
//! whether every node ended within its connection thresholds.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use anyhow::{anyhow, bail, Result};

use tezos_p2p::limits::Bounds;
use tezos_p2p_wire::identity::{Identity, PowSearch, PowTarget};

use crate::config::{NetworkSetting, Settings};
use crate::message::P2pNodeMessage;
use crate::network::NetworkName;
use crate::node::{Counters, Node};

type SwarmNode = Node<P2pNodeMessage>;

/// The options of the swarm command.
#[derive(Args, Debug)]
pub struct SwarmArgs {
    /// Number of nodes.
    #[arg(long, value_name = "N", default_value_t = 8)]
    nodes: usize,
    /// How long to run, in seconds [default: 20, or until Ctrl-C with
    /// --dashboard].
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// --connections of every node [default: 4, less for fewer than 3 nodes].
    #[arg(long, value_name = "N")]
    connections: Option<usize>,
    /// Text messages each node broadcasts over the run.
    #[arg(long, value_name = "K", default_value_t = 3)]
    messages: usize,
    /// Seconds between two tables when the output is not a terminal.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    table_every: f64,
    /// Serve the swarm's web page on ADDR (every node's row, with a link
    /// to each node's own dashboard: each node then serves its RPC on a
    /// loopback port of its own).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8732")]
    dashboard: Option<std::net::SocketAddr>,
}

/// The swarm's page and its `/swarm` JSON: every node's row (as the
/// node's dashboard gives it) with its RPC address.
fn swarm_router(
    nodes: Vec<(Arc<SwarmNode>, std::net::SocketAddr)>,
    bounds: Bounds,
) -> axum::Router {
    use axum::routing::get;
    let started = Instant::now();
    let rows = move || {
        let list: Vec<serde_json::Value> = nodes
            .iter()
            .enumerate()
            .map(|(i, (n, rpc))| {
                let mut v = crate::rpc::dashboard::node_json(n);
                v["index"] = i.into();
                v["rpc"] = format!("http://{rpc}/").into();
                v
            })
            .collect();
        axum::Json(serde_json::json!({
            "nodes": list,
            "min_threshold": bounds.min_threshold,
            "max_threshold": bounds.max_threshold,
            "uptime_s": started.elapsed().as_secs_f64(),
        }))
    };
    axum::Router::new()
        .route("/", get(crate::rpc::dashboard::swarm_index))
        .route("/dashboard/swarm.js", get(crate::rpc::dashboard::swarm_js))
        .route(
            "/dashboard/dashboard.css",
            get(crate::rpc::dashboard::app_css),
        )
        .route("/swarm", get(move || std::future::ready(rows())))
        .layer(axum::middleware::from_fn(crate::rpc::cross_site_guard))
}

fn rate(bps: u64) -> String {
    if bps >= 1 << 20 {
        format!("{:.1} MiB/s", bps as f64 / (1u64 << 20) as f64)
    } else if bps >= 1 << 10 {
        format!("{:.1} KiB/s", bps as f64 / 1024.0)
    } else {
        format!("{bps} B/s")
    }
}

fn size(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

fn within(b: &Bounds, n: usize) -> bool {
    b.min_threshold <= n && n <= b.max_threshold
}

fn table(nodes: &[Arc<SwarmNode>], b: &Bounds, elapsed: Duration) -> Vec<String> {
    let mut lines = vec![
        format!(
            "t={:>5.1}s  thresholds [{}, {}]",
            elapsed.as_secs_f64(),
            b.min_threshold,
            b.max_threshold
        ),
        format!(
            "{:>4}  {:<14} {:>6}  {:>5}  {:>12}  {:>12}  {:>8}",
            "node", "peer id", "port", "conns", "inflow", "outflow", "messages"
        ),
    ];
    for (i, n) in nodes.iter().enumerate() {
        let stat = n.net.global_stat();
        let conns = n.net.active_connections();
        let id = n.net.peer_id().to_string();
        lines.push(format!(
            "{:>4}  {:<14} {:>6}  {:>4}{}  {:>12}  {:>12}  {:>8}",
            i,
            &id[..id.len().min(12)],
            n.net.listening_port().unwrap_or(0),
            conns,
            if within(b, conns) { " " } else { "!" },
            rate(stat.current_inflow),
            rate(stat.current_outflow),
            Counters::get(&n.counters.user_message_received),
        ));
    }
    lines
}

/// Runs the swarm.
pub async fn swarm(args: SwarmArgs, log_format: crate::LogFormat) -> Result<()> {
    use crate::config::UsageError;
    if args.nodes == 0 || args.nodes > 200 {
        return Err(UsageError(format!(
            "invalid --nodes {}: must be in 1..=200",
            args.nodes
        ))
        .into());
    }
    if let Some(d) = args.duration.filter(|d| !(d.is_finite() && *d > 0.0)) {
        return Err(UsageError(format!(
            "invalid --duration {d}: must be a positive number of seconds"
        ))
        .into());
    }
    // With a dashboard, the swarm runs until Ctrl-C unless told otherwise.
    let run_for = match (args.duration, args.dashboard) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(20.0),
    };
    let dashboard = match args.dashboard {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow!("cannot listen for the dashboard on {addr}: {e}"))?,
        ),
        None => None,
    };
    if std::env::var_os("RUST_LOG").is_some() {
        crate::init_logging(log_format);
    }
    let c = args
        .connections
        .unwrap_or_else(|| (2 * (args.nodes - 1)).clamp(1, 4));
    // Every node's settings but its first peer (node 0, for the others).
    let mut settings = Settings {
        net_addr: Some("127.0.0.1:0".into()),
        network: Some(NetworkSetting::Builtin(NetworkName::P2pNode)),
        expected_pow: Some(0.0),
        connections: Some(c),
        // Every node is on 127.0.0.1: one source for the per-source limit.
        max_incoming_connections_per_ip: Some(
            tezos_p2p::limits::Limits::default().max_incoming_connections,
        ),
        ..Settings::default()
    };
    let limits = settings.limits()?;
    let bounds = limits.bounds();
    let duration = run_for.map(Duration::from_secs_f64);
    let tty = std::io::stdout().is_terminal();
    println!(
        "swarm: {} nodes on 127.0.0.1, --connections {c} (min {}, expected {}, max {}; thresholds [{}, {}]), {}",
        args.nodes,
        limits.min_connections,
        limits.expected_connections,
        limits.max_connections,
        bounds.min_threshold,
        bounds.max_threshold,
        run_for.map_or_else(|| "until Ctrl-C".to_owned(), |d| format!("{d} s"))
    );

    let target = PowTarget::new(0.0).map_err(|e| anyhow!("{e}"))?;
    let search = PowSearch {
        threads: 1,
        ..PowSearch::default()
    };
    // Times count from the first node's start.
    let start = Instant::now();
    let mut nodes: Vec<Arc<SwarmNode>> = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let identity = Identity::generate(&target, &search, |_| {})
            .ok_or_else(|| anyhow!("identity generation failed"))?;
        let params = settings.node_params(Arc::new(identity), None)?;
        let node = Node::start(params).await.map_err(|e| anyhow!(e))?;
        if i == 0 {
            let port = node
                .net
                .listening_port()
                .ok_or_else(|| anyhow!("node 0 does not listen"))?;
            settings.peer = Some(vec![format!("127.0.0.1:{port}#{}", node.net.peer_id())]);
        }
        nodes.push(node);
    }
    // The dashboard: each node's RPC on a loopback port, and the swarm's
    // page.
    let mut servers = Vec::new();
    if let Some(listener) = dashboard {
        let mut with_rpc = Vec::with_capacity(nodes.len());
        for n in &nodes {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            with_rpc.push((n.clone(), l.local_addr()?));
            let app = crate::rpc::router(n.clone());
            servers.push(tokio::spawn(async move {
                let _ = axum::serve(l, app).await;
            }));
        }
        let page = format!("http://{}/", listener.local_addr()?);
        let app = swarm_router(with_rpc, bounds);
        servers.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        println!("swarm: dashboard on {page}");
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let mut all_within_at: Option<Duration> = None;
    let mut broadcasts_done = 0usize;
    let mut last_table: Option<Instant> = None;
    let mut drawn = 0usize;
    let table_every = Duration::from_secs_f64(if tty { 0.5 } else { args.table_every.max(0.1) });
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => break,
        }
        let elapsed = start.elapsed();
        if all_within_at.is_none()
            && nodes
                .iter()
                .all(|n| within(&bounds, n.net.active_connections()))
        {
            all_within_at = Some(elapsed);
        }
        // Broadcast rounds spread over the run (one every 5 s until Ctrl-C).
        let due = match duration {
            Some(d) => {
                ((elapsed.as_secs_f64() / d.as_secs_f64()) * (args.messages + 1) as f64) as usize
            }
            None => (elapsed.as_secs_f64() / 5.0) as usize,
        };
        while broadcasts_done < args.messages && broadcasts_done < due {
            broadcasts_done += 1;
            for (i, n) in nodes.iter().enumerate() {
                let _ = n.broadcast(&P2pNodeMessage::Text(format!(
                    "hello #{broadcasts_done} from node {i}"
                )));
            }
        }
        if duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        if last_table.is_none_or(|t| t.elapsed() >= table_every) {
            last_table = Some(Instant::now());
            let lines = table(&nodes, &bounds, elapsed);
            let mut out = std::io::stdout().lock();
            if tty && drawn > 0 {
                let _ = write!(out, "\x1b[{drawn}A");
            }
            for l in &lines {
                let _ = writeln!(out, "{l}{}", if tty { "\x1b[K" } else { "" });
            }
            drawn = lines.len();
            if !tty {
                let _ = writeln!(out);
            }
            let _ = out.flush();
        }
    }

    // Final table and summary.
    let lines = table(&nodes, &bounds, start.elapsed());
    if tty && drawn > 0 {
        print!("\x1b[{drawn}A");
    }
    for l in &lines {
        println!("{l}{}", if tty { "\x1b[K" } else { "" });
    }
    let counts: Vec<usize> = nodes.iter().map(|n| n.net.active_connections()).collect();
    let received: u64 = nodes
        .iter()
        .map(|n| Counters::get(&n.counters.user_message_received))
        .sum();
    let broadcast_to: u64 = nodes
        .iter()
        .map(|n| {
            Counters::get(&n.counters.user_message_sent)
                + Counters::get(&n.counters.broadcast_message_sent)
        })
        .sum();
    let bytes: u64 = nodes.iter().map(|n| n.net.global_stat().total_sent).sum();
    let outside: Vec<String> = counts
        .iter()
        .enumerate()
        .filter(|(_, &k)| !within(&bounds, k))
        .map(|(i, k)| format!("node {i} has {k}"))
        .collect();
    let traffic = format!(
        "{received} messages received ({broadcast_to} sent), {} exchanged",
        size(bytes)
    );
    for s in servers {
        s.abort();
    }
    for n in &nodes {
        let n = n.clone();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), async move { n.shutdown().await }).await;
    }
    if outside.is_empty() {
        let reached = all_within_at.map_or_else(String::new, |t| {
            format!(
                " (all within {:.1} s after the first node started)",
                t.as_secs_f64()
            )
        });
        println!(
            "summary: every node within its connection thresholds [{}, {}]{reached}; {traffic}",
            bounds.min_threshold, bounds.max_threshold
        );
        Ok(())
    } else {
        println!(
            "summary: NOT every node within its connection thresholds [{}, {}]: {}; {traffic}",
            bounds.min_threshold,
            bounds.max_threshold,
            outside.join(", ")
        );
        bail!(
            "{} of {} nodes ended outside their connection thresholds",
            outside.len(),
            nodes.len()
        )
    }
}
