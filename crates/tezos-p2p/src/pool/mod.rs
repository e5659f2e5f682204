//! The pool (pool spec §2–§10; Octez's `P2p_pool`, `P2p_connect_handler`,
//! `P2p_maintenance` and friends): everything above one authenticated
//! connection.
//!
//! * State: [`tables`](Tables) of known points and peers, the [`acl`]
//!   (bans, greylists), [`points`] and [`peers`] with their state
//!   machines, the [`events`] of the pool's log, the [`limits`].
//! * Work: the admission of a connection (a pure decision over the
//!   state), `connect` (a connection's life, from dial or accept to
//!   teardown), the `answerer` (one task per running connection), the
//!   `welcome` worker (accepting), the `maintenance` and the local
//!   [`discovery`].
//!
//! The user's handle on all of it is [`Net`](crate::Net), in `net.rs`.

pub mod acl;
mod admission;
mod answerer;
mod conn_id;
pub(crate) mod connect;
pub(crate) mod core;
pub mod discovery;
pub mod events;
pub mod limits;
pub(crate) mod maintenance;
pub mod peers;
pub mod points;
mod tables;
pub(crate) mod welcome;

pub use tables::{
    ExpectedIdAction, MyIdPoints, PoolLimits, RegisterOutcome, RegisterPeerOutcome, Tables,
    DEFAULT_KNOWN_POINTS_LIST_SIZE, MY_ID_POINTS_CAPACITY,
};
