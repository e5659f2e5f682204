//! The shell messages themselves (spec §3 and §5): [`ShellMessage`], its
//! [`AppMessage`] implementation, its Octez JSON, and the stream-reader
//! check of an incomplete message.

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use tezos_p2p_wire::encoding::{DecodeError, EncodeError, WriteExt};
use tezos_p2p_wire::message::{AppMessage, MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE_FIELD};

use crate::cursor::{self, Cur, Fail, Res};
use crate::merkle::MAX_PATH_SIZE;
use crate::types::{
    hash_list, write_hash_list, MAX_BLOCK_HEADER_SIZE, MAX_LOCATOR_HISTORY, MAX_MEMPOOL_SIZE,
    MAX_OPERATION_LIST_SIZE, MAX_OPERATION_SIZE, MAX_PROTOCOL_SIZE, MAX_REQUEST_LENGTH,
};
use crate::{
    BlockHash, BlockHeader, BlockLocator, ChainId, Mempool, Operation, OperationHash,
    OperationsForBlock, Protocol, ProtocolHash,
};

/// Tag of [`ShellMessage::GetCurrentBranch`].
pub const TAG_GET_CURRENT_BRANCH: u16 = 0x10;
/// Tag of [`ShellMessage::CurrentBranch`].
pub const TAG_CURRENT_BRANCH: u16 = 0x11;
/// Tag of [`ShellMessage::Deactivate`].
pub const TAG_DEACTIVATE: u16 = 0x12;
/// Tag of [`ShellMessage::GetCurrentHead`].
pub const TAG_GET_CURRENT_HEAD: u16 = 0x13;
/// Tag of [`ShellMessage::CurrentHead`].
pub const TAG_CURRENT_HEAD: u16 = 0x14;
/// Tag of [`ShellMessage::GetBlockHeaders`].
pub const TAG_GET_BLOCK_HEADERS: u16 = 0x20;
/// Tag of [`ShellMessage::BlockHeader`].
pub const TAG_BLOCK_HEADER: u16 = 0x21;
/// Tag of [`ShellMessage::GetOperations`].
pub const TAG_GET_OPERATIONS: u16 = 0x30;
/// Tag of [`ShellMessage::Operation`].
pub const TAG_OPERATION: u16 = 0x31;
/// Tag of [`ShellMessage::GetProtocols`].
pub const TAG_GET_PROTOCOLS: u16 = 0x40;
/// Tag of [`ShellMessage::Protocol`].
pub const TAG_PROTOCOL: u16 = 0x41;
/// Tag of [`ShellMessage::GetOperationsForBlocks`].
pub const TAG_GET_OPERATIONS_FOR_BLOCKS: u16 = 0x60;
/// Tag of [`ShellMessage::OperationsForBlocks`].
pub const TAG_OPERATIONS_FOR_BLOCKS: u16 = 0x61;
/// Tag of [`ShellMessage::GetCheckpoint`].
pub const TAG_GET_CHECKPOINT: u16 = 0x70;
/// Tag of [`ShellMessage::Checkpoint`].
pub const TAG_CHECKPOINT: u16 = 0x71;
/// Tag of [`ShellMessage::GetProtocolBranch`].
pub const TAG_GET_PROTOCOL_BRANCH: u16 = 0x80;
/// Tag of [`ShellMessage::ProtocolBranch`].
pub const TAG_PROTOCOL_BRANCH: u16 = 0x81;
/// Tag of [`ShellMessage::GetPredecessorHeader`].
pub const TAG_GET_PREDECESSOR_HEADER: u16 = 0x90;
/// Tag of [`ShellMessage::PredecessorHeader`].
pub const TAG_PREDECESSOR_HEADER: u16 = 0x91;

/// Every tag with its Octez case title, in tag order.
pub const TAGS: [(u16, &str); 19] = [
    (TAG_GET_CURRENT_BRANCH, "Get_current_branch"),
    (TAG_CURRENT_BRANCH, "Current_branch"),
    (TAG_DEACTIVATE, "Deactivate"),
    (TAG_GET_CURRENT_HEAD, "Get_current_head"),
    (TAG_CURRENT_HEAD, "Current_head"),
    (TAG_GET_BLOCK_HEADERS, "Get_block_headers"),
    (TAG_BLOCK_HEADER, "Block_header"),
    (TAG_GET_OPERATIONS, "Get_operations"),
    (TAG_OPERATION, "Operation"),
    (TAG_GET_PROTOCOLS, "Get_protocols"),
    (TAG_PROTOCOL, "Protocol"),
    (TAG_GET_OPERATIONS_FOR_BLOCKS, "Get_operations_for_blocks"),
    (TAG_OPERATIONS_FOR_BLOCKS, "Operations_for_blocks"),
    (TAG_GET_CHECKPOINT, "Get_checkpoint"),
    (TAG_CHECKPOINT, "Checkpoint"),
    (TAG_GET_PROTOCOL_BRANCH, "Get_protocol_branch"),
    (TAG_PROTOCOL_BRANCH, "Protocol_branch"),
    (TAG_GET_PREDECESSOR_HEADER, "Get_predecessor_header"),
    (TAG_PREDECESSOR_HEADER, "Predecessor_header"),
];

/// A shell ("distributed_db") message, tags `0x10`–`0x91`
/// (`src/lib_shell/distributed_db_message.ml`).
///
/// Decoding follows Octez's stream reader, error class included (see
/// [`DecodeError::octez_class`]); encoding refuses what Octez's writer
/// refuses (the bounds of spec §2.9), writing nothing then.
///
/// Its serde form is Octez's JSON of the message's fields, without the
/// name (see the crate documentation).
///
/// ```
/// use tezos_p2p_shell::{ChainId, ShellMessage};
///
/// // `Get_current_head` on mainnet: the u16 tag 0x0013, then the chain id
/// // (on the wire, after the u32 size of what follows).
/// let bytes = hex::decode("00137a06a770")?;
/// let msg = ShellMessage::from_bytes(&bytes)?;
/// let mainnet: ChainId = "NetXdQprcVkpaWU".parse()?;
/// assert_eq!(msg, ShellMessage::GetCurrentHead(mainnet));
/// assert_eq!((msg.tag(), msg.name()), (0x13, "Get_current_head"));
/// assert_eq!(msg.chain_id(), Some(mainnet));
///
/// // Octez's JSON, and back.
/// let json = msg.to_json();
/// assert_eq!(json, serde_json::json!({ "get_current_head": "NetXdQprcVkpaWU" }));
/// assert_eq!(ShellMessage::from_octez_json(&json)?, msg);
///
/// // Encoding gives the same bytes; a cut message does not decode.
/// assert_eq!(msg.to_bytes()?, bytes);
/// assert!(ShellMessage::from_bytes(&bytes[..4]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShellMessage {
    /// `0x10`: "send me your current branch" (the first message Octez sends
    /// on a new connection).
    GetCurrentBranch(ChainId),
    /// `0x11`: the sender's head and a sparse history.
    CurrentBranch {
        /// The chain.
        chain_id: ChainId,
        /// Head and history.
        locator: BlockLocator,
    },
    /// `0x12`: the sender stops following the chain.
    Deactivate(ChainId),
    /// `0x13`: "send me your current head".
    GetCurrentHead(ChainId),
    /// `0x14`: the sender's head and mempool.
    CurrentHead {
        /// The chain.
        chain_id: ChainId,
        /// The head.
        header: BlockHeader,
        /// The sender's mempool (empty for peers with `disable_mempool`).
        mempool: Mempool,
    },
    /// `0x20`: up to 10 block hashes whose headers are wanted.
    GetBlockHeaders(Vec<BlockHash>),
    /// `0x21`: a block header.
    BlockHeader(BlockHeader),
    /// `0x30`: up to 10 operation hashes whose operations are wanted.
    GetOperations(Vec<OperationHash>),
    /// `0x31`: an operation.
    Operation(Operation),
    /// `0x40`: up to 10 protocol hashes whose sources are wanted.
    GetProtocols(Vec<ProtocolHash>),
    /// `0x41`: a protocol's sources.
    Protocol(Protocol),
    /// `0x60`: up to 10 (block, validation pass) pairs whose operations are
    /// wanted.
    GetOperationsForBlocks(Vec<(BlockHash, i8)>),
    /// `0x61`: the operations of one validation pass of a block.
    OperationsForBlocks(OperationsForBlock),
    /// `0x70`: "send me your checkpoint".
    GetCheckpoint(ChainId),
    /// `0x71`: the sender's checkpoint header.
    Checkpoint {
        /// The chain.
        chain_id: ChainId,
        /// The checkpoint block's header.
        header: BlockHeader,
    },
    /// `0x80`: "send me a locator of the protocol of this level".
    GetProtocolBranch {
        /// The chain.
        chain_id: ChainId,
        /// The protocol level.
        proto_level: u8,
    },
    /// `0x81`: a locator of a protocol level.
    ProtocolBranch {
        /// The chain.
        chain_id: ChainId,
        /// The protocol level.
        proto_level: u8,
        /// Its locator.
        locator: BlockLocator,
    },
    /// `0x90`: "send me the header `offset` blocks before `block`".
    GetPredecessorHeader {
        /// The block.
        block: BlockHash,
        /// How far back.
        offset: i32,
    },
    /// `0x91`: the answer to `Get_predecessor_header`.
    PredecessorHeader {
        /// The block asked about.
        block: BlockHash,
        /// How far back.
        offset: i32,
        /// The predecessor's header.
        header: BlockHeader,
    },
}

/// The largest size field (tag and body) of each tag (spec §2.9).
const fn max_size_of(tag: u16) -> Option<usize> {
    const HEADER: usize = MAX_BLOCK_HEADER_SIZE;
    const LOCATOR: usize = 4 + HEADER + 32 * MAX_LOCATOR_HISTORY;
    let body = match tag {
        TAG_GET_CURRENT_BRANCH | TAG_DEACTIVATE | TAG_GET_CURRENT_HEAD | TAG_GET_CHECKPOINT => 4,
        TAG_CURRENT_BRANCH => 4 + LOCATOR,
        TAG_CURRENT_HEAD => 4 + 4 + HEADER + MAX_MEMPOOL_SIZE,
        TAG_GET_BLOCK_HEADERS | TAG_GET_OPERATIONS | TAG_GET_PROTOCOLS => {
            4 + 32 * MAX_REQUEST_LENGTH
        }
        TAG_BLOCK_HEADER => HEADER,
        TAG_OPERATION => MAX_OPERATION_SIZE,
        TAG_PROTOCOL => MAX_PROTOCOL_SIZE,
        TAG_GET_OPERATIONS_FOR_BLOCKS => 4 + 33 * MAX_REQUEST_LENGTH,
        TAG_OPERATIONS_FOR_BLOCKS => 33 + MAX_PATH_SIZE + MAX_OPERATION_LIST_SIZE,
        TAG_CHECKPOINT => 4 + HEADER,
        TAG_GET_PROTOCOL_BRANCH => 5,
        TAG_PROTOCOL_BRANCH => 5 + LOCATOR,
        TAG_GET_PREDECESSOR_HEADER => 36,
        TAG_PREDECESSOR_HEADER => 36 + HEADER,
        _ => return None,
    };
    Some(2 + body)
}

fn too_long(len: usize) -> Result<(), EncodeError> {
    if len > MAX_REQUEST_LENGTH {
        return Err(EncodeError::ListTooLong {
            len,
            max: MAX_REQUEST_LENGTH,
        });
    }
    Ok(())
}

/// A request list: `list ~max_length:10` of hashes, i.e. a `dynamic_size`
/// around a `check_size 320`.
fn request<H: From<[u8; 32]>>(c: &mut Cur<'_>) -> Res<Vec<H>> {
    c.dynamic(|c| {
        c.check_size(32 * MAX_REQUEST_LENGTH, true, |c| {
            hash_list(c, MAX_REQUEST_LENGTH)
        })
    })
}

/// Reads the body of a message of a known tag, in Octez's order.
fn decode_body(tag: u16, c: &mut Cur<'_>) -> Res<ShellMessage> {
    use ShellMessage as M;
    let chain = |c: &mut Cur<'_>| c.fixed::<4>().map(ChainId::from_bytes);
    let block = |c: &mut Cur<'_>| c.fixed::<32>().map(BlockHash::from_bytes);
    Ok(match tag {
        TAG_GET_CURRENT_BRANCH => M::GetCurrentBranch(chain(c)?),
        TAG_CURRENT_BRANCH => M::CurrentBranch {
            chain_id: chain(c)?,
            locator: BlockLocator::decode(c)?,
        },
        TAG_DEACTIVATE => M::Deactivate(chain(c)?),
        TAG_GET_CURRENT_HEAD => M::GetCurrentHead(chain(c)?),
        TAG_CURRENT_HEAD => M::CurrentHead {
            chain_id: chain(c)?,
            header: c.dynamic(BlockHeader::decode_bounded)?,
            mempool: Mempool::decode(c)?,
        },
        TAG_GET_BLOCK_HEADERS => M::GetBlockHeaders(request(c)?),
        TAG_BLOCK_HEADER => M::BlockHeader(BlockHeader::decode_bounded(c)?),
        TAG_GET_OPERATIONS => M::GetOperations(request(c)?),
        TAG_OPERATION => M::Operation(Operation::decode_bounded(c)?),
        TAG_GET_PROTOCOLS => M::GetProtocols(request(c)?),
        TAG_PROTOCOL => M::Protocol(Protocol::decode_bounded(c)?),
        TAG_GET_OPERATIONS_FOR_BLOCKS => M::GetOperationsForBlocks(c.dynamic(|c| {
            c.check_size(33 * MAX_REQUEST_LENGTH, true, |c| {
                let mut v = Vec::with_capacity((c.present().len() / 33).min(MAX_REQUEST_LENGTH));
                while !c.at_end() {
                    if v.len() == MAX_REQUEST_LENGTH {
                        return Err(DecodeError::ListTooLong {
                            max: MAX_REQUEST_LENGTH,
                        }
                        .into());
                    }
                    c.need(33)?;
                    v.push((block(c)?, c.i8()?));
                }
                Ok(v)
            })
        })?),
        TAG_OPERATIONS_FOR_BLOCKS => M::OperationsForBlocks(OperationsForBlock::decode(c)?),
        TAG_GET_CHECKPOINT => M::GetCheckpoint(chain(c)?),
        TAG_CHECKPOINT => M::Checkpoint {
            chain_id: chain(c)?,
            header: BlockHeader::decode_bounded(c)?,
        },
        TAG_GET_PROTOCOL_BRANCH => {
            c.need(5)?;
            M::GetProtocolBranch {
                chain_id: chain(c)?,
                proto_level: c.u8()?,
            }
        }
        TAG_PROTOCOL_BRANCH => M::ProtocolBranch {
            chain_id: chain(c)?,
            proto_level: c.u8()?,
            locator: BlockLocator::decode(c)?,
        },
        TAG_GET_PREDECESSOR_HEADER => {
            c.need(36)?;
            M::GetPredecessorHeader {
                block: block(c)?,
                offset: c.i32()?,
            }
        }
        TAG_PREDECESSOR_HEADER => M::PredecessorHeader {
            block: block(c)?,
            offset: c.i32()?,
            header: BlockHeader::decode_bounded(c)?,
        },
        t => return Err(DecodeError::UnexpectedTag(t).into()),
    })
}

impl ShellMessage {
    /// The 2-byte tag.
    pub fn tag(&self) -> u16 {
        use ShellMessage as M;
        match self {
            M::GetCurrentBranch(_) => TAG_GET_CURRENT_BRANCH,
            M::CurrentBranch { .. } => TAG_CURRENT_BRANCH,
            M::Deactivate(_) => TAG_DEACTIVATE,
            M::GetCurrentHead(_) => TAG_GET_CURRENT_HEAD,
            M::CurrentHead { .. } => TAG_CURRENT_HEAD,
            M::GetBlockHeaders(_) => TAG_GET_BLOCK_HEADERS,
            M::BlockHeader(_) => TAG_BLOCK_HEADER,
            M::GetOperations(_) => TAG_GET_OPERATIONS,
            M::Operation(_) => TAG_OPERATION,
            M::GetProtocols(_) => TAG_GET_PROTOCOLS,
            M::Protocol(_) => TAG_PROTOCOL,
            M::GetOperationsForBlocks(_) => TAG_GET_OPERATIONS_FOR_BLOCKS,
            M::OperationsForBlocks(_) => TAG_OPERATIONS_FOR_BLOCKS,
            M::GetCheckpoint(_) => TAG_GET_CHECKPOINT,
            M::Checkpoint { .. } => TAG_CHECKPOINT,
            M::GetProtocolBranch { .. } => TAG_GET_PROTOCOL_BRANCH,
            M::ProtocolBranch { .. } => TAG_PROTOCOL_BRANCH,
            M::GetPredecessorHeader { .. } => TAG_GET_PREDECESSOR_HEADER,
            M::PredecessorHeader { .. } => TAG_PREDECESSOR_HEADER,
        }
    }

    /// Octez's case title (`"Get_current_branch"`, `"Operations_for_blocks"`…).
    pub fn name(&self) -> &'static str {
        Self::tag_name(self.tag()).unwrap_or("")
    }

    /// The case title of a tag, `None` if no shell message has it (0x50 and
    /// 0x51 were removed in 2020).
    pub fn tag_name(tag: u16) -> Option<&'static str> {
        TAGS.iter().find(|(t, _)| *t == tag).map(|(_, n)| *n)
    }

    /// The tag of a case title.
    pub fn tag_of_name(name: &str) -> Option<u16> {
        TAGS.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
    }

    /// The chain of the messages that name one.
    pub fn chain_id(&self) -> Option<ChainId> {
        use ShellMessage as M;
        match self {
            M::GetCurrentBranch(c)
            | M::Deactivate(c)
            | M::GetCurrentHead(c)
            | M::GetCheckpoint(c)
            | M::CurrentBranch { chain_id: c, .. }
            | M::CurrentHead { chain_id: c, .. }
            | M::Checkpoint { chain_id: c, .. }
            | M::GetProtocolBranch { chain_id: c, .. }
            | M::ProtocolBranch { chain_id: c, .. } => Some(*c),
            _ => None,
        }
    }

    /// Bytes of the body (what follows the tag), bounds not checked.
    pub fn body_len(&self) -> usize {
        use ShellMessage as M;
        match self {
            M::GetCurrentBranch(_)
            | M::Deactivate(_)
            | M::GetCurrentHead(_)
            | M::GetCheckpoint(_) => 4,
            M::CurrentBranch { locator, .. } => 4 + locator.encoded_len(),
            M::CurrentHead {
                header, mempool, ..
            } => 8 + header.encoded_len() + mempool.encoded_len(),
            M::GetBlockHeaders(v) => 4 + 32 * v.len(),
            M::GetOperations(v) => 4 + 32 * v.len(),
            M::GetProtocols(v) => 4 + 32 * v.len(),
            M::BlockHeader(h) => h.encoded_len(),
            M::Operation(o) => o.encoded_len(),
            M::Protocol(p) => p.encoded_len(),
            M::GetOperationsForBlocks(v) => 4 + 33 * v.len(),
            M::OperationsForBlocks(o) => o.encoded_len(),
            M::Checkpoint { header, .. } => 4 + header.encoded_len(),
            M::GetProtocolBranch { .. } => 5,
            M::ProtocolBranch { locator, .. } => 5 + locator.encoded_len(),
            M::GetPredecessorHeader { .. } => 36,
            M::PredecessorHeader { header, .. } => 36 + header.encoded_len(),
        }
    }

    /// Whether Octez's writer would accept the message (every bound of
    /// spec §2.9); the error it would raise otherwise.
    pub fn check_bounds(&self) -> Result<(), EncodeError> {
        use ShellMessage as M;
        match self {
            M::GetCurrentBranch(_)
            | M::Deactivate(_)
            | M::GetCurrentHead(_)
            | M::GetCheckpoint(_)
            | M::GetProtocolBranch { .. }
            | M::GetPredecessorHeader { .. } => Ok(()),
            M::CurrentBranch { locator, .. } | M::ProtocolBranch { locator, .. } => {
                locator.check_bound()
            }
            M::CurrentHead {
                header, mempool, ..
            } => {
                header.check_bound()?;
                mempool.check_bound()
            }
            M::GetBlockHeaders(v) => too_long(v.len()),
            M::GetOperations(v) => too_long(v.len()),
            M::GetProtocols(v) => too_long(v.len()),
            M::GetOperationsForBlocks(v) => too_long(v.len()),
            M::BlockHeader(h)
            | M::Checkpoint { header: h, .. }
            | M::PredecessorHeader { header: h, .. } => h.check_bound(),
            M::Operation(o) => o.check_bound(),
            M::Protocol(p) => p.check_bound(),
            M::OperationsForBlocks(o) => o.check_bound(),
        }
    }

    /// Appends the body, bounds not checked.
    fn write_body(&self, out: &mut Vec<u8>) {
        use ShellMessage as M;
        match self {
            M::GetCurrentBranch(c)
            | M::Deactivate(c)
            | M::GetCurrentHead(c)
            | M::GetCheckpoint(c) => out.extend_from_slice(c.as_bytes()),
            M::CurrentBranch { chain_id, locator } => {
                out.extend_from_slice(chain_id.as_bytes());
                locator.write(out);
            }
            M::CurrentHead {
                chain_id,
                header,
                mempool,
            } => {
                out.extend_from_slice(chain_id.as_bytes());
                out.put_u32(header.encoded_len() as u32);
                header.write(out);
                mempool.write(out);
            }
            M::GetBlockHeaders(v) => write_hash_list(v, out),
            M::GetOperations(v) => write_hash_list(v, out),
            M::GetProtocols(v) => write_hash_list(v, out),
            M::BlockHeader(h) => h.write(out),
            M::Operation(o) => o.write(out),
            M::Protocol(p) => p.write(out),
            M::GetOperationsForBlocks(v) => {
                out.put_u32((33 * v.len()) as u32);
                for (h, vp) in v {
                    out.extend_from_slice(h.as_bytes());
                    out.push(*vp as u8);
                }
            }
            M::OperationsForBlocks(o) => o.write(out),
            M::Checkpoint { chain_id, header } => {
                out.extend_from_slice(chain_id.as_bytes());
                header.write(out);
            }
            M::GetProtocolBranch {
                chain_id,
                proto_level,
            } => {
                out.extend_from_slice(chain_id.as_bytes());
                out.put_u8(*proto_level);
            }
            M::ProtocolBranch {
                chain_id,
                proto_level,
                locator,
            } => {
                out.extend_from_slice(chain_id.as_bytes());
                out.put_u8(*proto_level);
                locator.write(out);
            }
            M::GetPredecessorHeader { block, offset } => {
                out.extend_from_slice(block.as_bytes());
                out.put_i32(*offset);
            }
            M::PredecessorHeader {
                block,
                offset,
                header,
            } => {
                out.extend_from_slice(block.as_bytes());
                out.put_i32(*offset);
                header.write(out);
            }
        }
    }

    /// `tag ‖ body`: the message as the vectors give it (the wire adds the
    /// `u32` size in front).
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(2 + self.body_len());
        out.put_u16(self.tag());
        self.encode_body(&mut out)?;
        Ok(out)
    }

    /// Decodes `tag ‖ body` (all of `bytes`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let Some((tag, body)) = bytes.split_first_chunk::<2>() else {
            return Err(DecodeError::NotEnoughData);
        };
        <Self as AppMessage>::decode(u16::from_be_bytes(*tag), body)
    }

    /// The Octez JSON of the message's fields (`serde_json::to_value`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The message named `name` (an Octez case title) with these fields,
    /// as [`to_json`](Self::to_json) writes them. Fails on a wrong name,
    /// wrong fields, or a message that could not be encoded (a bound of
    /// spec §2.9).
    pub fn from_json(name: &str, fields: &Value) -> Result<ShellMessage, String> {
        let tag =
            Self::tag_of_name(name).ok_or_else(|| format!("unknown shell message {name:?}"))?;
        from_fields(tag, fields)
    }

    /// The message whose fields these are, told from their keys as Octez's
    /// JSON union does (`{"get_current_head": "Net…"}` is a
    /// `Get_current_head`); the same as deserializing a [`ShellMessage`].
    pub fn from_octez_json(fields: &Value) -> Result<ShellMessage, String> {
        let tag = fields
            .as_object()
            .and_then(tag_of_fields)
            .ok_or_else(|| "not the fields of a shell message".to_string())?;
        from_fields(tag, fields)
    }

    /// Octez's stream reader on the first bytes of a wire message, **`u32`
    /// size included**: `Err` if it would already have failed with only
    /// these bytes, `Ok(())` if it would wait for more (or if the message is
    /// whole and valid). Bytes after the announced size are ignored;
    /// P2P-level tags (`0x01`–`0x05`) are left to the wire layer
    /// (`Ok(())`).
    ///
    /// Octez checks each read against the announced sizes and bounds before
    /// the data arrive, so a lying size is often caught early: e.g. an
    /// `Operations_for_blocks` whose operation list would exceed 1 MiB fails
    /// as soon as its path has been read.
    pub fn check_prefix(framed_prefix: &[u8]) -> Result<(), DecodeError> {
        let Some((size, rest)) = framed_prefix.split_first_chunk::<4>() else {
            return Ok(());
        };
        let size = i32::from_be_bytes(*size);
        if size < 0 {
            return Err(DecodeError::InvalidInt {
                min: 0,
                value: i64::from(size),
                max: (1 << 30) - 1,
            });
        }
        let size = size as usize;
        if size > MAX_MESSAGE_SIZE_FIELD {
            return Err(DecodeError::SizeLimitExceeded {
                size: size + 4,
                limit: MAX_MESSAGE_SIZE,
            });
        }
        if size < 2 {
            return Err(DecodeError::NotEnoughData);
        }
        let Some((tag, body)) = rest.split_first_chunk::<2>() else {
            return Ok(());
        };
        let tag = u16::from_be_bytes(*tag);
        if (1..=5).contains(&tag) {
            return Ok(());
        }
        if Self::tag_name(tag).is_none() {
            return Err(DecodeError::UnexpectedTag(tag));
        }
        let mut c = Cur::new(body, size - 2);
        match decode_body(tag, &mut c).and_then(|_| c.finish()) {
            Ok(()) | Err(Fail::Incomplete) => Ok(()),
            Err(Fail::Bad(e)) => Err(e),
        }
    }
}

impl AppMessage for ShellMessage {
    fn tag(&self) -> u16 {
        ShellMessage::tag(self)
    }

    /// Checks every bound first: on error nothing is written.
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.check_bounds()?;
        out.reserve(self.body_len());
        self.write_body(out);
        Ok(())
    }

    fn size_hint(&self) -> usize {
        self.body_len()
    }

    fn decode(tag: u16, body: &[u8]) -> Result<Self, DecodeError> {
        if Self::tag_name(tag).is_none() {
            return Err(DecodeError::UnexpectedTag(tag));
        }
        cursor::whole(body, |c| decode_body(tag, c))
    }

    /// The exact bound of spec §2.9 (tag included): a bigger message of
    /// this tag can only fail. For the fixed-size requests it is their size,
    /// so a `MessageDecoder` refuses one with trailing bytes with
    /// `Size_limit_exceeded` as soon as size and tag are read, where Octez
    /// reads the fixed fields first and reports `Extra_bytes`: the peer is
    /// refused either way, without buffering what it announced.
    fn max_size(tag: u16) -> Option<usize> {
        max_size_of(tag)
    }

    /// A request of fixed size announcing more: Octez's stream reader reads
    /// the fixed fields, then finds the rest of the announced size unused.
    fn oversize_error(tag: u16, size: usize, max: usize) -> DecodeError {
        match tag {
            TAG_GET_CURRENT_BRANCH
            | TAG_DEACTIVATE
            | TAG_GET_CURRENT_HEAD
            | TAG_GET_CHECKPOINT
            | TAG_GET_PROTOCOL_BRANCH
            | TAG_GET_PREDECESSOR_HEADER => DecodeError::ExtraBytes(size - max),
            _ => DecodeError::SizeLimitExceeded { size, limit: max },
        }
    }
}

// ---------------------------------------------------------------------------
// JSON

#[derive(Serialize, Deserialize)]
struct OpsKey {
    hash: BlockHash,
    validation_pass: i8,
}

#[derive(Serialize)]
struct CheckpointRef<'a> {
    chain_id: &'a ChainId,
    header: &'a BlockHeader,
}

#[derive(Deserialize)]
struct CheckpointOwned {
    chain_id: ChainId,
    header: BlockHeader,
}

#[derive(Serialize, Deserialize)]
struct ProtoBranchKey {
    chain: ChainId,
    proto_level: u8,
}

#[derive(Serialize)]
struct ProtoBranchRef<'a> {
    chain: &'a ChainId,
    proto_level: u8,
    locator: &'a BlockLocator,
}

#[derive(Deserialize)]
struct ProtoBranchOwned {
    chain: ChainId,
    proto_level: u8,
    locator: BlockLocator,
}

#[derive(Serialize, Deserialize)]
struct PredKey {
    block: BlockHash,
    offset: i32,
}

#[derive(Serialize)]
struct PredRef<'a> {
    block: &'a BlockHash,
    offset: i32,
    header: &'a BlockHeader,
}

#[derive(Deserialize)]
struct PredOwned {
    block: BlockHash,
    offset: i32,
    header: BlockHeader,
}

impl Serialize for ShellMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use ShellMessage as M;
        fn one<S: Serializer, T: Serialize + ?Sized>(
            s: S,
            k: &str,
            v: &T,
        ) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry(k, v)?;
            m.end()
        }
        match self {
            M::GetCurrentBranch(c) => one(s, "get_current_branch", c),
            M::CurrentBranch { chain_id, locator } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("chain_id", chain_id)?;
                m.serialize_entry("current_branch", locator)?;
                m.end()
            }
            M::Deactivate(c) => one(s, "deactivate", c),
            M::GetCurrentHead(c) => one(s, "get_current_head", c),
            M::CurrentHead {
                chain_id,
                header,
                mempool,
            } => {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("chain_id", chain_id)?;
                m.serialize_entry("current_block_header", header)?;
                m.serialize_entry("current_mempool", mempool)?;
                m.end()
            }
            M::GetBlockHeaders(v) => one(s, "get_block_headers", v),
            M::BlockHeader(h) => one(s, "block_header", h),
            M::GetOperations(v) => one(s, "get_operations", v),
            M::Operation(o) => one(s, "operation", o),
            M::GetProtocols(v) => one(s, "get_protocols", v),
            M::Protocol(p) => one(s, "protocol", p),
            M::GetOperationsForBlocks(v) => {
                let keys: Vec<OpsKey> = v
                    .iter()
                    .map(|(hash, validation_pass)| OpsKey {
                        hash: *hash,
                        validation_pass: *validation_pass,
                    })
                    .collect();
                one(s, "get_operations_for_blocks", &keys)
            }
            M::OperationsForBlocks(o) => o.serialize(s),
            M::GetCheckpoint(c) => one(s, "get_checkpoint", c),
            M::Checkpoint { chain_id, header } => {
                one(s, "checkpoint", &CheckpointRef { chain_id, header })
            }
            M::GetProtocolBranch {
                chain_id,
                proto_level,
            } => one(
                s,
                "get_protocol_branch",
                &ProtoBranchKey {
                    chain: *chain_id,
                    proto_level: *proto_level,
                },
            ),
            M::ProtocolBranch {
                chain_id,
                proto_level,
                locator,
            } => one(
                s,
                "protocol_branch",
                &ProtoBranchRef {
                    chain: chain_id,
                    proto_level: *proto_level,
                    locator,
                },
            ),
            M::GetPredecessorHeader { block, offset } => one(
                s,
                "get_predecessor_header",
                &PredKey {
                    block: *block,
                    offset: *offset,
                },
            ),
            M::PredecessorHeader {
                block,
                offset,
                header,
            } => one(
                s,
                "predecessor_header",
                &PredRef {
                    block,
                    offset: *offset,
                    header,
                },
            ),
        }
    }
}

/// Which message a fields object is, by its keys (Octez's JSON union tries
/// its cases in turn; the keys of the shell messages tell them apart).
fn tag_of_fields(fields: &serde_json::Map<String, Value>) -> Option<u16> {
    const SINGLE: [(&str, u16); 17] = [
        ("get_current_branch", TAG_GET_CURRENT_BRANCH),
        ("current_branch", TAG_CURRENT_BRANCH),
        ("deactivate", TAG_DEACTIVATE),
        ("get_current_head", TAG_GET_CURRENT_HEAD),
        ("current_block_header", TAG_CURRENT_HEAD),
        ("get_block_headers", TAG_GET_BLOCK_HEADERS),
        ("block_header", TAG_BLOCK_HEADER),
        ("get_operations", TAG_GET_OPERATIONS),
        ("operation", TAG_OPERATION),
        ("get_protocols", TAG_GET_PROTOCOLS),
        ("protocol", TAG_PROTOCOL),
        ("get_operations_for_blocks", TAG_GET_OPERATIONS_FOR_BLOCKS),
        ("operations_for_block", TAG_OPERATIONS_FOR_BLOCKS),
        ("get_checkpoint", TAG_GET_CHECKPOINT),
        ("checkpoint", TAG_CHECKPOINT),
        ("get_protocol_branch", TAG_GET_PROTOCOL_BRANCH),
        ("protocol_branch", TAG_PROTOCOL_BRANCH),
    ];
    const MORE: [(&str, u16); 2] = [
        ("get_predecessor_header", TAG_GET_PREDECESSOR_HEADER),
        ("predecessor_header", TAG_PREDECESSOR_HEADER),
    ];
    SINGLE
        .iter()
        .chain(&MORE)
        .find(|(k, _)| fields.contains_key(*k))
        .map(|(_, t)| *t)
}

/// Builds the message of `tag` from its fields object.
fn from_fields(tag: u16, fields: &Value) -> Result<ShellMessage, String> {
    use ShellMessage as M;
    let obj = fields
        .as_object()
        .ok_or_else(|| format!("the fields of a shell message are an object, not {fields}"))?;
    fn get<T: for<'de> Deserialize<'de>>(
        obj: &serde_json::Map<String, Value>,
        key: &str,
    ) -> Result<T, String> {
        let v = obj
            .get(key)
            .ok_or_else(|| format!("missing field {key:?}"))?;
        T::deserialize(v).map_err(|e| format!("field {key:?}: {e}"))
    }
    let msg = match tag {
        TAG_GET_CURRENT_BRANCH => M::GetCurrentBranch(get(obj, "get_current_branch")?),
        TAG_CURRENT_BRANCH => M::CurrentBranch {
            chain_id: get(obj, "chain_id")?,
            locator: get(obj, "current_branch")?,
        },
        TAG_DEACTIVATE => M::Deactivate(get(obj, "deactivate")?),
        TAG_GET_CURRENT_HEAD => M::GetCurrentHead(get(obj, "get_current_head")?),
        TAG_CURRENT_HEAD => M::CurrentHead {
            chain_id: get(obj, "chain_id")?,
            header: get(obj, "current_block_header")?,
            mempool: get(obj, "current_mempool")?,
        },
        TAG_GET_BLOCK_HEADERS => M::GetBlockHeaders(get(obj, "get_block_headers")?),
        TAG_BLOCK_HEADER => M::BlockHeader(get(obj, "block_header")?),
        TAG_GET_OPERATIONS => M::GetOperations(get(obj, "get_operations")?),
        TAG_OPERATION => M::Operation(get(obj, "operation")?),
        TAG_GET_PROTOCOLS => M::GetProtocols(get(obj, "get_protocols")?),
        TAG_PROTOCOL => M::Protocol(get(obj, "protocol")?),
        TAG_GET_OPERATIONS_FOR_BLOCKS => M::GetOperationsForBlocks(
            get::<Vec<OpsKey>>(obj, "get_operations_for_blocks")?
                .into_iter()
                .map(|k| (k.hash, k.validation_pass))
                .collect(),
        ),
        TAG_OPERATIONS_FOR_BLOCKS => M::OperationsForBlocks(
            OperationsForBlock::deserialize(fields).map_err(|e| e.to_string())?,
        ),
        TAG_GET_CHECKPOINT => M::GetCheckpoint(get(obj, "get_checkpoint")?),
        TAG_CHECKPOINT => {
            let c: CheckpointOwned = get(obj, "checkpoint")?;
            M::Checkpoint {
                chain_id: c.chain_id,
                header: c.header,
            }
        }
        TAG_GET_PROTOCOL_BRANCH => {
            let k: ProtoBranchKey = get(obj, "get_protocol_branch")?;
            M::GetProtocolBranch {
                chain_id: k.chain,
                proto_level: k.proto_level,
            }
        }
        TAG_PROTOCOL_BRANCH => {
            let p: ProtoBranchOwned = get(obj, "protocol_branch")?;
            M::ProtocolBranch {
                chain_id: p.chain,
                proto_level: p.proto_level,
                locator: p.locator,
            }
        }
        TAG_GET_PREDECESSOR_HEADER => {
            let k: PredKey = get(obj, "get_predecessor_header")?;
            M::GetPredecessorHeader {
                block: k.block,
                offset: k.offset,
            }
        }
        TAG_PREDECESSOR_HEADER => {
            let p: PredOwned = get(obj, "predecessor_header")?;
            M::PredecessorHeader {
                block: p.block,
                offset: p.offset,
                header: p.header,
            }
        }
        t => return Err(format!("unknown shell message tag {t:#06x}")),
    };
    msg.check_bounds().map_err(|e| e.to_string())?;
    Ok(msg)
}

impl<'de> Deserialize<'de> for ShellMessage {
    /// Reads the fields object; which message it is follows from its keys.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ShellMessage::from_octez_json(&Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_size_of_every_tag() {
        let mib = 1024 * 1024;
        let cases: [(u16, usize); 19] = [
            (0x10, 6),
            (0x11, 2 + 4 + 4 + 8 * mib + 32_000),
            (0x12, 6),
            (0x13, 6),
            (0x14, 2 + 4 + 4 + 8 * mib + 128_008),
            (0x20, 2 + 4 + 320),
            (0x21, 2 + 8 * mib),
            (0x30, 2 + 4 + 320),
            (0x31, 2 + 131_072),
            (0x40, 2 + 4 + 320),
            (0x41, 2 + 2_097_152),
            (0x60, 2 + 4 + 330),
            (0x61, 2 + 32 + 1 + 100 + mib),
            (0x70, 6),
            (0x71, 2 + 4 + 8 * mib),
            (0x80, 7),
            (0x81, 2 + 4 + 1 + 4 + 8 * mib + 32_000),
            (0x90, 38),
            (0x91, 2 + 36 + 8 * mib),
        ];
        for (tag, max) in cases {
            assert_eq!(ShellMessage::max_size(tag), Some(max), "tag {tag:#x}");
            assert!(max <= MAX_MESSAGE_SIZE_FIELD);
            assert!(ShellMessage::tag_name(tag).is_some());
        }
        for tag in [
            0u16,
            1,
            5,
            0x0F,
            0x15,
            0x50,
            0x51,
            0x62,
            0x92,
            0xFF,
            0x1000,
            u16::MAX,
        ] {
            assert_eq!(ShellMessage::max_size(tag), None, "tag {tag:#x}");
            assert_eq!(ShellMessage::tag_name(tag), None);
        }
    }

    #[test]
    fn names_round_trip() {
        for (tag, name) in TAGS {
            assert_eq!(ShellMessage::tag_of_name(name), Some(tag));
            assert_eq!(ShellMessage::tag_name(tag), Some(name));
        }
        assert_eq!(
            ShellMessage::tag_of_name("Get_operation_hashes_for_blocks"),
            None
        );
    }

    fn hash(i: u8) -> BlockHash {
        BlockHash::from_bytes([i; 32])
    }

    #[test]
    fn encoding_refuses_over_bound_values_and_writes_nothing() {
        let refused = |m: ShellMessage, e: EncodeError| {
            let mut out = vec![1, 2, 3];
            assert_eq!(m.encode_body(&mut out), Err(e.clone()), "{}", m.name());
            assert_eq!(out, [1, 2, 3]);
            assert_eq!(m.to_bytes(), Err(e.clone()));
            assert_eq!(m.check_bounds(), Err(e));
            assert!(ShellMessage::from_json(m.name(), &m.to_json()).is_err());
        };
        let eleven = EncodeError::ListTooLong { len: 11, max: 10 };
        refused(
            ShellMessage::GetBlockHeaders(vec![hash(1); 11]),
            eleven.clone(),
        );
        refused(
            ShellMessage::GetOperations(vec![OperationHash::from_bytes([1; 32]); 11]),
            eleven.clone(),
        );
        refused(
            ShellMessage::GetProtocols(vec![ProtocolHash::from_bytes([1; 32]); 11]),
            eleven.clone(),
        );
        refused(
            ShellMessage::GetOperationsForBlocks(vec![(hash(1), 0); 11]),
            eleven,
        );
        assert!(ShellMessage::GetBlockHeaders(vec![hash(1); 10])
            .to_bytes()
            .is_ok());

        let header = BlockHeader {
            level: 1,
            proto: 0,
            predecessor: hash(0),
            timestamp: 0,
            validation_pass: 0,
            operations_hash: crate::OperationListListHash::from_bytes([0; 32]),
            fitness: crate::Fitness::default(),
            context: crate::ContextHash::from_bytes([0; 32]),
            protocol_data: vec![],
        };
        let op = OperationHash::from_bytes([2; 32]);
        refused(
            ShellMessage::CurrentHead {
                chain_id: ChainId::from_bytes([0; 4]),
                header: header.clone(),
                mempool: Mempool {
                    known_valid: vec![op; 4000],
                    pending: vec![],
                },
            },
            EncodeError::SizeLimitExceeded {
                size: 12 + 4000 * 32,
                limit: 128_008,
            },
        );
        refused(
            ShellMessage::CurrentBranch {
                chain_id: ChainId::from_bytes([0; 4]),
                locator: BlockLocator {
                    current_head: header.clone(),
                    history: vec![hash(3); 1001],
                },
            },
            EncodeError::ListTooLong {
                len: 1001,
                max: 1000,
            },
        );
        let step = crate::PathStep::Right {
            left: crate::OperationListListHash::from_bytes([4; 32]),
        };
        refused(
            ShellMessage::OperationsForBlocks(OperationsForBlock {
                block: hash(5),
                validation_pass: 0,
                path: crate::MerklePath(vec![step; 4]),
                operations: vec![],
            }),
            EncodeError::SizeLimitExceeded {
                size: 133,
                limit: 100,
            },
        );
        let big_op = Operation {
            branch: hash(6),
            data: vec![0; 131_072 - 31],
        };
        refused(
            ShellMessage::Operation(big_op.clone()),
            EncodeError::SizeLimitExceeded {
                size: 131_073,
                limit: 131_072,
            },
        );
        let ok_op = Operation {
            branch: hash(6),
            data: vec![0; 131_072 - 32],
        };
        assert!(ShellMessage::Operation(ok_op.clone()).to_bytes().is_ok());
        // 8 operations of 128 KiB fill more than 1 MiB with their sizes.
        refused(
            ShellMessage::OperationsForBlocks(OperationsForBlock {
                block: hash(5),
                validation_pass: 0,
                path: crate::MerklePath::OP,
                operations: vec![ok_op; 8],
            }),
            EncodeError::SizeLimitExceeded {
                size: 8 * (4 + 131_072),
                limit: 1_048_576,
            },
        );
        refused(
            ShellMessage::Protocol(Protocol {
                expected_env_version: 18,
                components: vec![],
            }),
            EncodeError::InvalidValue(crate::types::UNKNOWN_ENV_VERSION),
        );
        refused(
            ShellMessage::Protocol(Protocol {
                expected_env_version: 0,
                components: vec![crate::Component {
                    name: b"Main".to_vec(),
                    interface: None,
                    implementation: vec![b'x'; 2 * 1024 * 1024],
                }],
            }),
            EncodeError::SizeLimitExceeded {
                size: 6 + 4 + 4 + 1 + 4 + 2 * 1024 * 1024,
                limit: 2 * 1024 * 1024,
            },
        );
    }

    #[test]
    fn check_prefix_waits_or_fails_like_the_stream_reader() {
        // Get_current_branch, byte by byte: never an error.
        let whole = hex::decode("0000000600107a06a770").unwrap();
        for n in 0..=whole.len() {
            assert_eq!(ShellMessage::check_prefix(&whole[..n]), Ok(()), "{n}");
        }
        // Trailing bytes beyond the size are the next message's.
        let mut more = whole.clone();
        more.extend_from_slice(&[0xFF; 3]);
        assert_eq!(ShellMessage::check_prefix(&more), Ok(()));
        // A size too small for the tag.
        assert_eq!(
            ShellMessage::check_prefix(&[0, 0, 0, 1]),
            Err(DecodeError::NotEnoughData)
        );
        // A negative size.
        assert!(matches!(
            ShellMessage::check_prefix(&[0x80, 0, 0, 0]),
            Err(DecodeError::InvalidInt { .. })
        ));
        // Unknown tag as soon as it is read.
        assert_eq!(
            ShellMessage::check_prefix(&hex::decode("000000060050").unwrap()),
            Err(DecodeError::UnexpectedTag(0x50))
        );
        // P2P-level tag: not ours.
        assert_eq!(
            ShellMessage::check_prefix(&hex::decode("000000020002").unwrap()),
            Ok(())
        );
        // Get_predecessor_header announced one byte short: the fixed
        // group fails before its bytes arrive.
        assert_eq!(
            ShellMessage::check_prefix(&hex::decode("000000250090").unwrap()),
            Err(DecodeError::NotEnoughData)
        );
        // Protocol with env version 18: known after two bytes.
        assert!(matches!(
            ShellMessage::check_prefix(&hex::decode("0000001000410012").unwrap()),
            Err(DecodeError::InvalidValue(_))
        ));
        assert_eq!(
            ShellMessage::check_prefix(&hex::decode("00000010004100").unwrap()),
            Ok(())
        );
    }

    #[test]
    fn fields_tell_the_message_apart() {
        let m = ShellMessage::GetPredecessorHeader {
            block: hash(9),
            offset: -1,
        };
        let j = m.to_json();
        assert_eq!(j["get_predecessor_header"]["offset"], -1);
        assert_eq!(
            serde_json::from_value::<ShellMessage>(j.clone()).unwrap(),
            m
        );
        assert_eq!(
            ShellMessage::from_json("Get_predecessor_header", &j).unwrap(),
            m
        );
        assert_eq!(ShellMessage::from_octez_json(&j).unwrap(), m);
        assert!(ShellMessage::from_json("Deactivate", &j).is_err());
        assert!(ShellMessage::from_json("Nope", &j).is_err());
        assert!(serde_json::from_value::<ShellMessage>(serde_json::json!({"x": 1})).is_err());
    }
}
