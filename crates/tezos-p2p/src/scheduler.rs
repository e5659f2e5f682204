//! The IO scheduler: global bandwidth quotas and moving-average statistics
//! (pool-behaviour.md §5, "IO scheduler and statistics").
//!
//! One [`IoScheduler`] is shared by every connection of a pool. Each
//! connection (including one still in its handshake) registers once and gets
//! a [`ConnectionIo`]; its reader task asks [`ConnectionIo::reserve_read`] how
//! many bytes it may read, reads, and then calls [`ConnectionIo::record_read`]
//! with what it actually read (the writer does the same with the `_write`
//! pair).
//!
//! * **Statistics (§5.5).** Every direction has a global counter and one per
//!   connection. A single ticker task updates all the moving averages once per
//!   second: `average := 200 × current / elapsed_ms + 800 × average / 1000`
//!   (integer arithmetic, `current` = bytes since the previous tick). The
//!   global counters keep the history of closed connections.
//! * **Global caps (§5.4 step 2).** `max_download_speed` / `max_upload_speed`
//!   are token buckets refilled once per second with
//!   `quota := min(quota, 0) + max_speed`: over-consumption carries over as
//!   debt, unused credit does not accumulate. A reservation waits while the
//!   quota is exhausted; one grant may overdraw it (as one Octez chunk may).
//! * **Fairness.** Waiting reservations of a direction are served first come,
//!   first served (a FIFO-fair async mutex is the queue) and each grant is
//!   capped to a quantum (at most `read_buffer_size`, and at most a tenth of
//!   the per-second cap), so the connections that compete for a capped
//!   direction interleave and each gets an equal share. This replaces
//!   Octez's `high`/`low` queues and per-connection quotas (§5.4 steps 1
//!   and 3), which only reorder the same waiters.
//! * **No cap, no cost.** Without a cap a reservation never waits and
//!   recording is two relaxed atomic additions: no lock on the hot path.
//!
//! The scheduler uses [`tokio::time`], so it runs unchanged under a paused
//! test clock.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Mutex as FifoMutex, Notify};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// How often the moving averages are updated and the quotas refilled
/// (Octez's `refresh_interval`, §5.5).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Octez's default `read_buffer_size`: bytes per socket read (§10.1).
pub const DEFAULT_READ_BUFFER_SIZE: usize = 16 * 1024;

/// Weight of the instantaneous rate in the moving average, per mille (§5.5).
const ALPHA_PER_MILLE: u128 = 200;

/// Configuration of an [`IoScheduler`]; `Default` is Octez's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Global download cap in bytes per second; `None` (Octez's default)
    /// means unlimited. `Some(0)` is treated as unlimited too, since a zero
    /// cap would stall every connection forever.
    pub max_download_speed: Option<u64>,
    /// Global upload cap in bytes per second; `None` (the default) means
    /// unlimited. `Some(0)` is treated as unlimited.
    pub max_upload_speed: Option<u64>,
    /// Largest number of bytes a reader reads at once (default 16 384).
    /// Zero is treated as one.
    pub read_buffer_size: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_download_speed: None,
            max_upload_speed: None,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
        }
    }
}

/// Traffic statistics of a connection or of the whole scheduler, as Octez's
/// `P2p_stat.t` (§5.5).
///
/// The JSON form is Octez's: `total_sent` and `total_recv` are `int64`, which
/// Octez's data-encoding writes as decimal strings; the rates are numbers.
/// Deserialisation accepts the totals as strings or numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stat {
    /// Bytes sent since the start.
    #[serde(with = "int64_json")]
    pub total_sent: u64,
    /// Bytes received since the start.
    #[serde(with = "int64_json")]
    pub total_recv: u64,
    /// Moving average of the download rate, in bytes per second.
    pub current_inflow: u64,
    /// Moving average of the upload rate, in bytes per second.
    pub current_outflow: u64,
}

/// Octez's JSON encoding of `int64`: a decimal string.
mod int64_json {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        struct Int64;
        impl Visitor<'_> for Int64 {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative int64 as a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
                v.parse::<u64>().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
                u64::try_from(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Int64)
    }
}

/// One step of Octez's moving average (§5.5), in integer arithmetic:
/// `200 × current / elapsed_ms + 800 × average / 1000`.
fn moving_average(average: u64, current: u64, elapsed_ms: u64) -> u64 {
    let elapsed_ms = u128::from(elapsed_ms.max(1));
    let instant = ALPHA_PER_MILLE * u128::from(current) / elapsed_ms;
    let decayed = (1000 - ALPHA_PER_MILLE) * u128::from(average) / 1000;
    u64::try_from(instant + decayed).unwrap_or(u64::MAX)
}

/// A byte counter with its moving average. `total` is written by the IO
/// tasks; `last_total` and `average` only by the ticker, so "bytes since the
/// last tick" needs no second atomic on the hot path.
#[derive(Default)]
struct Counter {
    total: AtomicU64,
    last_total: AtomicU64,
    average: AtomicU64,
}

impl Counter {
    fn add(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn average(&self) -> u64 {
        self.average.load(Ordering::Relaxed)
    }

    fn tick(&self, elapsed_ms: u64) {
        let total = self.total();
        let last = self.last_total.swap(total, Ordering::Relaxed);
        let current = total.wrapping_sub(last);
        let average = moving_average(self.average(), current, elapsed_ms);
        self.average.store(average, Ordering::Relaxed);
    }
}

/// One direction (download or upload) of the scheduler.
struct Lane {
    counter: Counter,
    /// The cap in B/s, if any.
    max_speed: Option<u64>,
    /// The token bucket; meaningful only with a cap.
    quota: AtomicI64,
    /// Largest grant while capped.
    quantum: usize,
    /// The FIFO of waiting reservations: whoever holds it is next in line.
    turn: FifoMutex<()>,
    /// Signalled when the quota is refilled or the scheduler shuts down.
    refilled: Notify,
}

impl Lane {
    fn new(max_speed: Option<u64>, read_buffer_size: usize) -> Self {
        let max_speed = max_speed.filter(|&speed| speed > 0);
        let quantum = match max_speed {
            Some(speed) => {
                let tenth = usize::try_from(speed / 10).unwrap_or(usize::MAX);
                read_buffer_size.min(tenth.max(1))
            }
            None => read_buffer_size,
        };
        Lane {
            counter: Counter::default(),
            max_speed,
            // The first second gets a full bucket.
            quota: AtomicI64::new(max_speed.map_or(0, saturating_i64)),
            quantum,
            turn: FifoMutex::new(()),
            refilled: Notify::new(),
        }
    }

    /// Waits for the turn and a positive quota, then returns the grant.
    /// `uncapped` is the grant when there is no cap.
    async fn reserve(&self, closed: &AtomicBool, want: usize, uncapped: usize) -> usize {
        if want == 0 {
            return 0;
        }
        if self.max_speed.is_none() || closed.load(Ordering::Acquire) {
            return uncapped;
        }
        // Held across the wait on purpose: the async mutex is the FIFO queue
        // that makes competing connections take turns.
        let _turn = self.turn.lock().await;
        loop {
            let refilled = self.refilled.notified();
            tokio::pin!(refilled);
            // Register before checking, so a refill between the check and
            // the await is not missed.
            refilled.as_mut().enable();
            if closed.load(Ordering::Acquire) || self.quota.load(Ordering::Acquire) > 0 {
                break;
            }
            refilled.await;
        }
        want.min(self.quantum)
    }

    fn record(&self, n: u64) {
        self.counter.add(n);
        if self.max_speed.is_some() {
            self.quota.fetch_sub(saturating_i64(n), Ordering::AcqRel);
        }
    }

    /// §5.4 step 2: debt carries over, credit does not accumulate.
    fn refill(&self) {
        if let Some(speed) = self.max_speed {
            let speed = saturating_i64(speed);
            let _ = self
                .quota
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |quota| {
                    Some(quota.min(0).saturating_add(speed))
                });
            self.refilled.notify_waiters();
        }
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Per-connection counters, shared by the [`ConnectionIo`] and the ticker.
#[derive(Default)]
struct ConnCounters {
    read: Counter,
    write: Counter,
}

impl ConnCounters {
    fn stat(&self) -> Stat {
        Stat {
            total_sent: self.write.total(),
            total_recv: self.read.total(),
            current_inflow: self.read.average(),
            current_outflow: self.write.average(),
        }
    }
}

struct Inner {
    read: Lane,
    write: Lane,
    read_buffer_size: usize,
    connections: Mutex<HashMap<u64, Arc<ConnCounters>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    shutdown: CancellationToken,
}

impl Inner {
    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnCounters>>> {
        // The map stays consistent even if a holder panicked.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn tick(&self, elapsed_ms: u64) {
        self.read.counter.tick(elapsed_ms);
        self.write.counter.tick(elapsed_ms);
        for conn in self.connections().values() {
            conn.read.tick(elapsed_ms);
            conn.write.tick(elapsed_ms);
        }
        self.read.refill();
        self.write.refill();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.shutdown.cancel();
        self.read.refilled.notify_waiters();
        self.write.refilled.notify_waiters();
    }

    fn stat(&self) -> Stat {
        Stat {
            total_sent: self.write.counter.total(),
            total_recv: self.read.counter.total(),
            current_inflow: self.read.counter.average(),
            current_outflow: self.write.counter.average(),
        }
    }
}

/// Shuts the scheduler down when the last [`IoScheduler`] clone goes away.
struct Owner {
    inner: Arc<Inner>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.inner.close();
    }
}

/// The bandwidth scheduler and statistics of a pool (§5). Cloning is cheap
/// and every clone is the same scheduler.
///
/// It owns one ticker task, which ends when [`IoScheduler::shutdown`] is
/// called or the last clone is dropped. After that, reservations no longer
/// wait (so connections can drain and close) and averages no longer move.
#[derive(Clone)]
pub struct IoScheduler {
    owner: Arc<Owner>,
}

impl fmt::Debug for IoScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.owner.inner;
        f.debug_struct("IoScheduler")
            .field("max_download_speed", &inner.read.max_speed)
            .field("max_upload_speed", &inner.write.max_speed)
            .field("read_buffer_size", &inner.read_buffer_size)
            .field("connections", &self.connections())
            .field("closed", &self.is_shutdown())
            .finish()
    }
}

impl IoScheduler {
    /// Creates the scheduler and spawns its ticker task.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn new(cfg: SchedulerConfig) -> Self {
        let read_buffer_size = cfg.read_buffer_size.max(1);
        let inner = Arc::new(Inner {
            read: Lane::new(cfg.max_download_speed, read_buffer_size),
            write: Lane::new(cfg.max_upload_speed, read_buffer_size),
            read_buffer_size,
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(ticker(Arc::clone(&inner)));
        IoScheduler {
            owner: Arc::new(Owner { inner }),
        }
    }

    /// Registers a connection (also one still in its handshake). Dropping
    /// the returned handle unregisters it.
    pub fn register(&self) -> ConnectionIo {
        let inner = Arc::clone(&self.owner.inner);
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let counters = Arc::new(ConnCounters::default());
        inner.connections().insert(id, Arc::clone(&counters));
        ConnectionIo {
            id,
            counters,
            inner,
        }
    }

    /// Global statistics since the start, including the traffic of closed
    /// connections and of handshakes (`P2p.global_stat`, RPC `/network/stat`).
    pub fn stat(&self) -> Stat {
        self.owner.inner.stat()
    }

    /// The largest read a reader is granted at once.
    pub fn read_buffer_size(&self) -> usize {
        self.owner.inner.read_buffer_size
    }

    /// Number of registered connections.
    pub fn connections(&self) -> usize {
        self.owner.inner.connections().len()
    }

    /// Stops the ticker and releases every waiting reservation; later
    /// reservations are granted without waiting. Idempotent.
    pub fn shutdown(&self) {
        self.owner.inner.close();
    }

    /// Whether [`IoScheduler::shutdown`] was called.
    pub fn is_shutdown(&self) -> bool {
        self.owner.inner.closed.load(Ordering::Acquire)
    }
}

/// Updates the averages and refills the quotas every [`REFRESH_INTERVAL`]
/// until the scheduler shuts down.
async fn ticker(inner: Arc<Inner>) {
    let shutdown = inner.shutdown.clone();
    let mut last = Instant::now();
    let mut interval = tokio::time::interval_at(last + REFRESH_INTERVAL, REFRESH_INTERVAL);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            now = interval.tick() => {
                let elapsed = now.saturating_duration_since(last);
                last = now;
                let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
                inner.tick(elapsed_ms);
            }
        }
    }
    tracing::trace!("IO scheduler ticker stopped");
}

/// One connection's handle on the [`IoScheduler`]: its reservations, its
/// byte counts and its statistics. Dropping it unregisters the connection
/// (the global statistics keep its history).
pub struct ConnectionIo {
    id: u64,
    counters: Arc<ConnCounters>,
    inner: Arc<Inner>,
}

impl fmt::Debug for ConnectionIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionIo")
            .field("id", &self.id)
            .field("stat", &self.stat())
            .finish()
    }
}

impl ConnectionIo {
    /// How many bytes the reader may read now: `1..=want`, at most the read
    /// buffer size (0 only when `want` is 0). Waits, first come first served,
    /// while the global download quota is exhausted; never waits without a
    /// cap. Cancel-safe.
    pub async fn reserve_read(&self, want: usize) -> usize {
        let uncapped = want.min(self.inner.read_buffer_size);
        self.inner
            .read
            .reserve(&self.inner.closed, want, uncapped)
            .await
    }

    /// How many bytes the writer may write now: `1..=want` (0 only when
    /// `want` is 0). Without an upload cap this is `want` and never waits,
    /// so a whole chunk goes out in one write; with a cap it is at most one
    /// quantum and waits like [`ConnectionIo::reserve_read`]. Cancel-safe.
    pub async fn reserve_write(&self, want: usize) -> usize {
        self.inner
            .write
            .reserve(&self.inner.closed, want, want)
            .await
    }

    /// Records `n` bytes actually read (charged to the download quota).
    pub fn record_read(&self, n: usize) {
        let n = n as u64;
        self.counters.read.add(n);
        self.inner.read.record(n);
    }

    /// Records `n` bytes actually written (charged to the upload quota).
    pub fn record_write(&self, n: usize) {
        let n = n as u64;
        self.counters.write.add(n);
        self.inner.write.record(n);
    }

    /// This connection's statistics.
    pub fn stat(&self) -> Stat {
        self.counters.stat()
    }

    /// The largest read [`ConnectionIo::reserve_read`] grants, as
    /// [`IoScheduler::read_buffer_size`].
    pub fn read_buffer_size(&self) -> usize {
        self.inner.read_buffer_size
    }
}

impl Drop for ConnectionIo {
    fn drop(&mut self) {
        self.inner.connections().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::Poll;

    fn capped_upload(max: u64) -> SchedulerConfig {
        SchedulerConfig {
            max_upload_speed: Some(max),
            ..SchedulerConfig::default()
        }
    }

    /// Polls `fut` once; `Some` if it completed without waiting.
    async fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        std::future::poll_fn(|cx| {
            Poll::Ready(match fut.as_mut().poll(cx) {
                Poll::Ready(out) => Some(out),
                Poll::Pending => None,
            })
        })
        .await
    }

    fn alive_tasks() -> usize {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    }

    #[test]
    fn moving_average_follows_octez_integer_arithmetic() {
        assert_eq!(moving_average(0, 1000, 1000), 200);
        // 200*1000/1000 + 800*200/1000 = 200 + 160
        assert_eq!(moving_average(200, 1000, 1000), 360);
        // Idle decays by 4/5, rounding down.
        assert_eq!(moving_average(360, 0, 1000), 288);
        assert_eq!(moving_average(1, 0, 1000), 0);
        // The instantaneous rate is per measured millisecond.
        assert_eq!(moving_average(0, 1000, 500), 400);
        assert_eq!(moving_average(0, 1000, 0), 200_000);
        assert_eq!(moving_average(u64::MAX, u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn moving_average_converges_to_a_constant_rate() {
        let mut average = 0;
        for _ in 0..100 {
            average = moving_average(average, 50_000, 1000);
        }
        // Integer truncation keeps it slightly below the true rate.
        assert!((49_990..=50_000).contains(&average), "{average}");
    }

    #[tokio::test(start_paused = true)]
    async fn stats_are_ticked_once_per_second() {
        let sched = IoScheduler::new(SchedulerConfig::default());
        let conn = sched.register();
        conn.record_read(1000);
        conn.record_write(500);
        assert_eq!(conn.stat().current_inflow, 0);
        tokio::time::sleep(Duration::from_millis(1001)).await;
        let expected = Stat {
            total_sent: 500,
            total_recv: 1000,
            current_inflow: 200,
            current_outflow: 100,
        };
        assert_eq!(conn.stat(), expected);
        assert_eq!(sched.stat(), expected);
        tokio::time::sleep(REFRESH_INTERVAL).await;
        assert_eq!(conn.stat().current_inflow, 160);
        assert_eq!(conn.stat().current_outflow, 80);
        assert_eq!(sched.stat().current_inflow, 160);
    }

    #[tokio::test(start_paused = true)]
    async fn totals_add_up_per_connection_and_globally() {
        let sched = IoScheduler::new(SchedulerConfig::default());
        let a = sched.register();
        let b = sched.register();
        a.record_read(10);
        a.record_read(20);
        a.record_write(5);
        b.record_write(7);
        assert_eq!((a.stat().total_recv, a.stat().total_sent), (30, 5));
        assert_eq!((b.stat().total_recv, b.stat().total_sent), (0, 7));
        let global = sched.stat();
        assert_eq!((global.total_recv, global.total_sent), (30, 12));
    }

    #[tokio::test(start_paused = true)]
    async fn global_stat_keeps_closed_connections_history() {
        let sched = IoScheduler::new(SchedulerConfig::default());
        let conn = sched.register();
        conn.record_read(4096);
        conn.record_write(1024);
        drop(conn);
        let global = sched.stat();
        assert_eq!((global.total_recv, global.total_sent), (4096, 1024));
        tokio::time::sleep(Duration::from_millis(1001)).await;
        assert_eq!(sched.stat().current_inflow, 819);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_connections_unregisters_them() {
        let sched = IoScheduler::new(SchedulerConfig::default());
        let conns: Vec<_> = (0..5).map(|_| sched.register()).collect();
        assert_eq!(sched.connections(), 5);
        drop(conns);
        assert_eq!(sched.connections(), 0);
        let conn = sched.register();
        assert_eq!(sched.connections(), 1);
        drop(conn);
        assert_eq!(sched.connections(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn uncapped_reservation_never_waits() {
        let sched = IoScheduler::new(SchedulerConfig {
            read_buffer_size: 1000,
            ..SchedulerConfig::default()
        });
        let conn = sched.register();
        for _ in 0..1000 {
            assert_eq!(poll_once(conn.reserve_read(5000)).await, Some(1000));
            assert_eq!(poll_once(conn.reserve_read(10)).await, Some(10));
            assert_eq!(poll_once(conn.reserve_write(70_000)).await, Some(70_000));
            conn.record_read(1000);
            conn.record_write(70_000);
        }
        assert_eq!(poll_once(conn.reserve_read(0)).await, Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn capped_reservation_waits_for_the_next_refill() {
        let sched = IoScheduler::new(SchedulerConfig {
            max_download_speed: Some(1000),
            ..SchedulerConfig::default()
        });
        let conn = sched.register();
        let start = Instant::now();
        // Grants are capped to a tenth of the cap.
        assert_eq!(conn.reserve_read(5000).await, 100);
        conn.record_read(1000); // exhausts the first second's bucket
        assert_eq!(conn.reserve_read(5000).await, 100);
        assert_eq!(start.elapsed(), REFRESH_INTERVAL);
        // Overdraw carries over as debt: 2500 bytes need two more refills.
        conn.record_read(2500);
        assert_eq!(conn.reserve_read(5000).await, 100);
        assert_eq!(start.elapsed(), 3 * REFRESH_INTERVAL);
    }

    #[tokio::test(start_paused = true)]
    async fn unused_credit_does_not_accumulate() {
        let sched = IoScheduler::new(capped_upload(1000));
        let conn = sched.register();
        // Ten refills with nothing sent, and half a second more.
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        assert_eq!(sched.owner.inner.write.quota.load(Ordering::Relaxed), 1000);
        conn.record_write(1000);
        let start = Instant::now();
        conn.reserve_write(1).await;
        assert!(start.elapsed() > Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn capped_upload_is_shared_fairly_between_connections() {
        const CAP: u64 = 100_000;
        const SECONDS: u64 = 30;
        const WRITERS: usize = 4;
        let sched = IoScheduler::new(capped_upload(CAP));
        let start = Instant::now();
        let deadline = start + Duration::from_secs(SECONDS);
        let mut tasks = Vec::new();
        for i in 0..WRITERS {
            let conn = sched.register();
            tasks.push(tokio::spawn(async move {
                // Bigger chunks must not buy a bigger share.
                let want = 16_384 << i;
                while Instant::now() < deadline {
                    let n = conn.reserve_write(want).await;
                    assert!((1..=want).contains(&n));
                    conn.record_write(n);
                    tokio::task::yield_now().await;
                }
                conn.stat().total_sent
            }));
        }
        let mut sent = Vec::new();
        for task in tasks {
            sent.push(task.await.expect("writer task"));
        }
        let total: u64 = sent.iter().sum();
        assert_eq!(total, sched.stat().total_sent);
        let elapsed = start.elapsed().as_secs_f64();
        let rate = total as f64 / elapsed;
        assert!(
            (rate - CAP as f64).abs() <= 0.10 * CAP as f64,
            "aggregate {rate} B/s, cap {CAP} B/s, per connection {sent:?}"
        );
        let share = total as f64 / WRITERS as f64;
        for s in &sent {
            assert!(
                (*s as f64 - share).abs() <= 0.25 * share,
                "per connection {sent:?}, fair share {share}"
            );
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let outflow = sched.stat().current_outflow;
        assert!(outflow > CAP / 2 && outflow < CAP * 11 / 10, "{outflow}");
    }

    #[tokio::test(start_paused = true)]
    async fn capped_download_is_shared_fairly_between_connections() {
        const CAP: u64 = 50_000;
        let sched = IoScheduler::new(SchedulerConfig {
            max_download_speed: Some(CAP),
            ..SchedulerConfig::default()
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let conn = sched.register();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = conn.reserve_read(1 << 20).await;
                    conn.record_read(n);
                }
                conn.stat().total_recv
            }));
        }
        let mut recv = Vec::new();
        for task in tasks {
            recv.push(task.await.expect("reader task"));
        }
        let total: u64 = recv.iter().sum();
        assert!(total.abs_diff(20 * CAP) <= 2 * CAP, "{recv:?}");
        for r in &recv {
            assert!(r.abs_diff(total / 3) <= total / 12, "{recv:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_releases_waiting_reservations() {
        let sched = IoScheduler::new(capped_upload(10));
        let conn = sched.register();
        conn.record_write(1_000_000);
        let waiter = tokio::spawn(async move { conn.reserve_write(5).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        sched.shutdown();
        assert!(sched.is_shutdown());
        assert_eq!(waiter.await.expect("waiter"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn ticker_task_ends_after_shutdown() {
        let before = alive_tasks();
        let sched = IoScheduler::new(SchedulerConfig::default());
        assert_eq!(alive_tasks(), before + 1);
        let conn = sched.register();
        sched.shutdown();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(alive_tasks(), before);
        // Connections outlive the ticker and still count.
        conn.record_read(1);
        assert_eq!(sched.stat().total_recv, 1);
        assert_eq!(poll_once(conn.reserve_read(8)).await, Some(8));
    }

    #[tokio::test(start_paused = true)]
    async fn ticker_task_ends_when_the_last_clone_is_dropped() {
        let before = alive_tasks();
        let sched = IoScheduler::new(capped_upload(100));
        let clone = sched.clone();
        let conn = sched.register();
        drop(sched);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(alive_tasks(), before + 1);
        drop(clone);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(alive_tasks(), before);
        // A surviving connection is not stuck behind a dead ticker.
        conn.record_write(1000);
        assert_eq!(poll_once(conn.reserve_write(8)).await, Some(8));
    }

    #[test]
    fn stat_json_matches_octez_p2p_stat() {
        let stat = Stat {
            total_sent: 12_345_678_901,
            total_recv: 42,
            current_inflow: 7,
            current_outflow: 0,
        };
        let json = serde_json::to_value(stat).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({
                "total_sent": "12345678901",
                "total_recv": "42",
                "current_inflow": 7,
                "current_outflow": 0,
            })
        );
        assert_eq!(serde_json::from_value::<Stat>(json).expect("parse"), stat);
        let numeric = serde_json::json!({
            "total_sent": 1, "total_recv": 2, "current_inflow": 3, "current_outflow": 4
        });
        assert_eq!(
            serde_json::from_value::<Stat>(numeric).expect("parse numbers"),
            Stat {
                total_sent: 1,
                total_recv: 2,
                current_inflow: 3,
                current_outflow: 4
            }
        );
    }

    #[test]
    fn defaults_are_octez_defaults() {
        let cfg = SchedulerConfig::default();
        assert_eq!(cfg.max_download_speed, None);
        assert_eq!(cfg.max_upload_speed, None);
        assert_eq!(cfg.read_buffer_size, 16_384);
    }

    #[test]
    fn connection_io_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ConnectionIo>();
        check::<IoScheduler>();
    }
}
