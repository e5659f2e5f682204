//! Sans-IO codec for the Octez shell ("distributed_db") P2P messages, tags
//! `0x10`–`0x91`, byte for byte as `shared/spec/shell-messages.md` gives
//! them (section numbers below refer to it).
//!
//! [`ShellMessage`] implements the wire crate's
//! [`AppMessage`](tezos_p2p_wire::message::AppMessage), so it plugs into
//! `tezos_p2p_wire::message::MessageDecoder` and into the connection pool
//! of the `tezos-p2p` crate as its application message type:
//! `tezos_p2p::Net<ShellMessage, OctezMetadata, P>` is a pool of Octez
//! connections carrying shell messages, `OctezMetadata` being the wire
//! crate's connection metadata and `P` whatever per-peer data the
//! application keeps.
//!
//! ```
//! use tezos_p2p_shell::{ChainId, ShellMessage};
//! use tezos_p2p_wire::message::{MessageDecoder, P2pMessage};
//!
//! // What a peer sends first: u32 size, u16 tag 0x10, the chain id.
//! let wire = [0, 0, 0, 6, 0x00, 0x10, 0x7a, 0x06, 0xa7, 0x70];
//! let mut decoder = MessageDecoder::<ShellMessage>::new();
//! decoder.feed(&wire);
//! let (used, msg) = decoder.next()?.expect("a whole message");
//! assert_eq!(used, wire.len());
//!
//! let P2pMessage::Message(msg) = msg else { panic!("a shell message") };
//! let mainnet: ChainId = "NetXdQprcVkpaWU".parse()?;
//! assert_eq!(msg, ShellMessage::GetCurrentBranch(mainnet));
//! assert_eq!(msg.name(), "Get_current_branch");
//! assert_eq!(msg.to_json(), serde_json::json!({ "get_current_branch": "NetXdQprcVkpaWU" }));
//! assert_eq!(ShellMessage::from_json("Get_current_branch", &msg.to_json())?, msg);
//! assert_eq!(msg.to_bytes()?, &wire[4..]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Decoding
//!
//! Decoding reproduces Octez's stream reader (`Data_encoding.Binary.read_stream`,
//! which `P2p_socket` uses), including which error it raises:
//! [`DecodeError::octez_class`](tezos_p2p_wire::encoding::DecodeError::octez_class)
//! of an error is the `read_error` constructor Octez would report. Octez
//! checks every read against the announced sizes and the `check_size`
//! bounds before the bytes arrive, so [`ShellMessage::check_prefix`] can
//! tell, from the first bytes of a message, whether Octez would already
//! have rejected it. [`AppMessage::max_size`](tezos_p2p_wire::message::AppMessage::max_size)
//! gives the exact per-tag bounds of §2.9, which the wire crate's decoder
//! checks before buffering a body.
//!
//! Allocations are bounded by the input: vectors are sized from the bytes
//! present, never from an announced count.
//!
//! # Encoding
//!
//! Encoding refuses what Octez's writer refuses (request lists over 10,
//! headers over 8 MiB, mempools over 3 999 hashes, paths deeper than 3,
//! operations over 128 KiB, operation lists over 1 MiB, protocols over 2
//! MiB, locators over 1 000 hashes, unknown environment versions), and then
//! writes nothing. Mempool lists and fitnesses keep their order, so a
//! decoded message re-encodes to the same bytes (except a protocol's
//! interface presence byte, always written `ff`).
//!
//! # JSON
//!
//! `serde_json::to_value(&msg)` (or [`ShellMessage::to_json`]) is Octez's
//! JSON of the message's fields, the object under the message in Octez's
//! `P2p_message` JSON, without the name: hashes and chain ids as their
//! Base58Check text, byte strings as hex, timestamps as RFC 3339 (see
//! [`BlockHeader::timestamp_rfc3339`]), the Merkle path as the list of its steps ending with
//! `{"case": "Op"}`, protocol texts as strings (`{"hex": …}` if not UTF-8),
//! an absent interface omitted. Deserializing reads the same object and
//! tells the message from its keys, as Octez's JSON union does;
//! [`ShellMessage::from_json`] takes the case title as well. Both refuse a
//! message that could not be encoded. Computed values (hashes, Merkle
//! roots) are methods: [`BlockHeader::hash`], [`BlockLocator::head_hash`],
//! [`Operation::hash`], [`Protocol::hash`], [`Mempool::sorted_unique`],
//! [`OperationsForBlock::operation_list_hash`],
//! [`OperationsForBlock::path_root_and_position`].

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod cursor;
mod fitness;
pub mod hash;
mod json;
pub mod merkle;
pub mod message;
mod time;
pub mod types;

pub use fitness::Fitness;
pub use hash::{
    BlockHash, ChainId, ContextHash, OperationHash, OperationListHash, OperationListListHash,
    ParseHashError, ProtocolHash,
};
pub use merkle::{operation_list_hash, operation_list_list_hash, MerklePath, PathStep};
pub use message::ShellMessage;
pub use types::{
    BlockHeader, BlockLocator, Component, Mempool, Operation, OperationsForBlock, Protocol,
};
