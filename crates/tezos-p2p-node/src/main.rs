//! `tezos-p2p-node`: an identity tool, a P2P node with Octez's RPC and
//! metrics, and an in-process swarm demo.

// The flags' doc comments are their `--help` text, written in Octez's
// notation (`ADDR[:PORT]`, `[::]:9732`), not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

mod app;
mod chain;
mod config;
mod identity;
mod memory;
mod message;
mod network;
mod node;
mod octez_time;
mod rpc;
mod swarm;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing::{info, warn, Instrument};

use crate::config::{Settings, UsageError};
use crate::message::P2pNodeMessage;
use crate::node::App;
use crate::node::{Node, NodeParams};

const EXIT_STATUS: &str = "Exit status: 0 on success, 1 on a runtime failure, 2 on a usage error \
(an invalid flag, environment variable or config file value).";

/// A Tezos (Octez) peer-to-peer node.
#[derive(Parser, Debug)]
#[command(name = "tezos-p2p-node", version, about, after_help = EXIT_STATUS)]
struct Cli {
    /// The format of the log on standard error: text, or JSON (one object
    /// a line, with the spans: the node's `pool{me}`, a connection's
    /// `conn{dir,addr,peer}`). What is logged is chosen with RUST_LOG
    /// (default: info).
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        default_value_t = LogFormat::Text,
        env = "TEZOS_P2P_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The format of the log.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create or inspect the node's identity (identity.json).
    #[command(subcommand)]
    Identity(IdentityCmd),
    /// Run a node.
    #[command(after_help = RUN_AFTER_HELP)]
    Run(Box<RunArgs>),
    /// Run N nodes in this process on loopback and report how they connect.
    Swarm(swarm::SwarmArgs),
    /// Print a completion script for SHELL on standard output.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const RUN_AFTER_HELP: &str = "Settings come from the config file, then the environment \
(TEZOS_P2P_ and the flag's name in capitals, e.g. TEZOS_P2P_NET_ADDR), then the flags: \
each wins over the one before. Boolean flags take an optional value: --private-mode or \
--private-mode=true sets, --private-mode=false unsets. The config file is this node's \
(keys named as the flags) or an octez-node config.json (its p2p section and network).

Exit status: 0 on success, 1 on a runtime failure, 2 on a usage error (an invalid flag, \
environment variable or config file value).";

#[derive(Subcommand, Debug)]
enum IdentityCmd {
    /// Generate DIR/identity.json and print its peer id.
    Generate {
        /// The data directory [default: ~/.tezos-p2p-node].
        #[arg(long, value_name = "DIR", env = "TEZOS_P2P_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Proof-of-work level of the identity.
        #[arg(
            long,
            value_name = "FLOAT",
            default_value_t = 26.0,
            env = "TEZOS_P2P_EXPECTED_POW"
        )]
        expected_pow: f64,
        /// Overwrite an existing identity.
        #[arg(long)]
        force: bool,
    },
    /// Print the peer id, public key and proof-of-work level.
    Show {
        /// The data directory [default: ~/.tezos-p2p-node].
        #[arg(long, value_name = "DIR", env = "TEZOS_P2P_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The data directory: identity.json, peers.json, config.json
    /// [default: ~/.tezos-p2p-node].
    #[arg(long, value_name = "DIR", env = "TEZOS_P2P_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A JSON config file: this node's (keys named as the flags) or an
    /// octez-node config.json [default: DIR/config.json if present].
    #[arg(long, value_name = "FILE", env = "TEZOS_P2P_CONFIG_FILE")]
    config_file: Option<PathBuf>,
    /// Check the settings, print the configuration and limits they give (as
    /// JSON) and exit without starting.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    settings: Settings,
}

fn data_dir(d: Option<PathBuf>) -> PathBuf {
    d.unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".tezos-p2p-node")
    })
}

/// The filter of RUST_LOG (`tracing_subscriber::EnvFilter` directives:
/// `info`, `tezos_p2p::=debug`, `tezos_p2p_node=debug,warn`...), info when
/// unset or empty. A directive that does not parse is ignored with a
/// warning on standard error (the others still apply).
fn log_filter(rust_log: Option<&str>) -> (tracing_subscriber::EnvFilter, Vec<String>) {
    use tracing_subscriber::filter::{Directive, EnvFilter, LevelFilter};
    let mut warnings = Vec::new();
    let mut valid = Vec::new();
    for d in rust_log.unwrap_or("").split(',').map(str::trim) {
        if d.is_empty() {
            continue;
        }
        match d.parse::<Directive>() {
            Ok(_) => valid.push(d),
            Err(e) => warnings.push(format!("ignoring RUST_LOG directive {d:?}: {e}")),
        }
    }
    if rust_log.is_some_and(|s| !s.trim().is_empty()) && valid.is_empty() {
        warnings.push("RUST_LOG has no valid directive: logging at level info".to_owned());
    }
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(valid.join(","));
    (filter, warnings)
}

/// Logs to standard error, filtered by RUST_LOG, as text or JSON.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::prelude::*;
    let rust_log = match std::env::var("RUST_LOG") {
        Ok(s) => Some(s),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("tezos-p2p-node: warning: RUST_LOG is not UTF-8: ignored");
            None
        }
    };
    let (filter, warnings) = log_filter(rust_log.as_deref());
    for w in warnings {
        eprintln!("tezos-p2p-node: warning: {w}");
    }
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Text => layer
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => layer
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .init();
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|c| c == "run") {
        // Only the long-running node: glibc's tunables (see memory).
        memory::reexec_with_tunables();
    }
    memory::configure();
    // clap prints its whole error (with its suggestions and usage) and
    // exits with 2, or prints help or version and exits with 0.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Identity(IdentityCmd::Generate {
            data_dir: d,
            expected_pow,
            force,
        }) => identity::cmd_generate(&data_dir(d), expected_pow, force),
        Command::Identity(IdentityCmd::Show { data_dir: d }) => identity::cmd_show(&data_dir(d)),
        Command::Run(args) => {
            let m = matches
                .subcommand_matches("run")
                .expect("the run subcommand");
            runtime().and_then(|rt| rt.block_on(run(*args, m, cli.log_format)))
        }
        Command::Swarm(args) => {
            runtime().and_then(|rt| rt.block_on(swarm::swarm(args, cli.log_format)))
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "tezos-p2p-node",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tezos-p2p-node: error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// The settings of `run`: the config file, then the environment, then the
/// flags.
fn settings(args: &RunArgs, dir: &Path, m: &ArgMatches) -> Result<(Settings, config::Notes)> {
    let (file, notes) = match &args.config_file {
        Some(f) => config::read_file(f)?,
        None => {
            let default = dir.join("config.json");
            if default.exists() {
                config::read_file(&default)?
            } else {
                Default::default()
            }
        }
    };
    let settings = config::merge(file, config::split_sources(&args.settings, m))?;
    settings.check()?;
    Ok((settings, notes))
}

async fn run(args: RunArgs, m: &ArgMatches, log_format: LogFormat) -> Result<()> {
    let dir = data_dir(args.data_dir.clone());
    let (settings, notes) = settings(&args, &dir, m)?;
    let peers_file = Some(dir.join("peers.json"));
    if args.dry_run {
        for n in notes.info.iter().chain(&notes.warn) {
            eprintln!("tezos-p2p-node: note: {n}");
        }
        // A throwaway identity: the configuration needs one.
        let target = tezos_p2p_wire::identity::PowTarget::new(0.0).map_err(|e| anyhow!("{e}"))?;
        let id = tezos_p2p_wire::identity::Identity::generate(&target, &Default::default(), |_| {})
            .ok_or_else(|| anyhow!("identity generation failed"))?;
        let params = settings.node_params(Arc::new(id), peers_file)?;
        let out = config::describe(&settings, &params, settings.rpc_addr()?);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    init_logging(log_format);
    for n in &notes.info {
        info!("{n}");
    }
    for n in &notes.warn {
        warn!("{n}");
    }
    let expected_pow = settings.expected_pow()?;
    let id_path = dir.join("identity.json");
    let identity = if id_path.exists() {
        let target = tezos_p2p_wire::identity::PowTarget::new(expected_pow)
            .map_err(|_| UsageError(format!("invalid --expected-pow {expected_pow}")))?;
        identity::load(&id_path, Some(&target))?
    } else {
        eprintln!("no identity in {}: generating one", dir.display());
        let id = tokio::task::spawn_blocking(move || identity::generate(expected_pow)).await??;
        identity::save(&id_path, &id)?;
        id
    };
    let rpc_addr = settings.rpc_addr()?;
    let rpc_listener = tokio::net::TcpListener::bind(rpc_addr)
        .await
        .with_context(|| format!("cannot listen for RPC on {rpc_addr}"))?;
    let params = settings.node_params(Arc::new(identity), peers_file)?;
    if params.network.chain_id().is_some() {
        serve::<tezos_p2p_shell::ShellMessage>(params, rpc_listener, &dir).await
    } else {
        serve::<P2pNodeMessage>(params, rpc_listener, &dir).await
    }
}

/// Runs a node of M's network until SIGINT or SIGTERM.
async fn serve<M: App>(
    params: NodeParams,
    rpc_listener: tokio::net::TcpListener,
    dir: &Path,
) -> Result<()> {
    let network = params.network.clone();
    let listen = params
        .config
        .listening_addr
        .map_or_else(|| "nothing".to_owned(), |a| a.to_string());
    let rpc_addr = rpc_listener.local_addr()?;
    let node = Node::<M>::start(params).await.map_err(|e| anyhow!(e))?;
    // What follows is about this node: in its span, `node{me=<peer id>}`.
    let span = node.span.clone();
    let node_span = span.clone();
    async move {
        let trimmer =
            tokio::spawn(memory::trim_after_closes(node.net.events()).instrument(span.clone()));
        let app = rpc::router(node.clone());
        let server = tokio::spawn(
            async move {
                if let Err(e) = axum::serve(rpc_listener, app).await {
                    warn!(error = %e, "RPC server stopped");
                }
            }
            .instrument(span.clone()),
        );
        info!(
            peer_id = %node.net.peer_id(),
            p2p = %listen,
            rpc = %rpc_addr,
            network = %network,
            "node running"
        );
        println!(
            "tezos-p2p-node: peer {} listening on {listen} ({network}), RPC and dashboard on http://{rpc_addr}/",
            node.net.peer_id(),
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
    .instrument(node_span)
    .await
}

async fn wait_for_signal() -> Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => r?,
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
