//! `tezos-p2p-node`: an identity tool, a P2P node with Octez's RPC and
//! metrics, and an in-process swarm demo.

mod app;
mod chain;
mod config;
mod identity;
mod memory;
mod message;
mod network;
mod node;
mod rpc;
mod swarm;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing::{info, warn};

use crate::config::{RunConfig, Settings};
use crate::message::P2pNodeMessage;
use crate::node::App;
use crate::node::{Node, NodeParams};

/// A Tezos (Octez) peer-to-peer node.
#[derive(Parser, Debug)]
#[command(name = "tezos-p2p-node", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create or inspect the node's identity (identity.json).
    #[command(subcommand)]
    Identity(IdentityCmd),
    /// Run a node.
    Run(Box<RunArgs>),
    /// Run N nodes in this process on loopback and report how they connect.
    Swarm(swarm::SwarmArgs),
}

#[derive(Subcommand, Debug)]
enum IdentityCmd {
    /// Generate DIR/identity.json and print its peer id.
    Generate {
        /// The data directory [default: ~/.tezos-p2p-node].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Proof-of-work level of the identity.
        #[arg(long, value_name = "F", default_value_t = 26.0)]
        expected_pow: f64,
        /// Overwrite an existing identity.
        #[arg(long)]
        force: bool,
    },
    /// Print the peer id, public key and proof-of-work level.
    Show {
        /// The data directory [default: ~/.tezos-p2p-node].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The data directory: identity.json, peers.json, config.json
    /// [default: ~/.tezos-p2p-node].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A JSON file of settings named as the flags [default: DIR/config.json
    /// if present]; flags win.
    #[arg(long, value_name = "FILE")]
    config_file: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

fn data_dir(d: Option<PathBuf>) -> PathBuf {
    d.unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".tezos-p2p-node")
    })
}

fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|c| c == "run") {
        // Only the long-running node: glibc's tunables (see `memory`).
        memory::reexec_with_tunables();
    }
    memory::configure();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            // One line: clap's first line, without its usage block.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("tezos-p2p-node: error: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Identity(IdentityCmd::Generate {
            data_dir: d,
            expected_pow,
            force,
        }) => identity::cmd_generate(&data_dir(d), expected_pow, force),
        Command::Identity(IdentityCmd::Show { data_dir: d }) => identity::cmd_show(&data_dir(d)),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run(*args))),
        Command::Swarm(args) => runtime().and_then(|rt| rt.block_on(swarm::swarm(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tezos-p2p-node: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

async fn run(args: RunArgs) -> Result<(), String> {
    let dir = data_dir(args.data_dir);
    let file = match &args.config_file {
        Some(f) => config::read_file(f)?,
        None => {
            let default = dir.join("config.json");
            if default.exists() {
                config::read_file(&default)?
            } else {
                Settings::default()
            }
        }
    };
    let cfg = args.settings.over(file).finish()?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    init_logging();
    let id_path = dir.join("identity.json");
    let target = tezos_p2p_wire::identity::PowTarget::new(cfg.expected_pow)
        .map_err(|_| format!("invalid --expected-pow {}", cfg.expected_pow))?;
    let identity = if id_path.exists() {
        identity::load(&id_path, Some(&target))?
    } else {
        eprintln!("no identity in {}: generating one", dir.display());
        let id = tokio::task::spawn_blocking({
            let level = cfg.expected_pow;
            move || identity::generate(level)
        })
        .await
        .map_err(|e| e.to_string())??;
        identity::save(&id_path, &id)?;
        id
    };
    let rpc_listener = tokio::net::TcpListener::bind(cfg.rpc_addr)
        .await
        .map_err(|e| format!("cannot listen for RPC on {}: {e}", cfg.rpc_addr))?;
    let params = NodeParams {
        identity: Arc::new(identity),
        listen: cfg.net_addr,
        advertised_port: cfg.advertised_port,
        trusted_points: cfg.trusted_points.clone(),
        bootstrap_hosts: cfg.bootstrap_hosts.clone(),
        peers_file: Some(dir.join("peers.json")),
        network: cfg.network.clone(),
        expected_pow: cfg.expected_pow,
        private_mode: cfg.private_mode,
        disable_mempool: cfg.disable_mempool,
        disable_peer_discovery: cfg.disable_peer_discovery,
        limits: cfg.limits.clone(),
        ping_interval: cfg.ping_interval,
        discovery: cfg.discovery_addr,
    };
    if cfg.network.chain_id().is_some() {
        serve::<tezos_p2p_shell::ShellMessage>(params, rpc_listener, &cfg, &dir).await
    } else {
        serve::<P2pNodeMessage>(params, rpc_listener, &cfg, &dir).await
    }
}

/// Runs a node of `M`'s network until SIGINT or SIGTERM.
async fn serve<M: App>(
    params: NodeParams,
    rpc_listener: tokio::net::TcpListener,
    cfg: &RunConfig,
    dir: &std::path::Path,
) -> Result<(), String> {
    let node = Node::<M>::start(params).await?;
    let trimmer = tokio::spawn(memory::trim_after_closes(node.net.events()));
    let app = rpc::router(node.clone());
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(rpc_listener, app).await {
            warn!(error = %e, "RPC server stopped");
        }
    });
    info!(
        peer_id = %node.net.peer_id(),
        p2p = %cfg.net_addr,
        rpc = %cfg.rpc_addr,
        network = %cfg.network,
        "node running"
    );
    println!(
        "tezos-p2p-node: peer {} listening on {} ({}), RPC on http://{}",
        node.net.peer_id(),
        cfg.net_addr,
        cfg.network,
        cfg.rpc_addr
    );
    wait_for_signal().await?;
    info!("shutting down");
    server.abort();
    trimmer.abort();
    if tokio::time::timeout(Duration::from_secs(10), node.shutdown())
        .await
        .is_err()
    {
        warn!("shutdown timed out");
    }
    info!(file = %dir.join("peers.json").display(), "peers saved; bye");
    Ok(())
}

async fn wait_for_signal() -> Result<(), String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => r.map_err(|e| e.to_string())?,
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    Ok(())
}
