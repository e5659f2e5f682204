//! `sessions.json`, message side: every decrypted chunk of every session
//! decodes — the metadata, then the Ack, then a stream of P2P messages cut
//! out of the remaining chunks in each direction. (The crypto side, key,
//! nonces and every chunk's decryption, is in `vectors_crypto.rs`.)

use serde_json::Value;
use tezos_p2p_conformance::load_vectors;
use tezos_p2p_wire::encoding::Decode;
use tezos_p2p_wire::message::{Ack, MessageDecoder, OctezMetadata, P2pMessage, RawMessage};

fn sessions() -> Vec<Value> {
    load_vectors("sessions.json")
}

#[test]
fn every_session_plaintext_decodes_in_order() {
    let entries = sessions();
    assert_eq!(entries.len(), 3, "sessions.json has three sessions");
    let mut messages = 0;
    for e in &entries {
        let name = e["name"].as_str().unwrap();
        for direction in ["sent", "received"] {
            let chunks: Vec<Vec<u8>> = e["expected"]["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["direction"] == direction)
                .map(|c| hex::decode(c["plaintext"].as_str().unwrap()).unwrap())
                .collect();
            assert!(chunks.len() >= 2, "{name} {direction}: metadata and ack");
            let meta = OctezMetadata::from_bytes(&chunks[0])
                .unwrap_or_else(|err| panic!("{name} {direction}: metadata: {err}"));
            let _ = meta;
            let ack = Ack::from_bytes(&chunks[1])
                .unwrap_or_else(|err| panic!("{name} {direction}: ack: {err}"));
            assert_eq!(ack, Ack::Ack, "{name} {direction}: both sides accepted");
            let mut decoder = MessageDecoder::<RawMessage>::new();
            for chunk in &chunks[2..] {
                decoder.feed(chunk);
                while let Some((size, msg)) = decoder.next().unwrap() {
                    assert!(size >= 6);
                    if let P2pMessage::Message(m) = &msg {
                        // Get_current_branch (0x10) carries a 4-byte chain id.
                        assert!(m.tag >= 0x10);
                    }
                    messages += 1;
                }
            }
            assert_eq!(
                decoder.buffered(),
                0,
                "{name} {direction}: no partial message left"
            );
        }
    }
    assert!(messages >= 2, "the captured session carries messages");
}

#[test]
fn captured_session_metadata_and_messages_have_the_expected_values() {
    let entries = sessions();
    let captured = entries
        .iter()
        .find(|e| e["name"] == "carthagenet-session-capture")
        .expect("the captured session");
    let plaintexts: Vec<Vec<u8>> = captured["expected"]["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| hex::decode(c["plaintext"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        OctezMetadata::from_bytes(&plaintexts[0]).unwrap(),
        OctezMetadata {
            disable_mempool: false,
            private_node: false
        }
    );
    let msg = P2pMessage::<RawMessage>::from_bytes(&plaintexts[4]).unwrap();
    match msg {
        P2pMessage::Message(RawMessage { tag, body }) => {
            assert_eq!(tag, 0x10, "Get_current_branch");
            assert_eq!(body.len(), 4, "a chain id");
        }
        other => panic!("unexpected {other:?}"),
    }
}
