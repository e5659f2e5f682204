//! A pool of authenticated, encrypted Tezos (Octez) peer-to-peer
//! connections over tokio, on top of the sans-IO [`tezos_p2p_wire`] core.

#![warn(missing_docs)]

mod queue;
pub mod scheduler;
pub mod socket;
pub mod transport;

pub use tezos_p2p_wire as wire;
