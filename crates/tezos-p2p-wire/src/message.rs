//! Everything that travels on a connection, in order: the clear-text
//! connection message (wire spec §3), the metadata (§6), the Ack / Nack
//! (§7.3) and the post-handshake P2P messages (§8), with a streaming decoder
//! for the latter and the splitter that cuts an encoded message into chunk
//! pieces (§5.5).
//!
//! The connection message is framed by a `u16` length; the metadata and the
//! Ack are each the whole plaintext of one encrypted chunk (decode them with
//! [`Decode::from_bytes`], which requires every byte to be used); P2P
//! messages are `u32 size || u16 tag || body` inside the decrypted stream,
//! with no relation to chunk boundaries on receipt.

use std::fmt;
use std::marker::PhantomData;

use crate::encoding::{Decode, DecodeError, Encode, EncodeError, Reader, WriteExt};
use crate::identity::{PeerId, PowStamp, PublicKey, KEY_LEN, PEER_ID_LEN, STAMP_LEN};
use crate::point::{
    decode_point_list, decode_points_to_end, encode_point_list, encode_points_to_end, Point,
};
use crate::rejection::Motive;
use crate::version::NetworkVersion;

// ---------------------------------------------------------------------------
// §3 Connection message

/// Length of the random nonce seed of a connection message.
pub const MESSAGE_NONCE_LEN: usize = 24;
/// Length of the `u16` frame of a connection message.
pub const CONNECTION_FRAME_HEADER_LEN: usize = 2;
/// The largest body a connection message may have (the `u16` frame).
pub const MAX_CONNECTION_BODY_LEN: usize = u16::MAX as usize;

/// The first, clear-text message of the handshake (`Connection_message.t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionMessage {
    /// The sender's advertised listening port; 0 on the wire is `None`
    /// (and `Some(0)` is written as 0).
    pub port: Option<u16>,
    /// The sender's X25519 public key.
    pub public_key: PublicKey,
    /// The sender's proof-of-work stamp for `public_key`.
    pub proof_of_work_stamp: PowStamp,
    /// Fresh random bytes that make each connection's nonces unique.
    pub message_nonce: [u8; MESSAGE_NONCE_LEN],
    /// The sender's chain name and greatest supported versions.
    pub version: NetworkVersion,
}

impl ConnectionMessage {
    /// Appends the body (without the `u16` frame).
    pub fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u16(self.port.unwrap_or(0));
        out.extend_from_slice(&self.public_key.0);
        out.extend_from_slice(&self.proof_of_work_stamp.0);
        out.extend_from_slice(&self.message_nonce);
        self.version.encode(out)
    }

    /// Reads a body (without the frame) that must span all of `body`.
    pub fn decode_body(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let port = r.u16()?;
        let msg = ConnectionMessage {
            port: (port != 0).then_some(port),
            public_key: PublicKey(r.fixed::<KEY_LEN>()?),
            proof_of_work_stamp: PowStamp(r.fixed::<STAMP_LEN>()?),
            message_nonce: r.fixed()?,
            version: NetworkVersion::decode(&mut r)?,
        };
        r.finish()?;
        Ok(msg)
    }

    /// The framed form, `u16 len || body`, as sent on the socket. A body of
    /// 65 536 bytes or more is [`EncodeError::SizeLimitExceeded`].
    pub fn to_framed(&self) -> Result<Vec<u8>, EncodeError> {
        self.to_bytes()
    }
}

impl Encode for ConnectionMessage {
    /// The framed form, `u16 len || body`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let at = out.len();
        out.put_u16(0);
        self.encode_body(out).inspect_err(|_| out.truncate(at))?;
        let len = out.len() - at - CONNECTION_FRAME_HEADER_LEN;
        let Ok(len16) = u16::try_from(len) else {
            out.truncate(at);
            return Err(EncodeError::SizeLimitExceeded {
                size: len,
                limit: MAX_CONNECTION_BODY_LEN,
            });
        };
        out[at..at + CONNECTION_FRAME_HEADER_LEN].copy_from_slice(&len16.to_be_bytes());
        Ok(())
    }
}

impl Decode for ConnectionMessage {
    /// The framed form: `u16 L`, then a body that must use exactly `L` bytes.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = usize::from(r.u16()?);
        ConnectionMessage::decode_body(r.take(len)?)
    }
}

/// A connection message with its exact framed bytes (`u16` prefix
/// included), which enter the nonce derivation (§4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawConnectionMessage {
    /// The decoded message.
    pub msg: ConnectionMessage,
    /// The framed bytes, as sent or received.
    pub raw: Vec<u8>,
}

impl RawConnectionMessage {
    /// Encodes `msg` and keeps its framed bytes (for the message we send).
    pub fn new(msg: ConnectionMessage) -> Result<Self, EncodeError> {
        let raw = msg.to_framed()?;
        Ok(RawConnectionMessage { msg, raw })
    }

    /// Decodes a framed message that must span all of `framed`.
    pub fn from_framed(framed: &[u8]) -> Result<Self, DecodeError> {
        Ok(RawConnectionMessage {
            msg: ConnectionMessage::from_bytes(framed)?,
            raw: framed.to_vec(),
        })
    }

    /// Decodes a framed message at the start of `buf`, for reading from a
    /// stream: `Ok(None)` while `buf` holds less than the whole frame,
    /// otherwise the message and the number of bytes it used (bytes after it
    /// are left alone). A body that does not use exactly its announced
    /// length is an error.
    pub fn try_decode(buf: &[u8]) -> Result<Option<(Self, usize)>, DecodeError> {
        let Some(header) = buf.get(..CONNECTION_FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let total =
            CONNECTION_FRAME_HEADER_LEN + usize::from(u16::from_be_bytes([header[0], header[1]]));
        let Some(framed) = buf.get(..total) else {
            return Ok(None);
        };
        Ok(Some((Self::from_framed(framed)?, total)))
    }
}

// ---------------------------------------------------------------------------
// §6 Metadata

/// Connection metadata, exchanged as the whole plaintext of one chunk right
/// after the connection messages. Applications bring their own type;
/// `octez-node` uses [`OctezMetadata`]. Decoding must use every byte of the
/// chunk: decode with [`Decode::from_bytes`].
pub trait ConnMeta: Clone + Send + Sync + 'static + Encode + Decode + fmt::Debug {
    /// Whether the sender runs in private mode; such peers are not sent
    /// `Bootstrap` and their addresses are not advertised. Defaults to false.
    fn private_node(&self) -> bool {
        false
    }
}

/// `octez-node`'s metadata: two booleans, 2 bytes, written `0x00`/`0xFF`
/// and read with any non-zero byte as true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OctezMetadata {
    /// The sender runs with `--disable-mempool`.
    pub disable_mempool: bool,
    /// The sender runs with `--private-mode`.
    pub private_node: bool,
}

impl Encode for OctezMetadata {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_bool(self.disable_mempool);
        out.put_bool(self.private_node);
        Ok(())
    }
}

impl Decode for OctezMetadata {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OctezMetadata {
            disable_mempool: r.bool()?,
            private_node: r.bool()?,
        })
    }
}

impl ConnMeta for OctezMetadata {
    fn private_node(&self) -> bool {
        self.private_node
    }
}

// ---------------------------------------------------------------------------
// §7.3 Ack

/// Tag of [`Ack::Ack`].
pub const ACK_TAG_ACK: u8 = 0x00;
/// Tag of [`Ack::Nack`].
pub const ACK_TAG_NACK: u8 = 0x01;
/// Tag of [`Ack::NackV0`].
pub const ACK_TAG_NACK_V0: u8 = 0xFF;

/// The last handshake message (`P2p_socket.Ack.t`), the whole plaintext of
/// one chunk; decode it with [`Decode::from_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ack {
    /// Tag `0x00`: the connection is accepted.
    Ack,
    /// Tag `0xFF`: refused, without a motive (for peers announcing p2p
    /// version 0).
    NackV0,
    /// Tag `0x01`: refused, with a motive and at most 100 points to try
    /// instead (`i16 motive || u32 byte length || points`).
    Nack {
        /// Why.
        motive: Motive,
        /// Points the peer suggests connecting to instead.
        alternative_points: Vec<Point>,
    },
}

impl Ack {
    /// The refusal Octez sends to a peer that announced `remote_p2p_version`:
    /// [`Ack::Nack`] when it is at least 1, [`Ack::NackV0`] otherwise.
    pub fn nack_for(
        remote_p2p_version: u16,
        motive: Motive,
        alternative_points: Vec<Point>,
    ) -> Self {
        if remote_p2p_version > 0 {
            Ack::Nack {
                motive,
                alternative_points,
            }
        } else {
            Ack::NackV0
        }
    }
}

impl Encode for Ack {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Ack::Ack => out.put_u8(ACK_TAG_ACK),
            Ack::NackV0 => out.put_u8(ACK_TAG_NACK_V0),
            Ack::Nack {
                motive,
                alternative_points,
            } => {
                let at = out.len();
                out.put_u8(ACK_TAG_NACK);
                motive.encode(out)?;
                encode_point_list(alternative_points, out).inspect_err(|_| out.truncate(at))?;
            }
        }
        Ok(())
    }
}

impl Decode for Ack {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            ACK_TAG_ACK => Ok(Ack::Ack),
            ACK_TAG_NACK_V0 => Ok(Ack::NackV0),
            ACK_TAG_NACK => Ok(Ack::Nack {
                motive: Motive::decode(r)?,
                alternative_points: decode_point_list(r)?,
            }),
            t => Err(DecodeError::UnexpectedTag(u16::from(t))),
        }
    }
}

// ---------------------------------------------------------------------------
// §8 P2P messages

/// Tag of [`P2pMessage::Disconnect`].
pub const TAG_DISCONNECT: u16 = 0x01;
/// Tag of [`P2pMessage::Bootstrap`].
pub const TAG_BOOTSTRAP: u16 = 0x02;
/// Tag of [`P2pMessage::Advertise`].
pub const TAG_ADVERTISE: u16 = 0x03;
/// Tag of [`P2pMessage::SwapRequest`].
pub const TAG_SWAP_REQUEST: u16 = 0x04;
/// Tag of [`P2pMessage::SwapAck`].
pub const TAG_SWAP_ACK: u16 = 0x05;
/// The smallest tag of an application message; `0x06..=0x0F` are unused.
pub const MIN_APP_TAG: u16 = 0x10;

/// Length of the `u32` size field in front of every P2P message.
pub const SIZE_FIELD_LEN: usize = 4;
/// `check_size` bound of a P2P message, **including** its 4-byte size field
/// (100 MiB).
pub const MAX_MESSAGE_SIZE: usize = 100 * 1024 * 1024;
/// The largest value of the size field: 104 857 596.
pub const MAX_MESSAGE_SIZE_FIELD: usize = MAX_MESSAGE_SIZE - SIZE_FIELD_LEN;

/// Application (shell) messages carried by [`P2pMessage::Message`], with
/// 2-byte tags from [`MIN_APP_TAG`] upwards.
pub trait AppMessage: Sized + Send + fmt::Debug + 'static {
    /// The message's tag; must be at least [`MIN_APP_TAG`]
    /// (else encoding fails with [`EncodeError::InvalidTag`]).
    fn tag(&self) -> u16;

    /// Appends the body (what follows the tag).
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// The encoded body's size if known cheaply, so that encoding can
    /// reserve it at once (0: unknown).
    fn size_hint(&self) -> usize {
        0
    }

    /// Reads the message of tag `tag` (≥ [`MIN_APP_TAG`]) whose body is all
    /// of `body`: unknown tags must give [`DecodeError::UnexpectedTag`] and
    /// unused bytes [`DecodeError::ExtraBytes`].
    fn decode(tag: u16, body: &[u8]) -> Result<Self, DecodeError>;

    /// [`decode`](Self::decode), given the body as a buffer of its own: a
    /// type that keeps its body as bytes (as [`RawMessage`] does) takes the
    /// buffer instead of copying it. The [`MessageDecoder`] calls it for a
    /// body longer than a chunk that it has assembled apart (see there).
    /// It must give what `decode(tag, &body)` gives, as the default does.
    fn decode_owned(tag: u16, body: Vec<u8>) -> Result<Self, DecodeError> {
        Self::decode(tag, &body)
    }

    /// The largest size field (tag and body, as the `u32` in front of the
    /// message counts them) a message of tag `tag` (≥ [`MIN_APP_TAG`]) may
    /// announce, or `None` if no message has this tag. The
    /// [`MessageDecoder`] checks it as soon as the size and the tag are
    /// read, before the body is buffered, so a lying size costs nothing:
    /// a bigger size is [`DecodeError::SizeLimitExceeded`] and an unknown
    /// tag [`DecodeError::UnexpectedTag`]. The default accepts every tag up
    /// to the global limit ([`MAX_MESSAGE_SIZE_FIELD`]).
    fn max_size(tag: u16) -> Option<usize> {
        let _ = tag;
        Some(MAX_MESSAGE_SIZE_FIELD)
    }

    /// The error for a message of tag `tag` whose size field `size` is over
    /// `max`, its [`max_size`](Self::max_size): by default
    /// [`DecodeError::SizeLimitExceeded`]. A message of fixed size may
    /// report [`DecodeError::ExtraBytes`] instead, as Octez's stream reader
    /// does once it has read the fixed fields.
    fn oversize_error(tag: u16, size: usize, max: usize) -> DecodeError {
        let _ = tag;
        DecodeError::SizeLimitExceeded { size, limit: max }
    }
}

/// An application message kept as its tag and raw body. It accepts any tag
/// from [`MIN_APP_TAG`] up; its size is bounded only by the message limit
/// ([`MAX_MESSAGE_SIZE`] or the decoder's own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawMessage {
    /// The tag, at least [`MIN_APP_TAG`].
    pub tag: u16,
    /// The body after the tag.
    pub body: Vec<u8>,
}

impl AppMessage for RawMessage {
    fn tag(&self) -> u16 {
        self.tag
    }

    fn size_hint(&self) -> usize {
        self.body.len()
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.body);
        Ok(())
    }

    fn decode(tag: u16, body: &[u8]) -> Result<Self, DecodeError> {
        if tag < MIN_APP_TAG {
            return Err(DecodeError::UnexpectedTag(tag));
        }
        Self::decode_owned(tag, body.to_vec())
    }

    /// Takes the buffer as the body: no copy.
    fn decode_owned(tag: u16, body: Vec<u8>) -> Result<Self, DecodeError> {
        if tag < MIN_APP_TAG {
            return Err(DecodeError::UnexpectedTag(tag));
        }
        Ok(RawMessage { tag, body })
    }
}

/// No application messages at all: every tag from [`MIN_APP_TAG`] up is
/// [`DecodeError::UnexpectedTag`]. Uninhabited, so
/// `P2pMessage<NoAppMessage>` holds only P2P-layer messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoAppMessage {}

impl AppMessage for NoAppMessage {
    fn tag(&self) -> u16 {
        match *self {}
    }

    fn encode_body(&self, _: &mut Vec<u8>) -> Result<(), EncodeError> {
        match *self {}
    }

    fn decode(tag: u16, _: &[u8]) -> Result<Self, DecodeError> {
        Err(DecodeError::UnexpectedTag(tag))
    }

    fn max_size(_: u16) -> Option<usize> {
        None
    }
}

/// A post-handshake message (`P2p_message.t`), generic in the application
/// messages it carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum P2pMessage<M> {
    /// `0x01`: the sender is closing the connection.
    Disconnect,
    /// `0x02`: "send me peers".
    Bootstrap,
    /// `0x03`: known points, at most 100, running to the end of the message.
    Advertise(Vec<Point>),
    /// `0x04`: "connect to this point / peer".
    SwapRequest(Point, PeerId),
    /// `0x05`: answer to a swap request.
    SwapAck(Point, PeerId),
    /// `0x10` and up: an application message.
    Message(M),
}

impl<M: AppMessage> P2pMessage<M> {
    /// The 2-byte tag.
    pub fn tag(&self) -> u16 {
        match self {
            P2pMessage::Disconnect => TAG_DISCONNECT,
            P2pMessage::Bootstrap => TAG_BOOTSTRAP,
            P2pMessage::Advertise(_) => TAG_ADVERTISE,
            P2pMessage::SwapRequest(..) => TAG_SWAP_REQUEST,
            P2pMessage::SwapAck(..) => TAG_SWAP_ACK,
            P2pMessage::Message(m) => m.tag(),
        }
    }
}

impl<M> P2pMessage<M> {
    /// Octez's case title: `Disconnect`, `Bootstrap`, `Advertise`,
    /// `Swap_request`, `Swap_ack`, or `Message` for application messages.
    pub fn name(&self) -> &'static str {
        match self {
            P2pMessage::Disconnect => "Disconnect",
            P2pMessage::Bootstrap => "Bootstrap",
            P2pMessage::Advertise(_) => "Advertise",
            P2pMessage::SwapRequest(..) => "Swap_request",
            P2pMessage::SwapAck(..) => "Swap_ack",
            P2pMessage::Message(_) => "Message",
        }
    }
}

fn encode_tag_and_body<M: AppMessage>(
    msg: &P2pMessage<M>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let tag = msg.tag();
    if matches!(msg, P2pMessage::Message(_)) && tag < MIN_APP_TAG {
        return Err(EncodeError::InvalidTag(tag));
    }
    out.put_u16(tag);
    match msg {
        P2pMessage::Disconnect | P2pMessage::Bootstrap => Ok(()),
        P2pMessage::Advertise(points) => encode_points_to_end(points, out),
        P2pMessage::SwapRequest(point, peer) | P2pMessage::SwapAck(point, peer) => {
            point.encode(out)?;
            out.extend_from_slice(&peer.0);
            Ok(())
        }
        P2pMessage::Message(m) => m.encode_body(out),
    }
}

/// Appends `u32 size || u16 tag || body`. A message over
/// [`MAX_MESSAGE_SIZE`] (size field included) is
/// [`EncodeError::SizeLimitExceeded`]; on any error `out` is left as it was.
pub fn encode_message<M: AppMessage>(
    msg: &P2pMessage<M>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let at = out.len();
    out.put_u32(0);
    if let Err(e) = encode_tag_and_body(msg, out) {
        out.truncate(at);
        return Err(e);
    }
    let size = out.len() - at - SIZE_FIELD_LEN;
    if size > MAX_MESSAGE_SIZE_FIELD {
        out.truncate(at);
        return Err(EncodeError::SizeLimitExceeded {
            size: size + SIZE_FIELD_LEN,
            limit: MAX_MESSAGE_SIZE,
        });
    }
    // `size` fits: MAX_MESSAGE_SIZE_FIELD < u32::MAX.
    out[at..at + SIZE_FIELD_LEN].copy_from_slice(&(size as u32).to_be_bytes());
    Ok(())
}

/// Decodes what the size field covers: `u16 tag || body`, all of `payload`.
pub fn decode_message_payload<M: AppMessage>(payload: &[u8]) -> Result<P2pMessage<M>, DecodeError> {
    let mut r = Reader::new(payload);
    let tag = r.u16()?;
    let msg = match tag {
        TAG_DISCONNECT => P2pMessage::Disconnect,
        TAG_BOOTSTRAP => P2pMessage::Bootstrap,
        TAG_ADVERTISE => P2pMessage::Advertise(decode_points_to_end(&mut r)?),
        TAG_SWAP_REQUEST | TAG_SWAP_ACK => {
            let point = Point::decode(&mut r)?;
            let peer = PeerId(r.fixed::<PEER_ID_LEN>()?);
            if tag == TAG_SWAP_REQUEST {
                P2pMessage::SwapRequest(point, peer)
            } else {
                P2pMessage::SwapAck(point, peer)
            }
        }
        t if t >= MIN_APP_TAG => P2pMessage::Message(M::decode(t, r.rest())?),
        t => return Err(DecodeError::UnexpectedTag(t)),
    };
    r.finish()?;
    Ok(msg)
}

/// Checks a size field against `limit` (the bound on the whole message,
/// size field included) and returns the whole message's length.
fn check_size_field(size: u32, limit: usize) -> Result<usize, DecodeError> {
    let total = (size as usize).saturating_add(SIZE_FIELD_LEN);
    if total > limit {
        return Err(DecodeError::SizeLimitExceeded { size: total, limit });
    }
    if (size as usize) < 2 {
        // Not even room for the tag.
        return Err(DecodeError::NotEnoughData);
    }
    Ok(total)
}

impl<M: AppMessage> Encode for P2pMessage<M> {
    /// `u32 size || u16 tag || body`, see [`encode_message`].
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_message(self, out)
    }
}

impl<M: AppMessage> Decode for P2pMessage<M> {
    /// One whole message, `u32 size || u16 tag || body`.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let total = check_size_field(r.u32()?, MAX_MESSAGE_SIZE)?;
        decode_message_payload(r.take(total - SIZE_FIELD_LEN)?)
    }
}

/// Once this much of the buffer is free and nothing is pending, its memory
/// is given back.
const SHRINK_ABOVE: usize = 1 << 20;

/// The size field and the tag.
const HEAD_LEN: usize = SIZE_FIELD_LEN + 2;

/// An application message whose body is longer than this (one chunk's
/// plaintext, rounded up) is assembled in a buffer of its own, which
/// [`AppMessage::decode_owned`] then takes: the body is not copied out of
/// the stream's buffer, and the chunk reader opens the chunks that fall
/// inside it straight there.
const OWNED_BODY_ABOVE: usize = 1 << 16;

/// The body of a large application message, assembled apart from the
/// stream's buffer (its size field and tag, checked, are dropped).
struct OwnedBody {
    tag: u16,
    /// The whole message's length, size field included.
    total: usize,
    body: Vec<u8>,
}

impl OwnedBody {
    fn body_len(&self) -> usize {
        self.total - HEAD_LEN
    }

    /// Bytes of the body still to come.
    fn missing(&self) -> usize {
        self.body_len() - self.body.len()
    }

    /// Room for `n` more bytes (at most [`missing`](Self::missing)):
    /// the capacity doubles, but never past the body's length.
    fn grow(&mut self, n: usize) {
        let need = self.body.len() + n;
        if need > self.body.capacity() {
            let want = need
                .max(self.body.capacity().saturating_mul(2))
                .min(self.body_len());
            self.body.reserve_exact(want.max(need) - self.body.len());
        }
    }
}

/// A streaming decoder of P2P messages over the decrypted byte stream.
///
/// Feed it plaintext as chunks arrive ([`feed`](Self::feed)), then call
/// [`next`](Self::next) until it returns `Ok(None)`. Messages may be split
/// at any byte and several may share a chunk. A size field over the limit is
/// an error as soon as its 4 bytes are there, and one over its tag's bound
/// ([`AppMessage::max_size`]) as soon as the 2 bytes of the tag follow,
/// before any body is buffered;
/// buffering is thus bounded by one message plus one fed slice, and memory
/// is only allocated for bytes actually fed (unless
/// [`reserve_next`](Self::reserve_next) asks for the whole message).
/// Consumed bytes are dropped lazily (amortised linear copying). The body
/// of an application message longer than a chunk, once room is made for
/// it ([`reserve_next`](Self::reserve_next)) or the chunk reader opens a
/// chunk into it, is assembled in a buffer of its own and handed whole to
/// [`AppMessage::decode_owned`]. After an error the decoder stays failed:
/// every later call to `next` returns the same error and fed bytes are
/// discarded.
pub struct MessageDecoder<M> {
    /// The stream; from `pos`, bytes not yet returned as messages (after
    /// the owned body, if any: bytes go there only once it is whole).
    buf: Vec<u8>,
    pos: usize,
    /// The large application message under way.
    owned: Option<OwnedBody>,
    limit: usize,
    failed: Option<DecodeError>,
    _marker: PhantomData<fn() -> M>,
}

impl<M> fmt::Debug for MessageDecoder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageDecoder")
            .field("buffered", &self.buffered())
            .field("owned_body", &self.owned.as_ref().map(|o| o.body.len()))
            .field("max_message_size", &self.limit)
            .field("failed", &self.failed)
            .finish()
    }
}

impl<M: AppMessage> Default for MessageDecoder<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> MessageDecoder<M> {
    /// Bytes received and not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos + self.owned.as_ref().map_or(0, |o| HEAD_LEN + o.body.len())
    }
}

impl<M: AppMessage> MessageDecoder<M> {
    /// A decoder with Octez's limit, [`MAX_MESSAGE_SIZE`].
    pub fn new() -> Self {
        Self::with_max_message_size(MAX_MESSAGE_SIZE)
    }

    /// A decoder refusing messages longer than `max_message_size` bytes,
    /// size field included; the limit is capped at [`MAX_MESSAGE_SIZE`].
    pub fn with_max_message_size(max_message_size: usize) -> Self {
        MessageDecoder {
            buf: Vec::new(),
            pos: 0,
            owned: None,
            limit: max_message_size.min(MAX_MESSAGE_SIZE),
            failed: None,
            _marker: PhantomData,
        }
    }

    /// The limit on a whole message, size field included.
    pub fn max_message_size(&self) -> usize {
        self.limit
    }

    /// Whether a previous call to [`next`](Self::next) failed.
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Appends decrypted bytes (ignored once the decoder has failed).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if let Some(o) = &mut self.owned {
            let n = o.missing().min(bytes.len());
            o.grow(n);
            o.body.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if bytes.is_empty() {
                return;
            }
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.buf.capacity() > SHRINK_ABOVE && bytes.len() <= SHRINK_ABOVE {
                self.buf.shrink_to(SHRINK_ABOVE);
            }
        } else if self.pos >= self.buf.len() - self.pos {
            // The live part is no longer than what was consumed: moving it
            // costs at most what was consumed since the last move.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The owned body under way with room for `n` more bytes, if `n` bytes
    /// of plaintext all belong to it: the chunk reader then opens a chunk
    /// straight into it ([`ChunkCipher::open_chunk_into`]), which must
    /// append exactly `n` bytes, or nothing.
    ///
    /// [`ChunkCipher::open_chunk_into`]: crate::crypto::ChunkCipher::open_chunk_into
    pub(crate) fn body_room(&mut self, n: usize) -> Option<&mut Vec<u8>> {
        if self.failed.is_some() {
            return None;
        }
        if self.owned.is_none() {
            if let Ok(Some(total)) = self.header() {
                if self.buffered() < total {
                    self.own_body(total, false);
                }
            }
        }
        let o = self.owned.as_mut().filter(|o| o.missing() >= n)?;
        o.grow(n);
        Some(&mut o.body)
    }

    fn fail(&mut self, e: DecodeError) -> DecodeError {
        self.failed = Some(e.clone());
        self.buf = Vec::new();
        self.pos = 0;
        self.owned = None;
        e
    }

    /// The size on the wire (size field included) of the next message if
    /// it is whole in the buffer, so a caller can make room before
    /// [`next`](Self::next) decodes it; `Ok(None)` if more bytes are
    /// needed; an error for a size field over the limit.
    pub fn next_size(&mut self) -> Result<Option<usize>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.header() {
            Ok(Some(total)) if self.buffered() >= total => Ok(Some(total)),
            Ok(_) => Ok(None),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The whole length (size field included) of the next message as its
    /// header announces it, once its size field and tag are there (and
    /// checked, as by [`next_size`](Self::next_size)), whether or not its
    /// body is; `Ok(None)` before. Lets a caller take room for a large
    /// message before buffering it.
    pub fn next_announced_size(&mut self) -> Result<Option<usize>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buffered() < HEAD_LEN {
            return Ok(None);
        }
        self.header().map_err(|e| self.fail(e))
    }

    /// How many more bytes complete the next message, once its size field
    /// is there (0 before, or for a bad one).
    pub(crate) fn next_remaining(&self) -> usize {
        match self.header() {
            Ok(Some(total)) => total.saturating_sub(self.buffered()),
            _ => 0,
        }
    }

    /// Makes room for the whole next message (once its size field is
    /// there) plus `extra` bytes, dropping consumed bytes first: the
    /// message is then buffered without any reallocation, and the buffers
    /// hold at most its announced size plus `extra` (plus the stream
    /// buffer's memory kept from before, which [`shrink`](Self::shrink)
    /// gives back) until it is taken.
    pub fn reserve_next(&mut self, extra: usize) {
        let Ok(Some(total)) = self.header() else {
            return;
        };
        if self.buffered() < total {
            self.own_body(total, true);
        }
        if let Some(o) = &mut self.owned {
            let missing = o.missing();
            o.body.reserve_exact(missing);
            // What follows the body (the rest of its last chunk).
            if self.buf.capacity() - (self.buf.len() - self.pos) < extra {
                self.buf.drain(..self.pos);
                self.pos = 0;
                self.buf.reserve_exact(extra);
            }
            return;
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let want = total.saturating_add(extra);
        if want > self.buf.capacity() {
            self.buf.reserve_exact(want - self.buf.len());
        }
    }

    /// The bytes the buffers hold room for (consumed ones included).
    pub fn capacity(&self) -> usize {
        self.buf.capacity() + self.owned.as_ref().map_or(0, |o| o.body.capacity())
    }

    /// Gives the stream buffer's memory back, down to `keep` bytes or what
    /// it holds if more. (An owned body under way keeps its room.)
    pub fn shrink(&mut self, keep: usize) {
        if self.buf.capacity() > keep.max(self.buf.len() - self.pos) {
            self.buf.drain(..self.pos);
            self.pos = 0;
            self.buf.shrink_to(keep.max(self.buf.len()));
        }
    }

    /// The whole length of the next message (size field included) once its
    /// size field is there, checked against the limit and, once the tag is
    /// there too, against the tag's own bound ([`AppMessage::max_size`]).
    fn header(&self) -> Result<Option<usize>, DecodeError> {
        if let Some(o) = &self.owned {
            // Checked when it was set apart.
            return Ok(Some(o.total));
        }
        let avail = &self.buf[self.pos..];
        let Some(&[a, b, c, d]) = avail.get(..SIZE_FIELD_LEN) else {
            return Ok(None);
        };
        let size = u32::from_be_bytes([a, b, c, d]);
        let total = check_size_field(size, self.limit)?;
        if let Some(&[t0, t1]) = avail.get(SIZE_FIELD_LEN..HEAD_LEN) {
            let tag = u16::from_be_bytes([t0, t1]);
            if tag >= MIN_APP_TAG {
                let max = M::max_size(tag).ok_or(DecodeError::UnexpectedTag(tag))?;
                if size as usize > max {
                    return Err(M::oversize_error(tag, size as usize, max));
                }
            }
        }
        Ok(Some(total))
    }

    /// Sets the body of the next message apart if it is an application
    /// message longer than [`OWNED_BODY_ABOVE`], whose header (checked by
    /// [`header`](Self::header): `total` is its length) is buffered but
    /// not the whole message; with `whole`, with room for all of it at
    /// once.
    fn own_body(&mut self, total: usize, whole: bool) {
        if self.owned.is_some() || total - HEAD_LEN <= OWNED_BODY_ABOVE {
            return;
        }
        let avail = &self.buf[self.pos..];
        let Some(&[t0, t1]) = avail.get(SIZE_FIELD_LEN..HEAD_LEN) else {
            return;
        };
        let tag = u16::from_be_bytes([t0, t1]);
        if tag < MIN_APP_TAG {
            return;
        }
        // Not whole: all that is buffered is of this message.
        let mut owned = OwnedBody {
            tag,
            total,
            body: Vec::new(),
        };
        let have = &avail[HEAD_LEN..];
        if whole {
            owned.body.reserve_exact(owned.body_len());
        } else {
            owned.grow(have.len());
        }
        owned.body.extend_from_slice(have);
        self.owned = Some(owned);
        self.buf.clear();
        self.pos = 0;
    }

    /// The next whole message and its size on the wire (size field
    /// included), `Ok(None)` if more bytes are needed, or the decoding
    /// error (size over the limit, unknown tag, bad body…).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<(usize, P2pMessage<M>)>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Some(o) = &self.owned {
            if o.missing() > 0 {
                return Ok(None);
            }
            let Some(OwnedBody { tag, total, body }) = self.owned.take() else {
                return Ok(None);
            };
            return match M::decode_owned(tag, body) {
                Ok(msg) => Ok(Some((total, P2pMessage::Message(msg)))),
                Err(e) => Err(self.fail(e)),
            };
        }
        let total = match self.header() {
            Ok(Some(total)) => total,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.fail(e)),
        };
        let Some(whole) = self.buf[self.pos..].get(SIZE_FIELD_LEN..total) else {
            return Ok(None);
        };
        match decode_message_payload(whole) {
            Ok(msg) => {
                self.pos += total;
                Ok(Some((total, msg)))
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::ChainName;

    fn pt(s: &str) -> Point {
        s.parse().unwrap()
    }

    fn peer(h: &str) -> PeerId {
        let mut id = [0u8; PEER_ID_LEN];
        hex::decode_to_slice(h, &mut id).unwrap();
        PeerId(id)
    }

    fn enc(m: &P2pMessage<RawMessage>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_message(m, &mut out).unwrap();
        out
    }

    fn dec(bytes: &[u8]) -> Result<P2pMessage<RawMessage>, DecodeError> {
        P2pMessage::from_bytes(bytes)
    }

    const B_PORT0: &str = "006700005baffac72f9bef7f740ddcbd96b2125990943a89cccd9305c30350103be25d4c3f47185f43f76432e4422023fd5a84cb0e83bb3ec8ea0595dc176add7b973b97c24033c7eb0bba8abc9189ccb7c1b9650000000d54455a4f535f4d41494e4e455400020001";

    fn conn() -> ConnectionMessage {
        ConnectionMessage {
            port: Some(9732),
            public_key: PublicKey([1; 32]),
            proof_of_work_stamp: PowStamp([2; 24]),
            message_nonce: [3; 24],
            version: NetworkVersion {
                chain_name: ChainName::mainnet(),
                distributed_db_version: 2,
                p2p_version: 1,
            },
        }
    }

    #[test]
    fn connection_message_round_trips_framed() {
        let framed = hex::decode(B_PORT0).unwrap();
        let raw = RawConnectionMessage::from_framed(&framed).unwrap();
        assert_eq!(raw.raw, framed);
        assert_eq!(raw.msg.port, None, "port 0 on the wire is no port");
        assert_eq!(raw.msg.version.chain_name, ChainName::mainnet());
        assert_eq!(raw.msg.to_framed().unwrap(), framed);
        assert_eq!(
            ConnectionMessage::decode_body(&framed[2..]).unwrap(),
            raw.msg
        );

        let mine = RawConnectionMessage::new(conn()).unwrap();
        assert_eq!(
            mine.raw.len(),
            105,
            "TEZOS_MAINNET: 103-byte body plus frame"
        );
        assert_eq!(&mine.raw[..4], &[0x00, 0x67, 0x26, 0x04]);
        assert_eq!(RawConnectionMessage::from_framed(&mine.raw).unwrap(), mine);
    }

    #[test]
    fn connection_message_must_use_exactly_its_frame() {
        let framed = hex::decode(B_PORT0).unwrap();
        // Frame shorter than the body needs.
        let mut short = framed.clone();
        short[1] -= 1;
        short.pop();
        assert_eq!(
            ConnectionMessage::from_bytes(&short),
            Err(DecodeError::NotEnoughData)
        );
        // Frame longer than the body: the extra byte is inside the frame.
        let mut long = framed.clone();
        long[1] += 1;
        long.push(0);
        assert_eq!(
            ConnectionMessage::from_bytes(&long),
            Err(DecodeError::ExtraBytes(1))
        );
        // Bytes after the frame are not part of it.
        let mut after = framed.clone();
        after.push(0);
        assert_eq!(
            RawConnectionMessage::from_framed(&after),
            Err(DecodeError::ExtraBytes(1))
        );
        // Truncated input.
        assert_eq!(
            RawConnectionMessage::from_framed(&framed[..50]),
            Err(DecodeError::NotEnoughData)
        );
    }

    #[test]
    fn connection_message_can_be_read_from_a_stream() {
        let mut stream = hex::decode(B_PORT0).unwrap();
        let n = stream.len();
        for cut in 0..n {
            assert_eq!(RawConnectionMessage::try_decode(&stream[..cut]), Ok(None));
        }
        stream.extend_from_slice(b"next");
        let (raw, used) = RawConnectionMessage::try_decode(&stream).unwrap().unwrap();
        assert_eq!(used, n);
        assert_eq!(raw.raw, &stream[..n]);
    }

    #[test]
    fn connection_body_of_65536_bytes_is_refused() {
        let mut m = conn();
        // 90 fixed bytes + name = 65 535 is the largest body.
        m.version.chain_name = ChainName::new(vec![b'a'; 65535 - 90]);
        assert_eq!(m.to_framed().unwrap().len(), 65537);
        m.version.chain_name = ChainName::new(vec![b'a'; 65536 - 90]);
        let mut out = vec![9];
        assert_eq!(
            m.encode(&mut out),
            Err(EncodeError::SizeLimitExceeded {
                size: 65536,
                limit: 65535
            })
        );
        assert_eq!(out, [9]);
    }

    #[test]
    fn metadata_is_two_bools_read_leniently() {
        let m = OctezMetadata {
            disable_mempool: false,
            private_node: true,
        };
        assert_eq!(m.to_bytes().unwrap(), [0x00, 0xFF]);
        assert_eq!(OctezMetadata::from_bytes(&[0x00, 0x01]).unwrap(), m);
        assert!(ConnMeta::private_node(&m));
        assert_eq!(
            OctezMetadata::from_bytes(&[0]),
            Err(DecodeError::NotEnoughData)
        );
        assert_eq!(
            OctezMetadata::from_bytes(&[0, 0, 0]),
            Err(DecodeError::ExtraBytes(1))
        );
    }

    #[test]
    fn ack_tags_are_00_ff_01() {
        assert_eq!(Ack::Ack.to_bytes().unwrap(), [0x00]);
        assert_eq!(Ack::NackV0.to_bytes().unwrap(), [0xFF]);
        assert_eq!(Ack::from_bytes(&[0x00]).unwrap(), Ack::Ack);
        assert_eq!(Ack::from_bytes(&[0xFF]).unwrap(), Ack::NackV0);
        assert_eq!(Ack::from_bytes(&[0x02]), Err(DecodeError::UnexpectedTag(2)));
        assert_eq!(Ack::from_bytes(&[]), Err(DecodeError::NotEnoughData));
        assert_eq!(
            Ack::from_bytes(&[0x00, 0x00]),
            Err(DecodeError::ExtraBytes(1))
        );
    }

    #[test]
    fn nack_matches_the_spec_example() {
        let nack = Ack::Nack {
            motive: Motive::TooManyConnections,
            alternative_points: vec![pt("198.51.100.7:9732")],
        };
        let bytes = nack.to_bytes().unwrap();
        assert_eq!(
            hex::encode(&bytes),
            "01000100000015000000113139382e35312e3130302e373a39373332"
        );
        assert_eq!(Ack::from_bytes(&bytes).unwrap(), nack);
    }

    #[test]
    fn nack_with_more_than_100_points_is_refused_both_ways() {
        let points = vec![pt("1.2.3.4:1"); 101];
        let nack = Ack::Nack {
            motive: Motive::NoMotive,
            alternative_points: points.clone(),
        };
        let mut out = Vec::new();
        assert_eq!(
            nack.encode(&mut out),
            Err(EncodeError::ListTooLong { len: 101, max: 100 })
        );
        assert!(out.is_empty());
        let mut bytes = vec![0x01, 0x00, 0x00];
        bytes
            .put_dynamic::<EncodeError>(|o| {
                for p in &points {
                    p.encode(o)?;
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(
            Ack::from_bytes(&bytes),
            Err(DecodeError::ListTooLong { max: 100 })
        );
    }

    #[test]
    fn nack_form_depends_on_the_remote_p2p_version() {
        assert_eq!(
            Ack::nack_for(0, Motive::TooManyConnections, vec![]),
            Ack::NackV0
        );
        assert_eq!(
            Ack::nack_for(1, Motive::TooManyConnections, vec![]),
            Ack::Nack {
                motive: Motive::TooManyConnections,
                alternative_points: vec![]
            }
        );
    }

    #[test]
    fn p2p_messages_match_the_spec_examples() {
        let cases: [(P2pMessage<RawMessage>, &str); 5] = [
            (P2pMessage::Bootstrap, "000000020002"),
            (P2pMessage::Disconnect, "000000020001"),
            (
                P2pMessage::Advertise(vec![pt("203.0.113.5:9732"), pt("[2001:db8::1]:9732")]),
                "0000002c0003000000103230332e302e3131332e353a39373332000000125b323030313a6462383a3a315d3a39373332",
            ),
            (
                P2pMessage::SwapRequest(pt("203.0.113.5:9732"), peer("f07c06dbad7c1523a86fd889685e86f1")),
                "000000260004000000103230332e302e3131332e353a39373332f07c06dbad7c1523a86fd889685e86f1",
            ),
            (
                P2pMessage::Message(RawMessage {
                    tag: 0x13,
                    body: vec![0x7a, 0x06, 0xa7, 0x70],
                }),
                "0000000600137a06a770",
            ),
        ];
        for (msg, h) in cases {
            let bytes = hex::decode(h).unwrap();
            assert_eq!(enc(&msg), bytes, "{msg:?}");
            assert_eq!(dec(&bytes).unwrap(), msg);
        }
    }

    #[test]
    fn unused_and_zero_tags_are_unexpected() {
        for tag in [0x00u16, 0x06, 0x0A, 0x0F] {
            let mut bytes = vec![0, 0, 0, 2];
            bytes.put_u16(tag);
            assert_eq!(dec(&bytes), Err(DecodeError::UnexpectedTag(tag)));
        }
        assert_eq!(
            P2pMessage::<NoAppMessage>::from_bytes(&hex::decode("0000000600137a06a770").unwrap()),
            Err(DecodeError::UnexpectedTag(0x13))
        );
    }

    #[test]
    fn bodies_must_be_used_exactly() {
        assert_eq!(
            dec(&hex::decode("00000003000100").unwrap()),
            Err(DecodeError::ExtraBytes(1))
        );
        assert_eq!(
            dec(&hex::decode("00000003000200").unwrap()),
            Err(DecodeError::ExtraBytes(1))
        );
        // Swap without the last byte of the peer id.
        let mut swap = enc(&P2pMessage::SwapAck(pt("1.2.3.4:5"), PeerId([7; 16])));
        swap.pop();
        swap[3] -= 1;
        assert_eq!(dec(&swap), Err(DecodeError::NotEnoughData));
        // Advertise with a byte of junk after the points.
        let mut adv = enc(&P2pMessage::Advertise(vec![pt("1.2.3.4:5")]));
        adv.push(0);
        adv[3] += 1;
        assert_eq!(dec(&adv), Err(DecodeError::NotEnoughData));
        // A size field that cannot even hold the tag.
        assert_eq!(dec(&[0, 0, 0, 1, 0]), Err(DecodeError::NotEnoughData));
    }

    #[test]
    fn advertise_is_limited_to_100_points() {
        let many = P2pMessage::<RawMessage>::Advertise(vec![pt("1.2.3.4:1"); 101]);
        let mut out = vec![1, 2];
        assert_eq!(
            encode_message(&many, &mut out),
            Err(EncodeError::ListTooLong { len: 101, max: 100 })
        );
        assert_eq!(out, [1, 2]);
        let mut bytes = vec![0, 0, 0, 0, 0, 3];
        for _ in 0..101 {
            pt("1.2.3.4:1").encode(&mut bytes).unwrap();
        }
        let n = (bytes.len() - 4) as u32;
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        assert_eq!(dec(&bytes), Err(DecodeError::ListTooLong { max: 100 }));
    }

    #[test]
    fn app_tags_below_0x10_cannot_be_encoded() {
        let m = P2pMessage::Message(RawMessage {
            tag: 0x03,
            body: vec![],
        });
        let mut out = Vec::new();
        assert_eq!(
            encode_message(&m, &mut out),
            Err(EncodeError::InvalidTag(3))
        );
        assert!(out.is_empty());
        assert_eq!(
            RawMessage::decode(0x0F, &[]),
            Err(DecodeError::UnexpectedTag(0x0F))
        );
    }

    #[test]
    fn message_names_are_octez_titles() {
        assert_eq!(
            P2pMessage::<RawMessage>::SwapAck(pt("1.2.3.4:1"), PeerId([0; 16])).name(),
            "Swap_ack"
        );
        assert_eq!(P2pMessage::<RawMessage>::Bootstrap.tag(), 2);
    }

    #[test]
    fn size_field_over_100_mib_fails_before_the_body() {
        let mut d = MessageDecoder::<RawMessage>::new();
        d.feed(&(MAX_MESSAGE_SIZE_FIELD as u32).to_be_bytes());
        assert_eq!(
            d.next().unwrap(),
            None,
            "104 857 596 is allowed: wait for it"
        );
        let mut d = MessageDecoder::<RawMessage>::new();
        d.feed(&(MAX_MESSAGE_SIZE_FIELD as u32 + 1).to_be_bytes());
        assert_eq!(
            d.next(),
            Err(DecodeError::SizeLimitExceeded {
                size: MAX_MESSAGE_SIZE + 1,
                limit: MAX_MESSAGE_SIZE
            })
        );
        let mut d = MessageDecoder::<RawMessage>::new();
        d.feed(&[0xFF; 4]);
        assert!(matches!(
            d.next(),
            Err(DecodeError::SizeLimitExceeded { .. })
        ));
        assert!(matches!(
            P2pMessage::<RawMessage>::from_bytes(&[0xFF; 4]),
            Err(DecodeError::SizeLimitExceeded { .. })
        ));
    }

    #[test]
    fn decoder_limit_is_per_decoder_and_capped() {
        let mut d = MessageDecoder::<RawMessage>::with_max_message_size(10);
        d.feed(&hex::decode("0000000600137a06a770").unwrap());
        assert!(matches!(d.next(), Ok(Some((10, _)))));
        d.feed(&hex::decode("000000070013").unwrap());
        assert_eq!(
            d.next_size(),
            Err(DecodeError::SizeLimitExceeded {
                size: 11,
                limit: 10
            })
        );
        assert_eq!(
            d.next(),
            Err(DecodeError::SizeLimitExceeded {
                size: 11,
                limit: 10
            })
        );
        assert_eq!(
            MessageDecoder::<RawMessage>::with_max_message_size(usize::MAX).max_message_size(),
            MAX_MESSAGE_SIZE
        );
    }

    #[test]
    fn decoder_accepts_any_split_and_several_messages_per_feed() {
        let msgs: Vec<P2pMessage<RawMessage>> = vec![
            P2pMessage::Bootstrap,
            P2pMessage::Advertise(vec![pt("203.0.113.5:9732"), pt("[2001:db8::1]:9732")]),
            P2pMessage::SwapRequest(pt("[::1]:1"), PeerId([9; 16])),
            P2pMessage::Message(RawMessage {
                tag: 0x10,
                body: vec![1, 2, 3, 4],
            }),
            P2pMessage::Disconnect,
        ];
        let mut stream = Vec::new();
        for m in &msgs {
            encode_message(m, &mut stream).unwrap();
        }
        for piece in 1..=stream.len() {
            let mut d = MessageDecoder::new();
            let mut got = Vec::new();
            let mut wire = 0;
            for chunk in stream.chunks(piece) {
                d.feed(chunk);
                loop {
                    let size = d.next_size().unwrap();
                    let Some((n, m)) = d.next().unwrap() else {
                        assert_eq!(size, None);
                        break;
                    };
                    assert_eq!(size, Some(n));
                    wire += n;
                    got.push(m);
                }
            }
            assert_eq!(got, msgs, "piece size {piece}");
            assert_eq!(wire, stream.len());
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn decoder_errors_are_sticky() {
        let mut d = MessageDecoder::<RawMessage>::new();
        d.feed(&hex::decode("000000020006000000020002").unwrap());
        assert_eq!(d.next(), Err(DecodeError::UnexpectedTag(6)));
        assert!(d.is_failed());
        d.feed(&hex::decode("000000020002").unwrap());
        assert_eq!(d.next(), Err(DecodeError::UnexpectedTag(6)));
        assert_eq!(d.buffered(), 0);
    }

    /// Tag 0x10 holds at most 4 body bytes, 0x11 exactly 1 (more is extra
    /// bytes); no other tag exists.
    #[derive(Debug, PartialEq)]
    struct Tiny(u16, Vec<u8>);

    impl AppMessage for Tiny {
        fn tag(&self) -> u16 {
            self.0
        }
        fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
            out.extend_from_slice(&self.1);
            Ok(())
        }
        fn decode(tag: u16, body: &[u8]) -> Result<Self, DecodeError> {
            Ok(Tiny(tag, body.to_vec()))
        }
        fn max_size(tag: u16) -> Option<usize> {
            match tag {
                0x10 => Some(2 + 4),
                0x11 => Some(2 + 1),
                _ => None,
            }
        }
        fn oversize_error(tag: u16, size: usize, max: usize) -> DecodeError {
            if tag == 0x11 {
                DecodeError::ExtraBytes(size - max)
            } else {
                DecodeError::SizeLimitExceeded { size, limit: max }
            }
        }
    }

    #[test]
    fn a_size_over_its_tags_bound_is_refused_once_the_tag_is_read() {
        // Announces 100 MiB - 4 for tag 0x10: refused after 6 bytes, with
        // nothing more buffered.
        let mut d = MessageDecoder::<Tiny>::new();
        d.feed(&hex::decode("063ffffc00").unwrap());
        assert_eq!(d.next(), Ok(None), "the tag is not there yet");
        d.feed(&[0x10]);
        assert_eq!(
            d.next_size(),
            Err(DecodeError::SizeLimitExceeded {
                size: 0x063ffffc,
                limit: 6
            })
        );
        assert_eq!(d.buffered(), 0);
        // An unknown tag is refused at once, whatever the size.
        let mut d = MessageDecoder::<Tiny>::new();
        d.feed(&hex::decode("063ffffc0012").unwrap());
        assert_eq!(d.next(), Err(DecodeError::UnexpectedTag(0x12)));
        // The tag's own error for an oversize.
        let mut d = MessageDecoder::<Tiny>::new();
        d.feed(&hex::decode("000000050011").unwrap());
        assert_eq!(d.next(), Err(DecodeError::ExtraBytes(2)));
        // Within the bound, and P2P messages, as before.
        let mut d = MessageDecoder::<Tiny>::new();
        d.feed(&hex::decode("0000000600100102030400000002000200000002").unwrap());
        assert_eq!(
            d.next(),
            Ok(Some((
                10,
                P2pMessage::Message(Tiny(0x10, vec![1, 2, 3, 4]))
            )))
        );
        assert_eq!(d.next(), Ok(Some((6, P2pMessage::Bootstrap))));
        // RawMessage keeps the global limit only.
        let mut d = MessageDecoder::<RawMessage>::new();
        d.feed(&hex::decode("063ffffc0012").unwrap());
        assert_eq!(d.next(), Ok(None));
    }

    #[test]
    fn announced_size_reserve_and_shrink() {
        let big = enc(&P2pMessage::Message(RawMessage {
            tag: 0x10,
            body: vec![7; 100_000],
        }));
        let mut d = MessageDecoder::<RawMessage>::new();
        // A Bootstrap first, then the big message's size field alone.
        d.feed(&enc(&P2pMessage::Bootstrap));
        d.feed(&big[..4]);
        assert_eq!(d.next_announced_size(), Ok(Some(6)));
        assert_eq!(d.next(), Ok(Some((6, P2pMessage::Bootstrap))));
        assert_eq!(d.next_announced_size(), Ok(None), "no tag yet");
        d.feed(&big[4..1000]);
        assert_eq!(d.next_announced_size(), Ok(Some(big.len())));
        assert_eq!(d.next_size(), Ok(None));
        d.reserve_next(100);
        // The body is set apart (its size field and tag are not kept),
        // with room for exactly its length; the stream buffer behind it
        // has room for 100 bytes more.
        let cap = d.capacity();
        assert!(cap >= big.len() - 6 + 100, "{cap}");
        assert_eq!(
            d.owned.as_ref().map(|o| o.body.capacity()),
            Some(big.len() - 6)
        );
        for piece in big[1000..].chunks(999) {
            d.feed(piece);
        }
        d.feed(&[0, 0, 0]);
        assert_eq!(d.capacity(), cap, "no reallocation");
        assert_eq!(d.next_size(), Ok(Some(big.len())));
        assert!(d.next().unwrap().is_some());
        d.shrink(16);
        assert_eq!((d.capacity(), d.buffered()), (16, 3));
        d.feed(&[2, 0, 2]);
        assert_eq!(d.next(), Ok(Some((6, P2pMessage::Bootstrap))));
        // Errors are those of `next`.
        let mut d = MessageDecoder::<RawMessage>::with_max_message_size(10);
        d.feed(&hex::decode("000000100010").unwrap());
        assert!(d.next_announced_size().is_err());
        assert!(d.is_failed());
    }

    #[test]
    fn decoder_compacts_instead_of_growing() {
        let one = enc(&P2pMessage::Bootstrap);
        let mut d = MessageDecoder::<RawMessage>::new();
        // Feed 1.5 messages at a time, for many messages.
        let mut stream = Vec::new();
        for _ in 0..10_000 {
            stream.extend_from_slice(&one);
        }
        let mut count = 0;
        for chunk in stream.chunks(9) {
            d.feed(chunk);
            while d.next().unwrap().is_some() {
                count += 1;
            }
            assert!(
                d.buf.len() <= 2 * 9 + one.len(),
                "buffer grew to {}",
                d.buf.len()
            );
        }
        assert_eq!(count, 10_000);
    }

    /// An application message whose decoding fails on some bodies, with
    /// the default `decode_owned`.
    #[derive(Debug, Clone, PartialEq)]
    struct Picky(u16, usize);

    impl AppMessage for Picky {
        fn tag(&self) -> u16 {
            self.0
        }
        fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
            out.resize(out.len() + self.1, 0);
            Ok(())
        }
        fn decode(tag: u16, body: &[u8]) -> Result<Self, DecodeError> {
            match body.first() {
                _ if tag == 0x11 => Err(DecodeError::UnexpectedTag(tag)),
                Some(&b) if b % 2 == 1 => Err(DecodeError::ExtraBytes(usize::from(b))),
                _ => Ok(Picky(tag, body.len())),
            }
        }
    }

    /// Decodes `stream` fed in pieces of `cut` bytes; with `reserve`, makes
    /// room for each message once announced (so that a large body is
    /// assembled apart). Returns the messages and the error that ends it.
    #[allow(clippy::type_complexity)]
    fn decode_stream<M: AppMessage>(
        stream: &[u8],
        cut: usize,
        reserve: bool,
    ) -> (Vec<(usize, P2pMessage<M>)>, Option<DecodeError>) {
        let mut d = MessageDecoder::<M>::new();
        let mut got = Vec::new();
        for piece in stream.chunks(cut) {
            d.feed(piece);
            loop {
                if reserve && matches!(d.next_announced_size(), Ok(Some(_))) {
                    d.reserve_next(100);
                }
                let size = d.next_size();
                match d.next() {
                    Ok(Some((n, m))) => {
                        assert_eq!(size, Ok(Some(n)));
                        got.push((n, m));
                    }
                    Ok(None) => break,
                    Err(e) => return (got, Some(e)),
                }
            }
        }
        let taken: usize = got.iter().map(|(n, _)| n).sum();
        assert_eq!(d.buffered(), stream.len() - taken);
        (got, None)
    }

    /// What each whole message of `stream` decodes to, one by one.
    #[allow(clippy::type_complexity)]
    fn decode_whole<M: AppMessage>(
        stream: &[u8],
    ) -> (Vec<(usize, P2pMessage<M>)>, Option<DecodeError>) {
        let mut got = Vec::new();
        let mut at = 0;
        while at + SIZE_FIELD_LEN <= stream.len() {
            let size = u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
            let end = at + SIZE_FIELD_LEN + size;
            if end > stream.len() {
                break;
            }
            match decode_message_payload(&stream[at + SIZE_FIELD_LEN..end]) {
                Ok(m) => got.push((end - at, m)),
                Err(e) => return (got, Some(e)),
            }
            at = end;
        }
        (got, None)
    }

    #[test]
    fn a_large_body_set_apart_is_the_same_message() {
        let big = P2pMessage::Message(RawMessage {
            tag: 0x12,
            body: (0..200_000u32).map(|i| (i % 251) as u8).collect(),
        });
        let mut stream = enc(&P2pMessage::Bootstrap);
        stream.extend(enc(&big));
        stream.extend(enc(&P2pMessage::Bootstrap));
        for cut in [1000, 65_536, 70_001, stream.len()] {
            let plain = decode_stream::<RawMessage>(&stream, cut, false);
            let apart = decode_stream::<RawMessage>(&stream, cut, true);
            assert_eq!(plain, apart, "cut {cut}");
            assert_eq!(plain, decode_whole(&stream), "cut {cut}");
            assert_eq!(plain.0[1].1, big);
        }
        // The body is taken, not copied: `decode_owned` keeps the buffer.
        let body: Vec<u8> = vec![9; 100_000];
        let at = body.as_ptr();
        let RawMessage { body, .. } = RawMessage::decode_owned(0x10, body).unwrap();
        assert_eq!(body.as_ptr(), at);
        assert_eq!(
            RawMessage::decode_owned(0x0F, vec![]),
            Err(DecodeError::UnexpectedTag(0x0F))
        );
    }

    #[test]
    fn a_large_body_set_apart_fails_as_the_whole_message() {
        for (tag, first) in [(0x10u16, 1u8), (0x11, 0), (0x10, 0)] {
            let mut body = vec![0u8; 70_000];
            body[0] = first;
            let mut stream = enc(&P2pMessage::Message(RawMessage { tag, body }));
            stream.extend(enc(&P2pMessage::Disconnect));
            let want = decode_whole::<Picky>(&stream);
            for cut in [10, 4096, stream.len()] {
                assert_eq!(decode_stream::<Picky>(&stream, cut, true), want);
                assert_eq!(decode_stream::<Picky>(&stream, cut, false), want);
            }
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// Messages of every kind, a few with bodies longer than a chunk.
        fn stream_of(tags: Vec<(u16, usize, u8)>) -> Vec<u8> {
            let mut stream = Vec::new();
            for (tag, len, first) in tags {
                let m = match tag {
                    1 => P2pMessage::Disconnect,
                    2 => P2pMessage::Bootstrap,
                    _ => {
                        let mut body = vec![0u8; len];
                        if let Some(b) = body.first_mut() {
                            *b = first;
                        }
                        P2pMessage::Message(RawMessage { tag, body })
                    }
                };
                stream.extend(enc(&m));
            }
            stream
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            /// Setting a large body apart (room made for it) gives the
            /// messages and the error that decoding each whole message
            /// gives, whatever the cuts, for a type that keeps its body and
            /// for one that decodes it.
            #[test]
            fn bodies_set_apart_decode_as_whole_messages(
                tags in proptest::collection::vec(
                    (prop_oneof![Just(1u16), Just(2), 0x10u16..0x14],
                     prop_oneof![0usize..100, 65_000usize..140_000],
                     any::<u8>()),
                    1..6),
                cut in prop_oneof![1usize..100, 1000usize..70_000],
                tail in 0usize..10,
            ) {
                let mut stream = stream_of(tags);
                // A cut-off message at the end waits.
                stream.extend_from_slice(&[0, 0, 1, 0, 0, 0x10, 1, 2, 3][..tail]);
                let want = decode_whole::<RawMessage>(&stream);
                prop_assert_eq!(&decode_stream::<RawMessage>(&stream, cut, true), &want);
                prop_assert_eq!(&decode_stream::<RawMessage>(&stream, cut, false), &want);
                let want = decode_whole::<Picky>(&stream);
                prop_assert_eq!(&decode_stream::<Picky>(&stream, cut, true), &want);
                prop_assert_eq!(&decode_stream::<Picky>(&stream, cut, false), &want);
            }
        }

        proptest! {
            #[test]
            fn decoder_never_panics_on_garbage(
                bytes in proptest::collection::vec(any::<u8>(), 0..512),
                cut in 1usize..64,
            ) {
                let mut d = MessageDecoder::<RawMessage>::with_max_message_size(1024);
                for c in bytes.chunks(cut) {
                    d.feed(c);
                    loop {
                        let size = d.next_size();
                        match d.next() {
                            Ok(Some((n, _))) => prop_assert_eq!(size, Ok(Some(n))),
                            Ok(None) => {
                                prop_assert_eq!(size, Ok(None));
                                break;
                            }
                            Err(e) => {
                                prop_assert!(size == Err(e) || matches!(size, Ok(Some(_))));
                                break;
                            }
                        }
                    }
                }
                let _ = Ack::from_bytes(&bytes);
                let _ = OctezMetadata::from_bytes(&bytes);
                let _ = ConnectionMessage::from_bytes(&bytes);
                let _ = RawConnectionMessage::try_decode(&bytes);
                let _ = P2pMessage::<NoAppMessage>::from_bytes(&bytes);
            }

            #[test]
            fn raw_messages_round_trip_through_the_decoder(
                tag in MIN_APP_TAG..=u16::MAX,
                body in proptest::collection::vec(any::<u8>(), 0..300),
                cut in 1usize..50,
            ) {
                let m = P2pMessage::Message(RawMessage { tag, body });
                let bytes = enc(&m);
                let mut d = MessageDecoder::new();
                let mut got = None;
                for c in bytes.chunks(cut) {
                    d.feed(c);
                    if let Some(x) = d.next().unwrap() {
                        got = Some(x);
                    }
                }
                prop_assert_eq!(got, Some((bytes.len(), m)));
            }
        }
    }
}
