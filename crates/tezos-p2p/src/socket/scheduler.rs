//! The IO scheduler: global bandwidth quotas and moving-average statistics
//! (pool-behaviour.md §5, "IO scheduler and statistics").
//!
//! One [`IoScheduler`] is shared by every connection of a pool. Each
//! connection (including one still in its handshake) registers once and gets
//! a [`ConnectionIo`]; before a read it asks [`ConnectionIo::reserve_read`]
//! (or, from a hand-written `poll`, [`ConnectionIo::poll_reserve_read`]) how
//! many bytes it may read, reads, and then calls [`ConnectionIo::record_read`]
//! with what it actually read (writes do the same with the `_write`
//! methods).
//!
//! * **Statistics (§5.5).** Every direction has a global counter and one per
//!   connection. A single ticker task updates all the moving averages once per
//!   second: `average := 200 × current / elapsed_ms + 800 × average / 1000`
//!   (integer arithmetic, `current` = bytes since the previous tick). The
//!   global counters keep the history of closed connections.
//! * **Global caps (§5.4 step 2).** `max_download_speed` / `max_upload_speed`
//!   are token buckets refilled once per second with
//!   `quota := min(quota, 0) + max_speed` and charged with the bytes
//!   recorded: over-consumption carries over as debt, unused credit does not
//!   accumulate. A reservation waits while the quota is exhausted; one grant
//!   may overdraw it (as one Octez chunk may).
//! * **Pacing.** With a cap, a second bucket is refilled every 100 ms with a
//!   tenth of the cap (`pace := min(pace, 0) + cap / 10`, kept within one
//!   tenth either way) and charged when a grant is made (settled at the
//!   record). It spreads each second's bucket over the second instead of
//!   letting the connections waiting at the refill drain it in a few
//!   milliseconds, which starved a connection that was between two batches
//!   at that instant. The average rate is still set by the per-second bucket.
//! * **Priority (§5.2–5.4).** Every connection has its own quota per capped
//!   direction, `quota := min(quota, 0) + max_speed / n` at each refresh
//!   (`n` registered connections), charged with the grants it gets from the
//!   `high` queue. Waiting reservations queue in `high` if their connection
//!   has quota left, else in `low`; `low` is served only while `high` is
//!   empty, and each refresh moves the `low` waiters whose connection has
//!   quota again to the tail of `high`. Each queue is first come, first
//!   served, and one grant is at most a quantum (`read_buffer_size`, and at
//!   most a tenth of the cap). The quota only orders the waiters: a
//!   connection alone is served whatever its quota. Octez's share is of the
//!   measured global average; the share of the configured cap is used
//!   instead, which is what the connections can get when the cap binds (the
//!   only case where the order matters) and does not lag behind a starting
//!   or changing load.
//! * **No cap, no cost.** Without a cap a reservation never waits and
//!   recording is two relaxed atomic additions: no lock on the hot path (and
//!   no queue, so no priority to apply: nothing ever waits).
//!
//! The scheduler uses [`tokio::time`], so it runs unchanged under a paused
//! test clock.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// How often the moving averages are updated and the quotas refilled
/// (Octez's `refresh_interval`, §5.5).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Sub-ticks per refresh with a cap: the pacing buckets are refilled with a
/// tenth of the cap every [`SUBTICK`].
const SUBTICKS_PER_REFRESH: u64 = 10;

/// The pacing period with a cap.
const SUBTICK: Duration = Duration::from_millis(100);

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

/// One reservation waiting in a [`Lane`]'s queues.
struct Waiter {
    ticket: u64,
    /// The waiting connection and the lane's direction.
    conn: Arc<ConnCounters>,
    write: bool,
    waker: Option<Waker>,
}

impl Waiter {
    fn side(&self) -> &ConnSide {
        self.conn.side(self.write)
    }
}

/// Octez's `high` and `low` queues (§5.1): waiting reservations whose
/// connection had a positive quota when they arrived, and the others. Each is
/// first come, first served; `low` is served only while `high` is empty.
#[derive(Default)]
struct Queues {
    high: VecDeque<Waiter>,
    low: VecDeque<Waiter>,
    next_ticket: u64,
}

impl Queues {
    fn head(&self) -> Option<&Waiter> {
        self.high.front().or_else(|| self.low.front())
    }

    fn is_head(&self, ticket: u64) -> bool {
        self.head().is_some_and(|w| w.ticket == ticket)
    }

    /// Lets the reservation next in line check again.
    fn wake_head(&self) {
        if let Some(waker) = self.head().and_then(|w| w.waker.as_ref()) {
            waker.wake_by_ref();
        }
    }

    fn wake_all(&self) {
        for w in self.high.iter().chain(&self.low) {
            if let Some(waker) = &w.waker {
                waker.wake_by_ref();
            }
        }
    }

    fn find_mut(&mut self, ticket: u64) -> Option<&mut Waiter> {
        self.high
            .iter_mut()
            .chain(self.low.iter_mut())
            .find(|w| w.ticket == ticket)
    }

    /// Removes a waiter; the next in line is woken if it was the head.
    fn remove(&mut self, ticket: u64) {
        let was_head = self.is_head(ticket);
        self.high.retain(|w| w.ticket != ticket);
        self.low.retain(|w| w.ticket != ticket);
        if was_head {
            self.wake_head();
        }
    }

    /// §5.4 step 3: every `low` waiter whose connection now has a positive
    /// quota moves to the tail of `high`, in order.
    fn promote(&mut self) {
        let low = std::mem::take(&mut self.low);
        for w in low {
            if w.side().quota.load(Ordering::Acquire) > 0 {
                self.high.push_back(w);
            } else {
                self.low.push_back(w);
            }
        }
    }
}

/// A reservation's place in a lane's queues, kept between polls of
/// [`ConnectionIo::poll_reserve_read`] / [`ConnectionIo::poll_reserve_write`].
/// A ticket that is given up must be handed to
/// [`ConnectionIo::forget_read`] / [`ConnectionIo::forget_write`], which give
/// the turn to the next in line.
#[derive(Debug, Default)]
pub struct Ticket(Option<NonZeroU64>);

/// A ticket that leaves the queues when dropped (a cancelled
/// reservation), which gives the turn to the next in line.
struct Place<'a> {
    lane: &'a Lane,
    ticket: Ticket,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.lane.forget(&mut self.ticket);
    }
}

/// A grant not recorded yet, packed in one word so that it is taken back
/// atomically: its size and whether it was charged to the connection's
/// quota (served from `high`, §5.3 step 4).
fn pack_pending(grant: u64, from_high: bool) -> u64 {
    (grant << 1) | u64::from(from_high)
}

fn unpack_pending(pending: u64) -> (i64, bool) {
    (saturating_i64(pending >> 1), pending & 1 == 1)
}

/// One direction (download or upload) of the scheduler.
struct Lane {
    counter: Counter,
    /// The cap in B/s, if any.
    max_speed: Option<u64>,
    /// The per-second token bucket (§5.4 step 2); meaningful only with a cap.
    quota: AtomicI64,
    /// The pacing bucket: refilled with `step` at every sub-tick, its debt
    /// bounded by `step`, so that the per-second bucket is spent over the
    /// second rather than in one burst right after its refill.
    pace: AtomicI64,
    /// A tenth of the cap (at least 1).
    step: i64,
    /// Largest grant while capped.
    quantum: usize,
    /// The waiting reservations (only with a cap).
    queues: Mutex<Queues>,
    /// Upload (else download).
    write: bool,
}

impl Lane {
    fn new(write: bool, max_speed: Option<u64>, read_buffer_size: usize) -> Self {
        let max_speed = max_speed.filter(|&speed| speed > 0);
        let tenth = max_speed.map_or(1, |speed| (speed / SUBTICKS_PER_REFRESH).max(1));
        let quantum = match max_speed {
            Some(_) => read_buffer_size.min(usize::try_from(tenth).unwrap_or(usize::MAX)),
            None => read_buffer_size,
        };
        let step = saturating_i64(tenth);
        Lane {
            counter: Counter::default(),
            max_speed,
            // The first second gets a full bucket.
            quota: AtomicI64::new(max_speed.map_or(0, saturating_i64)),
            pace: AtomicI64::new(step),
            step,
            quantum,
            queues: Mutex::new(Queues::default()),
            write,
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        // The queues stay consistent even if a holder panicked.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the turn and positive quotas, then returns the grant
    /// (`want` when there is no cap, else at most a quantum).
    async fn reserve(&self, conn: &Arc<ConnCounters>, closed: &AtomicBool, want: usize) -> usize {
        let mut place = Place {
            lane: self,
            ticket: Ticket::default(),
        };
        std::future::poll_fn(|cx| self.poll_reserve(&mut place.ticket, conn, closed, want, cx))
            .await
    }

    /// The poll form of [`Lane::reserve`]: `ticket` keeps the place in
    /// the queues between polls (see [`Lane::forget`]).
    fn poll_reserve(
        &self,
        ticket: &mut Ticket,
        conn: &Arc<ConnCounters>,
        closed: &AtomicBool,
        want: usize,
        cx: &mut Context<'_>,
    ) -> Poll<usize> {
        if want == 0 {
            return Poll::Ready(0);
        }
        if self.max_speed.is_none() || (ticket.0.is_none() && closed.load(Ordering::Acquire)) {
            return Poll::Ready(want);
        }
        self.poll_turn(ticket, conn, closed, want.min(self.quantum), cx)
    }

    /// Leaves the queues, if `ticket` holds a place there.
    fn forget(&self, ticket: &mut Ticket) {
        if let Some(ticket) = ticket.0.take() {
            self.queues().remove(ticket.get());
        }
    }

    fn poll_turn(
        &self,
        place: &mut Ticket,
        conn: &Arc<ConnCounters>,
        closed: &AtomicBool,
        grant: usize,
        cx: &mut Context<'_>,
    ) -> Poll<usize> {
        let side = conn.side(self.write);
        let mut queues = self.queues();
        if closed.load(Ordering::Acquire) {
            if let Some(ticket) = place.0.take() {
                queues.remove(ticket.get());
            }
            return Poll::Ready(grant);
        }
        let ticket = match place.0 {
            Some(ticket) => ticket.get(),
            None => {
                // Tickets start at 1, so that a `Ticket` fits in a word.
                queues.next_ticket += 1;
                let ticket = queues.next_ticket;
                let waiter = Waiter {
                    ticket,
                    conn: Arc::clone(conn),
                    write: self.write,
                    waker: None,
                };
                // §5.2: `high` if the connection has quota left, else `low`.
                if side.quota.load(Ordering::Acquire) > 0 {
                    queues.high.push_back(waiter);
                } else {
                    queues.low.push_back(waiter);
                }
                place.0 = NonZeroU64::new(ticket);
                ticket
            }
        };
        if queues.is_head(ticket)
            && self.quota.load(Ordering::Acquire) > 0
            && self.pace.load(Ordering::Acquire) > 0
        {
            let from_high = queues.high.front().is_some_and(|w| w.ticket == ticket);
            if from_high {
                queues.high.pop_front();
            } else {
                queues.low.pop_front();
            }
            place.0 = None;
            self.charge(side, grant as u64, from_high);
            // The next in line may be served from what is left.
            queues.wake_head();
            return Poll::Ready(grant);
        }
        if let Some(waiter) = queues.find_mut(ticket) {
            match &mut waiter.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                waker => *waker = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }

    /// Charges a grant to the pacing bucket and the connection's quota when
    /// it is made, so that the next in line sees what is left;
    /// [`Lane::record`] settles it with the bytes actually moved. (A reader
    /// may hold a grant for long before data arrives: the per-second bucket
    /// is charged only with what was moved, as in Octez, so that a refund
    /// can never add to it what a refill already forgot.)
    fn charge(&self, side: &ConnSide, grant: u64, from_high: bool) {
        let previous = side
            .pending
            .swap(pack_pending(grant, from_high), Ordering::AcqRel);
        // A previous grant that was never recorded is given back.
        let (old, old_high) = unpack_pending(previous);
        let grant = saturating_i64(grant);
        self.pace(grant - old);
        let own = if from_high { grant } else { 0 } - if old_high { old } else { 0 };
        side.quota.fetch_sub(own, Ordering::AcqRel);
    }

    /// Gives back an unrecorded grant (its connection is going away).
    fn release(&self, side: &ConnSide) {
        if self.max_speed.is_some() {
            let (old, _) = unpack_pending(side.pending.swap(0, Ordering::AcqRel));
            if old > 0 {
                self.pace(-old);
                self.queues().wake_head();
            }
        }
    }

    /// Takes `n` bytes (gives back `-n`) from the pacing bucket, which stays
    /// within one step either way.
    fn pace(&self, n: i64) {
        if n == 0 {
            return;
        }
        let step = self.step;
        let _ = self
            .pace
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pace| {
                Some(pace.saturating_sub(n).clamp(-step, step))
            });
    }

    fn record(&self, side: &ConnSide, n: u64) {
        self.counter.add(n);
        side.counter.add(n);
        if self.max_speed.is_none() {
            return;
        }
        let n = saturating_i64(n);
        self.quota.fetch_sub(n, Ordering::AcqRel);
        let (granted, from_high) = unpack_pending(side.pending.swap(0, Ordering::AcqRel));
        let extra = n - granted;
        self.pace(extra);
        // Bytes moved without a reservation count as served from `high`
        // when the connection has quota left.
        if from_high || (granted == 0 && side.quota.load(Ordering::Acquire) > 0) {
            side.quota.fetch_sub(extra, Ordering::AcqRel);
        }
        if extra < 0 {
            // Less than granted: what is given back may serve the next.
            self.queues().wake_head();
        }
    }

    /// The fair share of the cap among `n` connections (§5.4 step 1).
    fn share(&self, n: usize) -> Option<i64> {
        let n = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
        self.max_speed.map(|speed| saturating_i64(speed / n))
    }

    /// Refills the pacing bucket and, when `refresh`, the per-second one
    /// (§5.4 step 2: debt carries over, credit does not accumulate) and the
    /// queues (step 3).
    fn refill(&self, refresh: bool) {
        let Some(speed) = self.max_speed else {
            return;
        };
        if refresh {
            let speed = saturating_i64(speed);
            let _ = self
                .quota
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |quota| {
                    Some(quota.min(0).saturating_add(speed))
                });
        }
        let step = self.step;
        let _ = self
            .pace
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pace| {
                Some(pace.min(0).saturating_add(step))
            });
        let mut queues = self.queues();
        if refresh {
            queues.promote();
        }
        queues.wake_head();
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One direction of a connection: its counter and its quota (§5.1), shared
/// by the [`ConnectionIo`], the ticker and the queues.
#[derive(Default)]
struct ConnSide {
    counter: Counter,
    /// Octez's per-connection quota: refilled with the fair share at every
    /// refresh, it only decides between `high` and `low` (only with a cap).
    quota: AtomicI64,
    /// The grant not recorded yet ([`pack_pending`]).
    pending: AtomicU64,
}

impl ConnSide {
    /// §5.4 step 1: `quota := min(quota, 0) + share`.
    fn refill(&self, share: i64) {
        let _ = self
            .quota
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |quota| {
                Some(quota.min(0).saturating_add(share))
            });
    }
}

/// Per-connection state, shared by the [`ConnectionIo`] and the ticker.
#[derive(Default)]
struct ConnCounters {
    read: ConnSide,
    write: ConnSide,
}

impl ConnCounters {
    fn side(&self, write: bool) -> &ConnSide {
        if write {
            &self.write
        } else {
            &self.read
        }
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

    /// The refresh (§5.4, §5.5): averages, then the connections' quotas,
    /// then the global buckets and the queues.
    fn tick(&self, elapsed_ms: u64) {
        self.read.counter.tick(elapsed_ms);
        self.write.counter.tick(elapsed_ms);
        {
            let connections = self.connections();
            let read_share = self.read.share(connections.len());
            let write_share = self.write.share(connections.len());
            for conn in connections.values() {
                conn.read.counter.tick(elapsed_ms);
                conn.write.counter.tick(elapsed_ms);
                if let Some(share) = read_share {
                    conn.read.refill(share);
                }
                if let Some(share) = write_share {
                    conn.write.refill(share);
                }
            }
        }
        self.read.refill(true);
        self.write.refill(true);
    }

    /// A sub-tick between two refreshes: only the pacing buckets.
    fn subtick(&self) {
        self.read.refill(false);
        self.write.refill(false);
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.shutdown.cancel();
        self.read.queues().wake_all();
        self.write.queues().wake_all();
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
///
/// A pool makes its own from its [`Limits`](crate::limits::Limits); one
/// made by hand serves connections made with
/// [`socket::authenticate`](crate::socket::authenticate), or any stream
/// that should share the pool's caps and statistics:
///
/// ```
/// use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let mut config = SchedulerConfig::default();
/// config.max_upload_speed = Some(1 << 20); // 1 MiB/s, all connections together
/// let scheduler = IoScheduler::new(config);
///
/// let io = scheduler.register(); // one per connection
/// assert_eq!(scheduler.connections(), 1);
/// // Before a write: how many of these bytes may go now (at most a quantum).
/// let n = io.reserve_write(100_000).await;
/// assert!(0 < n && n <= scheduler.read_buffer_size());
/// // ... write them, then say how many went:
/// io.record_write(n);
/// assert_eq!(io.stat().total_sent, n as u64);
/// assert_eq!(scheduler.stat().total_sent, n as u64);
///
/// drop(io); // unregisters the connection, its bytes stay in the totals
/// assert_eq!(scheduler.connections(), 0);
/// scheduler.shutdown();
/// # });
/// ```
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
            read: Lane::new(false, cfg.max_download_speed, read_buffer_size),
            write: Lane::new(true, cfg.max_upload_speed, read_buffer_size),
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
/// (and, with a cap, the pacing buckets every [`SUBTICK`]) until the
/// scheduler shuts down.
async fn ticker(inner: Arc<Inner>) {
    let shutdown = inner.shutdown.clone();
    let capped = inner.read.max_speed.is_some() || inner.write.max_speed.is_some();
    let (period, per_refresh) = if capped {
        (SUBTICK, SUBTICKS_PER_REFRESH)
    } else {
        (REFRESH_INTERVAL, 1)
    };
    let mut last = Instant::now();
    let mut interval = tokio::time::interval_at(last + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut subticks = 0;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            now = interval.tick() => {
                subticks += 1;
                if subticks < per_refresh {
                    inner.subtick();
                    continue;
                }
                subticks = 0;
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
    /// How many bytes the reader may read now: `1..=want` (0 only when
    /// `want` is 0); with a cap, at most one quantum. With a download cap, waits for
    /// its turn (connections with quota left first, then first come, first
    /// served) and for the global quotas; never waits without a cap.
    /// Cancel-safe.
    pub async fn reserve_read(&self, want: usize) -> usize {
        self.inner
            .read
            .reserve(&self.counters, &self.inner.closed, want)
            .await
    }

    /// How many bytes the writer may write now: `1..=want` (0 only when
    /// `want` is 0). Without an upload cap this is `want` and never waits,
    /// so a whole chunk goes out in one write; with a cap it is at most one
    /// quantum and waits like [`ConnectionIo::reserve_read`]. Cancel-safe.
    pub async fn reserve_write(&self, want: usize) -> usize {
        self.inner
            .write
            .reserve(&self.counters, &self.inner.closed, want)
            .await
    }

    /// The poll form of [`ConnectionIo::reserve_read`], for a task that
    /// drives its IO by hand: `ticket` keeps its place in the queues between
    /// polls.
    pub fn poll_reserve_read(
        &self,
        cx: &mut Context<'_>,
        ticket: &mut Ticket,
        want: usize,
    ) -> Poll<usize> {
        self.inner
            .read
            .poll_reserve(ticket, &self.counters, &self.inner.closed, want, cx)
    }

    /// The poll form of [`ConnectionIo::reserve_write`].
    pub fn poll_reserve_write(
        &self,
        cx: &mut Context<'_>,
        ticket: &mut Ticket,
        want: usize,
    ) -> Poll<usize> {
        self.inner
            .write
            .poll_reserve(ticket, &self.counters, &self.inner.closed, want, cx)
    }

    /// Gives up a read reservation under way.
    pub fn forget_read(&self, ticket: &mut Ticket) {
        self.inner.read.forget(ticket);
    }

    /// Gives up a write reservation under way.
    pub fn forget_write(&self, ticket: &mut Ticket) {
        self.inner.write.forget(ticket);
    }

    /// Records `n` bytes actually read (charged to the download quota).
    pub fn record_read(&self, n: usize) {
        self.inner.read.record(&self.counters.read, n as u64);
    }

    /// Records `n` bytes actually written (charged to the upload quota).
    pub fn record_write(&self, n: usize) {
        self.inner.write.record(&self.counters.write, n as u64);
    }

    /// This connection's statistics.
    pub fn stat(&self) -> Stat {
        self.counters.stat()
    }

    /// The socket's usual read size (the largest grant under a cap), as
    /// [`IoScheduler::read_buffer_size`].
    pub fn read_buffer_size(&self) -> usize {
        self.inner.read_buffer_size
    }
}

impl Drop for ConnectionIo {
    fn drop(&mut self) {
        {
            let mut conns = self.inner.connections();
            conns.remove(&self.id);
            // After a burst of connections, give the table's memory back.
            let len = conns.len();
            if conns.capacity() > 64 && conns.capacity() > 4 * len {
                conns.shrink_to(2 * len);
            }
        }
        self.inner.read.release(&self.counters.read);
        self.inner.write.release(&self.counters.write);
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
            // Uncapped, the reader reads what it asks for (the socket asks
            // for `read_buffer_size`, or the rest of a larger chunk).
            assert_eq!(poll_once(conn.reserve_read(5000)).await, Some(5000));
            assert_eq!(poll_once(conn.reserve_read(10)).await, Some(10));
            assert_eq!(poll_once(conn.reserve_write(70_000)).await, Some(70_000));
            conn.record_read(5000);
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

    /// The pattern of the loopback test: a writer that is between two
    /// batches when the bucket is refilled must still get its fair share
    /// (with one refill per second drained at once by whoever was waiting,
    /// it got a tenth of the cap instead of a quarter).
    #[tokio::test(start_paused = true)]
    async fn intermittent_writer_gets_its_fair_share() {
        const CAP: u64 = 100_000;
        const SECONDS: u64 = 20;
        const WRITERS: usize = 4;
        let sched = IoScheduler::new(capped_upload(CAP));
        let start = Instant::now();
        let deadline = start + Duration::from_secs(SECONDS);
        let mut tasks = Vec::new();
        for i in 0..WRITERS {
            let conn = sched.register();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = conn.reserve_write(64 << 10).await;
                    conn.record_write(n);
                    if i == 0 {
                        // Sealing the next batch: back a moment later.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                conn.stat().total_sent
            }));
        }
        let mut sent = Vec::new();
        for task in tasks {
            sent.push(task.await.expect("writer task"));
        }
        let total: u64 = sent.iter().sum();
        let rate = total as f64 / start.elapsed().as_secs_f64();
        assert!(
            (rate - CAP as f64).abs() <= 0.05 * CAP as f64,
            "aggregate {rate} B/s, cap {CAP} B/s, per connection {sent:?}"
        );
        let share = total / WRITERS as u64;
        for s in &sent {
            assert!(
                s.abs_diff(share) <= share / 10,
                "{sent:?}, fair share {share}"
            );
        }
    }

    /// §5.4: a connection that overspent its share (`low`) waits behind one
    /// with quota left (`high`), even if it came first; alone, it is served.
    #[tokio::test(start_paused = true)]
    async fn connections_with_quota_left_are_served_first() {
        let sched = IoScheduler::new(capped_upload(1000));
        let start = Instant::now();
        let (a, b) = (sched.register(), sched.register());
        // Past the first refresh: each share is 500.
        tokio::time::sleep(Duration::from_millis(1050)).await;
        // `a` sends 2000 bytes: its quota is 500 - 2000, the bucket's -1000,
        // so the next grant comes at the refresh at 3 s.
        a.record_write(2000);
        let spawn = |conn: ConnectionIo| {
            tokio::spawn(async move {
                let n = conn.reserve_write(1000).await;
                conn.record_write(n);
                (start.elapsed(), conn)
            })
        };
        let first = spawn(a);
        tokio::task::yield_now().await;
        let second = spawn(b);
        let (b_at, _b) = second.await.expect("b");
        let (a_at, _a) = first.await.expect("a");
        assert_eq!(b_at, 3 * REFRESH_INTERVAL);
        // Then `a`, alone, at the next pacing step.
        assert_eq!(a_at, 3 * REFRESH_INTERVAL + SUBTICK);
    }

    /// A cancelled reservation leaves the queue and passes the turn on; a
    /// grant is charged when made and settled by the record.
    #[tokio::test(start_paused = true)]
    async fn cancelled_reservation_passes_the_turn() {
        let sched = IoScheduler::new(capped_upload(1000));
        let start = Instant::now();
        let (a, b) = (sched.register(), sched.register());
        let lane = &sched.owner.inner.write;
        assert_eq!(a.reserve_write(500).await, 100);
        assert_eq!(lane.pace.load(Ordering::Relaxed), 0);
        a.record_write(40);
        assert_eq!(lane.pace.load(Ordering::Relaxed), 60);
        assert_eq!(lane.quota.load(Ordering::Relaxed), 960);
        b.record_write(960);
        let a = Arc::new(a);
        let waiting = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.reserve_write(10).await })
        };
        tokio::task::yield_now().await;
        let next = tokio::spawn(async move { (b.reserve_write(10).await, start.elapsed()) });
        tokio::task::yield_now().await;
        waiting.abort();
        assert!(waiting.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(next.await.expect("b"), (10, REFRESH_INTERVAL));
        assert!(lane.queues().head().is_none());
    }

    /// A reader waiting for data holds its grant: that neither blocks the
    /// others nor, settled much later, lets them exceed the cap.
    #[tokio::test(start_paused = true)]
    async fn a_held_read_grant_blocks_nobody() {
        const CAP: u64 = 10_000;
        let sched = IoScheduler::new(SchedulerConfig {
            max_download_speed: Some(CAP),
            ..SchedulerConfig::default()
        });
        let idle = sched.register();
        let busy = sched.register();
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(idle.reserve_read(1 << 20).await, 1000);
            let until = Instant::now() + Duration::from_millis(2500);
            while Instant::now() < until {
                let n = busy.reserve_read(1 << 20).await;
                busy.record_read(n);
            }
            idle.record_read(10);
        }
        let secs = start.elapsed().as_secs_f64();
        let rate = sched.stat().total_recv as f64 / secs;
        assert!(
            (rate - CAP as f64).abs() <= 0.05 * CAP as f64,
            "{rate} B/s over {secs} s"
        );
        assert!(sched.owner.inner.read.quota.load(Ordering::Relaxed) <= CAP as i64);
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
