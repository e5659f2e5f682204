//! Sans-IO core of the Tezos (Octez) peer-to-peer protocol.
//!
//! No async runtime, no sockets and no clocks: every type here takes bytes
//! and returns bytes and events, so it can be fuzzed, property-tested and
//! driven by any runtime. The byte-level rules are those of
//! `shared/spec/wire-protocol.md`; section numbers in the docs refer to it.
//!
//! # What the core covers
//!
//! A connection's whole protocol, both phases:
//!
//! * **The handshake** ([`handshake::Handshake`], §3–7, §9): connection
//!   messages with their proof of work, the session key and nonces,
//!   encrypted metadata, then Ack or Nack. It ends with a
//!   [`handshake::Session`]: what we know of the peer and one
//!   [`crypto::SessionCipher`] (the key and the nonce of each direction).
//! * **The data phase** ([`chunk`], §5): [`chunk::ChunkWriter`] packs
//!   encoded messages ([`message::encode_message`]) into sealed chunks of at
//!   most `binary_chunks_size` bytes; [`chunk::ChunkReader`] opens the
//!   chunks as bytes arrive and cuts [`message::P2pMessage`]s out of their
//!   plaintext, or says which error the bad frame or message deserves.
//!
//! Around them: identities and proof of work ([`identity`]), the binary
//! encodings ([`encoding`], [`message`], [`point`], [`version`]), the
//! motives of a Nack ([`rejection`]).
//!
//! # How a runtime drives it
//!
//! As with quinn-proto, the runtime owns the socket, the timers and the
//! tasks, and moves bytes:
//!
//! 1. **Handshake.** Write [`Handshake::take_output`](handshake::Handshake::take_output)
//!    to the socket; give what is read to
//!    [`Handshake::feed`](handshake::Handshake::feed), which takes only the
//!    handshake's bytes (what follows the peer's Ack is the data phase's).
//!    Once [`status`](handshake::Handshake::status) is `AwaitingDecision`,
//!    look at the peer and [`accept`](handshake::Handshake::accept) or
//!    [`nack`](handshake::Handshake::nack); once `Established`, take the
//!    session with [`into_session`](handshake::Handshake::into_session) and
//!    [`split`](crypto::SessionCipher::split) its cipher into a writer and a
//!    reader. Bounding the handshake in time is the runtime's job.
//! 2. **Sending.** [`push`](chunk::ChunkWriter::push) encoded messages,
//!    [`flush`](chunk::ChunkWriter::flush), write
//!    [`output`](chunk::ChunkWriter::output) and report it with
//!    [`advance`](chunk::ChunkWriter::advance).
//! 3. **Receiving.** Give bytes read to [`feed`](chunk::ChunkReader::feed)
//!    (or read straight into [`recv_buf`](chunk::ChunkReader::recv_buf)),
//!    then take messages with [`next_size`](chunk::ChunkReader::next_size)
//!    and [`next_message`](chunk::ChunkReader::next_message) until they
//!    return `Ok(None)`; read again. An error ends the connection.
//!
//! Two endpoints in memory, a handshake then one message from A to B:
//!
//! ```
//! use tezos_p2p_wire::chunk::ChunkSize;
//! use tezos_p2p_wire::handshake::{Handshake, HandshakeConfig, Status};
//! use tezos_p2p_wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
//! use tezos_p2p_wire::message::{encode_message, OctezMetadata, P2pMessage, RawMessage};
//! use tezos_p2p_wire::version::{ChainName, NetworkVersion};
//!
//! let config = |seed: u8, incoming: bool| HandshakeConfig {
//!     identity: Identity::from_secret_key(SecretKey([seed; 32]), PowStamp([seed; 24])),
//!     pow_target: PowTarget::new(0.0).unwrap(),
//!     incoming,
//!     listening_port: Some(9732),
//!     version: NetworkVersion {
//!         chain_name: ChainName::from("TEZOS_TEST"),
//!         distributed_db_version: 2,
//!         p2p_version: 1,
//!     },
//!     metadata: OctezMetadata::default(),
//!     message_nonce: [seed; 24], // random in real life
//! };
//! let mut a = Handshake::new(config(1, false))?;
//! let mut b = Handshake::new(config(2, true))?;
//!
//! // The runtime's job: move what one side outputs to the other.
//! let pump = |a: &mut Handshake<OctezMetadata>, b: &mut Handshake<OctezMetadata>| {
//!     for _ in 0..4 {
//!         let (to_b, to_a) = (a.take_output(), b.take_output());
//!         a.feed(&to_a)?;
//!         b.feed(&to_b)?;
//!     }
//!     Ok::<_, tezos_p2p_wire::handshake::HandshakeError>(())
//! };
//! pump(&mut a, &mut b)?;
//! assert_eq!(a.status(), Status::AwaitingDecision);
//! assert_eq!(a.remote().unwrap().peer_id, b.config().identity.peer_id);
//! a.accept()?;
//! b.accept()?;
//! pump(&mut a, &mut b)?;
//! assert_eq!(b.status(), Status::Established);
//!
//! // The data phase: A's writer, B's reader.
//! let (mut a_tx, _a_rx) = a.into_session()?.cipher.split::<RawMessage>(ChunkSize::MAX, 1 << 20);
//! let (_b_tx, mut b_rx) = b.into_session()?.cipher.split::<RawMessage>(ChunkSize::MAX, 1 << 20);
//!
//! let msg = P2pMessage::Message(RawMessage { tag: 0x10, body: b"hello from A".to_vec() });
//! let mut encoded = Vec::new();
//! encode_message(&msg, &mut encoded)?;
//! assert_eq!(a_tx.push(&encoded, usize::MAX), encoded.len());
//! a_tx.flush();
//! let wire = a_tx.output().to_vec(); // what A writes to its socket
//! a_tx.advance(wire.len());
//!
//! // B's socket gives the bytes in two reads.
//! b_rx.feed(&wire[..5]);
//! assert_eq!(b_rx.next_message()?, None);
//! b_rx.feed(&wire[5..]);
//! assert_eq!(b_rx.next_message()?, Some((encoded.len(), msg)));
//! assert_eq!(b_rx.nonce(), a_tx.nonce());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod chunk;
pub mod crypto;
pub mod discovery;
pub mod encoding;
pub mod handshake;
pub mod identity;
pub mod message;
pub mod point;
pub mod rejection;
pub mod version;
