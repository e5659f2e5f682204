//! Conformance against the shared test vectors (`shared/vectors`, described
//! in its `README.md`) for identities, peer ids, proof of work, nonces,
//! session keys, boxes, chunks and captured sessions.
//!
//! Every entry of every file is checked, and each test asserts that the
//! number of entries it checked equals the number in the file, so an
//! unknown kind or a skipped entry fails loudly. A missing vector folder or
//! file is a failure too, never a skip.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;
use tezos_p2p_conformance::load_vectors;
use tezos_p2p_wire::chunk::check_binary_chunks_size;
use tezos_p2p_wire::crypto::{
    chunk_body_len, derive_nonces, ChunkCipher, CryptoError, Nonce, SessionKey, HEADER_LEN,
    MAX_CHUNK_PLAINTEXT, TAG_LEN,
};
use tezos_p2p_wire::identity::{
    pow_hash, pow_level, search_batch, PeerId, PowStamp, PowTarget, PublicKey, SecretKey,
};

/// The entries of one vector file, with the file name for messages.
/// Panics when the folder or the file is missing or malformed.
fn load(file: &str) -> Vec<Value> {
    let vectors = load_vectors(file);
    assert!(!vectors.is_empty(), "{file} has no entries");
    let mut names = HashSet::new();
    for v in &vectors {
        let name = v["name"].as_str().expect("every entry has a name");
        assert!(
            names.insert(name.to_owned()),
            "{file}: duplicate entry name {name}"
        );
    }
    vectors
}

/// Counts checked entries per kind and makes sure nothing was skipped.
struct Tally {
    file: &'static str,
    total: usize,
    by_kind: BTreeMap<String, usize>,
}

impl Tally {
    fn new(file: &'static str, entries: &[Value]) -> Self {
        Tally {
            file,
            total: entries.len(),
            by_kind: BTreeMap::new(),
        }
    }

    fn checked(&mut self, kind: &str) {
        *self.by_kind.entry(kind.to_owned()).or_default() += 1;
    }

    fn finish(self) {
        let n: usize = self.by_kind.values().sum();
        assert_eq!(
            n, self.total,
            "{}: checked {n} entries ({:?}) but the file has {}",
            self.file, self.by_kind, self.total
        );
        eprintln!("{}: checked {n} entries {:?}", self.file, self.by_kind);
    }
}

fn name(e: &Value) -> &str {
    e["name"].as_str().unwrap()
}

fn kind(e: &Value) -> &str {
    e["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no kind", name(e)))
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("missing string field {field:?} in {v}"))
}

fn bytes(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(s(v, field)).unwrap_or_else(|e| panic!("field {field:?} is not hex: {e}"))
}

fn arr<const N: usize>(v: &Value, field: &str) -> [u8; N] {
    let b = bytes(v, field);
    b.as_slice()
        .try_into()
        .unwrap_or_else(|_| panic!("field {field:?}: {} bytes, expected {N}", b.len()))
}

fn num(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("missing number field {field:?} in {v}"))
}

fn uint(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("missing integer field {field:?} in {v}"))
}

fn flag(v: &Value, field: &str) -> bool {
    v[field]
        .as_bool()
        .unwrap_or_else(|| panic!("missing boolean field {field:?} in {v}"))
}

fn nonce(v: &Value, field: &str) -> Nonce {
    Nonce(arr(v, field))
}

fn key(v: &Value, field: &str) -> SessionKey {
    SessionKey(arr(v, field))
}

fn nonce_plus(base: Nonce, n: u64) -> Nonce {
    let mut x = base;
    x.add(n);
    x
}

/// Seals one chunk with a fresh cipher at `nonce`.
fn seal_one(key: &SessionKey, nonce: Nonce, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ChunkCipher::new(key.clone(), nonce)
        .seal_chunk(plaintext, &mut out)
        .unwrap();
    out
}

/// Checks the header of a framed chunk and opens it with `cipher`.
fn open_framed(cipher: &mut ChunkCipher, chunk: &[u8], what: &str) -> Vec<u8> {
    assert!(
        chunk.len() >= HEADER_LEN + TAG_LEN,
        "{what}: chunk too short"
    );
    let len = chunk_body_len([chunk[0], chunk[1]]).unwrap();
    assert_eq!(len, chunk.len() - HEADER_LEN, "{what}: length header");
    let mut body = chunk[HEADER_LEN..].to_vec();
    cipher
        .open_chunk(&mut body)
        .unwrap_or_else(|e| panic!("{what}: does not open: {e}"))
        .to_vec()
}

/// A flipped bit anywhere in the MAC or ciphertext must fail to open.
fn assert_tamper_fails(key: &SessionKey, nonce: Nonce, chunk: &[u8], what: &str) {
    for i in [HEADER_LEN, chunk.len() - 1] {
        let mut body = chunk[HEADER_LEN..].to_vec();
        body[i - HEADER_LEN] ^= 0x01;
        let r = ChunkCipher::new(key.clone(), nonce)
            .open_chunk(&mut body)
            .map(|_| ());
        assert_eq!(
            r,
            Err(CryptoError::Decipher),
            "{what}: tampered byte {i} opened"
        );
    }
}

fn check_peer_id(pk: &PublicKey, expected: &Value, what: &str) {
    let id = PeerId::of(pk);
    assert_eq!(hex::encode(id.0), s(expected, "peer_id"), "{what}: peer_id");
    let b58 = s(expected, "peer_id_b58");
    assert_eq!(id.to_b58check(), b58, "{what}: peer_id_b58");
    assert_eq!(id.to_string(), b58, "{what}: Display");
    assert_eq!(b58.parse::<PeerId>().unwrap(), id, "{what}: parse b58");
    assert_eq!(pk.peer_id(), id, "{what}: PublicKey::peer_id");
}

#[test]
fn identities() {
    let entries = load("identities.json");
    let mut tally = Tally::new("identities.json", &entries);
    for e in &entries {
        let what = name(e);
        match kind(e) {
            "identity" => {
                let (i, x) = (&e["inputs"], &e["expected"]);
                let pk = PublicKey(arr(i, "public_key"));
                let sk = SecretKey(arr(i, "secret_key"));
                let stamp = PowStamp(arr(i, "proof_of_work_stamp"));
                assert_eq!(sk.public_key(), pk, "{what}: scalarmult_base(secret_key)");
                check_peer_id(&pk, x, what);
                let h = pow_hash(&pk, &stamp);
                assert_eq!(hex::encode(h), s(x, "pow_hash"), "{what}: pow_hash");
                assert_eq!(
                    u64::from(pow_level(&h)),
                    uint(x, "pow_level"),
                    "{what}: pow_level"
                );
                let pow_ok = x["pow_ok"].as_object().expect("pow_ok map");
                assert!(!pow_ok.is_empty(), "{what}: empty pow_ok");
                for (t, ok) in pow_ok {
                    let level: f64 = t.parse().unwrap_or_else(|_| panic!("{what}: target {t}"));
                    let target = PowTarget::new(level).unwrap();
                    let ok = ok.as_bool().expect("pow_ok values are booleans");
                    assert_eq!(target.check(&pk, &stamp), ok, "{what}: pow_ok[{t}]");
                    assert_eq!(target.accepts_hash(&h), ok, "{what}: accepts_hash {t}");
                }
                // Generated identities: the stamp is the first valid one at
                // or after the search start, stepping by +1 big-endian.
                if let Some(start) = i.get("stamp_search_start") {
                    let start = hex::decode(start.as_str().unwrap()).unwrap();
                    let mut cursor = PowStamp(start.as_slice().try_into().unwrap());
                    let increments = uint(i, "stamp_search_increments");
                    let mut walked = cursor;
                    for _ in 0..increments {
                        walked.increment();
                    }
                    assert_eq!(walked, stamp, "{what}: start + increments = stamp");
                    let target = PowTarget::new(num(i, "expected_pow")).unwrap();
                    let found = search_batch(&pk, &target, &mut cursor, increments as usize + 1);
                    assert_eq!(found, Some(stamp), "{what}: search_batch from the start");
                }
                tally.checked("identity");
            }
            k => panic!("identities.json: {what}: unknown kind {k}"),
        }
    }
    tally.finish();
}

#[test]
fn peer_ids() {
    let entries = load("peer_ids.json");
    let mut tally = Tally::new("peer_ids.json", &entries);
    for e in &entries {
        let what = name(e);
        match kind(e) {
            "peer_id" => {
                let pk = PublicKey(arr(&e["inputs"], "public_key"));
                check_peer_id(&pk, &e["expected"], what);
                tally.checked("peer_id");
            }
            k => panic!("peer_ids.json: {what}: unknown kind {k}"),
        }
    }
    tally.finish();
}

#[test]
fn pow() {
    let entries = load("pow.json");
    let mut tally = Tally::new("pow.json", &entries);
    for e in &entries {
        let what = name(e);
        let (i, x) = (&e["inputs"], &e["expected"]);
        match kind(e) {
            "pow_check" => {
                let pk = PublicKey(arr(i, "public_key"));
                let stamp = PowStamp(arr(i, "proof_of_work_stamp"));
                let target = PowTarget::new(num(i, "target")).unwrap();
                let h = pow_hash(&pk, &stamp);
                assert_eq!(hex::encode(h), s(x, "pow_hash"), "{what}: pow_hash");
                let valid = flag(x, "valid");
                assert_eq!(target.check(&pk, &stamp), valid, "{what}: check");
                assert_eq!(target.accepts_hash(&h), valid, "{what}: accepts_hash");
                tally.checked("pow_check");
            }
            "pow_target" => {
                let level = num(i, "target");
                let target = PowTarget::new(level).unwrap();
                assert_eq!(
                    hex::encode(target.to_be_bytes()),
                    s(x, "target_be_hex"),
                    "{what}: make_pow_target({level})"
                );
                assert_eq!(target.level(), level, "{what}: level");
                tally.checked("pow_target");
            }
            k => panic!("pow.json: {what}: unknown kind {k}"),
        }
    }
    tally.finish();
}

#[test]
fn nonces() {
    let entries = load("nonces.json");
    let mut tally = Tally::new("nonces.json", &entries);
    for e in &entries {
        let what = name(e);
        let (i, x) = (&e["inputs"], &e["expected"]);
        match kind(e) {
            "nonce_derivation" => {
                let sent = bytes(i, "sent_msg");
                let recv = bytes(i, "recv_msg");
                let incoming = flag(i, "incoming");
                let n = derive_nonces(&sent, &recv, incoming);
                assert_eq!(n.local, nonce(x, "local_nonce"), "{what}: local");
                assert_eq!(n.remote, nonce(x, "remote_nonce"), "{what}: remote");
                // The labelled values: the responder sends under
                // "Init -> Resp", the initiator under "Resp -> Init".
                let (i2r, r2i) = if incoming {
                    (n.local, n.remote)
                } else {
                    (n.remote, n.local)
                };
                assert_eq!(i2r, nonce(x, "init_to_resp"), "{what}: init_to_resp");
                assert_eq!(r2i, nonce(x, "resp_to_init"), "{what}: resp_to_init");
                // The other side of the same connection sees them swapped.
                let peer = derive_nonces(&recv, &sent, !incoming);
                assert_eq!(
                    (peer.local, peer.remote),
                    (n.remote, n.local),
                    "{what}: peer view"
                );
                tally.checked("nonce_derivation");
            }
            "nonce_increment" => {
                let start = nonce(i, "nonce");
                let steps = i.get("steps").map_or(1, |v| v.as_u64().expect("steps"));
                let want = nonce(x, "nonce");
                assert_eq!(nonce_plus(start, steps), want, "{what}: add({steps})");
                let mut stepped = start;
                for _ in 0..steps {
                    stepped.increment();
                }
                assert_eq!(stepped, want, "{what}: {steps} x increment");
                let mut via_next = start;
                for _ in 0..steps {
                    via_next.fetch_increment();
                }
                assert_eq!(via_next, want, "{what}: {steps} x fetch_increment");
                tally.checked("nonce_increment");
            }
            k => panic!("nonces.json: {what}: unknown kind {k}"),
        }
    }
    tally.finish();
}

fn check_chunked_message(e: &Value) {
    let what = name(e);
    let (i, x) = (&e["inputs"], &e["expected"]);
    let key = key(i, "precomputed_key");
    let first = nonce(i, "first_nonce");
    let message = bytes(i, "message");
    let size = i
        .get("binary_chunks_size")
        .map_or(65535, |v| v.as_u64().unwrap()) as usize;
    let piece = check_binary_chunks_size(size).unwrap();
    assert!(piece <= MAX_CHUNK_PLAINTEXT);
    if size == 65535 {
        assert_eq!(piece, MAX_CHUNK_PLAINTEXT);
    }
    let pieces: Vec<&[u8]> = message.chunks(piece).collect();
    let want_lens: Vec<u64> = x["plaintext_pieces_len"]
        .as_array()
        .expect("plaintext_pieces_len")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let lens: Vec<u64> = pieces.iter().map(|p| p.len() as u64).collect();
    assert_eq!(lens, want_lens, "{what}: plaintext_pieces_len");
    let want_chunks: Vec<Vec<u8>> = x["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| hex::decode(c.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(want_chunks.len(), pieces.len(), "{what}: number of chunks");

    let mut tx = ChunkCipher::new(key.clone(), first);
    let mut rx = ChunkCipher::new(key.clone(), first);
    let mut wire = Vec::new();
    let mut reassembled = Vec::new();
    for (n, (p, want)) in pieces.iter().zip(&want_chunks).enumerate() {
        let mut out = Vec::new();
        tx.seal_chunk(p, &mut out).unwrap();
        assert_eq!(out.len(), p.len() + HEADER_LEN + TAG_LEN);
        assert!(
            out.len() <= size,
            "{what}: chunk {n} larger than binary_chunks_size"
        );
        assert_eq!(hex::encode(&out), hex::encode(want), "{what}: chunk {n}");
        reassembled.extend(open_framed(&mut rx, want, &format!("{what}: chunk {n}")));
        wire.extend(out);
    }
    assert_eq!(reassembled, message, "{what}: reassembly");
    assert_eq!(wire, want_chunks.concat());
    assert_eq!(tx.nonce(), nonce(x, "next_nonce"), "{what}: next_nonce");
    assert_eq!(
        rx.nonce(),
        nonce(x, "next_nonce"),
        "{what}: receiver next_nonce"
    );
    assert_eq!(
        nonce_plus(first, pieces.len() as u64),
        nonce(x, "next_nonce"),
        "{what}: first + chunks"
    );
}

#[test]
fn chunks() {
    let entries = load("chunks.json");
    let mut tally = Tally::new("chunks.json", &entries);
    for e in &entries {
        let what = name(e);
        let (i, x) = (&e["inputs"], &e["expected"]);
        match kind(e) {
            "precompute" => {
                let peer_pk = PublicKey(arr(i, "public_key"));
                let own_sk = SecretKey(arr(i, "secret_key"));
                let want = key(x, "precomputed_key");
                let k = SessionKey::precompute(&peer_pk, &own_sk).unwrap();
                assert_eq!(k, want, "{what}: precompute");
                // The other side's pair, when given, yields the same key.
                match (i.get("peer_public_key"), i.get("peer_secret_key")) {
                    (Some(_), Some(_)) => {
                        let other_pk = PublicKey(arr(i, "peer_public_key"));
                        let other_sk = SecretKey(arr(i, "peer_secret_key"));
                        assert_eq!(own_sk.public_key(), other_pk, "{what}: our public key");
                        assert_eq!(other_sk.public_key(), peer_pk, "{what}: peer key pair");
                        let k2 = SessionKey::precompute(&other_pk, &other_sk).unwrap();
                        assert_eq!(k2, want, "{what}: other side's precompute");
                    }
                    (None, None) => {}
                    _ => panic!("{what}: only half of the other side's pair"),
                }
                tally.checked("precompute");
            }
            "box" => {
                let k = key(i, "precomputed_key");
                let n = nonce(i, "nonce");
                let pt = bytes(i, "plaintext");
                let ct = bytes(x, "ciphertext");
                assert_eq!(ct.len(), pt.len() + TAG_LEN);
                assert_eq!(
                    hex::encode(k.seal(&n, &pt)),
                    hex::encode(&ct),
                    "{what}: seal"
                );
                assert_eq!(k.open(&n, &ct).unwrap(), pt, "{what}: open");
                let mut bad = ct.clone();
                bad[0] ^= 0x80;
                assert_eq!(
                    k.open(&n, &bad),
                    Err(CryptoError::Decipher),
                    "{what}: tamper"
                );
                tally.checked("box");
            }
            "chunk" => {
                let k = key(i, "precomputed_key");
                let base = nonce(i, "base_nonce");
                let index = uint(i, "nonce_index");
                let pt = bytes(i, "plaintext");
                let chunk = bytes(x, "chunk");
                let n = nonce_plus(base, index);
                assert_eq!(n, nonce(x, "nonce"), "{what}: base_nonce + nonce_index");
                // Encryption.
                assert_eq!(
                    hex::encode(seal_one(&k, n, &pt)),
                    hex::encode(&chunk),
                    "{what}: seal"
                );
                // Decryption, and the nonce moves on by one.
                let mut rx = ChunkCipher::new(k.clone(), n);
                assert_eq!(open_framed(&mut rx, &chunk, what), pt, "{what}: open");
                assert_eq!(rx.nonce(), nonce_plus(n, 1), "{what}: nonce after open");
                // Only the right nonce opens it.
                let mut wrong = ChunkCipher::new(k.clone(), nonce_plus(n, 1));
                let mut body = chunk[HEADER_LEN..].to_vec();
                assert_eq!(
                    wrong.open_chunk(&mut body).map(|_| ()),
                    Err(CryptoError::Decipher),
                    "{what}: opens under the next nonce"
                );
                assert_tamper_fails(&k, n, &chunk, what);
                tally.checked("chunk");
            }
            "chunked_message" => {
                check_chunked_message(e);
                tally.checked("chunked_message");
            }
            k => panic!("chunks.json: {what}: unknown kind {k}"),
        }
    }
    tally.finish();
}

#[test]
fn chunks_max_size() {
    let entries = load("chunks_max_size.json");
    let mut tally = Tally::new("chunks_max_size.json", &entries);
    for e in &entries {
        let what = name(e);
        match kind(e) {
            "chunked_message" => {
                check_chunked_message(e);
                let chunk0 = e["expected"]["chunks"][0].as_str().unwrap();
                assert!(chunk0.starts_with("fffd"), "{what}: first chunk is maximal");
                assert_eq!(chunk0.len(), 2 * 65535, "{what}: 65535 bytes on the wire");
                tally.checked("chunked_message");
            }
            k => panic!("chunks_max_size.json: {what}: unknown kind {k}"),
        }
    }
    tally.finish();
}

#[test]
fn sessions() {
    let entries = load("sessions.json");
    let mut tally = Tally::new("sessions.json", &entries);
    for e in &entries {
        let what = name(e);
        match kind(e) {
            "handshake_session" => {
                check_session(e);
                tally.checked("handshake_session");
            }
            k => panic!("sessions.json: {what}: unknown kind {k}"),
        }
    }
    tally.finish();
}

/// One direction of a session: the first nonce, the index of the next
/// chunk, and the running ciphers that seal and open it.
struct Direction {
    base: Nonce,
    next_index: u64,
    sealer: ChunkCipher,
    opener: ChunkCipher,
    count: usize,
}

impl Direction {
    fn new(key: &SessionKey, base: Nonce) -> Self {
        Direction {
            base,
            next_index: 0,
            sealer: ChunkCipher::new(key.clone(), base),
            opener: ChunkCipher::new(key.clone(), base),
            count: 0,
        }
    }

    /// Moves on to `index` when the capture skipped chunks.
    fn skip_to(&mut self, key: &SessionKey, index: u64) {
        assert!(
            index >= self.next_index,
            "nonce index {index} goes backwards"
        );
        if index != self.next_index {
            let n = nonce_plus(self.base, index);
            self.sealer = ChunkCipher::new(key.clone(), n);
            self.opener = ChunkCipher::new(key.clone(), n);
            self.next_index = index;
        }
    }
}

fn check_session(e: &Value) {
    let what = name(e);
    let (i, x) = (&e["inputs"], &e["expected"]);
    let sent_msg = bytes(i, "sent_msg");
    let recv_msg = bytes(i, "recv_msg");
    let incoming = flag(i, "incoming");
    let local_sk = SecretKey(arr(i, "local_secret_key"));
    let local_pk = PublicKey(arr(i, "local_public_key"));
    assert_eq!(local_sk.public_key(), local_pk, "{what}: local key pair");

    // Framed connection message: u16 len || u16 port || public_key[32] || ...
    for (m, label) in [(&sent_msg, "sent_msg"), (&recv_msg, "recv_msg")] {
        assert!(m.len() > 36, "{what}: {label} too short");
        assert_eq!(
            usize::from(u16::from_be_bytes([m[0], m[1]])),
            m.len() - 2,
            "{what}: {label} length prefix"
        );
    }
    assert_eq!(&sent_msg[4..36], &local_pk.0, "{what}: our key in sent_msg");
    let remote_pk = PublicKey(recv_msg[4..36].try_into().unwrap());

    let key = SessionKey::precompute(&remote_pk, &local_sk).unwrap();
    assert_eq!(
        key,
        self::key(x, "precomputed_key"),
        "{what}: precomputed_key"
    );
    let nonces = derive_nonces(&sent_msg, &recv_msg, incoming);
    assert_eq!(nonces.local, nonce(x, "local_nonce"), "{what}: local_nonce");
    assert_eq!(
        nonces.remote,
        nonce(x, "remote_nonce"),
        "{what}: remote_nonce"
    );

    let mut sent = Direction::new(&key, nonces.local);
    let mut received = Direction::new(&key, nonces.remote);
    let chunks = x["chunks"].as_array().expect("chunks");
    assert!(!chunks.is_empty(), "{what}: no chunks");
    for (n, c) in chunks.iter().enumerate() {
        let here = format!("{what}: chunk {n}");
        let dir = match s(c, "direction") {
            "sent" => &mut sent,
            "received" => &mut received,
            d => panic!("{here}: unknown direction {d}"),
        };
        // Captured received chunks may have gaps; an entry may then give
        // its index in its direction's nonce sequence.
        if let Some(index) = c.get("nonce_index") {
            dir.skip_to(&key, index.as_u64().expect("nonce_index"));
        }
        let chunk = bytes(c, "chunk");
        let pt = bytes(c, "plaintext");
        assert_eq!(
            nonce_plus(dir.base, dir.next_index),
            dir.opener.nonce(),
            "{here}: nonce bookkeeping"
        );
        assert_eq!(
            open_framed(&mut dir.opener, &chunk, &here),
            pt,
            "{here}: plaintext"
        );
        // Re-sealing gives the same bytes (for received chunks this is the
        // peer's sealing, reproduced from the shared key).
        let mut out = Vec::new();
        dir.sealer.seal_chunk(&pt, &mut out).unwrap();
        assert_eq!(hex::encode(&out), hex::encode(&chunk), "{here}: re-seal");
        dir.next_index += 1;
        dir.count += 1;
    }
    assert_eq!(sent.count + received.count, chunks.len());
    assert!(
        sent.count > 0 && received.count > 0,
        "{what}: both directions present"
    );
}
