//! `/metrics`: both formats pass `promtool check metrics` (Debian's
//! `prometheus` package) with only the documented warnings, and the
//! counters count as Octez's do.
//!
//! Without `promtool` the lint is skipped, unless `CI_REQUIRE_PROMTOOL=1`
//! (as in `.ci/run`): then its absence fails the test.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const OPENMETRICS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";

/// `GET /metrics` with this `Accept` (none if `None`): the content type
/// and the body.
fn scrape(addr: SocketAddr, accept: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap();
    (content_type, body.to_owned())
}

/// The samples, `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

/// `# TYPE` lines: family → type.
fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("# TYPE ")?.split(' ');
            Some((w.next()?.to_owned(), w.next()?.to_owned()))
        })
        .collect()
}

/// Runs `promtool check metrics` on `text`: `None` when promtool is not
/// installed (a failure if `CI_REQUIRE_PROMTOOL=1`), else its exit code
/// and output.
fn promtool(text: &str) -> Option<(Option<i32>, String)> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "promtool is required (CI_REQUIRE_PROMTOOL=1): apt-get install prometheus"
            );
            eprintln!("promtool not found: the lint is skipped");
            return None;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    Some((out.status.code(), all))
}

/// promtool's exit code for lint problems (1 is a parse error).
const PROMTOOL_LINT_PROBLEMS: i32 = 3;

/// The Prometheus text format must pass `promtool check metrics` without
/// a word.
fn lint_prometheus_text(text: &str) {
    let Some((code, out)) = promtool(text) else {
        return;
    };
    eprintln!("promtool check metrics (Prometheus text): {:?}", out.trim());
    assert_eq!(
        (code, out.trim()),
        (Some(0), ""),
        "promtool on the Prometheus text format:\n{text}"
    );
}

/// `promtool check metrics` reads only the Prometheus text format: given
/// OpenMetrics, it parses, but takes a counter's family `x` (its `# HELP`,
/// `# TYPE`) and its sample `x_total` for two families, and warns `x_total
/// no help text`. Those warnings, for the counters of the exposition, are
/// the only ones allowed (documented in the README).
fn lint_openmetrics(text: &str) {
    let Some((code, out)) = promtool(text) else {
        return;
    };
    eprintln!("promtool check metrics (OpenMetrics): {:?}", out.trim());
    assert!(
        matches!(code, Some(0 | PROMTOOL_LINT_PROBLEMS)),
        "promtool cannot parse the OpenMetrics exposition ({code:?}):\n{out}\n{text}"
    );
    let types = types(text);
    let counters: Vec<&str> = types
        .iter()
        .filter(|(_, t)| *t == "counter")
        .map(|(n, _)| n.as_str())
        .collect();
    let mut warned = 0;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let family = line
            .strip_suffix("_total no help text")
            .unwrap_or_else(|| panic!("promtool warns on OpenMetrics: {line}\n{text}"));
        assert!(
            counters.contains(&family),
            "promtool warns on OpenMetrics about a non-counter: {line}"
        );
        warned += 1;
    }
    assert_eq!(warned, counters.len(), "{out}");
}

/// Octez's metric families (`P2p_metrics`, `P2p_metrics_collectors`) and
/// their type here: Octez's names, counters with `_total` on their samples.
const OCTEZ_COUNTERS: &[&str] = &[
    "octez_p2p_messages_broadcast_message_sent",
    "octez_p2p_messages_user_message_sent",
    "octez_p2p_messages_user_message_received",
    "octez_p2p_messages_user_message_received_error",
    "octez_p2p_messages_advertise_received",
    "octez_p2p_messages_advertise_sent",
    "octez_p2p_messages_bootstrap_received",
    "octez_p2p_messages_bootstrap_sent",
    "octez_p2p_messages_swap_requests_sent",
    "octez_p2p_messages_swap_requests_received",
    "octez_p2p_messages_swap_ack_sent",
    "octez_p2p_messages_swap_ack_received",
    "octez_p2p_swap_ignored",
    "octez_p2p_swap_success",
    "octez_p2p_swap_fail",
    "octez_p2p_io_scheduler_total_sent",
    "octez_p2p_io_scheduler_total_recv",
];
const OCTEZ_GAUGES: &[&str] = &[
    "octez_p2p_connections_active",
    "octez_p2p_connections_incoming",
    "octez_p2p_connections_outgoing",
    "octez_p2p_connections_private",
    "octez_p2p_peers_accepted",
    "octez_p2p_peers_running",
    "octez_p2p_peers_disconnected",
    "octez_p2p_points_trusted",
    "octez_p2p_points_greylisted",
    "octez_p2p_points_accepted",
    "octez_p2p_points_running",
    "octez_p2p_points_disconnected",
    "octez_p2p_io_scheduler_current_inflow",
    "octez_p2p_io_scheduler_current_outflow",
];

#[test]
fn both_formats_pass_promtool_and_count_as_octez() {
    let da = TempDir::new("metrics-a");
    let db = TempDir::new("metrics-b");
    let a = NodeProc::start(da.path(), &[]);
    let mut b = NodeProc::start(db.path(), &["--peer".into(), a.p2p.to_string()]);
    eventually("A and B connected", || {
        a.metric("octez_p2p_connections_active") == Some(1.0)
            && b.metric("octez_p2p_connections_active") == Some(1.0)
    });

    // One broadcast from B (on one connection), one direct send from A.
    let (s, v) = b.req("POST", "/messages/broadcast", Some(r#"{"text": "to all"}"#));
    assert_eq!(s, 200, "{v}");
    let (s, v) = a.req(
        "POST",
        &format!("/messages/send/{}", b.peer_id()),
        Some(r#"{"text": "to B"}"#),
    );
    assert_eq!(s, 200, "{v}");
    eventually("both messages received", || {
        a.metric("octez_p2p_messages_user_message_received_total") == Some(1.0)
            && b.metric("octez_p2p_messages_user_message_received_total") == Some(1.0)
    });

    // The Prometheus text format by default.
    let (ct, prom) = scrape(b.rpc, None);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!prom.contains("# EOF"));
    lint_prometheus_text(&prom);
    // OpenMetrics when asked for (as Prometheus asks).
    let (ct, om) = scrape(b.rpc, Some(OPENMETRICS_ACCEPT));
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    lint_openmetrics(&om);
    // text/plain preferred: the Prometheus text format.
    let (ct, _) = scrape(
        b.rpc,
        Some("application/openmetrics-text;q=0.2,text/plain;q=0.9"),
    );
    assert!(ct.starts_with("text/plain"), "{ct}");

    // Octez's names and types; the same samples in both formats.
    let (pt, ot) = (types(&prom), types(&om));
    for name in OCTEZ_COUNTERS {
        assert_eq!(ot[*name], "counter", "{name}");
        assert_eq!(pt[&format!("{name}_total")], "counter", "{name}");
    }
    for name in OCTEZ_GAUGES {
        assert_eq!(ot[*name], "gauge", "{name}");
        assert_eq!(pt[*name], "gauge", "{name}");
    }
    let (sp, so) = (samples(&prom), samples(&om));
    assert_eq!(sp.keys().collect::<Vec<_>>(), so.keys().collect::<Vec<_>>());

    // As Octez counts: a broadcast counts once per connection it is
    // written on, not as a user message; a send is a user message.
    assert_eq!(sp["octez_p2p_messages_broadcast_message_sent_total"], 1.0);
    // Written on, and queued: none dropped (the pool's count).
    assert_eq!(sp["tezos_p2p_broadcast_dropped_total"], 0.0);
    assert_eq!(types(&om)["tezos_p2p_broadcast_dropped"], "counter");
    assert_eq!(sp["octez_p2p_messages_user_message_sent_total"], 0.0);
    assert_eq!(sp["octez_p2p_messages_user_message_received_total"], 1.0);
    assert_eq!(
        sp["octez_p2p_messages_user_message_received_error_total"],
        0.0
    );
    assert_eq!(sp["octez_p2p_connections_outgoing"], 1.0);
    assert_eq!(sp["octez_p2p_points_trusted"], 1.0);
    assert!(sp["octez_p2p_io_scheduler_total_sent_total"] > 0.0);
    assert_eq!(sp["tezos_p2p_node_messages_sent_total{kind=\"Text\"}"], 1.0);
    assert_eq!(
        sp["tezos_p2p_node_messages_received_total{kind=\"Text\"}"],
        1.0
    );
    assert!(sp["tezos_p2p_node_user_message_received_bytes_total"] > 0.0);
    let sa = samples(&scrape(a.rpc, None).1);
    assert_eq!(sa["octez_p2p_messages_user_message_sent_total"], 1.0);
    assert_eq!(sa["octez_p2p_messages_broadcast_message_sent_total"], 0.0);
    assert_eq!(sa["octez_p2p_connections_incoming"], 1.0);

    // B goes: A's read of its messages fails once (Octez's
    // `user_message_received_error`).
    b.terminate();
    eventually("A counts the failed read", || {
        a.metric("octez_p2p_messages_user_message_received_error_total") == Some(1.0)
            && a.metric("octez_p2p_connections_active") == Some(0.0)
    });
    let (_, om) = scrape(a.rpc, Some(OPENMETRICS_ACCEPT));
    lint_openmetrics(&om);
    lint_prometheus_text(&scrape(a.rpc, None).1);
}
