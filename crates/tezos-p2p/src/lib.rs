//! A pool of authenticated, encrypted Tezos (Octez) peer-to-peer
//! connections over tokio, on top of the sans-IO [`tezos_p2p_wire`] core.
//!
//! Layers, bottom up, each using only the ones below it:
//!
//! * [`socket`]: one authenticated connection (Octez's `P2p_socket`), with
//!   the [`transport`] (TCP or in-memory), the [`scheduler`] (bandwidth and
//!   statistics) and the [`budget`] (bounded memory for partially received
//!   messages);
//! * [`pool`]: the tables of points and peers, the [`acl`], [`points`],
//!   [`peers`], [`events`], [`limits`], admission, the connect handler, the
//!   answerer, the accept loop, the maintenance and the [`discovery`];
//! * [`net`]: [`Net`], the facade a user holds.
//!
//! The modules of the socket and pool layers are also re-exported here,
//! under their former paths.

#![warn(missing_docs)]

#[cfg(feature = "metrics")]
pub mod metrics;
pub mod net;
pub mod pool;
pub mod sim;
pub mod socket;

pub use net::{Config, ConnectOptions, Net, NetError, PeerConnection};
pub use pool::{acl, discovery, events, limits, peers, points};
pub use socket::{budget, scheduler, transport};
pub use tezos_p2p_wire as wire;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
