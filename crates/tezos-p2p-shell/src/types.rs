//! The building blocks of the shell messages (spec §2): block header,
//! block locator, operation, mempool, protocol, and an operation list with
//! its Merkle path.
//!
//! Each has an infallible, unbounded `write` (Octez's plain encoding, what
//! hashes are computed over) and, where a message bounds it, an `encode`
//! that first checks the bound (Octez's writer raises
//! `Size_limit_exceeded`), so nothing is written on error.

use serde::{Deserialize, Deserializer, Serialize};
use tezos_p2p_wire::encoding::{DecodeError, EncodeError, WriteExt};

use crate::cursor::{self, Cur, Res};
use crate::hash::{blake2b_256, blake2b_256_pair};
use crate::json;
use crate::merkle::{self, MerklePath};
use crate::{
    BlockHash, ContextHash, Fitness, OperationHash, OperationListHash, OperationListListHash,
    ProtocolHash,
};

/// `block_header_max_size`: 8 MiB around every header of a message.
pub const MAX_BLOCK_HEADER_SIZE: usize = 8 * 1024 * 1024;
/// `block_locator_max_length`: history hashes in a locator.
pub const MAX_LOCATOR_HISTORY: usize = 1000;
/// `operation_max_size`: 128 KiB per operation (branch included).
pub const MAX_OPERATION_SIZE: usize = 128 * 1024;
/// `operation_list_max_size`: 1 MiB for the operations of one
/// `Operations_for_blocks`, their `u32` sizes included.
pub const MAX_OPERATION_LIST_SIZE: usize = 1024 * 1024;
/// `protocol_max_size`: 2 MiB per protocol.
pub const MAX_PROTOCOL_SIZE: usize = 2 * 1024 * 1024;
/// `mempool_max_operations`.
pub const MEMPOOL_MAX_OPERATIONS: usize = 4000;
/// The mempool's `check_size`, `8 + 32 · 4000` = 128 008 bytes; its 12
/// bytes of sizes leave room for at most 3 999 hashes.
pub const MAX_MEMPOOL_SIZE: usize = 8 + 32 * MEMPOOL_MAX_OPERATIONS;
/// Elements of a request list (`list ~max_length:10`).
pub const MAX_REQUEST_LENGTH: usize = 10;
/// Largest protocol environment version Octez knows (V0..V17).
pub const MAX_ENV_VERSION: u16 = 17;

/// Bytes of the shell part of a header before the fitness.
const SHELL_FIXED: usize = 4 + 1 + 32 + 8 + 1 + 32 + 32;

fn size_limit(size: usize, limit: usize) -> Result<(), EncodeError> {
    if size > limit {
        return Err(EncodeError::SizeLimitExceeded { size, limit });
    }
    Ok(())
}

fn length_limit(len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        return Err(EncodeError::ListTooLong { len, max });
    }
    Ok(())
}

/// Reads 32-byte hashes to the end of the context, at most `max` of them
/// (Octez's `Variable.list ?max_length`); the vector is sized from the
/// bytes present.
pub(crate) fn hash_list<H: From<[u8; 32]>>(c: &mut Cur<'_>, max: usize) -> Res<Vec<H>> {
    let mut v = Vec::with_capacity((c.present().len() / 32).min(max));
    while !c.at_end() {
        if v.len() == max {
            return Err(DecodeError::ListTooLong { max }.into());
        }
        v.push(H::from(c.fixed::<32>()?));
    }
    Ok(v)
}

/// Appends `u32 (32 · n) ‖ hashes`.
pub(crate) fn write_hash_list<H: AsRef<[u8]>>(hashes: &[H], out: &mut Vec<u8>) {
    out.put_u32((hashes.len() * 32) as u32);
    for h in hashes {
        out.extend_from_slice(h.as_ref());
    }
}

// ---------------------------------------------------------------------------
// Block header

/// A block header (`Block_header.t`, spec §2.2): the shell header and the
/// protocol's bytes.
///
/// Its JSON is Octez's: `level`, `proto`, `predecessor`, `timestamp` (RFC
/// 3339, see [`BlockHeader::timestamp_rfc3339`]), `validation_pass`, `operations_hash`,
/// `fitness`, `context`, `protocol_data` (hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Height of the block (`int32`).
    pub level: i32,
    /// Protocol level (`proto`, `uint8`).
    pub proto: u8,
    /// Hash of the previous block.
    pub predecessor: BlockHash,
    /// Seconds since the Unix epoch.
    #[serde(with = "json::timestamp")]
    pub timestamp: i64,
    /// Number of validation passes.
    pub validation_pass: u8,
    /// Merkle root of the operations of all passes.
    pub operations_hash: OperationListListHash,
    /// Score of the chain ending with this block.
    pub fitness: Fitness,
    /// Hash of the context after the block.
    pub context: ContextHash,
    /// Protocol-specific bytes, to the end of the header.
    #[serde(with = "json::hex_bytes")]
    pub protocol_data: Vec<u8>,
}

impl BlockHeader {
    /// Bytes of the encoding.
    pub fn encoded_len(&self) -> usize {
        SHELL_FIXED + self.fitness.encoded_len() + self.protocol_data.len()
    }

    /// Appends the encoding, unbounded (Octez's `Block_header.encoding`).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.put_i32(self.level);
        out.put_u8(self.proto);
        out.extend_from_slice(self.predecessor.as_bytes());
        out.put_i64(self.timestamp);
        out.put_u8(self.validation_pass);
        out.extend_from_slice(self.operations_hash.as_bytes());
        out.put_u32((self.fitness.encoded_len() - 4) as u32);
        for e in &self.fitness.0 {
            out.put_u32(e.len() as u32);
            out.extend_from_slice(e);
        }
        out.extend_from_slice(self.context.as_bytes());
        out.extend_from_slice(&self.protocol_data);
    }

    /// `Size_limit_exceeded` over 8 MiB.
    pub(crate) fn check_bound(&self) -> Result<(), EncodeError> {
        size_limit(self.encoded_len(), MAX_BLOCK_HEADER_SIZE)
    }

    /// Appends the encoding as messages carry it: refused
    /// ([`EncodeError::SizeLimitExceeded`]) over 8 MiB, `out` untouched.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.check_bound()?;
        self.write(out);
        Ok(())
    }

    /// The encoding (Octez's `Block_header.to_bytes`, which does not apply
    /// the 8 MiB bound: see [`encode`](Self::encode) for that).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// Decodes a header spanning all of `bytes`, with the message bound
    /// (8 MiB) and Octez's error classes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        cursor::whole(bytes, Self::decode_bounded)
    }

    /// The block hash: BLAKE2b-256 of the encoding.
    pub fn hash(&self) -> BlockHash {
        BlockHash::from_bytes(blake2b_256(&self.to_bytes()))
    }

    /// The timestamp as Octez writes it in JSON (`Time.Protocol`):
    /// `YYYY-MM-DDTHH:MM:SSZ` between years 0 and 9999 (Ptime's range),
    /// the decimal number of seconds otherwise.
    pub fn timestamp_rfc3339(&self) -> String {
        crate::time::rfc3339(self.timestamp)
    }

    /// Octez's JSON of the shell header alone (`block_header.shell`): the
    /// fields of [`BlockHeader`]'s JSON without `protocol_data`.
    pub fn shell_json(&self) -> serde_json::Value {
        serde_json::json!({
            "level": self.level,
            "proto": self.proto,
            "predecessor": self.predecessor,
            "timestamp": self.timestamp_rfc3339(),
            "validation_pass": self.validation_pass,
            "operations_hash": self.operations_hash,
            "fitness": self.fitness,
            "context": self.context,
        })
    }

    /// The header under its `check_size 8 MiB`, which always spans its
    /// context in the shell messages.
    pub(crate) fn decode_bounded(c: &mut Cur<'_>) -> Res<Self> {
        c.check_size(MAX_BLOCK_HEADER_SIZE, true, Self::decode)
    }

    /// The header in Octez's reading order: the first 45 and then 33 bytes
    /// are fixed-size groups, checked before they are read.
    fn decode(c: &mut Cur<'_>) -> Res<Self> {
        c.need(45)?;
        let level = c.i32()?;
        let proto = c.u8()?;
        let predecessor = BlockHash::from_bytes(c.fixed()?);
        let timestamp = c.i64()?;
        c.need(33)?;
        let validation_pass = c.u8()?;
        let operations_hash = OperationListListHash::from_bytes(c.fixed()?);
        let fitness = c.dynamic(|c| {
            let mut elems = Vec::new();
            while !c.at_end() {
                elems.push(c.dynamic(|c| c.rest().map(<[u8]>::to_vec))?);
            }
            Ok(Fitness(elems))
        })?;
        let context = ContextHash::from_bytes(c.fixed()?);
        let protocol_data = c.rest()?.to_vec();
        Ok(BlockHeader {
            level,
            proto,
            predecessor,
            timestamp,
            validation_pass,
            operations_hash,
            fitness,
            context,
            protocol_data,
        })
    }
}

// ---------------------------------------------------------------------------
// Block locator

/// A block locator (spec §2.3): the sender's current head and block hashes
/// going back from it (at most 1 000).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockLocator {
    /// The head; its hash is not sent.
    pub current_head: BlockHeader,
    /// Older block hashes, newest first.
    pub history: Vec<BlockHash>,
}

impl BlockLocator {
    /// The hash of [`current_head`](Self::current_head).
    pub fn head_hash(&self) -> BlockHash {
        self.current_head.hash()
    }

    /// Bytes of the encoding.
    pub fn encoded_len(&self) -> usize {
        4 + self.current_head.encoded_len() + 32 * self.history.len()
    }

    pub(crate) fn check_bound(&self) -> Result<(), EncodeError> {
        self.current_head.check_bound()?;
        length_limit(self.history.len(), MAX_LOCATOR_HISTORY)
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.put_u32(self.current_head.encoded_len() as u32);
        self.current_head.write(out);
        for h in &self.history {
            out.extend_from_slice(h.as_bytes());
        }
    }

    /// The locator, spanning the rest of its context.
    pub(crate) fn decode(c: &mut Cur<'_>) -> Res<Self> {
        let current_head = c.dynamic(BlockHeader::decode_bounded)?;
        let history = c.check_size(32 * MAX_LOCATOR_HISTORY, true, |c| {
            hash_list(c, MAX_LOCATOR_HISTORY)
        })?;
        Ok(BlockLocator {
            current_head,
            history,
        })
    }
}

// ---------------------------------------------------------------------------
// Operation

/// An operation (spec §2.4): the block it is meant for and the protocol's
/// bytes. JSON: `{"branch": "B…", "data": hex}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Operation {
    /// The block the operation applies on top of.
    pub branch: BlockHash,
    /// Protocol-specific bytes (Octez names the field `data` in JSON).
    #[serde(with = "json::hex_bytes")]
    pub data: Vec<u8>,
}

impl Operation {
    /// Bytes of the encoding (`32 + data`).
    pub fn encoded_len(&self) -> usize {
        32 + self.data.len()
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.branch.as_bytes());
        out.extend_from_slice(&self.data);
    }

    pub(crate) fn check_bound(&self) -> Result<(), EncodeError> {
        size_limit(self.encoded_len(), MAX_OPERATION_SIZE)
    }

    /// The encoding, branch then data (no bound applied).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write(&mut out);
        out
    }

    /// The operation hash: BLAKE2b-256 of branch ‖ data.
    pub fn hash(&self) -> OperationHash {
        OperationHash::from_bytes(blake2b_256_pair(self.branch.as_bytes(), &self.data))
    }

    /// The operation under its `check_size 128 KiB`, spanning its context.
    pub(crate) fn decode_bounded(c: &mut Cur<'_>) -> Res<Self> {
        c.check_size(MAX_OPERATION_SIZE, true, |c| {
            let branch = BlockHash::from_bytes(c.fixed()?);
            let data = c.rest()?.to_vec();
            Ok(Operation { branch, data })
        })
    }
}

// ---------------------------------------------------------------------------
// Mempool

/// A mempool (spec §2.5): operation hashes known valid and pending.
///
/// Octez treats both as sets (it writes them sorted and without
/// duplicates, and folds what it reads into sets); here they keep the order
/// they came in, so that a message re-encodes to its own bytes.
/// [`sorted_unique`](Self::sorted_unique) tells whether Octez would write
/// the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Mempool {
    /// Operations the sender validated.
    pub known_valid: Vec<OperationHash>,
    /// Operations the sender has not classified yet.
    pub pending: Vec<OperationHash>,
}

impl Mempool {
    /// The empty mempool (`000000000000000400000000`).
    pub const EMPTY: Mempool = Mempool {
        known_valid: Vec::new(),
        pending: Vec::new(),
    };

    /// Whether both lists are empty.
    pub fn is_empty(&self) -> bool {
        self.known_valid.is_empty() && self.pending.is_empty()
    }

    /// Whether both lists are in strictly ascending byte order, as Octez
    /// writes its sets.
    pub fn sorted_unique(&self) -> bool {
        let strictly = |v: &[OperationHash]| v.windows(2).all(|w| w[0] < w[1]);
        strictly(&self.known_valid) && strictly(&self.pending)
    }

    /// Bytes of the encoding: 12 bytes of sizes and 32 per hash.
    pub fn encoded_len(&self) -> usize {
        12 + 32 * (self.known_valid.len() + self.pending.len())
    }

    pub(crate) fn check_bound(&self) -> Result<(), EncodeError> {
        size_limit(self.encoded_len(), MAX_MEMPOOL_SIZE)
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        write_hash_list(&self.known_valid, out);
        out.put_u32((4 + 32 * self.pending.len()) as u32);
        write_hash_list(&self.pending, out);
    }

    /// The mempool under its `check_size`, spanning the rest of the
    /// message.
    pub(crate) fn decode(c: &mut Cur<'_>) -> Res<Self> {
        c.check_size(MAX_MEMPOOL_SIZE, true, |c| {
            let known_valid = c.dynamic(|c| hash_list(c, usize::MAX))?;
            let pending = c.dynamic(|c| c.dynamic(|c| hash_list(c, usize::MAX)))?;
            Ok(Mempool {
                known_valid,
                pending,
            })
        })
    }
}

// ---------------------------------------------------------------------------
// Protocol

/// One module of a protocol's sources. The texts are kept as bytes (the
/// encoding does not require UTF-8); in JSON each is a string when it is
/// UTF-8 and `{"hex": …}` otherwise, and an absent interface is omitted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Component {
    /// Module name.
    #[serde(with = "json::text")]
    pub name: Vec<u8>,
    /// The `.mli`, if any.
    #[serde(
        with = "json::text::opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface: Option<Vec<u8>>,
    /// The `.ml`.
    #[serde(with = "json::text")]
    pub implementation: Vec<u8>,
}

impl Component {
    /// Bytes of the encoding.
    pub fn encoded_len(&self) -> usize {
        4 + self.name.len()
            + 1
            + self.interface.as_ref().map_or(0, |i| 4 + i.len())
            + 4
            + self.implementation.len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        let put = |out: &mut Vec<u8>, b: &[u8]| {
            out.put_u32(b.len() as u32);
            out.extend_from_slice(b);
        };
        put(out, &self.name);
        match &self.interface {
            Some(i) => {
                out.put_bool(true);
                put(out, i);
            }
            None => out.put_bool(false),
        }
        put(out, &self.implementation);
    }

    fn decode(c: &mut Cur<'_>) -> Res<Self> {
        let text = |c: &mut Cur<'_>| c.dynamic(|c| c.rest().map(<[u8]>::to_vec));
        let name = text(c)?;
        let interface = if c.u8()? != 0 { Some(text(c)?) } else { None };
        let implementation = text(c)?;
        Ok(Component {
            name,
            interface,
            implementation,
        })
    }
}

fn env_version<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = u16::deserialize(d)?;
    if v > MAX_ENV_VERSION {
        return Err(serde::de::Error::custom(format!(
            "unexpected environment version {v} (at most {MAX_ENV_VERSION})"
        )));
    }
    Ok(v)
}

/// Why an environment version above [`MAX_ENV_VERSION`] is refused.
pub(crate) const UNKNOWN_ENV_VERSION: &str =
    "unknown protocol environment version (expected 0..=17)";

/// A protocol's sources (spec §2.6).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Protocol {
    /// The environment version, `0..=17` (others fail to decode with
    /// `Exception_raised_in_user_function`, and to encode with
    /// [`EncodeError::InvalidValue`]).
    #[serde(deserialize_with = "env_version")]
    pub expected_env_version: u16,
    /// The modules.
    pub components: Vec<Component>,
}

impl Protocol {
    /// Bytes of the encoding.
    pub fn encoded_len(&self) -> usize {
        2 + 4
            + self
                .components
                .iter()
                .map(Component::encoded_len)
                .sum::<usize>()
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.put_u16(self.expected_env_version);
        out.put_u32((self.encoded_len() - 6) as u32);
        for c in &self.components {
            c.write(out);
        }
    }

    /// Refuses an unknown environment version
    /// ([`EncodeError::InvalidValue`])
    /// and a protocol over 2 MiB.
    pub(crate) fn check_bound(&self) -> Result<(), EncodeError> {
        if self.expected_env_version > MAX_ENV_VERSION {
            return Err(EncodeError::InvalidValue(UNKNOWN_ENV_VERSION));
        }
        size_limit(self.encoded_len(), MAX_PROTOCOL_SIZE)
    }

    /// The encoding (no bound applied).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// The protocol hash: BLAKE2b-256 of the encoding.
    pub fn hash(&self) -> ProtocolHash {
        ProtocolHash::from_bytes(blake2b_256(&self.to_bytes()))
    }

    /// The protocol under its `check_size 2 MiB`, spanning the message.
    pub(crate) fn decode_bounded(c: &mut Cur<'_>) -> Res<Self> {
        c.check_size(MAX_PROTOCOL_SIZE, true, |c| {
            let expected_env_version = c.u16()?;
            if expected_env_version > MAX_ENV_VERSION {
                return Err(DecodeError::InvalidValue(UNKNOWN_ENV_VERSION).into());
            }
            let components = c.dynamic(|c| {
                let mut v = Vec::new();
                while !c.at_end() {
                    v.push(Component::decode(c)?);
                }
                Ok(v)
            })?;
            Ok(Protocol {
                expected_env_version,
                components,
            })
        })
    }
}

// ---------------------------------------------------------------------------
// Operations_for_blocks

/// The body of `Operations_for_blocks` (Octez constructor
/// `Operations_for_block`, spec §3.13): the operations of one validation
/// pass of a block, with the Merkle path that ties their list hash to the
/// block's `operations_hash`.
///
/// JSON (the message's fields): `{"operations_for_block": {"hash",
/// "validation_pass"}, "operation_hashes_path": [...], "operations":
/// [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OperationsForBlock {
    /// The block.
    pub block: BlockHash,
    /// The validation pass (`int8`).
    pub validation_pass: i8,
    /// The path from the pass's list hash to the block's
    /// `operations_hash`.
    pub path: MerklePath,
    /// The operations of the pass, in order.
    pub operations: Vec<Operation>,
}

impl OperationsForBlock {
    /// `Operation_list_hash.compute` of the operations' hashes.
    pub fn operation_list_hash(&self) -> OperationListHash {
        let hashes: Vec<OperationHash> = self.operations.iter().map(Operation::hash).collect();
        merkle::operation_list_hash(&hashes)
    }

    /// Octez's `check_path` of [`operation_list_hash`](Self::operation_list_hash):
    /// the root (to compare with the block's `operations_hash`) and the
    /// position (to compare with the validation pass).
    pub fn path_root_and_position(&self) -> (OperationListListHash, usize) {
        self.path.check(&self.operation_list_hash())
    }

    /// Bytes of the operation list, sizes included.
    fn ops_len(&self) -> usize {
        self.operations.iter().map(|o| 4 + o.encoded_len()).sum()
    }

    /// Bytes of the encoding.
    pub fn encoded_len(&self) -> usize {
        33 + self.path.encoded_len() + self.ops_len()
    }

    pub(crate) fn check_bound(&self) -> Result<(), EncodeError> {
        self.path.check_bound()?;
        for o in &self.operations {
            o.check_bound()?;
        }
        size_limit(self.ops_len(), MAX_OPERATION_LIST_SIZE)
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.block.as_bytes());
        out.push(self.validation_pass as u8);
        self.path.write(out);
        for o in &self.operations {
            out.put_u32(o.encoded_len() as u32);
            o.write(out);
        }
    }

    /// The whole message body.
    pub(crate) fn decode(c: &mut Cur<'_>) -> Res<Self> {
        c.need(33)?;
        let block = BlockHash::from_bytes(c.fixed()?);
        let validation_pass = c.i8()?;
        let path = MerklePath::decode(c)?;
        let operations = c.check_size(MAX_OPERATION_LIST_SIZE, true, |c| {
            let mut ops = Vec::with_capacity(count_ops(c.present()));
            while !c.at_end() {
                ops.push(c.dynamic(Operation::decode_bounded)?);
            }
            Ok(ops)
        })?;
        Ok(OperationsForBlock {
            block,
            validation_pass,
            path,
            operations,
        })
    }
}

/// How many well-formed `u32 k ‖ operation(k)` entries `b` starts with
/// (each at least 36 bytes), to size the vector once.
fn count_ops(b: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = b;
    while let Some((size, tail)) = rest.split_first_chunk::<4>() {
        let k = u32::from_be_bytes(*size) as usize;
        if k < 32 || k > tail.len() {
            break;
        }
        rest = &tail[k..];
        n += 1;
    }
    n
}

impl Serialize for OperationsForBlock {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Key<'a> {
            hash: &'a BlockHash,
            validation_pass: i8,
        }
        #[derive(Serialize)]
        struct Repr<'a> {
            operations_for_block: Key<'a>,
            operation_hashes_path: &'a MerklePath,
            operations: &'a [Operation],
        }
        Repr {
            operations_for_block: Key {
                hash: &self.block,
                validation_pass: self.validation_pass,
            },
            operation_hashes_path: &self.path,
            operations: &self.operations,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for OperationsForBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Key {
            hash: BlockHash,
            validation_pass: i8,
        }
        #[derive(Deserialize)]
        struct Repr {
            operations_for_block: Key,
            operation_hashes_path: MerklePath,
            operations: Vec<Operation>,
        }
        let r = Repr::deserialize(d)?;
        Ok(OperationsForBlock {
            block: r.operations_for_block.hash,
            validation_pass: r.operations_for_block.validation_pass,
            path: r.operation_hashes_path,
            operations: r.operations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(protocol_data: Vec<u8>) -> BlockHeader {
        BlockHeader {
            level: 1,
            proto: 1,
            predecessor: BlockHash::from_bytes([1; 32]),
            timestamp: 1_596_822_004,
            validation_pass: 4,
            operations_hash: OperationListListHash::from_bytes([2; 32]),
            fitness: Fitness(vec![vec![1], vec![0; 8]]),
            context: ContextHash::from_bytes([3; 32]),
            protocol_data,
        }
    }

    #[test]
    fn header_round_trips_and_bounds() {
        let h = header(vec![9; 10]);
        let b = h.to_bytes();
        assert_eq!(b.len(), h.encoded_len());
        assert_eq!(BlockHeader::from_bytes(&b).unwrap(), h);
        let j = serde_json::to_value(&h).unwrap();
        assert_eq!(j["timestamp"], "2020-08-07T17:40:04Z");
        assert_eq!(j["fitness"], serde_json::json!(["01", "0000000000000000"]));
        assert_eq!(serde_json::from_value::<BlockHeader>(j).unwrap(), h);
        let shell = h.shell_json();
        assert!(shell.get("protocol_data").is_none());
        assert_eq!(shell["level"], 1);

        let max = header(vec![
            0;
            MAX_BLOCK_HEADER_SIZE - header(vec![]).encoded_len()
        ]);
        let mut out = vec![7];
        max.encode(&mut out).unwrap();
        assert_eq!(out.len(), 1 + MAX_BLOCK_HEADER_SIZE);
        let over = header(vec![
            0;
            MAX_BLOCK_HEADER_SIZE + 1 - header(vec![]).encoded_len()
        ]);
        let mut out = vec![7];
        assert_eq!(
            over.encode(&mut out),
            Err(EncodeError::SizeLimitExceeded {
                size: MAX_BLOCK_HEADER_SIZE + 1,
                limit: MAX_BLOCK_HEADER_SIZE
            })
        );
        assert_eq!(out, [7]);
        assert!(matches!(
            BlockHeader::from_bytes(&over.to_bytes()),
            Err(DecodeError::SizeLimitExceeded { .. })
        ));
    }

    #[test]
    fn timestamps_in_json_accept_three_forms() {
        let h = header(vec![]);
        let mut j = serde_json::to_value(&h).unwrap();
        for t in [
            serde_json::json!(1_596_822_004),
            serde_json::json!("1596822004"),
            serde_json::json!("2020-08-07T17:40:04Z"),
        ] {
            j["timestamp"] = t;
            assert_eq!(serde_json::from_value::<BlockHeader>(j.clone()).unwrap(), h);
        }
        let mut far = h.clone();
        far.timestamp = i64::MAX;
        let j = serde_json::to_value(&far).unwrap();
        assert_eq!(j["timestamp"], "9223372036854775807");
        assert_eq!(serde_json::from_value::<BlockHeader>(j).unwrap(), far);
    }

    #[test]
    fn mempool_bounds_and_order() {
        let h = |i: u8| OperationHash::from_bytes([i; 32]);
        let m = Mempool {
            known_valid: vec![h(1), h(2)],
            pending: vec![h(3)],
        };
        assert!(m.sorted_unique());
        assert!(!Mempool {
            known_valid: vec![h(2), h(1)],
            pending: vec![]
        }
        .sorted_unique());
        assert!(!Mempool {
            known_valid: vec![],
            pending: vec![h(1), h(1)]
        }
        .sorted_unique());
        let mut out = Vec::new();
        Mempool::EMPTY.write(&mut out);
        assert_eq!(hex::encode(&out), "000000000000000400000000");
        assert!(Mempool::default().is_empty());
        let full = Mempool {
            known_valid: vec![h(1); 3999],
            pending: vec![],
        };
        assert!(full.check_bound().is_ok());
        let over = Mempool {
            known_valid: vec![h(1); 2000],
            pending: vec![h(1); 2000],
        };
        assert_eq!(
            over.check_bound(),
            Err(EncodeError::SizeLimitExceeded {
                size: 128_012,
                limit: MAX_MEMPOOL_SIZE
            })
        );
    }

    #[test]
    fn component_text_json() {
        let c = Component {
            name: vec![0xFF, 0x00],
            interface: None,
            implementation: b"let x = 1".to_vec(),
        };
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"name": {"hex": "ff00"}, "implementation": "let x = 1"})
        );
        assert_eq!(serde_json::from_value::<Component>(j).unwrap(), c);
        let octez = serde_json::json!({
            "name": {"invalid_utf8_string": [255, 0]},
            "interface": null,
            "implementation": "let x = 1"
        });
        assert_eq!(serde_json::from_value::<Component>(octez).unwrap(), c);
    }

    #[test]
    fn protocol_env_version_is_checked_both_ways() {
        let p = Protocol {
            expected_env_version: 18,
            components: vec![],
        };
        assert_eq!(
            p.check_bound(),
            Err(EncodeError::InvalidValue(UNKNOWN_ENV_VERSION))
        );
        let j = serde_json::json!({"expected_env_version": 18, "components": []});
        assert!(serde_json::from_value::<Protocol>(j).is_err());
        let b = p.to_bytes();
        assert_eq!(
            cursor::whole(&b, Protocol::decode_bounded),
            Err(DecodeError::InvalidValue(UNKNOWN_ENV_VERSION))
        );
    }

    #[test]
    fn counting_operations_stops_at_the_first_odd_entry() {
        let mut b = Vec::new();
        for k in [32u32, 40] {
            b.put_u32(k);
            b.extend(vec![0u8; k as usize]);
        }
        assert_eq!(count_ops(&b), 2);
        b.put_u32(31);
        b.extend_from_slice(&[0; 31]);
        assert_eq!(count_ops(&b), 2);
        assert_eq!(count_ops(&b[..50]), 1);
        assert_eq!(count_ops(&[]), 0);
    }
}
