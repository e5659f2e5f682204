//! Per-point state machine and reconnection back-off (spec §2.1, §2.2;
//! Octez `P2p_point_state`).
//!
//! Plain synchronous data: the pool keeps a [`PointInfo`] per known point
//! behind its lock, and every transition takes the current time as an
//! argument (`now`) so simulations control the clock. Transitions check
//! Octez's assertions and return [`InvalidTransition`] instead of
//! panicking.

use std::time::{Duration, SystemTime};

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use tezos_p2p_wire::identity::PeerId;
use tezos_p2p_wire::point::Point;
use thiserror::Error;

use crate::pool::events::rfc3339::{self, saturating_add};
use crate::pool::events::EventRing;

/// Reconnection back-off parameters (`Point_reconnection_config`, spec
/// §2.2 / §10.2; node config key `p2p.greylisting_config`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectionConfig {
    /// Multiplier applied to the delay after each failed attempt (1.2).
    pub factor: f64,
    /// First delay after a failure, and the delay after a disconnection (1 s).
    pub initial_delay: Duration,
    /// How long a point is blocked after a Running connection ends (60 s).
    pub disconnection_delay: Duration,
    /// Maximum delay (172 800 s = 2 days).
    pub increase_cap: Duration,
}

impl Default for ReconnectionConfig {
    fn default() -> Self {
        ReconnectionConfig {
            factor: 1.2,
            initial_delay: Duration::from_secs(1),
            disconnection_delay: Duration::from_secs(60),
            increase_cap: Duration::from_secs(172_800),
        }
    }
}

impl ReconnectionConfig {
    /// `d × factor`, or `increase_cap` unless `increase_cap > d × factor`
    /// (Octez's strict test). A non-finite or negative product gives the cap.
    pub fn next_delay(&self, d: Duration) -> Duration {
        let product = d.as_secs_f64() * self.factor;
        match Duration::try_from_secs_f64(product) {
            Ok(p) if self.increase_cap > p => p,
            _ => self.increase_cap,
        }
    }
}

/// A transition that Octez guards with an assertion was attempted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {what} transition from {from} to {to}")]
pub struct InvalidTransition {
    /// `"point"` or `"peer"`.
    pub what: &'static str,
    /// Name of the current state.
    pub from: &'static str,
    /// Name of the requested state.
    pub to: &'static str,
}

/// Connection state of a point (`P2p_point_state.t`, without the
/// canceler/connection payloads the async layer keeps elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PointState {
    /// An outgoing attempt is in progress (TCP connect or handshake).
    Requested,
    /// The handshake was admitted; the Ack exchange is in progress.
    Accepted {
        /// Peer id seen in the handshake.
        peer_id: PeerId,
    },
    /// A connection is established.
    Running {
        /// The connected peer.
        peer_id: PeerId,
    },
    /// No connection.
    #[default]
    Disconnected,
}

impl PointState {
    /// Octez's name of the state (`requested`, `accepted`, …).
    pub fn name(&self) -> &'static str {
        match self {
            PointState::Requested => "requested",
            PointState::Accepted { .. } => "accepted",
            PointState::Running { .. } => "running",
            PointState::Disconnected => "disconnected",
        }
    }

    /// The peer id carried by Accepted/Running.
    pub fn peer_id(&self) -> Option<PeerId> {
        match self {
            PointState::Accepted { peer_id } | PointState::Running { peer_id } => Some(*peer_id),
            PointState::Requested | PointState::Disconnected => None,
        }
    }
}

impl Serialize for PointState {
    /// Octez `P2p_point.State.encoding`: `{"event_kind": …, "p2p_peer_id"?}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let id = self.peer_id();
        let mut m = s.serialize_map(Some(1 + usize::from(id.is_some())))?;
        m.serialize_entry("event_kind", self.name())?;
        if let Some(id) = id {
            m.serialize_entry("p2p_peer_id", &id)?;
        }
        m.end()
    }
}

/// Back-off state (`reconnection_info`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reconnection {
    /// Delay to apply at the next failure.
    pub delay: Duration,
    /// The point must not be dialed by the maintenance before this time
    /// (inclusive). RPC field `greylisted_until`.
    pub end_time: SystemTime,
}

/// Kind of a point event (`P2p_point.Pool_event.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "event_kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PointEventKind {
    /// An outgoing attempt started.
    OutgoingRequest,
    /// The handshake was admitted.
    AcceptingRequest {
        /// The remote peer.
        p2p_peer_id: PeerId,
    },
    /// We rejected an incoming handshake (never logged by Octez).
    RejectingRequest {
        /// The remote peer.
        p2p_peer_id: PeerId,
    },
    /// The attempt failed (no peer id) or was rejected after the handshake.
    RequestRejected {
        /// The remote peer, when known.
        #[serde(default)]
        p2p_peer_id: Option<PeerId>,
    },
    /// The connection became Running.
    ConnectionEstablished {
        /// The remote peer.
        p2p_peer_id: PeerId,
    },
    /// We closed a Running connection.
    Disconnection {
        /// The remote peer.
        p2p_peer_id: PeerId,
    },
    /// A Running connection was closed for another reason.
    ExternalDisconnection {
        /// The remote peer.
        p2p_peer_id: PeerId,
    },
}

impl Serialize for PointEventKind {
    /// Octez's `kind_encoding`, but with the right `event_kind` labels for
    /// tags 4–6 (Octez labels them all `rejecting_request`, quirk 17).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use PointEventKind::*;
        let (name, id) = match *self {
            OutgoingRequest => ("outgoing_request", None),
            AcceptingRequest { p2p_peer_id } => ("accepting_request", Some(p2p_peer_id)),
            RejectingRequest { p2p_peer_id } => ("rejecting_request", Some(p2p_peer_id)),
            RequestRejected { p2p_peer_id } => ("request_rejected", p2p_peer_id),
            ConnectionEstablished { p2p_peer_id } => ("connection_established", Some(p2p_peer_id)),
            Disconnection { p2p_peer_id } => ("disconnection", Some(p2p_peer_id)),
            ExternalDisconnection { p2p_peer_id } => ("external_disconnection", Some(p2p_peer_id)),
        };
        let mut m = s.serialize_map(Some(1 + usize::from(id.is_some())))?;
        m.serialize_entry("event_kind", name)?;
        if let Some(id) = id {
            m.serialize_entry("p2p_peer_id", &id)?;
        }
        m.end()
    }
}

/// One entry of a point's event log. JSON: Octez's stamped encoding, the
/// pair `[timestamp, kind]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointEvent {
    /// When it happened.
    pub timestamp: SystemTime,
    /// What happened.
    pub kind: PointEventKind,
}

impl PointEvent {
    fn json_pair(&self) -> (rfc3339::Rfc3339, PointEventKind) {
        (rfc3339::Rfc3339(self.timestamp), self.kind)
    }

    /// Octez's JSON for the event: `[timestamp, {"event_kind": …}]`.
    pub fn to_octez_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

impl Serialize for PointEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json_pair().serialize(s)
    }
}

impl<'de> Deserialize<'de> for PointEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (t, kind) = <(rfc3339::Rfc3339, PointEventKind)>::deserialize(d)?;
        Ok(PointEvent {
            timestamp: t.0,
            kind,
        })
    }
}

/// Everything known about one point (`P2p_point_state.Info.t`).
#[derive(Debug, Clone, PartialEq)]
pub struct PointInfo {
    /// The point (key of the table).
    pub point: Point,
    /// Whitelisted by config, RPC or discovery.
    pub trusted: bool,
    /// Current connection state. Change it only through the transition
    /// methods.
    pub state: PointState,
    /// Last time an outgoing attempt failed before the handshake was
    /// accepted.
    pub last_failed_connection: Option<SystemTime>,
    /// Last time a handshake with this point was rejected after it had been
    /// accepted (or, with [`PointInfo::set_rejected_after_auth`], after the
    /// peer id was known).
    pub last_rejected_connection: Option<(PeerId, SystemTime)>,
    /// Last transition to Running.
    pub last_established_connection: Option<(PeerId, SystemTime)>,
    /// Last Running → Disconnected transition.
    pub last_disconnection: Option<(PeerId, SystemTime)>,
    /// Whether the last authentication with this point said it is public.
    pub known_public: bool,
    /// Reconnection back-off, if any.
    pub reconnection: Option<Reconnection>,
    /// Identity pin checked at every handshake.
    pub expected_peer_id: Option<PeerId>,
    /// The last 100 events.
    pub events: EventRing<PointEvent>,
}

fn recent(
    a: Option<(PeerId, SystemTime)>,
    b: Option<(PeerId, SystemTime)>,
) -> Option<(PeerId, SystemTime)> {
    // Octez `Time.System.recent`: on a tie the first argument wins.
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) => Some(if x.1 < y.1 { y } else { x }),
    }
}

impl PointInfo {
    /// A fresh, Disconnected, untrusted-unless-said point.
    pub fn new(point: Point, trusted: bool, expected_peer_id: Option<PeerId>) -> Self {
        PointInfo {
            point,
            trusted,
            state: PointState::Disconnected,
            last_failed_connection: None,
            last_rejected_connection: None,
            last_established_connection: None,
            last_disconnection: None,
            known_public: false,
            reconnection: None,
            expected_peer_id,
            events: EventRing::default(),
        }
    }

    fn invalid(&self, to: &'static str) -> InvalidTransition {
        InvalidTransition {
            what: "point",
            from: self.state.name(),
            to,
        }
    }

    fn log(&mut self, now: SystemTime, kind: PointEventKind) {
        self.events.push(PointEvent {
            timestamp: now,
            kind,
        });
    }

    /// Octez's back-off step on a failed/rejected attempt (§2.2).
    fn backoff_step(&mut self, cfg: &ReconnectionConfig, now: SystemTime) {
        let d = self.reconnection.map_or(cfg.initial_delay, |r| r.delay);
        let end_time = saturating_add(now, d);
        self.reconnection = Some(Reconnection {
            delay: cfg.next_delay(d),
            end_time,
        });
    }

    /// Disconnected/Requested → Requested: an outgoing attempt starts.
    pub fn set_requested(&mut self, now: SystemTime) -> Result<(), InvalidTransition> {
        match self.state {
            PointState::Requested | PointState::Disconnected => {
                self.state = PointState::Requested;
                self.log(now, PointEventKind::OutgoingRequest);
                Ok(())
            }
            _ => Err(self.invalid("requested")),
        }
    }

    /// Requested/Disconnected → Accepted: the handshake was admitted.
    pub fn set_accepted(
        &mut self,
        peer_id: PeerId,
        now: SystemTime,
    ) -> Result<(), InvalidTransition> {
        match self.state {
            PointState::Requested | PointState::Disconnected => {
                self.state = PointState::Accepted { peer_id };
                self.log(
                    now,
                    PointEventKind::AcceptingRequest {
                        p2p_peer_id: peer_id,
                    },
                );
                Ok(())
            }
            _ => Err(self.invalid("accepted")),
        }
    }

    /// → Running: from Disconnected or Requested, or from Accepted with the
    /// same peer id. Sets `last_established_connection`.
    pub fn set_running(
        &mut self,
        peer_id: PeerId,
        now: SystemTime,
    ) -> Result<(), InvalidTransition> {
        let ok = match self.state {
            PointState::Disconnected | PointState::Requested => true,
            PointState::Accepted { peer_id: p } => p == peer_id,
            PointState::Running { .. } => false,
        };
        if !ok {
            return Err(self.invalid("running"));
        }
        self.state = PointState::Running { peer_id };
        self.last_established_connection = Some((peer_id, now));
        self.log(
            now,
            PointEventKind::ConnectionEstablished {
                p2p_peer_id: peer_id,
            },
        );
        Ok(())
    }

    /// → Disconnected, with Octez's side effects depending on the state:
    ///
    /// * Requested (attempt failed before the handshake was accepted):
    ///   `last_failed_connection := now`, back-off step.
    /// * Accepted (Ack exchange failed): `last_rejected_connection :=
    ///   (peer, now)`, back-off step.
    /// * Running (connection ended): delay reset to `initial_delay`, blocked
    ///   until `now + disconnection_delay`, `last_disconnection := (peer,
    ///   now)`; the event is `disconnection` if `requested`, else
    ///   `external_disconnection`.
    /// * Disconnected: error (Octez asserts).
    pub fn set_disconnected(
        &mut self,
        cfg: &ReconnectionConfig,
        now: SystemTime,
        requested: bool,
    ) -> Result<(), InvalidTransition> {
        let kind = match self.state {
            PointState::Requested => {
                self.backoff_step(cfg, now);
                self.last_failed_connection = Some(now);
                PointEventKind::RequestRejected { p2p_peer_id: None }
            }
            PointState::Accepted { peer_id } => {
                self.backoff_step(cfg, now);
                self.last_rejected_connection = Some((peer_id, now));
                PointEventKind::RequestRejected {
                    p2p_peer_id: Some(peer_id),
                }
            }
            PointState::Running { peer_id } => {
                self.reconnection = Some(Reconnection {
                    delay: cfg.initial_delay,
                    end_time: saturating_add(now, cfg.disconnection_delay),
                });
                self.last_disconnection = Some((peer_id, now));
                if requested {
                    PointEventKind::Disconnection {
                        p2p_peer_id: peer_id,
                    }
                } else {
                    PointEventKind::ExternalDisconnection {
                        p2p_peer_id: peer_id,
                    }
                }
            }
            PointState::Disconnected => return Err(self.invalid("disconnected")),
        };
        self.state = PointState::Disconnected;
        self.log(now, kind);
        Ok(())
    }

    /// Requested → Disconnected for an outgoing attempt rejected *after*
    /// authentication but before admission (peer banned, identity pin
    /// mismatch, fd pool full): `last_rejected_connection := (peer, now)`,
    /// back-off step, event `request_rejected` with the peer.
    ///
    /// This fixes Octez's quirk 4, where the point stayed Requested forever.
    pub fn set_rejected_after_auth(
        &mut self,
        peer_id: PeerId,
        cfg: &ReconnectionConfig,
        now: SystemTime,
    ) -> Result<(), InvalidTransition> {
        if self.state != PointState::Requested {
            return Err(self.invalid("disconnected"));
        }
        self.backoff_step(cfg, now);
        self.last_rejected_connection = Some((peer_id, now));
        self.state = PointState::Disconnected;
        self.log(
            now,
            PointEventKind::RequestRejected {
                p2p_peer_id: Some(peer_id),
            },
        );
        Ok(())
    }

    /// Most recent of the rejected, established and disconnection records.
    pub fn last_seen(&self) -> Option<(PeerId, SystemTime)> {
        recent(
            self.last_rejected_connection,
            recent(self.last_established_connection, self.last_disconnection),
        )
    }

    /// Most recent of the failed, rejected and disconnection times.
    pub fn last_miss(&self) -> Option<SystemTime> {
        let other = recent(self.last_rejected_connection, self.last_disconnection).map(|x| x.1);
        match (self.last_failed_connection, other) {
            (None, x) | (x, None) => x,
            (Some(a), Some(b)) => Some(a.max(b)),
        }
    }

    /// The back-off deadline (RPC `greylisted_until`).
    pub fn reconnection_time(&self) -> Option<SystemTime> {
        self.reconnection.map(|r| r.end_time)
    }

    /// Whether the maintenance must not dial this point yet: a back-off is
    /// set and `now <= end_time`. Explicit connects ignore it.
    pub fn cannot_reconnect_yet(&self, now: SystemTime) -> bool {
        self.reconnection.is_some_and(|r| now <= r.end_time)
    }

    /// Whether the maintenance must wait before dialing this point:
    /// [`cannot_reconnect_yet`](Self::cannot_reconnect_yet), except that a
    /// node without any connection (`isolated`) retries a *trusted* point
    /// (a bootstrap or configured peer) once `cfg.disconnection_delay`
    /// (60 s) has passed since its last miss, however long the back-off
    /// has grown. Octez waits out the whole back-off (up to two days):
    /// a node whose only known point is a busy bootstrap node, refused
    /// before any Nack could tell it other points, then stays alone while
    /// the delay grows ×1.2 per refusal. The stored back-off is unchanged.
    pub fn backs_off(&self, cfg: &ReconnectionConfig, now: SystemTime, isolated: bool) -> bool {
        if !self.cannot_reconnect_yet(now) {
            return false;
        }
        if isolated && self.trusted {
            if let Some(miss) = self.last_miss() {
                return now < saturating_add(miss, cfg.disconnection_delay);
            }
        }
        true
    }

    /// Whether the point is Disconnected.
    pub fn is_disconnected(&self) -> bool {
        self.state == PointState::Disconnected
    }

    /// Octez's RPC JSON for the point info (`P2p_point.Info.encoding`).
    pub fn to_octez_json(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let pair = |x: Option<(PeerId, SystemTime)>| x.map(|(p, t)| json!([p, rfc3339::format(t)]));
        let mut m = Map::new();
        m.insert("trusted".into(), Value::Bool(self.trusted));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put(
            "greylisted_until",
            self.reconnection_time().map(|t| rfc3339::format(t).into()),
        );
        put("state", serde_json::to_value(self.state).ok());
        put(
            "p2p_peer_id",
            self.state.peer_id().map(|p| p.to_string().into()),
        );
        put(
            "last_failed_connection",
            self.last_failed_connection
                .map(|t| rfc3339::format(t).into()),
        );
        put(
            "last_rejected_connection",
            pair(self.last_rejected_connection),
        );
        put(
            "last_established_connection",
            pair(self.last_established_connection),
        );
        put("last_disconnection", pair(self.last_disconnection));
        put("last_seen", pair(self.last_seen()));
        put(
            "last_miss",
            self.last_miss().map(|t| rfc3339::format(t).into()),
        );
        put(
            "expected_peer_id",
            self.expected_peer_id.map(|p| p.to_string().into()),
        );
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn pid(b: u8) -> PeerId {
        PeerId([b; 16])
    }

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn info() -> PointInfo {
        PointInfo::new("10.0.0.1:9732".parse().unwrap(), false, None)
    }

    #[test]
    fn new_point_is_disconnected_without_history() {
        let p = info();
        assert!(p.is_disconnected());
        assert_eq!(p.last_seen(), None);
        assert_eq!(p.last_miss(), None);
        assert!(!p.cannot_reconnect_yet(t(0)));
        assert!(p.events.is_empty());
    }

    #[test]
    fn requested_allowed_from_disconnected_and_requested_only() {
        let cfg = ReconnectionConfig::default();
        let mut p = info();
        p.set_requested(t(0)).unwrap();
        p.set_requested(t(1)).unwrap();
        assert_eq!(p.state, PointState::Requested);
        p.set_accepted(pid(1), t(2)).unwrap();
        assert_eq!(p.set_requested(t(3)).unwrap_err().from, "accepted");
        p.set_running(pid(1), t(3)).unwrap();
        assert_eq!(p.set_requested(t(4)).unwrap_err().from, "running");
        p.set_disconnected(&cfg, t(5), false).unwrap();
        assert_eq!(p.events.len(), 5);
        assert_eq!(
            p.events.iter().next().unwrap().kind,
            PointEventKind::OutgoingRequest
        );
    }

    #[test]
    fn accepted_allowed_from_requested_or_disconnected_only() {
        let mut p = info();
        p.set_accepted(pid(1), t(0)).unwrap();
        assert_eq!(p.state, PointState::Accepted { peer_id: pid(1) });
        assert!(p.set_accepted(pid(1), t(1)).is_err());
        p.set_running(pid(1), t(2)).unwrap();
        assert!(p.set_accepted(pid(1), t(3)).is_err());
    }

    #[test]
    fn running_requires_same_peer_when_accepted_and_never_from_running() {
        let mut p = info();
        p.set_accepted(pid(1), t(0)).unwrap();
        let e = p.set_running(pid(2), t(1)).unwrap_err();
        assert_eq!((e.from, e.to), ("accepted", "running"));
        p.set_running(pid(1), t(1)).unwrap();
        assert_eq!(p.last_established_connection, Some((pid(1), t(1))));
        assert!(p.set_running(pid(1), t(2)).is_err());
        // From Disconnected and from Requested too.
        let mut q = info();
        q.set_running(pid(3), t(0)).unwrap();
        let mut r = info();
        r.set_requested(t(0)).unwrap();
        r.set_running(pid(3), t(1)).unwrap();
        assert_eq!(
            r.events.last().unwrap().kind,
            PointEventKind::ConnectionEstablished {
                p2p_peer_id: pid(3)
            }
        );
    }

    #[test]
    fn disconnecting_a_disconnected_point_is_an_error_not_a_panic() {
        let mut p = info();
        let e = p
            .set_disconnected(&ReconnectionConfig::default(), t(0), false)
            .unwrap_err();
        assert_eq!(e.from, "disconnected");
        assert!(p.events.is_empty());
    }

    #[test]
    fn failed_request_sets_last_failed_and_backs_off() {
        let cfg = ReconnectionConfig::default();
        let mut p = info();
        p.set_requested(t(0)).unwrap();
        p.set_disconnected(&cfg, t(10), false).unwrap();
        assert!(p.is_disconnected());
        assert_eq!(p.last_failed_connection, Some(t(10)));
        assert_eq!(p.last_miss(), Some(t(10)));
        assert_eq!(p.last_seen(), None);
        assert_eq!(p.reconnection_time(), Some(t(11)));
        assert_eq!(
            p.events.last().unwrap().kind,
            PointEventKind::RequestRejected { p2p_peer_id: None }
        );
    }

    #[test]
    fn rejected_ack_sets_last_rejected_and_backs_off() {
        let cfg = ReconnectionConfig::default();
        let mut p = info();
        p.set_accepted(pid(7), t(0)).unwrap();
        p.set_disconnected(&cfg, t(5), false).unwrap();
        assert_eq!(p.last_rejected_connection, Some((pid(7), t(5))));
        assert_eq!(p.last_seen(), Some((pid(7), t(5))));
        assert_eq!(p.last_miss(), Some(t(5)));
        assert_eq!(p.reconnection_time(), Some(t(6)));
        assert_eq!(
            p.events.last().unwrap().kind,
            PointEventKind::RequestRejected {
                p2p_peer_id: Some(pid(7))
            }
        );
    }

    #[test]
    fn backoff_sequence_is_geometric_and_capped() {
        let cfg = ReconnectionConfig::default();
        let mut p = info();
        let mut expected = 1.0f64;
        let mut now = t(0);
        for _ in 0..80 {
            p.set_requested(now).unwrap();
            p.set_disconnected(&cfg, now, false).unwrap();
            let end = p.reconnection_time().unwrap();
            let waited = end.duration_since(now).unwrap().as_secs_f64();
            assert!(
                (waited - expected).abs() < 1e-6 * expected.max(1.0),
                "{waited} vs {expected}"
            );
            expected = if 172_800.0 > expected * 1.2 {
                expected * 1.2
            } else {
                172_800.0
            };
            now = end;
        }
        assert_eq!(p.reconnection.unwrap().delay, cfg.increase_cap);
        // First steps exactly: 1, 1.2, 1.44.
        let mut q = info();
        let mut delays = vec![];
        for _ in 0..3 {
            q.set_requested(t(0)).unwrap();
            q.set_disconnected(&cfg, t(0), false).unwrap();
            delays.push(
                q.reconnection_time()
                    .unwrap()
                    .duration_since(t(0))
                    .unwrap()
                    .as_secs_f64(),
            );
        }
        assert!(
            (delays[0] - 1.0).abs() < 1e-9
                && (delays[1] - 1.2).abs() < 1e-9
                && (delays[2] - 1.44).abs() < 1e-9
        );
    }

    #[test]
    fn an_isolated_node_retries_a_trusted_point_after_a_minute_whatever_its_back_off() {
        let cfg = ReconnectionConfig::default();
        let fail_many = |p: &mut PointInfo| {
            let mut now = t(0);
            for _ in 0..40 {
                p.set_requested(now).unwrap();
                p.set_disconnected(&cfg, now, false).unwrap();
                now = p.reconnection_time().unwrap();
            }
            // One more refusal at `now`: the delay is now over 1 000 s.
            p.set_requested(now).unwrap();
            p.set_disconnected(&cfg, now, false).unwrap();
            assert!(p.reconnection_time().unwrap() > now + Duration::from_secs(1000));
            now
        };
        let mut trusted = PointInfo::new("10.0.0.1:9732".parse().unwrap(), true, None);
        let miss = fail_many(&mut trusted);
        let mut untrusted = info();
        assert_eq!(fail_many(&mut untrusted), miss);
        let before = miss + Duration::from_secs(59);
        let after = miss + Duration::from_secs(60);
        // With connections, or for an untrusted point: Octez's back-off.
        for now in [before, after] {
            assert!(trusted.backs_off(&cfg, now, false));
            assert!(untrusted.backs_off(&cfg, now, true));
            assert!(untrusted.backs_off(&cfg, now, false));
        }
        // Without any connection, a trusted point waits a minute at most.
        assert!(trusted.backs_off(&cfg, before, true));
        assert!(!trusted.backs_off(&cfg, after, true));
        // The stored back-off is untouched (RPC `greylisted_until`).
        assert!(trusted.cannot_reconnect_yet(after));
        // A short back-off is not lengthened.
        let mut fresh = PointInfo::new("10.0.0.2:9732".parse().unwrap(), true, None);
        fresh.set_requested(t(0)).unwrap();
        fresh.set_disconnected(&cfg, t(0), false).unwrap();
        assert!(fresh.backs_off(&cfg, t(0), true));
        assert!(!fresh.backs_off(&cfg, t(2), true));
    }

    #[test]
    fn backoff_end_time_saturates() {
        let cfg = ReconnectionConfig::default();
        let mut p = info();
        p.set_requested(t(0)).unwrap();
        let far = rfc3339::max_time();
        p.set_disconnected(&cfg, far, false).unwrap();
        assert_eq!(p.reconnection_time(), Some(far));
    }

    #[test]
    fn end_of_running_connection_blocks_for_sixty_seconds_and_resets_delay() {
        let cfg = ReconnectionConfig::default();
        let mut p = info();
        // Build up some back-off first.
        for _ in 0..5 {
            p.set_requested(t(0)).unwrap();
            p.set_disconnected(&cfg, t(0), false).unwrap();
        }
        p.set_running(pid(1), t(100)).unwrap();
        p.set_disconnected(&cfg, t(200), true).unwrap();
        assert_eq!(
            p.reconnection,
            Some(Reconnection {
                delay: cfg.initial_delay,
                end_time: t(260)
            })
        );
        assert_eq!(p.last_disconnection, Some((pid(1), t(200))));
        assert_eq!(
            p.events.last().unwrap().kind,
            PointEventKind::Disconnection {
                p2p_peer_id: pid(1)
            }
        );
        assert!(p.cannot_reconnect_yet(t(200)));
        assert!(
            p.cannot_reconnect_yet(t(260)),
            "end_time itself is still blocked"
        );
        assert!(!p.cannot_reconnect_yet(t(261)));
        // The next failure waits initial_delay again.
        p.set_requested(t(300)).unwrap();
        p.set_disconnected(&cfg, t(300), false).unwrap();
        assert_eq!(p.reconnection_time(), Some(t(301)));
    }

    #[test]
    fn external_disconnection_event_when_not_requested() {
        let cfg = ReconnectionConfig::default();
        let mut p = info();
        p.set_running(pid(2), t(0)).unwrap();
        p.set_disconnected(&cfg, t(1), false).unwrap();
        assert_eq!(
            p.events.last().unwrap().kind,
            PointEventKind::ExternalDisconnection {
                p2p_peer_id: pid(2)
            }
        );
    }

    #[test]
    fn rejection_after_authentication_returns_to_disconnected_with_backoff() {
        let cfg = ReconnectionConfig::default();
        let mut p = info();
        assert!(p.set_rejected_after_auth(pid(4), &cfg, t(0)).is_err());
        p.set_requested(t(0)).unwrap();
        p.set_rejected_after_auth(pid(4), &cfg, t(3)).unwrap();
        assert!(p.is_disconnected());
        assert_eq!(p.last_rejected_connection, Some((pid(4), t(3))));
        assert_eq!(p.reconnection_time(), Some(t(4)));
        assert!(p.cannot_reconnect_yet(t(4)));
        // The point can be dialed again.
        p.set_requested(t(5)).unwrap();
    }

    #[test]
    fn last_seen_and_last_miss_take_the_most_recent() {
        let mut p = info();
        p.last_failed_connection = Some(t(50));
        p.last_rejected_connection = Some((pid(1), t(10)));
        p.last_established_connection = Some((pid(2), t(30)));
        p.last_disconnection = Some((pid(3), t(20)));
        assert_eq!(p.last_seen(), Some((pid(2), t(30))));
        assert_eq!(p.last_miss(), Some(t(50)));
        p.last_failed_connection = None;
        assert_eq!(p.last_miss(), Some(t(20)));
    }

    #[test]
    fn events_ring_is_bounded() {
        let mut p = info();
        for i in 0..250 {
            p.set_requested(t(i)).unwrap();
        }
        assert_eq!(p.events.len(), 100);
        assert_eq!(p.events.iter().next().unwrap().timestamp, t(150));
    }

    #[test]
    fn point_event_json_uses_correct_labels() {
        let e = PointEvent {
            timestamp: t(0),
            kind: PointEventKind::ConnectionEstablished {
                p2p_peer_id: pid(1),
            },
        };
        let v = e.to_octez_json();
        assert_eq!(v[0], rfc3339::format(t(0)));
        assert_eq!(v[1]["event_kind"], "connection_established");
        assert_eq!(v[1]["p2p_peer_id"], pid(1).to_string());
        let kind: PointEventKind = serde_json::from_value(v[1].clone()).unwrap();
        assert_eq!(kind, e.kind);
        let none =
            serde_json::to_value(PointEventKind::RequestRejected { p2p_peer_id: None }).unwrap();
        assert_eq!(none, serde_json::json!({"event_kind": "request_rejected"}));
    }

    #[test]
    fn point_info_json_has_octez_fields() {
        let cfg = ReconnectionConfig::default();
        let mut p = info();
        p.set_running(pid(1), t(0)).unwrap();
        let v = p.to_octez_json();
        assert_eq!(
            v["state"],
            serde_json::json!({"event_kind": "running", "p2p_peer_id": pid(1).to_string()})
        );
        assert_eq!(v["p2p_peer_id"], pid(1).to_string());
        p.set_disconnected(&cfg, t(1), false).unwrap();
        let v = p.to_octez_json();
        assert_eq!(v["greylisted_until"], rfc3339::format(t(61)));
        assert_eq!(v["last_disconnection"][0], pid(1).to_string());
        assert!(v.get("expected_peer_id").is_none());
    }
}
