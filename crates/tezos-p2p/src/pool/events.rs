//! Pool-level events (`P2p_connection.P2p_event`, spec §9.1) and the
//! RFC 3339 time format Octez uses in its JSON (`Time.System.encoding`).
//!
//! The JSON shape of [`P2pEvent`] is Octez's `/network/log` shape: an object
//! whose `"event"` field names the kind, merged with the kind's payload
//! fields. Unlike Octez, `maintenance_started` / `maintenance_ended` are
//! encodable too (spec §11 quirk 5).

use serde::{Deserialize, Serialize};
use tezos_p2p_wire::identity::PeerId;
use tezos_p2p_wire::point::Point;

use crate::pool::conn_id::ConnId;

/// One pool-level event, as delivered to watchers and `/network/log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum P2pEvent {
    /// Fewer than `min_connections` active connections (Octez tag 0).
    TooFewConnections,
    /// More than `max_connections` active connections (tag 1).
    TooManyConnections,
    /// A point was added to the known-points table (tag 2).
    NewPoint {
        /// The point.
        point: Point,
    },
    /// A peer id was added to the known-peers table (tag 3).
    NewPeer {
        /// The peer.
        peer_id: PeerId,
    },
    /// An incoming TCP connection was accepted (tag 4).
    IncomingConnection {
        /// Remote `(ip, source port)`.
        point: Point,
    },
    /// An outgoing connection attempt started (tag 5).
    OutgoingConnection {
        /// The dialed point.
        point: Point,
    },
    /// The handshake failed (tag 6).
    AuthenticationFailed {
        /// The socket point.
        point: Point,
    },
    /// The handshake was admitted (tag 7).
    AcceptingRequest {
        /// The socket point.
        point: Point,
        /// The connection id (remote address, listening port if known).
        id_point: ConnId,
        /// The remote peer.
        peer_id: PeerId,
    },
    /// We rejected the handshake with a Nack (tag 8).
    RejectingRequest {
        /// The socket point.
        point: Point,
        /// The connection id.
        id_point: ConnId,
        /// The remote peer.
        peer_id: PeerId,
    },
    /// The Ack exchange failed (tag 9).
    RequestRejected {
        /// The socket point.
        point: Point,
        /// The connection id and peer, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<(ConnId, PeerId)>,
    },
    /// A connection became Running (tag 10).
    ConnectionEstablished {
        /// The connection id.
        id_point: ConnId,
        /// The remote peer.
        peer_id: PeerId,
    },
    /// A Running connection was torn down (tag 11).
    Disconnection {
        /// The remote peer.
        peer_id: PeerId,
    },
    /// A Running connection was torn down by the remote (tag 12; Octez never
    /// emits it on the watcher).
    ExternalDisconnection {
        /// The remote peer.
        peer_id: PeerId,
    },
    /// The known-points table was garbage-collected (tag 13).
    GcPoints,
    /// The known-peers table was garbage-collected (tag 14).
    GcPeerIds,
    /// A swap request arrived (tag 15).
    SwapRequestReceived {
        /// The peer that sent it.
        source: PeerId,
    },
    /// A swap ack arrived (tag 16).
    SwapAckReceived {
        /// The peer that sent it.
        source: PeerId,
    },
    /// We sent a swap request (tag 17).
    SwapRequestSent {
        /// The peer it was sent to.
        source: PeerId,
    },
    /// We sent a swap ack (tag 18).
    SwapAckSent {
        /// The peer it was sent to.
        source: PeerId,
    },
    /// A swap request was ignored (tag 19).
    SwapRequestIgnored {
        /// The peer that sent it.
        source: PeerId,
    },
    /// A swap succeeded (tag 20).
    SwapSuccess {
        /// The peer involved.
        source: PeerId,
    },
    /// A swap failed (tag 21).
    SwapFailure {
        /// The peer involved.
        source: PeerId,
    },
    /// We sent a Bootstrap request (tag 22).
    BootstrapSent {
        /// The peer it was sent to.
        source: PeerId,
    },
    /// A Bootstrap request arrived (tag 23).
    BootstrapReceived {
        /// The peer that sent it.
        source: PeerId,
    },
    /// We sent an Advertise (tag 24).
    AdvertiseSent {
        /// The peer it was sent to.
        source: PeerId,
    },
    /// An Advertise arrived (tag 25).
    AdvertiseReceived {
        /// The peer that sent it.
        source: PeerId,
    },
    /// A maintenance round started (no Octez encoding; our tag 26).
    MaintenanceStarted,
    /// A maintenance round ended (no Octez encoding; our tag 27).
    MaintenanceEnded,
}

/// The kind of a [`P2pEvent`], without its payload: what
/// [`Net::event_count`](crate::Net::event_count) counts. Its value is the
/// event's tag, Octez's binary union tag (`P2p_connection.P2p_event`;
/// 26 and 27 are our extension for the maintenance events, which Octez
/// cannot encode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[non_exhaustive]
pub enum EventKind {
    /// [`P2pEvent::TooFewConnections`].
    TooFewConnections = 0,
    /// [`P2pEvent::TooManyConnections`].
    TooManyConnections = 1,
    /// [`P2pEvent::NewPoint`].
    NewPoint = 2,
    /// [`P2pEvent::NewPeer`].
    NewPeer = 3,
    /// [`P2pEvent::IncomingConnection`].
    IncomingConnection = 4,
    /// [`P2pEvent::OutgoingConnection`].
    OutgoingConnection = 5,
    /// [`P2pEvent::AuthenticationFailed`].
    AuthenticationFailed = 6,
    /// [`P2pEvent::AcceptingRequest`].
    AcceptingRequest = 7,
    /// [`P2pEvent::RejectingRequest`].
    RejectingRequest = 8,
    /// [`P2pEvent::RequestRejected`].
    RequestRejected = 9,
    /// [`P2pEvent::ConnectionEstablished`].
    ConnectionEstablished = 10,
    /// [`P2pEvent::Disconnection`].
    Disconnection = 11,
    /// [`P2pEvent::ExternalDisconnection`].
    ExternalDisconnection = 12,
    /// [`P2pEvent::GcPoints`].
    GcPoints = 13,
    /// [`P2pEvent::GcPeerIds`].
    GcPeerIds = 14,
    /// [`P2pEvent::SwapRequestReceived`].
    SwapRequestReceived = 15,
    /// [`P2pEvent::SwapAckReceived`].
    SwapAckReceived = 16,
    /// [`P2pEvent::SwapRequestSent`].
    SwapRequestSent = 17,
    /// [`P2pEvent::SwapAckSent`].
    SwapAckSent = 18,
    /// [`P2pEvent::SwapRequestIgnored`].
    SwapRequestIgnored = 19,
    /// [`P2pEvent::SwapSuccess`].
    SwapSuccess = 20,
    /// [`P2pEvent::SwapFailure`].
    SwapFailure = 21,
    /// [`P2pEvent::BootstrapSent`].
    BootstrapSent = 22,
    /// [`P2pEvent::BootstrapReceived`].
    BootstrapReceived = 23,
    /// [`P2pEvent::AdvertiseSent`].
    AdvertiseSent = 24,
    /// [`P2pEvent::AdvertiseReceived`].
    AdvertiseReceived = 25,
    /// [`P2pEvent::MaintenanceStarted`].
    MaintenanceStarted = 26,
    /// [`P2pEvent::MaintenanceEnded`].
    MaintenanceEnded = 27,
}

impl EventKind {
    /// Every kind, in the order of their tags (the tag of `ALL[i]` is `i`).
    pub const ALL: &'static [EventKind] = &[
        EventKind::TooFewConnections,
        EventKind::TooManyConnections,
        EventKind::NewPoint,
        EventKind::NewPeer,
        EventKind::IncomingConnection,
        EventKind::OutgoingConnection,
        EventKind::AuthenticationFailed,
        EventKind::AcceptingRequest,
        EventKind::RejectingRequest,
        EventKind::RequestRejected,
        EventKind::ConnectionEstablished,
        EventKind::Disconnection,
        EventKind::ExternalDisconnection,
        EventKind::GcPoints,
        EventKind::GcPeerIds,
        EventKind::SwapRequestReceived,
        EventKind::SwapAckReceived,
        EventKind::SwapRequestSent,
        EventKind::SwapAckSent,
        EventKind::SwapRequestIgnored,
        EventKind::SwapSuccess,
        EventKind::SwapFailure,
        EventKind::BootstrapSent,
        EventKind::BootstrapReceived,
        EventKind::AdvertiseSent,
        EventKind::AdvertiseReceived,
        EventKind::MaintenanceStarted,
        EventKind::MaintenanceEnded,
    ];

    /// Octez's binary union tag of the kind.
    pub fn tag(self) -> u8 {
        self as u8
    }
}

impl P2pEvent {
    /// The kind of the event.
    pub fn kind(&self) -> EventKind {
        use P2pEvent::*;
        match self {
            TooFewConnections => EventKind::TooFewConnections,
            TooManyConnections => EventKind::TooManyConnections,
            NewPoint { .. } => EventKind::NewPoint,
            NewPeer { .. } => EventKind::NewPeer,
            IncomingConnection { .. } => EventKind::IncomingConnection,
            OutgoingConnection { .. } => EventKind::OutgoingConnection,
            AuthenticationFailed { .. } => EventKind::AuthenticationFailed,
            AcceptingRequest { .. } => EventKind::AcceptingRequest,
            RejectingRequest { .. } => EventKind::RejectingRequest,
            RequestRejected { .. } => EventKind::RequestRejected,
            ConnectionEstablished { .. } => EventKind::ConnectionEstablished,
            Disconnection { .. } => EventKind::Disconnection,
            ExternalDisconnection { .. } => EventKind::ExternalDisconnection,
            GcPoints => EventKind::GcPoints,
            GcPeerIds => EventKind::GcPeerIds,
            SwapRequestReceived { .. } => EventKind::SwapRequestReceived,
            SwapAckReceived { .. } => EventKind::SwapAckReceived,
            SwapRequestSent { .. } => EventKind::SwapRequestSent,
            SwapAckSent { .. } => EventKind::SwapAckSent,
            SwapRequestIgnored { .. } => EventKind::SwapRequestIgnored,
            SwapSuccess { .. } => EventKind::SwapSuccess,
            SwapFailure { .. } => EventKind::SwapFailure,
            BootstrapSent { .. } => EventKind::BootstrapSent,
            BootstrapReceived { .. } => EventKind::BootstrapReceived,
            AdvertiseSent { .. } => EventKind::AdvertiseSent,
            AdvertiseReceived { .. } => EventKind::AdvertiseReceived,
            MaintenanceStarted => EventKind::MaintenanceStarted,
            MaintenanceEnded => EventKind::MaintenanceEnded,
        }
    }

    /// Octez's binary union tag for this kind (26/27 are our extension for
    /// the maintenance events, which Octez cannot encode): the tag of its
    /// [`kind`](Self::kind).
    pub fn tag(&self) -> u8 {
        self.kind().tag()
    }
}

/// RFC 3339 timestamps as in Octez's JSON (`Time.System.encoding`), on
/// the `time` crate.
///
/// Written as Octez writes them (`Ptime.to_rfc3339 ~frac_s:3` with no
/// time zone): UTC with milliseconds, truncated, and RFC 3339's
/// "unknown local offset" `-00:00` (`2024-05-01T12:34:56.789-00:00`).
/// Read from any RFC 3339 text (any number of fraction digits, `Z`/`z` or
/// a `±hh:mm` offset, any date-time separator) or, like Octez, from a
/// count of seconds since the epoch given as a JSON number or a decimal
/// string.
pub(crate) mod rfc3339 {
    use std::fmt;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339 as Rfc3339Format;
    use time::macros::format_description;
    use time::OffsetDateTime;

    /// The latest representable time: `9999-12-31T23:59:59.999999999Z`
    /// (Ptime's maximum, up to nanoseconds). Saturating additions stop here.
    pub fn max_time() -> SystemTime {
        UNIX_EPOCH + Duration::new(253_402_300_799, 999_999_999)
    }

    /// The earliest: `0000-01-01T00:00:00Z` (Ptime's minimum).
    fn min_time() -> SystemTime {
        UNIX_EPOCH - Duration::from_secs(62_167_219_200)
    }

    /// `t + d`, saturating at [`max_time`].
    pub fn saturating_add(t: SystemTime, d: Duration) -> SystemTime {
        match t.checked_add(d) {
            Some(r) if r <= max_time() => r,
            _ => max_time(),
        }
    }

    /// Formats `t` as `YYYY-MM-DDTHH:MM:SS.mmm-00:00` (clamped to years
    /// 0–9999).
    pub fn format(t: SystemTime) -> String {
        let t = t.clamp(min_time(), max_time());
        let t = OffsetDateTime::from(t);
        let f = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]-00:00"
        );
        // Infallible: the year is within 0..=9999.
        t.format(f).unwrap_or_default()
    }

    /// Parses an RFC 3339 timestamp; `None` if malformed or out of range.
    pub fn parse(s: &str) -> Option<SystemTime> {
        let t = OffsetDateTime::parse(s, &Rfc3339Format).ok()?;
        Some(SystemTime::from(t)).filter(|t| (min_time()..=max_time()).contains(t))
    }

    fn from_seconds(secs: i64) -> Option<SystemTime> {
        let t = if secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
        } else {
            UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
        }?;
        Some(t).filter(|t| (min_time()..=max_time()).contains(t))
    }

    /// Serde `serialize_with` helper.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }

    struct TimeVisitor;

    impl Visitor<'_> for TimeVisitor {
        type Value = SystemTime;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 timestamp or seconds since the epoch")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<SystemTime, E> {
            if let Some(t) = parse(v) {
                return Ok(t);
            }
            match v.parse::<i64>() {
                Ok(n) => self.visit_i64(n),
                Err(_) => Err(E::custom(format_args!("invalid timestamp {v:?}"))),
            }
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<SystemTime, E> {
            from_seconds(v).ok_or_else(|| E::custom("timestamp out of range"))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<SystemTime, E> {
            self.visit_i64(i64::try_from(v).map_err(|_| E::custom("timestamp out of range"))?)
        }
    }

    /// Serde `deserialize_with` helper.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        d.deserialize_any(TimeVisitor)
    }

    /// A [`SystemTime`] that (de)serialises as RFC 3339 text.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct Rfc3339(pub SystemTime);

    impl serde::Serialize for Rfc3339 {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(&self.0, s)
        }
    }

    impl<'de> serde::Deserialize<'de> for Rfc3339 {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize(d).map(Rfc3339)
        }
    }
}

/// Bounded ring of the most recent events (Octez `Ringo.Ring`, capacity
/// 100 for points and peers).
///
/// The first [`INLINE_EVENTS`] events are kept in the ring itself, without
/// an allocation: most peers and points never log more (a connection is
/// accepted, runs, ends). After a burst of connections, the peers the
/// table keeps then have no small allocation scattered over the heap,
/// where each would pin its page.
#[derive(Debug, Clone)]
pub struct EventRing<T> {
    /// The items while there are at most [`INLINE_EVENTS`] and `items` is
    /// empty: `small[..small_len]`, all `Some`, oldest first.
    small: [Option<T>; INLINE_EVENTS],
    small_len: u8,
    /// The items once there were more (for good).
    items: std::collections::VecDeque<T>,
    capacity: usize,
    /// Items ever pushed, so that a watcher can tell which are new
    /// ([`EventRing::since`]).
    pushed: u64,
}

/// Events a ring keeps without an allocation.
pub const INLINE_EVENTS: usize = 3;

/// Capacity of the per-point and per-peer event rings.
pub const EVENT_RING_CAPACITY: usize = 100;

impl<T> Default for EventRing<T> {
    fn default() -> Self {
        Self::new(EVENT_RING_CAPACITY)
    }
}

impl<T: PartialEq> PartialEq for EventRing<T> {
    fn eq(&self, other: &Self) -> bool {
        self.capacity == other.capacity
            && self.pushed == other.pushed
            && self.iter().eq(other.iter())
    }
}

/// The items of an [`EventRing`], oldest first.
pub enum EventIter<'a, T> {
    /// Kept inline.
    Small(std::slice::Iter<'a, Option<T>>),
    /// Kept in the allocated ring.
    Items(std::collections::vec_deque::Iter<'a, T>),
}

impl<'a, T> Iterator for EventIter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        match self {
            EventIter::Small(i) => i.next().and_then(Option::as_ref),
            EventIter::Items(i) => i.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            EventIter::Small(i) => i.size_hint(),
            EventIter::Items(i) => i.size_hint(),
        }
    }
}

impl<T> DoubleEndedIterator for EventIter<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            EventIter::Small(i) => i.next_back().and_then(Option::as_ref),
            EventIter::Items(i) => i.next_back(),
        }
    }
}

impl<T> ExactSizeIterator for EventIter<'_, T> {}

impl<T> EventRing<T> {
    /// An empty ring keeping at most `capacity` items (at least 1). It
    /// allocates only past [`INLINE_EVENTS`] items.
    pub fn new(capacity: usize) -> Self {
        EventRing {
            small: std::array::from_fn(|_| None),
            small_len: 0,
            items: std::collections::VecDeque::new(),
            capacity: capacity.max(1),
            pushed: 0,
        }
    }

    /// Appends an item, dropping the oldest one when full.
    pub fn push(&mut self, item: T) {
        self.pushed += 1;
        let n = usize::from(self.small_len);
        if self.items.is_empty() {
            if n < INLINE_EVENTS.min(self.capacity) {
                self.small[n] = Some(item);
                self.small_len += 1;
                return;
            }
            if n == self.capacity {
                // A ring of at most INLINE_EVENTS, full: the oldest goes.
                self.small[..n].rotate_left(1);
                self.small[n - 1] = Some(item);
                return;
            }
            // Past what fits inline: everything moves to the heap.
            self.items.reserve_exact(n + 1);
            self.items
                .extend(self.small[..n].iter_mut().filter_map(Option::take));
            self.small_len = 0;
        }
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// How many items were ever pushed (a mark for [`EventRing::since`]).
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// The items pushed after the mark `pushed` (those still held),
    /// oldest first.
    pub fn since(&self, pushed: u64) -> impl Iterator<Item = &T> {
        let new = usize::try_from(self.pushed.saturating_sub(pushed)).unwrap_or(usize::MAX);
        self.iter().skip(self.len().saturating_sub(new))
    }

    /// The items, oldest first.
    pub fn iter(&self) -> EventIter<'_, T> {
        if self.items.is_empty() {
            EventIter::Small(self.small[..usize::from(self.small_len)].iter())
        } else {
            EventIter::Items(self.items.iter())
        }
    }

    /// The most recent item.
    pub fn last(&self) -> Option<&T> {
        self.iter().next_back()
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        if self.items.is_empty() {
            usize::from(self.small_len)
        } else {
            self.items.len()
        }
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Serialize> Serialize for EventRing<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for EventRing<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<T>::deserialize(d)?;
        let mut ring = EventRing::default();
        for item in v {
            ring.push(item);
        }
        Ok(ring)
    }
}

#[cfg(test)]
mod tests {
    use super::rfc3339::{format, max_time, parse, saturating_add};
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn pid(b: u8) -> PeerId {
        PeerId([b; 16])
    }

    /// As `Ptime.to_rfc3339 ~frac_s:3` with no time zone: milliseconds,
    /// truncated, and the unknown local offset `-00:00`.
    #[test]
    fn rfc3339_formats_as_octez() {
        let t = UNIX_EPOCH + Duration::new(1_714_566_896, 789_654_321);
        assert_eq!(format(t), "2024-05-01T12:34:56.789-00:00");
        assert_eq!(format(UNIX_EPOCH), "1970-01-01T00:00:00.000-00:00");
        assert_eq!(format(max_time()), "9999-12-31T23:59:59.999-00:00");
        let before = UNIX_EPOCH - Duration::from_millis(1);
        assert_eq!(format(before), "1969-12-31T23:59:59.999-00:00");
        let far = UNIX_EPOCH - Duration::from_secs(100_000_000_000);
        assert_eq!(format(far), "0000-01-01T00:00:00.000-00:00");
    }

    #[test]
    fn rfc3339_parses_offsets_fractions_and_octez_forms() {
        let base = UNIX_EPOCH + Duration::from_secs(1_714_566_896);
        assert_eq!(parse("2024-05-01T12:34:56Z"), Some(base));
        assert_eq!(parse("2024-05-01T12:34:56-00:00"), Some(base));
        assert_eq!(parse("2024-05-01T14:34:56+02:00"), Some(base));
        assert_eq!(parse("2024-05-01 12:34:56Z"), Some(base));
        assert_eq!(
            parse("2024-05-01t12:34:56.5z"),
            Some(base + Duration::from_millis(500))
        );
        assert_eq!(
            parse("2024-05-01T12:34:56.123456789Z"),
            Some(base + Duration::from_nanos(123_456_789))
        );
        assert_eq!(
            parse("1969-12-31T23:59:59Z"),
            UNIX_EPOCH.checked_sub(Duration::from_secs(1))
        );
        for bad in [
            "",
            "2024-05-01",
            "2024-02-30T00:00:00Z",
            "2024-05-01T12:34:56",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:34:56.Z",
            "2024-05-01T12:34:56+0200",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        // Octez also accepts seconds since the epoch.
        let t: rfc3339::Rfc3339 = serde_json::from_str("\"1714566896\"").unwrap();
        assert_eq!(t.0, base);
        let t: rfc3339::Rfc3339 = serde_json::from_str("1714566896").unwrap();
        assert_eq!(t.0, base);
    }

    #[test]
    fn rfc3339_round_trips_at_millisecond_precision() {
        for s in [0u64, 1, 86_399, 951_782_400, 1_709_251_199, 4_102_444_800] {
            let t = UNIX_EPOCH + Duration::new(s, 123_000_000);
            assert_eq!(parse(&format(t)), Some(t));
        }
    }

    #[test]
    fn saturating_add_stops_at_max_time() {
        assert_eq!(
            saturating_add(max_time(), Duration::from_secs(1)),
            max_time()
        );
        assert_eq!(saturating_add(UNIX_EPOCH, Duration::MAX), max_time());
    }

    #[test]
    fn event_ring_keeps_the_last_hundred() {
        let mut r = EventRing::default();
        for i in 0..150 {
            r.push(i);
        }
        assert_eq!(r.len(), 100);
        assert_eq!(r.iter().next(), Some(&50));
        assert_eq!(r.last(), Some(&149));
    }

    /// Every capacity, around the inline bound: the ring holds the last
    /// `capacity` items in order, whether inline or not, and allocates
    /// only past the inline bound.
    #[test]
    fn event_ring_inline_then_allocated() {
        for cap in 1..=6 {
            let mut r = EventRing::new(cap);
            for n in 1..=12 {
                r.push(n);
                let want: Vec<i32> = ((n - cap as i32).max(0) + 1..=n).collect();
                assert_eq!(
                    r.iter().copied().collect::<Vec<_>>(),
                    want,
                    "cap {cap}, {n}"
                );
                assert_eq!(r.iter().next_back(), want.last());
                assert_eq!((r.len(), r.iter().len()), (want.len(), want.len()));
                assert_eq!(r.last(), want.last());
                assert_eq!(
                    r.items.capacity() > 0,
                    cap > INLINE_EVENTS && n > INLINE_EVENTS as i32,
                    "cap {cap}, {n}"
                );
                let back: EventRing<i32> =
                    serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
                assert!(back.iter().eq(r.iter()));
                assert_eq!(r.clone(), r);
            }
        }
        let r: EventRing<i32> = EventRing::default();
        assert!(r.is_empty() && r.last().is_none());
    }

    #[test]
    fn event_ring_tells_what_is_new_since_a_mark() {
        let mut r = EventRing::new(4);
        assert_eq!(r.since(0).count(), 0);
        r.push(1);
        r.push(2);
        let mark = r.pushed();
        assert_eq!(mark, 2);
        assert_eq!(r.since(mark).count(), 0);
        r.push(3);
        assert_eq!(r.since(mark).collect::<Vec<_>>(), [&3]);
        // More new items than the ring holds: those still held.
        for i in 4..10 {
            r.push(i);
        }
        assert_eq!(r.since(mark).collect::<Vec<_>>(), [&6, &7, &8, &9]);
        assert_eq!(r.since(0).count(), 4);
    }

    #[test]
    fn p2p_event_json_matches_octez_shape() {
        let p: Point = "1.2.3.4:9732".parse().unwrap();
        let id = ConnId::new("1.2.3.4".parse().unwrap(), Some(9732));
        let e = P2pEvent::AcceptingRequest {
            point: p,
            id_point: id,
            peer_id: pid(1),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "accepting_request");
        assert_eq!(v["point"], "1.2.3.4:9732");
        assert_eq!(v["id_point"]["addr"], "::ffff:1.2.3.4");
        assert_eq!(v["id_point"]["port"], 9732);
        assert_eq!(v["peer_id"], pid(1).to_string());
        let back: P2pEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);

        let e = P2pEvent::RequestRejected {
            point: p,
            identity: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"request_rejected","point":"1.2.3.4:9732"}"#
        );
        let e = P2pEvent::RequestRejected {
            point: p,
            identity: Some((id, pid(2))),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert!(v["identity"].is_array());
        assert_eq!(serde_json::from_value::<P2pEvent>(v).unwrap(), e);

        assert_eq!(
            serde_json::to_string(&P2pEvent::GcPeerIds).unwrap(),
            r#"{"event":"gc_peer_ids"}"#
        );
        let v = serde_json::to_value(P2pEvent::SwapAckSent { source: pid(3) }).unwrap();
        assert_eq!(v["event"], "swap_ack_sent");
        assert_eq!(v["source"], pid(3).to_string());
    }

    /// Every event, with Octez's tag of its kind (`P2p_connection.P2p_event`'s
    /// union cases, in order; 26 and 27 ours): its kind is the kind of the
    /// same name, whose tag is that tag.
    #[test]
    fn every_event_kind_maps_to_its_tag() {
        let p = Point::new([1, 2, 3, 4].into(), 9732);
        let id = ConnId::new(p.ip(), Some(p.port()));
        let source = pid(1);
        let events = [
            (P2pEvent::TooFewConnections, 0),
            (P2pEvent::TooManyConnections, 1),
            (P2pEvent::NewPoint { point: p }, 2),
            (P2pEvent::NewPeer { peer_id: source }, 3),
            (P2pEvent::IncomingConnection { point: p }, 4),
            (P2pEvent::OutgoingConnection { point: p }, 5),
            (P2pEvent::AuthenticationFailed { point: p }, 6),
            (
                P2pEvent::AcceptingRequest {
                    point: p,
                    id_point: id,
                    peer_id: source,
                },
                7,
            ),
            (
                P2pEvent::RejectingRequest {
                    point: p,
                    id_point: id,
                    peer_id: source,
                },
                8,
            ),
            (
                P2pEvent::RequestRejected {
                    point: p,
                    identity: None,
                },
                9,
            ),
            (
                P2pEvent::ConnectionEstablished {
                    id_point: id,
                    peer_id: source,
                },
                10,
            ),
            (P2pEvent::Disconnection { peer_id: source }, 11),
            (P2pEvent::ExternalDisconnection { peer_id: source }, 12),
            (P2pEvent::GcPoints, 13),
            (P2pEvent::GcPeerIds, 14),
            (P2pEvent::SwapRequestReceived { source }, 15),
            (P2pEvent::SwapAckReceived { source }, 16),
            (P2pEvent::SwapRequestSent { source }, 17),
            (P2pEvent::SwapAckSent { source }, 18),
            (P2pEvent::SwapRequestIgnored { source }, 19),
            (P2pEvent::SwapSuccess { source }, 20),
            (P2pEvent::SwapFailure { source }, 21),
            (P2pEvent::BootstrapSent { source }, 22),
            (P2pEvent::BootstrapReceived { source }, 23),
            (P2pEvent::AdvertiseSent { source }, 24),
            (P2pEvent::AdvertiseReceived { source }, 25),
            (P2pEvent::MaintenanceStarted, 26),
            (P2pEvent::MaintenanceEnded, 27),
        ];
        // One event of every kind, each kind once.
        assert_eq!(events.len(), EventKind::ALL.len());
        for (i, (e, tag)) in events.iter().enumerate() {
            let kind = e.kind();
            assert_eq!(e.tag(), *tag, "{e:?}");
            assert_eq!(kind.tag(), *tag, "{e:?}");
            assert_eq!(usize::from(*tag), i, "{e:?}");
            assert_eq!(EventKind::ALL[i], kind, "{e:?}");
            // The kind of the same name: `NewPoint` for `new_point`.
            let json = serde_json::to_value(e).unwrap();
            let snake: String = format!("{kind:?}")
                .chars()
                .enumerate()
                .flat_map(|(j, c)| {
                    let sep = (j > 0 && c.is_ascii_uppercase()).then_some('_');
                    sep.into_iter().chain(c.to_lowercase())
                })
                .collect();
            assert_eq!(json["event"], snake.as_str(), "{e:?}");
        }
    }

    #[test]
    fn maintenance_events_are_encodable() {
        for (e, name, tag) in [
            (P2pEvent::MaintenanceStarted, "maintenance_started", 26),
            (P2pEvent::MaintenanceEnded, "maintenance_ended", 27),
        ] {
            let s = serde_json::to_string(&e).unwrap();
            assert_eq!(s, format!("{{\"event\":\"{name}\"}}"));
            assert_eq!(serde_json::from_str::<P2pEvent>(&s).unwrap(), e);
            assert_eq!(e.tag(), tag);
        }
        assert_eq!(P2pEvent::AdvertiseReceived { source: pid(0) }.tag(), 25);
        assert_eq!(P2pEvent::BootstrapSent { source: pid(0) }.tag(), 22);
    }
}
