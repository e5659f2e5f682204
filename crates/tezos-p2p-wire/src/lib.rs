//! Sans-IO core of the Tezos (Octez) peer-to-peer protocol.
//!
//! No async runtime, no sockets and no clocks: every type here takes bytes
//! and returns bytes and events, so it can be fuzzed, property-tested and
//! driven by any runtime. The byte-level rules are those of
//! `shared/spec/wire-protocol.md`; section numbers in the docs refer to it.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod crypto;
pub mod discovery;
pub mod encoding;
pub mod handshake;
pub mod identity;
pub mod message;
pub mod point;
pub mod rejection;
pub mod version;
