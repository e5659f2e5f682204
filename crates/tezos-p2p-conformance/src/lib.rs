//! Conformance tests of the tezos-p2p crates, never published.
//!
//! The tests in `tests/` check the published crates against the shared
//! conformance vectors, which live beside the checkout (`../shared/vectors`)
//! and so cannot ship in any published crate:
//!
//! - `vectors_crypto.rs`, `vectors_messages.rs`, `vectors_sessions.rs`:
//!   `tezos-p2p-wire` (identities, proof of work, nonces, chunks, messages,
//!   captured sessions);
//! - `shell_vectors.rs`: `tezos-p2p-shell` (every shell message);
//! - `node_shell.rs`: the `tezos-p2p-node` binary on mainnet with a real
//!   `Current_head` (the binary `cargo test --workspace` builds).
//!
//! A missing vector folder fails them; they are never skipped. The
//! workspace README's examples and every published crate's README are
//! compiled and run here as doctests.

/// The workspace README's examples.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct WorkspaceReadme;

/// `tezos-p2p-wire`'s README.
#[doc = include_str!("../../tezos-p2p-wire/README.md")]
#[cfg(doctest)]
pub struct WireReadme;

/// `tezos-p2p-shell`'s README.
#[doc = include_str!("../../tezos-p2p-shell/README.md")]
#[cfg(doctest)]
pub struct ShellReadme;

/// `tezos-p2p-node`'s README.
#[doc = include_str!("../../tezos-p2p-node/README.md")]
#[cfg(doctest)]
pub struct NodeReadme;

use std::path::PathBuf;

use serde_json::Value;

/// The shared vectors' folder, `<workspace>/../shared/vectors`. Panics when
/// it is missing: the tests that read it fail, they are never skipped.
pub fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors");
    assert!(
        dir.is_dir(),
        "test vectors folder not found at {} (expected <workspace>/../shared/vectors); \
         these tests must not be skipped",
        dir.display()
    );
    dir
}

/// The `vectors` array of one file of the shared vectors. Panics when the
/// folder or the file is missing or malformed.
pub fn load_vectors(file: &str) -> Vec<Value> {
    let path = vectors_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}); refusing to skip", path.display()));
    let json: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    json["vectors"]
        .as_array()
        .unwrap_or_else(|| panic!("{} has no `vectors` array", path.display()))
        .clone()
}
