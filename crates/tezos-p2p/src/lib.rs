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
//!
//! # Example
//!
//! A pool is a [`Net<A, C, P>`](Net): `A` is your application message type
//! (any [`AppMessage`](wire::message::AppMessage), tags ≥ 0x10), `C` the
//! connection metadata sent in the handshake
//! ([`OctezMetadata`](wire::message::OctezMetadata) for Octez's two
//! booleans), `P` what you keep per peer. [`Config::new`] takes an
//! identity and a chain and holds Octez's defaults for the rest;
//! [`Limits::default()`](limits::Limits) is Octez's limits. Two pools over
//! loopback TCP connect and exchange a message (also `cargo run -p
//! tezos-p2p --example two_pools`):
//!
//! ```
//! use std::sync::Arc;
//!
//! use tezos_p2p::limits::Limits;
//! use tezos_p2p::wire::identity::{Identity, PowSearch, PowTarget};
//! use tezos_p2p::wire::message::{OctezMetadata, RawMessage};
//! use tezos_p2p::wire::point::Point;
//! use tezos_p2p::wire::version::{ChainName, SupportedVersions};
//! use tezos_p2p::{Config, Net};
//!
//! type Pool = Net<RawMessage, OctezMetadata, ()>;
//!
//! /// A pool with a fresh identity, listening on a free loopback port.
//! async fn pool() -> Pool {
//!     let target = PowTarget::new(0.0).unwrap();
//!     let identity = Identity::generate(&target, &PowSearch::default(), |_| {}).unwrap();
//!     let chain = SupportedVersions::octez(ChainName::from("SANDBOXED_TEZOS"));
//!     let mut config = Config::new(Arc::new(identity), chain).listen("127.0.0.1:0".parse().unwrap());
//!     config.proof_of_work_target = target;
//!     let pool = Net::create(config, Limits::default()).await.unwrap();
//!     pool.activate();
//!     pool
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let (a, b) = (pool().await, pool().await);
//! let to_b = Point::new([127, 0, 0, 1].into(), b.listening_port().unwrap());
//! let conn = a.connect(to_b).await.unwrap();
//! let hello = RawMessage {
//!     tag: 0x10,
//!     body: b"hello".to_vec(),
//! };
//! a.send(&conn, hello.clone()).await.unwrap();
//! let (from, _size, received) = b.recv_any().await;
//! assert_eq!((from.peer_id(), received), (a.peer_id(), hello));
//! println!("{} said hello to {}", a.peer_id(), b.peer_id());
//! a.shutdown().await;
//! b.shutdown().await;
//! # });
//! ```
//!
//! [`Net`] shows the same on an in-memory network, for tests;
//! [`socket`] one connection without a pool.

#![warn(missing_docs)]

#[cfg(feature = "metrics")]
pub mod metrics;
pub mod net;
pub mod pool;
pub mod sim;
pub mod socket;

pub use net::{BroadcastOutcome, Config, ConnectOptions, Net, NetError, PeerConnection};
pub use pool::{acl, discovery, events, limits, peers, points};
pub use socket::{budget, scheduler, transport};
pub use tezos_p2p_wire as wire;

/// The crate README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
