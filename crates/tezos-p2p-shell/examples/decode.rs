//! Decodes shell messages given in hex (the `u16` tag then the body, as
//! `tezos-p2p-node`'s `/messages` and Octez's traces show them) and prints
//! each as Octez's JSON; then builds one message and encodes it.
//!
//! ```text
//! cargo run -p tezos-p2p-shell --example decode
//! cargo run -p tezos-p2p-shell --example decode -- 00137a06a770
//! ```

use std::process::ExitCode;

use tezos_p2p_shell::{BlockHash, ShellMessage};

/// `Get_current_branch` and `Get_current_head` on mainnet
/// (`NetXdQprcVkpaWU`), then a message cut short.
const SAMPLES: &[&str] = &["00107a06a770", "00137a06a770", "00137a06"];

/// Prints the message in `hex` as Octez's JSON, or why it does not decode.
fn show(hex: &str) -> bool {
    let decoded = hex::decode(hex.trim())
        .map_err(|e| format!("not hex: {e}"))
        .and_then(|bytes| ShellMessage::from_bytes(&bytes).map_err(|e| e.to_string()));
    match decoded {
        Ok(msg) => {
            println!("{hex}: {} {}", msg.name(), msg.to_json());
            true
        }
        Err(e) => {
            println!("{hex}: does not decode: {e}");
            false
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        let all = args.iter().filter(|hex| !show(hex)).count() == 0;
        return if all {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    for hex in SAMPLES {
        show(hex);
    }
    // The other way: a message built here, as bytes, then decoded again.
    let genesis: BlockHash = "BLockGenesisGenesisGenesisGenesisGenesisf79b5d1CoW2"
        .parse()
        .expect("a block hash");
    let msg = ShellMessage::GetBlockHeaders(vec![genesis]);
    let bytes = msg.to_bytes().expect("within Octez's bounds");
    show(&hex::encode(&bytes));
    ExitCode::SUCCESS
}
