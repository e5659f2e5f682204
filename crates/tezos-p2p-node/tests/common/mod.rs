//! Helpers of the end-to-end tests: temporary directories, free ports, the
//! built binary as a child process, a tiny HTTP/1.1 client, and a test peer
//! (`peer.rs`). They are in `shared.rs` and `peer.rs`, which the conformance crate's tests include too; this file
//! supplies what differs: the binary, which Cargo builds for this crate's
//! tests.

#![allow(dead_code)]

use std::path::PathBuf;

mod peer;
mod shared;
#[allow(unused_imports)] // only the tests that need a peer use it
pub use peer::*;
pub use shared::*;

/// The node binary Cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_tezos-p2p-node");

/// The binary the helpers run: [`BIN`].
pub fn node_bin() -> PathBuf {
    BIN.into()
}
