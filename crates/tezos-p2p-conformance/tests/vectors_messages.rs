//! Conformance against `shared/vectors/messages.json` and
//! `shared/vectors/connection_messages.json` (see `shared/vectors/README.md`).
//!
//! Every entry is checked; the number of entries checked per kind must equal
//! the number in the file, so nothing is skipped silently. A missing vector
//! folder is a failure, never a skip.

use std::collections::BTreeMap;

use serde_json::Value;
use tezos_p2p_conformance::load_vectors;
use tezos_p2p_wire::encoding::{Decode, DecodeError, Encode, Reader};
use tezos_p2p_wire::identity::{pow_hash, pow_level, PeerId};
use tezos_p2p_wire::message::{
    encode_message, Ack, ConnectionMessage, MessageDecoder, OctezMetadata, P2pMessage,
    RawConnectionMessage, RawMessage,
};
use tezos_p2p_wire::point::{Point, MAX_POINT_ENCODED_SIZE};
use tezos_p2p_wire::rejection::Motive;
use tezos_p2p_wire::version::NetworkVersion;

/// The `vectors` array of one file.
fn load(file: &str) -> Vec<Value> {
    let vectors = load_vectors(file);
    assert!(!vectors.is_empty(), "{file} has no vectors");
    vectors
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key} is not a string in {v}"))
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("field {key} is not an unsigned integer in {v}"))
}

fn hx(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(s(v, key)).unwrap_or_else(|e| panic!("field {key} is not hex ({e}) in {v}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().expect("string").to_owned())
        .collect()
}

/// Counts how many entries of each kind were checked.
#[derive(Default)]
struct Tally(BTreeMap<String, usize>);

impl Tally {
    fn hit(&mut self, kind: &str) {
        *self.0.entry(kind.to_owned()).or_default() += 1;
    }

    fn assert_all(&self, vectors: &[Value]) {
        let mut expected: BTreeMap<String, usize> = BTreeMap::new();
        for v in vectors {
            *expected.entry(s(v, "kind").to_owned()).or_default() += 1;
        }
        assert_eq!(self.0, expected, "every vector must be checked");
    }
}

fn check_metadata(name: &str, bytes: &[u8], exp: &Value) {
    let d = &exp["decoded"];
    let m = OctezMetadata::from_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        m.disable_mempool,
        d["disable_mempool"].as_bool().unwrap(),
        "{name}"
    );
    assert_eq!(
        m.private_node,
        d["private_node"].as_bool().unwrap(),
        "{name}"
    );
    let canonical = exp["canonical"].as_bool().unwrap_or(true);
    let re = m.to_bytes().unwrap();
    if canonical {
        assert_eq!(re, bytes, "{name}: re-encoding");
    } else {
        assert_ne!(
            re, bytes,
            "{name}: non-canonical input must differ once re-encoded"
        );
        assert_eq!(OctezMetadata::from_bytes(&re).unwrap(), m, "{name}");
    }
}

fn check_ack(name: &str, bytes: &[u8], exp: &Value) {
    let d = &exp["decoded"];
    let ack = Ack::from_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    match (s(d, "kind"), &ack) {
        ("Ack", Ack::Ack) | ("Nack_v_0", Ack::NackV0) => {}
        (
            "Nack",
            Ack::Nack {
                motive,
                alternative_points,
            },
        ) => {
            let code = d["motive"].as_i64().unwrap();
            assert_eq!(i64::from(motive.code()), code, "{name}");
            assert_eq!(*motive, Motive::from_code(code as i16), "{name}");
            assert_eq!(motive.name(), s(d, "motive_name"), "{name}");
            let texts: Vec<String> = alternative_points.iter().map(Point::to_string).collect();
            assert_eq!(texts, strings(&d["potential_peers_to_connect"]), "{name}");
        }
        (kind, got) => panic!("{name}: expected {kind}, got {got:?}"),
    }
    assert_eq!(ack.to_bytes().unwrap(), bytes, "{name}: re-encoding");
}

fn check_network_version(name: &str, bytes: &[u8], exp: &Value) {
    let d = &exp["decoded"];
    let v = NetworkVersion::from_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        v.chain_name.as_bytes(),
        s(d, "chain_name").as_bytes(),
        "{name}"
    );
    assert_eq!(
        u64::from(v.distributed_db_version),
        u(d, "distributed_db_version"),
        "{name}"
    );
    assert_eq!(u64::from(v.p2p_version), u(d, "p2p_version"), "{name}");
    assert_eq!(v.to_bytes().unwrap(), bytes, "{name}: re-encoding");
}

fn b58_chain_id(id: &[u8]) -> String {
    let mut data = vec![0x57, 0x52, 0x00];
    data.extend_from_slice(id);
    bs58::encode(data).with_check().into_string()
}

fn check_swap_fields(name: &str, point: &str, peer: &PeerId, d: &Value) {
    assert_eq!(point, s(d, "point"), "{name}");
    assert_eq!(hex::encode(peer.0), s(d, "peer_id"), "{name}");
    assert_eq!(peer.to_string(), s(d, "peer_id_b58"), "{name}");
}

fn check_p2p_message(name: &str, bytes: &[u8], exp: &Value) {
    let d = &exp["decoded"];
    let size = u(d, "size") as usize;
    let tag = u(d, "tag") as u16;
    let tag_name = s(d, "tag_name");
    // Framing as the file states it.
    assert_eq!(bytes.len(), size + 4, "{name}: size");
    assert_eq!(
        &bytes[..4],
        &(size as u32).to_be_bytes(),
        "{name}: size field"
    );
    assert_eq!(&bytes[4..6], &tag.to_be_bytes(), "{name}: tag");

    let decoded = P2pMessage::<RawMessage>::from_bytes(bytes);

    // The TezEdge "max point" swap fixtures carry the text "xxx…x" (47
    // bytes): it fits the 51-byte bound but is not a point, and Octez's
    // `of_string_exn` rejects it. Check the layout by hand and that the
    // decoder refuses it the way Octez does.
    let point_text = d["point"].as_str();
    if let Some(text) = point_text.filter(|t| t.parse::<Point>().is_err()) {
        assert_eq!(
            decoded,
            Err(DecodeError::InvalidPoint(text.to_owned())),
            "{name}"
        );
        let mut r = Reader::new(&bytes[6..]);
        let raw_point = r.bounded_bytes(MAX_POINT_ENCODED_SIZE).unwrap();
        let peer = PeerId(r.fixed().unwrap());
        r.finish().unwrap();
        assert!(["Swap_request", "Swap_ack"].contains(&tag_name), "{name}");
        check_swap_fields(name, std::str::from_utf8(raw_point).unwrap(), &peer, d);
        // The streaming decoder agrees.
        let mut dec = MessageDecoder::<RawMessage>::new();
        dec.feed(bytes);
        assert_eq!(
            dec.next(),
            Err(DecodeError::InvalidPoint(text.to_owned())),
            "{name}"
        );
        return;
    }

    let msg = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(msg.tag(), tag, "{name}");
    match &msg {
        P2pMessage::Message(raw) => {
            assert!(tag >= 0x10, "{name}");
            assert_eq!(raw.tag, tag, "{name}");
            if let Some(chain_id) = d["chain_id"].as_str() {
                assert_eq!(
                    hex::encode(&raw.body),
                    chain_id,
                    "{name}: chain-id-only body"
                );
                assert_eq!(b58_chain_id(&raw.body), s(d, "chain_id_b58"), "{name}");
            } else {
                assert_eq!(raw.body.len() as u64, u(d, "body_len"), "{name}");
            }
        }
        other => {
            assert_eq!(other.name(), tag_name, "{name}");
            match other {
                P2pMessage::Advertise(points) => {
                    let texts: Vec<String> = points.iter().map(Point::to_string).collect();
                    assert_eq!(texts, strings(&d["points"]), "{name}");
                }
                P2pMessage::SwapRequest(point, peer) | P2pMessage::SwapAck(point, peer) => {
                    check_swap_fields(name, &point.to_string(), peer, d);
                }
                P2pMessage::Disconnect | P2pMessage::Bootstrap => {}
                P2pMessage::Message(_) => unreachable!(),
            }
        }
    }

    // Decode -> encode gives the same bytes (all these encodings are canonical).
    let mut re = Vec::new();
    encode_message(&msg, &mut re).unwrap();
    assert_eq!(re, bytes, "{name}: re-encoding");

    // The streaming decoder, fed one byte at a time, agrees.
    let mut dec = MessageDecoder::<RawMessage>::new();
    let mut got = None;
    for b in bytes {
        dec.feed(std::slice::from_ref(b));
        if let Some(x) = dec.next().unwrap_or_else(|e| panic!("{name}: {e}")) {
            assert!(got.is_none(), "{name}: one message only");
            got = Some(x);
        }
    }
    assert_eq!(got, Some((bytes.len(), msg)), "{name}: streaming");
}

#[test]
fn messages_json() {
    let vectors = load("messages.json");
    let mut tally = Tally::default();
    for v in &vectors {
        let kind = s(v, "kind");
        let name = s(v, "name");
        let bytes = hx(&v["inputs"], "bytes");
        let exp = &v["expected"];
        match kind {
            "metadata" => check_metadata(name, &bytes, exp),
            "ack" => check_ack(name, &bytes, exp),
            "network_version" => check_network_version(name, &bytes, exp),
            "p2p_message" => check_p2p_message(name, &bytes, exp),
            other => panic!("{name}: unknown kind {other}"),
        }
        tally.hit(kind);
    }
    tally.assert_all(&vectors);
}

#[test]
fn real_mainnet_nack_lists_18_points() {
    let vectors = load("messages.json");
    let v = vectors
        .iter()
        .find(|v| s(v, "name") == "ack-nack-mainnet-too-many-connections")
        .expect("the mainnet Nack vector is present");
    let ack = Ack::from_bytes(&hx(&v["inputs"], "bytes")).unwrap();
    let Ack::Nack {
        motive,
        alternative_points,
    } = ack
    else {
        panic!("not a Nack: {ack:?}");
    };
    assert_eq!(motive, Motive::TooManyConnections);
    assert_eq!(alternative_points.len(), 18);
}

#[test]
fn connection_messages_json() {
    let vectors = load("connection_messages.json");
    let mut tally = Tally::default();
    for v in &vectors {
        let kind = s(v, "kind");
        let name = s(v, "name");
        assert_eq!(kind, "connection_message", "{name}");
        let inputs = &v["inputs"];
        let exp = &v["expected"];
        let framed = hx(exp, "framed");

        let raw = if inputs.get("framed").is_some() {
            let input = hx(inputs, "framed");
            assert_eq!(input, framed, "{name}");
            RawConnectionMessage::from_framed(&input).unwrap_or_else(|e| panic!("{name}: {e}"))
        } else {
            let body = hx(inputs, "body");
            let msg =
                ConnectionMessage::decode_body(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&framed[2..], body, "{name}");
            // Re-framing the body gives the expected framed bytes.
            RawConnectionMessage::new(msg).unwrap()
        };
        assert_eq!(raw.raw, framed, "{name}: raw bytes");
        let m = &raw.msg;

        assert_eq!(u64::from(m.port.unwrap_or(0)), u(exp, "port"), "{name}");
        assert_eq!(m.port.is_none(), u(exp, "port") == 0, "{name}");
        assert_eq!(hex::encode(m.public_key.0), s(exp, "public_key"), "{name}");
        assert_eq!(
            hex::encode(m.proof_of_work_stamp.0),
            s(exp, "proof_of_work_stamp"),
            "{name}"
        );
        assert_eq!(
            hex::encode(m.message_nonce),
            s(exp, "message_nonce"),
            "{name}"
        );
        assert_eq!(
            m.version.chain_name.as_bytes(),
            s(exp, "chain_name").as_bytes(),
            "{name}"
        );
        assert_eq!(
            u64::from(m.version.distributed_db_version),
            u(exp, "distributed_db_version"),
            "{name}"
        );
        assert_eq!(
            u64::from(m.version.p2p_version),
            u(exp, "p2p_version"),
            "{name}"
        );

        let peer = m.public_key.peer_id();
        assert_eq!(hex::encode(peer.0), s(exp, "peer_id"), "{name}");
        assert_eq!(peer.to_string(), s(exp, "peer_id_b58"), "{name}");
        let level = pow_level(&pow_hash(&m.public_key, &m.proof_of_work_stamp));
        assert_eq!(u64::from(level), u(exp, "pow_level"), "{name}");

        // Re-encoding gives the same framed bytes, and every decoding path agrees.
        assert_eq!(m.to_framed().unwrap(), framed, "{name}: re-encoding");
        assert_eq!(m.to_bytes().unwrap(), framed, "{name}");
        assert_eq!(
            &ConnectionMessage::from_bytes(&framed).unwrap(),
            m,
            "{name}"
        );
        assert_eq!(
            &ConnectionMessage::decode_body(&framed[2..]).unwrap(),
            m,
            "{name}"
        );
        let mut stream = framed.clone();
        stream.extend_from_slice(&[0xAA; 3]);
        let (streamed, used) = RawConnectionMessage::try_decode(&stream)
            .unwrap()
            .expect("whole frame available");
        assert_eq!(used, framed.len(), "{name}");
        assert_eq!(streamed, raw, "{name}");
        assert_eq!(
            RawConnectionMessage::try_decode(&framed[..framed.len() - 1]),
            Ok(None),
            "{name}"
        );

        tally.hit(kind);
    }
    tally.assert_all(&vectors);
}
