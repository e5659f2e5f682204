//! Access control lists (spec `pool-behaviour.md` §4, Octez `P2p_acl`).
//!
//! Four lists decide whether an address or a peer id may connect:
//!
//! * the **IP greylist**, a countdown ("generational") Bloom filter whose entries fade
//!   out after about [`AclConfig::ip_greylist_cleanup_delay`], plus a bounded display
//!   list of the greylisted addresses (§4.1);
//! * the **peer greylist**, a bounded set with FIFO eviction (§4.2);
//! * the **IP blacklist** and the **peer blacklist**, filled and emptied only by the
//!   operator (the ban/unban RPCs), hence unbounded and never expiring.
//!
//! [`Acl`] is a plain synchronous data structure: it reads no clock and spawns no
//! task. The pool wraps it in a mutex, passes the current time to
//! [`Acl::greylist_addr`], and calls [`Acl::countdown`] every
//! [`Acl::countdown_interval`].
//!
//! Addresses are always handled in their 16-byte IPv6 form, an IPv4 address being the
//! same as its IPv4-mapped IPv6 address (`::ffff:a.b.c.d`); ports are never part of an
//! ACL check.
//!
//! Differences from Octez:
//!
//! * (quirk 6) [`Acl::clear_greylists`] (`DELETE /network/greylist`) clears only the two
//!   greylists, not the manual blacklists; [`Acl::clear`] clears all four lists.
//! * (quirk 7) The IP greylist display list only lists addresses still in the Bloom
//!   filter: expired addresses are filtered when listing and pruned at every countdown.
//! * (quirk 8) The Bloom filter uses at most the configured memory (two 4-bit counters
//!   per byte, rounded down to a power of two), not twice it, and sizes up to 65535 KiB
//!   work instead of sizes from 8192 KiB failing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use tezos_p2p_wire::identity::PeerId;
use tezos_p2p_wire::point::ipv6_form;

/// Number of hash functions of the IP greylist Bloom filter (Octez: `hashes = 5`).
const BLOOM_HASHES: usize = 5;

/// Value a counter is set to when an address is added: 16 generations of 4 bits.
const COUNTER_MAX: u64 = 0xF;

/// Counters (nibbles) per 64-bit word of the Bloom filter.
const CELLS_PER_WORD: usize = 16;

/// Number of countdown steps per [`AclConfig::ip_greylist_cleanup_delay`].
const GENERATIONS: u32 = 16;

/// Largest accepted [`AclConfig::ip_greylist_size_in_kilobytes`] (the Octez
/// configuration field is a `uint16`).
pub const MAX_IP_GREYLIST_SIZE_IN_KILOBYTES: usize = 65535;

/// Sizing of the access control lists (the ACL-related fields of Octez `P2p_limits`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclConfig {
    /// Memory of the IP greylist Bloom filter in KiB, and capacity (in entries) of the
    /// greylisted-IP display list. Must be in `1..=65535`. Octez default: 2048.
    pub ip_greylist_size_in_kilobytes: usize,
    /// How long a greylisted IP stays greylisted: the Bloom filter counts down every
    /// 1/16 of this delay, so an address added once stays between 14/16 and 15/16 of it.
    /// Must be at least 16 ns. Octez default: 86 400 s.
    pub ip_greylist_cleanup_delay: Duration,
    /// Capacity of the peer greylist. Must be > 0. Octez default: 1023.
    pub peer_greylist_size: usize,
}

impl AclConfig {
    /// Says which field is invalid, if one is.
    pub fn validate(&self) -> Result<(), AclError> {
        let kib = self.ip_greylist_size_in_kilobytes;
        if kib == 0 || kib > MAX_IP_GREYLIST_SIZE_IN_KILOBYTES {
            return Err(AclError::InvalidIpGreylistSize(kib));
        }
        if self.peer_greylist_size == 0 {
            return Err(AclError::InvalidPeerGreylistSize);
        }
        if (self.ip_greylist_cleanup_delay / GENERATIONS).is_zero() {
            return Err(AclError::InvalidCleanupDelay(
                self.ip_greylist_cleanup_delay,
            ));
        }
        Ok(())
    }
}

impl Default for AclConfig {
    fn default() -> Self {
        Self {
            ip_greylist_size_in_kilobytes: 2048,
            ip_greylist_cleanup_delay: Duration::from_secs(86_400),
            peer_greylist_size: 1023,
        }
    }
}

/// An invalid [`AclConfig`], rejected by [`Acl::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// `ip_greylist_size_in_kilobytes` is 0 or above 65535.
    #[error(
        "ip_greylist_size_in_kilobytes must be between 1 and {MAX_IP_GREYLIST_SIZE_IN_KILOBYTES}, got {0}"
    )]
    InvalidIpGreylistSize(usize),
    /// `peer_greylist_size` is 0.
    #[error("peer_greylist_size must be greater than 0")]
    InvalidPeerGreylistSize,
    /// `ip_greylist_cleanup_delay` is so short that its sixteenth (the countdown
    /// period) is zero.
    #[error("ip_greylist_cleanup_delay must be at least 16 ns (its 1/16 is the countdown period), got {0:?}")]
    InvalidCleanupDelay(Duration),
}

impl AclError {
    /// The field of [`AclConfig`] (and of `Limits`) at fault.
    pub fn field(&self) -> &'static str {
        match self {
            AclError::InvalidIpGreylistSize(_) => "ip_greylist_size_in_kilobytes",
            AclError::InvalidPeerGreylistSize => "peer_greylist_size",
            AclError::InvalidCleanupDelay(_) => "ip_greylist_cleanup_delay",
        }
    }
}

/// The greylisted IP addresses, as listed by `GET /network/greylist/ips`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GreylistedIps {
    /// Addresses still greylisted that are in the display list, oldest first. IPv4
    /// addresses are given as [`IpAddr::V4`].
    pub ips: Vec<IpAddr>,
    /// Set when the display list first had to drop an entry to make room (since the
    /// last clear): from then on `ips` may miss greylisted addresses.
    pub not_reliable_since: Option<SystemTime>,
}

/// The four access control lists of a pool (§4).
pub struct Acl {
    bloom: CountdownBloom,
    ip_display: FifoSet<Ipv6Addr>,
    not_reliable_since: Option<SystemTime>,
    peer_greylist: FifoSet<PeerId>,
    ip_blacklist: HashSet<Ipv6Addr>,
    peer_blacklist: HashSet<PeerId>,
    countdown_interval: Duration,
}

impl fmt::Debug for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acl")
            .field("bloom_bytes", &self.bloom.memory_bytes())
            .field("ip_display_len", &self.ip_display.len())
            .field("not_reliable_since", &self.not_reliable_since)
            .field("peer_greylist_len", &self.peer_greylist.len())
            .field("ip_blacklist_len", &self.ip_blacklist.len())
            .field("peer_blacklist_len", &self.peer_blacklist.len())
            .field("countdown_interval", &self.countdown_interval)
            .finish()
    }
}

impl Acl {
    /// Creates empty lists sized by `cfg`, or says which field of `cfg` is invalid.
    pub fn new(cfg: &AclConfig) -> Result<Self, AclError> {
        cfg.validate()?;
        let kib = cfg.ip_greylist_size_in_kilobytes;
        let countdown_interval = cfg.ip_greylist_cleanup_delay / GENERATIONS;
        Ok(Self {
            bloom: CountdownBloom::with_kib(kib),
            ip_display: FifoSet::new(kib),
            not_reliable_since: None,
            peer_greylist: FifoSet::new(cfg.peer_greylist_size),
            ip_blacklist: HashSet::new(),
            peer_blacklist: HashSet::new(),
            countdown_interval,
        })
    }

    /// Greylists `ip` for about [`AclConfig::ip_greylist_cleanup_delay`] (refreshing it
    /// if already greylisted) and records it in the display list; `now` dates the
    /// display list's loss of entries if this addition evicts one.
    pub fn greylist_addr(&mut self, ip: IpAddr, now: SystemTime) {
        let ip = ipv6_form(ip);
        self.bloom.add(&ip);
        if self.ip_display.insert(ip).is_some() && self.not_reliable_since.is_none() {
            self.not_reliable_since = Some(now);
        }
    }

    /// Adds `peer` to the peer greylist as its newest member, evicting the oldest-added
    /// member if the list is full. (The pool also greylists the peer's IP, §4.3.)
    pub fn greylist_peer(&mut self, peer: PeerId) {
        self.peer_greylist.insert(peer);
    }

    /// Whether connections from `ip` are refused: blacklisted or greylisted. Bloom
    /// filter false positives are possible.
    pub fn banned_addr(&self, ip: IpAddr) -> bool {
        let ip = ipv6_form(ip);
        self.ip_blacklist.contains(&ip) || self.bloom.contains(&ip)
    }

    /// Whether `peer` is refused: blacklisted or greylisted.
    pub fn banned_peer(&self, peer: &PeerId) -> bool {
        self.peer_blacklist.contains(peer) || self.peer_greylist.contains(peer)
    }

    /// Adds `ip` to the IP blacklist, where it stays until [`Acl::unban_addr`] or
    /// [`Acl::clear`].
    pub fn ban_addr(&mut self, ip: IpAddr) {
        self.ip_blacklist.insert(ipv6_form(ip));
    }

    /// Removes `ip` from the IP blacklist, the IP greylist and its display list. Zeroing
    /// its Bloom cells can also un-greylist addresses that share a cell with it.
    pub fn unban_addr(&mut self, ip: IpAddr) {
        let ip = ipv6_form(ip);
        self.ip_blacklist.remove(&ip);
        self.bloom.remove(&ip);
        self.ip_display.remove(&ip);
    }

    /// Adds `peer` to the peer blacklist, where it stays until [`Acl::unban_peer`] or
    /// [`Acl::clear`].
    pub fn ban_peer(&mut self, peer: PeerId) {
        self.peer_blacklist.insert(peer);
    }

    /// Removes `peer` from the peer blacklist and the peer greylist.
    pub fn unban_peer(&mut self, peer: &PeerId) {
        self.peer_blacklist.remove(peer);
        self.peer_greylist.remove(peer);
    }

    /// Whether `ip` is in the (manual) IP blacklist.
    pub fn is_blacklisted_addr(&self, ip: IpAddr) -> bool {
        self.ip_blacklist.contains(&ipv6_form(ip))
    }

    /// Whether `ip` is in the IP greylist (Bloom filter membership: false positives are
    /// possible).
    pub fn is_greylisted_addr(&self, ip: IpAddr) -> bool {
        self.bloom.contains(&ipv6_form(ip))
    }

    /// Whether `peer` is in the (manual) peer blacklist.
    pub fn is_blacklisted_peer(&self, peer: &PeerId) -> bool {
        self.peer_blacklist.contains(peer)
    }

    /// Whether `peer` is in the peer greylist.
    pub fn is_greylisted_peer(&self, peer: &PeerId) -> bool {
        self.peer_greylist.contains(peer)
    }

    /// The display list of greylisted IPs, oldest first, without the addresses that have
    /// expired from the Bloom filter.
    pub fn greylisted_ips(&self) -> GreylistedIps {
        GreylistedIps {
            ips: self
                .ip_display
                .iter()
                .filter(|ip| self.bloom.contains(ip))
                .map(|ip| IpAddr::V6(*ip).to_canonical())
                .collect(),
            not_reliable_since: self.not_reliable_since,
        }
    }

    /// The greylisted peers, oldest-added first.
    pub fn greylisted_peers(&self) -> Vec<PeerId> {
        self.peer_greylist.iter().copied().collect()
    }

    /// The addresses in the (manual) IP blacklist, in no particular order, IPv4
    /// addresses as IPv4-mapped IPv6 (Octez's form).
    pub fn blacklisted_addrs(&self) -> Vec<IpAddr> {
        self.ip_blacklist.iter().map(|ip| IpAddr::V6(*ip)).collect()
    }

    /// The peers in the (manual) peer blacklist, in no particular order.
    pub fn blacklisted_peers(&self) -> Vec<PeerId> {
        self.peer_blacklist.iter().copied().collect()
    }

    /// One decay step of the IP greylist: decrements every non-zero Bloom counter, then
    /// drops the expired addresses from the display list. To be called every
    /// [`Acl::countdown_interval`].
    pub fn countdown(&mut self) {
        self.bloom.countdown();
        let bloom = &self.bloom;
        self.ip_display.retain(|ip| bloom.contains(ip));
    }

    /// The period of [`Acl::countdown`]: 1/16 of
    /// [`AclConfig::ip_greylist_cleanup_delay`] (Octez default 5400 s).
    pub fn countdown_interval(&self) -> Duration {
        self.countdown_interval
    }

    /// Clears the IP greylist (Bloom filter and display list, resetting
    /// `not_reliable_since`) and the peer greylist. The manual blacklists are kept
    /// (Octez also clears them, quirk 6; use [`Acl::clear`] for that).
    pub fn clear_greylists(&mut self) {
        self.bloom.clear();
        self.ip_display.clear();
        self.not_reliable_since = None;
        self.peer_greylist.clear();
    }

    /// Clears all four lists, as Octez's `acl_clear` does.
    pub fn clear(&mut self) {
        self.clear_greylists();
        self.ip_blacklist.clear();
        self.peer_blacklist.clear();
    }

    /// Bytes used by the IP greylist Bloom filter's counters: the configured size
    /// rounded down to a power of two KiB.
    pub fn memory_bytes(&self) -> usize {
        self.bloom.memory_bytes()
    }
}

/// A countdown Bloom filter of 4-bit counters packed 16 per `u64` (§4.1).
struct CountdownBloom {
    words: Vec<u64>,
    index_bits: u32,
    /// Words with a non-zero counter: with none, `contains` is false without
    /// hashing (a pool checks every known point when it lists them, and the
    /// hash was a quarter of a 1 000-node simulation's time).
    nonzero_words: usize,
}

impl CountdownBloom {
    /// `kib` KiB of counters (two per byte), rounded down to a power-of-two count.
    fn with_kib(kib: usize) -> Self {
        let cells = kib * 1024 * 2;
        let index_bits = usize::BITS - 1 - cells.leading_zeros();
        Self {
            words: vec![0; (1usize << index_bits) / CELLS_PER_WORD],
            index_bits,
            nonzero_words: 0,
        }
    }

    /// The 5 cell indices of `ip`: consecutive `index_bits`-bit big-endian fields of
    /// the Blake2b-256 digest of its 16 bytes.
    fn indices(&self, ip: &Ipv6Addr) -> [usize; BLOOM_HASHES] {
        let digest = blake2b_simd::Params::new()
            .hash_length(32)
            .hash(&ip.octets());
        let digest = digest.as_bytes();
        let bits = self.index_bits as usize;
        let mut out = [0; BLOOM_HASHES];
        for (i, slot) in out.iter_mut().enumerate() {
            // index_bits <= 26, so the field starting at bit `off` lies within the
            // 8 bytes starting at byte off / 8, all inside the 32-byte digest.
            let off = i * bits;
            let mut window = [0u8; 8];
            window.copy_from_slice(&digest[off / 8..off / 8 + 8]);
            let window = u64::from_be_bytes(window) << (off % 8);
            *slot = (window >> (64 - bits)) as usize;
        }
        out
    }

    fn add(&mut self, ip: &Ipv6Addr) {
        for i in self.indices(ip) {
            let w = &mut self.words[i / CELLS_PER_WORD];
            self.nonzero_words += usize::from(*w == 0);
            *w |= COUNTER_MAX << shift(i);
        }
    }

    fn remove(&mut self, ip: &Ipv6Addr) {
        for i in self.indices(ip) {
            let w = &mut self.words[i / CELLS_PER_WORD];
            let was = *w != 0;
            *w &= !(COUNTER_MAX << shift(i));
            self.nonzero_words -= usize::from(was && *w == 0);
        }
    }

    fn contains(&self, ip: &Ipv6Addr) -> bool {
        if self.nonzero_words == 0 {
            return false;
        }
        self.indices(ip)
            .into_iter()
            .all(|i| (self.words[i / CELLS_PER_WORD] >> shift(i)) & COUNTER_MAX != 0)
    }

    /// Decrements every non-zero counter, 16 at a time: for each nibble, the OR of its
    /// four bits lands in its low bit, and subtracting that never borrows across
    /// nibbles.
    fn countdown(&mut self) {
        const LOW_BITS: u64 = 0x1111_1111_1111_1111;
        let mut nonzero_words = 0;
        for w in self.words.iter_mut().filter(|w| **w != 0) {
            let nonzero = (*w | *w >> 1 | *w >> 2 | *w >> 3) & LOW_BITS;
            *w -= nonzero;
            nonzero_words += usize::from(*w != 0);
        }
        self.nonzero_words = nonzero_words;
    }

    fn clear(&mut self) {
        self.words.fill(0);
        self.nonzero_words = 0;
    }

    fn memory_bytes(&self) -> usize {
        self.words.len() * std::mem::size_of::<u64>()
    }
}

/// Bit offset of cell `i` in its word.
fn shift(i: usize) -> u32 {
    ((i % CELLS_PER_WORD) * 4) as u32
}

/// A bounded set evicting its oldest-inserted member; re-inserting a member makes it
/// the newest, membership tests do not.
struct FifoSet<T> {
    capacity: usize,
    next_seq: u64,
    seq_of: HashMap<T, u64>,
    by_seq: BTreeMap<u64, T>,
}

impl<T: Copy + Eq + Hash> FifoSet<T> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            next_seq: 0,
            seq_of: HashMap::new(),
            by_seq: BTreeMap::new(),
        }
    }

    /// Inserts `x` as the newest member; returns the member evicted to make room.
    fn insert(&mut self, x: T) -> Option<T> {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(old) = self.seq_of.insert(x, seq) {
            self.by_seq.remove(&old);
            self.by_seq.insert(seq, x);
            return None;
        }
        self.by_seq.insert(seq, x);
        if self.by_seq.len() > self.capacity {
            let (_, oldest) = self.by_seq.pop_first()?;
            self.seq_of.remove(&oldest);
            return Some(oldest);
        }
        None
    }

    fn remove(&mut self, x: &T) {
        if let Some(seq) = self.seq_of.remove(x) {
            self.by_seq.remove(&seq);
        }
    }

    fn contains(&self, x: &T) -> bool {
        self.seq_of.contains_key(x)
    }

    fn len(&self) -> usize {
        self.seq_of.len()
    }

    /// Members, oldest first.
    fn iter(&self) -> impl Iterator<Item = &T> {
        self.by_seq.values()
    }

    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let seq_of = &mut self.seq_of;
        self.by_seq.retain(|_, x| {
            let k = keep(x);
            if !k {
                seq_of.remove(x);
            }
            k
        });
    }

    fn clear(&mut self) {
        self.seq_of.clear();
        self.by_seq.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::net::{Ipv4Addr, SocketAddr};

    fn acl() -> Acl {
        Acl::new(&AclConfig::default()).unwrap()
    }

    fn small_acl(kib: usize, peers: usize) -> Acl {
        Acl::new(&AclConfig {
            ip_greylist_size_in_kilobytes: kib,
            peer_greylist_size: peers,
            ..AclConfig::default()
        })
        .unwrap()
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn peer(n: u8) -> PeerId {
        PeerId([n; 16])
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn random_ip(rng: &mut StdRng) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(rng.gen::<u128>()))
    }

    #[test]
    fn blacklists_list_what_was_banned_and_not_what_was_unbanned() {
        let mut acl = acl();
        acl.ban_addr(v4(10, 0, 0, 1));
        acl.ban_addr(v4(10, 0, 0, 2));
        acl.greylist_addr(v4(10, 0, 0, 3), t(0));
        acl.unban_addr(v4(10, 0, 0, 2));
        acl.ban_peer(peer(1));
        acl.ban_peer(peer(2));
        acl.greylist_peer(peer(3));
        acl.unban_peer(&peer(1));
        assert_eq!(
            acl.blacklisted_addrs(),
            vec![IpAddr::V6(ipv6_form(v4(10, 0, 0, 1)))]
        );
        assert_eq!(acl.blacklisted_peers(), vec![peer(2)]);
    }

    #[test]
    fn greylisted_ip_is_banned_and_expires_after_15_countdowns() {
        let mut acl = acl();
        let ip = v4(10, 0, 0, 1);
        assert!(!acl.banned_addr(ip));
        acl.greylist_addr(ip, t(0));
        assert!(acl.banned_addr(ip) && acl.is_greylisted_addr(ip));
        assert!(!acl.is_blacklisted_addr(ip));
        for _ in 0..14 {
            acl.countdown();
            assert!(acl.banned_addr(ip));
        }
        acl.countdown();
        assert!(!acl.banned_addr(ip));
        assert!(!acl.is_greylisted_addr(ip));
    }

    #[test]
    fn greylist_lifetime_is_between_14_and_16_sixteenths_of_the_delay() {
        // Countdowns happen at k * interval; an address added at any phase of the
        // period stays greylisted for more than 14 and at most 15 intervals.
        let acl0 = acl();
        let interval = acl0.countdown_interval();
        assert_eq!(interval, Duration::from_secs(5400));
        let delay = AclConfig::default().ip_greylist_cleanup_delay;
        for phase in [1, 2700, 5399] {
            let mut acl = acl();
            let ip = v4(192, 0, 2, 7);
            let added = Duration::from_secs(phase);
            acl.greylist_addr(ip, t(phase));
            let mut k = 1;
            while acl.banned_addr(ip) {
                acl.countdown();
                k += 1;
            }
            let expired_at = interval * (k - 1);
            let lifetime = expired_at - added;
            assert!(lifetime > delay * 14 / 16, "{lifetime:?}");
            assert!(lifetime <= delay * 16 / 16, "{lifetime:?}");
        }
    }

    #[test]
    fn regreylisting_refreshes_the_lifetime() {
        let mut acl = acl();
        let ip = v4(10, 0, 0, 2);
        acl.greylist_addr(ip, t(0));
        for _ in 0..10 {
            acl.countdown();
        }
        acl.greylist_addr(ip, t(1));
        for _ in 0..14 {
            acl.countdown();
        }
        assert!(acl.banned_addr(ip));
    }

    #[test]
    fn the_filter_knows_when_it_is_empty() {
        let mut acl = acl();
        let (a, b) = (v4(10, 0, 0, 4), v4(10, 0, 0, 5));
        assert_eq!(acl.bloom.nonzero_words, 0);
        acl.greylist_addr(a, t(0));
        acl.greylist_addr(b, t(0));
        assert!(acl.bloom.nonzero_words > 0);
        acl.unban_addr(a);
        assert!(acl.banned_addr(b) && !acl.banned_addr(a));
        acl.unban_addr(b);
        assert_eq!(acl.bloom.nonzero_words, 0);
        assert_eq!(acl.bloom.words.iter().filter(|w| **w != 0).count(), 0);
        // Counted down to zero: empty again.
        acl.greylist_addr(a, t(1));
        for _ in 0..16 {
            acl.countdown();
        }
        assert!(!acl.banned_addr(a));
        assert_eq!(acl.bloom.nonzero_words, 0);
    }

    #[test]
    fn unban_removes_greylisted_and_blacklisted_ip() {
        let mut acl = acl();
        let ip = v4(10, 0, 0, 3);
        acl.greylist_addr(ip, t(0));
        acl.ban_addr(ip);
        acl.unban_addr(ip);
        assert!(!acl.banned_addr(ip));
        assert!(!acl.is_blacklisted_addr(ip));
        assert!(!acl.is_greylisted_addr(ip));
        assert!(acl.greylisted_ips().ips.is_empty());
    }

    #[test]
    fn ipv4_and_ipv4_mapped_are_the_same_address() {
        let mut acl = acl();
        let plain = v4(203, 0, 113, 9);
        let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 9).to_ipv6_mapped());
        acl.greylist_addr(mapped, t(0));
        assert!(acl.banned_addr(plain));
        acl.ban_addr(plain);
        assert!(acl.is_blacklisted_addr(mapped));
        assert_eq!(acl.greylisted_ips().ips, vec![plain]);
        acl.unban_addr(plain);
        assert!(!acl.banned_addr(mapped));
    }

    #[test]
    fn ports_are_ignored() {
        let mut acl = acl();
        let a: SocketAddr = "198.51.100.1:9732".parse().unwrap();
        let b: SocketAddr = "198.51.100.1:19732".parse().unwrap();
        acl.greylist_addr(a.ip(), t(0));
        assert!(acl.banned_addr(b.ip()));
    }

    #[test]
    fn memory_equals_the_configured_size() {
        assert_eq!(acl().memory_bytes(), 2048 * 1024);
        assert_eq!(small_acl(1, 1).memory_bytes(), 1024);
        assert_eq!(small_acl(8192, 1).memory_bytes(), 8192 * 1024);
        // Not a power of two: rounded down, never above the configured size.
        assert_eq!(small_acl(3000, 1).memory_bytes(), 2048 * 1024);
        let max = small_acl(MAX_IP_GREYLIST_SIZE_IN_KILOBYTES, 1);
        assert_eq!(max.memory_bytes(), 32768 * 1024);
    }

    #[test]
    fn invalid_sizes_are_rejected() {
        let with = |kib, peers, delay| AclConfig {
            ip_greylist_size_in_kilobytes: kib,
            peer_greylist_size: peers,
            ip_greylist_cleanup_delay: delay,
        };
        let day = Duration::from_secs(86_400);
        assert_eq!(
            Acl::new(&with(0, 1, day)).unwrap_err(),
            AclError::InvalidIpGreylistSize(0)
        );
        assert_eq!(
            Acl::new(&with(65536, 1, day)).unwrap_err(),
            AclError::InvalidIpGreylistSize(65536)
        );
        assert_eq!(
            Acl::new(&with(1, 0, day)).unwrap_err(),
            AclError::InvalidPeerGreylistSize
        );
        assert_eq!(
            Acl::new(&with(1, 1, Duration::ZERO)).unwrap_err(),
            AclError::InvalidCleanupDelay(Duration::ZERO)
        );
        assert!(AclError::InvalidIpGreylistSize(0)
            .to_string()
            .contains("between 1 and 65535"));
    }

    #[test]
    fn peer_greylist_evicts_the_oldest_added_and_readd_promotes() {
        let mut acl = small_acl(1, 3);
        for n in 1..=3 {
            acl.greylist_peer(peer(n));
        }
        // A membership test does not refresh peer 1; re-adding refreshes peer 2.
        assert!(acl.banned_peer(&peer(1)));
        acl.greylist_peer(peer(2));
        assert_eq!(acl.greylisted_peers(), vec![peer(1), peer(3), peer(2)]);
        acl.greylist_peer(peer(4));
        assert!(!acl.is_greylisted_peer(&peer(1)));
        assert_eq!(acl.greylisted_peers(), vec![peer(3), peer(2), peer(4)]);
        acl.greylist_peer(peer(5));
        assert!(!acl.is_greylisted_peer(&peer(3)));
        assert!(acl.is_greylisted_peer(&peer(2)));
    }

    #[test]
    fn blacklist_is_manual_and_greylist_is_automatic() {
        let mut acl = acl();
        let (ip, p) = (v4(10, 1, 1, 1), peer(7));
        acl.ban_addr(ip);
        acl.ban_peer(p);
        assert!(acl.banned_addr(ip) && acl.is_blacklisted_addr(ip));
        assert!(!acl.is_greylisted_addr(ip));
        assert!(acl.banned_peer(&p) && acl.is_blacklisted_peer(&p));
        assert!(!acl.is_greylisted_peer(&p));
        // Blacklisted items never expire and are not listed as greylisted.
        for _ in 0..32 {
            acl.countdown();
        }
        assert!(acl.banned_addr(ip) && acl.banned_peer(&p));
        assert!(acl.greylisted_ips().ips.is_empty());
        assert!(acl.greylisted_peers().is_empty());
        // Unbanning a peer clears both its lists.
        acl.greylist_peer(p);
        acl.unban_peer(&p);
        assert!(!acl.banned_peer(&p));
        assert!(!acl.is_greylisted_peer(&p));
    }

    #[test]
    fn clear_greylists_keeps_blacklists_and_clear_removes_all() {
        let mut acl = small_acl(1, 4);
        let (bad_ip, grey_ip) = (v4(10, 2, 0, 1), v4(10, 2, 0, 2));
        let (bad, grey) = (peer(1), peer(2));
        acl.ban_addr(bad_ip);
        acl.ban_peer(bad);
        for n in 0..=1024u16 {
            acl.greylist_addr(IpAddr::V6(Ipv6Addr::from(n as u128)), t(5));
        }
        acl.greylist_addr(grey_ip, t(6));
        acl.greylist_peer(grey);
        assert!(acl.greylisted_ips().not_reliable_since.is_some());

        acl.clear_greylists();
        assert!(acl.banned_addr(bad_ip) && acl.banned_peer(&bad));
        assert!(!acl.banned_addr(grey_ip) && !acl.banned_peer(&grey));
        assert_eq!(
            acl.greylisted_ips(),
            GreylistedIps {
                ips: vec![],
                not_reliable_since: None
            }
        );
        assert!(acl.greylisted_peers().is_empty());

        acl.greylist_addr(grey_ip, t(7));
        acl.greylist_peer(grey);
        acl.clear();
        assert!(!acl.banned_addr(bad_ip) && !acl.banned_peer(&bad));
        assert!(!acl.banned_addr(grey_ip) && !acl.banned_peer(&grey));
    }

    #[test]
    fn display_list_is_pruned_of_expired_ips() {
        let mut acl = acl();
        let (old, new) = (v4(10, 3, 0, 1), v4(10, 3, 0, 2));
        acl.greylist_addr(old, t(0));
        for _ in 0..8 {
            acl.countdown();
        }
        acl.greylist_addr(new, t(1));
        assert_eq!(acl.greylisted_ips().ips, vec![old, new]);
        for _ in 0..7 {
            acl.countdown();
        }
        assert_eq!(acl.greylisted_ips().ips, vec![new]);
        assert_eq!(acl.ip_display.len(), 1, "pruned at countdown");
        for _ in 0..8 {
            acl.countdown();
        }
        assert!(acl.greylisted_ips().ips.is_empty());
        assert_eq!(acl.ip_display.len(), 0);
    }

    #[test]
    fn display_list_filters_ips_unbanned_by_a_collision() {
        // Removing an address zeroes its cells; an address not in the filter any more
        // is not listed even if it is still in the display list.
        let mut acl = small_acl(1, 1);
        let ip = v4(10, 4, 0, 1);
        acl.greylist_addr(ip, t(0));
        acl.bloom.remove(&ipv6_form(ip));
        assert!(acl.greylisted_ips().ips.is_empty());
    }

    #[test]
    fn not_reliable_since_is_set_when_the_display_list_overflows() {
        let mut acl = small_acl(2, 1); // display capacity: 2 entries
        let ips = [v4(10, 5, 0, 1), v4(10, 5, 0, 2), v4(10, 5, 0, 3)];
        acl.greylist_addr(ips[0], t(1));
        acl.greylist_addr(ips[1], t(2));
        // Re-adding a listed address loses nothing.
        acl.greylist_addr(ips[0], t(3));
        assert_eq!(acl.greylisted_ips().not_reliable_since, None);
        assert_eq!(acl.greylisted_ips().ips, vec![ips[1], ips[0]]);
        acl.greylist_addr(ips[2], t(4));
        let listed = acl.greylisted_ips();
        assert_eq!(listed.not_reliable_since, Some(t(4)));
        assert_eq!(listed.ips, vec![ips[0], ips[2]]);
        // The first overflow date is kept.
        acl.greylist_addr(v4(10, 5, 0, 4), t(5));
        assert_eq!(acl.greylisted_ips().not_reliable_since, Some(t(4)));
        // The evicted address is still greylisted, just not listed.
        assert!(acl.banned_addr(ips[1]));
    }

    #[test]
    fn false_positive_rate_is_low_for_1000_random_ips_in_a_small_filter() {
        let mut rng = StdRng::seed_from_u64(2024);
        let mut acl = small_acl(16, 1); // 32768 counters
        let added: Vec<IpAddr> = (0..1000).map(|_| random_ip(&mut rng)).collect();
        for ip in &added {
            acl.greylist_addr(*ip, t(0));
        }
        assert!(
            added.iter().all(|ip| acl.banned_addr(*ip)),
            "no false negative"
        );
        let trials = 10_000;
        let false_positives = (0..trials)
            .map(|_| random_ip(&mut rng))
            .filter(|ip| !added.contains(ip) && acl.banned_addr(*ip))
            .count();
        // Theory: (1 - e^(-5*1000/32768))^5 ≈ 6e-5, i.e. < 1 expected here.
        assert!(false_positives <= 10, "{false_positives} / {trials}");
    }

    #[test]
    fn countdown_decrements_each_packed_counter_independently() {
        let mut bloom = CountdownBloom::with_kib(1);
        bloom.words[0] = 0xF0F1_2345_6789_ABCD;
        bloom.words[1] = 0x1000_0000_0000_0001;
        bloom.countdown();
        assert_eq!(bloom.words[0], 0xE0E0_1234_5678_9ABC);
        assert_eq!(bloom.words[1], 0);
        for _ in 0..15 {
            bloom.countdown();
        }
        assert!(bloom.words.iter().all(|w| *w == 0));
    }

    #[test]
    fn indices_are_in_range_and_spread() {
        for kib in [1, 2048, 65535] {
            let bloom = CountdownBloom::with_kib(kib);
            let cells = bloom.words.len() * CELLS_PER_WORD;
            let idx = bloom.indices(&Ipv6Addr::LOCALHOST);
            assert!(idx.iter().all(|i| *i < cells));
            assert!(idx.windows(2).any(|w| w[0] != w[1]));
        }
    }
}
