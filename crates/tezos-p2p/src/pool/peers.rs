//! Per-peer state machine (spec §2.3, Octez `P2p_peer_state`) and the
//! peers file (§2.5, Octez `peers.json`).
//!
//! Like [`crate::pool::points`], this is synchronous plain data; every transition
//! takes `now`.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tezos_p2p_wire::identity::PeerId;
use thiserror::Error;

use crate::pool::conn_id::parse_addr;
pub use crate::pool::conn_id::ConnId;
use crate::pool::events::rfc3339::Rfc3339;
use crate::pool::events::EventRing;
use crate::pool::points::InvalidTransition;

/// Connection state of a peer (`P2p_peer_state.t` without the async
/// payloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PeerState {
    /// The handshake was admitted; the Ack exchange is in progress.
    Accepted {
        /// The connection id of the attempt.
        point: ConnId,
    },
    /// A connection is established.
    Running {
        /// The connection id (normalised, see spec §2.3).
        point: ConnId,
    },
    /// No connection.
    #[default]
    Disconnected,
}

impl PeerState {
    /// Octez's name of the state (`accepted`, `running`, `disconnected`).
    pub fn name(&self) -> &'static str {
        match self {
            PeerState::Accepted { .. } => "accepted",
            PeerState::Running { .. } => "running",
            PeerState::Disconnected => "disconnected",
        }
    }

    /// The current connection id (RPC `reachable_at`).
    pub fn point(&self) -> Option<ConnId> {
        match self {
            PeerState::Accepted { point } | PeerState::Running { point } => Some(*point),
            PeerState::Disconnected => None,
        }
    }
}

/// Kind of a peer event (`P2p_peer.Pool_event.kind`). JSON names are
/// Octez's (`AcceptingRequest` is `"incoming_request"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PeerEventKind {
    /// The handshake was admitted.
    #[serde(rename = "incoming_request")]
    AcceptingRequest,
    /// We rejected the peer (never logged by Octez).
    #[serde(rename = "rejecting_request")]
    RejectingRequest,
    /// The Ack exchange failed, or (our addition, quirk 18) an outgoing
    /// attempt to this peer failed after its id was known.
    #[serde(rename = "request_rejected")]
    RequestRejected,
    /// The connection became Running.
    #[serde(rename = "connection_established")]
    ConnectionEstablished,
    /// We closed the Running connection.
    #[serde(rename = "disconnection")]
    Disconnection,
    /// The Running connection was closed for another reason.
    #[serde(rename = "external_disconnection")]
    ExternalDisconnection,
}

/// One entry of a peer's event log. JSON: `{"kind", "timestamp", "addr",
/// "port"?}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerEvent {
    /// What happened.
    pub kind: PeerEventKind,
    /// When it happened.
    pub timestamp: SystemTime,
    /// The connection id involved.
    pub point: ConnId,
}

impl Serialize for PeerEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3 + usize::from(self.point.port.is_some())))?;
        m.serialize_entry("kind", &self.kind)?;
        m.serialize_entry("timestamp", &Rfc3339(self.timestamp))?;
        m.serialize_entry("addr", &self.point.addr_json())?;
        if let Some(p) = self.point.port {
            m.serialize_entry("port", &p)?;
        }
        m.end()
    }
}

#[derive(Deserialize)]
struct PeerEventJson {
    kind: PeerEventKind,
    timestamp: Rfc3339,
    addr: String,
    #[serde(default)]
    port: Option<u16>,
}

impl<'de> Deserialize<'de> for PeerEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = PeerEventJson::deserialize(d)?;
        Ok(PeerEvent {
            kind: j.kind,
            timestamp: j.timestamp.0,
            point: ConnId::new(parse_addr(&j.addr)?, j.port),
        })
    }
}

/// Peer metadata kept by the pool and persisted in the peers file (Octez
/// `P2p_params.peer_meta_config`).
pub trait PeerMeta:
    Clone + Send + Sync + 'static + Serialize + DeserializeOwned + Default + fmt::Debug
{
    /// Score used by the peer-table GC (lowest removed first). Octez's
    /// `Peer_metadata.score` is constantly 1.0.
    fn score(&self) -> f64 {
        1.0
    }
}

impl PeerMeta for () {}

/// Octez's shell peer metadata (`Peer_metadata.t`,
/// `src/lib_p2p_services/peer_metadata.ml`), kept as opaque JSON so that
/// an Octez `peers.json` round-trips unchanged. The default is Octez's
/// `Peer_metadata.empty ()` in Octez's encoding (`peer_metadata.v1`: ten
/// keys, every counter a `Data_encoding.z`, that is a decimal string, all
/// `"0"`; each message-kind object with its eleven kinds, `checkpoint`,
/// `protocol_branch` and `predecessor_header` included), so files we
/// write load in Octez too. Metadata in Octez's legacy shape
/// (`peer_metadata.legacy_v0`, eight kinds) is read as Octez reads it: the
/// three newer kinds added as `"0"`.
///
/// Every peer of the table has one, and nearly all of them are the
/// default: that one is shared (one static JSON value), so that a peer
/// costs a pointer here rather than the ~10 KiB of its JSON tree; only
/// metadata read from a peers file that differs from it is kept, behind
/// an `Arc`.
#[derive(Debug, Clone, Default)]
pub struct OctezPeerMetadata(Option<std::sync::Arc<serde_json::Value>>);

impl OctezPeerMetadata {
    /// Octez's `Peer_metadata.empty ()`.
    fn empty() -> &'static serde_json::Value {
        static EMPTY: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
        EMPTY.get_or_init(|| {
            use serde_json::json;
            let msgs = || {
                json!({
                    "branch": "0", "head": "0", "block_header": "0", "operations": "0",
                    "protocols": "0", "operation_hashes_for_block": "0",
                    "operations_for_block": "0", "checkpoint": "0",
                    "protocol_branch": "0", "predecessor_header": "0", "other": "0"
                })
            };
            json!({
                "responses": {
                    "sent": msgs(), "failed": msgs(), "received": msgs(),
                    "unexpected": "0", "outdated": "0"
                },
                "requests": {
                    "sent": msgs(), "received": msgs(), "failed": msgs(), "scheduled": msgs()
                },
                "valid_blocks": "0",
                "old_heads": "0",
                "prevalidator_results": {
                    "cannot_download": "0", "cannot_parse": "0",
                    "refused_by_prefilter": "0", "refused_by_postfilter": "0",
                    "applied": "0", "branch_delayed": "0", "branch_refused": "0",
                    "refused": "0", "duplicate": "0", "outdated": "0"
                },
                "unactivated_chains": "0",
                "inactive_chains": "0",
                "future_blocks_advertised": "0",
                "unadvertised": {"block": "0", "operations": "0", "protocol": "0"},
                "advertisements": {
                    "sent": {"head": "0", "branch": "0"},
                    "received": {"head": "0", "branch": "0"}
                }
            })
        })
    }

    /// Octez's message kinds of `peer_metadata.legacy_v0`.
    const LEGACY_KINDS: [&'static str; 8] = [
        "branch",
        "head",
        "block_header",
        "operations",
        "protocols",
        "operation_hashes_for_block",
        "operations_for_block",
        "other",
    ];

    /// The kinds `peer_metadata.v1` added.
    const NEW_KINDS: [&'static str; 3] = ["checkpoint", "protocol_branch", "predecessor_header"];

    /// Reads the message-kind objects of Octez's legacy shape as Octez
    /// does: an object with exactly the eight legacy kinds gets the three
    /// newer ones as `"0"`.
    fn upgrade_legacy(value: &mut serde_json::Value) {
        let groups: [(&str, &[&str]); 2] = [
            ("responses", &["sent", "failed", "received"]),
            ("requests", &["sent", "received", "failed", "scheduled"]),
        ];
        for (group, fields) in groups {
            for field in fields {
                let Some(serde_json::Value::Object(m)) =
                    value.get_mut(group).and_then(|g| g.get_mut(*field))
                else {
                    continue;
                };
                if m.len() == Self::LEGACY_KINDS.len()
                    && Self::LEGACY_KINDS.iter().all(|k| m.contains_key(*k))
                {
                    for k in Self::NEW_KINDS {
                        m.insert(k.into(), "0".into());
                    }
                }
            }
        }
    }

    /// Metadata with this JSON value (in Octez's legacy shape, upgraded as
    /// Octez reads it).
    pub fn new(mut value: serde_json::Value) -> Self {
        Self::upgrade_legacy(&mut value);
        if &value == Self::empty() {
            OctezPeerMetadata(None)
        } else {
            OctezPeerMetadata(Some(std::sync::Arc::new(value)))
        }
    }

    /// The JSON value.
    pub fn value(&self) -> &serde_json::Value {
        self.0.as_deref().unwrap_or_else(|| Self::empty())
    }
}

impl PartialEq for OctezPeerMetadata {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

impl Serialize for OctezPeerMetadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for OctezPeerMetadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(OctezPeerMetadata::new)
    }
}

impl PeerMeta for OctezPeerMetadata {}

/// Everything known about one peer id (`P2p_peer_state.Info.t`).
///
/// Serde: the peers-file shape (Octez `P2p_peer_state.Info.encoding`):
/// `peer_id`, `created`, `trusted` (default false), `peer_metadata`,
/// `events` (default `[]`) and the four optional `last_*` pairs
/// `[conn id, time]`. The state is not saved and is Disconnected on load.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo<M> {
    /// The peer id (key of the table).
    pub peer_id: PeerId,
    /// First registration time (used by the GC).
    pub created: SystemTime,
    /// Current state. Change it only through the transition methods.
    pub state: PeerState,
    /// Upper-layer metadata.
    pub metadata: M,
    /// Whitelisted.
    pub trusted: bool,
    /// Last outgoing attempt to this peer that failed after its id was
    /// known (never written by Octez, quirk 18; see
    /// [`PeerInfo::set_failed_connection`]).
    pub last_failed_connection: Option<(ConnId, SystemTime)>,
    /// Last Accepted → Disconnected transition.
    pub last_rejected_connection: Option<(ConnId, SystemTime)>,
    /// Last transition to Running.
    pub last_established_connection: Option<(ConnId, SystemTime)>,
    /// Last Running → Disconnected transition.
    pub last_disconnection: Option<(ConnId, SystemTime)>,
    /// The last 100 events.
    pub events: EventRing<PeerEvent>,
}

fn recent(
    a: Option<(ConnId, SystemTime)>,
    b: Option<(ConnId, SystemTime)>,
) -> Option<(ConnId, SystemTime)> {
    // Octez `Time.System.recent`: on a tie the first argument wins.
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) => Some(if x.1 < y.1 { y } else { x }),
    }
}

impl<M: PeerMeta> PeerInfo<M> {
    /// A fresh, Disconnected, untrusted peer created at `created` with the
    /// default metadata.
    pub fn new(peer_id: PeerId, created: SystemTime) -> Self {
        PeerInfo {
            peer_id,
            created,
            state: PeerState::Disconnected,
            metadata: M::default(),
            trusted: false,
            last_failed_connection: None,
            last_rejected_connection: None,
            last_established_connection: None,
            last_disconnection: None,
            events: EventRing::default(),
        }
    }

    /// The metadata's score.
    pub fn score(&self) -> f64 {
        self.metadata.score()
    }
}

impl<M> PeerInfo<M> {
    fn invalid(&self, to: &'static str) -> InvalidTransition {
        InvalidTransition {
            what: "peer",
            from: self.state.name(),
            to,
        }
    }

    fn log(&mut self, now: SystemTime, point: ConnId, kind: PeerEventKind) {
        self.events.push(PeerEvent {
            kind,
            timestamp: now,
            point,
        });
    }

    /// Disconnected → Accepted: the handshake was admitted.
    pub fn set_accepted(
        &mut self,
        point: ConnId,
        now: SystemTime,
    ) -> Result<(), InvalidTransition> {
        if self.state != PeerState::Disconnected {
            return Err(self.invalid("accepted"));
        }
        self.state = PeerState::Accepted { point };
        self.log(now, point, PeerEventKind::AcceptingRequest);
        Ok(())
    }

    /// → Running, from Disconnected or from Accepted with the same conn id.
    /// Sets `last_established_connection`.
    pub fn set_running(&mut self, point: ConnId, now: SystemTime) -> Result<(), InvalidTransition> {
        let ok = match self.state {
            PeerState::Disconnected => true,
            PeerState::Accepted { point: p } => p == point,
            PeerState::Running { .. } => false,
        };
        if !ok {
            return Err(self.invalid("running"));
        }
        self.state = PeerState::Running { point };
        self.last_established_connection = Some((point, now));
        self.log(now, point, PeerEventKind::ConnectionEstablished);
        Ok(())
    }

    /// → Disconnected: from Accepted (Ack exchange failed:
    /// `last_rejected_connection`) or Running (teardown:
    /// `last_disconnection`; event `disconnection` if `requested` else
    /// `external_disconnection`). Error from Disconnected.
    pub fn set_disconnected(
        &mut self,
        now: SystemTime,
        requested: bool,
    ) -> Result<(), InvalidTransition> {
        let (point, kind) = match self.state {
            PeerState::Accepted { point } => {
                self.last_rejected_connection = Some((point, now));
                (point, PeerEventKind::RequestRejected)
            }
            PeerState::Running { point } => {
                self.last_disconnection = Some((point, now));
                let kind = if requested {
                    PeerEventKind::Disconnection
                } else {
                    PeerEventKind::ExternalDisconnection
                };
                (point, kind)
            }
            PeerState::Disconnected => return Err(self.invalid("disconnected")),
        };
        self.state = PeerState::Disconnected;
        self.log(now, point, kind);
        Ok(())
    }

    /// Records that an outgoing attempt to this peer failed after its id
    /// was learnt in the handshake but before the peer became Accepted
    /// (Nack at admission, peer banned, identity mismatch…):
    /// `last_failed_connection := (point, now)` and a `request_rejected`
    /// event. No state change. Fixes quirk 18 (Octez never sets it).
    pub fn set_failed_connection(&mut self, point: ConnId, now: SystemTime) {
        self.last_failed_connection = Some((point, now));
        self.log(now, point, PeerEventKind::RequestRejected);
    }

    /// Most recent of established, rejected and disconnection.
    pub fn last_seen(&self) -> Option<(ConnId, SystemTime)> {
        recent(
            self.last_established_connection,
            recent(self.last_rejected_connection, self.last_disconnection),
        )
    }

    /// Most recent of failed, rejected and disconnection.
    pub fn last_miss(&self) -> Option<(ConnId, SystemTime)> {
        recent(
            self.last_failed_connection,
            recent(self.last_rejected_connection, self.last_disconnection),
        )
    }

    /// Whether the peer is Disconnected.
    pub fn is_disconnected(&self) -> bool {
        self.state == PeerState::Disconnected
    }
}

type Stamp = (ConnId, Rfc3339);

fn stamp(x: Option<(ConnId, SystemTime)>) -> Option<Stamp> {
    x.map(|(c, t)| (c, Rfc3339(t)))
}

fn unstamp(x: Option<Stamp>) -> Option<(ConnId, SystemTime)> {
    x.map(|(c, t)| (c, t.0))
}

#[derive(Serialize)]
struct PeerInfoSer<'a, M> {
    peer_id: &'a PeerId,
    created: Rfc3339,
    trusted: bool,
    peer_metadata: &'a M,
    events: &'a EventRing<PeerEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_failed_connection: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_rejected_connection: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_established_connection: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_disconnection: Option<Stamp>,
}

#[derive(Deserialize)]
struct PeerInfoDe<M> {
    peer_id: PeerId,
    created: Rfc3339,
    #[serde(default)]
    trusted: bool,
    peer_metadata: M,
    #[serde(default)]
    events: EventRing<PeerEvent>,
    #[serde(default)]
    last_failed_connection: Option<Stamp>,
    #[serde(default)]
    last_rejected_connection: Option<Stamp>,
    #[serde(default)]
    last_established_connection: Option<Stamp>,
    #[serde(default)]
    last_disconnection: Option<Stamp>,
}

impl<M: Serialize> Serialize for PeerInfo<M> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PeerInfoSer {
            peer_id: &self.peer_id,
            created: Rfc3339(self.created),
            trusted: self.trusted,
            peer_metadata: &self.metadata,
            events: &self.events,
            last_failed_connection: stamp(self.last_failed_connection),
            last_rejected_connection: stamp(self.last_rejected_connection),
            last_established_connection: stamp(self.last_established_connection),
            last_disconnection: stamp(self.last_disconnection),
        }
        .serialize(s)
    }
}

impl<'de, M: DeserializeOwned> Deserialize<'de> for PeerInfo<M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = PeerInfoDe::<M>::deserialize(d)?;
        Ok(PeerInfo {
            peer_id: j.peer_id,
            created: j.created.0,
            state: PeerState::Disconnected,
            metadata: j.peer_metadata,
            trusted: j.trusted,
            last_failed_connection: unstamp(j.last_failed_connection),
            last_rejected_connection: unstamp(j.last_rejected_connection),
            last_established_connection: unstamp(j.last_established_connection),
            last_disconnection: unstamp(j.last_disconnection),
            events: j.events,
        })
    }
}

// ---------------------------------------------------------------------------
// Peers file
// ---------------------------------------------------------------------------

/// `path` with `suffix` appended to its file name (`peers.json.tmp`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn is_dev_null(path: &Path) -> bool {
    path == Path::new("/dev/null")
}

/// Writes the peers file atomically: the JSON list goes to `<path>.tmp`,
/// which is `fsync`ed and renamed over `path`, then the directory is
/// `fsync`ed. A crash at any moment leaves either the old or the new file
/// (plus possibly a stale `.tmp`, overwritten by the next save).
///
/// States are not saved (every peer loads Disconnected). `/dev/null` means
/// "do not persist" and is a no-op.
pub fn save_peers_file<M: Serialize>(path: &Path, peers: &[PeerInfo<M>]) -> io::Result<()> {
    if is_dev_null(path) {
        return Ok(());
    }
    let json = serde_json::to_vec_pretty(peers).map_err(io::Error::other)?;
    let tmp = with_suffix(path, ".tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Result of [`load_peers_file`].
#[derive(Debug)]
pub struct LoadOutcome<M> {
    /// The peers read (empty if the file was missing or corrupt).
    pub peers: Vec<PeerInfo<M>>,
    /// Where a corrupt file was moved (`<path>.corrupt`), if it was.
    pub corrupt_moved_to: Option<PathBuf>,
}

/// Why the peers file could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PeersFileError {
    /// The file exists but could not be read.
    #[error("cannot read peers file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is corrupt and could not be moved aside; refusing to go on
    /// (the next save would overwrite it).
    #[error("peers file {path} is corrupt ({parse_error}) and cannot be moved aside: {source}")]
    CorruptNotMoved {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        parse_error: String,
        /// Why the rename failed.
        source: io::Error,
    },
}

/// Reads the peers file. A missing file (or `/dev/null`) gives no peers. A
/// file that does not parse as a list of peer infos is renamed to
/// `<path>.corrupt` (replacing an older one), a warning is logged and no
/// peers are returned, with the new location in
/// [`LoadOutcome::corrupt_moved_to`]. Every loaded peer is Disconnected.
pub fn load_peers_file<M: DeserializeOwned>(path: &Path) -> Result<LoadOutcome<M>, PeersFileError> {
    let empty = || LoadOutcome {
        peers: Vec::new(),
        corrupt_moved_to: None,
    };
    if is_dev_null(path) {
        return Ok(empty());
    }
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(empty()),
        Err(source) => {
            return Err(PeersFileError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    match serde_json::from_slice::<Vec<PeerInfo<M>>>(&bytes) {
        Ok(peers) => Ok(LoadOutcome {
            peers,
            corrupt_moved_to: None,
        }),
        Err(err) => {
            let aside = with_suffix(path, ".corrupt");
            match fs::rename(path, &aside) {
                Ok(()) => {
                    tracing::warn!(
                        path = %path.display(),
                        moved_to = %aside.display(),
                        error = %err,
                        "corrupt peers file moved aside; starting with no known peers"
                    );
                    Ok(LoadOutcome {
                        peers: Vec::new(),
                        corrupt_moved_to: Some(aside),
                    })
                }
                Err(source) => Err(PeersFileError::CorruptNotMoved {
                    path: path.to_owned(),
                    parse_error: err.to_string(),
                    source,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::events::rfc3339;
    use rand::{Rng, SeedableRng};
    use std::time::{Duration, UNIX_EPOCH};

    fn pid(b: u8) -> PeerId {
        PeerId([b; 16])
    }

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn cid(s: &str) -> ConnId {
        ConnId::of_point(s.parse().unwrap())
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let d =
            std::env::temp_dir().join(format!("tezos-p2p-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn conn_id_display_and_json_match_octez() {
        let c = cid("1.2.3.4:9732");
        assert_eq!(c.to_string(), "1.2.3.4:9732");
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"addr":"::ffff:1.2.3.4","port":9732}"#
        );
        let no_port = ConnId::new("::1".parse().unwrap(), None);
        assert_eq!(no_port.to_string(), "::1");
        assert_eq!(
            serde_json::to_string(&no_port).unwrap(),
            r#"{"addr":"::1"}"#
        );
        assert_eq!(
            ConnId::new("::1".parse().unwrap(), Some(1)).to_string(),
            "[::1]:1"
        );
        let back: ConnId =
            serde_json::from_str(r#"{"addr":"::ffff:1.2.3.4","port":9732}"#).unwrap();
        assert_eq!(back, c);
        let back: ConnId = serde_json::from_str(r#"{"addr":"1.2.3.4","port":9732}"#).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.to_point(), Some("1.2.3.4:9732".parse().unwrap()));
    }

    #[test]
    fn peer_accepted_only_from_disconnected() {
        let mut p = PeerInfo::<()>::new(pid(1), t(0));
        p.set_accepted(cid("1.1.1.1:1"), t(1)).unwrap();
        assert_eq!(
            p.state,
            PeerState::Accepted {
                point: cid("1.1.1.1:1")
            }
        );
        assert_eq!(
            p.set_accepted(cid("1.1.1.1:1"), t(2)).unwrap_err().from,
            "accepted"
        );
        p.set_running(cid("1.1.1.1:1"), t(2)).unwrap();
        assert!(p.set_accepted(cid("1.1.1.1:1"), t(3)).is_err());
        assert_eq!(
            p.events.iter().next().unwrap().kind,
            PeerEventKind::AcceptingRequest
        );
    }

    #[test]
    fn peer_running_requires_same_conn_id_when_accepted() {
        let mut p = PeerInfo::<()>::new(pid(1), t(0));
        p.set_accepted(cid("1.1.1.1:1"), t(1)).unwrap();
        assert!(p.set_running(cid("1.1.1.1:2"), t(2)).is_err());
        p.set_running(cid("1.1.1.1:1"), t(2)).unwrap();
        assert_eq!(
            p.last_established_connection,
            Some((cid("1.1.1.1:1"), t(2)))
        );
        assert!(p.set_running(cid("1.1.1.1:1"), t(3)).is_err());
        let mut q = PeerInfo::<()>::new(pid(2), t(0));
        q.set_running(cid("2.2.2.2:2"), t(1)).unwrap();
        assert_eq!(q.state.point(), Some(cid("2.2.2.2:2")));
    }

    #[test]
    fn peer_disconnection_records_rejection_or_disconnection() {
        let mut p = PeerInfo::<()>::new(pid(1), t(0));
        assert_eq!(p.set_disconnected(t(0), false).unwrap_err().what, "peer");
        p.set_accepted(cid("1.1.1.1:1"), t(1)).unwrap();
        p.set_disconnected(t(2), false).unwrap();
        assert_eq!(p.last_rejected_connection, Some((cid("1.1.1.1:1"), t(2))));
        assert_eq!(
            p.events.last().unwrap().kind,
            PeerEventKind::RequestRejected
        );
        p.set_running(cid("1.1.1.1:1"), t(3)).unwrap();
        p.set_disconnected(t(4), false).unwrap();
        assert_eq!(p.last_disconnection, Some((cid("1.1.1.1:1"), t(4))));
        assert_eq!(
            p.events.last().unwrap().kind,
            PeerEventKind::ExternalDisconnection
        );
        p.set_running(cid("1.1.1.1:1"), t(5)).unwrap();
        p.set_disconnected(t(6), true).unwrap();
        assert_eq!(p.events.last().unwrap().kind, PeerEventKind::Disconnection);
        assert!(p.is_disconnected());
        assert_eq!(p.last_seen(), Some((cid("1.1.1.1:1"), t(6))));
        assert_eq!(p.last_miss(), Some((cid("1.1.1.1:1"), t(6))));
    }

    #[test]
    fn failed_outgoing_attempt_sets_peer_last_failed_connection() {
        let mut p = PeerInfo::<()>::new(pid(1), t(0));
        p.set_failed_connection(cid("3.3.3.3:3"), t(7));
        assert!(p.is_disconnected());
        assert_eq!(p.last_failed_connection, Some((cid("3.3.3.3:3"), t(7))));
        assert_eq!(p.last_miss(), Some((cid("3.3.3.3:3"), t(7))));
        assert_eq!(p.last_seen(), None);
    }

    #[test]
    fn score_defaults_to_one() {
        assert_eq!(PeerInfo::<()>::new(pid(1), t(0)).score(), 1.0);
        assert_eq!(
            PeerInfo::<OctezPeerMetadata>::new(pid(1), t(0)).score(),
            1.0
        );
    }

    #[test]
    /// The default is Octez's `Peer_metadata.empty ()` in Octez's
    /// `Peer_metadata.encoding` (`peer_metadata.v1`): its keys, and every
    /// counter a `Data_encoding.z` (a decimal string).
    fn octez_peer_metadata_has_octez_shape() {
        let v = serde_json::to_value(OctezPeerMetadata::default()).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let sorted = |k: &[&str]| -> Vec<String> {
            let mut k: Vec<_> = k.iter().map(|s| s.to_string()).collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            sorted(&[
                "responses",
                "requests",
                "valid_blocks",
                "old_heads",
                "prevalidator_results",
                "unactivated_chains",
                "inactive_chains",
                "future_blocks_advertised",
                "unadvertised",
                "advertisements",
            ])
        );
        let kinds = sorted(&[
            "branch",
            "head",
            "block_header",
            "operations",
            "protocols",
            "operation_hashes_for_block",
            "operations_for_block",
            "checkpoint",
            "protocol_branch",
            "predecessor_header",
            "other",
        ]);
        assert_eq!(
            keys(&v["responses"]),
            sorted(&["sent", "failed", "received", "unexpected", "outdated"])
        );
        for f in ["sent", "failed", "received"] {
            assert_eq!(keys(&v["responses"][f]), kinds, "responses.{f}");
        }
        assert_eq!(
            keys(&v["requests"]),
            sorted(&["sent", "received", "failed", "scheduled"])
        );
        for f in ["sent", "received", "failed", "scheduled"] {
            assert_eq!(keys(&v["requests"][f]), kinds, "requests.{f}");
        }
        assert_eq!(
            keys(&v["prevalidator_results"]),
            sorted(&[
                "cannot_download",
                "cannot_parse",
                "refused_by_prefilter",
                "refused_by_postfilter",
                "applied",
                "branch_delayed",
                "branch_refused",
                "refused",
                "duplicate",
                "outdated",
            ])
        );
        assert_eq!(
            keys(&v["unadvertised"]),
            sorted(&["block", "operations", "protocol"])
        );
        assert_eq!(keys(&v["advertisements"]), sorted(&["sent", "received"]));
        for f in ["sent", "received"] {
            assert_eq!(keys(&v["advertisements"][f]), sorted(&["head", "branch"]));
        }
        // Every leaf is the string "0".
        fn leaves(v: &serde_json::Value, n: &mut usize) {
            match v {
                serde_json::Value::Object(m) => m.values().for_each(|x| leaves(x, n)),
                other => {
                    assert_eq!(other, "0");
                    *n += 1;
                }
            }
        }
        let mut n = 0;
        leaves(&v, &mut n);
        assert_eq!(n, 3 * 11 + 2 + 4 * 11 + 2 + 10 + 3 + 3 + 4);
    }

    #[test]
    fn octez_peer_metadata_reads_the_legacy_shape_as_octez() {
        let mut legacy = serde_json::to_value(OctezPeerMetadata::default()).unwrap();
        for (group, field) in [("responses", "sent"), ("requests", "scheduled")] {
            let m = legacy[group][field].as_object_mut().unwrap();
            for k in ["checkpoint", "protocol_branch", "predecessor_header"] {
                m.remove(k);
            }
        }
        legacy["requests"]["scheduled"]["head"] = "7".into();
        let m: OctezPeerMetadata = serde_json::from_value(legacy).unwrap();
        let v = m.value();
        assert_eq!(v["responses"]["sent"]["checkpoint"], "0");
        assert_eq!(v["requests"]["scheduled"]["predecessor_header"], "0");
        assert_eq!(v["requests"]["scheduled"]["head"], "7");
        // Octez's `empty ()` in the legacy shape: the shared default.
        let mut legacy = serde_json::to_value(OctezPeerMetadata::default()).unwrap();
        for (group, fields) in [
            ("responses", &["sent", "failed", "received"][..]),
            ("requests", &["sent", "received", "failed", "scheduled"][..]),
        ] {
            for f in fields {
                let m = legacy[group][*f].as_object_mut().unwrap();
                for k in ["checkpoint", "protocol_branch", "predecessor_header"] {
                    m.remove(k);
                }
            }
        }
        let m: OctezPeerMetadata = serde_json::from_value(legacy).unwrap();
        assert!(m.0.is_none());
        // Neither shape (ten kinds): kept as it is.
        let mut other = serde_json::to_value(OctezPeerMetadata::default()).unwrap();
        other["responses"]["failed"]
            .as_object_mut()
            .unwrap()
            .remove("checkpoint");
        let m: OctezPeerMetadata = serde_json::from_value(other.clone()).unwrap();
        assert_ne!(m, OctezPeerMetadata::default());
        assert_eq!(serde_json::to_value(&m).unwrap(), other);
    }

    #[test]
    fn octez_peer_metadata_is_shared_when_default() {
        let d = OctezPeerMetadata::default();
        assert_eq!(std::mem::size_of::<OctezPeerMetadata>(), 8);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["responses"]["sent"]["branch"], "0");
        assert_eq!(json["advertisements"]["received"]["head"], "0");
        // Read back: the shared default again.
        let back: OctezPeerMetadata = serde_json::from_value(json.clone()).unwrap();
        assert!(back.0.is_none());
        assert_eq!(back, d);
        // Anything else is kept as it is.
        let mut other = json;
        other["valid_blocks"] = "12".into();
        let m: OctezPeerMetadata = serde_json::from_value(other.clone()).unwrap();
        assert_ne!(m, d);
        assert_eq!(serde_json::to_value(&m).unwrap(), other);
        assert_eq!(m.value(), &other);
    }

    fn sample_peers(n: usize, events: usize) -> Vec<PeerInfo<OctezPeerMetadata>> {
        (0..n)
            .map(|i| {
                let mut p = PeerInfo::<OctezPeerMetadata>::new(
                    PeerId([
                        (i % 256) as u8,
                        (i / 256) as u8,
                        7,
                        7,
                        7,
                        7,
                        7,
                        7,
                        7,
                        7,
                        7,
                        7,
                        7,
                        7,
                        7,
                        7,
                    ]),
                    t(i as u64) + Duration::from_millis(123),
                );
                p.trusted = i % 3 == 0;
                let c = ConnId::new(
                    format!("10.0.{}.{}", i / 256, i % 256).parse().unwrap(),
                    Some(9732),
                );
                for e in 0..events {
                    p.set_running(c, t(1000 + e as u64)).unwrap();
                    p.set_disconnected(t(1001 + e as u64), e % 2 == 0).unwrap();
                }
                if i % 2 == 0 {
                    p.set_failed_connection(ConnId::new(c.addr, None), t(5000));
                }
                p
            })
            .collect()
    }

    #[test]
    fn peers_file_round_trip() {
        let dir = temp_dir("peers-rt");
        let path = dir.join("peers.json");
        let mut peers = sample_peers(5, 3);
        peers[0].set_running(cid("9.9.9.9:9"), t(9)).unwrap();
        save_peers_file(&path, &peers).unwrap();
        assert!(!with_suffix(&path, ".tmp").exists());
        let out = load_peers_file::<OctezPeerMetadata>(&path).unwrap();
        assert!(out.corrupt_moved_to.is_none());
        peers[0].state = PeerState::Disconnected; // states are not saved
        assert_eq!(out.peers, peers);
        // Octez field names.
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let first = &v[0];
        for k in [
            "peer_id",
            "created",
            "trusted",
            "peer_metadata",
            "events",
            "last_established_connection",
            "last_disconnection",
            "last_failed_connection",
        ] {
            assert!(first.get(k).is_some(), "missing {k}");
        }
        assert!(first.get("state").is_none());
        assert!(first.get("last_rejected_connection").is_none());
        assert!(first["last_disconnection"].is_array());
        assert_eq!(first["peer_metadata"]["valid_blocks"], "0");
        assert_eq!(first["events"][0]["kind"], "connection_established");
        assert_eq!(first["events"][0]["addr"], "::ffff:10.0.0.0");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn peers_file_reads_octez_json() {
        let dir = temp_dir("peers-octez");
        let path = dir.join("peers.json");
        let id = pid(5).to_string();
        let text = format!(
            r#"[{{"peer_id":"{id}","created":"2019-05-14T13:38:27.419-00:00",
                 "peer_metadata":{{"anything":"kept"}},
                 "last_established_connection":[{{"addr":"::ffff:1.2.3.4","port":9732}},"2019-05-14T13:40:00Z"],
                 "last_disconnection":[{{"addr":"::ffff:1.2.3.4","port":9732}},1557841300]}}]"#
        );
        fs::write(&path, text).unwrap();
        let out = load_peers_file::<OctezPeerMetadata>(&path).unwrap();
        assert_eq!(out.peers.len(), 1);
        let p = &out.peers[0];
        assert_eq!(p.peer_id, pid(5));
        assert!(!p.trusted);
        assert!(p.events.is_empty());
        assert_eq!(
            p.created,
            rfc3339::parse("2019-05-14T13:38:27.419Z").unwrap()
        );
        assert_eq!(p.metadata.value()["anything"], "kept");
        assert_eq!(
            p.last_disconnection.unwrap().1,
            UNIX_EPOCH + Duration::from_secs(1_557_841_300)
        );
        assert_eq!(p.last_seen().unwrap().0, cid("1.2.3.4:9732"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_peers_file_loads_empty() {
        let dir = temp_dir("peers-missing");
        let out = load_peers_file::<()>(&dir.join("nope.json")).unwrap();
        assert!(out.peers.is_empty() && out.corrupt_moved_to.is_none());
        let out = load_peers_file::<()>(Path::new("/dev/null")).unwrap();
        assert!(out.peers.is_empty());
        save_peers_file::<()>(Path::new("/dev/null"), &[]).unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_peers_file_is_kept_aside() {
        let dir = temp_dir("peers-corrupt");
        let path = dir.join("peers.json");
        fs::write(with_suffix(&path, ".corrupt"), b"older corrupt").unwrap();
        for garbage in [
            &b"[{\"peer_id\": "[..],
            b"{\"not\": \"a list\"}",
            b"[{\"peer_id\":\"nope\",\"created\":\"x\",\"peer_metadata\":null}]",
        ] {
            fs::write(&path, garbage).unwrap();
            let out = load_peers_file::<()>(&path).unwrap();
            assert!(out.peers.is_empty());
            let aside = out.corrupt_moved_to.expect("moved aside");
            assert_eq!(aside, with_suffix(&path, ".corrupt"));
            assert_eq!(fs::read(&aside).unwrap(), garbage, "kept byte for byte");
            assert!(
                !path.exists(),
                "a later save will not overwrite the corrupt data"
            );
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stale_partial_tmp_file_does_not_affect_load_or_save() {
        let dir = temp_dir("peers-tmp");
        let path = dir.join("peers.json");
        let old = sample_peers(3, 1);
        save_peers_file(&path, &old).unwrap();
        // A save killed mid-write leaves a partial .tmp behind.
        fs::write(with_suffix(&path, ".tmp"), b"[{\"peer_id\": \"idt").unwrap();
        let out = load_peers_file::<OctezPeerMetadata>(&path).unwrap();
        assert_eq!(out.peers, old);
        let new = sample_peers(4, 2);
        save_peers_file(&path, &new).unwrap();
        assert_eq!(
            load_peers_file::<OctezPeerMetadata>(&path).unwrap().peers,
            new
        );
        fs::remove_dir_all(dir).unwrap();
    }

    const CHILD_ENV: &str = "TEZOS_P2P_PEERS_FILE_KILL_TEST";

    /// Not a real test: when re-executed by
    /// `peers_file_survives_kill_mid_save` with `CHILD_ENV` set, saves two
    /// versions of the file alternately until killed.
    #[test]
    fn kill_mid_save_child_process_helper() {
        let Some(path) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let path = PathBuf::from(path);
        let (a, b) = (sample_peers(3, 1), sample_peers(300, 10));
        loop {
            save_peers_file(&path, &b).unwrap();
            save_peers_file(&path, &a).unwrap();
        }
    }

    #[test]
    fn peers_file_survives_kill_mid_save() {
        let dir = temp_dir("peers-kill");
        let path = dir.join("peers.json");
        let (a, b) = (sample_peers(3, 1), sample_peers(300, 10));
        save_peers_file(&path, &a).unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let mut saw_new = 0;
        // The helper's test name, as the harness knows it (no crate name).
        let helper = format!(
            "{}::kill_mid_save_child_process_helper",
            module_path!().split_once("::").unwrap().1
        );
        for _round in 0..12 {
            let mut child = std::process::Command::new(&exe)
                .args(["--exact", &helper, "--test-threads=1"])
                .env(CHILD_ENV, &path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            // Wait until the child has completed at least one save (the file
            // is the big version), so it is surely inside its save loop.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < 50_000 {
                assert!(std::time::Instant::now() < deadline, "child never saved");
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_micros(rng.gen_range(0..30_000)));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let out = load_peers_file::<OctezPeerMetadata>(&path).unwrap();
            assert!(out.corrupt_moved_to.is_none(), "file corrupted by a kill");
            if out.peers == b {
                saw_new += 1;
            } else {
                assert_eq!(out.peers, a, "neither the old nor the new version");
            }
            // Reset to the small version for the next round.
            save_peers_file(&path, &a).unwrap();
        }
        eprintln!("kill-mid-save: {saw_new}/12 rounds ended on the new version");
        fs::remove_dir_all(dir).unwrap();
    }
}
