//! Limits and the maintenance bounds (pool spec §3.1, §10.1, §10.4).
//!
//! A plain struct whose `Default` is Octez's `P2p_limits.default`,
//! validated once when the pool is created.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::pool::acl::AclConfig;
use crate::socket::budget::DEFAULT_PARTIAL_MESSAGE_BUDGET;
use crate::socket::scheduler::DEFAULT_READ_BUFFER_SIZE;
use crate::socket::AcceptOptions;

/// Octez's `P2p_limits`, with its defaults. Speeds are in bytes per second.
///
/// The struct is `#[non_exhaustive]`: start from `Limits::default()` and
/// change fields. [`Net::create`](crate::Net::create) validates the whole.
///
/// ```
/// use std::time::Duration;
/// use tezos_p2p::limits::{Limits, LimitsError};
///
/// let mut limits = Limits::default(); // Octez's
/// assert_eq!(
///     (limits.min_connections, limits.expected_connections, limits.max_connections),
///     (10, 50, 100)
/// );
/// assert_eq!(limits.connection_timeout, Duration::from_secs(10));
/// assert!(limits.validate().is_ok());
///
/// // A small node: 2 to 6 connections, 4 aimed at.
/// limits.min_connections = 2;
/// limits.expected_connections = 4;
/// limits.max_connections = 6;
/// limits.validate()?;
/// let bounds = limits.bounds();
/// assert_eq!((bounds.min_threshold, bounds.max_threshold), (2, 6));
///
/// // What does not make sense is refused, naming the field.
/// limits.expected_connections = 8;
/// let LimitsError::Invalid { field, .. } = limits.validate().unwrap_err() else {
///     unreachable!()
/// };
/// assert_eq!(field, "connections");
/// # Ok::<(), LimitsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Limits {
    /// Whole outgoing attempt, handshake included.
    pub connection_timeout: Duration,
    /// Incoming handshake, Ack included.
    pub authentication_timeout: Duration,
    /// Largest time between two maintenance rounds; `None` disables the
    /// maintenance (and the admission threshold becomes `max_connections`).
    pub maintenance_idle_time: Option<Duration>,
    /// Below this many connections the maintenance is woken.
    pub min_connections: usize,
    /// The number of connections the maintenance aims at.
    pub expected_connections: usize,
    /// Above this many connections the maintenance is woken.
    pub max_connections: usize,
    /// `listen(2)` backlog: connections the kernel holds until they are
    /// accepted. 1 024 by default (Octez: 20): with 20, a flood of
    /// reconnecting sockets keeps the queue full and the kernel drops
    /// honest peers' connection requests (retried only after 1 s); with
    /// room for every flooding socket, honest ones only wait their turn
    /// and the per-source limit does the rest.
    pub backlog: u32,
    /// Incoming handshakes in progress at once.
    pub max_incoming_connections: usize,
    /// Incoming handshakes in progress at once from one source: one IPv4
    /// address, or one IPv6 /64 (IPv4-mapped addresses count as IPv4). A
    /// connection over it is closed at once, before any handshake work,
    /// and nothing is greylisted. Not in Octez, where one address holding
    /// every `max_incoming_connections` slot for the authentication
    /// timeout keeps everybody else out. The default, 4, leaves 16 of
    /// Octez's 20 slots to other addresses under a flood from one, and
    /// lets a few honest nodes behind one NAT (or one /64) handshake with
    /// us at the same time; must be positive.
    pub max_incoming_connections_per_ip: usize,
    /// Global download cap (B/s).
    pub max_download_speed: Option<u64>,
    /// Global upload cap (B/s).
    pub max_upload_speed: Option<u64>,
    /// Bytes per socket read.
    pub read_buffer_size: usize,
    /// Bound of each connection's read queue, in bytes.
    pub incoming_message_queue_size: usize,
    /// Bound of each connection's write queue, in bytes.
    pub outgoing_message_queue_size: usize,
    /// Bound of each connection's application queue, in messages.
    pub incoming_app_message_queue_size: usize,
    /// Bytes that partially received messages may hold, across all the
    /// pool's connections (not in Octez). A message larger than a chunk
    /// (65 517 bytes) takes room for its announced size once its header
    /// is read, before its body; when the budget is short, its connection
    /// stops reading (the peer is held back by TCP) until room frees up,
    /// first come, first served; a message larger than the whole budget
    /// waits until it is alone. Smaller messages never wait. Complete
    /// messages are bounded by the read queues. The default, 32 MiB, lets
    /// four of the largest shell messages (8 MiB) arrive at once; must be
    /// positive. See [`crate::socket::budget`].
    pub partial_message_budget: usize,
    /// Point-table GC: `(max, target)`.
    pub max_known_points: Option<(usize, usize)>,
    /// Peer-table GC: `(max, target)`.
    pub max_known_peer_ids: Option<(usize, usize)>,
    /// Capacity of the peer greylist.
    pub peer_greylist_size: usize,
    /// Memory of the IP greylist filter, in KiB (also the display list's
    /// capacity).
    pub ip_greylist_size_in_kilobytes: usize,
    /// How long a greylisted IP stays banned.
    pub ip_greylist_cleanup_delay: Duration,
    /// Minimal spacing between two swaps; `None` disables swaps.
    pub swap_linger: Option<Duration>,
    /// Size of the chunks we send, header included (19..=65535).
    pub binary_chunks_size: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        // Octez's values are written once, where they are used: here they
        // are taken from the socket layer and the ACL's own defaults.
        let socket = AcceptOptions::default();
        let acl = AclConfig::default();
        Limits {
            connection_timeout: Duration::from_secs(10),
            authentication_timeout: Duration::from_secs(5),
            maintenance_idle_time: Some(Duration::from_secs(120)),
            min_connections: 10,
            expected_connections: 50,
            max_connections: 100,
            backlog: 1024,
            max_incoming_connections: 20,
            max_incoming_connections_per_ip: 4,
            max_download_speed: None,
            max_upload_speed: None,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            incoming_message_queue_size: socket.incoming_message_queue_size,
            outgoing_message_queue_size: socket.outgoing_message_queue_size,
            incoming_app_message_queue_size: 10,
            partial_message_budget: DEFAULT_PARTIAL_MESSAGE_BUDGET,
            max_known_points: Some((400, 300)),
            max_known_peer_ids: Some((400, 300)),
            peer_greylist_size: acl.peer_greylist_size,
            ip_greylist_size_in_kilobytes: acl.ip_greylist_size_in_kilobytes,
            ip_greylist_cleanup_delay: acl.ip_greylist_cleanup_delay,
            swap_linger: Some(Duration::from_secs(30)),
            binary_chunks_size: socket.binary_chunks_size,
        }
    }
}

/// A limit that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// A field out of its range.
    #[error("invalid limit {field}: {why}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

fn invalid(field: &'static str, why: impl Into<String>) -> LimitsError {
    LimitsError::Invalid {
        field,
        why: why.into(),
    }
}

impl Limits {
    /// Octez's checks, plus those whose absence makes Octez crash later:
    /// `min ≤ expected ≤ max`, non-zero greylist sizes, GC targets below
    /// their maxima.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if self.authentication_timeout.is_zero() {
            return Err(invalid("authentication_timeout", "must be positive"));
        }
        if self.connection_timeout.is_zero() {
            return Err(invalid("connection_timeout", "must be positive"));
        }
        if !(self.min_connections <= self.expected_connections
            && self.expected_connections <= self.max_connections)
        {
            return Err(invalid(
                "connections",
                format!(
                    "need min ({}) <= expected ({}) <= max ({})",
                    self.min_connections, self.expected_connections, self.max_connections
                ),
            ));
        }
        if self.max_incoming_connections_per_ip == 0 {
            return Err(invalid(
                "max_incoming_connections_per_ip",
                "must be positive",
            ));
        }
        if self.swap_linger.is_some_and(|d| d.is_zero()) {
            return Err(invalid("swap_linger", "must be positive when set"));
        }
        if let Some(size) = self.binary_chunks_size {
            tezos_p2p_wire::chunk::ChunkSize::new(size)
                .map_err(|e| invalid("binary_chunks_size", e.to_string()))?;
        }
        self.acl_config()
            .validate()
            .map_err(|e| invalid(e.field(), e.to_string()))?;
        for (field, v) in [
            ("max_known_points", self.max_known_points),
            ("max_known_peer_ids", self.max_known_peer_ids),
        ] {
            if let Some((max, target)) = v {
                if target > max || max == 0 {
                    return Err(invalid(
                        field,
                        format!("need 0 < target ({target}) <= max ({max})"),
                    ));
                }
            }
        }
        if self.partial_message_budget == 0 {
            return Err(invalid("partial_message_budget", "must be positive"));
        }
        if self.incoming_app_message_queue_size == 0 {
            return Err(invalid(
                "incoming_app_message_queue_size",
                "must be positive",
            ));
        }
        Ok(())
    }

    /// The ACL's part of the limits.
    pub fn acl_config(&self) -> AclConfig {
        AclConfig {
            ip_greylist_size_in_kilobytes: self.ip_greylist_size_in_kilobytes,
            ip_greylist_cleanup_delay: self.ip_greylist_cleanup_delay,
            peer_greylist_size: self.peer_greylist_size,
        }
    }

    /// The maintenance bounds derived from min/expected/max.
    pub fn bounds(&self) -> Bounds {
        Bounds::new(
            self.min_connections,
            self.expected_connections,
            self.max_connections,
        )
    }

    /// Active connections at which a handshake is refused with
    /// `Too_many_connections`: `max_threshold` with a maintenance, else
    /// `max_connections`.
    pub fn connections_threshold(&self) -> usize {
        if self.maintenance_idle_time.is_some() {
            self.bounds().max_threshold
        } else {
            self.max_connections
        }
    }
}

/// Octez's maintenance bounds (`make_maintenance_bounds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Below this the maintenance connects.
    pub min_threshold: usize,
    /// What it connects up to.
    pub min_target: usize,
    /// What it disconnects down to.
    pub max_target: usize,
    /// Above this the maintenance disconnects.
    pub max_threshold: usize,
}

impl Bounds {
    /// Bounds from `min ≤ expected ≤ max`.
    pub fn new(min: usize, expected: usize, max: usize) -> Self {
        let step_min = expected.saturating_sub(min) / 3;
        let step_max = max.saturating_sub(expected) / 3;
        Bounds {
            min_threshold: min + step_min,
            min_target: min + 2 * step_min,
            max_target: max.saturating_sub(2 * step_max),
            max_threshold: max.saturating_sub(step_max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_of_the_spec_table() {
        let b = |min, exp, max| {
            let b = Bounds::new(min, exp, max);
            (b.min_threshold, b.min_target, b.max_target, b.max_threshold)
        };
        assert_eq!(b(10, 50, 100), (23, 36, 68, 84));
        assert_eq!(b(1, 1, 100), (1, 1, 34, 67));
        assert_eq!(b(3, 6, 9), (4, 5, 7, 8));
        assert_eq!(b(1, 2, 3), (1, 1, 3, 3));
        assert_eq!(b(1, 1, 1), (1, 1, 1, 1));
        assert_eq!(b(0, 0, 0), (0, 0, 0, 0));
    }

    #[test]
    fn defaults_are_valid_and_octez() {
        let l = Limits::default();
        l.validate().unwrap();
        assert_eq!(l.connections_threshold(), 84);
        // One source cannot take most of the incoming-handshake slots.
        assert!(l.max_incoming_connections_per_ip <= l.max_incoming_connections / 4);
        let no_maintenance = Limits {
            maintenance_idle_time: None,
            ..l
        };
        assert_eq!(no_maintenance.connections_threshold(), 100);
    }

    #[test]
    fn unordered_connection_limits_are_refused_not_crashing() {
        let l = Limits {
            min_connections: 20,
            expected_connections: 10,
            ..Limits::default()
        };
        assert!(l.validate().is_err());
    }

    #[test]
    fn bad_chunk_size_and_zero_timeouts_are_refused() {
        for l in [
            Limits {
                binary_chunks_size: Some(18),
                ..Limits::default()
            },
            Limits {
                authentication_timeout: Duration::ZERO,
                ..Limits::default()
            },
            Limits {
                swap_linger: Some(Duration::ZERO),
                ..Limits::default()
            },
            Limits {
                max_known_points: Some((10, 20)),
                ..Limits::default()
            },
            Limits {
                max_incoming_connections_per_ip: 0,
                ..Limits::default()
            },
            Limits {
                partial_message_budget: 0,
                ..Limits::default()
            },
        ] {
            assert!(l.validate().is_err(), "{l:?}");
        }
    }
}
