//! The node on mainnet, end to end with the built binary and a real
//! mainnet `Current_head` from the conformance vectors: it is the peer
//! Octez's `p2p_reader` expects. The test peer is a pool of this library
//! over TCP, with raw application messages so that it can also send what no
//! encoder would write.
//!
//! The binary is the one `cargo test --workspace` builds beside this test
//! (`target/<profile>/tezos-p2p-node`); a missing or stale binary fails the
//! test, it does not skip it (see `common/mod.rs`).

mod common;

use serde_json::Value;
use tezos_p2p_conformance::load_vectors;

use tezos_p2p_shell::{BlockHeader, ChainId, ShellMessage};
use tezos_p2p_wire::message::{AppMessage, RawMessage};

use common::*;

/// The conformance vectors (a missing folder fails the test).
fn vector(file: &str, name: &str) -> Value {
    load_vectors(file)
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name} in {file}"))
}

fn raw_of_hex(hex_str: &str) -> RawMessage {
    let bytes = hex::decode(hex_str).unwrap();
    RawMessage {
        tag: u16::from_be_bytes([bytes[0], bytes[1]]),
        body: bytes[2..].to_vec(),
    }
}

const MAINNET: &str = "NetXdQprcVkpaWU";

#[test]
fn on_mainnet_the_node_is_the_peer_octez_expects() {
    let dir = TempDir::new("mainnet");
    let node = NodeProc::start(
        dir.path(),
        &[
            "--network".into(),
            "mainnet".into(),
            "--no-bootstrap-peers".into(),
        ],
    );
    assert_eq!(node.get("/chains/main/chain_id"), MAINNET);
    let (s, e) = node.req("GET", "/chains/main/blocks/head/hash", None);
    assert_eq!(s, 404, "no head yet: {e}");
    assert!(e["error"].as_str().unwrap().contains("no head"), "{e}");
    let (s, _) = node.req("GET", "/chains/main/blocks/head/header/shell", None);
    assert_eq!(s, 404);

    let peer = Peer::new("TEZOS_MAINNET", &[0, 1, 2], false);
    let conn = peer.connect(&node);
    let mainnet: ChainId = MAINNET.parse().unwrap();

    // What Octez's p2p_reader does first.
    peer.send_shell(&conn, &ShellMessage::GetCurrentBranch(mainnet));
    // The node's first application message is the same request.
    assert_eq!(
        peer.recv_shell(&conn),
        ShellMessage::GetCurrentBranch(mainnet)
    );

    // A real mainnet Current_head (with a 1 045-operation mempool).
    let v = vector(
        "shell_messages_large.json",
        "fixture-tezedge-resource-current_head-mainnet-big-mempool",
    );
    let raw = raw_of_hex(v["inputs"]["hex"].as_str().unwrap());
    let header: BlockHeader = match ShellMessage::decode(raw.tag, &raw.body).unwrap() {
        ShellMessage::CurrentHead {
            header, chain_id, ..
        } => {
            assert_eq!(chain_id, mainnet);
            header
        }
        other => panic!("not a Current_head: {other:?}"),
    };
    let hash = header.hash().to_string();
    assert_eq!(
        hash,
        v["expected"]["fields"]["current_block_header"]["derived_hash"]["b58"]
    );
    let mut monitor = Stream::open(node.rpc, "/monitor/heads/main");
    assert_eq!(monitor.status, 200);
    peer.send(&conn, raw);

    eventually("the node knows the head", || {
        node.try_get("/chains/main/blocks/head/hash")
            .is_ok_and(|(s, b)| s == 200 && b.contains(&hash))
    });
    let streamed: Value = serde_json::from_str(&monitor.next_line()).unwrap();
    assert_eq!(streamed["hash"], hash.as_str());
    assert_eq!(streamed["level"], header.level);
    assert_eq!(
        streamed["protocol_data"],
        hex::encode(&header.protocol_data)
    );
    let shell = node.get("/chains/main/blocks/head/header/shell");
    assert_eq!(shell, header.shell_json());
    assert_eq!(shell["level"], 1_343_487);
    assert!(shell.get("protocol_data").is_none());
    let heads = node.get("/network/heads");
    assert_eq!(heads.as_array().unwrap().len(), 1, "{heads}");
    assert_eq!(heads[0]["peer_id"], peer.net.peer_id().to_string());
    assert_eq!(heads[0]["hash"], hash.as_str());
    assert_eq!(heads[0]["level"], header.level);
    assert!(heads[0]["fitness"].is_array() && heads[0]["received_at"].is_string());
    // The dashboard's view of it: the best head and who announced it.
    let snap = node.get("/dashboard/snapshot");
    let best = &snap["heads"]["best"];
    assert_eq!(best["hash"], hash.as_str(), "{snap}");
    assert_eq!(best["level"], header.level);
    assert_eq!(
        best["announced_by"],
        serde_json::json!([{ "peer_id": peer.net.peer_id().to_string(), "after_ms": 0 }])
    );
    assert_eq!(snap["heads"]["others"], serde_json::json!([]));
    assert_eq!(snap["node"]["chain_id"], MAINNET);

    // Now it answers: Current_head with its best head and an empty mempool…
    peer.send_shell(&conn, &ShellMessage::GetCurrentHead(mainnet));
    match peer.recv_shell(&conn) {
        ShellMessage::CurrentHead {
            chain_id,
            header: h,
            mempool,
        } => {
            assert_eq!(chain_id, mainnet);
            assert_eq!(h, header);
            assert!(mempool.is_empty());
        }
        other => panic!("expected Current_head, got {other:?}"),
    }
    // …and Block_header, byte for byte, for a hash it has seen.
    let unknown = tezos_p2p_shell::BlockHash::from([7; 32]);
    peer.send_shell(
        &conn,
        &ShellMessage::GetBlockHeaders(vec![unknown, header.hash()]),
    );
    let m = peer.recv(&conn);
    assert_eq!(m.tag, 0x21);
    assert_eq!(m.body, header.to_bytes());
    // Requests it cannot serve and other chains' messages cost nothing.
    let other: ChainId = "NetXjD3HPJJjmcd".parse().unwrap();
    peer.send_shell(&conn, &ShellMessage::GetCurrentHead(other));
    peer.send_shell(&conn, &ShellMessage::GetOperations(vec![]));
    peer.send_shell(&conn, &ShellMessage::GetProtocols(vec![]));
    peer.send_shell(&conn, &ShellMessage::Deactivate(mainnet));
    peer.send_shell(&conn, &ShellMessage::GetCurrentBranch(mainnet));
    match peer.recv_shell(&conn) {
        ShellMessage::CurrentBranch { chain_id, locator } => {
            assert_eq!(chain_id, mainnet);
            assert_eq!(locator.current_head, header);
            assert!(locator.history.is_empty());
        }
        other => panic!("expected Current_branch, got {other:?}"),
    }
    // Still connected, and nobody greylisted on either side.
    let conns = node.get("/network/connections");
    assert_eq!(conns.as_array().unwrap().len(), 1, "{conns}");
    assert_eq!(
        node.get("/network/greylist/ips")["ips"],
        serde_json::json!([])
    );
    assert_eq!(node.get("/network/greylist/peers"), serde_json::json!([]));
    assert!(!conn.is_closed());
    assert!(peer.net.with_acl(|a| a.greylisted_peers()).is_empty());
    // The messages were decoded and shown in Octez's JSON.
    let msgs = node.get("/messages");
    let first = &msgs[0];
    assert_eq!(first["name"], "Get_current_branch");
    assert_eq!(first["tag"], 16);
    assert_eq!(
        first["message"],
        serde_json::json!({"get_current_branch": MAINNET})
    );
    let head_msg = msgs
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Current_head")
        .unwrap();
    assert_eq!(
        head_msg["message"]["current_block_header"]["level"],
        header.level
    );
    // Metrics by kind.
    let (_, metrics) = http(node.rpc, "GET", "/metrics", None).unwrap();
    for line in [
        "tezos_p2p_node_messages_received_total{kind=\"Current_head\"} 1",
        "tezos_p2p_node_messages_sent_total{kind=\"Get_current_branch\"} 1",
        "tezos_p2p_node_messages_sent_total{kind=\"Block_header\"} 1",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }

    // An invalid shell message (11 hashes) is greylisted and closed.
    let mut body = (11u32 * 32).to_be_bytes().to_vec();
    body.extend_from_slice(&[0; 11 * 32]);
    peer.send(&conn, RawMessage { tag: 0x20, body });
    eventually("the node closed the connection", || {
        node.get("/network/connections")
            .as_array()
            .is_some_and(|c| c.is_empty())
    });
    assert_eq!(
        node.get("/network/greylist/peers"),
        serde_json::json!([peer.net.peer_id().to_string()])
    );
    assert_eq!(
        node.get("/network/greylist/ips")["ips"],
        serde_json::json!(["::ffff:127.0.0.1"])
    );
}
