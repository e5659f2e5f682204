//! End-to-end tests of the built binary: identity commands, argument errors,
//! two nodes talking, every RPC, banning, SIGTERM and restart.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn identity_generate_then_show() {
    let dir = TempDir::new("id");
    let o = run(&[
        "identity",
        "generate",
        "--data-dir",
        &dir.arg(),
        "--expected-pow",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_owned();
    assert!(
        id.starts_with("id") && id.len() > 20,
        "peer id printed: {id:?}"
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("identity.json")).unwrap())
            .unwrap();
    for k in ["peer_id", "public_key", "secret_key", "proof_of_work_stamp"] {
        assert!(json[k].is_string(), "identity.json has {k}");
    }
    assert_eq!(json["peer_id"], id.as_str());

    let o = run(&["identity", "show", "--data-dir", &dir.arg()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("peer_id: {id}")), "{out}");
    assert!(
        out.contains(&format!(
            "public_key: {}",
            json["public_key"].as_str().unwrap()
        )),
        "{out}"
    );
    assert!(out.contains("proof_of_work_level: "), "{out}");

    // No overwrite without --force.
    let o = run(&[
        "identity",
        "generate",
        "--data-dir",
        &dir.arg(),
        "--expected-pow",
        "0",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let o = run(&[
        "identity",
        "generate",
        "--data-dir",
        &dir.arg(),
        "--expected-pow",
        "0",
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(stdout(&o).trim(), id);
}

fn assert_one_line_error(o: &std::process::Output, needle: &str) {
    assert!(!o.status.success(), "must fail: {needle}");
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line of error, got {err:?}");
    assert!(
        lines[0].contains("error") && lines[0].contains(needle),
        "{err:?} should mention {needle:?}"
    );
}

#[test]
fn bad_invocations_give_one_line_errors() {
    let dir = TempDir::new("bad");
    let d = dir.arg();
    let rpc = format!("127.0.0.1:{}", free_port());
    let base = [
        "run",
        "--data-dir",
        &d,
        "--expected-pow",
        "0",
        "--rpc-addr",
        &rpc,
        "--net-addr",
        "127.0.0.1:0",
    ];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        run(&a)
    };
    // clap's own errors are whole: the error, the usage or the possible
    // values (and a suggestion when one is close), where to find more.
    for (args, needle) in [
        (&["--no-such-flag"][..], "--no-such-flag"),
        (&["--network", "moonnet"][..], "possible values"),
    ] {
        let o = with(args);
        assert_eq!(o.status.code(), Some(2), "usage error: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(needle) && err.contains("try '--help'"),
            "{err}"
        );
        assert!(err.lines().count() > 1, "{err}");
    }
    // A port out of range (a missing one is 9732, as in Octez).
    assert_one_line_error(&with(&["--peer", "127.0.0.1:99999"]), "--peer");
    assert_one_line_error(&with(&["--peer", "not a point:x"]), "--peer");
    // In kB since Octez's unit: 64 kB is over the 65535-byte maximum.
    assert_one_line_error(
        &with(&["--binary-chunks-size", "64"]),
        "--binary-chunks-size",
    );
    std::fs::write(dir.path().join("identity.json"), "{ not json").unwrap();
    assert_one_line_error(&with(&[]), "identity");
    // A wrong key pair is refused too.
    std::fs::write(
        dir.path().join("identity.json"),
        r#"{"public_key": "00", "secret_key": "00", "proof_of_work_stamp": "00"}"#,
    )
    .unwrap();
    assert_one_line_error(&with(&[]), "identity");
}

fn connected(a: &NodeProc, b_id: &str) -> bool {
    a.get("/network/connections")
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["peer_id"] == b_id)
}

/// Two nodes, B knowing A: returns them once connected.
fn pair(da: &TempDir, db: &TempDir) -> (NodeProc, NodeProc) {
    let a = NodeProc::start(da.path(), &[]);
    let b = NodeProc::start(db.path(), &["--peer".into(), a.p2p.to_string()]);
    let (ia, ib) = (a.peer_id(), b.peer_id());
    eventually("A and B connected", || {
        connected(&a, &ib) && connected(&b, &ia)
    });
    (a, b)
}

#[test]
fn two_nodes_exchange_a_broadcast_text() {
    let (da, db) = (TempDir::new("a"), TempDir::new("b"));
    let (a, b) = pair(&da, &db);
    let (s, v) = a.req(
        "POST",
        "/messages/broadcast",
        Some(r#"{"text": "hello from A"}"#),
    );
    assert_eq!((s, &v), (200, &serde_json::json!({"sent_to": 1})));
    let mut got = Value::Null;
    eventually("B received the text", || {
        got = b.get("/messages?since=0");
        got.as_array().is_some_and(|l| !l.is_empty())
    });
    let m = &got[0];
    assert_eq!(m["seq"], 1);
    assert_eq!(m["peer_id"], a.peer_id());
    assert_eq!(m["tag"], 16);
    assert_eq!(m["text"], "hello from A");
    assert_eq!(m["hex"], hex_of_text("hello from A"));
    assert!(m["size"].as_u64().unwrap() >= 12);
    assert!(is_time(&m["received_at"]), "{}", m["received_at"]);
    assert_eq!(b.get("/messages?since=1"), serde_json::json!([]));

    assert_eq!(m["name"], "Text");
    assert_eq!(m["message"], serde_json::json!({"content": "hello from A"}));

    // Direct send of a Bytes message, given as hex.
    let (s, v) = b.req(
        "POST",
        &format!("/messages/send/{}", a.peer_id()),
        Some(r#"{"tag": 17, "hex": "00000002cafe"}"#),
    );
    assert_eq!((s, &v), (200, &serde_json::json!({"sent": true})));
    eventually("A received the bytes", || {
        a.get("/messages").as_array().unwrap().iter().any(|m| {
            m["tag"] == 17
                && m["name"] == "Bytes"
                && m["message"]["content"] == "cafe"
                && m.get("text").is_none()
        })
    });
    // No other tag exists on octez-p2p-node's network.
    let (s, e) = b.req(
        "POST",
        &format!("/messages/send/{}", a.peer_id()),
        Some(r#"{"tag": 32, "hex": "cafe"}"#),
    );
    assert_eq!(s, 400, "{e}");
}

fn hex_of_text(t: &str) -> String {
    let mut v = (t.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(t.as_bytes());
    v.iter().map(|b| format!("{b:02x}")).collect()
}

/// Octez's `Time.System` JSON: `2024-05-01T12:34:56.789-00:00`.
fn is_time(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 29
            && s.as_bytes()[10] == b'T'
            && s.as_bytes()[19] == b'.'
            && s.ends_with("-00:00")
    })
}

fn is_stat(v: &Value) -> bool {
    v["total_sent"].is_string()
        && v["total_recv"].is_string()
        && v["current_inflow"].is_u64()
        && v["current_outflow"].is_u64()
}

#[test]
fn every_rpc_answers_with_its_documented_shape() {
    let (da, db) = (TempDir::new("ra"), TempDir::new("rb"));
    let (a, b) = pair(&da, &db);
    let (ia, ib) = (a.peer_id(), b.peer_id());
    let bp = b.p2p.to_string();

    // Start a log stream first so that it sees what follows.
    let mut log = Stream::open(a.rpc, "/network/log");
    assert_eq!(log.status, 200);
    assert!(log.content_type.contains("json"));

    assert_eq!(a.get("/network/self"), ia.as_str());
    let v = a.get("/network/version");
    assert_eq!(v["chain_name"], "");
    assert_eq!(v["distributed_db_version"], 0);
    assert!(v["distributed_db_version"].is_u64() && v["p2p_version"].is_u64());
    assert!(is_stat(&a.get("/network/stat")));
    // Octez's `Full_stat`: lists, as the list RPCs give them.
    let fs = a.get("/network/full_stat");
    assert!(is_stat(&fs["stat"]));
    let incoming = fs["incoming_connections"].as_array().unwrap();
    assert_eq!(incoming.len(), 1, "{fs}");
    assert_eq!(incoming[0]["peer_id"], ib.as_str());
    assert_eq!(fs["outgoing_connections"], serde_json::json!([]));
    let peer_ids: Vec<&Value> = fs["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p[0])
        .collect();
    assert!(peer_ids.contains(&&Value::from(ib.as_str())), "{fs}");
    assert!(fs["points"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p[0].is_string() && p[1]["state"].is_object()));

    // Connections.
    let conns = a.get("/network/connections");
    let c = &conns[0];
    assert_eq!(c["peer_id"], ib.as_str());
    assert_eq!(c["incoming"], true);
    assert_eq!(c["id_point"]["addr"], "::ffff:127.0.0.1");
    assert_eq!(c["id_point"]["port"], b.p2p.port());
    assert!(c["remote_socket_port"].is_u64());
    assert_eq!(c["announced_version"]["chain_name"], "");
    assert_eq!(c["private"], false);
    // As octez-p2p-node announces.
    assert_eq!(
        c["local_metadata"],
        serde_json::json!({"disable_mempool": true, "private_node": false})
    );
    assert!(c["remote_metadata"].is_object());
    assert_eq!(&a.get(&format!("/network/connections/{ib}")), c);
    let (s, e) = a.req(
        "GET",
        "/network/connections/idsuVXu3XHx7ZX9VNYXbX2vTuExkti",
        None,
    );
    assert_eq!(s, 404, "{e}");
    assert!(e["error"].is_string());

    // Peers.
    let peers = a.get("/network/peers");
    let entry = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == ib.as_str())
        .unwrap();
    let info = &entry[1];
    assert_eq!(info["state"], "running");
    assert_eq!(info["trusted"], false);
    assert!(info["score"].is_number());
    assert!(info["peer_metadata"].is_object());
    assert!(info["conn_metadata"].is_object());
    assert!(info["reachable_at"]["addr"].is_string());
    assert!(is_stat(&info["stat"]));
    assert!(is_time(&info["last_established_connection"][1]));
    assert!(info["last_established_connection"][0]["addr"].is_string());
    assert_eq!(&a.get(&format!("/network/peers/{ib}")), info);
    assert_eq!(
        a.get("/network/peers?filter=disconnected"),
        serde_json::json!([])
    );
    assert_eq!(
        a.get("/network/peers?filter=running")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (s, e) = a.req("GET", "/network/peers?filter=sleeping", None);
    assert_eq!(s, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("filter"));
    let plog = a.get(&format!("/network/peers/{ib}/log"));
    let ev = plog.as_array().unwrap();
    assert!(
        ev.iter().any(|e| e["kind"] == "connection_established"),
        "{plog}"
    );
    assert!(ev
        .iter()
        .all(|e| is_time(&e["timestamp"]) && e["addr"].is_string()));
    assert_eq!(a.get(&format!("/network/peers/{ib}/banned")), false);

    // Points (B's side knows A's point as trusted).
    let points = b.get("/network/points");
    let ap = a.p2p.to_string();
    let entry = points
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == ap.as_str())
        .unwrap();
    let pi = &entry[1];
    assert_eq!(pi["trusted"], true);
    assert_eq!(pi["state"]["event_kind"], "running");
    assert_eq!(pi["state"]["p2p_peer_id"], ia.as_str());
    assert_eq!(pi["p2p_peer_id"], ia.as_str());
    assert!(is_time(&pi["last_established_connection"][1]));
    assert_eq!(&b.get(&format!("/network/points/{ap}")), pi);
    assert_eq!(
        b.get("/network/points?filter=running")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let pl = b.get(&format!("/network/points/{ap}/log"));
    assert!(
        pl.as_array()
            .unwrap()
            .iter()
            .all(|e| is_time(&e[0]) && e[1]["event_kind"].is_string()),
        "{pl}"
    );
    assert_eq!(b.get(&format!("/network/points/{ap}/banned")), false);
    let (s, e) = b.req("GET", "/network/points/not-a-point", None);
    assert_eq!(s, 400, "{e}");
    let (s, _) = b.req("GET", "/network/points/10.1.2.3:1", None);
    assert_eq!(s, 404);

    // PATCH on a point: trust, then open.
    let (s, v) = a.req(
        "PATCH",
        &format!("/network/points/{bp}"),
        Some(r#"{"acl": "trust"}"#),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["trusted"], true);
    let (s, v) = a.req(
        "PATCH",
        &format!("/network/points/{bp}"),
        Some(r#"{"acl": "open"}"#),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["trusted"], false);
    let (s, e) = a.req(
        "PATCH",
        &format!("/network/points/{bp}"),
        Some(r#"{"acl": "maybe"}"#),
    );
    assert_eq!(s, 400);
    assert!(e["error"].as_str().unwrap().contains("acl"), "{e}");
    let (s, e) = a.req("PATCH", &format!("/network/points/{bp}"), Some("not json"));
    assert_eq!(s, 400);
    assert!(e["error"].as_str().unwrap().contains("JSON"), "{e}");

    // Peer PATCH trust/open.
    let (s, v) = a.req(
        "PATCH",
        &format!("/network/peers/{ib}"),
        Some(r#"{"acl": "trust"}"#),
    );
    assert_eq!((s, &v["trusted"]), (200, &Value::Bool(true)));
    let (s, v) = a.req(
        "PATCH",
        &format!("/network/peers/{ib}"),
        Some(r#"{"acl": "open"}"#),
    );
    assert_eq!((s, &v["trusted"]), (200, &Value::Bool(false)));

    // Greylists.
    assert_eq!(
        a.get("/network/greylist/ips"),
        serde_json::json!({"ips": [], "not_reliable_since": null})
    );
    assert_eq!(a.get("/network/greylist/peers"), serde_json::json!([]));
    let (s, v) = a.req("DELETE", "/network/greylist", None);
    assert_eq!((s, v), (200, serde_json::json!({})));

    // Metrics.
    let (s, text) = http(a.rpc, "GET", "/metrics", None).unwrap();
    assert_eq!(s, 200);
    for name in [
        "octez_p2p_connections_active 1",
        "octez_p2p_peers_running 1",
        "octez_p2p_io_scheduler_total_sent_total ",
        "octez_p2p_messages_user_message_received_total ",
        "octez_p2p_swap_success_total ",
        "# TYPE octez_p2p_messages_broadcast_message_sent_total counter",
    ] {
        assert!(text.contains(name), "metrics lack {name:?}:\n{text}");
    }

    // Bad requests.
    let (s, e) = a.req(
        "POST",
        "/messages/broadcast",
        Some(r#"{"tag": 5, "hex": "00"}"#),
    );
    assert_eq!(s, 400);
    assert!(e["error"].as_str().unwrap().contains("tag"), "{e}");
    let (s, e) = a.req(
        "POST",
        "/messages/broadcast",
        Some(r#"{"text": "x", "hex": "00"}"#),
    );
    assert_eq!(s, 400, "{e}");
    let (s, e) = a.req(
        "POST",
        "/messages/broadcast",
        Some(r#"{"tag": 32, "hex": "zz"}"#),
    );
    assert_eq!(s, 400, "{e}");
    let (s, e) = a.req("GET", "/messages?since=x", None);
    assert_eq!(s, 400, "{e}");
    let (s, e) = a.req("GET", "/network/nothing", None);
    assert_eq!(s, 404, "{e}");
    let (s, e) = a.req("POST", "/network/self", None);
    assert_eq!(s, 405, "{e}");
    let unknown = "idsuVXu3XHx7ZX9VNYXbX2vTuExkti";
    let (s, e) = a.req(
        "POST",
        &format!("/messages/send/{unknown}"),
        Some(r#"{"text": "x"}"#),
    );
    assert_eq!(s, 404, "{e}");
    let (s, e) = a.req("GET", "/network/peers/nonsense", None);
    assert_eq!(s, 400, "{e}");
    // As Octez: an unknown peer's or point's log is empty, and a PATCH of
    // an unknown peer or point is a 404.
    assert_eq!(
        a.get(&format!("/network/peers/{unknown}/log")),
        serde_json::json!([])
    );
    assert_eq!(
        a.get(&format!("/network/peers/{unknown}/log?monitor")),
        serde_json::json!([])
    );
    assert_eq!(
        a.get("/network/points/10.9.9.9:1/log"),
        serde_json::json!([])
    );
    let (s, e) = a.req(
        "PATCH",
        &format!("/network/peers/{unknown}"),
        Some(r#"{"acl": "open"}"#),
    );
    assert_eq!(s, 404, "{e}");
    let (s, e) = a.req(
        "PATCH",
        "/network/points/10.9.9.9:1",
        Some(r#"{"acl": "open"}"#),
    );
    assert_eq!(s, 404, "{e}");
    // Octez's `GET /version`.
    let v = a.get("/version");
    assert!(v["version"]["major"].is_u64() && v["version"]["minor"].is_u64());
    assert!(v["version"]["build"].is_u64());
    assert!(
        v["version"]["additional_info"].is_string() || v["version"]["additional_info"].is_object()
    );
    assert_eq!(v["network_version"], a.get("/network/version"));
    assert!(v.as_object().unwrap().contains_key("commit_info"));

    // `?monitor` on a peer's and a point's log: the events held first, then
    // each batch of new ones.
    let mut peer_watch = Stream::open(a.rpc, &format!("/network/peers/{ib}/log?monitor"));
    assert_eq!(peer_watch.status, 200);
    let held: Value = serde_json::from_str(&peer_watch.next_line()).unwrap();
    assert!(
        held.as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "connection_established"),
        "{held}"
    );
    let mut point_watch = Stream::open(b.rpc, &format!("/network/points/{ap}/log?monitor"));
    assert_eq!(point_watch.status, 200);
    let held: Value = serde_json::from_str(&point_watch.next_line()).unwrap();
    assert!(!held.as_array().unwrap().is_empty(), "{held}");
    let (s, _) = a.req("GET", &format!("/network/peers/{ib}/log?monitor&x=2"), None);
    assert_eq!(s, 400);

    // DELETE a connection: B is kicked; the log stream reports it.
    let (s, v) = a.req("DELETE", &format!("/network/connections/{ib}?wait"), None);
    assert_eq!((s, v), (200, serde_json::json!({})));
    // The first new batch each side reports is the disconnection (later
    // ones may show B reconnecting).
    let disconnection = |v: &Value| v.as_str().is_some_and(|k| k.ends_with("disconnection"));
    let batch: Value = serde_json::from_str(&peer_watch.next_line()).unwrap();
    assert!(disconnection(&batch[0]["kind"]), "{batch}");
    let batch: Value = serde_json::from_str(&point_watch.next_line()).unwrap();
    assert!(disconnection(&batch[0][1]["event_kind"]), "{batch}");
    let mut seen = false;
    for _ in 0..50 {
        let line = log.next_line();
        let ev: Value = serde_json::from_str(&line).unwrap();
        assert!(ev["event"].is_string(), "{line}");
        if ev["event"] == "disconnection" {
            assert_eq!(ev["peer_id"], ib.as_str());
            seen = true;
            break;
        }
    }
    assert!(seen, "the log stream shows the disconnection");

    // PUT = connect (A dials B back, unless B's first dial raced it).
    eventually("A and B reconnected", || {
        if connected(&a, &ib) {
            return true;
        }
        let (s, v) = a.req("PUT", &format!("/network/points/{bp}?timeout=5"), None);
        s == 200 && v == serde_json::json!({})
    });
    let (s, e) = a.req("PUT", &format!("/network/points/{bp}?timeout=-1"), None);
    assert_eq!(s, 400, "{e}");
}

#[test]
fn banning_a_connected_peer_disconnects_it() {
    let (da, db) = (TempDir::new("ba"), TempDir::new("bb"));
    let (a, b) = pair(&da, &db);
    let ib = b.peer_id();
    let (s, v) = a.req(
        "PATCH",
        &format!("/network/peers/{ib}"),
        Some(r#"{"acl": "ban"}"#),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["trusted"], false);
    eventually("B disconnected from A", || !connected(&a, &ib));
    assert_eq!(a.get(&format!("/network/peers/{ib}/banned")), true);
    // It stays out while banned.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(!connected(&a, &ib));
    // Unban with open.
    let (s, _) = a.req(
        "PATCH",
        &format!("/network/peers/{ib}"),
        Some(r#"{"acl": "open"}"#),
    );
    assert_eq!(s, 200);
    assert_eq!(a.get(&format!("/network/peers/{ib}/banned")), false);
    // Point ban: ban B's IP from A's side.
    let (s, v) = a.req(
        "PATCH",
        &format!("/network/points/{}", b.p2p),
        Some(r#"{"acl": "ban"}"#),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(a.get(&format!("/network/points/{}/banned", b.p2p)), true);
    let (s, _) = a.req("DELETE", "/network/greylist", None);
    assert_eq!(s, 200);
    assert_eq!(a.get(&format!("/network/points/{}/banned", b.p2p)), false);
}

#[test]
fn sigterm_saves_peers_and_a_restart_reloads_them() {
    let (da, db) = (TempDir::new("sa"), TempDir::new("sb"));
    let (mut a, b) = pair(&da, &db);
    let ib = b.peer_id();
    let (p2p, rpc) = (a.p2p, a.rpc);
    let status = a.terminate();
    assert!(status.success(), "exit status {status}");
    let peers: Value =
        serde_json::from_str(&std::fs::read_to_string(da.path().join("peers.json")).unwrap())
            .unwrap();
    assert!(
        peers
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == ib.as_str()),
        "peers.json has B: {peers}"
    );
    drop(b);
    drop(a);
    let a = NodeProc::start_on(da.path(), p2p, rpc, &[]);
    let info = a.get(&format!("/network/peers/{ib}"));
    assert_eq!(info["state"], "disconnected");
    assert!(is_time(&info["last_established_connection"][1]), "{info}");
}

#[test]
fn config_file_settings_apply_and_flags_win() {
    let dir = TempDir::new("cfg");
    let rpc = free_port();
    std::fs::write(
        dir.path().join("config.json"),
        format!(r#"{{"rpc-addr": "127.0.0.1:{rpc}", "network": "mainnet", "no-bootstrap-peers": true, "expected-pow": 0, "net-addr": "127.0.0.1:0"}}"#),
    )
    .unwrap();
    // The file's RPC address is overridden by the flag; its network is kept.
    let a = NodeProc::start_plain(dir.path(), &[]);
    assert_ne!(a.rpc.port(), rpc);
    assert_eq!(a.get("/network/version")["chain_name"], "TEZOS_MAINNET");
    drop(a);
    std::fs::write(dir.path().join("config.json"), r#"{"no-such-setting": 1}"#).unwrap();
    let o = run(&["run", "--data-dir", &dir.arg()]);
    assert_one_line_error(&o, "no-such-setting");
}

#[test]
fn ping_interval_broadcasts_text_and_a_busy_port_is_a_clear_error() {
    let (da, db, dc) = (TempDir::new("pa"), TempDir::new("pb"), TempDir::new("pc"));
    let a = NodeProc::start(da.path(), &[]);
    let b = NodeProc::start(
        db.path(),
        &[
            "--peer".into(),
            a.p2p.to_string(),
            "--ping-interval".into(),
            "0.2".into(),
        ],
    );
    let ib = b.peer_id();
    eventually("A received B's ping", || {
        a.get("/messages").as_array().unwrap().iter().any(|m| {
            m["peer_id"] == ib.as_str()
                // As octez-p2p-node pings.
                && m["text"] == format!("Hello from {ib} !")
        })
    });
    let rpc = format!("127.0.0.1:{}", free_port());
    let o = run(&[
        "run",
        "--data-dir",
        &dc.arg(),
        "--expected-pow",
        "0",
        "--net-addr",
        &a.p2p.to_string(),
        "--rpc-addr",
        &rpc,
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("error") && last.contains("cannot listen"),
        "{err}"
    );
}
