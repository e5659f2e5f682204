//! The whole receive path of an established connection: chunk frames as
//! they arrive from TCP, given to the wire crate's `ChunkReader` (which
//! parses the headers, opens the chunks in place and feeds their plaintext
//! to its `MessageDecoder`), drained with `next_size`/`next_message` after
//! every read as the socket does. Two readers take the same wire, one for
//! `RawMessage` and one for `ShellMessage`, one through `feed` and the
//! other reading straight into `recv_buf`, swapping at every read.
//!
//! The input describes what the sender puts on the wire, with a fixed key
//! and nonce:
//!
//! * byte 0: the decoders' message limit (bits 0–1: Octez's, 64 bytes, or
//!   `6 + 8 * byte 1`), the TCP read sizes (bits 2–3 the span, bits 4–7 a
//!   seed);
//! * byte 1: the limit's parameter;
//! * then operations, each led by one byte `c`:
//!   * `c < 0x40`: a plaintext piece of the next `c` bytes, sealed into one
//!     chunk;
//!   * `0x40..0x80`: a piece whose length is the next `u16` (over 65 517
//!     bytes, `seal_chunk` must refuse it and change nothing);
//!   * `0x80..0xc0`, `p`, `m`: the next sealed chunk gets byte
//!     `((c & 0x3f) << 8 | p) % len` (its header included) xored with `m`
//!     (0 counts as 1);
//!   * `0xc0..`: the next `c & 0x3f` bytes go on the wire as they are (a
//!     forged frame or a garbage header).
//!
//! The wire is then read in pieces cut at data-dependent positions.
//!
//! Invariants: nothing panics; a reader opens exactly the genuine chunks
//! before the first corrupted or forged frame, then stops there with the
//! error the frame deserves (a header under the tag's length, or
//! `Decipher`), or waits if that frame runs past the end of the wire —
//! unless a message fails to decode first, which it reports after opening
//! exactly the chunks that make the failure visible; its nonce has moved
//! by the chunks it tried; once failed it stays failed, returns the same
//! error, keeps no byte and takes none; messages and error are those of
//! the same plaintext fed at once to a `MessageDecoder` (chunking changes
//! nothing); after a drain less than a chunk is unopened and what is
//! buffered is the start of one message, under the limit and its tag's own
//! bound; what is consumed plus what is buffered is what was opened;
//! `ShellMessage` decodes a prefix of what `RawMessage` decodes, the same
//! messages, and fails whenever it does; every decoded message re-encodes
//! and decodes to itself (the very bytes received, where the encoding is
//! canonical).
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use tezos_p2p_shell::ShellMessage;
use tezos_p2p_wire::chunk::{ChunkReader, ReadError};
use tezos_p2p_wire::crypto::{
    chunk_body_len, ChunkCipher, CryptoError, Nonce, SessionKey, CHUNK_OVERHEAD, HEADER_LEN,
    MAX_CHUNK_PLAINTEXT, TAG_LEN,
};
use tezos_p2p_wire::encoding::{Decode, DecodeError, Encode};
use tezos_p2p_wire::message::{
    encode_message, AppMessage, MessageDecoder, P2pMessage, RawMessage, MAX_MESSAGE_SIZE,
    MIN_APP_TAG, SIZE_FIELD_LEN,
};

const KEY: SessionKey = SessionKey([0x5e; 32]);

/// Near a carry: the third chunk's nonce carries over two bytes.
fn first_nonce() -> Nonce {
    let mut n = [0x11; 24];
    n[21..].copy_from_slice(&[0xff, 0xff, 0xfe]);
    Nonce(n)
}

fn nonce_plus(n: usize) -> Nonce {
    let mut x = first_nonce();
    x.add(n as u64);
    x
}

/// The input, read from the front.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// What the sender put on the wire.
struct Sent {
    wire: Vec<u8>,
    /// The plaintext of the genuine chunks before the first bad frame.
    plaintext: Vec<u8>,
    /// The plaintext length of each of those chunks.
    pieces: Vec<usize>,
    /// How many chunks that is.
    chunks: usize,
    /// Where the first corrupted or forged frame starts.
    first_bad: Option<usize>,
}

fn send(inp: &mut Input<'_>) -> Sent {
    let mut tx = ChunkCipher::new(KEY, first_nonce());
    let mut s = Sent {
        wire: Vec::new(),
        plaintext: Vec::new(),
        pieces: Vec::new(),
        chunks: 0,
        first_bad: None,
    };
    let mut corrupt: Option<(usize, u8)> = None;
    let mut sealed = 0usize;
    while let Some(c) = inp.byte() {
        match c >> 6 {
            0 | 1 => {
                let len = if c < 0x40 {
                    usize::from(c)
                } else {
                    let hi = inp.byte().unwrap_or(0);
                    let lo = inp.byte().unwrap_or(0);
                    usize::from(u16::from_be_bytes([hi, lo]))
                };
                let pt = inp.take(len);
                let at = s.wire.len();
                let before = tx.nonce();
                match tx.seal_chunk(pt, &mut s.wire) {
                    Ok(()) => {
                        sealed += 1;
                        assert_eq!(s.wire.len(), at + CHUNK_OVERHEAD + pt.len());
                        assert_eq!(tx.nonce(), nonce_plus(sealed));
                        let frame = &mut s.wire[at..];
                        assert_eq!(chunk_body_len([frame[0], frame[1]]), Ok(TAG_LEN + pt.len()));
                        if let Some((pos, mask)) = corrupt.take() {
                            let i = pos % frame.len();
                            frame[i] ^= mask;
                            s.first_bad.get_or_insert(at);
                        } else if s.first_bad.is_none() {
                            s.plaintext.extend_from_slice(pt);
                            s.pieces.push(pt.len());
                            s.chunks += 1;
                        }
                    }
                    Err(e) => {
                        assert!(pt.len() > MAX_CHUNK_PLAINTEXT);
                        assert_eq!(e, CryptoError::InvalidMessageSize(pt.len()));
                        assert_eq!(s.wire.len(), at);
                        assert_eq!(tx.nonce(), before);
                    }
                }
            }
            2 => {
                let p = inp.byte().unwrap_or(0);
                let m = inp.byte().unwrap_or(1);
                corrupt = Some((usize::from(c & 0x3f) << 8 | usize::from(p), m.max(1)));
            }
            _ => {
                let raw = inp.take(usize::from(c & 0x3f));
                if !raw.is_empty() {
                    s.first_bad.get_or_insert(s.wire.len());
                    s.wire.extend_from_slice(raw);
                }
            }
        }
    }
    s
}

fn decoder<M: AppMessage>(limit: usize) -> MessageDecoder<M> {
    if limit == MAX_MESSAGE_SIZE {
        MessageDecoder::new()
    } else {
        MessageDecoder::with_max_message_size(limit)
    }
}

/// What a `MessageDecoder` gives for plaintext fed in the pieces given,
/// drained after each: its messages, its error, and how many pieces it took
/// to fail (all of them if it did not).
struct Model<M> {
    msgs: Vec<(usize, P2pMessage<M>)>,
    err: Option<DecodeError>,
    pieces_fed: usize,
    consumed: usize,
    buffered: usize,
}

fn model<M: AppMessage>(plaintext: &[u8], pieces: &[usize], limit: usize) -> Model<M> {
    let mut dec = decoder::<M>(limit);
    let mut m = Model {
        msgs: Vec::new(),
        err: None,
        pieces_fed: 0,
        consumed: 0,
        buffered: 0,
    };
    let mut at = 0;
    'feed: for &n in pieces {
        dec.feed(&plaintext[at..at + n]);
        at += n;
        m.pieces_fed += 1;
        loop {
            match dec.next() {
                Ok(Some((n, msg))) => {
                    m.consumed += n;
                    m.msgs.push((n, msg));
                }
                Ok(None) => break,
                Err(e) => {
                    m.err = Some(e);
                    break 'feed;
                }
            }
        }
    }
    m.buffered = dec.buffered();
    m
}

/// One reader over the wire, with what it gave.
struct Rx<M: AppMessage> {
    r: ChunkReader<M>,
    msgs: Vec<(usize, P2pMessage<M>)>,
    err: Option<ReadError>,
    consumed: usize,
    /// The reader's nonce as last seen, the chunks it has tried by then
    /// and the plaintext those of them that are genuine hold.
    seen: Nonce,
    tried: usize,
    opened: usize,
}

impl<M> Rx<M>
where
    M: AppMessage + Clone + PartialEq + Debug,
{
    fn new(limit: usize) -> Self {
        Rx {
            r: ChunkReader::new(ChunkCipher::new(KEY, first_nonce()), limit),
            msgs: Vec::new(),
            err: None,
            consumed: 0,
            seen: first_nonce(),
            tried: 0,
            opened: 0,
        }
    }

    /// Bytes from TCP: fed, or read straight into the reader's buffer.
    fn read(&mut self, bytes: &[u8], direct: bool) {
        if direct {
            let buf = self.r.recv_buf(bytes.len());
            if self.err.is_some() {
                // Failed for good: nothing is kept from before.
                assert!(buf.is_empty());
            }
            buf.extend_from_slice(bytes);
        } else {
            self.r.feed(bytes);
            if self.err.is_some() {
                // Failed for good: nothing is taken.
                assert_eq!(self.r.unopened(), 0);
            }
        }
    }

    /// Chunks opened so far, including one that failed to open (the nonce
    /// moves by one per chunk, whatever the outcome).
    fn tried(&mut self, sent: &Sent) -> usize {
        while self.seen != self.r.nonce() {
            assert!(self.tried <= sent.chunks, "more chunks tried than sent");
            self.opened += sent.pieces.get(self.tried).copied().unwrap_or(0);
            self.seen.increment();
            self.tried += 1;
        }
        self.tried
    }

    /// Takes every message there is, as the socket does after a read.
    /// `sent` is the genuine plaintext, to check what is buffered.
    fn drain(&mut self, sent: &Sent) {
        if let Some(e) = &self.err {
            // Failed for good: the same error, nothing kept.
            assert!(self.r.is_failed());
            assert_eq!(self.r.next_size().as_ref().err(), Some(e));
            assert_eq!(self.r.next_message().as_ref().err(), Some(e));
            assert_eq!(self.r.unopened(), 0);
            assert_eq!(self.r.buffered(), 0);
            return;
        }
        loop {
            match self.r.next_size() {
                Ok(Some(n)) => match self.r.next_message() {
                    Ok(Some((k, m))) => {
                        assert_eq!(k, n);
                        assert!(n <= self.r.max_message_size());
                        self.consumed += n;
                        self.msgs.push((n, m));
                    }
                    Ok(None) => panic!("next_size saw a whole message of {n} bytes"),
                    Err(e) => {
                        // A bad body: only once the message is whole.
                        assert!(matches!(e, ReadError::Decoding(_)));
                        self.err = Some(e);
                        break;
                    }
                },
                Ok(None) => {
                    assert_eq!(self.r.next_message(), Ok(None));
                    break;
                }
                Err(e) => {
                    self.err = Some(e);
                    break;
                }
            }
        }
        if self.err.is_some() {
            assert!(self.r.is_failed());
            assert_eq!(self.r.unopened(), 0);
            assert_eq!(self.r.buffered(), 0);
            return;
        }
        // Waiting for more: less than a chunk unopened; what is buffered
        // is the start of one message, within the limit and within its
        // tag's bound, and is what was opened less what was consumed.
        assert!(self.r.unopened() < HEADER_LEN || self.r.chunk_remaining() > 0);
        let buffered = self.r.buffered();
        self.tried(sent);
        assert_eq!(self.consumed + buffered, self.opened);
        assert!(buffered < self.r.max_message_size().max(SIZE_FIELD_LEN));
        let pending = &sent.plaintext[self.consumed..];
        if let Some(&[t0, t1]) = pending.get(SIZE_FIELD_LEN..SIZE_FIELD_LEN + 2) {
            let tag = u16::from_be_bytes([t0, t1]);
            if tag >= MIN_APP_TAG && buffered >= SIZE_FIELD_LEN + 2 {
                let max = M::max_size(tag).expect("an unknown tag fails at once");
                assert!(
                    buffered < SIZE_FIELD_LEN + max,
                    "{buffered} bytes of tag {tag:#x}"
                );
            }
        }
    }

    /// The end of the wire: the reader did what the model and the first
    /// bad frame say.
    fn check(&mut self, sent: &Sent, frame_err: Option<ReadError>, limit: usize) {
        let model = model::<M>(&sent.plaintext, &sent.pieces, limit);
        // Chunking changes nothing: the same messages as at once.
        let mut once = decoder::<M>(limit);
        once.feed(&sent.plaintext);
        let mut at_once = Vec::new();
        let once_err = loop {
            match once.next() {
                Ok(Some(x)) => at_once.push(x),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        assert_eq!(model.msgs, at_once);
        assert_eq!(model.err, once_err);
        assert_eq!(self.msgs, model.msgs);
        match &model.err {
            Some(e) => {
                // A message failed before the bad frame: the reader opened
                // exactly the chunks that show it.
                assert_eq!(self.err.as_ref(), Some(&ReadError::Decoding(e.clone())));
                assert_eq!(self.tried(sent), model.pieces_fed);
            }
            None => {
                assert_eq!(self.err, frame_err);
                let failed_open = usize::from(frame_err == Some(ReadError::Decipher));
                assert_eq!(self.tried(sent), sent.chunks + failed_open);
                if self.err.is_none() {
                    assert_eq!(self.r.buffered(), model.buffered);
                    assert_eq!(self.consumed, model.consumed);
                    assert_eq!(self.consumed, sent.plaintext.len() - once.buffered());
                }
            }
        }
    }
}

/// The messages re-encode to what decodes to them, and to the received
/// bytes where the encoding is canonical (points are normalised).
fn raw_round_trips(s: &Rx<RawMessage>, plaintext: &[u8]) {
    let mut at = 0;
    for (n, m) in &s.msgs {
        let bytes = m.to_bytes().expect("a decoded message re-encodes");
        assert_eq!(P2pMessage::<RawMessage>::from_bytes(&bytes).as_ref(), Ok(m));
        if !matches!(
            m,
            P2pMessage::Advertise(_) | P2pMessage::SwapRequest(..) | P2pMessage::SwapAck(..)
        ) {
            assert_eq!(&bytes[..], &plaintext[at..at + n]);
        }
        at += n;
    }
}

fn shell_round_trips(s: &Rx<ShellMessage>, plaintext: &[u8]) {
    let mut at = 0;
    for (n, m) in &s.msgs {
        if let P2pMessage::Message(shell) = m {
            let bytes = shell.to_bytes().expect("a decoded message re-encodes");
            assert_eq!(bytes.len(), 2 + shell.body_len());
            assert_eq!(ShellMessage::from_bytes(&bytes).as_ref(), Ok(shell));
            if !matches!(shell, ShellMessage::Protocol(_)) {
                assert_eq!(&bytes[..], &plaintext[at + SIZE_FIELD_LEN..at + n]);
            }
            let mut framed = Vec::new();
            encode_message(m, &mut framed).unwrap();
            assert_eq!(framed.len(), SIZE_FIELD_LEN + bytes.len());
            assert_eq!(
                P2pMessage::<ShellMessage>::from_bytes(&framed).as_ref(),
                Ok(m)
            );
        }
        at += n;
    }
}

/// `ShellMessage` accepts fewer messages than `RawMessage`: it decodes a
/// prefix of the same stream, and fails whenever `RawMessage` does.
fn shell_within_raw(raw: &Rx<RawMessage>, shell: &Rx<ShellMessage>) {
    assert!(shell.msgs.len() <= raw.msgs.len());
    for ((rn, r), (sn, s)) in raw.msgs.iter().zip(&shell.msgs) {
        assert_eq!(rn, sn);
        match (r, s) {
            (P2pMessage::Message(r), P2pMessage::Message(s)) => {
                assert_eq!(r.tag, s.tag());
                assert_eq!(
                    <ShellMessage as AppMessage>::decode(r.tag, &r.body).as_ref(),
                    Ok(s)
                );
            }
            (P2pMessage::Disconnect, P2pMessage::Disconnect)
            | (P2pMessage::Bootstrap, P2pMessage::Bootstrap) => {}
            (P2pMessage::Advertise(a), P2pMessage::Advertise(b)) => assert_eq!(a, b),
            (P2pMessage::SwapRequest(a, x), P2pMessage::SwapRequest(b, y))
            | (P2pMessage::SwapAck(a, x), P2pMessage::SwapAck(b, y)) => {
                assert_eq!((a, x), (b, y))
            }
            (r, s) => panic!("RawMessage read {r:?}, ShellMessage {s:?}"),
        }
    }
    if let Some(e) = &raw.err {
        assert!(shell.err.is_some(), "RawMessage failed with {e:?}");
        // A bad frame may come after a message `ShellMessage` refuses from
        // its header on, while `RawMessage` waits for its body.
        if shell.msgs.len() == raw.msgs.len() && matches!(e, ReadError::Decoding(_)) {
            assert_eq!(shell.err.as_ref(), Some(e));
        }
    }
    if shell.msgs.len() < raw.msgs.len() {
        assert!(shell.err.is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let cfg = inp.byte().unwrap_or(0);
    let param = inp.byte().unwrap_or(0);
    let limit = match cfg & 0x03 {
        0 | 1 => MAX_MESSAGE_SIZE,
        2 => 64,
        _ => 6 + 8 * usize::from(param),
    };
    let span = [7, 97, 1500, 70_000][usize::from(cfg >> 2 & 0x03)];
    let seed = usize::from(cfg >> 4);

    let sent = send(&mut inp);
    let wire = &sent.wire;

    // The first bad frame: the error it deserves, or none if it runs past
    // the end of the wire.
    let frame_err = sent
        .first_bad
        .and_then(|bad| match wire.get(bad..bad + HEADER_LEN) {
            None => None,
            Some(&[a, b]) => match chunk_body_len([a, b]) {
                Err(CryptoError::InvalidIncomingCiphertextSize(n)) => {
                    Some(ReadError::InvalidIncomingCiphertextSize(n))
                }
                Err(e) => panic!("{e:?}"),
                Ok(n) if bad + HEADER_LEN + n > wire.len() => None,
                Ok(_) => Some(ReadError::Decipher),
            },
            Some(_) => unreachable!(),
        });

    // The receivers: TCP reads, each given to both readers, then drained.
    let mut raw = Rx::<RawMessage>::new(limit);
    let mut shell = Rx::<ShellMessage>::new(limit);
    let mut read = 0;
    let mut reads = 0usize;
    while read < wire.len() && (raw.err.is_none() || shell.err.is_none()) {
        let n = 1 + (usize::from(wire[read]) * 31 + read + seed) % span;
        let end = (read + n).min(wire.len());
        let direct = (reads + seed) % 2 == 0;
        raw.read(&wire[read..end], direct);
        shell.read(&wire[read..end], !direct);
        read = end;
        reads += 1;
        raw.drain(&sent);
        shell.drain(&sent);
    }

    raw.check(&sent, frame_err.clone(), limit);
    shell.check(&sent, frame_err, limit);
    raw_round_trips(&raw, &sent.plaintext);
    shell_round_trips(&shell, &sent.plaintext);
    shell_within_raw(&raw, &shell);
});
