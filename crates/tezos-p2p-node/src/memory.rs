//! Giving memory back to the system after connections close (issue 12).
//!
//! The node allocates with glibc's malloc. A burst of connections spreads
//! their small allocations over the heap; once they close, the freed
//! memory sits in holes below live allocations, which glibc only returns
//! from the top of its heaps: the RSS of 10 000 closed connections stayed
//! at 6 x the idle node's. These settings bring it back (to 1.1 x):
//!
//! * a fixed trim threshold of 256 KiB: by default it grows with the
//!   largest block freed (up to 64 MiB), after which the free top of a
//!   worker thread's arena is never given back (`malloc_trim` trims only
//!   the main arena's top); the mmap threshold is fixed at 2 MiB, so that
//!   messages of a megabyte still come from the heap (at 1 MiB, each 1 MiB
//!   message was mapped and faulted in: a third of the throughput lost),
//!   and the pool's 2 MiB IP greylist filter is a zeroed mapping that
//!   costs no RSS until used (from the heap, it cost 2 MiB whenever its
//!   memory had been used before);
//! * no per-thread cache (`tcache_count=0`): after a burst, the chunks
//!   each worker thread keeps cached are scattered over the heap and pin
//!   their pages (1.4 MiB of RSS after 10 000 connections); no cost was
//!   measured on the socket benchmarks;
//! * no fastbins (`mxfast=0`): small chunks freed into fastbins merge into
//!   a worker arena's top only when consolidated (by `malloc_trim`, say),
//!   which never trims that top: in about 1 run in 5 a worker arena kept
//!   6–12 MiB after the connections closed; without fastbins a free that
//!   reaches the top trims it (≤ 5 % on small messages, within noise);
//! * [`trim_after_closes`] runs `malloc_trim(0)` after closes, at most once
//!   a second, in a blocking thread: it hands every free page inside every
//!   arena back (`MADV_DONTNEED`).
//!
//! The per-thread cache can only be set before the process starts, through
//! `GLIBC_TUNABLES`: [`reexec_with_tunables`] runs the node again (same
//! process, `execve`) with [`TUNABLES`], unless `GLIBC_TUNABLES` is set
//! already. If that fails, [`configure`] sets the thresholds with
//! `mallopt`. Measured against `MALLOC_ARENA_MAX`, mimalloc and jemalloc
//! in BENCHMARKS.md ("Memory per connection").

use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};

use tezos_p2p::events::P2pEvent;

/// Closes after which a trim is worth it.
const TRIM_AFTER_CLOSES: u64 = 64;

/// Trims on the seconds that follow a burst of closes.
const FOLLOW_UP_TRIMS: u32 = 3;

/// Counts the pool's disconnections and trims the heap once a second
/// after [`TRIM_AFTER_CLOSES`] of them (a lagging receiver counts what it
/// missed as closes: it lags only in bursts), and on each of the
/// [`FOLLOW_UP_TRIMS`] seconds after the last such trim: a connection's
/// memory is freed a little after its disconnection is announced, later
/// still under load. Ends with the pool's events.
pub async fn trim_after_closes(mut events: broadcast::Receiver<P2pEvent>) {
    let mut closed = 0u64;
    let mut again = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(P2pEvent::Disconnection { .. }) => closed += 1,
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => closed += n,
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                let burst = closed >= TRIM_AFTER_CLOSES;
                if burst || again > 0 {
                    closed = 0;
                    again = if burst { FOLLOW_UP_TRIMS } else { again - 1 };
                    let _ = tokio::task::spawn_blocking(trim).await;
                }
            }
        }
    }
}

/// glibc's trim threshold: a free top of a heap larger than this goes back
/// to the system at once.
const TRIM_THRESHOLD: i32 = 256 << 10;

/// glibc's mmap threshold: blocks of at least this size are mapped on
/// their own, and unmapped when freed.
const MMAP_THRESHOLD: i32 = 2 << 20;

/// What the node runs with (see the module's documentation).
pub const TUNABLES: &str = "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0:glibc.malloc.trim_threshold=262144:glibc.malloc.mmap_threshold=2097152";

/// Runs this program again with `GLIBC_TUNABLES` set to [`TUNABLES`],
/// unless it is set already (by us, or by the user, whose settings win).
/// `execve` keeps the process id, its descriptors and its arguments; it
/// returns only if it fails, and then the node runs as it is. To be
/// called first thing, while there is one thread.
pub fn reexec_with_tunables() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("GLIBC_TUNABLES").is_some() {
            return;
        }
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new("/proc/self/exe");
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        let _failed = cmd.args(args).env("GLIBC_TUNABLES", TUNABLES).exec();
    }
}

/// Fixes glibc's thresholds (see the module's documentation), unless the
/// environment sets glibc's malloc tunables. To be called before the
/// runtime starts.
pub fn configure() {
    let tuned = [
        "GLIBC_TUNABLES",
        "MALLOC_TRIM_THRESHOLD_",
        "MALLOC_MMAP_THRESHOLD_",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    if tuned {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc's parameters, under its lock.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns the heap's free pages to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas, under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
