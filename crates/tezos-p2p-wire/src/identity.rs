//! Identities (wire spec §2): X25519 keys, the peer id, the proof-of-work
//! stamp and target, stamp generation on every core, and `identity.json`.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::crypto::{PublicKey, SecretKey, KEY_LEN};

/// Length of a peer id.
pub const PEER_ID_LEN: usize = 16;
/// Length of a proof-of-work stamp.
pub const STAMP_LEN: usize = 24;
/// Base58Check prefix of peer ids (`id…`).
const PEER_ID_PREFIX: [u8; 2] = [0x99, 0x67];

/// A proof-of-work stamp.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PowStamp(pub [u8; STAMP_LEN]);

/// A peer id: Blake2b with a 16-byte digest of the public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; PEER_ID_LEN]);

impl PublicKey {
    /// The peer id of this key.
    pub fn peer_id(&self) -> PeerId {
        PeerId::of(self)
    }
}

impl PeerId {
    /// Blake2b with output length 16 of the public key (not a truncated
    /// Blake2b-256).
    pub fn of(pk: &PublicKey) -> Self {
        let h = blake2b_simd::Params::new()
            .hash_length(PEER_ID_LEN)
            .hash(&pk.0);
        let mut id = [0u8; PEER_ID_LEN];
        id.copy_from_slice(h.as_bytes());
        PeerId(id)
    }

    /// The Base58Check text form (`id…`, 30 characters).
    pub fn to_b58check(&self) -> String {
        let mut data = Vec::with_capacity(2 + PEER_ID_LEN);
        data.extend_from_slice(&PEER_ID_PREFIX);
        data.extend_from_slice(&self.0);
        bs58::encode(data).with_check().into_string()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_b58check())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// A peer id that is not valid Base58Check with the `id` prefix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid peer id {0:?}")]
pub struct InvalidPeerId(pub String);

impl FromStr for PeerId {
    type Err = InvalidPeerId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidPeerId(s.chars().take(64).collect());
        if s.len() > 64 {
            return Err(bad());
        }
        let data = bs58::decode(s)
            .with_check(None)
            .into_vec()
            .map_err(|_| bad())?;
        if data.len() != 2 + PEER_ID_LEN || data[..2] != PEER_ID_PREFIX {
            return Err(bad());
        }
        let mut id = [0u8; PEER_ID_LEN];
        id.copy_from_slice(&data[2..]);
        Ok(PeerId(id))
    }
}

impl Serialize for PeerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_b58check())
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl PowStamp {
    /// Adds one, as a big-endian 192-bit counter (wrapping), the order in
    /// which Octez searches for stamps.
    pub fn increment(&mut self) {
        for b in self.0.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
}

/// `Blake2b-256(public_key || stamp)`, the value the target applies to.
pub fn pow_hash(pk: &PublicKey, stamp: &PowStamp) -> [u8; 32] {
    let mut state = blake2b_simd::Params::new().hash_length(32).to_state();
    state.update(&pk.0);
    state.update(&stamp.0);
    let mut out = [0u8; 32];
    out.copy_from_slice(state.finalize().as_bytes());
    out
}

/// The level a hash reaches: the number of leading zero bits of the hash
/// read as a little-endian integer (`256 - bit_length`).
pub fn pow_level(hash: &[u8; 32]) -> u32 {
    let mut level = 0;
    for &b in hash.iter().rev() {
        if b == 0 {
            level += 8;
        } else {
            return level + b.leading_zeros();
        }
    }
    level
}

/// An expected proof-of-work level outside of `[0, 256]`.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("invalid proof-of-work level {0} (expected 0..=256)")]
pub struct InvalidPowLevel(pub f64);

/// A 256-bit proof-of-work target; a stamp passes when its hash, read as a
/// little-endian integer, is at most the target.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PowTarget {
    /// Limbs, least significant first.
    limbs: [u64; 4],
    level: u64,
}

impl fmt::Debug for PowTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PowTarget({})", hex::encode(self.to_be_bytes()))
    }
}

impl PowTarget {
    /// Octez's `make_pow_target`, fractional levels included.
    pub fn new(level: f64) -> Result<Self, InvalidPowLevel> {
        if !(0.0..=256.0).contains(&level) {
            return Err(InvalidPowLevel(level));
        }
        let shift = level.trunc();
        let frac = level - shift;
        let shift = shift as u32;
        let m: u64 = if frac == 0.0 {
            (1u64 << 54) - 1
        } else {
            // OCaml's `Int64.of_float (2. ** (54. -. frac))`: truncation.
            2f64.powf(54.0 - frac) as u64
        };
        let limbs = if shift < 202 {
            let s = 202 - shift;
            // ((m << s) | (2^s - 1)) = ((m + 1) << s) - 1 when m < 2^54.
            let mut t = shl256([m, 0, 0, 0], s);
            let ones = low_ones(s);
            for i in 0..4 {
                t[i] |= ones[i];
            }
            t
        } else {
            [m >> (shift - 202), 0, 0, 0]
        };
        Ok(PowTarget {
            limbs,
            level: level.to_bits(),
        })
    }

    /// The level this target was built from.
    pub fn level(&self) -> f64 {
        f64::from_bits(self.level)
    }

    /// The target as 32 big-endian bytes.
    pub fn to_be_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for i in 0..4 {
            out[(3 - i) * 8..(4 - i) * 8].copy_from_slice(&self.limbs[i].to_be_bytes());
        }
        out
    }

    /// Whether `hash` (a Blake2b-256 digest read little-endian) passes.
    pub fn accepts_hash(&self, hash: &[u8; 32]) -> bool {
        for i in (0..4).rev() {
            let mut limb = [0u8; 8];
            limb.copy_from_slice(&hash[i * 8..(i + 1) * 8]);
            let h = u64::from_le_bytes(limb);
            if h != self.limbs[i] {
                return h < self.limbs[i];
            }
        }
        true
    }

    /// Whether the stamp of `pk` passes this target.
    pub fn check(&self, pk: &PublicKey, stamp: &PowStamp) -> bool {
        self.accepts_hash(&pow_hash(pk, stamp))
    }
}

fn shl256(v: [u64; 4], s: u32) -> [u64; 4] {
    let mut out = [0u64; 4];
    let (words, bits) = ((s / 64) as usize, s % 64);
    for i in (0..4).rev() {
        if i < words {
            continue;
        }
        let src = i - words;
        let mut x = v[src] << bits;
        if bits > 0 && src > 0 {
            x |= v[src - 1] >> (64 - bits);
        }
        out[i] = x;
    }
    out
}

fn low_ones(s: u32) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (i, limb) in out.iter_mut().enumerate() {
        let lo = i as u32 * 64;
        *limb = if s >= lo + 64 {
            u64::MAX
        } else if s > lo {
            (1u64 << (s - lo)) - 1
        } else {
            0
        };
    }
    out
}

/// Progress of a stamp search, reported to the caller's callback.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Stamps tried so far, over every thread.
    pub attempts: u64,
    /// Time since the search started.
    pub elapsed: Duration,
    /// Average number of stamps per second since the start.
    pub rate: f64,
    /// The expected number of attempts for the target (`2^level`).
    pub expected_attempts: f64,
}

/// How to search for a stamp.
#[derive(Debug, Clone)]
pub struct PowSearch<'a> {
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
    /// Set to true to stop the search; [`generate_stamp`] then returns `None`.
    pub cancel: Option<&'a AtomicBool>,
    /// Minimal time between two progress reports.
    pub progress_every: Duration,
}

impl Default for PowSearch<'_> {
    fn default() -> Self {
        PowSearch {
            threads: 0,
            cancel: None,
            progress_every: Duration::from_millis(250),
        }
    }
}

/// Candidates hashed per batch by one thread before it looks at the shared
/// flags; large enough to amortise the checks, small enough to stop fast.
const BATCH: usize = 4096;

/// Searches for a stamp that `target` accepts for `pk`, on every core with
/// many-lane Blake2b. The wall clock is read only to report progress.
/// Returns `None` when cancelled.
pub fn generate_stamp(
    pk: &PublicKey,
    target: &PowTarget,
    search: &PowSearch<'_>,
    mut progress: impl FnMut(&Progress),
) -> Option<PowStamp> {
    let threads = if search.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        search.threads
    };
    let found = std::sync::Mutex::new(None::<PowStamp>);
    let done = AtomicBool::new(false);
    let attempts = AtomicU64::new(0);
    let start = Instant::now();
    let expected_attempts = 2f64.powf(target.level());
    let stop =
        || done.load(Ordering::Relaxed) || search.cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut stamp = PowStamp(rand::random());
                while !stop() {
                    if let Some(s) = search_batch(pk, target, &mut stamp, BATCH) {
                        let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
                        f.get_or_insert(s);
                        done.store(true, Ordering::Relaxed);
                    }
                    attempts.fetch_add(BATCH as u64, Ordering::Relaxed);
                }
            });
        }
        let mut last = start;
        while !stop() {
            std::thread::sleep(Duration::from_millis(10).min(search.progress_every));
            let now = Instant::now();
            if now.duration_since(last) >= search.progress_every {
                last = now;
                let elapsed = now.duration_since(start);
                let n = attempts.load(Ordering::Relaxed);
                progress(&Progress {
                    attempts: n,
                    elapsed,
                    rate: n as f64 / elapsed.as_secs_f64().max(1e-9),
                    expected_attempts,
                });
            }
        }
    });
    found.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Inputs hashed per `hash_many` call. `hash_many` runs them four at a time
/// (AVX2) or two at a time (SSE4.1); a longer list amortises its per-call
/// set-up and keeps the vector units busy.
const LANES: usize = 32;

/// Hashes `n` consecutive stamps from `stamp` with Blake2b's many-lane
/// interface; returns the first that passes (leaving `stamp` somewhere
/// after it), and leaves `stamp` exactly `n` past its start otherwise.
pub fn search_batch(
    pk: &PublicKey,
    target: &PowTarget,
    stamp: &mut PowStamp,
    n: usize,
) -> Option<PowStamp> {
    let mut params = blake2b_simd::Params::new();
    params.hash_length(32);
    let mut inputs = [[0u8; KEY_LEN + STAMP_LEN]; LANES];
    for input in inputs.iter_mut() {
        input[..KEY_LEN].copy_from_slice(&pk.0);
    }
    // The hash is read little-endian, so its last 8 bytes are the most
    // significant limb: almost every candidate is rejected on it alone.
    let top = target.limbs[3];
    let mut done = 0;
    while done < n {
        let k = LANES.min(n - done);
        for input in inputs[..k].iter_mut() {
            input[KEY_LEN..].copy_from_slice(&stamp.0);
            stamp.increment();
        }
        let mut jobs: [blake2b_simd::many::HashManyJob; LANES] =
            std::array::from_fn(|i| blake2b_simd::many::HashManyJob::new(&params, &inputs[i]));
        blake2b_simd::many::hash_many(jobs[..k].iter_mut());
        for (i, job) in jobs[..k].iter().enumerate() {
            let h = job.to_hash();
            let h: &[u8; 32] = h.as_bytes().try_into().expect("32-byte digest");
            let hi = u64::from_le_bytes(h[24..].try_into().expect("8 bytes"));
            if hi <= top && target.accepts_hash(h) {
                let mut s = [0u8; STAMP_LEN];
                s.copy_from_slice(&inputs[i][KEY_LEN..]);
                return Some(PowStamp(s));
            }
        }
        done += k;
    }
    None
}

/// A node's identity: its key pair, peer id and proof-of-work stamp.
///
/// Generated with a stamp for a proof-of-work target (Octez's default
/// level is 26, about 2^26 hashes; 0 for tests), and kept in Octez's
/// `identity.json`, which reads back with Octez's checks:
///
/// ```
/// use tezos_p2p_wire::identity::{Identity, IdentityError, PowSearch, PowTarget};
///
/// let target = PowTarget::new(4.0)?; // low: found at once
/// let search = PowSearch {
///     threads: 1,
///     ..PowSearch::default()
/// };
/// let identity = Identity::generate(&target, &search, |_progress| {}).expect("not cancelled");
/// assert!(identity.pow_level() >= 4);
/// assert!(identity.peer_id.to_string().starts_with("id"));
///
/// // identity.json: peer_id, public_key, secret_key, proof_of_work_stamp.
/// let json = identity.to_json();
/// let read = Identity::from_json(&json, Some(&target))?;
/// assert_eq!(read.peer_id, identity.peer_id);
///
/// // A node expecting more work refuses it.
/// let demanding = PowTarget::new(64.0)?;
/// assert!(matches!(
///     Identity::from_json(&json, Some(&demanding)),
///     Err(IdentityError::InsufficientPow { .. })
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Identity {
    /// The peer id, derived from the public key.
    pub peer_id: PeerId,
    /// The public key.
    pub public_key: PublicKey,
    /// The secret key.
    pub secret_key: SecretKey,
    /// A stamp for `public_key`.
    pub proof_of_work_stamp: PowStamp,
}

/// Why an identity could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The file is not valid JSON of the expected shape.
    #[error("malformed identity: {0}")]
    Malformed(String),
    /// `peer_id` is not the hash of `public_key` (Octez `Identity_mismatch`).
    #[error("identity mismatch: peer id {stored} does not match public key (expected {computed})")]
    PeerIdMismatch {
        /// The peer id stored in the file.
        stored: String,
        /// The hash of the stored public key.
        computed: PeerId,
    },
    /// `public_key` is not derived from `secret_key` (`Identity_keys_mismatch`).
    #[error("identity keys mismatch: public key does not match secret key")]
    KeysMismatch,
    /// The stamp does not reach the expected level (`Insufficient_proof_of_work`).
    #[error("insufficient proof of work: expected level {expected}")]
    InsufficientPow {
        /// The expected level.
        expected: f64,
    },
}

#[derive(Serialize, Deserialize)]
struct IdentityJson {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    peer_id: Option<String>,
    public_key: String,
    secret_key: String,
    proof_of_work_stamp: String,
}

fn hex_array<const N: usize>(field: &str, s: &str) -> Result<[u8; N], IdentityError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out)
        .map_err(|e| IdentityError::Malformed(format!("{field}: {e}")))?;
    Ok(out)
}

impl Identity {
    /// Builds an identity from its parts, deriving the public key and peer id.
    pub fn from_secret_key(secret_key: SecretKey, proof_of_work_stamp: PowStamp) -> Self {
        let public_key = secret_key.public_key();
        Identity {
            peer_id: public_key.peer_id(),
            public_key,
            secret_key,
            proof_of_work_stamp,
        }
    }

    /// A fresh key pair with a stamp for `target`; `None` when cancelled.
    pub fn generate(
        target: &PowTarget,
        search: &PowSearch<'_>,
        progress: impl FnMut(&Progress),
    ) -> Option<Self> {
        let secret_key = SecretKey::random();
        let pk = secret_key.public_key();
        let stamp = generate_stamp(&pk, target, search, progress)?;
        Some(Self::from_secret_key(secret_key, stamp))
    }

    /// The level this identity's stamp reaches.
    pub fn pow_level(&self) -> u32 {
        pow_level(&pow_hash(&self.public_key, &self.proof_of_work_stamp))
    }

    /// Reads `identity.json` (Octez's format) and runs Octez's three checks;
    /// the PoW is checked only when `expected` is given.
    pub fn from_json(json: &str, expected: Option<&PowTarget>) -> Result<Self, IdentityError> {
        let j: IdentityJson =
            serde_json::from_str(json).map_err(|e| IdentityError::Malformed(e.to_string()))?;
        let public_key = PublicKey(hex_array("public_key", &j.public_key)?);
        let secret_key = SecretKey(hex_array("secret_key", &j.secret_key)?);
        let stamp = PowStamp(hex_array("proof_of_work_stamp", &j.proof_of_work_stamp)?);
        let computed = public_key.peer_id();
        if let Some(stored) = j.peer_id {
            if stored.parse::<PeerId>().ok() != Some(computed) {
                return Err(IdentityError::PeerIdMismatch { stored, computed });
            }
        }
        if secret_key.public_key() != public_key {
            return Err(IdentityError::KeysMismatch);
        }
        if let Some(t) = expected {
            if !t.check(&public_key, &stamp) {
                return Err(IdentityError::InsufficientPow {
                    expected: t.level(),
                });
            }
        }
        Ok(Identity {
            peer_id: computed,
            public_key,
            secret_key,
            proof_of_work_stamp: stamp,
        })
    }

    /// `identity.json` in Octez's format and field order.
    pub fn to_json(&self) -> String {
        let j = IdentityJson {
            peer_id: Some(self.peer_id.to_b58check()),
            public_key: hex::encode(self.public_key.0),
            secret_key: hex::encode(self.secret_key.0),
            proof_of_work_stamp: hex::encode(self.proof_of_work_stamp.0),
        };
        serde_json::to_string_pretty(&j).expect("plain strings serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a() -> Identity {
        let sk: [u8; 32] = std::array::from_fn(|i| i as u8);
        let mut stamp = [0u8; 24];
        stamp[20..].copy_from_slice(&[0x05, 0xaa, 0x68, 0xd3]);
        Identity::from_secret_key(SecretKey(sk), PowStamp(stamp))
    }

    #[test]
    fn spec_identity_a() {
        let id = a();
        assert_eq!(
            hex::encode(id.public_key.0),
            "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f"
        );
        assert_eq!(
            hex::encode(id.peer_id.0),
            "357fd15fe2b6a349c87d4ace8f30f3f2"
        );
        assert_eq!(id.peer_id.to_string(), "idrAta9tLVKFCVMECJb62aQXbEBYBo");
        assert!(PowTarget::new(27.0)
            .unwrap()
            .check(&id.public_key, &id.proof_of_work_stamp));
        assert_eq!(id.pow_level(), 27);
    }

    #[test]
    fn peer_id_text_round_trips_and_rejects_garbage() {
        let id = a().peer_id;
        assert_eq!(id.to_string().parse::<PeerId>().unwrap(), id);
        assert!("idrAta9tLVKFCVMECJb62aQXbEBYBp".parse::<PeerId>().is_err());
        assert!("".parse::<PeerId>().is_err());
        assert!("NetXdQprcVkpaWU".parse::<PeerId>().is_err());
    }

    #[test]
    fn targets_of_the_spec() {
        let hexof = |f: f64| hex::encode(PowTarget::new(f).unwrap().to_be_bytes());
        assert_eq!(hexof(0.0), "f".repeat(64));
        assert_eq!(hexof(26.0), format!("{}3{}", "0".repeat(6), "f".repeat(57)));
        assert_eq!(
            hexof(26.5),
            format!("{}2d413cccfe779a{}", "0".repeat(6), "f".repeat(44))
        );
        assert_eq!(hexof(202.0), format!("{}3fffffffffffff", "0".repeat(50)));
        assert_eq!(hexof(255.5), format!("{}1", "0".repeat(63)));
        assert_eq!(hexof(256.0), "0".repeat(64));
        assert!(PowTarget::new(-0.5).is_err());
        assert!(PowTarget::new(256.5).is_err());
        assert!(PowTarget::new(f64::NAN).is_err());
    }

    #[test]
    fn identity_json_round_trips_and_checks() {
        let id = a();
        let json = id.to_json();
        let back = Identity::from_json(&json, Some(&PowTarget::new(26.0).unwrap())).unwrap();
        assert_eq!(back.peer_id, id.peer_id);
        assert!(matches!(
            Identity::from_json(&json, Some(&PowTarget::new(28.0).unwrap())),
            Err(IdentityError::InsufficientPow { .. })
        ));
        let other = SecretKey([7; 32]).public_key();
        let bad_id = json.replace(&id.peer_id.to_string(), &other.peer_id().to_string());
        assert!(matches!(
            Identity::from_json(&bad_id, None),
            Err(IdentityError::PeerIdMismatch { .. })
        ));
        let bad_sk = json.replace(&hex::encode(id.secret_key.0), &hex::encode([7u8; 32]));
        assert!(matches!(
            Identity::from_json(&bad_sk, None),
            Err(IdentityError::KeysMismatch)
        ));
        assert!(matches!(
            Identity::from_json("{", None),
            Err(IdentityError::Malformed(_))
        ));
    }

    #[test]
    fn search_batch_finds_the_first_valid_stamp_and_counts_exactly() {
        let pk = a().public_key;
        let t = PowTarget::new(6.0).unwrap();
        let start = PowStamp([0xff; STAMP_LEN]);
        // Linear scan with the one-lane hash, across the wrap-around.
        let mut s = start;
        let mut steps = 0;
        while !t.check(&pk, &s) {
            s.increment();
            steps += 1;
        }
        for n in [steps + 1, steps + 40, 1000] {
            let mut cursor = start;
            assert_eq!(search_batch(&pk, &t, &mut cursor, n), Some(s));
        }
        let mut cursor = start;
        assert_eq!(search_batch(&pk, &t, &mut cursor, steps), None);
        let mut walked = start;
        for _ in 0..steps {
            walked.increment();
        }
        assert_eq!(cursor, walked);
        let mut cursor = start;
        let never = PowTarget::new(256.0).unwrap();
        assert_eq!(search_batch(&pk, &never, &mut cursor, 37), None);
        let mut walked = start;
        for _ in 0..37 {
            walked.increment();
        }
        assert_eq!(cursor, walked);
    }

    #[test]
    fn generation_finds_a_valid_stamp_and_can_be_cancelled() {
        let t = PowTarget::new(8.0).unwrap();
        let id = Identity::generate(&t, &PowSearch::default(), |_| {}).unwrap();
        assert!(t.check(&id.public_key, &id.proof_of_work_stamp));
        let cancel = AtomicBool::new(true);
        let search = PowSearch {
            cancel: Some(&cancel),
            ..PowSearch::default()
        };
        assert!(generate_stamp(
            &id.public_key,
            &PowTarget::new(256.0).unwrap(),
            &search,
            |_| {}
        )
        .is_none());
    }
}
