//! Conformance against `shared/vectors/shell_messages.json` and
//! `shared/vectors/shell_messages_large.json` (format in their `format`
//! key, layouts in `shared/spec/shell-messages.md`).
//!
//! Every entry is checked and counted: the counts must equal the numbers of
//! entries, so nothing is skipped silently. A missing vector file is a
//! failure, never a skip.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{json, Map, Value};
use tezos_p2p_conformance::load_vectors;
use tezos_p2p_shell::{BlockHeader, BlockLocator, ProtocolHash, ShellMessage};
use tezos_p2p_wire::encoding::DecodeError;
use tezos_p2p_wire::message::{AppMessage, MessageDecoder, P2pMessage};

const FILES: [(&str, usize); 2] = [
    ("shell_messages.json", 216),
    ("shell_messages_large.json", 9),
];

/// The `vectors` array of one file, whose length must be `count`.
fn load(file: &str, count: usize) -> Vec<Value> {
    let vectors = load_vectors(file);
    assert_eq!(vectors.len(), count, "{file}: number of vectors");
    vectors
}

fn all_vectors() -> Vec<Value> {
    FILES.iter().flat_map(|(f, n)| load(f, *n)).collect()
}

fn hex_of(v: &Value, key: &str) -> Option<Vec<u8>> {
    v.get(key)
        .and_then(Value::as_str)
        .map(|h| hex::decode(h).unwrap_or_else(|e| panic!("{key} is not hex: {e}")))
}

/// `{hex, b58}` → the b58 text.
fn is_hash(m: &Map<String, Value>) -> bool {
    m.len() == 2 && m.contains_key("hex") && m.contains_key("b58")
}

/// The vector's `fields` as our serde writes them: hashes as b58,
/// timestamps as Octez's JSON text, no `derived_*`, no null interface.
fn normalise(v: &Value) -> Value {
    match v {
        Value::Object(m) if is_hash(m) => m["b58"].clone(),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                if k.starts_with("derived_") || (k == "interface" && x.is_null()) {
                    continue;
                }
                let x = if k == "timestamp" && m.contains_key("derived_timestamp_rfc3339") {
                    let t = x.as_i64().expect("integer timestamp");
                    match &m["derived_timestamp_rfc3339"] {
                        Value::String(s) => Value::String(s.clone()),
                        Value::Null => Value::String(t.to_string()),
                        other => panic!("derived_timestamp_rfc3339 {other}"),
                    }
                } else {
                    normalise(x)
                };
                out.insert(k.clone(), x);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

/// Only the `derived_*` values, keeping their nesting (hashes as b58);
/// `None` where there is none. Counts the values kept.
fn derived_only(v: &Value, count: &mut usize) -> Option<Value> {
    match v {
        Value::Object(m) if is_hash(m) => None,
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                if k.starts_with("derived_") {
                    *count += 1;
                    out.insert(k.clone(), normalise(x));
                } else if let Some(p) = derived_only(x, count) {
                    out.insert(k.clone(), p);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) => {
            let parts: Vec<Option<Value>> = a.iter().map(|x| derived_only(x, count)).collect();
            parts.iter().any(Option::is_some).then(|| {
                Value::Array(
                    parts
                        .into_iter()
                        .map(|p| p.unwrap_or_else(|| json!({})))
                        .collect(),
                )
            })
        }
        _ => None,
    }
}

fn header_derived(h: &BlockHeader) -> Value {
    json!({
        "derived_hash": h.hash(),
        // RFC 3339 within Ptime's range (years 0-9999), else null.
        "derived_timestamp_rfc3339": Some(h.timestamp_rfc3339())
            .filter(|t| t.parse::<i64>().is_err()),
    })
}

fn locator_derived(l: &BlockLocator) -> Value {
    json!({
        "current_head": header_derived(&l.current_head),
        "derived_head_hash": l.head_hash(),
    })
}

/// The derived values of a decoded message, computed with the crate's
/// methods, nested as the vectors nest them.
///
/// A protocol's `derived_hash` is the hash of the bytes received (`body`);
/// `Protocol::hash` is Octez's `Protocol.hash`, of the re-encoding: they
/// differ when the presence byte of an interface is not `ff` (checked in
/// `check_valid`).
fn computed_derived(m: &ShellMessage, body: &[u8]) -> Value {
    use ShellMessage as M;
    match m {
        M::CurrentBranch { locator, .. } => json!({ "current_branch": locator_derived(locator) }),
        M::CurrentHead {
            header, mempool, ..
        } => json!({
            "current_block_header": header_derived(header),
            "current_mempool": { "derived_sets_sorted_unique": mempool.sorted_unique() },
        }),
        M::BlockHeader(h) => json!({ "block_header": header_derived(h) }),
        M::Operation(o) => json!({ "operation": { "derived_hash": o.hash() } }),
        M::Protocol(_) => json!({ "protocol": { "derived_hash": ProtocolHash::hash_of(body) } }),
        M::OperationsForBlocks(o) => {
            let (root, position) = o.path_root_and_position();
            json!({
                "operations": o.operations.iter().map(|op| json!({"derived_hash": op.hash()})).collect::<Vec<_>>(),
                "derived_operation_list_hash": o.operation_list_hash(),
                "derived_path_root": root,
                "derived_path_position": position,
            })
        }
        M::Checkpoint { header, .. } => {
            json!({ "checkpoint": { "header": header_derived(header) } })
        }
        M::ProtocolBranch { locator, .. } => {
            json!({ "protocol_branch": { "locator": locator_derived(locator) } })
        }
        M::PredecessorHeader { header, .. } => {
            json!({ "predecessor_header": { "header": header_derived(header) } })
        }
        _ => json!({}),
    }
}

fn framed(size_prefix: &[u8], hex: &[u8]) -> Vec<u8> {
    let mut f = size_prefix.to_vec();
    f.extend_from_slice(hex);
    f
}

/// The prefix lengths to try with `check_prefix`: all of them for small
/// messages, a spread for the large ones.
fn cuts(len: usize) -> Vec<usize> {
    if len <= 4096 {
        (0..=len).collect()
    } else {
        let mut v: Vec<usize> = (0..=600).chain((0..=64).map(|i| i * len / 64)).collect();
        v.extend(len.saturating_sub(600)..=len);
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Feeds `bytes` to a fresh decoder and returns what it says.
fn through_decoder(bytes: &[u8]) -> Result<Option<(usize, P2pMessage<ShellMessage>)>, DecodeError> {
    let mut d = MessageDecoder::<ShellMessage>::new();
    d.feed(bytes);
    d.next()
}

/// Checks one valid vector; returns how many derived values it checked.
fn check_valid(v: &Value) -> usize {
    let name = v["name"].as_str().unwrap();
    let inputs = &v["inputs"];
    let expected = &v["expected"];
    let bytes = hex_of(inputs, "hex").expect("inputs.hex");
    let size_prefix = hex_of(inputs, "size_prefix").expect("inputs.size_prefix");
    assert_eq!(
        size_prefix,
        (bytes.len() as u32).to_be_bytes(),
        "{name}: size_prefix"
    );
    let tag = u16::from_be_bytes([bytes[0], bytes[1]]);
    assert_eq!(
        u64::from(tag),
        expected["tag"].as_u64().unwrap(),
        "{name}: tag"
    );
    assert_eq!(
        expected["tag_hex"].as_str().unwrap(),
        hex::encode(&bytes[..2]),
        "{name}"
    );

    // Decode, through the trait as the wire crate does.
    let msg = <ShellMessage as AppMessage>::decode(tag, &bytes[2..])
        .unwrap_or_else(|e| panic!("{name}: decoding failed: {e}"));
    assert_eq!(msg.tag(), tag, "{name}");
    assert_eq!(
        msg.name(),
        expected["name"].as_str().unwrap(),
        "{name}: name"
    );
    assert_eq!(ShellMessage::tag_name(tag), Some(msg.name()));

    // Fields, as Octez's JSON.
    let fields = &expected["fields"];
    let json = serde_json::to_value(&msg).unwrap();
    assert_eq!(json, normalise(fields), "{name}: JSON fields");
    assert_eq!(msg.to_json(), json);

    // Derived values.
    let mut n_expected = 0;
    let mut n_computed = 0;
    let want = derived_only(fields, &mut n_expected);
    let got = derived_only(&computed_derived(&msg, &bytes[2..]), &mut n_computed);
    assert_eq!(got, want, "{name}: derived values");
    assert_eq!(n_computed, n_expected, "{name}");

    // Re-encoding.
    let canonical = hex_of(v, "canonical_hex")
        .or_else(|| hex_of(inputs, "canonical_hex"))
        .unwrap_or_else(|| bytes.clone());
    assert_eq!(msg.to_bytes().unwrap(), canonical, "{name}: re-encoding");
    if let ShellMessage::Protocol(p) = &msg {
        // Octez hashes the protocol it decoded, i.e. its canonical bytes.
        assert_eq!(p.hash(), ProtocolHash::hash_of(&canonical[2..]), "{name}");
    }
    assert_eq!(msg.size_hint(), canonical.len() - 2, "{name}: size_hint");
    let mut body = vec![0xEE];
    msg.encode_body(&mut body).unwrap();
    assert_eq!(&body[1..], &canonical[2..], "{name}: encode_body appends");

    // JSON round trip, both ways in.
    assert_eq!(
        serde_json::from_value::<ShellMessage>(json.clone()).unwrap(),
        msg,
        "{name}: from JSON"
    );
    assert_eq!(
        ShellMessage::from_json(msg.name(), &json).unwrap(),
        msg,
        "{name}: from_json"
    );
    assert_eq!(ShellMessage::from_octez_json(&json).unwrap(), msg, "{name}");
    let text = serde_json::to_string(&msg).unwrap();
    assert_eq!(serde_json::from_str::<ShellMessage>(&text).unwrap(), msg);

    // Through the stream decoder, and the stream reader on every prefix.
    let wire = framed(&size_prefix, &bytes);
    match through_decoder(&wire) {
        Ok(Some((used, P2pMessage::Message(m)))) => {
            assert_eq!(used, wire.len(), "{name}");
            assert_eq!(m, msg, "{name}: MessageDecoder");
        }
        other => panic!("{name}: MessageDecoder gave {other:?}"),
    }
    assert!(
        wire.len() <= 4 + ShellMessage::max_size(tag).unwrap(),
        "{name}: max_size"
    );
    for n in cuts(wire.len()) {
        assert_eq!(
            ShellMessage::check_prefix(&wire[..n]),
            Ok(()),
            "{name}: check_prefix of {n} bytes"
        );
    }
    n_expected
}

fn check_invalid(v: &Value) {
    let name = v["name"].as_str().unwrap();
    let inputs = &v["inputs"];
    let class = v["expected"]["error"].as_str().expect("expected.error");
    let bytes = hex_of(inputs, "hex").expect("inputs.hex");
    let size_prefix = hex_of(inputs, "size_prefix").expect("inputs.size_prefix");
    assert_eq!(size_prefix, (bytes.len() as u32).to_be_bytes(), "{name}");

    let err = ShellMessage::from_bytes(&bytes).expect_err(name);
    assert_eq!(err.octez_class(), class, "{name}: {err}");
    let tag = u16::from_be_bytes([bytes[0], bytes[1]]);
    let err2 = <ShellMessage as AppMessage>::decode(tag, &bytes[2..]).expect_err(name);
    assert_eq!(err2, err);

    // The stream reader on the whole message and on its prefixes: the
    // error, once there, stays the same.
    let wire = framed(&size_prefix, &bytes);
    assert_eq!(
        ShellMessage::check_prefix(&wire),
        Err(err.clone()),
        "{name}"
    );
    let mut failed = false;
    for n in cuts(wire.len()) {
        match ShellMessage::check_prefix(&wire[..n]) {
            Ok(()) => assert!(!failed, "{name}: error then Ok at {n}"),
            Err(e) => {
                assert_eq!(e, err, "{name}: prefix of {n}");
                failed = true;
            }
        }
    }

    // The stream decoder.
    let got = through_decoder(&wire).expect_err(name);
    assert_eq!(got.octez_class(), class, "{name}: MessageDecoder: {got}");
}

/// `framed_prefix_hex` vectors: the one whose error needs the path read.
const NEEDS_PATH: &str = "invalid-operations_for_blocks-ops-over-1MiB-early";

fn check_framed_prefix(v: &Value, waited: &mut BTreeSet<String>) {
    let name = v["name"].as_str().unwrap();
    let class = v["expected"]["error"].as_str().expect("expected.error");
    let prefix = hex_of(&v["inputs"], "framed_prefix_hex").unwrap();
    let err = ShellMessage::check_prefix(&prefix).expect_err(name);
    assert_eq!(err.octez_class(), class, "{name}: {err}");
    // One byte less is still awaited, or already the same error.
    if let Err(e) = ShellMessage::check_prefix(&prefix[..prefix.len() - 1]) {
        assert_eq!(e, err, "{name}");
    }
    match through_decoder(&prefix) {
        Err(e) => assert_eq!(e.octez_class(), class, "{name}: MessageDecoder: {e}"),
        Ok(None) => {
            waited.insert(name.to_string());
        }
        Ok(Some(m)) => panic!("{name}: decoded {m:?}"),
    }
}

#[test]
fn every_vector() {
    let mut valid = 0;
    let mut derived = 0;
    let mut invalid = 0;
    let mut prefixes = 0;
    let mut waited = BTreeSet::new();
    let mut names = BTreeSet::new();
    for v in all_vectors() {
        let name = v["name"].as_str().expect("name");
        assert!(names.insert(name.to_string()), "duplicate name {name}");
        match (v["kind"].as_str(), v["inputs"].get("framed_prefix_hex")) {
            (Some("shell_message"), None) => {
                derived += check_valid(&v);
                valid += 1;
            }
            (Some("shell_message_invalid"), None) => {
                check_invalid(&v);
                invalid += 1;
            }
            (Some("shell_message_invalid"), Some(_)) => {
                check_framed_prefix(&v, &mut waited);
                prefixes += 1;
            }
            (kind, _) => panic!("{name}: unknown kind {kind:?}"),
        }
    }
    assert_eq!((valid, invalid, prefixes), (176 + 5, 34 + 4, 6));
    assert_eq!(valid + invalid + prefixes, 216 + 9);
    println!("{derived} derived values checked");
    assert_eq!(derived, 1581, "derived values in the vectors");
    assert_eq!(waited, BTreeSet::from([NEEDS_PATH.to_string()]));
}

/// The captured `Current_head` whose `known_valid` is unsorted keeps its
/// order (and so its bytes).
#[test]
fn unsorted_mempool_keeps_wire_order() {
    let v = load("shell_messages.json", 216)
        .into_iter()
        .find(|v| v["name"] == "captured-recv-current_head-n06376")
        .expect("vector present");
    let bytes = hex_of(&v["inputs"], "hex").unwrap();
    let ShellMessage::CurrentHead { mempool, .. } = ShellMessage::from_bytes(&bytes).unwrap()
    else {
        panic!("a Current_head")
    };
    assert!(!mempool.sorted_unique());
    assert_eq!(mempool.known_valid.len(), 9);
}

/// Writes every vector's bytes (tag ‖ body, or the framed prefix) into
/// `fuzz/corpus/shell_message/`, the seed corpus of the `shell_message`
/// fuzz target: `cargo test -p tezos-p2p-conformance --test shell_vectors -- --ignored`.
#[test]
#[ignore = "writes the fuzz seed corpus"]
fn write_fuzz_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/shell_message");
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for v in all_vectors() {
        let name = v["name"].as_str().unwrap();
        let bytes = hex_of(&v["inputs"], "hex")
            .or_else(|| hex_of(&v["inputs"], "framed_prefix_hex"))
            .unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        n += 1;
    }
    assert_eq!(n, 216 + 9);
    println!("wrote {n} seeds to {}", dir.display());
}
