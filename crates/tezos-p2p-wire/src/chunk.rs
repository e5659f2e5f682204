//! The data phase (wire spec §5): encrypted chunks both ways, sans-IO.
//!
//! After the handshake, each direction is a stream of chunks
//! `u16 len || MAC || ciphertext`, each sealed with the session key and that
//! direction's nonce, which moves on by one per chunk. Messages are cut out
//! of the decrypted stream whatever the chunk boundaries (§5.5): a message
//! may span many chunks and a chunk may carry the ends of several messages.
//!
//! * [`ChunkWriter`] packs encoded messages into chunks of at most
//!   `binary_chunks_size` bytes ([`ChunkSize`]), seals them and holds the
//!   bytes to write ([`ChunkWriter::output`], [`ChunkWriter::advance`]).
//! * [`ChunkReader`] takes bytes as they come from the socket
//!   ([`ChunkReader::feed`], or [`ChunkReader::recv_buf`] to read into it
//!   without a copy), opens whole chunks in place, feeds their plaintext to
//!   a [`MessageDecoder`] (or opens them straight into the buffer of a
//!   large message's body, which the message then keeps) and hands out
//!   messages ([`ChunkReader::next_size`], [`ChunkReader::next_message`])
//!   or the error that ended the stream ([`ReadError`]).
//!
//! Both are plain values: no clock, no socket, no allocation that the peer
//! controls beyond one chunk and one message of the decoder's limit. The
//! [`SessionCipher`] the handshake hands over makes one of each
//! ([`SessionCipher::split`]).

use thiserror::Error;

use crate::crypto::{
    chunk_body_len, ChunkCipher, CryptoError, Nonce, SessionCipher, CHUNK_OVERHEAD, HEADER_LEN,
    MAX_CHUNK_PLAINTEXT, MAX_CHUNK_SIZE, MIN_BINARY_CHUNKS_SIZE, TAG_LEN,
};
use crate::encoding::DecodeError;
use crate::message::{AppMessage, MessageDecoder, P2pMessage};

// ---------------------------------------------------------------------------
// Chunk size

/// A `binary_chunks_size` outside of `19..=65535`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid chunks size {value} (expected {min}..={max})")]
pub struct InvalidChunksSize {
    /// The size asked for.
    pub value: usize,
    /// The smallest valid size.
    pub min: usize,
    /// The largest valid size.
    pub max: usize,
}

/// A valid `binary_chunks_size`: the most bytes one chunk we send takes on
/// the wire, header included (19..=65535; Octez's default is the largest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkSize(u16);

impl ChunkSize {
    /// The largest chunks, 65 535 bytes (65 517 of plaintext).
    pub const MAX: ChunkSize = ChunkSize(MAX_CHUNK_SIZE as u16);

    /// Octez's `check_binary_chunks_size`: the one check of a
    /// `binary_chunks_size`, wherever it comes from (options, limits, a
    /// configuration file).
    pub fn new(binary_chunks_size: usize) -> Result<Self, InvalidChunksSize> {
        if (MIN_BINARY_CHUNKS_SIZE..=MAX_CHUNK_SIZE).contains(&binary_chunks_size) {
            Ok(ChunkSize(binary_chunks_size as u16))
        } else {
            Err(InvalidChunksSize {
                value: binary_chunks_size,
                min: MIN_BINARY_CHUNKS_SIZE,
                max: MAX_CHUNK_SIZE,
            })
        }
    }

    /// The size given, or [`ChunkSize::MAX`] for `None`.
    pub fn from_option(binary_chunks_size: Option<usize>) -> Result<Self, InvalidChunksSize> {
        binary_chunks_size.map_or(Ok(Self::MAX), Self::new)
    }

    /// Bytes on the wire per full chunk, header included.
    pub fn get(self) -> usize {
        usize::from(self.0)
    }

    /// Plaintext bytes per full chunk: the size less the header and the tag.
    pub fn plaintext(self) -> usize {
        usize::from(self.0) - CHUNK_OVERHEAD
    }
}

impl Default for ChunkSize {
    fn default() -> Self {
        Self::MAX
    }
}

/// Octez's `check_binary_chunks_size`: the plaintext bytes per chunk that a
/// chunk size of `size` bytes on the wire allows ([`ChunkSize::new`]).
pub fn check_binary_chunks_size(size: usize) -> Result<usize, InvalidChunksSize> {
    ChunkSize::new(size).map(ChunkSize::plaintext)
}

// ---------------------------------------------------------------------------
// Session

impl SessionCipher {
    /// The data phase of the session: a writer of chunks of at most
    /// `chunk_size` bytes and a reader of messages of at most
    /// `max_message_size` bytes (size field included).
    pub fn split<A: AppMessage>(
        self,
        chunk_size: ChunkSize,
        max_message_size: usize,
    ) -> (ChunkWriter, ChunkReader<A>) {
        let writer = ChunkWriter::new(self.sender(), chunk_size);
        let reader = ChunkReader::new(self.receiver(), max_message_size);
        (writer, reader)
    }
}

// ---------------------------------------------------------------------------
// Writer

/// Seals encoded messages into chunks (wire spec §5.5), sans-IO.
///
/// The packing policy: a message is sealed in full chunks straight from its
/// bytes; what is left of it (or a whole small message) starts a chunk
/// shared with the messages pushed after it, which is sealed once full or at
/// [`flush`](Self::flush). So messages pushed together cost one chunk's
/// crypto rather than one each, and no chunk exceeds the [`ChunkSize`]. The
/// shared chunk is filled and sealed in place in the output buffer.
///
/// A runtime pushes what it has ([`push`](Self::push), bounded by a batch
/// size), flushes, writes [`output`](Self::output) to its socket and
/// reports what was written with [`advance`](Self::advance).
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    cipher: ChunkCipher,
    size: ChunkSize,
    /// Sealed chunks, written up to `written`; then, from `open`, the chunk
    /// being filled: room for its header and tag, then its plaintext.
    out: Vec<u8>,
    written: usize,
    open: Option<usize>,
}

impl ChunkWriter {
    /// A writer whose next chunk uses `cipher`'s nonce.
    pub fn new(cipher: ChunkCipher, size: ChunkSize) -> Self {
        ChunkWriter {
            cipher,
            size,
            out: Vec::new(),
            written: 0,
            open: None,
        }
    }

    /// The size of the chunks it seals.
    pub fn chunk_size(&self) -> ChunkSize {
        self.size
    }

    /// The nonce of the next chunk sealed.
    pub fn nonce(&self) -> Nonce {
        self.cipher.nonce()
    }

    /// Where sealed chunks end (the shared chunk under way starts there).
    fn sealed_len(&self) -> usize {
        self.open.unwrap_or(self.out.len())
    }

    /// Seals `data`, the bytes of one message or the rest of one, in order
    /// after what was pushed before. Takes bytes until all are taken or
    /// [`output`](Self::output) holds `batch` bytes or more, and returns how
    /// many it took: push the rest once the output is written.
    pub fn push(&mut self, data: &[u8], batch: usize) -> usize {
        let piece = self.size.plaintext();
        let mut taken = 0;
        while taken < data.len() && self.sealed_len() - self.written < batch {
            let rest = &data[taken..];
            match self.open {
                None if rest.len() >= piece => {
                    seal_within(&mut self.cipher, &rest[..piece], &mut self.out);
                    taken += piece;
                }
                _ => {
                    let start = match self.open {
                        Some(start) => start,
                        None => {
                            let start = self.out.len();
                            self.out.reserve(CHUNK_OVERHEAD + piece.min(rest.len()));
                            self.out.extend_from_slice(&[0; CHUNK_OVERHEAD]);
                            self.open = Some(start);
                            start
                        }
                    };
                    let filled = self.out.len() - start - CHUNK_OVERHEAD;
                    let n = rest.len().min(piece - filled);
                    self.out.extend_from_slice(&rest[..n]);
                    taken += n;
                    if filled + n == piece {
                        self.seal_open();
                    }
                }
            }
        }
        taken
    }

    /// Seals the shared chunk under way, if any: everything pushed is then
    /// in [`output`](Self::output).
    pub fn flush(&mut self) {
        if self.open.is_some() {
            self.seal_open();
        }
    }

    fn seal_open(&mut self) {
        if let Some(start) = self.open.take() {
            self.cipher.seal_frame_in_place(&mut self.out[start..]);
        }
    }

    /// Sealed bytes not yet written, in order.
    pub fn output(&self) -> &[u8] {
        &self.out[self.written..self.sealed_len()]
    }

    /// Marks the first `n` bytes of [`output`](Self::output) as written.
    /// Once all is written the buffer is reused (its memory kept: see
    /// [`into_cipher`](Self::into_cipher) to drop it).
    pub fn advance(&mut self, n: usize) {
        let sealed = self.sealed_len();
        self.written = (self.written + n).min(sealed);
        if self.written == sealed {
            // Without a shared chunk under way (as after `flush`), this
            // only truncates; with one, its few bytes move to the front.
            self.out.drain(..sealed);
            self.open = self.open.map(|_| 0);
            self.written = 0;
        }
    }

    /// Whether nothing is under way: all sealed bytes written and no shared
    /// chunk open.
    pub fn is_idle(&self) -> bool {
        self.out.is_empty()
    }

    /// The cipher, to keep while idle without any buffer; what is not
    /// written is dropped. [`ChunkWriter::new`] resumes.
    pub fn into_cipher(self) -> ChunkCipher {
        self.cipher
    }
}

/// Seals at most [`MAX_CHUNK_PLAINTEXT`] bytes, which cannot fail.
fn seal_within(cipher: &mut ChunkCipher, plaintext: &[u8], out: &mut Vec<u8>) {
    debug_assert!(plaintext.len() <= MAX_CHUNK_PLAINTEXT);
    let sealed = cipher.seal_chunk(plaintext, out);
    debug_assert!(sealed.is_ok());
}

// ---------------------------------------------------------------------------
// Reader

/// What ends a received stream: the frame or the message that is bad
/// (wire spec §10). Once returned, the reader returns it again and takes
/// no more bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A chunk whose length field is below the tag's 16 bytes
    /// (`Invalid_incoming_ciphertext_size`).
    #[error("invalid incoming ciphertext size {0}")]
    InvalidIncomingCiphertextSize(usize),
    /// A chunk whose MAC does not verify (`Decipher_error`).
    #[error("decipher error")]
    Decipher,
    /// Plaintext that is no message (`Decoding_error`).
    #[error("decoding error: {0}")]
    Decoding(#[from] DecodeError),
}

impl From<CryptoError> for ReadError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::InvalidIncomingCiphertextSize(n) => {
                ReadError::InvalidIncomingCiphertextSize(n)
            }
            // Opening gives no other error.
            _ => ReadError::Decipher,
        }
    }
}

/// Opens chunks as they arrive and cuts messages out of their plaintext,
/// sans-IO.
///
/// Bytes go in with [`feed`](Self::feed) or, without a copy, by reading
/// from the socket into [`recv_buf`](Self::recv_buf). Chunks are opened in
/// place (or, inside the body of a large application message, straight
/// into the buffer that message keeps: see [`AppMessage::decode_owned`]),
/// lazily: [`next_size`](Self::next_size) opens whole chunks only
/// until a message is whole, so the decoder holds at most one message and
/// one chunk, and a runtime that stops taking messages (a full queue) stops
/// the opening too. When it returns `Ok(None)`, what is left unopened is
/// less than a chunk ([`chunk_remaining`](Self::chunk_remaining) tells how
/// much more completes it): then read more.
///
/// For a budget of partially received messages, a runtime looks at
/// [`next_announced_size`](Self::next_announced_size) before reading more
/// of a large message, and [`reserve_next`](Self::reserve_next) /
/// [`shrink`](Self::shrink) size the decoder's buffer. With room made for a
/// large message, its body is opened into it without a copy or a
/// reallocation; [`read_ahead`](Self::read_ahead) tells how much of it to
/// read at once.
///
/// The first bad frame or message ends the stream: its [`ReadError`] is
/// returned from then on, the buffers are freed (nothing is unopened or
/// buffered) and input is discarded.
/// The nonce moves on with every chunk opened, whether it opens or not.
pub struct ChunkReader<A> {
    cipher: ChunkCipher,
    /// Bytes received; those from `pos` are not opened yet.
    buf: Vec<u8>,
    pos: usize,
    decoder: MessageDecoder<A>,
    /// The frame error that ended the stream.
    error: Option<ReadError>,
}

impl<A> std::fmt::Debug for ChunkReader<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("nonce", &self.cipher.nonce())
            .field("unopened", &(self.buf.len().saturating_sub(self.pos)))
            .field("decoder", &self.decoder)
            .field("error", &self.error)
            .finish()
    }
}

impl<A: AppMessage> ChunkReader<A> {
    /// A reader whose next chunk opens with `cipher`'s nonce, refusing
    /// messages over `max_message_size` bytes (size field included; capped
    /// at [`MAX_MESSAGE_SIZE`](crate::message::MAX_MESSAGE_SIZE)).
    pub fn new(cipher: ChunkCipher, max_message_size: usize) -> Self {
        ChunkReader {
            cipher,
            buf: Vec::new(),
            pos: 0,
            decoder: MessageDecoder::with_max_message_size(max_message_size),
            error: None,
        }
    }

    /// The nonce of the next chunk opened.
    pub fn nonce(&self) -> Nonce {
        self.cipher.nonce()
    }

    /// The limit on a whole message, size field included.
    pub fn max_message_size(&self) -> usize {
        self.decoder.max_message_size()
    }

    /// Whether the stream has ended with an error.
    pub fn is_failed(&self) -> bool {
        self.error.is_some()
    }

    /// Received bytes not yet opened.
    pub fn unopened(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Plaintext opened and not yet handed out: the start of a message.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Whether nothing is under way: no byte unopened, no plaintext
    /// buffered. The reader can then give its cipher back
    /// ([`into_cipher`](Self::into_cipher)) and hold no memory.
    pub fn is_idle(&self) -> bool {
        self.unopened() == 0 && self.buffered() == 0
    }

    /// The cipher, to keep while idle; anything buffered is dropped.
    /// [`ChunkReader::new`] resumes.
    pub fn into_cipher(self) -> ChunkCipher {
        self.cipher
    }

    /// Drops the bytes before `pos`.
    fn compact(&mut self) {
        if self.pos > 0 {
            let pos = self.pos.min(self.buf.len());
            self.buf.drain(..pos);
            self.pos = 0;
        }
    }

    /// Appends bytes received (discarded once the stream has failed).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.is_failed() {
            return;
        }
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer to read into straight from the socket, with room for
    /// `additional` more bytes: append to it only (as `read_buf` does),
    /// then call [`next_size`](Self::next_size). Once the stream has failed,
    /// what is read there is discarded at the next call.
    pub fn recv_buf(&mut self, additional: usize) -> &mut Vec<u8> {
        if self.is_failed() {
            self.buf.clear();
            self.pos = 0;
        } else {
            self.compact();
        }
        self.buf.reserve(additional);
        &mut self.buf
    }

    /// The memory [`recv_buf`](Self::recv_buf) holds.
    pub fn recv_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Gives the receive buffer's memory back if it holds nothing unopened
    /// (for a runtime whose socket has nothing more for now).
    pub fn release_recv_buf(&mut self) {
        if self.unopened() == 0 {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }

    /// How many more bytes complete the chunk under way: a runtime that
    /// reads at least that much gets a large chunk in one read. 0 before
    /// its header is there.
    pub fn chunk_remaining(&self) -> usize {
        let avail = self.buf.get(self.pos..).unwrap_or_default();
        match avail.get(..HEADER_LEN) {
            Some(&[a, b]) => {
                (HEADER_LEN + usize::from(u16::from_be_bytes([a, b]))).saturating_sub(avail.len())
            }
            _ => 0,
        }
    }

    /// How much to read next to go on with a large message in few reads
    /// that end on chunk boundaries: the rest of the chunk under way (as
    /// [`chunk_remaining`](Self::chunk_remaining)), then, while the message
    /// under way needs more than that chunk brings, whole chunks of the
    /// same size, up to `max` bytes in all (but at least the rest of the
    /// chunk). 0 before the chunk's header is there.
    pub fn read_ahead(&self, max: usize) -> usize {
        let rest = self.chunk_remaining();
        let avail = self.buf.get(self.pos..).unwrap_or_default();
        let Some(&[a, b]) = avail.get(..HEADER_LEN) else {
            return rest;
        };
        let body = usize::from(u16::from_be_bytes([a, b]));
        if body <= TAG_LEN {
            return rest;
        }
        let (chunk, plain) = (HEADER_LEN + body, body - TAG_LEN);
        let mut need = self.decoder.next_remaining().saturating_sub(plain);
        let mut want = rest;
        while need > 0 && want + chunk <= max {
            want += chunk;
            need = need.saturating_sub(plain);
        }
        want
    }

    /// The error that ended the stream, if any, dropping what was read
    /// since into [`recv_buf`](Self::recv_buf).
    fn failed(&mut self) -> Option<ReadError> {
        let e = self.error.clone()?;
        self.buf = Vec::new();
        self.pos = 0;
        Some(e)
    }

    fn fail(&mut self, e: impl Into<ReadError>) -> ReadError {
        let e = e.into();
        self.error = Some(e.clone());
        self.buf = Vec::new();
        self.pos = 0;
        // Nothing is kept: a fresh (empty) decoder.
        self.decoder = MessageDecoder::with_max_message_size(self.decoder.max_message_size());
        e
    }

    /// Opens the next chunk if it is whole and feeds its plaintext to the
    /// decoder: `Ok(false)` if more bytes are needed.
    fn open_chunk(&mut self) -> Result<bool, ReadError> {
        let avail = self.buf.get_mut(self.pos..).unwrap_or_default();
        let Some(&[a, b]) = avail.get(..HEADER_LEN) else {
            return Ok(false);
        };
        let body = match chunk_body_len([a, b]) {
            Ok(n) => n,
            Err(e) => return Err(self.fail(e)),
        };
        let Some(chunk) = avail.get_mut(HEADER_LEN..HEADER_LEN + body) else {
            return Ok(false);
        };
        // A chunk whose plaintext all belongs to the body of a large
        // message is opened straight into that body's buffer; any other
        // is opened in place and its plaintext fed to the decoder.
        let opened = match self.decoder.body_room(body - TAG_LEN) {
            Some(dst) => self.cipher.open_chunk_into(chunk, dst),
            None => self
                .cipher
                .open_chunk(chunk)
                .map(|pt| self.decoder.feed(pt)),
        };
        match opened {
            Ok(()) => {
                self.pos += HEADER_LEN + body;
                Ok(true)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The size on the wire (size field included) of the next message once
    /// it is whole, opening whole chunks until it is: `Ok(None)` when more
    /// bytes are needed. A message already whole is told before the next
    /// chunk is opened, so the bytes of a bad frame after it do not hide
    /// it.
    pub fn next_size(&mut self) -> Result<Option<usize>, ReadError> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        loop {
            match self.decoder.next_size() {
                Ok(Some(size)) => return Ok(Some(size)),
                Ok(None) => {}
                Err(e) => return Err(self.fail(e)),
            }
            if !self.open_chunk()? {
                return Ok(None);
            }
        }
    }

    /// The next message and its size on the wire, opening chunks as
    /// [`next_size`](Self::next_size) does; `Ok(None)` when more bytes are
    /// needed.
    pub fn next_message(&mut self) -> Result<Option<(usize, P2pMessage<A>)>, ReadError> {
        if self.next_size()?.is_none() {
            return Ok(None);
        }
        self.decoder.next().map_err(|e| self.fail(e))
    }

    /// The whole size (size field included) the next message announces,
    /// once its size field and tag are opened, whether or not its body is:
    /// lets a runtime take room for a large message before it reads the
    /// rest ([`MessageDecoder::next_announced_size`]).
    pub fn next_announced_size(&mut self) -> Result<Option<usize>, ReadError> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        self.decoder.next_announced_size().map_err(|e| self.fail(e))
    }

    /// Makes room in the decoder for the whole next message plus `extra`
    /// bytes ([`MessageDecoder::reserve_next`]).
    pub fn reserve_next(&mut self, extra: usize) {
        self.decoder.reserve_next(extra);
    }

    /// Gives the decoder's memory back down to `keep` bytes
    /// ([`MessageDecoder::shrink`]).
    pub fn shrink(&mut self, keep: usize) {
        self.decoder.shrink(keep);
    }

    /// The memory the decoder holds for plaintext.
    pub fn decoder_capacity(&self) -> usize {
        self.decoder.capacity()
    }
}

#[cfg(test)]
mod tests;
