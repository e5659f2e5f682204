//! Helpers of the end-to-end conformance test (`node_shell.rs`): the node
//! crate's test helpers (its `tests/common/shared.rs`: temporary
//! directories, free ports, the node binary as a child process, a tiny
//! HTTP/1.1 client), with the one thing that differs here, where the binary
//! comes from: this crate cannot name another package's binary
//! (`CARGO_BIN_EXE_*` is only set for the package that has it), so it
//! takes the one built beside this test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::SystemTime;

// This crate is never published: it may reach into the node crate.
#[path = "../../../tezos-p2p-node/tests/common/shared.rs"]
mod shared;
pub use shared::*;
#[path = "../../../tezos-p2p-node/tests/common/peer.rs"]
mod peer;
#[allow(unused_imports)] // only the tests that need a peer use it
pub use peer::*;

/// The crates whose sources make up the node binary.
const NODE_SOURCES: [&str; 4] = [
    "tezos-p2p-wire/src",
    "tezos-p2p-shell/src",
    "tezos-p2p/src",
    "tezos-p2p-node/src",
];

/// The node binary: `TEZOS_P2P_NODE_BIN` if set, else the one Cargo built
/// in this test's target directory (`target/<profile>/tezos-p2p-node`,
/// built by `cargo test --workspace` before any test runs). A missing
/// binary, or one older than a source file of the node or of the crates it
/// is made of, fails the test: it is never skipped, and never run against
/// an old build.
pub fn node_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TEZOS_P2P_NODE_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/tezos-p2p-node
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps")
        .join(format!("tezos-p2p-node{}", std::env::consts::EXE_SUFFIX));
    let how = "run `cargo test --workspace` (or `cargo build -p tezos-p2p-node` first); \
               this test must not be skipped";
    let built = bin
        .metadata()
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("no node binary at {} ({e}): {how}", bin.display()));
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("this crate is in crates/");
    for dir in NODE_SOURCES {
        if let Some((file, modified)) = newest(&crates.join(dir)) {
            assert!(
                modified <= built,
                "the node binary {} is older than {}: {how}",
                bin.display(),
                file.display()
            );
        }
    }
    bin
}

/// The most recently modified file under `dir`, with its time.
fn newest(dir: &Path) -> Option<(PathBuf, SystemTime)> {
    let mut best: Option<(PathBuf, SystemTime)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            newest(&path)
        } else {
            let modified = entry.metadata().and_then(|m| m.modified()).ok()?;
            Some((path, modified))
        };
        if let Some(found) = found {
            if best.as_ref().is_none_or(|(_, t)| found.1 > *t) {
                best = Some(found);
            }
        }
    }
    best
}
