//! `identity generate` and `identity show`, and loading `identity.json`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use tezos_p2p_wire::identity::{Identity, PowSearch, PowTarget, Progress};

use crate::config::UsageError;

/// Reads `path` (Octez's `identity.json`), checking the PoW against
/// `expected` when given.
pub fn load(path: &Path, expected: Option<&PowTarget>) -> Result<Identity> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read identity file {}", path.display()))?;
    Identity::from_json(&text, expected)
        .map_err(|e| anyhow!("invalid identity file {}: {e}", path.display()))
}

/// Writes `identity` to `path` (mode 0600, atomically).
pub fn save(path: &Path, identity: &Identity) -> Result<()> {
    let err = |e: std::io::Error| anyhow!("cannot write identity file {}: {e}", path.display());
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

fn eta(p: &Progress) -> String {
    let left = (p.expected_attempts - p.attempts as f64) / p.rate.max(1.0);
    if left > 0.0 {
        format!("ETA {}", human_secs(left))
    } else {
        "ETA any moment (past the expected count)".to_owned()
    }
}

/// Generates an identity at `level`, reporting progress on stderr: a
/// progress bar on a terminal (cleared when the search ends, however early),
/// a plain line every few seconds otherwise.
pub fn generate(level: f64) -> Result<Identity> {
    let target = PowTarget::new(level).map_err(|_| {
        UsageError(format!(
            "invalid proof-of-work level {level}: must be in 0..=256"
        ))
    })?;
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
    // The bar's length is the expected number of attempts, in thousands
    // (it may run past it: the search is a lottery).
    let bar = if tty {
        let expected = (2f64.powf(level) / 1000.0).ceil().max(1.0) as u64;
        let bar = ProgressBar::with_draw_target(Some(expected), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("[{bar:30}] {percent:>3}%  {msg}")
                .expect("a valid template")
                .progress_chars("#>-"),
        );
        Some(bar)
    } else {
        None
    };
    let start = std::time::Instant::now();
    let identity = Identity::generate(&target, &search, |p: &Progress| {
        if let Some(bar) = &bar {
            bar.set_position(p.attempts / 1000);
            bar.set_message(format!(
                "{} attempts  {}  {}",
                p.attempts,
                human_rate(p.rate),
                eta(p)
            ));
        } else {
            eprintln!(
                "progress: {} attempts ({:.0}% of expected), {}, elapsed {}, {}",
                p.attempts,
                p.attempts as f64 / p.expected_attempts.max(1.0) * 100.0,
                human_rate(p.rate),
                human_secs(p.elapsed.as_secs_f64()),
                eta(p)
            );
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let identity = identity.ok_or_else(|| anyhow!("identity generation was cancelled"))?;
    eprintln!(
        "identity found in {}",
        human_secs(start.elapsed().as_secs_f64())
    );
    Ok(identity)
}

/// `identity generate`.
pub fn cmd_generate(dir: &Path, level: f64, force: bool) -> Result<()> {
    let path = dir.join("identity.json");
    if path.exists() && !force {
        bail!(
            "{} already exists; use --force to overwrite it",
            path.display()
        );
    }
    let identity = generate(level)?;
    save(&path, &identity)?;
    eprintln!("identity written to {}", path.display());
    println!("{}", identity.peer_id);
    Ok(())
}

/// `identity show`.
pub fn cmd_show(dir: &Path) -> Result<()> {
    let identity = load(&dir.join("identity.json"), None)?;
    println!("peer_id: {}", identity.peer_id);
    println!("public_key: {}", hex::encode(identity.public_key.0));
    println!("proof_of_work_level: {}", identity.pow_level());
    Ok(())
}
