//! The whole receive path of an established connection: chunk frames as
//! they arrive from TCP, opened with the session's cipher, their plaintext
//! fed to `MessageDecoder` (`RawMessage` and `ShellMessage`), drained with
//! `next_size`/`next` after every chunk as the socket does.
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
//! The wire is then read in pieces cut at data-dependent positions, every
//! whole frame parsed with `chunk_body_len` and opened with the receiver's
//! cipher (same key and nonces).
//!
//! Invariants: nothing panics; the receiver opens exactly the genuine
//! chunks before the first corrupted or forged frame, then stops there
//! with the error the frame deserves (a header under the tag's length, or
//! `Decipher`), or waits if that frame runs past the end of the wire; its
//! nonce has moved by the chunks it tried; the decoders, once failed, stay
//! failed and buffer nothing; messages and error are those of the same
//! plaintext fed at once (chunking changes nothing); `buffered()` is
//! always under one message of the limit (and of the tag's own bound)
//! before a chunk is fed, so at most that plus one piece; what is consumed
//! plus what is buffered is what was fed; `ShellMessage` decodes a prefix
//! of what `RawMessage` decodes, the same messages, and fails whenever it
//! does; every decoded message re-encodes and decodes to itself (the
//! very bytes received, where the encoding is canonical).
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use tezos_p2p_shell::ShellMessage;
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

/// One decoder over the stream of opened plaintext, with what it gave.
struct Stream<M: AppMessage> {
    dec: MessageDecoder<M>,
    msgs: Vec<(usize, P2pMessage<M>)>,
    err: Option<DecodeError>,
    fed: usize,
    consumed: usize,
}

impl<M> Stream<M>
where
    M: AppMessage + Clone + PartialEq + Debug,
{
    fn new(limit: usize) -> Self {
        let dec = if limit == MAX_MESSAGE_SIZE {
            MessageDecoder::new()
        } else {
            MessageDecoder::with_max_message_size(limit)
        };
        Stream {
            dec,
            msgs: Vec::new(),
            err: None,
            fed: 0,
            consumed: 0,
        }
    }

    /// Feeds one chunk's plaintext (`all` is everything opened so far,
    /// this piece included) and drains the decoder.
    fn feed(&mut self, piece: &[u8], all: &[u8]) {
        let before = self.dec.buffered();
        self.dec.feed(piece);
        self.fed += piece.len();
        if let Some(e) = &self.err {
            // Failed for good: nothing is kept, the same error again.
            assert!(self.dec.is_failed());
            assert_eq!(self.dec.buffered(), 0);
            assert_eq!(self.dec.next_size().as_ref().err(), Some(e));
            assert_eq!(self.dec.next().as_ref().err(), Some(e));
            return;
        }
        assert_eq!(self.dec.buffered(), before + piece.len());
        assert!(
            self.dec.buffered() <= self.dec.max_message_size().max(SIZE_FIELD_LEN) + piece.len()
        );
        self.drain(all);
    }

    fn drain(&mut self, all: &[u8]) {
        loop {
            let size = self.dec.next_size();
            match self.dec.next() {
                Ok(Some((n, m))) => {
                    assert_eq!(size, Ok(Some(n)));
                    assert!(n <= self.dec.max_message_size());
                    self.consumed += n;
                    self.msgs.push((n, m));
                }
                Ok(None) => {
                    assert_eq!(size, Ok(None));
                    break;
                }
                Err(e) => {
                    // A bad size field fails both; a bad body only `next`.
                    assert!(size.as_ref() == Err(&e) || matches!(size, Ok(Some(_))));
                    assert!(self.dec.is_failed());
                    assert_eq!(self.dec.buffered(), 0);
                    self.err = Some(e);
                    return;
                }
            }
        }
        // Waiting for more: what is buffered is the start of one message,
        // within the limit and within its tag's bound.
        let buffered = self.dec.buffered();
        assert_eq!(self.consumed + buffered, self.fed);
        assert_eq!(self.fed, all.len());
        assert!(buffered < self.dec.max_message_size().max(SIZE_FIELD_LEN));
        let pending = &all[self.consumed..];
        if let Some(&[t0, t1]) = pending.get(SIZE_FIELD_LEN..SIZE_FIELD_LEN + 2) {
            let tag = u16::from_be_bytes([t0, t1]);
            if tag >= MIN_APP_TAG {
                let max = M::max_size(tag).expect("an unknown tag fails at once");
                assert!(
                    buffered < SIZE_FIELD_LEN + max,
                    "{buffered} bytes of tag {tag:#x}"
                );
            }
        }
    }

    fn is_failed(&self) -> bool {
        self.dec.is_failed()
    }
}

/// The same plaintext fed at once: the same messages, the same end.
fn same_as_at_once<M>(s: &Stream<M>, plaintext: &[u8], limit: usize)
where
    M: AppMessage + Clone + PartialEq + Debug,
{
    let mut once = Stream::<M>::new(limit);
    once.feed(plaintext, plaintext);
    assert_eq!(s.msgs, once.msgs);
    assert_eq!(s.err, once.err);
    assert_eq!(s.is_failed(), once.is_failed());
    if s.err.is_none() {
        assert_eq!(s.dec.buffered(), once.dec.buffered());
        assert_eq!(s.consumed, once.consumed);
    }
}

/// The messages re-encode to what decodes to them, and to the received
/// bytes where the encoding is canonical (points are normalised).
fn raw_round_trips(s: &Stream<RawMessage>, plaintext: &[u8]) {
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

fn shell_round_trips(s: &Stream<ShellMessage>, plaintext: &[u8]) {
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
fn shell_within_raw(raw: &Stream<RawMessage>, shell: &Stream<ShellMessage>) {
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
        if shell.msgs.len() == raw.msgs.len() {
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

    // The receiver: TCP reads, whole frames, chunks opened and fed.
    let mut rx = ChunkCipher::new(KEY, first_nonce());
    let mut raw = Stream::<RawMessage>::new(limit);
    let mut shell = Stream::<ShellMessage>::new(limit);
    let mut inbuf: Vec<u8> = Vec::new();
    let mut frame_at = 0; // in `inbuf`, which holds `wire[..read]`
    let mut read = 0;
    let mut opened = Vec::new();
    let mut tried = 0;
    let mut stopped = None;
    while read < wire.len() && stopped.is_none() {
        let n = 1 + (usize::from(wire[read]) * 31 + read + seed) % span;
        let end = (read + n).min(wire.len());
        inbuf.extend_from_slice(&wire[read..end]);
        read = end;
        loop {
            let avail = &mut inbuf[frame_at..];
            let Some(&[a, b]) = avail.get(..HEADER_LEN) else {
                break;
            };
            let body = match chunk_body_len([a, b]) {
                Ok(n) => n,
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            };
            let Some(chunk) = avail.get_mut(HEADER_LEN..HEADER_LEN + body) else {
                break;
            };
            tried += 1;
            match rx.open_chunk(chunk) {
                Ok(pt) => {
                    assert_eq!(pt.len(), body - TAG_LEN);
                    opened.extend_from_slice(pt);
                    let pt = &opened[opened.len() - pt.len()..];
                    raw.feed(pt, &opened);
                    shell.feed(pt, &opened);
                }
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
            frame_at += HEADER_LEN + body;
        }
    }

    // Exactly the genuine chunks before the first bad frame were opened,
    // and the stream ends as that frame deserves.
    assert_eq!(opened, sent.plaintext);
    match sent.first_bad {
        None => {
            assert_eq!(stopped, None);
            assert_eq!(frame_at, wire.len());
            assert_eq!(tried, sent.chunks);
        }
        Some(bad) => {
            assert_eq!(frame_at, bad);
            let want = match wire.get(bad..bad + HEADER_LEN) {
                None => None,
                Some(&[a, b]) => match chunk_body_len([a, b]) {
                    Err(e) => Some(e),
                    Ok(n) if bad + HEADER_LEN + n > wire.len() => None,
                    Ok(_) => Some(CryptoError::Decipher),
                },
                Some(_) => unreachable!(),
            };
            assert_eq!(stopped, want, "the frame at {bad}");
            let failed_open = usize::from(want == Some(CryptoError::Decipher));
            assert_eq!(tried, sent.chunks + failed_open);
        }
    }
    // The nonce moves on with every chunk tried, opened or not.
    assert_eq!(rx.nonce(), nonce_plus(tried));

    same_as_at_once(&raw, &opened, limit);
    same_as_at_once(&shell, &opened, limit);
    raw_round_trips(&raw, &opened);
    shell_round_trips(&shell, &opened);
    shell_within_raw(&raw, &shell);
});
