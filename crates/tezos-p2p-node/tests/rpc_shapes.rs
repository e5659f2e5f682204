//! The `/network` RPC answers against Octez's JSON: timestamps as
//! `Time.System.encoding` writes them (`Ptime.to_rfc3339 ~frac_s:3`, no
//! time zone: `2024-05-01T12:34:56.789-00:00`), and the peer metadata in
//! `Peer_metadata.encoding`'s shape (`src/lib_p2p_services/peer_metadata.ml`).

mod common;

use common::*;
use serde_json::Value;

/// Octez's `Time.System` JSON: `YYYY-MM-DDTHH:MM:SS.mmm-00:00`.
fn is_octez_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
    b.len() == 29
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && s.ends_with("-00:00")
}

/// Every string of `v` that starts like a date is an Octez time; returns
/// how many there are.
fn times_in(v: &Value) -> usize {
    match v {
        Value::String(s) if s.len() > 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' => {
            assert!(is_octez_time(s), "not Octez's Time.System JSON: {s:?}");
            1
        }
        Value::Array(a) => a.iter().map(times_in).sum(),
        Value::Object(m) => m.values().map(times_in).sum(),
        _ => 0,
    }
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

fn sorted<'a>(k: &[&'a str]) -> Vec<&'a str> {
    let mut k = k.to_vec();
    k.sort_unstable();
    k
}

/// `Peer_metadata.encoding` (`peer_metadata.v1`): keys, and every counter
/// a `Data_encoding.z`, a decimal string.
fn assert_octez_peer_metadata(m: &Value) {
    assert_eq!(
        keys(m),
        sorted(&[
            "responses",
            "requests",
            "valid_blocks",
            "old_heads",
            "prevalidator_results",
            "unactivated_chains",
            "inactive_chains",
            "future_blocks_advertised",
            "unadvertised",
            "advertisements",
        ])
    );
    let kinds = sorted(&[
        "branch",
        "head",
        "block_header",
        "operations",
        "protocols",
        "operation_hashes_for_block",
        "operations_for_block",
        "checkpoint",
        "protocol_branch",
        "predecessor_header",
        "other",
    ]);
    assert_eq!(
        keys(&m["responses"]),
        sorted(&["sent", "failed", "received", "unexpected", "outdated"])
    );
    for f in ["sent", "failed", "received"] {
        assert_eq!(keys(&m["responses"][f]), kinds, "responses.{f}");
    }
    assert_eq!(
        keys(&m["requests"]),
        sorted(&["sent", "received", "failed", "scheduled"])
    );
    for f in ["sent", "received", "failed", "scheduled"] {
        assert_eq!(keys(&m["requests"][f]), kinds, "requests.{f}");
    }
    assert_eq!(
        keys(&m["prevalidator_results"]),
        sorted(&[
            "cannot_download",
            "cannot_parse",
            "refused_by_prefilter",
            "refused_by_postfilter",
            "applied",
            "branch_delayed",
            "branch_refused",
            "refused",
            "duplicate",
            "outdated",
        ])
    );
    assert_eq!(
        keys(&m["unadvertised"]),
        sorted(&["block", "operations", "protocol"])
    );
    assert_eq!(keys(&m["advertisements"]), sorted(&["sent", "received"]));
    for f in ["sent", "received"] {
        assert_eq!(keys(&m["advertisements"][f]), sorted(&["head", "branch"]));
    }
    fn counters(v: &Value) {
        match v {
            Value::Object(m) => m.values().for_each(counters),
            Value::String(s) => assert!(
                !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()),
                "a z counter: {s:?}"
            ),
            other => panic!("a z counter (decimal string): {other}"),
        }
    }
    counters(m);
}

#[test]
fn network_answers_have_octez_shapes() {
    let da = TempDir::new("shapes-a");
    let db = TempDir::new("shapes-b");
    let a = NodeProc::start(da.path(), &[]);
    let mut b = NodeProc::start(db.path(), &["--peer".into(), a.p2p.to_string()]);
    let a_id = a.peer_id();
    eventually("B runs a connection to A", || {
        b.get(&format!("/network/peers/{a_id}"))["state"] == "running"
    });
    let (s, v) = a.req("POST", "/messages/broadcast", Some(r#"{"text": "t"}"#));
    assert_eq!(s, 200, "{v}");
    eventually("B received the text", || {
        b.get("/messages").as_array().is_some_and(|m| !m.is_empty())
    });

    // P2p_peer.Info: the peer metadata in Octez's shape, and the times.
    let peer = b.get(&format!("/network/peers/{a_id}"));
    assert_octez_peer_metadata(&peer["peer_metadata"]);
    let pair = &peer["last_established_connection"];
    assert!(
        pair[0]["addr"].is_string() && pair[0]["port"].is_u64(),
        "{pair}"
    );
    assert!(is_octez_time(pair[1].as_str().unwrap()), "{pair}");
    assert!(
        is_octez_time(peer["last_seen"][1].as_str().unwrap()),
        "{peer}"
    );
    assert!(times_in(&peer) >= 2);
    for (_, p) in b
        .get("/network/peers")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (&e[0], &e[1]))
    {
        assert_octez_peer_metadata(&p["peer_metadata"]);
    }

    // P2p_point.Info: `[peer id, time]` pairs.
    let point = b.get(&format!("/network/points/{}", a.p2p));
    let pair = &point["last_established_connection"];
    assert_eq!(pair[0], a_id.as_str());
    assert!(is_octez_time(pair[1].as_str().unwrap()), "{pair}");
    assert!(times_in(&point) >= 2);

    // The event logs, the lists, full_stat, the node's inbox: every time
    // is Octez's.
    for path in [
        format!("/network/peers/{a_id}/log"),
        format!("/network/points/{}/log", a.p2p),
        "/network/peers".into(),
        "/network/points".into(),
        "/network/full_stat".into(),
        "/messages".into(),
    ] {
        let v = b.get(&path);
        assert!(times_in(&v) > 0, "{path}: no time in {v}");
    }
    // A greylist sets `not_reliable_since` only when its display list
    // overflows: null here, as Octez.
    assert!(b.get("/network/greylist/ips")["not_reliable_since"].is_null());

    // The peers file written at exit holds the same shapes.
    b.terminate();
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(db.path().join("peers.json")).unwrap())
            .unwrap();
    let saved = file
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == a_id.as_str())
        .unwrap_or_else(|| panic!("A in B's peers file: {file}"));
    assert_octez_peer_metadata(&saved["peer_metadata"]);
    assert!(times_in(saved) >= 2, "{saved}");
}
