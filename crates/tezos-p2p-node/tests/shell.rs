//! The node on a real network, end to end with the built binary: on
//! `octez-p2p-node`'s network it exchanges Text with a peer that does
//! exactly what `octez-p2p-node` does. The test peers are pools of this
//! library over TCP, with raw application messages so that they can also
//! send what no encoder would write. (The node on mainnet, with a real
//! `Current_head` from the conformance vectors, is tested in
//! `crates/tezos-p2p-conformance/tests/node_shell.rs`.)

mod common;

use tezos_p2p_wire::message::RawMessage;

use common::*;

#[test]
fn on_octez_p2p_node_network_text_goes_both_ways() {
    let dir = TempDir::new("p2pnode");
    let node = NodeProc::start(
        dir.path(),
        &[
            "--network".into(),
            "p2p-node".into(),
            "--ping-interval".into(),
            "0.2".into(),
            "--log-to-file".into(),
        ],
    );
    assert_eq!(node.get("/network/version")["chain_name"], "");
    assert_eq!(node.get("/network/version")["distributed_db_version"], 0);
    let (s, _) = node.req("GET", "/chains/main/chain_id", None);
    assert_eq!(s, 404, "no chain on this network");
    // Exactly what octez-p2p-node announces.
    let peer = Peer::new("", &[0], true);
    let conn = peer.connect(&node);
    let text = |t: &str| {
        let mut body = (t.len() as u32).to_be_bytes().to_vec();
        body.extend_from_slice(t.as_bytes());
        RawMessage { tag: 0x10, body }
    };
    let me = peer.net.peer_id();
    peer.send(&conn, text(&format!("Hello from {me} !")));
    eventually("the node got the text", || {
        node.get("/messages")
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["peer_id"] == me.to_string() && m["text"] == format!("Hello from {me} !"))
    });
    // The node's ping is octez-p2p-node's.
    let node_id = node.peer_id();
    assert_eq!(peer.recv(&conn), text(&format!("Hello from {node_id} !")));
    let (s, v) = node.req(
        "POST",
        &format!("/messages/send/{me}"),
        Some(r#"{"text": "hi there"}"#),
    );
    assert_eq!((s, v), (200, serde_json::json!({"sent": true})));
    let mut got = peer.recv(&conn);
    while got == text(&format!("Hello from {node_id} !")) {
        got = peer.recv(&conn);
    }
    assert_eq!(got, text("hi there"));
    assert!(node
        .get("/network/greylist/peers")
        .as_array()
        .unwrap()
        .is_empty());

    // What a peer writes cannot forge a log line: newlines and terminal
    // escapes are escaped.
    let forged = "innocent\n2026-01-01T00:00:00Z ERROR forged: \x1b[31mred\x1b[0m\r";
    peer.send(&conn, text(forged));
    eventually("the node logged the text", || {
        std::fs::read_to_string(dir.path().join("node.log")).is_ok_and(|l| l.contains("innocent"))
    });
    let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
    assert!(!log.contains('\x1b') && !log.contains('\r'), "{log:?}");
    assert!(
        !log.lines()
            .any(|l| l.contains("ERROR forged") && !l.contains("innocent")),
        "a forged line: {log}"
    );
    let line = log.lines().find(|l| l.contains("innocent")).unwrap();
    assert!(line.contains(r"innocent\n2026"), "{line}");
}
