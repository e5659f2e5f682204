//! A pool of authenticated, encrypted Tezos (Octez) peer-to-peer
//! connections over tokio, on top of the sans-IO [`tezos_p2p_wire`] core.
//!
//! Layers, bottom up: [`transport`] (TCP or in-memory), [`scheduler`]
//! (bandwidth and statistics), [`socket`] (the authenticated connection)
//! and [`budget`] (bounded memory for partially received messages),
//! then the pool: [`acl`], [`points`], [`peers`], [`pool`] (the tables),
//! [`limits`], and [`net`], the facade a user holds.

#![warn(missing_docs)]

pub mod acl;
mod answerer;
pub mod budget;
mod conn_id;
mod connect;
pub mod discovery;
pub mod events;
pub mod limits;
mod maintenance;
pub mod net;
pub mod peers;
pub mod points;
pub mod pool;
mod queue;
pub mod scheduler;
pub mod sim;
pub mod socket;
pub mod transport;
mod welcome;

pub use net::{Config, Net, NetError, PeerConnection};
pub use tezos_p2p_wire as wire;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
