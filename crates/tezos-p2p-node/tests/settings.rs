//! The binary's settings, through `run --dry-run` (which prints the pool's
//! configuration and limits as JSON and exits): units, defaults, layers
//! (config file < environment < flags), octez-node's config.json; and the
//! exit statuses and shell completions.

mod common;

use std::process::{Command, Output, Stdio};

use common::{stderr, stdout, TempDir, BIN};
use serde_json::Value;

/// Runs the binary with `env` set and every other TEZOS_P2P_ variable
/// removed.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("TEZOS_P2P_") {
            c.env_remove(k);
        }
    }
    c.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

/// `run --dry-run` with a fresh data directory: the printed JSON.
fn dry_run(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Value {
    let d = dir.arg();
    let mut a = vec!["run", "--dry-run", "--data-dir", &d];
    a.extend_from_slice(args);
    let o = run_env(&a, env);
    assert!(o.status.success(), "{a:?}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

#[test]
fn speeds_in_bytes_per_second_reach_the_limits() {
    let dir = TempDir::new("speed");
    let v = dry_run(
        &dir,
        &["--max-download-speed", "1000", "--max-upload-speed", "3000"],
        &[],
    );
    assert_eq!(v["limits"]["max_download_speed"], 1000);
    assert_eq!(v["limits"]["max_upload_speed"], 3000);
}

#[test]
fn binary_chunks_size_is_in_kb() {
    let dir = TempDir::new("chunks");
    let v = dry_run(&dir, &["--binary-chunks-size", "8"], &[]);
    assert_eq!(v["limits"]["binary_chunks_size"], 8192);
}

#[test]
fn a_peer_without_a_port_gets_9732() {
    let dir = TempDir::new("port");
    let v = dry_run(
        &dir,
        &[
            "--network",
            "p2p-node",
            "--peer",
            "10.1.2.3",
            "--peer",
            "[2001:db8::7]",
            "--net-addr",
            "127.0.0.1",
        ],
        &[],
    );
    assert_eq!(
        v["config"]["trusted_points"],
        serde_json::json!(["10.1.2.3:9732", "[2001:db8::7]:9732"])
    );
    assert_eq!(v["config"]["listening_addr"], "127.0.0.1:9732");
}

#[test]
fn a_file_true_is_turned_off_by_a_flag_false() {
    let dir = TempDir::new("bool");
    let file = dir.path().join("node.json");
    std::fs::write(&file, r#"{"private-mode": true, "disable-mempool": true}"#).unwrap();
    let f = file.to_str().unwrap();
    let v = dry_run(&dir, &["--config-file", f], &[]);
    assert_eq!(v["config"]["private_mode"], true);
    assert_eq!(v["config"]["disable_mempool"], true);
    let v = dry_run(
        &dir,
        &[
            "--config-file",
            f,
            "--private-mode=false",
            "--disable-mempool=false",
        ],
        &[],
    );
    assert_eq!(v["config"]["private_mode"], false);
    assert_eq!(v["config"]["disable_mempool"], false);
}

#[test]
fn an_env_var_is_used_and_a_flag_overrides_it() {
    let dir = TempDir::new("env");
    let file = dir.path().join("config.json");
    // The file is below the environment.
    std::fs::write(&file, r#"{"max-connections": 30, "min-connections": 2}"#).unwrap();
    let env = [
        ("TEZOS_P2P_MAX_CONNECTIONS", "77"),
        ("TEZOS_P2P_PRIVATE_MODE", "true"),
    ];
    let v = dry_run(&dir, &[], &env);
    assert_eq!(v["limits"]["max_connections"], 77);
    assert_eq!(v["limits"]["min_connections"], 2);
    assert_eq!(v["config"]["private_mode"], true);
    let v = dry_run(
        &dir,
        &["--max-connections", "88", "--private-mode=false"],
        &env,
    );
    assert_eq!(v["limits"]["max_connections"], 88);
    assert_eq!(v["config"]["private_mode"], false);
}

#[test]
fn an_octez_node_config_json_is_accepted() {
    let dir = TempDir::new("octez");
    let file = dir.path().join("config.json");
    std::fs::write(
        &file,
        r#"{
  "data-dir": "/var/lib/tezos/node",
  "rpc": { "listen-addrs": [ "0.0.0.0:8732" ], "acl": [] },
  "p2p": {
    "bootstrap-peers": [ "10.0.0.1", "10.0.0.2:19732", "[fd00::5]" ],
    "listen-addr": "0.0.0.0:9740",
    "expected-proof-of-work": 0,
    "disable_mempool": true,
    "limits": {
      "connection-timeout": 7.5,
      "min-connections": 4,
      "expected-connections": 8,
      "max-connections": 16,
      "max-download-speed": 100,
      "max-upload-speed": 50,
      "max_known_points": [ 500, 400 ],
      "max_known_peer_ids": [ 600, 450 ],
      "ip_greylist_cleanup_delay": 7200,
      "maintenance-idle-time": null,
      "swap-linger": 10
    }
  },
  "log": { "output": "stdout" },
  "shell": { "chain_validator": { "synchronisation_threshold": 2 } },
  "network": "ghostnet"
}"#,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let d = dir.arg();
    let o = run_env(
        &["run", "--dry-run", "--data-dir", &d, "--config-file", f],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // One line about the sections ignored.
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("data-dir, log, rpc, shell"), "{err}");
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let l = &v["limits"];
    assert_eq!(l["connection_timeout"], 7.5);
    assert_eq!(
        (
            &l["min_connections"],
            &l["expected_connections"],
            &l["max_connections"]
        ),
        (&4.into(), &8.into(), &16.into())
    );
    // KiB/s in octez-node's file.
    assert_eq!(l["max_download_speed"], 100 * 1024);
    assert_eq!(l["max_upload_speed"], 50 * 1024);
    assert_eq!(l["max_known_points"], serde_json::json!([500, 400]));
    assert_eq!(l["max_known_peer_ids"], serde_json::json!([600, 450]));
    assert_eq!(l["ip_greylist_cleanup_delay"], 7200.0);
    assert_eq!(l["maintenance_idle_time"], Value::Null);
    assert_eq!(l["swap_linger"], 10.0);
    let c = &v["config"];
    assert_eq!(c["listening_addr"], "0.0.0.0:9740");
    assert_eq!(c["disable_mempool"], true);
    assert_eq!(
        c["trusted_points"],
        serde_json::json!(["10.0.0.1:9732", "10.0.0.2:19732", "[fd00::5]:9732"])
    );
    assert_eq!(v["chain_id"], "NetXnHfVqm9iesp");
    // Flags still win over it, the maintenance included.
    let v = dry_run(
        &dir,
        &[
            "--config-file",
            f,
            "--max-connections",
            "20",
            "--disable-p2p-maintenance=false",
            "--no-bootstrap-peers",
        ],
        &[],
    );
    assert_eq!(v["limits"]["max_connections"], 20);
    assert_eq!(v["limits"]["maintenance_idle_time"], 120.0);
    assert_eq!(v["config"]["trusted_points"], serde_json::json!([]));
}

#[test]
fn bash_completions_are_printed() {
    let o = run_env(&["completions", "bash"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("tezos-p2p-node") && out.contains("--net-addr"),
        "{out}"
    );
}

#[test]
fn usage_errors_exit_2_and_runtime_failures_exit_1() {
    let dir = TempDir::new("exit");
    let d = dir.arg();
    // clap's usage error, whole, with its suggestion.
    let o = run_env(&["run", "--data-dir", &d, "--privat-mode"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--private-mode"), "{}", stderr(&o));
    // An invalid value from the environment is a usage error too.
    let o = run_env(
        &["run", "--dry-run", "--data-dir", &d],
        &[("TEZOS_P2P_CONNECTIONS", "1000")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--connections"), "{}", stderr(&o));
    // A broken identity file is a runtime failure.
    std::fs::write(dir.path().join("identity.json"), "{ not json").unwrap();
    let o = run_env(
        &[
            "run",
            "--data-dir",
            &d,
            "--net-addr",
            "127.0.0.1:0",
            "--rpc-addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("identity"), "{}", stderr(&o));
    // Help is success.
    assert_eq!(run_env(&["run", "--help"], &[]).status.code(), Some(0));
}
