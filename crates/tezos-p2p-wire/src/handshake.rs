//! The authentication state machine (wire spec §3–7, §9), for both roles.
//!
//! Sans-IO: the caller moves bytes. [`Handshake::output`] holds what must be
//! written to the peer, [`Handshake::feed`] takes what was read (in any
//! fragmentation) and consumes only the bytes of the handshake, so that
//! application chunks that follow the peer's Ack in the same read stay with
//! the caller. The steps are Octez's:
//!
//! 1. both sides send their connection message, and check the peer's PoW;
//! 2. both send their metadata in one encrypted chunk; a peer with our own
//!    peer id is [`HandshakeError::Myself`];
//! 3. the caller looks at [`Handshake::remote`] and decides: [`Handshake::accept`]
//!    (send Ack, then read the peer's Ack) or [`Handshake::nack`].
//!
//! After both Acks, [`Handshake::into_session`] hands over the session:
//! one [`SessionCipher`] (the key and both nonces) for the data phase
//! ([`SessionCipher::split`]), and what we know of the peer.

use thiserror::Error;

use crate::crypto::{
    chunk_body_len, derive_nonces, CryptoError, SessionCipher, SessionKey, HEADER_LEN,
};
use crate::encoding::{Decode, DecodeError, Encode, EncodeError};
use crate::identity::{Identity, PeerId, PowTarget};
use crate::message::{Ack, ConnMeta, ConnectionMessage};
use crate::point::Point;
use crate::rejection::Motive;
use crate::version::NetworkVersion;

/// What a handshake needs to know about the local side.
#[derive(Clone, Debug)]
pub struct HandshakeConfig<M> {
    /// Our identity.
    pub identity: Identity,
    /// The target the peer's stamp must reach.
    pub pow_target: PowTarget,
    /// True when the peer connected to us (we are the responder).
    pub incoming: bool,
    /// The listening port we advertise; `None` is sent as 0.
    pub listening_port: Option<u16>,
    /// The version we announce (our greatest supported versions).
    pub version: NetworkVersion,
    /// Our connection metadata.
    pub metadata: M,
    /// 24 fresh random bytes that make this connection message unique.
    pub message_nonce: [u8; 24],
}

/// Everything that can end a handshake (wire spec §10).
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's stamp does not reach our target (`Not_enough_proof_of_work`).
    #[error("not enough proof of work from {0}")]
    NotEnoughProofOfWork(PeerId),
    /// The peer has our own peer id (`Myself`).
    #[error("connected to myself")]
    Myself,
    /// Bytes that do not decode: a connection message, metadata or Ack
    /// (`Decoding_error`).
    #[error("decoding error: {0}")]
    Decoding(#[from] DecodeError),
    /// A value of ours that cannot be encoded (`Encoding_error`).
    #[error("encoding error: {0}")]
    Encoding(#[from] EncodeError),
    /// The metadata chunk does not decrypt (`Decipher_error`).
    #[error("decipher error")]
    Decipher,
    /// The Ack chunk does not decrypt (`Invalid_auth`, as `accept` maps a
    /// lone decipher error).
    #[error("invalid authentication")]
    InvalidAuth,
    /// A chunk whose length field is below 16
    /// (`Invalid_incoming_ciphertext_size`).
    #[error("invalid incoming ciphertext size {0}")]
    InvalidIncomingCiphertextSize(usize),
    /// The peer's public key is of low order, so no session key exists.
    #[error("error computing box_beforenm: low-order public key")]
    LowOrderPublicKey,
    /// The peer refused us (`Rejected_by_nack`): `Nack_v_0` gives no motive
    /// and no points.
    #[error("rejected by nack ({motive})")]
    RejectedByNack {
        /// Why.
        motive: Motive,
        /// Points the peer suggested instead; `None` for `Nack_v_0`.
        alternative_points: Option<Vec<Point>>,
    },
    /// A call that the current state does not allow (a caller bug).
    #[error("handshake misuse: {0}")]
    InvalidState(&'static str),
}

impl From<CryptoError> for HandshakeError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Decipher => HandshakeError::Decipher,
            CryptoError::LowOrderKey => HandshakeError::LowOrderPublicKey,
            CryptoError::InvalidIncomingCiphertextSize(n) => {
                HandshakeError::InvalidIncomingCiphertextSize(n)
            }
            CryptoError::InvalidMessageSize(n) => {
                HandshakeError::Encoding(EncodeError::SizeLimitExceeded {
                    size: n,
                    limit: crate::crypto::MAX_CHUNK_PLAINTEXT,
                })
            }
        }
    }
}

/// What the handshake is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Bytes from the peer: its connection message.
    ReadingConnectionMessage,
    /// Bytes from the peer: its metadata chunk.
    ReadingMetadata,
    /// A decision of the caller: [`Handshake::accept`] or [`Handshake::nack`].
    AwaitingDecision,
    /// Bytes from the peer: its Ack chunk.
    ReadingAck,
    /// Both sides sent Ack: call [`Handshake::into_session`].
    Established,
    /// We sent a Nack; flush the output, then close.
    Nacked,
    /// The handshake failed; the error was returned once.
    Failed,
}

/// What we learned about the peer once its metadata is read.
#[derive(Debug, Clone)]
pub struct Remote<M> {
    /// The peer's connection message, decoded.
    pub connection_message: ConnectionMessage,
    /// The peer id derived from its public key.
    pub peer_id: PeerId,
    /// Its metadata, once read.
    pub metadata: Option<M>,
}

/// The outcome of a successful handshake: the session's cipher (its key
/// and the nonce of the next chunk each way), and what we know of the peer.
#[derive(Debug, Clone)]
pub struct Session<M> {
    /// The key and both nonces, for the data phase.
    pub cipher: SessionCipher,
    /// The peer's connection message.
    pub remote_connection_message: ConnectionMessage,
    /// The peer's id.
    pub remote_peer_id: PeerId,
    /// The peer's metadata.
    pub remote_metadata: M,
}

/// The authentication state machine of one side of a connection.
#[derive(Debug)]
pub struct Handshake<M> {
    cfg: HandshakeConfig<M>,
    status: Status,
    /// Bytes of the frame being read (header included); never more than one
    /// frame of at most 2 + 65 535 bytes.
    frame: Vec<u8>,
    output: Vec<u8>,
    sent_msg: Vec<u8>,
    remote: Option<Remote<M>>,
    /// Set once the peer's connection message is read.
    cipher: Option<SessionCipher>,
}

/// Largest frame of the handshake: a `u16` length and its body.
const MAX_FRAME: usize = HEADER_LEN + u16::MAX as usize;

impl<M: ConnMeta> Handshake<M> {
    /// Starts a handshake: our connection message is ready in
    /// [`output`](Self::output) right away, as Octez writes before reading.
    pub fn new(cfg: HandshakeConfig<M>) -> Result<Self, HandshakeError> {
        let msg = ConnectionMessage {
            port: cfg.listening_port,
            public_key: cfg.identity.public_key,
            proof_of_work_stamp: cfg.identity.proof_of_work_stamp,
            message_nonce: cfg.message_nonce,
            version: cfg.version.clone(),
        };
        let sent_msg = msg.to_bytes()?;
        Ok(Handshake {
            cfg,
            status: Status::ReadingConnectionMessage,
            frame: Vec::new(),
            output: sent_msg.clone(),
            sent_msg,
            remote: None,
            cipher: None,
        })
    }

    /// What the handshake waits for.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Bytes to write to the peer, in order.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Takes every byte to write.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The raw framed connection message we sent.
    pub fn sent_connection_message(&self) -> &[u8] {
        &self.sent_msg
    }

    /// What we know of the peer: set once its connection message is read.
    pub fn remote(&self) -> Option<&Remote<M>> {
        self.remote.as_ref()
    }

    /// Our configuration.
    pub fn config(&self) -> &HandshakeConfig<M> {
        &self.cfg
    }

    /// Feeds bytes read from the peer. Returns how many were consumed: only
    /// the handshake's own bytes; the rest (bytes after the peer's Ack, or
    /// anything while a decision is awaited) is left to the caller.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<usize, HandshakeError> {
        let mut consumed = 0;
        while self.reading() && !data.is_empty() {
            let n = self.fill_frame(data);
            data = &data[n..];
            consumed += n;
            if let Some(body_len) = self.frame_complete()? {
                let frame = std::mem::take(&mut self.frame);
                let res = self.on_frame(&frame[HEADER_LEN..HEADER_LEN + body_len]);
                if let Err(e) = res {
                    self.status = Status::Failed;
                    return Err(e);
                }
            }
        }
        Ok(consumed)
    }

    fn reading(&self) -> bool {
        matches!(
            self.status,
            Status::ReadingConnectionMessage | Status::ReadingMetadata | Status::ReadingAck
        )
    }

    /// Copies into the frame buffer what the current frame still needs.
    fn fill_frame(&mut self, data: &[u8]) -> usize {
        let need = if self.frame.len() < HEADER_LEN {
            HEADER_LEN - self.frame.len()
        } else {
            let body = usize::from(u16::from_be_bytes([self.frame[0], self.frame[1]]));
            HEADER_LEN + body - self.frame.len()
        };
        let n = need.min(data.len());
        debug_assert!(self.frame.len() + n <= MAX_FRAME);
        self.frame.extend_from_slice(&data[..n]);
        n
    }

    /// The body length once the frame is whole.
    fn frame_complete(&mut self) -> Result<Option<usize>, HandshakeError> {
        if self.frame.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = [self.frame[0], self.frame[1]];
        let body = usize::from(u16::from_be_bytes(header));
        if self.status != Status::ReadingConnectionMessage {
            // Chunks carry at least their tag.
            if let Err(e) = chunk_body_len(header) {
                self.status = Status::Failed;
                return Err(e.into());
            }
        }
        Ok((self.frame.len() == HEADER_LEN + body).then_some(body))
    }

    fn on_frame(&mut self, body: &[u8]) -> Result<(), HandshakeError> {
        match self.status {
            Status::ReadingConnectionMessage => self.on_connection_message(body),
            Status::ReadingMetadata => self.on_metadata(body),
            Status::ReadingAck => self.on_ack(body),
            _ => Err(HandshakeError::InvalidState("no frame expected")),
        }
    }

    fn on_connection_message(&mut self, body: &[u8]) -> Result<(), HandshakeError> {
        let msg = ConnectionMessage::decode_body(body)?;
        let peer_id = msg.public_key.peer_id();
        if !self
            .cfg
            .pow_target
            .check(&msg.public_key, &msg.proof_of_work_stamp)
        {
            return Err(HandshakeError::NotEnoughProofOfWork(peer_id));
        }
        let key = SessionKey::precompute(&msg.public_key, &self.cfg.identity.secret_key)?;
        let mut recv_msg = Vec::with_capacity(HEADER_LEN + body.len());
        recv_msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        recv_msg.extend_from_slice(body);
        let nonces = derive_nonces(&self.sent_msg, &recv_msg, self.cfg.incoming);
        let mut cipher = SessionCipher { key, nonces };
        let metadata = self.cfg.metadata.to_bytes()?;
        cipher.seal_chunk(&metadata, &mut self.output)?;
        self.cipher = Some(cipher);
        self.remote = Some(Remote {
            connection_message: msg,
            peer_id,
            metadata: None,
        });
        self.status = Status::ReadingMetadata;
        Ok(())
    }

    fn open(&mut self, body: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        let cipher = self
            .cipher
            .as_mut()
            .ok_or(HandshakeError::InvalidState("no session key"))?;
        let mut buf = body.to_vec();
        let pt = cipher.open_chunk(&mut buf)?;
        Ok(pt.to_vec())
    }

    fn on_metadata(&mut self, body: &[u8]) -> Result<(), HandshakeError> {
        let pt = self.open(body)?;
        let meta = M::from_bytes(&pt)?;
        let remote = self
            .remote
            .as_mut()
            .ok_or(HandshakeError::InvalidState("no remote"))?;
        if remote.peer_id == self.cfg.identity.peer_id {
            return Err(HandshakeError::Myself);
        }
        remote.metadata = Some(meta);
        self.status = Status::AwaitingDecision;
        Ok(())
    }

    fn on_ack(&mut self, body: &[u8]) -> Result<(), HandshakeError> {
        let pt = self.open(body).map_err(|e| match e {
            HandshakeError::Decipher => HandshakeError::InvalidAuth,
            e => e,
        })?;
        match Ack::from_bytes(&pt)? {
            Ack::Ack => {
                self.status = Status::Established;
                Ok(())
            }
            Ack::NackV0 => Err(HandshakeError::RejectedByNack {
                motive: Motive::NoMotive,
                alternative_points: None,
            }),
            Ack::Nack {
                motive,
                alternative_points,
            } => Err(HandshakeError::RejectedByNack {
                motive,
                alternative_points: Some(alternative_points),
            }),
        }
    }

    fn send_ack(&mut self, ack: &Ack) -> Result<(), HandshakeError> {
        if self.status != Status::AwaitingDecision {
            return Err(HandshakeError::InvalidState("no decision awaited"));
        }
        let pt = ack.to_bytes()?;
        let cipher = self
            .cipher
            .as_mut()
            .ok_or(HandshakeError::InvalidState("no session key"))?;
        cipher.seal_chunk(&pt, &mut self.output)?;
        Ok(())
    }

    /// Accepts the peer: queues our Ack and waits for the peer's.
    pub fn accept(&mut self) -> Result<(), HandshakeError> {
        self.send_ack(&Ack::Ack)?;
        self.status = Status::ReadingAck;
        Ok(())
    }

    /// Refuses the peer: queues a `Nack` with `motive` and
    /// `alternative_points` to a peer that announced p2p version ≥ 1, and
    /// `Nack_v_0` otherwise. More than 100 points is an error and nothing is
    /// queued. Flush the output, then close.
    pub fn nack(
        &mut self,
        motive: Motive,
        alternative_points: Vec<Point>,
    ) -> Result<(), HandshakeError> {
        if alternative_points.len() > crate::point::MAX_POINTS {
            return Err(EncodeError::ListTooLong {
                len: alternative_points.len(),
                max: crate::point::MAX_POINTS,
            }
            .into());
        }
        let p2p_version = self
            .remote
            .as_ref()
            .map_or(0, |r| r.connection_message.version.p2p_version);
        let ack = if p2p_version >= 1 {
            Ack::Nack {
                motive,
                alternative_points,
            }
        } else {
            Ack::NackV0
        };
        self.send_ack(&ack)?;
        self.status = Status::Nacked;
        Ok(())
    }

    /// The session of an established handshake.
    pub fn into_session(self) -> Result<Session<M>, HandshakeError> {
        match (self.status, self.cipher, self.remote) {
            (Status::Established, Some(cipher), Some(remote)) => {
                let remote_metadata = remote
                    .metadata
                    .ok_or(HandshakeError::InvalidState("no metadata"))?;
                Ok(Session {
                    cipher,
                    remote_connection_message: remote.connection_message,
                    remote_peer_id: remote.peer_id,
                    remote_metadata,
                })
            }
            _ => Err(HandshakeError::InvalidState("not established")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{PowStamp, SecretKey};
    use crate::message::OctezMetadata;
    use crate::version::{ChainName, SupportedVersions};
    use proptest::prelude::*;

    fn identity(seed: u8) -> Identity {
        Identity::from_secret_key(SecretKey([seed; 32]), PowStamp([seed; 24]))
    }

    fn config(id: Identity, incoming: bool, p2p_version: u16) -> HandshakeConfig<OctezMetadata> {
        HandshakeConfig {
            identity: id,
            pow_target: PowTarget::new(0.0).unwrap(),
            incoming,
            listening_port: Some(9732),
            version: NetworkVersion {
                chain_name: ChainName::from("TEZOS_TEST"),
                distributed_db_version: 2,
                p2p_version,
            },
            metadata: OctezMetadata {
                disable_mempool: incoming,
                private_node: false,
            },
            message_nonce: [u8::from(incoming); 24],
        }
    }

    fn pair() -> (Handshake<OctezMetadata>, Handshake<OctezMetadata>) {
        (
            Handshake::new(config(identity(1), false, 1)).unwrap(),
            Handshake::new(config(identity(2), true, 1)).unwrap(),
        )
    }

    /// Moves bytes both ways until neither side has output; returns each
    /// side's first error.
    fn pump(
        a: &mut Handshake<OctezMetadata>,
        b: &mut Handshake<OctezMetadata>,
    ) -> (Result<(), HandshakeError>, Result<(), HandshakeError>) {
        let (mut ra, mut rb) = (Ok(()), Ok(()));
        let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
        loop {
            to_b.extend(a.take_output());
            to_a.extend(b.take_output());
            let mut progress = false;
            for (hs, input, res) in [(&mut *a, &mut to_a, &mut ra), (&mut *b, &mut to_b, &mut rb)] {
                if res.is_err() || input.is_empty() {
                    continue;
                }
                match hs.feed(input) {
                    Ok(n) => {
                        progress |= n > 0;
                        input.drain(..n);
                    }
                    Err(e) => {
                        *res = Err(e);
                        progress = true;
                    }
                }
            }
            if !progress && a.output().is_empty() && b.output().is_empty() {
                return (ra, rb);
            }
        }
    }

    #[test]
    fn ack_ack_establishes_matching_sessions() {
        let (mut a, mut b) = pair();
        assert_eq!(pump(&mut a, &mut b), (Ok(()), Ok(())));
        assert_eq!(a.status(), Status::AwaitingDecision);
        assert_eq!(b.status(), Status::AwaitingDecision);
        assert_eq!(a.remote().unwrap().peer_id, identity(2).peer_id);
        assert!(
            a.remote()
                .unwrap()
                .metadata
                .as_ref()
                .unwrap()
                .disable_mempool
        );
        assert_eq!(b.remote().unwrap().connection_message.port, Some(9732));
        a.accept().unwrap();
        b.accept().unwrap();
        assert_eq!(pump(&mut a, &mut b), (Ok(()), Ok(())));
        let (mut sa, mut sb) = (a.into_session().unwrap(), b.into_session().unwrap());
        assert_eq!(sa.cipher.key, sb.cipher.key);
        assert_eq!(sa.cipher.nonces.local, sb.cipher.nonces.remote);
        assert_eq!(sb.cipher.nonces.local, sa.cipher.nonces.remote);
        let mut chunk = Vec::new();
        sa.cipher.seal_chunk(b"hello", &mut chunk).unwrap();
        assert_eq!(sb.cipher.open_chunk(&mut chunk[2..]).unwrap(), b"hello");
        assert_eq!(sb.cipher.nonces.remote, sa.cipher.nonces.local);
    }

    #[test]
    fn bytes_after_the_ack_are_left_to_the_caller() {
        let (mut a, mut b) = pair();
        let _ = pump(&mut a, &mut b);
        a.accept().unwrap();
        b.accept().unwrap();
        let mut from_b = b.take_output();
        from_b.extend_from_slice(b"application bytes");
        let n = a.feed(&from_b).unwrap();
        assert_eq!(&from_b[n..], b"application bytes");
        assert_eq!(a.status(), Status::Established);
    }

    #[test]
    fn byte_by_byte_feeding_works() {
        let (mut a, mut b) = pair();
        let out_a = a.take_output();
        let out_b = b.take_output();
        for byte in &out_b {
            assert_eq!(a.feed(std::slice::from_ref(byte)).unwrap(), 1);
        }
        for byte in &out_a {
            assert_eq!(b.feed(std::slice::from_ref(byte)).unwrap(), 1);
        }
        assert_eq!(pump(&mut a, &mut b), (Ok(()), Ok(())));
        assert_eq!(a.status(), Status::AwaitingDecision);
    }

    #[test]
    fn ack_then_nack_with_points_rejects_the_acceptor() {
        let (mut a, mut b) = pair();
        let _ = pump(&mut a, &mut b);
        let points = vec!["198.51.100.7:9732".parse().unwrap()];
        a.accept().unwrap();
        b.nack(Motive::TooManyConnections, points.clone()).unwrap();
        assert_eq!(b.status(), Status::Nacked);
        let (ra, _) = pump(&mut a, &mut b);
        assert_eq!(
            ra,
            Err(HandshakeError::RejectedByNack {
                motive: Motive::TooManyConnections,
                alternative_points: Some(points)
            })
        );
        assert_eq!(a.status(), Status::Failed);
    }

    #[test]
    fn peer_announcing_p2p_version_0_gets_nack_v0() {
        let mut a = Handshake::new(config(identity(1), false, 0)).unwrap();
        let mut b = Handshake::new(config(identity(2), true, 1)).unwrap();
        let _ = pump(&mut a, &mut b);
        a.accept().unwrap();
        b.nack(
            Motive::TooManyConnections,
            vec!["1.2.3.4:1".parse().unwrap()],
        )
        .unwrap();
        let (ra, _) = pump(&mut a, &mut b);
        assert_eq!(
            ra,
            Err(HandshakeError::RejectedByNack {
                motive: Motive::NoMotive,
                alternative_points: None
            })
        );
    }

    #[test]
    fn nack_with_more_than_100_points_is_rejected_before_sending() {
        let (mut a, mut b) = pair();
        let _ = pump(&mut a, &mut b);
        let points = vec!["1.2.3.4:1".parse().unwrap(); 101];
        assert!(matches!(
            b.nack(Motive::NoMotive, points),
            Err(HandshakeError::Encoding(EncodeError::ListTooLong {
                len: 101,
                max: 100
            }))
        ));
        assert!(b.output().is_empty());
        assert_eq!(b.status(), Status::AwaitingDecision);
    }

    #[test]
    fn pow_too_low_is_refused_before_any_crypto() {
        let mut a = Handshake::new(config(identity(1), false, 1)).unwrap();
        let mut cfg = config(identity(2), true, 1);
        cfg.pow_target = PowTarget::new(256.0).unwrap();
        let mut b = Handshake::new(cfg).unwrap();
        let (_, rb) = pump(&mut a, &mut b);
        assert_eq!(
            rb,
            Err(HandshakeError::NotEnoughProofOfWork(identity(1).peer_id))
        );
        // b never sent its metadata.
        assert_eq!(b.status(), Status::Failed);
    }

    #[test]
    fn wrong_chain_name_is_nacked_with_unknown_chain_name() {
        let mut a = Handshake::new(config(identity(1), false, 1)).unwrap();
        let mut b = Handshake::new(config(identity(2), true, 1)).unwrap();
        let _ = pump(&mut a, &mut b);
        let ours = SupportedVersions::octez(ChainName::from("TEZOS_MAINNET"));
        let motive = ours
            .select(&b.remote().unwrap().connection_message.version)
            .unwrap_err();
        assert_eq!(motive, Motive::UnknownChainName);
        a.accept().unwrap();
        b.nack(motive, vec![]).unwrap();
        let (ra, _) = pump(&mut a, &mut b);
        assert_eq!(
            ra,
            Err(HandshakeError::RejectedByNack {
                motive: Motive::UnknownChainName,
                alternative_points: Some(vec![])
            })
        );
    }

    #[test]
    fn same_identity_on_both_sides_is_myself() {
        let mut a = Handshake::new(config(identity(1), false, 1)).unwrap();
        let mut b = Handshake::new(config(identity(1), true, 1)).unwrap();
        assert_eq!(
            pump(&mut a, &mut b),
            (Err(HandshakeError::Myself), Err(HandshakeError::Myself))
        );
    }

    #[test]
    fn a_flipped_bit_anywhere_in_the_metadata_chunk_fails_the_handshake() {
        let (mut a, b) = pair();
        let mut b = b;
        let conn_a = a.take_output();
        b.feed(&conn_a).unwrap();
        let out_b = b.take_output();
        let split = out_b.len() - 20; // connection message, then the 20-byte metadata chunk
        for bit in 0..20 * 8 {
            let (mut a2, _) = pair();
            let mut bytes = out_b.clone();
            bytes[split + bit / 8] ^= 1 << (bit % 8);
            // Pad so that a length field made larger still completes a frame.
            bytes.extend(std::iter::repeat_n(0, 70_000));
            let res = a2.feed(&bytes);
            if bit / 8 < 2 {
                assert!(
                    matches!(
                        res,
                        Err(HandshakeError::Decipher)
                            | Err(HandshakeError::InvalidIncomingCiphertextSize(_))
                    ),
                    "bit {bit}: {res:?}"
                );
            } else {
                assert_eq!(res, Err(HandshakeError::Decipher), "bit {bit}");
            }
            assert_eq!(a2.status(), Status::Failed);
        }
    }

    #[test]
    fn a_flipped_bit_in_the_ack_chunk_is_invalid_auth() {
        let (mut a, mut b) = pair();
        let _ = pump(&mut a, &mut b);
        a.accept().unwrap();
        b.accept().unwrap();
        let mut ack = b.take_output();
        ack[5] ^= 0x10;
        assert_eq!(a.feed(&ack), Err(HandshakeError::InvalidAuth));
    }

    #[test]
    fn accept_before_metadata_is_a_misuse() {
        let (mut a, _) = pair();
        assert!(matches!(a.accept(), Err(HandshakeError::InvalidState(_))));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let (mut a, _) = pair();
            let _ = a.feed(&data);
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_connection_message_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..400),
            cut in 0usize..400,
        ) {
            let (mut a, mut b) = pair();
            let mut bytes = b.take_output();
            bytes.extend_from_slice(&data);
            let cut = cut.min(bytes.len());
            if a.feed(&bytes[..cut]).is_ok() {
                let _ = a.feed(&bytes[cut..]);
            }
        }
    }
}
