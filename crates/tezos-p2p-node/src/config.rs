//! `run`'s settings: ONE type, [`Settings`], filled in layers (the config
//! file, then the environment, then the command line: each layer wins over
//! the one before), then turned once into the pool's [`Config`] and
//! [`Limits`] ([`Settings::node_params`]).
//!
//! The layers are merged generically: each layer is a [`Settings`] whose
//! absent values are `None`; serialized to JSON, a later layer's non-null
//! keys replace an earlier layer's (plus a few keys that imply others, see
//! [`IMPLIED`]), and the result is deserialized back. clap fills the
//! environment and command-line layers (and tells which value came from
//! where), serde the file layer.
//!
//! The config file is either this node's own format (keys named as the
//! flags) or an octez-node `config.json` (its `p2p` section and `network`
//! field; see [`octez`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::builder::{EnumValueParser, TypedValueParser};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use tezos_p2p::limits::Limits;
use tezos_p2p::net::Config;
use tezos_p2p::points::ReconnectionConfig;
use tezos_p2p::transport::{TcpOptions, Transport};
use tezos_p2p_shell::ChainId;
use tezos_p2p_wire::identity::{Identity, PeerId, PowTarget};
use tezos_p2p_wire::message::OctezMetadata;
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::version::{ChainName, SupportedVersions};

use crate::network::{Network, NetworkName};
use crate::node::NodeParams;

/// Octez's default P2P port, used when a point has none.
pub const DEFAULT_P2P_PORT: u16 = 9732;
/// Octez's default local-discovery port.
pub const DEFAULT_DISCOVERY_PORT: u16 = 10732;
/// Octez's default RPC port.
pub const DEFAULT_RPC_PORT: u16 = 8732;
/// The prefix of the environment variables: `TEZOS_P2P_` then the flag's
/// name in capitals with `_` for `-` (`--net-addr`: `TEZOS_P2P_NET_ADDR`).
#[cfg_attr(not(test), allow(dead_code))] // the tests check every flag's variable
pub const ENV_PREFIX: &str = "TEZOS_P2P_";

/// A settings error: an invalid flag, environment variable or config file
/// value. The binary exits with status 2 on it (as on clap's usage
/// errors), 1 on any other failure.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

macro_rules! usage {
    ($($t:tt)*) => { anyhow::Error::new(UsageError(format!($($t)*))) };
}

/// `--network`: a built-in network, or (from a config file) a custom
/// Tezos chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NetworkSetting {
    /// A built-in network, by name.
    Builtin(#[serde(serialize_with = "by_name")] NetworkName),
    /// A chain described in a config file (octez-node's custom network).
    Custom(CustomNetwork),
}

/// A custom Tezos chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CustomNetwork {
    /// The chain name announced in handshakes.
    pub chain_name: String,
    /// The chain id (Net…).
    pub chain_id: String,
    /// Its default bootstrap peers.
    #[serde(default)]
    pub bootstrap_peers: Vec<String>,
}

fn by_name<S: serde::Serializer>(n: &NetworkName, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(n)
}

fn network_parser() -> impl TypedValueParser<Value = NetworkSetting> {
    EnumValueParser::<NetworkName>::new().map(NetworkSetting::Builtin)
}

/// A table size for the known points or peers: the size at which the
/// table is cleaned, and the size it is cleaned down to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSize(pub usize, pub usize);

impl FromStr for TableSize {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (max, target) = s
            .split_once(',')
            .ok_or_else(|| format!("{s:?}: expected MAX,TARGET, e.g. 400,300"))?;
        let n = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| format!("{x:?} is not a number"))
        };
        Ok(TableSize(n(max)?, n(target)?))
    }
}

/// The node's settings, each absent unless some layer gives it. The config
/// file's keys are the flags' names (`peers` may stand for `peer`); each
/// flag also reads the environment variable [`ENV_PREFIX`] + its name.
/// Booleans: `--flag` or `--flag=true` sets, `--flag=false` unsets (a
/// `true` from the file or the environment included).
#[derive(Args, Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    // ---- Network -------------------------------------------------------
    /// Listening address, ADDR[:PORT] (port 9732 when omitted; an IPv6
    /// address in brackets; a host name is resolved) [default: [::]:9732].
    #[arg(
        long,
        value_name = "ADDR:PORT",
        env = "TEZOS_P2P_NET_ADDR",
        help_heading = "Network"
    )]
    pub net_addr: Option<String>,
    /// The port announced to peers, when a NAT forwards another port to the
    /// listening one [default: the listening port].
    #[arg(
        long,
        value_name = "PORT",
        env = "TEZOS_P2P_ADVERTISED_NET_PORT",
        help_heading = "Network"
    )]
    pub advertised_net_port: Option<u16>,
    /// A trusted peer, ADDR[:PORT][#PEER_ID] (port 9732 when omitted; an
    /// IPv6 address in brackets; host names are resolved at start).
    /// Repeatable; the environment variable takes a comma-separated list.
    #[arg(
        long = "peer",
        value_name = "ADDR:PORT[#ID]",
        env = "TEZOS_P2P_PEER",
        value_delimiter = ',',
        help_heading = "Network"
    )]
    #[serde(alias = "peers")]
    pub peer: Option<Vec<String>>,
    /// Bootstrap peers (ADDR[:PORT][#PEER_ID], host names allowed) replacing
    /// the network's default ones; comma-separated or repeated.
    #[arg(
        long,
        value_name = "ADDR:PORT,...",
        env = "TEZOS_P2P_BOOTSTRAP_PEERS",
        value_delimiter = ',',
        help_heading = "Network"
    )]
    pub bootstrap_peers: Option<Vec<String>>,
    /// Dial neither the bootstrap peers nor the network's default ones,
    /// only the --peer points.
    #[arg(long, value_name = "BOOL", env = "TEZOS_P2P_NO_BOOTSTRAP_PEERS", num_args = 0..=1, require_equals = true, default_missing_value = "true", help_heading = "Network")]
    pub no_bootstrap_peers: Option<bool>,
    /// The network: a Tezos chain (the node speaks the shell's messages) or
    /// octez-p2p-node's network (Text and Bytes) [default: sandbox].
    #[arg(long, value_name = "NAME", env = "TEZOS_P2P_NETWORK", value_parser = network_parser(), help_heading = "Network")]
    pub network: Option<NetworkSetting>,
    /// A chain name, overriding the network's; empty ("") for
    /// octez-p2p-node's network.
    #[arg(
        long,
        value_name = "NAME",
        env = "TEZOS_P2P_CHAIN_NAME",
        help_heading = "Network"
    )]
    pub chain_name: Option<String>,
    /// The chain id (Net…) of a chain given by --chain-name [default: the
    /// network's, from its genesis block].
    #[arg(
        long,
        value_name = "ID",
        env = "TEZOS_P2P_CHAIN_ID",
        help_heading = "Network"
    )]
    pub chain_id: Option<String>,
    /// Proof of work required of peers, and of a generated identity
    /// [default: 26].
    #[arg(
        long,
        value_name = "FLOAT",
        env = "TEZOS_P2P_EXPECTED_POW",
        help_heading = "Network"
    )]
    pub expected_pow: Option<f64>,
    /// Accept and contact only trusted points and peers.
    #[arg(long, value_name = "BOOL", env = "TEZOS_P2P_PRIVATE_MODE", num_args = 0..=1, require_equals = true, default_missing_value = "true", help_heading = "Network")]
    pub private_mode: Option<bool>,
    /// Announce that the node keeps no mempool: peers then send their heads
    /// without their mempool's operations.
    #[arg(long, value_name = "BOOL", env = "TEZOS_P2P_DISABLE_MEMPOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", help_heading = "Network")]
    pub disable_mempool: Option<bool>,
    /// Neither ask nor answer Bootstrap/Advertise gossip.
    #[arg(long, value_name = "BOOL", env = "TEZOS_P2P_DISABLE_PEER_DISCOVERY", num_args = 0..=1, require_equals = true, default_missing_value = "true", help_heading = "Network")]
    pub disable_peer_discovery: Option<bool>,
    /// Local peer discovery over UDP: announce to and listen on this
    /// (broadcast) IPv4 address, ADDR[:PORT] (port 10732 when omitted),
    /// e.g. 255.255.255.255.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        env = "TEZOS_P2P_DISCOVERY_ADDR",
        help_heading = "Network"
    )]
    pub discovery_addr: Option<String>,

    // ---- Limits --------------------------------------------------------
    /// Sets min N/2 (1 when N = 1), expected N, max 3N/2 connections and
    /// the peer tables to 8N, over the file's and environment's bounds.
    #[arg(
        long,
        value_name = "N",
        env = "TEZOS_P2P_CONNECTIONS",
        help_heading = "Limits"
    )]
    pub connections: Option<usize>,
    /// Below this the maintenance connects [default: 10].
    #[arg(
        long,
        value_name = "N",
        env = "TEZOS_P2P_MIN_CONNECTIONS",
        help_heading = "Limits"
    )]
    pub min_connections: Option<usize>,
    /// What the maintenance aims at [default: 50].
    #[arg(
        long,
        value_name = "N",
        env = "TEZOS_P2P_EXPECTED_CONNECTIONS",
        help_heading = "Limits"
    )]
    pub expected_connections: Option<usize>,
    /// Above this the maintenance disconnects [default: 100].
    #[arg(
        long,
        value_name = "N",
        env = "TEZOS_P2P_MAX_CONNECTIONS",
        help_heading = "Limits"
    )]
    pub max_connections: Option<usize>,
    /// Incoming handshakes in progress at once [default: 20].
    #[arg(
        long,
        value_name = "N",
        env = "TEZOS_P2P_MAX_INCOMING_CONNECTIONS",
        help_heading = "Limits"
    )]
    pub max_incoming_connections: Option<usize>,
    /// Incoming handshakes in progress at once from one source (an IPv4
    /// address or an IPv6 /64) [default: 4].
    #[arg(
        long,
        value_name = "N",
        env = "TEZOS_P2P_MAX_INCOMING_CONNECTIONS_PER_IP",
        help_heading = "Limits"
    )]
    pub max_incoming_connections_per_ip: Option<usize>,
    /// Connections the kernel queues until they are accepted [default: 1024].
    #[arg(
        long,
        value_name = "N",
        env = "TEZOS_P2P_BACKLOG",
        help_heading = "Limits"
    )]
    pub backlog: Option<u32>,
    /// Whole outgoing connection attempt, handshake included, in seconds
    /// [default: 10].
    #[arg(
        long,
        value_name = "SECONDS",
        env = "TEZOS_P2P_CONNECTION_TIMEOUT",
        help_heading = "Limits"
    )]
    pub connection_timeout: Option<f64>,
    /// Incoming handshake, in seconds [default: 5].
    #[arg(
        long,
        value_name = "SECONDS",
        env = "TEZOS_P2P_AUTHENTICATION_TIMEOUT",
        help_heading = "Limits"
    )]
    pub authentication_timeout: Option<f64>,
    /// Global download cap, in bytes per second [default: none].
    #[arg(
        long,
        value_name = "BYTES",
        env = "TEZOS_P2P_MAX_DOWNLOAD_SPEED",
        help_heading = "Limits"
    )]
    pub max_download_speed: Option<u64>,
    /// Global upload cap, in bytes per second [default: none].
    #[arg(
        long,
        value_name = "BYTES",
        env = "TEZOS_P2P_MAX_UPLOAD_SPEED",
        help_heading = "Limits"
    )]
    pub max_upload_speed: Option<u64>,
    /// Size of the chunks sent, in kB (1024 bytes), 1..=63 [default: 64 KiB
    /// less one byte].
    #[arg(
        long,
        value_name = "KB",
        env = "TEZOS_P2P_BINARY_CHUNKS_SIZE",
        help_heading = "Limits"
    )]
    pub binary_chunks_size: Option<usize>,
    /// Bytes per socket read [default: 16384].
    #[arg(
        long,
        value_name = "BYTES",
        env = "TEZOS_P2P_READ_BUFFER_SIZE",
        help_heading = "Limits"
    )]
    pub read_buffer_size: Option<usize>,
    /// Bound of each connection's read queue, in bytes [default: 8 MiB].
    #[arg(
        long,
        value_name = "BYTES",
        env = "TEZOS_P2P_INCOMING_MESSAGE_QUEUE_SIZE",
        help_heading = "Limits"
    )]
    pub incoming_message_queue_size: Option<usize>,
    /// Bound of each connection's write queue, in bytes [default: 8 MiB].
    #[arg(
        long,
        value_name = "BYTES",
        env = "TEZOS_P2P_OUTGOING_MESSAGE_QUEUE_SIZE",
        help_heading = "Limits"
    )]
    pub outgoing_message_queue_size: Option<usize>,
    /// Bound of each connection's application queue, in messages
    /// [default: 10].
    #[arg(
        long,
        value_name = "N",
        env = "TEZOS_P2P_INCOMING_APP_MESSAGE_QUEUE_SIZE",
        help_heading = "Limits"
    )]
    pub incoming_app_message_queue_size: Option<usize>,
    /// Memory for partially received messages, all connections together,
    /// in MiB: a connection whose large message would exceed it stops
    /// reading until others finish [default: 32].
    #[arg(
        long,
        value_name = "MIB",
        env = "TEZOS_P2P_PARTIAL_MESSAGE_BUDGET",
        help_heading = "Limits"
    )]
    pub partial_message_budget: Option<usize>,
    /// Sets both peer tables (points and peer ids) to N, cleaned down to
    /// 3N/4 [default: 400].
    #[arg(
        long,
        value_name = "N",
        env = "TEZOS_P2P_PEER_TABLE_SIZE",
        help_heading = "Limits"
    )]
    pub peer_table_size: Option<usize>,
    /// The point table: cleaned at MAX entries down to TARGET
    /// [default: 400,300].
    #[arg(
        long,
        value_name = "MAX,TARGET",
        env = "TEZOS_P2P_MAX_KNOWN_POINTS",
        help_heading = "Limits"
    )]
    pub max_known_points: Option<TableSize>,
    /// The peer table: cleaned at MAX entries down to TARGET
    /// [default: 400,300].
    #[arg(
        long,
        value_name = "MAX,TARGET",
        env = "TEZOS_P2P_MAX_KNOWN_PEER_IDS",
        help_heading = "Limits"
    )]
    pub max_known_peer_ids: Option<TableSize>,
    /// Capacity of the peer greylist [default: 1023].
    #[arg(
        long,
        value_name = "N",
        env = "TEZOS_P2P_PEER_GREYLIST_SIZE",
        help_heading = "Limits"
    )]
    pub peer_greylist_size: Option<usize>,
    /// Memory of the IP greylist, in KiB, 1..=65535 [default: 2048].
    #[arg(
        long,
        value_name = "KIB",
        env = "TEZOS_P2P_IP_GREYLIST_SIZE_IN_KILOBYTES",
        help_heading = "Limits"
    )]
    pub ip_greylist_size_in_kilobytes: Option<usize>,
    /// How long a greylisted IP stays greylisted, in seconds
    /// [default: 86400].
    #[arg(
        long,
        value_name = "SECONDS",
        env = "TEZOS_P2P_IP_GREYLIST_CLEANUP_DELAY",
        help_heading = "Limits"
    )]
    pub ip_greylist_cleanup_delay: Option<f64>,
    /// Largest time between two maintenance rounds, in seconds
    /// [default: 120].
    #[arg(
        long,
        value_name = "SECONDS",
        env = "TEZOS_P2P_MAINTENANCE_IDLE_TIME",
        help_heading = "Limits"
    )]
    pub maintenance_idle_time: Option<f64>,
    /// No maintenance: no automatic connection or disconnection.
    #[arg(long, value_name = "BOOL", env = "TEZOS_P2P_DISABLE_P2P_MAINTENANCE", num_args = 0..=1, require_equals = true, default_missing_value = "true", help_heading = "Limits")]
    pub disable_p2p_maintenance: Option<bool>,
    /// Minimal time between two swaps, in seconds [default: 30].
    #[arg(
        long,
        value_name = "SECONDS",
        env = "TEZOS_P2P_SWAP_LINGER",
        help_heading = "Limits"
    )]
    pub swap_linger: Option<f64>,
    /// Neither ask nor answer swaps.
    #[arg(long, value_name = "BOOL", env = "TEZOS_P2P_DISABLE_P2P_SWAP", num_args = 0..=1, require_equals = true, default_missing_value = "true", help_heading = "Limits")]
    pub disable_p2p_swap: Option<bool>,
    /// Reconnection back-off: the delay's factor after each failure
    /// [default: 1.2].
    #[arg(
        long,
        value_name = "FLOAT",
        env = "TEZOS_P2P_RECONNECTION_FACTOR",
        help_heading = "Limits"
    )]
    pub reconnection_factor: Option<f64>,
    /// Reconnection back-off: the first delay, in seconds [default: 1].
    #[arg(
        long,
        value_name = "SECONDS",
        env = "TEZOS_P2P_RECONNECTION_INITIAL_DELAY",
        help_heading = "Limits"
    )]
    pub reconnection_initial_delay: Option<f64>,
    /// Reconnection back-off: the delay after a disconnection, in seconds
    /// [default: 60].
    #[arg(
        long,
        value_name = "SECONDS",
        env = "TEZOS_P2P_RECONNECTION_DISCONNECTION_DELAY",
        help_heading = "Limits"
    )]
    pub reconnection_disconnection_delay: Option<f64>,
    /// Reconnection back-off: the largest delay, in seconds
    /// [default: 172800].
    #[arg(
        long,
        value_name = "SECONDS",
        env = "TEZOS_P2P_RECONNECTION_INCREASE_CAP",
        help_heading = "Limits"
    )]
    pub reconnection_increase_cap: Option<f64>,

    // ---- RPC -----------------------------------------------------------
    /// RPC and /metrics address, ADDR[:PORT] (port 8732 when omitted)
    /// [default: 127.0.0.1:8732].
    #[arg(
        long,
        value_name = "ADDR:PORT",
        env = "TEZOS_P2P_RPC_ADDR",
        help_heading = "RPC"
    )]
    pub rpc_addr: Option<String>,
    /// Broadcast a Text ping every SECONDS (0 = off) [default: 0].
    #[arg(
        long,
        value_name = "SECONDS",
        env = "TEZOS_P2P_PING_INTERVAL",
        help_heading = "RPC"
    )]
    pub ping_interval: Option<f64>,
}

/// Keys that, set in a layer, drop other keys of the layers below: an
/// upper `--connections` replaces a lower layer's bounds (as octez-node's
/// `--connections` replaces its config file's), an upper `--network` a
/// lower chain name and id, an upper period a lower "disabled".
pub const IMPLIED: &[(&str, &[&str])] = &[
    (
        "connections",
        &["min-connections", "expected-connections", "max-connections"],
    ),
    ("network", &["chain-name", "chain-id"]),
    ("maintenance-idle-time", &["disable-p2p-maintenance"]),
    ("swap-linger", &["disable-p2p-swap"]),
];

/// `upper` over `lower`: `upper`'s non-null keys replace `lower`'s (and
/// drop those [`IMPLIED`] by them).
pub fn layer(lower: &mut Map<String, Value>, upper: Map<String, Value>) {
    for (k, v) in upper {
        if v.is_null() {
            continue;
        }
        if let Some((_, implied)) = IMPLIED.iter().find(|(key, _)| *key == k) {
            for i in *implied {
                lower.remove(*i);
            }
        }
        lower.insert(k, v);
    }
}

fn to_map(s: &Settings) -> Map<String, Value> {
    match serde_json::to_value(s) {
        Ok(Value::Object(m)) => m,
        _ => unreachable!("settings serialize to an object"),
    }
}

/// Splits the settings clap parsed into the environment's and the command
/// line's layers, by where clap found each value.
pub fn split_sources(parsed: &Settings, matches: &ArgMatches) -> [Map<String, Value>; 2] {
    let mut env = Map::new();
    let mut flags = Map::new();
    for (k, v) in to_map(parsed) {
        if v.is_null() {
            continue;
        }
        match matches.value_source(&k.replace('-', "_")) {
            Some(ValueSource::EnvVariable) => env.insert(k, v),
            _ => flags.insert(k, v),
        };
    }
    [env, flags]
}

/// What loading the settings noticed: logged once logging is up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Notes {
    /// Informational lines.
    pub info: Vec<String>,
    /// Warnings.
    pub warn: Vec<String>,
}

/// The file layer, then the given layers over it: the settings to run with.
pub fn merge(
    file: Settings,
    upper: impl IntoIterator<Item = Map<String, Value>>,
) -> Result<Settings> {
    let mut all = to_map(&file);
    all.retain(|_, v| !v.is_null());
    for u in upper {
        layer(&mut all, u);
    }
    serde_json::from_value(Value::Object(all)).map_err(|e| usage!("invalid settings: {e}"))
}

/// Reads a config file: this node's own format, or octez-node's
/// `config.json` (recognized by its sections).
pub fn read_file(path: &Path) -> Result<(Settings, Notes)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse_file(&text).map_err(|e| usage!("invalid config file {}: {e:#}", path.display()))
}

/// Parses a config file's text (see [`read_file`]).
pub fn parse_file(text: &str) -> Result<(Settings, Notes)> {
    let value: Value = serde_json::from_str(text)?;
    let Value::Object(map) = &value else {
        bail!("expected a JSON object");
    };
    if octez::is_octez(map) {
        octez::to_settings(value)
    } else {
        Ok((serde_json::from_value(value)?, Notes::default()))
    }
}

/// A point as Octez writes it: `ADDR[:PORT][#PEER_ID]`, where ADDR is an
/// IPv4 address, an IPv6 address in brackets, a host name, or empty (or
/// `_`) for the default address (Octez's `P2p_point.Id.parse_addr_port_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointSpec {
    /// The address or host name, without brackets; empty for the default.
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
    /// The expected peer id, if given.
    pub peer_id: Option<PeerId>,
}

impl PointSpec {
    /// Parses Octez's grammar.
    pub fn parse(s: &str) -> std::result::Result<PointSpec, String> {
        const FORMAT: &str = "expected ADDR[:PORT][#PEER_ID], an IPv6 address in brackets";
        let (main, peer_id) = match s.split_once('#') {
            Some((main, id)) => {
                let id = id
                    .parse::<PeerId>()
                    .map_err(|_| format!("{id:?} is not a peer id (idt…, ids…)"))?;
                (main, Some(id))
            }
            None => (s, None),
        };
        let (host, port) = if let Some(inner) = main.strip_prefix('[') {
            let (addr, rest) = inner.split_once(']').ok_or_else(|| FORMAT.to_owned())?;
            if addr.is_empty()
                || !addr
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err(format!("{addr:?} is not an IPv6 address"));
            }
            match rest {
                "" => (addr, None),
                _ => match rest.strip_prefix(':') {
                    Some(p) => (addr, Some(p)),
                    None => return Err(FORMAT.to_owned()),
                },
            }
        } else {
            if main.matches(':').count() > 1 {
                return Err(format!(
                    "an IPv6 address needs brackets: [{main}] or [ADDR]:PORT"
                ));
            }
            let (host, port) = match main.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (main, None),
            };
            if !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                && host != "_"
            {
                return Err(FORMAT.to_owned());
            }
            (if host == "_" { "" } else { host }, port)
        };
        let port = port
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("port {p:?} is not a number"));
                }
                p.parse::<u16>()
                    .map_err(|_| format!("port {p} not in range 0..=65535"))
            })
            .transpose()?;
        Ok(PointSpec {
            host: host.to_owned(),
            port,
            peer_id,
        })
    }

    /// The IP literal, if the address is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// Resolves to socket addresses (host names through the system's
    /// resolver), with the defaults for an absent address or port.
    pub fn resolve(
        &self,
        default_host: &str,
        default_port: u16,
    ) -> std::io::Result<Vec<SocketAddr>> {
        let port = self.port.unwrap_or(default_port);
        let host = if self.host.is_empty() {
            default_host
        } else {
            &self.host
        };
        match host.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, port)]),
            Err(_) => Ok((host, port).to_socket_addrs()?.collect()),
        }
    }
}

/// `flag`'s ADDR[:PORT] resolved to one address (IPv4 preferred).
fn address(flag: &str, s: &str, default_host: &str, default_port: u16) -> Result<SocketAddr> {
    let spec = PointSpec::parse(s).map_err(|e| usage!("invalid --{flag} {s:?}: {e}"))?;
    if spec.peer_id.is_some() {
        return Err(usage!("invalid --{flag} {s:?}: no #PEER_ID here"));
    }
    let addrs = spec
        .resolve(default_host, default_port)
        .map_err(|e| usage!("invalid --{flag} {s:?}: cannot resolve: {e}"))?;
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| usage!("invalid --{flag} {s:?}: resolves to no address"))
}

/// Parses and resolves a `--peer` (port 9732 by default).
pub fn parse_peer(s: &str) -> Result<(Point, Option<PeerId>)> {
    let spec = PointSpec::parse(s).map_err(|e| usage!("invalid --peer {s:?}: {e}"))?;
    let addrs = spec
        .resolve("::", DEFAULT_P2P_PORT)
        .map_err(|e| usage!("invalid --peer {s:?}: cannot resolve host: {e}"))?;
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .ok_or_else(|| usage!("invalid --peer {s:?}: host resolves to no address"))?;
    Ok((Point::from(*addr), spec.peer_id))
}

/// Trusted points, each optionally pinned to a peer id.
pub type TrustedPoints = Vec<(Point, Option<PeerId>)>;

/// Limits from `--connections N`: min N/2 (1 when N = 1), expected N, max
/// 3N/2, known tables (8N, 6N).
pub fn apply_connections(limits: &mut Limits, n: usize) {
    limits.min_connections = if n == 1 { 1 } else { n / 2 };
    limits.expected_connections = n;
    limits.max_connections = 3 * n / 2;
    limits.max_known_points = Some((8 * n.max(1), 6 * n.max(1)));
    limits.max_known_peer_ids = Some((8 * n.max(1), 6 * n.max(1)));
}

fn seconds(flag: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| usage!("invalid --{flag} {s}: must be a number of seconds >= 0"))
}

fn positive_seconds(flag: &str, s: f64) -> Result<Duration> {
    let d = seconds(flag, s)?;
    if d.is_zero() {
        return Err(usage!("invalid --{flag} {s}: must be positive"));
    }
    Ok(d)
}

fn on(b: Option<bool>) -> bool {
    b.unwrap_or(false)
}

impl Settings {
    /// The proof-of-work level, checked.
    pub fn expected_pow(&self) -> Result<f64> {
        let pow = self.expected_pow.unwrap_or(26.0);
        if !(0.0..=256.0).contains(&pow) {
            return Err(usage!("invalid --expected-pow {pow}: must be in 0..=256"));
        }
        Ok(pow)
    }

    /// The RPC address.
    pub fn rpc_addr(&self) -> Result<SocketAddr> {
        address(
            "rpc-addr",
            self.rpc_addr.as_deref().unwrap_or("127.0.0.1"),
            "127.0.0.1",
            DEFAULT_RPC_PORT,
        )
    }

    /// The P2P listening address.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        address(
            "net-addr",
            self.net_addr.as_deref().unwrap_or("[::]"),
            "::",
            DEFAULT_P2P_PORT,
        )
    }

    /// Local discovery's address, if on.
    pub fn discovery_addr(&self) -> Result<Option<SocketAddr>> {
        let Some(s) = self.discovery_addr.as_deref() else {
            return Ok(None);
        };
        let a = address(
            "discovery-addr",
            s,
            "255.255.255.255",
            DEFAULT_DISCOVERY_PORT,
        )?;
        if !a.is_ipv4() {
            return Err(usage!(
                "invalid --discovery-addr {a}: must be an IPv4 address, e.g. 255.255.255.255:10732"
            ));
        }
        Ok(Some(a))
    }

    /// The network, with --chain-name and --chain-id applied.
    pub fn network(&self) -> Result<Network> {
        let r = match self
            .network
            .clone()
            .unwrap_or(NetworkSetting::Builtin(NetworkName::Sandbox))
        {
            NetworkSetting::Builtin(n) => {
                Network::from_flags(n, self.chain_name.clone(), self.chain_id.clone())
            }
            NetworkSetting::Custom(c) => {
                let same = self.chain_name.is_none() && self.chain_id.is_none();
                let name = self.chain_name.clone().unwrap_or(c.chain_name);
                let id = self.chain_id.clone().unwrap_or(c.chain_id);
                if name.is_empty() {
                    return Err(usage!(
                        "a custom network needs a chain name (an empty one is octez-p2p-node's network: --network p2p-node)"
                    ));
                }
                let chain_id = id.parse::<ChainId>().map_err(|e| {
                    usage!("invalid chain id {id:?}: {e} (expected Net…, e.g. NetXdQprcVkpaWU)")
                })?;
                Ok(Network::Chain {
                    chain_name: ChainName::from(name.as_str()),
                    chain_id,
                    bootstrap_peers: if same { c.bootstrap_peers } else { vec![] },
                })
            }
        };
        r.map_err(|e| usage!("{e}"))
    }

    /// The reconnection back-off.
    pub fn reconnection(&self) -> Result<ReconnectionConfig> {
        let mut r = ReconnectionConfig::default();
        if let Some(f) = self.reconnection_factor {
            if !(f.is_finite() && f >= 1.0) {
                return Err(usage!("invalid --reconnection-factor {f}: must be >= 1"));
            }
            r.factor = f;
        }
        if let Some(s) = self.reconnection_initial_delay {
            r.initial_delay = seconds("reconnection-initial-delay", s)?;
        }
        if let Some(s) = self.reconnection_disconnection_delay {
            r.disconnection_delay = seconds("reconnection-disconnection-delay", s)?;
        }
        if let Some(s) = self.reconnection_increase_cap {
            r.increase_cap = seconds("reconnection-increase-cap", s)?;
        }
        Ok(r)
    }

    /// The pool's limits.
    pub fn limits(&self) -> Result<Limits> {
        let mut l = Limits::default();
        if let Some(n) = self.connections {
            if n == 0 || n > 100 {
                return Err(usage!("invalid --connections {n}: must be in 1..=100"));
            }
            apply_connections(&mut l, n);
        }
        let set = |dst: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut l.min_connections, self.min_connections);
        set(&mut l.expected_connections, self.expected_connections);
        set(&mut l.max_connections, self.max_connections);
        set(
            &mut l.max_incoming_connections,
            self.max_incoming_connections,
        );
        set(
            &mut l.max_incoming_connections_per_ip,
            self.max_incoming_connections_per_ip,
        );
        set(&mut l.read_buffer_size, self.read_buffer_size);
        set(
            &mut l.incoming_message_queue_size,
            self.incoming_message_queue_size,
        );
        set(
            &mut l.outgoing_message_queue_size,
            self.outgoing_message_queue_size,
        );
        set(
            &mut l.incoming_app_message_queue_size,
            self.incoming_app_message_queue_size,
        );
        set(&mut l.peer_greylist_size, self.peer_greylist_size);
        set(
            &mut l.ip_greylist_size_in_kilobytes,
            self.ip_greylist_size_in_kilobytes,
        );
        if let Some(b) = self.backlog {
            l.backlog = b;
        }
        if !(l.min_connections <= l.expected_connections
            && l.expected_connections <= l.max_connections)
        {
            return Err(usage!(
                "invalid connection limits: need min ({}) <= expected ({}) <= max ({})",
                l.min_connections,
                l.expected_connections,
                l.max_connections
            ));
        }
        if let Some(s) = self.connection_timeout {
            l.connection_timeout = positive_seconds("connection-timeout", s)?;
        }
        if let Some(s) = self.authentication_timeout {
            l.authentication_timeout = positive_seconds("authentication-timeout", s)?;
        }
        for (flag, v, dst) in [
            (
                "max-download-speed",
                self.max_download_speed,
                &mut l.max_download_speed,
            ),
            (
                "max-upload-speed",
                self.max_upload_speed,
                &mut l.max_upload_speed,
            ),
        ] {
            if let Some(v) = v {
                if v == 0 {
                    return Err(usage!(
                        "invalid --{flag} 0: must be positive (omit it for no cap)"
                    ));
                }
                *dst = Some(v);
            }
        }
        if let Some(kb) = self.binary_chunks_size {
            let bytes = kb.saturating_mul(1024);
            tezos_p2p_wire::chunk::check_binary_chunks_size(bytes).map_err(|_| {
                usage!("invalid --binary-chunks-size {kb}: must be in 1..=63 kB (1024 bytes each)")
            })?;
            l.binary_chunks_size = Some(bytes);
        }
        if let Some(mib) = self.partial_message_budget {
            if !(1..=1 << 20).contains(&mib) {
                return Err(usage!(
                    "invalid --partial-message-budget {mib}: must be in 1..=1048576 MiB"
                ));
            }
            l.partial_message_budget = mib << 20;
        }
        if let Some(n) = self.peer_table_size {
            if n == 0 {
                return Err(usage!("invalid --peer-table-size 0: must be positive"));
            }
            let t = Some((n, (n / 4 * 3).max(1)));
            l.max_known_points = t;
            l.max_known_peer_ids = t;
        }
        if let Some(TableSize(max, target)) = self.max_known_points {
            l.max_known_points = Some((max, target));
        }
        if let Some(TableSize(max, target)) = self.max_known_peer_ids {
            l.max_known_peer_ids = Some((max, target));
        }
        if let Some(s) = self.ip_greylist_cleanup_delay {
            l.ip_greylist_cleanup_delay = positive_seconds("ip-greylist-cleanup-delay", s)?;
        }
        if let Some(s) = self.maintenance_idle_time {
            l.maintenance_idle_time = Some(positive_seconds("maintenance-idle-time", s)?);
        }
        if on(self.disable_p2p_maintenance) {
            l.maintenance_idle_time = None;
        }
        if let Some(s) = self.swap_linger {
            l.swap_linger = Some(positive_seconds("swap-linger", s)?);
        }
        if on(self.disable_p2p_swap) {
            l.swap_linger = None;
        }
        l.validate().map_err(|e| usage!("{e}"))?;
        Ok(l)
    }

    /// The ping period, if any.
    pub fn ping_interval(&self) -> Result<Option<Duration>> {
        match self.ping_interval {
            None => Ok(None),
            Some(s) => Ok(Some(seconds("ping-interval", s)?).filter(|d| !d.is_zero())),
        }
    }

    /// The bootstrap peers: IP literals become trusted points, host names
    /// are resolved by the node in the background.
    fn bootstrap(&self, network: &Network) -> Result<(TrustedPoints, Vec<String>)> {
        if on(self.no_bootstrap_peers) {
            return Ok((vec![], vec![]));
        }
        let list = match &self.bootstrap_peers {
            Some(l) => l.clone(),
            None => network.bootstrap_peers().to_vec(),
        };
        let (mut points, mut hosts) = (vec![], vec![]);
        for s in list {
            let spec =
                PointSpec::parse(&s).map_err(|e| usage!("invalid bootstrap peer {s:?}: {e}"))?;
            let port = spec.port.unwrap_or(DEFAULT_P2P_PORT);
            match spec.ip() {
                Some(ip) => points.push((Point::new(ip, port), spec.peer_id)),
                None if spec.host.is_empty() => points.push((
                    Point::new("::".parse().expect("literal"), port),
                    spec.peer_id,
                )),
                None => hosts.push(format!("{}:{port}", spec.host)),
            }
        }
        Ok((points, hosts))
    }

    /// Checks every setting without resolving host names or needing an
    /// identity: what [`Settings::node_params`] would refuse, but cheaply.
    pub fn check(&self) -> Result<()> {
        self.expected_pow()?;
        self.limits()?;
        self.reconnection()?;
        self.ping_interval()?;
        let network = self.network()?;
        self.bootstrap(&network)?;
        for p in self.peer.iter().flatten() {
            PointSpec::parse(p).map_err(|e| usage!("invalid --peer {p:?}: {e}"))?;
        }
        for (flag, v) in [
            ("net-addr", &self.net_addr),
            ("rpc-addr", &self.rpc_addr),
            ("discovery-addr", &self.discovery_addr),
        ] {
            if let Some(s) = v {
                PointSpec::parse(s).map_err(|e| usage!("invalid --{flag} {s:?}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The pool's [`Config`] and [`Limits`] and the node's own settings.
    /// Host names of --peer are resolved here.
    pub fn node_params(
        &self,
        identity: Arc<Identity>,
        peers_file: Option<PathBuf>,
    ) -> Result<NodeParams> {
        let network = self.network()?;
        let expected_pow = self.expected_pow()?;
        let proof_of_work_target = PowTarget::new(expected_pow)
            .map_err(|_| usage!("invalid --expected-pow {expected_pow}"))?;
        let (mut trusted_points, bootstrap_hosts) = self.bootstrap(&network)?;
        for p in self.peer.iter().flatten() {
            trusted_points.push(parse_peer(p)?);
        }
        let private_mode = on(self.private_mode);
        let config = {
            let mut config = Config::new(
                identity,
                SupportedVersions {
                    distributed_db_versions: network.distributed_db_versions().to_vec(),
                    ..SupportedVersions::octez(network.chain_name().clone())
                },
            );
            config.listening_addr = Some(self.listen_addr()?);
            config.advertised_port = self.advertised_net_port;
            config.trusted_points = trusted_points;
            config.peers_file = peers_file;
            config.private_mode = private_mode;
            config.proof_of_work_target = proof_of_work_target;
            config.metadata = OctezMetadata {
                // octez-p2p-node announces disable_mempool: its network has none.
                disable_mempool: on(self.disable_mempool) || network.chain_id().is_none(),
                private_node: private_mode,
            };
            config.reconnection = self.reconnection()?;
            config.disable_peer_discovery = on(self.disable_peer_discovery);
            config.transport = Transport::Tcp(TcpOptions::from_env());
            config
        };
        Ok(NodeParams {
            config,
            limits: self.limits()?,
            network,
            bootstrap_hosts,
            ping_interval: self.ping_interval()?,
            discovery: self.discovery_addr()?,
        })
    }
}

/// What `run --dry-run` prints: the settings as merged, and the pool's
/// configuration and limits they give.
pub fn describe(settings: &Settings, p: &NodeParams, rpc: SocketAddr) -> Value {
    let c = &p.config;
    let secs = |d: Duration| d.as_secs_f64();
    serde_json::json!({
        "settings": settings,
        "network": p.network.to_string(),
        "chain_name": p.network.chain_name().to_string(),
        "chain_id": p.network.chain_id().map(|c| c.to_string()),
        "config": {
            "listening_addr": c.listening_addr.map(|a| a.to_string()),
            "advertised_port": c.advertised_port,
            "trusted_points": c.trusted_points.iter().map(|(p, id)| match id {
                Some(id) => format!("{p}#{id}"),
                None => p.to_string(),
            }).collect::<Vec<_>>(),
            "private_mode": c.private_mode,
            "proof_of_work_target": settings.expected_pow().unwrap_or_default(),
            "disable_mempool": c.metadata.disable_mempool,
            "disable_peer_discovery": c.disable_peer_discovery,
            "reconnection": {
                "factor": c.reconnection.factor,
                "initial_delay": secs(c.reconnection.initial_delay),
                "disconnection_delay": secs(c.reconnection.disconnection_delay),
                "increase_cap": secs(c.reconnection.increase_cap),
            },
        },
        "limits": {
            "connection_timeout": secs(p.limits.connection_timeout),
            "authentication_timeout": secs(p.limits.authentication_timeout),
            "maintenance_idle_time": p.limits.maintenance_idle_time.map(secs),
            "min_connections": p.limits.min_connections,
            "expected_connections": p.limits.expected_connections,
            "max_connections": p.limits.max_connections,
            "backlog": p.limits.backlog,
            "max_incoming_connections": p.limits.max_incoming_connections,
            "max_incoming_connections_per_ip": p.limits.max_incoming_connections_per_ip,
            "max_download_speed": p.limits.max_download_speed,
            "max_upload_speed": p.limits.max_upload_speed,
            "read_buffer_size": p.limits.read_buffer_size,
            "incoming_message_queue_size": p.limits.incoming_message_queue_size,
            "outgoing_message_queue_size": p.limits.outgoing_message_queue_size,
            "incoming_app_message_queue_size": p.limits.incoming_app_message_queue_size,
            "partial_message_budget": p.limits.partial_message_budget,
            "max_known_points": p.limits.max_known_points,
            "max_known_peer_ids": p.limits.max_known_peer_ids,
            "peer_greylist_size": p.limits.peer_greylist_size,
            "ip_greylist_size_in_kilobytes": p.limits.ip_greylist_size_in_kilobytes,
            "ip_greylist_cleanup_delay": secs(p.limits.ip_greylist_cleanup_delay),
            "swap_linger": p.limits.swap_linger.map(secs),
            "binary_chunks_size": p.limits.binary_chunks_size,
        },
        "bootstrap_hosts": p.bootstrap_hosts,
        "discovery_addr": p.discovery.map(|a| a.to_string()),
        "ping_interval": p.ping_interval.map(secs),
        "rpc_addr": rpc.to_string(),
    })
}

pub mod octez {
    //! octez-node's `config.json` (`src/lib_node_config/config_file.ml`):
    //! its `p2p` section and its `network` field become the file layer's
    //! [`Settings`]; the other sections (rpc, log, shell, …) are ignored.
    //!
    //! Units: durations are seconds (floats); `max-download-speed` and
    //! `max-upload-speed` are KiB/s (octez-node multiplies them by 1024),
    //! converted here to the flags' bytes/s. Ignored, with a warning:
    //! `limits.binary-chunks-size` (octez-node overwrites it with its
    //! flag's value, absent or not), `limits.read-queue-size` and
    //! `limits.write-queue-size` (octez-node's I/O scheduler queues; this
    //! node has none), `limits.greylist-timeout` (unused by octez-node),
    //! `enable_testchain` (deprecated), and null queue sizes (unbounded
    //! queues). A `network` absent means mainnet, as for octez-node.

    use std::collections::BTreeMap;

    use super::*;

    /// The top-level keys of octez-node's `config.json` that this node's
    /// own format does not have.
    const OCTEZ_KEYS: &[&str] = &[
        "p2p",
        "rpc",
        "log",
        "shell",
        "data-dir",
        "disable-config-validation",
        "internal-events",
        "metrics_addr",
        "profiling",
    ];

    /// Whether a config file is octez-node's.
    pub fn is_octez(map: &Map<String, Value>) -> bool {
        OCTEZ_KEYS.iter().any(|k| map.contains_key(*k))
            || map.get("network").is_some_and(Value::is_object)
    }

    /// `Some(v)` for a present value, `null` included (then `Some(None)`).
    fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
    where
        D: serde::Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }

    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        p2p: Option<P2p>,
        #[serde(default)]
        network: Option<NetworkField>,
        #[serde(flatten)]
        other: BTreeMap<String, Value>,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NetworkField {
        Alias(String),
        Custom(Box<Custom>),
    }

    #[derive(Deserialize)]
    struct Custom {
        genesis: Genesis,
        chain_name: String,
        #[serde(default)]
        default_bootstrap_peers: Vec<String>,
    }

    #[derive(Deserialize)]
    struct Genesis {
        block: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct P2p {
        expected_proof_of_work: Option<f64>,
        bootstrap_peers: Option<Vec<String>>,
        listen_addr: Option<String>,
        advertised_net_port: Option<u16>,
        #[serde(default, deserialize_with = "present")]
        discovery_addr: Option<Option<String>>,
        private_mode: Option<bool>,
        limits: Option<OctezLimits>,
        #[serde(rename = "disable_mempool", alias = "disable-mempool")]
        disable_mempool: Option<bool>,
        #[serde(rename = "enable_testchain")]
        enable_testchain: Option<Value>,
        #[serde(rename = "greylisting_config")]
        greylisting_config: Option<Greylisting>,
        #[serde(rename = "disable_peer_discovery", alias = "disable-peer-discovery")]
        disable_peer_discovery: Option<bool>,
        #[serde(flatten)]
        unknown: BTreeMap<String, Value>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Greylisting {
        factor: Option<f64>,
        initial_delay: Option<f64>,
        disconnection_delay: Option<f64>,
        increase_cap: Option<f64>,
        #[serde(flatten)]
        unknown: BTreeMap<String, Value>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct OctezLimits {
        connection_timeout: Option<f64>,
        authentication_timeout: Option<f64>,
        min_connections: Option<usize>,
        expected_connections: Option<usize>,
        max_connections: Option<usize>,
        backlog: Option<u32>,
        max_incoming_connections: Option<usize>,
        /// KiB/s.
        #[serde(alias = "max_download_speed")]
        max_download_speed: Option<u64>,
        /// KiB/s.
        #[serde(alias = "max_upload_speed")]
        max_upload_speed: Option<u64>,
        #[serde(default, deserialize_with = "present")]
        swap_linger: Option<Option<f64>>,
        binary_chunks_size: Option<Value>,
        read_buffer_size: Option<usize>,
        read_queue_size: Option<Value>,
        write_queue_size: Option<Value>,
        #[serde(default, deserialize_with = "present")]
        incoming_app_message_queue_size: Option<Option<usize>>,
        #[serde(default, deserialize_with = "present")]
        incoming_message_queue_size: Option<Option<usize>>,
        #[serde(default, deserialize_with = "present")]
        outgoing_message_queue_size: Option<Option<usize>>,
        #[serde(rename = "max_known_points")]
        max_known_points: Option<TableSize>,
        #[serde(rename = "max_known_peer_ids")]
        max_known_peer_ids: Option<TableSize>,
        #[serde(rename = "peer_greylist_size")]
        peer_greylist_size: Option<usize>,
        #[serde(rename = "ip_greylist_size_in_kilobytes")]
        ip_greylist_size_in_kilobytes: Option<usize>,
        #[serde(rename = "ip_greylist_cleanup_delay")]
        ip_greylist_cleanup_delay: Option<f64>,
        greylist_timeout: Option<Value>,
        #[serde(default, deserialize_with = "present")]
        maintenance_idle_time: Option<Option<f64>>,
        #[serde(flatten)]
        unknown: BTreeMap<String, Value>,
    }

    fn kib(v: Option<u64>) -> Option<u64> {
        v.map(|k| k.saturating_mul(1024))
    }

    /// An octez-node `config.json` as the file layer.
    pub fn to_settings(value: Value) -> Result<(Settings, Notes)> {
        let file: File = serde_json::from_value(value)?;
        let mut notes = Notes::default();
        let mut ignored = Vec::new();
        let mut s = Settings::default();
        match file.network {
            None => s.network = Some(NetworkSetting::Builtin(NetworkName::Mainnet)),
            Some(NetworkField::Alias(a)) => {
                let n = serde_json::from_value::<NetworkName>(Value::String(a.clone()))
                    .map_err(|_| anyhow!("unknown network {a:?}"))?;
                s.network = Some(NetworkSetting::Builtin(n));
            }
            Some(NetworkField::Custom(c)) => {
                let block: tezos_p2p_shell::BlockHash = c
                    .genesis
                    .block
                    .parse()
                    .map_err(|e| anyhow!("network.genesis.block {:?}: {e}", c.genesis.block))?;
                s.network = Some(NetworkSetting::Custom(CustomNetwork {
                    chain_name: c.chain_name,
                    chain_id: ChainId::of_block_hash(&block).to_string(),
                    bootstrap_peers: c.default_bootstrap_peers,
                }));
            }
        }
        if !file.other.is_empty() {
            notes.info.push(format!(
                "config file: octez-node's {} ignored (only p2p and network apply)",
                file.other.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(p) = file.p2p {
            s.expected_pow = p.expected_proof_of_work;
            s.bootstrap_peers = p.bootstrap_peers;
            s.net_addr = p.listen_addr;
            s.advertised_net_port = p.advertised_net_port;
            s.discovery_addr = p.discovery_addr.flatten();
            s.private_mode = p.private_mode;
            s.disable_mempool = p.disable_mempool;
            s.disable_peer_discovery = p.disable_peer_discovery;
            if p.enable_testchain.is_some() {
                ignored.push("p2p.enable_testchain".to_owned());
            }
            if let Some(g) = p.greylisting_config {
                s.reconnection_factor = g.factor;
                s.reconnection_initial_delay = g.initial_delay;
                s.reconnection_disconnection_delay = g.disconnection_delay;
                s.reconnection_increase_cap = g.increase_cap;
                ignored.extend(
                    g.unknown
                        .keys()
                        .map(|k| format!("p2p.greylisting_config.{k}")),
                );
            }
            ignored.extend(p.unknown.keys().map(|k| format!("p2p.{k}")));
            if let Some(l) = p.limits {
                s.connection_timeout = l.connection_timeout;
                s.authentication_timeout = l.authentication_timeout;
                s.min_connections = l.min_connections;
                s.expected_connections = l.expected_connections;
                s.max_connections = l.max_connections;
                s.backlog = l.backlog;
                s.max_incoming_connections = l.max_incoming_connections;
                s.max_download_speed = kib(l.max_download_speed);
                s.max_upload_speed = kib(l.max_upload_speed);
                match l.swap_linger {
                    Some(Some(x)) => s.swap_linger = Some(x),
                    Some(None) => s.disable_p2p_swap = Some(true),
                    None => {}
                }
                match l.maintenance_idle_time {
                    Some(Some(x)) => s.maintenance_idle_time = Some(x),
                    Some(None) => s.disable_p2p_maintenance = Some(true),
                    None => {}
                }
                s.read_buffer_size = l.read_buffer_size;
                for (key, v, dst) in [
                    (
                        "incoming-app-message-queue-size",
                        l.incoming_app_message_queue_size,
                        &mut s.incoming_app_message_queue_size,
                    ),
                    (
                        "incoming-message-queue-size",
                        l.incoming_message_queue_size,
                        &mut s.incoming_message_queue_size,
                    ),
                    (
                        "outgoing-message-queue-size",
                        l.outgoing_message_queue_size,
                        &mut s.outgoing_message_queue_size,
                    ),
                ] {
                    match v {
                        Some(Some(n)) => *dst = Some(n),
                        Some(None) => ignored.push(format!("p2p.limits.{key} (null: unbounded)")),
                        None => {}
                    }
                }
                s.max_known_points = l.max_known_points;
                s.max_known_peer_ids = l.max_known_peer_ids;
                s.peer_greylist_size = l.peer_greylist_size;
                s.ip_greylist_size_in_kilobytes = l.ip_greylist_size_in_kilobytes;
                s.ip_greylist_cleanup_delay = l.ip_greylist_cleanup_delay;
                for (key, v) in [
                    ("binary-chunks-size", &l.binary_chunks_size),
                    ("read-queue-size", &l.read_queue_size),
                    ("write-queue-size", &l.write_queue_size),
                    ("greylist-timeout", &l.greylist_timeout),
                ] {
                    if v.is_some() {
                        ignored.push(format!("p2p.limits.{key}"));
                    }
                }
                ignored.extend(l.unknown.keys().map(|k| format!("p2p.limits.{k}")));
            }
        }
        if !ignored.is_empty() {
            notes.warn.push(format!(
                "config file: ignored (no effect on this node): {}",
                ignored.join(", ")
            ));
        }
        Ok((s, notes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        s: Settings,
    }

    /// The settings from `file` (JSON) then `flags`, without the
    /// environment (each flag's variable unset in tests).
    fn layered(file: &str, flags: &[&str]) -> Result<Settings> {
        let (file, _) = if file.is_empty() {
            (Settings::default(), Notes::default())
        } else {
            parse_file(file)?
        };
        let mut argv = vec!["t"];
        argv.extend_from_slice(flags);
        let m = Cli::command().try_get_matches_from(argv)?;
        let parsed = Cli::from_arg_matches(&m)?.s;
        merge(file, split_sources(&parsed, &m))
    }

    fn limits(file: &str, flags: &[&str]) -> Limits {
        layered(file, flags).unwrap().limits().unwrap()
    }

    #[test]
    fn connections_shortcut_matches_octez() {
        let mut l = Limits::default();
        apply_connections(&mut l, 1);
        assert_eq!(
            (l.min_connections, l.expected_connections, l.max_connections),
            (1, 1, 1)
        );
        apply_connections(&mut l, 4);
        assert_eq!(
            (l.min_connections, l.expected_connections, l.max_connections),
            (2, 4, 6)
        );
        assert_eq!(l.max_known_points, Some((32, 24)));
    }

    #[test]
    fn speeds_are_bytes_per_second() {
        let l = limits(
            "",
            &["--max-download-speed", "1500", "--max-upload-speed", "700"],
        );
        assert_eq!(
            (l.max_download_speed, l.max_upload_speed),
            (Some(1500), Some(700))
        );
        assert!(layered("", &["--max-upload-speed", "0"])
            .unwrap()
            .limits()
            .is_err());
    }

    #[test]
    fn binary_chunks_size_is_in_kb() {
        assert_eq!(
            limits("", &["--binary-chunks-size", "4"]).binary_chunks_size,
            Some(4096)
        );
        assert!(layered("", &["--binary-chunks-size", "64"])
            .unwrap()
            .limits()
            .is_err());
        assert!(layered("", &["--binary-chunks-size", "0"])
            .unwrap()
            .limits()
            .is_err());
    }

    #[test]
    fn points_default_to_port_9732_as_octez_parses_them() {
        let p = |s: &str| PointSpec::parse(s).unwrap();
        assert_eq!(
            (p("1.2.3.4").host.as_str(), p("1.2.3.4").port),
            ("1.2.3.4", None)
        );
        assert_eq!(p("1.2.3.4:9733").port, Some(9733));
        assert_eq!((p("[::1]").host.as_str(), p("[::1]").port), ("::1", None));
        assert_eq!(p("[::1]:1").port, Some(1));
        assert_eq!(p("boot.tzinit.org").host, "boot.tzinit.org");
        assert_eq!(p(":9000").host, "");
        assert_eq!(p("_:9000").host, "");
        // A bare IPv6 address is ambiguous with a port: brackets needed.
        assert!(PointSpec::parse("::1").unwrap_err().contains("brackets"));
        assert!(PointSpec::parse("1.2.3.4:70000").is_err());
        assert!(PointSpec::parse("a b:1").is_err());
        assert!(PointSpec::parse("1.2.3.4:1#nope").is_err());

        let (pt, id) = parse_peer("127.0.0.1").unwrap();
        assert_eq!((pt.to_string().as_str(), id), ("127.0.0.1:9732", None));
        assert_eq!(parse_peer("[::1]").unwrap().0.to_string(), "[::1]:9732");
        let (pt, _) = parse_peer("localhost").unwrap();
        assert_eq!(pt.port(), 9732);
        assert!(pt.ip().is_loopback());
        let s = layered("", &["--net-addr", "127.0.0.1"]).unwrap();
        assert_eq!(s.listen_addr().unwrap().to_string(), "127.0.0.1:9732");
        assert_eq!(
            Settings::default().listen_addr().unwrap().to_string(),
            "[::]:9732"
        );
        let s = layered("", &["--discovery-addr", "255.255.255.255"]).unwrap();
        assert_eq!(
            s.discovery_addr().unwrap().unwrap().to_string(),
            "255.255.255.255:10732"
        );
    }

    #[test]
    fn a_file_true_is_turned_off_by_a_flag_false() {
        let file = r#"{"private-mode": true, "disable-p2p-swap": true}"#;
        let s = layered(file, &[]).unwrap();
        assert_eq!(s.private_mode, Some(true));
        let s = layered(file, &["--private-mode=false", "--disable-p2p-swap=false"]).unwrap();
        assert_eq!(s.private_mode, Some(false));
        assert!(s.limits().unwrap().swap_linger.is_some());
        // A bare flag is true.
        assert_eq!(
            layered("", &["--private-mode"]).unwrap().private_mode,
            Some(true)
        );
        // An octez-node file's null swap-linger, turned back on by a flag.
        let octez = r#"{"p2p": {"limits": {"swap-linger": null}}}"#;
        assert!(limits(octez, &[]).swap_linger.is_none());
        assert!(limits(octez, &["--disable-p2p-swap=false"])
            .swap_linger
            .is_some());
        assert_eq!(
            limits(octez, &["--swap-linger", "7"]).swap_linger,
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = r#"{"net-addr": "127.0.0.1:1", "peers": ["127.0.0.1:2"], "connections": 4, "min-connections": 1}"#;
        let s = layered(file, &["--net-addr", "127.0.0.1:3"]).unwrap();
        assert_eq!(s.listen_addr().unwrap().port(), 3);
        assert_eq!(s.peer.as_deref().unwrap().len(), 1);
        let l = s.limits().unwrap();
        assert_eq!((l.min_connections, l.expected_connections), (1, 4));
        // A flag --connections replaces the file's bounds.
        let l = limits(file, &["--connections", "10"]);
        assert_eq!((l.min_connections, l.expected_connections), (5, 10));
        // Repeated --peer replaces the file's list.
        let s = layered(file, &["--peer", "127.0.0.1:5", "--peer", "127.0.0.1:6"]).unwrap();
        assert_eq!(s.peer.unwrap(), vec!["127.0.0.1:5", "127.0.0.1:6"]);
        assert!(parse_file(r#"{"bogus": 1}"#).is_err());
        assert_eq!(
            limits(r#"{"partial-message-budget": 8}"#, &[]).partial_message_budget,
            8 << 20
        );
        assert_eq!(
            Settings::default().limits().unwrap().partial_message_budget,
            32 << 20
        );
        assert!(layered("", &["--partial-message-budget", "0"])
            .unwrap()
            .limits()
            .is_err());
        // --network on the command line drops the file's chain.
        let s = layered(
            r#"{"chain-name": "X", "chain-id": "NetXjD3HPJJjmcd"}"#,
            &["--network", "mainnet"],
        )
        .unwrap();
        assert_eq!(s.network().unwrap(), Network::builtin(NetworkName::Mainnet));
    }

    #[test]
    fn clap_checks_values_and_suggests() {
        let e = Cli::try_parse_from(["t", "--network", "moonnet"]).unwrap_err();
        assert!(e.to_string().contains("possible values"), "{e}");
        let e = Cli::try_parse_from(["t", "--privat-mode"]).unwrap_err();
        assert!(e.to_string().contains("--private-mode"), "{e}");
        assert!(Cli::try_parse_from(["t", "--private-mode=maybe"]).is_err());
        assert!(Cli::try_parse_from(["t", "--max-known-points", "10"]).is_err());
        let c = Cli::try_parse_from(["t", "--max-known-points", "10,5"]).unwrap();
        assert_eq!(c.s.max_known_points, Some(TableSize(10, 5)));
    }

    #[test]
    fn every_flag_has_an_env_var_with_the_prefix_and_a_file_key() {
        let cmd = Cli::command();
        for a in cmd.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            if long == "help" {
                continue;
            }
            let env = a
                .get_env()
                .unwrap_or_else(|| panic!("--{long} has no env var"));
            assert_eq!(
                env.to_str().unwrap(),
                format!("{ENV_PREFIX}{}", long.to_uppercase().replace('-', "_")),
            );
            // The file key is the flag's name.
            assert_eq!(a.get_id().as_str().replace('_', "-"), long);
        }
    }

    const OCTEZ_CONFIG: &str = r#"{
      "data-dir": "/var/lib/tezos/node",
      "rpc": { "listen-addrs": [ "127.0.0.1:8732" ], "acl": [] },
      "p2p": {
        "expected-proof-of-work": 24.5,
        "bootstrap-peers": [ "boot.tzinit.org", "1.2.3.4", "[2001:db8::1]:9733", "5.6.7.8:9000" ],
        "listen-addr": "[::]:19732",
        "advertised-net-port": 29732,
        "private-mode": true,
        "disable_mempool": true,
        "limits": {
          "connection-timeout": 12.5,
          "authentication-timeout": 4,
          "min-connections": 6,
          "expected-connections": 12,
          "max-connections": 24,
          "backlog": 30,
          "max-incoming-connections": 15,
          "max-download-speed": 2048,
          "max-upload-speed": 1024,
          "swap-linger": 45,
          "binary-chunks-size": 8,
          "read-buffer-size": 32768,
          "read-queue-size": 1000,
          "incoming-app-message-queue-size": 20,
          "incoming-message-queue-size": 4194304,
          "outgoing-message-queue-size": null,
          "max_known_points": [ 800, 600 ],
          "max_known_peer_ids": [ 700, 500 ],
          "peer_greylist_size": 500,
          "ip_greylist_size_in_kilobytes": 1024,
          "ip_greylist_cleanup_delay": 3600,
          "greylist-timeout": 100,
          "maintenance-idle-time": 60.5
        },
        "greylisting_config": { "factor": 2, "initial-delay": 3, "disconnection-delay": 30, "increase-cap": 600 }
      },
      "log": { "output": "stdout" },
      "shell": { "chain_validator": { "synchronisation_threshold": 4 } },
      "network": "ghostnet"
    }"#;

    #[test]
    fn octez_config_json_is_accepted() {
        let (file, notes) = parse_file(OCTEZ_CONFIG).unwrap();
        assert_eq!(notes.info.len(), 1, "{notes:?}");
        assert!(
            notes.info[0].contains("data-dir, log, rpc, shell"),
            "{notes:?}"
        );
        assert_eq!(notes.warn.len(), 1, "{notes:?}");
        for k in [
            "binary-chunks-size",
            "read-queue-size",
            "greylist-timeout",
            "outgoing-message-queue-size",
        ] {
            assert!(notes.warn[0].contains(k), "{notes:?}");
        }
        let s = merge(file, []).unwrap();
        let l = s.limits().unwrap();
        assert_eq!(l.connection_timeout, Duration::from_secs_f64(12.5));
        assert_eq!(l.authentication_timeout, Duration::from_secs(4));
        assert_eq!(
            (l.min_connections, l.expected_connections, l.max_connections),
            (6, 12, 24)
        );
        assert_eq!((l.backlog, l.max_incoming_connections), (30, 15));
        // KiB/s in octez-node's file.
        assert_eq!(
            (l.max_download_speed, l.max_upload_speed),
            (Some(2 << 20), Some(1 << 20))
        );
        assert_eq!(l.swap_linger, Some(Duration::from_secs(45)));
        assert_eq!(l.binary_chunks_size, None);
        assert_eq!(l.read_buffer_size, 32768);
        assert_eq!(l.incoming_app_message_queue_size, 20);
        assert_eq!(l.incoming_message_queue_size, 4 << 20);
        assert_eq!(
            l.outgoing_message_queue_size,
            Limits::default().outgoing_message_queue_size
        );
        assert_eq!(l.max_known_points, Some((800, 600)));
        assert_eq!(l.max_known_peer_ids, Some((700, 500)));
        assert_eq!(
            (l.peer_greylist_size, l.ip_greylist_size_in_kilobytes),
            (500, 1024)
        );
        assert_eq!(l.ip_greylist_cleanup_delay, Duration::from_secs(3600));
        assert_eq!(l.maintenance_idle_time, Some(Duration::from_secs_f64(60.5)));
        let id = Arc::new(
            Identity::generate(&PowTarget::new(0.0).unwrap(), &Default::default(), |_| {}).unwrap(),
        );
        let p = s.node_params(id, None).unwrap();
        let c = &p.config;
        assert_eq!(c.listening_addr.unwrap().to_string(), "[::]:19732");
        assert_eq!(c.advertised_port, Some(29732));
        assert!(c.private_mode && c.metadata.private_node && c.metadata.disable_mempool);
        let trusted: Vec<String> = c
            .trusted_points
            .iter()
            .map(|(p, _)| p.to_string())
            .collect();
        assert_eq!(
            trusted,
            ["1.2.3.4:9732", "[2001:db8::1]:9733", "5.6.7.8:9000"]
        );
        assert_eq!(p.bootstrap_hosts, ["boot.tzinit.org:9732"]);
        assert_eq!(
            p.network.chain_name(),
            &ChainName::from(tezos_p2p_wire::version::GHOSTNET_CHAIN_NAME)
        );
        assert_eq!(c.reconnection.factor, 2.0);
        assert_eq!(c.reconnection.increase_cap, Duration::from_secs(600));
        assert_eq!(c.proof_of_work_target, PowTarget::new(24.5).unwrap());
    }

    #[test]
    fn octez_networks_alias_object_or_mainnet() {
        let (f, _) = parse_file(r#"{"p2p": {}}"#).unwrap();
        assert_eq!(
            merge(f, []).unwrap().network().unwrap(),
            Network::builtin(NetworkName::Mainnet)
        );
        let (f, _) = parse_file(
            r#"{"p2p": {}, "network": {
                "genesis": {"timestamp": "2018-06-30T16:07:32Z",
                            "block": "BLockGenesisGenesisGenesisGenesisGenesisf79b5d1CoW2",
                            "protocol": "Ps9mPmXaRzmzk35gbAYNCAw6UXdE2qoABTHbN2oEEc1qM7CwT9P"},
                "chain_name": "MY_CHAIN", "sandboxed_chain_name": "SANDBOXED_TEZOS",
                "default_bootstrap_peers": ["my.boot.example:9999"]}}"#,
        )
        .unwrap();
        let s = merge(f, []).unwrap();
        let n = s.network().unwrap();
        assert_eq!(n.chain_name(), &ChainName::from("MY_CHAIN"));
        assert_eq!(n.chain_id().unwrap().to_string(), "NetXdQprcVkpaWU");
        assert_eq!(n.bootstrap_peers(), ["my.boot.example:9999"]);
        assert!(parse_file(r#"{"p2p": {}, "network": "moonnet"}"#).is_err());
        assert!(parse_file(r#"{"p2p": {"limits": {"min-connections": "x"}}}"#).is_err());
    }
}
