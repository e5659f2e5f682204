//! The node's log: RUST_LOG is a `tracing_subscriber::EnvFilter` (a
//! directive that does not parse is a warning, not silence), every line
//! logged about a node carries its pool's span (`pool{me=<peer id>}`) and
//! a connection's line its `conn{...}` span, pool events are fields, and
//! `--log-format json` gives one JSON object a line.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// Runs a swarm of `nodes` for `duration` seconds with `RUST_LOG=rust_log`:
/// (stdout, stderr).
fn swarm(
    (nodes, duration): (usize, u32),
    rust_log: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (String, String) {
    let (nodes, duration) = (nodes.to_string(), duration.to_string());
    let o = Command::new(BIN)
        .args(["swarm", "--nodes", &nodes, "--duration", &duration])
        .args(["--table-every", "10"])
        .args(extra)
        .env("RUST_LOG", rust_log)
        .env_remove("TEZOS_P2P_LOG_FORMAT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}\n{err}");
    (out, err)
}

/// The value of `key=` in a text line, up to the next space, comma or
/// closing brace.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    let rest = &line[start..];
    let end = rest.find([' ', '}', ',']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The target of a text line: the word ending in `:` after the spans.
fn target(line: &str) -> Option<&str> {
    line.split(' ')
        .find(|w| w.starts_with("tezos_p2p") && w.ends_with(':') && !w.contains('{'))
        .map(|w| w.trim_end_matches(':'))
}

#[test]
fn every_line_about_a_node_carries_its_id_and_a_connection_line_its_peer() {
    let (_, err) = swarm((3, 3), "debug", &[], &[]);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| {
            target(l)
                .is_some_and(|t| t.starts_with("tezos_p2p::") || t.starts_with("tezos_p2p_node::"))
        })
        .collect();
    assert!(lines.len() >= 20, "too few lines to judge:\n{err}");
    let (mut pools, mut nodes) = (BTreeSet::new(), BTreeSet::new());
    let mut established = 0;
    for line in &lines {
        // The library's lines (its tasks, the facade's calls) are in the
        // pool's span, the node's own in the node's: both name the node.
        let (span, ids) = if target(line).unwrap().starts_with("tezos_p2p::") {
            ("pool{me=", &mut pools)
        } else {
            ("node{me=", &mut nodes)
        };
        let me = field(line, span).unwrap_or_else(|| panic!("a line with no {span}: {line}"));
        assert!(me.starts_with("id"), "{line}");
        ids.insert(me.to_owned());
        if let Some(conn) = line.find("conn{") {
            let conn = &line[conn..];
            assert!(conn.contains("dir=") && conn.contains("addr="), "{line}");
            // Once authenticated, the connection's span names the peer.
            if line.contains("connection established") {
                established += 1;
                let peer = field(conn, "peer=").unwrap_or_else(|| panic!("no peer: {line}"));
                assert!(peer.starts_with("id") && peer != me, "{line}");
            }
        }
        // Pool events: their kind and data as fields, no Debug dump.
        if line.contains("p2p event") {
            let kind = field(line, "event=").unwrap_or_else(|| panic!("no kind: {line}"));
            assert!(
                kind.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{line}"
            );
            assert!(!line.contains(" { ") && !line.contains("Point {"), "{line}");
        }
    }
    assert_eq!(pools.len(), 3, "lines from {pools:?}");
    assert_eq!(nodes, pools);
    assert!(established >= 2, "no connection established:\n{err}");
    assert!(
        lines.iter().any(|l| l.contains("p2p event")
            && l.contains("event=connection_established")
            && l.contains("peer=id")),
        "no connection_established event with its peer:\n{err}"
    );
}

#[test]
fn json_logs_with_spans_and_a_filter_on_the_library_alone() {
    // `tezos_p2p::` selects the library; `tezos_p2p` would also select
    // the binary's `tezos_p2p_node` (EnvFilter targets match by prefix).
    let (_, err) = swarm((2, 2), "tezos_p2p::=debug", &["--log-format", "json"], &[]);
    let mut n = 0;
    for line in err.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let target = v["target"].as_str().unwrap();
        assert!(target.starts_with("tezos_p2p::"), "{line}");
        let spans = v["spans"]
            .as_array()
            .unwrap_or_else(|| panic!("no spans: {line}"));
        assert_eq!(spans[0]["name"], "pool", "{line}");
        assert!(spans[0]["me"].as_str().unwrap().starts_with("id"), "{line}");
        n += 1;
    }
    assert!(n >= 5, "too few lines:\n{err}");

    // The environment variable does the same, and `tezos_p2p_node` selects
    // the binary alone.
    let (_, err) = swarm(
        (2, 2),
        "tezos_p2p_node=debug",
        &[],
        &[("TEZOS_P2P_LOG_FORMAT", "json")],
    );
    let events: Vec<Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .inspect(|v: &Value| {
            assert!(
                v["target"]
                    .as_str()
                    .unwrap()
                    .starts_with("tezos_p2p_node::"),
                "{v}"
            )
        })
        .filter(|v| v["fields"]["message"] == "p2p event")
        .collect();
    assert!(
        events
            .iter()
            .any(|v| v["fields"]["event"] == "connection_established"
                && v["fields"]["peer"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("id"))
                && v["spans"][0]["name"] == "node"
                && v["spans"][0]["me"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("id"))),
        "{err}"
    );
}

#[test]
fn a_rust_log_directive_that_does_not_parse_is_a_warning() {
    let (_, err) = swarm((2, 1), "tezos_p2p=loud,tezos_p2p_node=debug", &[], &[]);
    assert!(
        err.contains("tezos-p2p-node: warning: ignoring RUST_LOG directive \"tezos_p2p=loud\""),
        "{err}"
    );
    // The valid directive still applies.
    assert!(
        err.lines().any(|l| l.contains(" tezos_p2p_node::")),
        "{err}"
    );
}
