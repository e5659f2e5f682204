//! The in-memory network's link model (issue 16): what stands between two
//! simulated hosts. Everything runs on tokio's clock (virtual when it is
//! paused) and every random draw comes from a seeded generator, so a
//! simulation is reproducible.
//!
//! - **Latency**: one way, from a matrix indexed by the two hosts' regions
//!   ([`LinkModel::latency`]), times `1 ± jitter` per segment; segments of a
//!   connection still arrive in order, as TCP delivers them. Opening a
//!   connection takes one round trip.
//! - **Loss**: a lost segment arrives one retransmission timeout later
//!   (TCP hides the loss, not its delay).
//! - **Bandwidth**: each host has an upload and a download rate; a segment
//!   waits for the sender's uplink, travels, then for the receiver's
//!   downlink.
//! - **Window**: at most [`LinkModel::window`] bytes are in flight or unread
//!   per direction; a writer waits for the reader beyond that.
//! - **NAT**: a host behind NAT ([`HostProfile::nat`]) has no reachable
//!   listening port: connections to it are refused; it dials out only.
//! - **Partitions and crashes**: hosts in different partition groups, or a
//!   host that is down, cannot reach each other. Dials hang (the caller's
//!   timeout ends them, as for a lost SYN); data sent on an open connection
//!   is held (TCP retransmits it) and delivered when the partition heals;
//!   a connection that stays unreachable for [`LinkModel::user_timeout`]
//!   is reset at both ends (`TCP_USER_TIMEOUT`, 45 s in Octez). A host
//!   that is down sends nothing, not even the end of its connections: its
//!   peers only learn of the crash from that timeout.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// SplitMix64: a tiny seeded generator (one per link direction, so its
/// state costs 8 bytes).
#[derive(Clone, Debug)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The one-way latencies (ms) between five regions (North America,
/// Europe, Asia, South America, Oceania), 10–250 ms. With hosts spread
/// evenly over the regions, the median one-way latency of a random pair
/// is 100 ms.
pub const FIVE_REGIONS_MS: [[u64; 5]; 5] = [
    [10, 45, 100, 80, 130],
    [45, 10, 120, 110, 160],
    [100, 120, 10, 180, 60],
    [80, 110, 180, 10, 250],
    [130, 160, 60, 250, 10],
];

/// What links between hosts do: latency, jitter, loss, window, and the
/// user timeout that resets links cut by a partition or a crash (see
/// [`MemoryNetwork::with_links`](super::MemoryNetwork::with_links)).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkModel {
    /// Seed of every draw (jitter, loss).
    pub seed: u64,
    /// One-way latency from a host of region `i` to one of region `j`
    /// (`latency[i][j]`); hosts whose region is out of the matrix use the
    /// last row or column. Empty: no latency.
    pub latency: Vec<Vec<Duration>>,
    /// Each segment's latency is multiplied by a factor drawn uniformly in
    /// `[1 - jitter, 1 + jitter]` (0 ≤ jitter < 1).
    pub jitter: f64,
    /// Probability that a segment is lost once (and arrives one
    /// retransmission timeout later).
    pub loss: f64,
    /// The smallest retransmission timeout (Linux: 200 ms); a lost segment
    /// waits for the larger of this and two one-way latencies.
    pub min_rto: Duration,
    /// How long a connection may stay unreachable before both ends are
    /// reset (Octez's `TCP_USER_TIMEOUT`).
    pub user_timeout: Duration,
    /// Bytes in flight or unread per direction of a connection (the TCP
    /// window and socket buffers), at least 1.
    pub window: usize,
}

impl LinkModel {
    /// Links with the same one-way `latency` everywhere, no jitter or loss.
    pub fn uniform(seed: u64, latency: Duration) -> Self {
        LinkModel {
            seed,
            latency: vec![vec![latency]],
            jitter: 0.0,
            loss: 0.0,
            min_rto: Duration::from_millis(200),
            user_timeout: super::DEFAULT_USER_TIMEOUT,
            window: 256 * 1024,
        }
    }

    /// The five regions of [`FIVE_REGIONS_MS`], scaled so that the median
    /// one-way latency is `median` (100 ms: the matrix as is), with 10 %
    /// jitter.
    pub fn five_regions(seed: u64, median: Duration) -> Self {
        let scale = median.as_secs_f64() / 0.1;
        LinkModel {
            latency: FIVE_REGIONS_MS
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|&ms| Duration::from_millis(ms).mul_f64(scale))
                        .collect()
                })
                .collect(),
            jitter: 0.1,
            ..LinkModel::uniform(seed, median)
        }
    }

    /// The base one-way latency from region `a` to region `b`.
    pub fn one_way(&self, a: usize, b: usize) -> Duration {
        let Some(last) = self.latency.len().checked_sub(1) else {
            return Duration::ZERO;
        };
        let row = &self.latency[a.min(last)];
        row.get(b.min(row.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }
}

/// What a simulated host is: where it is, its bandwidth, whether it is
/// behind NAT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostProfile {
    /// Its region (an index of [`LinkModel::latency`]).
    pub region: usize,
    /// Upload rate in bytes per second (`None`: unlimited).
    pub upload: Option<u64>,
    /// Download rate in bytes per second (`None`: unlimited).
    pub download: Option<u64>,
    /// Behind NAT: connections to it are refused.
    pub nat: bool,
}

/// One host of the network.
pub(crate) struct Host {
    pub(crate) ip: IpAddr,
    group: AtomicU32,
    down: AtomicBool,
    state: Mutex<HostState>,
}

struct HostState {
    profile: HostProfile,
    /// When the uplink and the downlink are free again.
    up_free: Option<Instant>,
    down_free: Option<Instant>,
}

impl Host {
    fn new(ip: IpAddr, profile: HostProfile) -> Self {
        Host {
            ip,
            group: AtomicU32::new(0),
            down: AtomicBool::new(false),
            state: Mutex::new(HostState {
                profile,
                up_free: None,
                down_free: None,
            }),
        }
    }

    pub(crate) fn profile(&self) -> HostProfile {
        lock(&self.state).profile.clone()
    }

    fn region(&self) -> usize {
        lock(&self.state).profile.region
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// When `n` bytes that reach the link at `at` have gone through it
    /// (`up`: the uplink, else the downlink).
    fn transmit(&self, up: bool, at: Instant, n: usize) -> Instant {
        let mut st = lock(&self.state);
        let st = &mut *st;
        let (rate, free) = if up {
            (st.profile.upload, &mut st.up_free)
        } else {
            (st.profile.download, &mut st.down_free)
        };
        let Some(rate) = rate.filter(|&r| r > 0) else {
            return at;
        };
        let took = Duration::from_secs_f64(n as f64 / rate as f64);
        // Up: the segment waits for the uplink, then takes `took` on it.
        // Down: its last byte comes at `at` at the earliest, or `took` after
        // the downlink is free.
        let end = match (*free, up) {
            (None, true) => at + took,
            (None, false) => at,
            (Some(f), true) => f.max(at) + took,
            (Some(f), false) => at.max(f + took),
        };
        *free = Some(end);
        end
    }
}

/// Whether `a` and `b` can exchange packets now.
pub(crate) fn reachable(a: &Host, b: &Host) -> bool {
    !a.is_down()
        && !b.is_down()
        && a.group.load(Ordering::Acquire) == b.group.load(Ordering::Acquire)
}

/// The network-wide part of the model: the hosts and the open links.
pub(crate) struct Links {
    pub(crate) model: Arc<LinkModel>,
    state: Mutex<LinksState>,
}

struct LinksState {
    hosts: HashMap<IpAddr, HostEntry>,
    partition_since: Option<Instant>,
    rng: SplitMix,
}

struct HostEntry {
    host: Arc<Host>,
    down_since: Option<Instant>,
    /// The link directions that start or end at the host (each direction
    /// is listed at both its ends); dead ones are pruned as it grows.
    pipes: Vec<Weak<Pipe>>,
    prune_at: usize,
}

impl HostEntry {
    fn push(&mut self, pipe: &Arc<Pipe>) {
        if self.pipes.len() >= self.prune_at {
            self.pipes.retain(|p| p.strong_count() > 0);
            self.prune_at = (2 * self.pipes.len()).max(16);
        }
        self.pipes.push(Arc::downgrade(pipe));
    }

    fn live(&self) -> impl Iterator<Item = Arc<Pipe>> + '_ {
        self.pipes.iter().filter_map(Weak::upgrade)
    }
}

impl Links {
    pub(crate) fn new(model: LinkModel) -> Self {
        let rng = SplitMix::new(model.seed ^ 0x6C69_6E6B);
        Links {
            model: Arc::new(model),
            state: Mutex::new(LinksState {
                hosts: HashMap::new(),
                partition_since: None,
                rng,
            }),
        }
    }

    /// The host at `ip`, created with the default profile if unknown.
    pub(crate) fn host(&self, ip: IpAddr) -> Arc<Host> {
        let mut st = lock(&self.state);
        Arc::clone(&st.entry(ip).host)
    }

    pub(crate) fn set_host(&self, ip: IpAddr, profile: HostProfile) {
        let mut st = lock(&self.state);
        lock(&st.entry(ip).host.state).profile = profile;
    }

    /// A draw in [0, 1) from the network's generator.
    fn draw(&self) -> f64 {
        lock(&self.state).rng.unit()
    }

    /// The time a dial from `a` to `b` takes to be answered: one round
    /// trip, with jitter.
    pub(crate) fn round_trip(&self, a: &Host, b: &Host) -> Duration {
        let (ra, rb) = (a.region(), b.region());
        let base = self.model.one_way(ra, rb) + self.model.one_way(rb, ra);
        jittered(base, self.model.jitter, self.draw())
    }

    /// Opens the two directions of a connection from `a` to `b`: (a → b,
    /// b → a).
    pub(crate) fn open(&self, a: Arc<Host>, b: Arc<Host>) -> (Arc<Pipe>, Arc<Pipe>) {
        let mut st = lock(&self.state);
        let seed = st.rng.next_u64();
        let (ra, rb) = (a.region(), b.region());
        let ab = Arc::new(Pipe::new(
            Arc::clone(&a),
            Arc::clone(&b),
            self.model.one_way(ra, rb),
            Arc::clone(&self.model),
            seed,
        ));
        let ba = Arc::new(Pipe::new(
            Arc::clone(&b),
            Arc::clone(&a),
            self.model.one_way(rb, ra),
            Arc::clone(&self.model),
            seed ^ 0x5555_5555_5555_5555,
        ));
        for pipe in [&ab, &ba] {
            st.entry(a.ip).push(pipe);
            if b.ip != a.ip {
                st.entry(b.ip).push(pipe);
            }
        }
        (ab, ba)
    }

    /// Splits the hosts into groups (`group(ip)`); only hosts of the same
    /// group reach each other. Returns the time after which the links
    /// still cut are reset (the caller schedules [`Links::expire`] then).
    pub(crate) fn partition(&self, group: &dyn Fn(IpAddr) -> u32) -> Duration {
        let mut st = lock(&self.state);
        for (ip, e) in &st.hosts {
            e.host.group.store(group(*ip), Ordering::Release);
        }
        st.partition_since = Some(Instant::now());
        self.model.user_timeout
    }

    /// Ends the partition: held data is sent again, in order.
    pub(crate) fn heal(&self) {
        let mut st = lock(&self.state);
        for e in st.hosts.values() {
            e.host.group.store(0, Ordering::Release);
        }
        st.partition_since = None;
        st.resend_held();
    }

    /// Takes a host down (a crash: it sends nothing more, its links go
    /// quiet) or brings it back up.
    pub(crate) fn set_down(&self, ip: IpAddr, down: bool) -> Duration {
        let mut st = lock(&self.state);
        let e = st.entry(ip);
        e.host.down.store(down, Ordering::Release);
        e.down_since = down.then(Instant::now);
        if !down {
            st.resend_held();
        }
        self.model.user_timeout
    }

    /// Resets the links that have been unreachable for the user timeout
    /// (those of `ip`, or all).
    pub(crate) fn expire(&self, ip: Option<IpAddr>) {
        let st = lock(&self.state);
        let now = Instant::now();
        let timeout = self.model.user_timeout;
        let since = |h: &Host| -> Option<Instant> {
            let down = st.hosts.get(&h.ip).and_then(|e| e.down_since);
            if h.is_down() {
                down
            } else {
                None
            }
        };
        let check = |pipe: &Arc<Pipe>| {
            if reachable(&pipe.from, &pipe.to) {
                return;
            }
            let mut causes = vec![since(&pipe.from), since(&pipe.to)];
            if pipe.from.group.load(Ordering::Acquire) != pipe.to.group.load(Ordering::Acquire) {
                causes.push(st.partition_since);
            }
            let earliest = causes.into_iter().flatten().min();
            if earliest.is_some_and(|t| now.saturating_duration_since(t) >= timeout) {
                pipe.reset();
            }
        };
        match ip {
            Some(ip) => {
                if let Some(e) = st.hosts.get(&ip) {
                    e.live().for_each(|p| check(&p));
                }
            }
            None => {
                for (ip, e) in &st.hosts {
                    // Each direction once: at its sender.
                    e.live()
                        .filter(|p| p.from.ip == *ip)
                        .for_each(|p| check(&p));
                }
            }
        }
    }

    /// Open link directions (for tests and statistics).
    pub(crate) fn open_pipes(&self) -> usize {
        let st = lock(&self.state);
        st.hosts
            .iter()
            .map(|(ip, e)| e.live().filter(|p| p.from.ip == *ip).count())
            .sum()
    }
}

impl LinksState {
    fn entry(&mut self, ip: IpAddr) -> &mut HostEntry {
        self.hosts.entry(ip).or_insert_with(|| HostEntry {
            host: Arc::new(Host::new(ip, HostProfile::default())),
            down_since: None,
            pipes: Vec::new(),
            prune_at: 16,
        })
    }

    fn resend_held(&self) {
        for (ip, e) in &self.hosts {
            for pipe in e.live().filter(|p| p.from.ip == *ip) {
                pipe.resend_held();
            }
        }
    }
}

fn jittered(base: Duration, jitter: f64, unit: f64) -> Duration {
    if jitter <= 0.0 || base.is_zero() {
        return base;
    }
    base.mul_f64((1.0 + jitter * (2.0 * unit - 1.0)).max(0.0))
}

/// A segment of a direction: bytes (or, empty, the end of the stream) and
/// when it arrives (`None`: held by a partition).
struct Segment {
    arrival: Option<Instant>,
    data: Bytes,
}

/// One direction of a connection.
pub(crate) struct Pipe {
    from: Arc<Host>,
    to: Arc<Host>,
    latency: Duration,
    model: Arc<LinkModel>,
    state: Mutex<PipeState>,
}

struct PipeState {
    segments: VecDeque<Segment>,
    /// Bytes in `segments` (in flight or unread).
    buffered: usize,
    last_arrival: Option<Instant>,
    /// The writer sent the end of the stream.
    fin: bool,
    /// The reader is gone (its stream was dropped).
    reader_gone: bool,
    /// When the writer learns that the reader is gone: the peer's reset
    /// answers the first write after the reader left, one round trip
    /// later. Until then writes succeed (and are dropped), as in TCP.
    reset_arrives: Option<Instant>,
    /// Reset by the user timeout.
    reset: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    rng: SplitMix,
}

impl Pipe {
    fn new(
        from: Arc<Host>,
        to: Arc<Host>,
        latency: Duration,
        model: Arc<LinkModel>,
        seed: u64,
    ) -> Self {
        Pipe {
            from,
            to,
            latency,
            model,
            state: Mutex::new(PipeState {
                segments: VecDeque::new(),
                buffered: 0,
                last_arrival: None,
                fin: false,
                reader_gone: false,
                reset_arrives: None,
                reset: false,
                read_waker: None,
                write_waker: None,
                rng: SplitMix::new(seed),
            }),
        }
    }

    /// When a segment of `n` bytes sent now arrives.
    fn arrival(&self, st: &mut PipeState, n: usize) -> Instant {
        let now = Instant::now();
        let sent = self.from.transmit(true, now, n);
        let mut delay = jittered(self.latency, self.model.jitter, st.rng.unit());
        if self.model.loss > 0.0 && st.rng.unit() < self.model.loss {
            delay += self.model.min_rto.max(2 * self.latency);
        }
        let arrived = self.to.transmit(false, sent + delay, n);
        let arrival = st.last_arrival.map_or(arrived, |l| l.max(arrived));
        st.last_arrival = Some(arrival);
        arrival
    }

    fn push(&self, st: &mut PipeState, data: Bytes) {
        let arrival = reachable(&self.from, &self.to).then(|| self.arrival(st, data.len()));
        st.buffered += data.len();
        st.segments.push_back(Segment { arrival, data });
        if let Some(w) = st.read_waker.take() {
            w.wake();
        }
    }

    /// The writer ends the stream (shutdown or drop).
    fn finish(&self) {
        let mut st = lock(&self.state);
        if st.fin || st.reset {
            return;
        }
        st.fin = true;
        if self.from.is_down() || st.reader_gone {
            return;
        }
        self.push(&mut st, Bytes::new());
    }

    /// The reader is gone: what is queued is dropped; the writer learns it
    /// one round trip after its next write (if the reader's host can still
    /// say so).
    fn reader_gone(&self) {
        let mut st = lock(&self.state);
        st.reader_gone = true;
        st.segments.clear();
        st.buffered = 0;
        if let Some(w) = st.write_waker.take() {
            w.wake();
        }
    }

    fn reset(&self) {
        let mut st = lock(&self.state);
        st.reset = true;
        st.segments.clear();
        st.buffered = 0;
        if let Some(w) = st.read_waker.take() {
            w.wake();
        }
        if let Some(w) = st.write_waker.take() {
            w.wake();
        }
    }

    /// Held segments leave again, in order, once the hosts reach each
    /// other.
    fn resend_held(&self) {
        if !reachable(&self.from, &self.to) {
            return;
        }
        let mut st = lock(&self.state);
        let st = &mut *st;
        let mut woke = false;
        for i in 0..st.segments.len() {
            if st.segments[i].arrival.is_none() {
                let n = st.segments[i].data.len();
                let arrival = self.arrival(st, n);
                st.segments[i].arrival = Some(arrival);
                woke = true;
            }
        }
        if woke {
            if let Some(w) = st.read_waker.take() {
                w.wake();
            }
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut st = lock(&self.state);
        if st.reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        if st.fin {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if buf.is_empty() || self.from.is_down() {
            // A host that is down sends nothing.
            return Poll::Ready(Ok(buf.len()));
        }
        if st.reader_gone {
            // The peer closed: TCP accepts the write, the peer answers it
            // with a reset, and only a write after the reset has come back
            // fails. (Failing at once lost, in a race with the write of an
            // Ack, the Nack a peer had sent just before closing.)
            if reachable(&self.from, &self.to) {
                let now = Instant::now();
                let at = *st.reset_arrives.get_or_insert(now + 2 * self.latency);
                if now >= at {
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
            }
            return Poll::Ready(Ok(buf.len()));
        }
        let room = self.model.window.max(1).saturating_sub(st.buffered);
        if room == 0 {
            st.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        self.push(&mut st, Bytes::copy_from_slice(&buf[..n]));
        Poll::Ready(Ok(n))
    }

    /// Copies what has arrived; `Ok(Some(t))` when the next segment
    /// arrives at `t`, `Ok(None)` when something was read (or the end), and
    /// `Pending` (waker registered) when nothing is on its way.
    fn poll_read_now(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<Option<Instant>>> {
        let mut st = lock(&self.state);
        if st.reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let now = Instant::now();
        let mut copied = 0;
        while let Some(seg) = st.segments.front_mut() {
            if seg.arrival.is_none_or(|t| t > now) {
                break;
            }
            if seg.data.is_empty() {
                // The end of the stream: stays, so later reads see it too.
                if copied == 0 {
                    return Poll::Ready(Ok(None));
                }
                break;
            }
            let k = buf.remaining().min(seg.data.len());
            if k == 0 {
                break;
            }
            buf.put_slice(&seg.data[..k]);
            seg.data.advance(k);
            copied += k;
            if seg.data.is_empty() {
                st.segments.pop_front();
            }
        }
        if copied > 0 || buf.remaining() == 0 {
            st.buffered -= copied;
            if let Some(w) = st.write_waker.take() {
                w.wake();
            }
            return Poll::Ready(Ok(None));
        }
        st.read_waker = Some(cx.waker().clone());
        match st.segments.front().and_then(|s| s.arrival) {
            Some(t) => Poll::Ready(Ok(Some(t))),
            None => Poll::Pending,
        }
    }
}

/// One end of a connection over the link model.
pub(crate) struct LinkStream {
    tx: Arc<Pipe>,
    rx: Arc<Pipe>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl LinkStream {
    pub(crate) fn new(tx: Arc<Pipe>, rx: Arc<Pipe>) -> Self {
        LinkStream {
            tx,
            rx,
            sleep: None,
        }
    }
}

impl AsyncRead for LinkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.rx.poll_read_now(cx, buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(None)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(Some(at))) => {
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    if sleep.deadline() != at {
                        sleep.as_mut().reset(at);
                    }
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.tx.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx.finish();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LinkStream {
    fn drop(&mut self) {
        self.tx.finish();
        self.rx.reader_gone();
    }
}
