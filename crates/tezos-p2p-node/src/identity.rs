//! `identity generate` and `identity show`, and loading `identity.json`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use tezos_p2p_wire::identity::{Identity, PowSearch, PowTarget, Progress};

/// Reads `path` (Octez's `identity.json`), checking the PoW against
/// `expected` when given.
pub fn load(path: &Path, expected: Option<&PowTarget>) -> Result<Identity, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read identity file {}: {e}", path.display()))?;
    Identity::from_json(&text, expected)
        .map_err(|e| format!("invalid identity file {}: {e}", path.display()))
}

/// Writes `identity` to `path` (mode 0600, atomically).
pub fn save(path: &Path, identity: &Identity) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot write identity file {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("json.tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(err)?;
        f.write_all(identity.to_json().as_bytes()).map_err(err)?;
        f.write_all(b"\n").map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

fn human_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.1} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

fn human_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Generates an identity at `level`, reporting progress on stderr: a
/// redrawn bar on a terminal, a plain line every few seconds otherwise.
pub fn generate(level: f64) -> Result<Identity, String> {
    let target = PowTarget::new(level)
        .map_err(|_| format!("invalid proof-of-work level {level}: must be in 0..=256"))?;
    let tty = std::io::stderr().is_terminal();
    eprintln!("generating an identity with proof-of-work level {level} (about 2^{level} attempts)");
    let search = PowSearch {
        progress_every: if tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        },
        ..PowSearch::default()
    };
    let mut drew = false;
    let identity = Identity::generate(&target, &search, |p: &Progress| {
        let frac = p.attempts as f64 / p.expected_attempts.max(1.0);
        let eta = (p.expected_attempts - p.attempts as f64) / p.rate.max(1.0);
        let eta = if eta > 0.0 {
            format!("ETA {}", human_secs(eta))
        } else {
            "ETA any moment (past the expected count)".to_owned()
        };
        if tty {
            let width = 30;
            let filled = ((frac.min(1.0)) * width as f64) as usize;
            eprint!(
                "\r[{}{}] {:>3.0}%  {} attempts  {}  {}   ",
                "#".repeat(filled),
                "-".repeat(width - filled),
                (frac * 100.0).min(999.0),
                p.attempts,
                human_rate(p.rate),
                eta
            );
            drew = true;
        } else {
            eprintln!(
                "progress: {} attempts ({:.0}% of expected), {}, elapsed {}, {}",
                p.attempts,
                frac * 100.0,
                human_rate(p.rate),
                human_secs(p.elapsed.as_secs_f64()),
                eta
            );
        }
    })
    .ok_or("identity generation was cancelled")?;
    if drew {
        eprintln!();
    }
    Ok(identity)
}

/// `identity generate`.
pub fn cmd_generate(dir: &Path, level: f64, force: bool) -> Result<(), String> {
    let path = dir.join("identity.json");
    if path.exists() && !force {
        return Err(format!(
            "{} already exists; use --force to overwrite it",
            path.display()
        ));
    }
    let identity = generate(level)?;
    save(&path, &identity)?;
    eprintln!("identity written to {}", path.display());
    println!("{}", identity.peer_id);
    Ok(())
}

/// `identity show`.
pub fn cmd_show(dir: &Path) -> Result<(), String> {
    let identity = load(&dir.join("identity.json"), None)?;
    println!("peer_id: {}", identity.peer_id);
    println!("public_key: {}", hex::encode(identity.public_key.0));
    println!("proof_of_work_level: {}", identity.pow_level());
    Ok(())
}
