//! Authenticated, encrypted connections: Octez's `P2p_socket` API
//! (`shared/seed/p2p_socket_api.txt`) over tokio (wire spec §3–10).
//!
//! [`authenticate`] runs the first two steps of the handshake (connection
//! messages, metadata) by driving the wire crate's state machine; the
//! caller then decides with [`AuthenticatedConnection::accept`] or
//! [`AuthenticatedConnection::nack`]. An accepted [`Connection`] owns two
//! tasks: a reader that opens chunks, cuts messages out of the decrypted
//! stream and pushes them into a read queue bounded in bytes (so a slow
//! application pushes back down to TCP), and a writer that pops encoded
//! messages, seals them into chunks and writes them. Both tasks go
//! through the [`IoScheduler`](crate::scheduler::IoScheduler) for
//! bandwidth limits and statistics, and end with the connection.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{oneshot, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument};

use tezos_p2p_wire::crypto::{
    self, chunk_body_len, ChunkCipher, CryptoError, InvalidChunksSize, HEADER_LEN,
    MAX_CHUNK_PLAINTEXT,
};
use tezos_p2p_wire::encoding::{DecodeError, EncodeError};
use tezos_p2p_wire::handshake::{Handshake, HandshakeConfig, HandshakeError, Status};
use tezos_p2p_wire::identity::{Identity, PeerId, PowTarget};
use tezos_p2p_wire::message::{AppMessage, ConnMeta, MessageDecoder, P2pMessage};
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::rejection::Motive;
use tezos_p2p_wire::version::NetworkVersion;

use crate::queue;
use crate::scheduler::{ConnectionIo, Stat};
use crate::transport::BoxStream;

/// Errors of the socket layer, named after Octez's `P2p_errors`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SocketError {
    /// The peer's stamp does not reach our target.
    #[error("not enough proof of work from {0}")]
    NotEnoughProofOfWork(PeerId),
    /// The peer is ourselves, reached at this point.
    #[error("connected to myself at {0}")]
    Myself(SocketAddr),
    /// The peer closed the connection (EOF, reset), or it was closed here.
    #[error("connection closed")]
    ConnectionClosed,
    /// Another IO error (`Connection_error`).
    #[error("connection error: {0}")]
    ConnectionError(String),
    /// A chunk that does not decrypt.
    #[error("decipher error")]
    DecipherError,
    /// The Ack exchange failed to decrypt.
    #[error("invalid authentication")]
    InvalidAuth,
    /// The peer refused us with a Nack (`None` points for `Nack_v_0`).
    #[error("rejected by nack ({motive})")]
    RejectedByNack {
        /// Why.
        motive: Motive,
        /// Points the peer suggested instead.
        alternative_points: Option<Vec<Point>>,
    },
    /// The peer hung up during the Ack exchange.
    #[error("rejected socket connection")]
    RejectedSocketConnection,
    /// A chunk of more than 65 517 plaintext bytes was to be sent.
    #[error("invalid message size")]
    InvalidMessageSize,
    /// A chunk whose length field is below 16.
    #[error("invalid incoming ciphertext size {0}")]
    InvalidIncomingCiphertextSize(usize),
    /// A value that cannot be encoded.
    #[error("encoding error: {0}")]
    Encoding(EncodeError),
    /// Bytes from the peer that do not decode.
    #[error("decoding error: {0}")]
    Decoding(DecodeError),
    /// A `binary_chunks_size` out of range.
    #[error(transparent)]
    InvalidChunksSize(#[from] InvalidChunksSize),
    /// The peer's public key has low order.
    #[error("invalid peer public key (low order)")]
    InvalidPublicKey,
    /// The operation was cancelled.
    #[error("canceled")]
    Canceled,
    /// The operation did not finish in time.
    #[error("timeout")]
    Timeout,
}

impl SocketError {
    fn from_handshake(e: HandshakeError, remote: SocketAddr) -> Self {
        match e {
            HandshakeError::NotEnoughProofOfWork(id) => SocketError::NotEnoughProofOfWork(id),
            HandshakeError::Myself => SocketError::Myself(remote),
            HandshakeError::Decoding(e) => SocketError::Decoding(e),
            HandshakeError::Encoding(e) => SocketError::Encoding(e),
            HandshakeError::Decipher => SocketError::DecipherError,
            HandshakeError::InvalidAuth => SocketError::InvalidAuth,
            HandshakeError::InvalidIncomingCiphertextSize(n) => {
                SocketError::InvalidIncomingCiphertextSize(n)
            }
            HandshakeError::LowOrderPublicKey => SocketError::InvalidPublicKey,
            HandshakeError::RejectedByNack {
                motive,
                alternative_points,
            } => SocketError::RejectedByNack {
                motive,
                alternative_points,
            },
            HandshakeError::InvalidState(s) => SocketError::ConnectionError(s.to_string()),
        }
    }

    fn from_io(e: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match e.kind() {
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => {
                SocketError::ConnectionClosed
            }
            _ => SocketError::ConnectionError(e.to_string()),
        }
    }

    fn from_crypto(e: CryptoError) -> Self {
        match e {
            CryptoError::Decipher => SocketError::DecipherError,
            CryptoError::InvalidIncomingCiphertextSize(n) => {
                SocketError::InvalidIncomingCiphertextSize(n)
            }
            CryptoError::InvalidMessageSize(_) => SocketError::InvalidMessageSize,
            CryptoError::LowOrderKey => SocketError::InvalidPublicKey,
        }
    }
}

/// What is known of an authenticated peer (Octez's `P2p_connection.Info`).
#[derive(Debug, Clone)]
pub struct ConnectionInfo<M> {
    /// True when the peer connected to us.
    pub incoming: bool,
    /// The peer's id.
    pub peer_id: PeerId,
    /// The peer's address: its IP and, for an outgoing connection, the port
    /// we dialled; for an incoming one, the port it advertises (if any).
    pub id_point: (std::net::IpAddr, Option<u16>),
    /// The TCP port of the peer's end of this socket.
    pub remote_socket_port: u16,
    /// The version the peer announced.
    pub announced_version: NetworkVersion,
    /// Whether the peer runs in private mode (from its metadata).
    pub private_node: bool,
    /// Our metadata.
    pub local_metadata: M,
    /// The peer's metadata.
    pub remote_metadata: M,
}

impl<M> ConnectionInfo<M> {
    /// The peer's listening point, when known.
    pub fn point(&self) -> Option<Point> {
        self.id_point
            .1
            .map(|port| Point::new(self.id_point.0, port))
    }
}

/// Parameters of [`authenticate`].
#[derive(Debug, Clone)]
pub struct AuthConfig<M> {
    /// Our identity.
    pub identity: Arc<Identity>,
    /// The target the peer's stamp must reach.
    pub pow_target: PowTarget,
    /// True when the peer connected to us.
    pub incoming: bool,
    /// The peer's socket address.
    pub remote_addr: SocketAddr,
    /// The listening port we advertise.
    pub listening_port: Option<u16>,
    /// The version we announce.
    pub version: NetworkVersion,
    /// Our metadata.
    pub metadata: M,
    /// Cancels the handshake.
    pub cancel: CancellationToken,
    /// Bounds the whole handshake (Octez: 5 s incoming, 10 s outgoing).
    pub timeout: Option<Duration>,
}

/// Runs `fut` unless cancelled or out of time.
async fn guarded<T>(
    cancel: &CancellationToken,
    timeout: Option<Duration>,
    fut: impl std::future::Future<Output = Result<T, SocketError>>,
) -> Result<T, SocketError> {
    let timed = async {
        match timeout {
            Some(d) => tokio::time::timeout(d, fut)
                .await
                .unwrap_or(Err(SocketError::Timeout)),
            None => fut.await,
        }
    };
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(SocketError::Canceled),
        r = timed => r,
    }
}

/// A connection past the first two handshake steps, waiting for
/// [`accept`](Self::accept) or [`nack`](Self::nack).
pub struct AuthenticatedConnection<M> {
    stream: BoxStream,
    io: ConnectionIo,
    handshake: Handshake<M>,
    /// Bytes read past the peer's metadata (its Ack, maybe more).
    pending: Vec<u8>,
    info: ConnectionInfo<M>,
    remote_addr: SocketAddr,
}

impl<M> fmt::Debug for AuthenticatedConnection<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AuthenticatedConnection({}@{})",
            self.info.peer_id, self.remote_addr
        )
    }
}

/// Writes `bytes` through the scheduler.
async fn write_scheduled(
    stream: &mut (impl tokio::io::AsyncWrite + Unpin),
    io: &ConnectionIo,
    bytes: &[u8],
) -> Result<(), SocketError> {
    let mut off = 0;
    while off < bytes.len() {
        let n = io.reserve_write(bytes.len() - off).await.max(1);
        let n = n.min(bytes.len() - off);
        stream
            .write_all(&bytes[off..off + n])
            .await
            .map_err(SocketError::from_io)?;
        io.record_write(n);
        off += n;
    }
    Ok(())
}

/// What an idle connection reads into: a stack buffer, so that waiting for
/// a peer costs no heap memory.
const IDLE_READ: usize = 512;

/// Reads at most `max` more bytes into `buf` through the scheduler. A
/// buffer without capacity is filled through a small stack buffer first,
/// so an idle connection holds no read buffer.
async fn read_scheduled(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    io: &ConnectionIo,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<(), SocketError> {
    let n = if buf.capacity() == 0 {
        let mut small = [0u8; IDLE_READ];
        let want = io
            .reserve_read(IDLE_READ.min(max))
            .await
            .clamp(1, IDLE_READ);
        let n = stream
            .read(&mut small[..want])
            .await
            .map_err(SocketError::from_io)?;
        buf.extend_from_slice(&small[..n]);
        n
    } else {
        let want = io.reserve_read(max).await.clamp(1, max.max(1));
        buf.reserve(want);
        stream
            .read_buf(&mut (&mut *buf).limit(want))
            .await
            .map_err(SocketError::from_io)?
    };
    if n == 0 {
        return Err(SocketError::ConnectionClosed);
    }
    io.record_read(n);
    Ok(())
}

/// Moves bytes between `stream` and `hs` until the handshake stops
/// reading. Writing and reading go on at the same time: Octez writes its
/// connection message before it reads, and two peers doing so over a pipe
/// smaller than the message would otherwise wait for each other forever.
async fn drive<M: ConnMeta>(
    stream: &mut BoxStream,
    io: &ConnectionIo,
    hs: &mut Handshake<M>,
    pending: &mut Vec<u8>,
    remote: SocketAddr,
) -> Result<(), SocketError> {
    let (mut rd, mut wr) = tokio::io::split(&mut *stream);
    let mut out: Vec<u8> = Vec::new();
    loop {
        out.extend(hs.take_output());
        let reading = matches!(
            hs.status(),
            Status::ReadingConnectionMessage | Status::ReadingMetadata | Status::ReadingAck
        );
        if out.is_empty() && !reading {
            wr.flush().await.map_err(SocketError::from_io)?;
            return Ok(());
        }
        if reading && !pending.is_empty() {
            let n = hs
                .feed(pending)
                .map_err(|e| SocketError::from_handshake(e, remote))?;
            pending.drain(..n);
            if n > 0 {
                continue;
            }
        }
        tokio::select! {
            biased;
            written = async {
                let grant = io.reserve_write(out.len()).await.clamp(1, out.len());
                wr.write(&out[..grant]).await
            }, if !out.is_empty() => {
                let n = written.map_err(SocketError::from_io)?;
                if n == 0 {
                    return Err(SocketError::ConnectionClosed);
                }
                io.record_write(n);
                out.drain(..n);
                if out.is_empty() {
                    wr.flush().await.map_err(SocketError::from_io)?;
                }
            }
            read = read_scheduled(&mut rd, io, pending, 4096), if reading => read?,
        }
    }
}

/// Steps 1 and 2 of the handshake over `stream`: connection messages
/// (with the PoW check) and metadata (with the `Myself` check).
pub async fn authenticate<M: ConnMeta>(
    mut stream: BoxStream,
    io: ConnectionIo,
    cfg: AuthConfig<M>,
) -> Result<(ConnectionInfo<M>, AuthenticatedConnection<M>), SocketError> {
    let mut handshake = Handshake::new(HandshakeConfig {
        identity: (*cfg.identity).clone(),
        pow_target: cfg.pow_target,
        incoming: cfg.incoming,
        listening_port: cfg.listening_port,
        version: cfg.version,
        metadata: cfg.metadata.clone(),
        message_nonce: rand::random(),
    })
    .map_err(|e| SocketError::from_handshake(e, cfg.remote_addr))?;
    let mut pending = Vec::new();
    guarded(
        &cfg.cancel,
        cfg.timeout,
        drive(
            &mut stream,
            &io,
            &mut handshake,
            &mut pending,
            cfg.remote_addr,
        ),
    )
    .await?;
    let remote = handshake
        .remote()
        .ok_or_else(|| SocketError::ConnectionError("no remote".into()))?;
    let remote_metadata = remote
        .metadata
        .clone()
        .ok_or_else(|| SocketError::ConnectionError("no metadata".into()))?;
    let msg = &remote.connection_message;
    let id_port = if cfg.incoming {
        msg.port
    } else {
        Some(cfg.remote_addr.port())
    };
    let info = ConnectionInfo {
        incoming: cfg.incoming,
        peer_id: remote.peer_id,
        id_point: (cfg.remote_addr.ip(), id_port),
        remote_socket_port: cfg.remote_addr.port(),
        announced_version: msg.version.clone(),
        private_node: remote_metadata.private_node(),
        local_metadata: cfg.metadata,
        remote_metadata,
    };
    let auth = AuthenticatedConnection {
        stream,
        io,
        handshake,
        pending,
        info: info.clone(),
        remote_addr: cfg.remote_addr,
    };
    Ok((info, auth))
}

/// Parameters of [`AuthenticatedConnection::accept`].
#[derive(Debug, Clone)]
pub struct AcceptOptions {
    /// Bound of the read queue in bytes (Octez: 8 MiB).
    pub incoming_message_queue_size: usize,
    /// Bound of the write queue in bytes (Octez: 8 MiB).
    pub outgoing_message_queue_size: usize,
    /// Size of the chunks we send, header included (19..=65535).
    pub binary_chunks_size: Option<usize>,
    /// Largest message we accept, size field included (Octez: 100 MiB).
    pub max_message_size: usize,
    /// Cancels the Ack exchange, and later the connection.
    pub cancel: CancellationToken,
    /// Bounds the Ack exchange.
    pub timeout: Option<Duration>,
}

impl Default for AcceptOptions {
    fn default() -> Self {
        AcceptOptions {
            incoming_message_queue_size: 8 << 20,
            outgoing_message_queue_size: 8 << 20,
            binary_chunks_size: None,
            max_message_size: tezos_p2p_wire::message::MAX_MESSAGE_SIZE,
            cancel: CancellationToken::new(),
            timeout: None,
        }
    }
}

/// Octez's `check_binary_chunks_size`.
pub fn check_binary_chunks_size(size: usize) -> Result<(), SocketError> {
    crypto::check_binary_chunks_size(size)?;
    Ok(())
}

impl<M: ConnMeta> AuthenticatedConnection<M> {
    /// What is known of the peer.
    pub fn info(&self) -> &ConnectionInfo<M> {
        &self.info
    }

    /// Step 3, refusing: sends a Nack with `motive` and up to 100
    /// `alternative_points` (`Nack_v_0` to a peer announcing p2p version 0),
    /// then closes. More than 100 points is an error and nothing is sent.
    pub async fn nack(
        mut self,
        motive: Motive,
        alternative_points: Vec<Point>,
    ) -> Result<(), SocketError> {
        self.handshake
            .nack(motive, alternative_points)
            .map_err(|e| SocketError::from_handshake(e, self.remote_addr))?;
        let out = self.handshake.take_output();
        write_scheduled(&mut self.stream, &self.io, &out).await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    /// Step 3, accepting: sends Ack, waits for the peer's, and starts the
    /// connection's reader and writer.
    pub async fn accept<A: AppMessage>(
        mut self,
        opts: AcceptOptions,
    ) -> Result<Connection<A, M>, SocketError> {
        let piece = match opts.binary_chunks_size {
            Some(size) => crypto::check_binary_chunks_size(size)?,
            None => MAX_CHUNK_PLAINTEXT,
        };
        self.handshake
            .accept()
            .map_err(|e| SocketError::from_handshake(e, self.remote_addr))?;
        let remote = self.remote_addr;
        guarded(
            &opts.cancel,
            opts.timeout,
            drive(
                &mut self.stream,
                &self.io,
                &mut self.handshake,
                &mut self.pending,
                remote,
            ),
        )
        .await
        .map_err(|e| match e {
            SocketError::ConnectionClosed => SocketError::RejectedSocketConnection,
            SocketError::DecipherError => SocketError::InvalidAuth,
            e => e,
        })?;
        let session = self
            .handshake
            .into_session()
            .map_err(|e| SocketError::from_handshake(e, remote))?;
        Ok(Connection::<A, M>::start(
            self.stream,
            Arc::new(self.io),
            session.sender,
            session.receiver,
            self.pending,
            self.info,
            piece,
            opts,
        ))
    }
}

type ReadItem<A> = Result<(usize, P2pMessage<A>), SocketError>;

struct WriteItem {
    bytes: Bytes,
    done: Option<oneshot::Sender<Result<(), SocketError>>>,
}

/// An accepted connection. Cheap to clone: clones share the connection,
/// which closes when the last clone is dropped or [`close`](Self::close)
/// is called.
pub struct Connection<A, M> {
    inner: Arc<Inner<A, M>>,
}

impl<A, M> Clone for Connection<A, M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<A, M> {
    info: ConnectionInfo<M>,
    io: Arc<ConnectionIo>,
    write_tx: queue::Sender<WriteItem>,
    read_rx: Mutex<queue::Receiver<ReadItem<A>>>,
    cancel: CancellationToken,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    max_message_size: usize,
}

impl<A, M> Drop for Inner<A, M> {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl<A, M: fmt::Debug> fmt::Debug for Connection<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Connection({self})")
    }
}

impl<A, M> fmt::Display for Connection<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ip, port) = self.inner.info.id_point;
        match port {
            Some(p) => write!(f, "{}@{}", self.inner.info.peer_id, Point::new(ip, p)),
            None => write!(f, "{}@{}", self.inner.info.peer_id, ip),
        }
    }
}

impl<A: AppMessage, M: ConnMeta> Connection<A, M> {
    #[allow(clippy::too_many_arguments)]
    fn start(
        stream: BoxStream,
        io: Arc<ConnectionIo>,
        sender: ChunkCipher,
        receiver: ChunkCipher,
        pending: Vec<u8>,
        info: ConnectionInfo<M>,
        piece: usize,
        opts: AcceptOptions,
    ) -> Self {
        let (rd, wr) = tokio::io::split(stream);
        let (read_tx, read_rx) = queue::bounded(opts.incoming_message_queue_size);
        let (write_tx, write_rx) = queue::bounded(opts.outgoing_message_queue_size);
        let cancel = opts.cancel.child_token();
        let span = tracing::debug_span!("conn", peer = %info.peer_id, addr = %info.id_point.0);
        let decoder = MessageDecoder::with_max_message_size(opts.max_message_size);
        let reader = tokio::spawn(
            reader_loop(
                rd,
                io.clone(),
                receiver,
                decoder,
                read_tx,
                pending,
                cancel.clone(),
            )
            .instrument(span.clone()),
        );
        let writer = tokio::spawn(
            writer_loop(wr, io.clone(), sender, write_rx, piece, cancel.clone()).instrument(span),
        );
        Connection {
            inner: Arc::new(Inner {
                info,
                io,
                write_tx,
                read_rx: Mutex::new(read_rx),
                cancel,
                tasks: std::sync::Mutex::new(vec![reader, writer]),
                max_message_size: opts.max_message_size,
            }),
        }
    }
}

impl<A: AppMessage, M> Connection<A, M> {
    /// Encodes a message once, for [`write_encoded`](Self::write_encoded)
    /// on many connections.
    pub fn encode(msg: &P2pMessage<A>) -> Result<Bytes, SocketError> {
        let hint = match msg {
            P2pMessage::Message(m) => m.size_hint(),
            _ => 0,
        };
        let mut out = Vec::with_capacity(6 + hint.min(tezos_p2p_wire::message::MAX_MESSAGE_SIZE));
        tezos_p2p_wire::message::encode_message(msg, &mut out).map_err(SocketError::Encoding)?;
        Ok(Bytes::from(out))
    }

    fn check_size(&self, bytes: &Bytes) -> Result<(), SocketError> {
        if bytes.len() > self.inner.max_message_size {
            return Err(SocketError::Encoding(EncodeError::SizeLimitExceeded {
                size: bytes.len(),
                limit: self.inner.max_message_size,
            }));
        }
        Ok(())
    }

    /// Queues `msg`, waiting for room in the write queue.
    pub async fn write(&self, msg: &P2pMessage<A>) -> Result<(), SocketError> {
        self.write_encoded(Self::encode(msg)?).await
    }

    /// Queues an already encoded message, waiting for room.
    pub async fn write_encoded(&self, bytes: Bytes) -> Result<(), SocketError> {
        self.check_size(&bytes)?;
        let size = bytes.len();
        self.inner
            .write_tx
            .push(WriteItem { bytes, done: None }, size)
            .await
            .map_err(|_| SocketError::ConnectionClosed)
    }

    /// Queues `msg` if there is room now: `Ok(false)` means it was dropped.
    pub fn write_now(&self, msg: &P2pMessage<A>) -> Result<bool, SocketError> {
        self.write_encoded_now(Self::encode(msg)?)
    }

    /// Queues an already encoded message if there is room now.
    pub fn write_encoded_now(&self, bytes: Bytes) -> Result<bool, SocketError> {
        self.check_size(&bytes)?;
        let size = bytes.len();
        self.inner
            .write_tx
            .try_push(WriteItem { bytes, done: None }, size)
            .map_err(|_| SocketError::ConnectionClosed)
    }

    /// Queues `msg` and returns once its bytes are written to the socket.
    pub async fn write_sync(&self, msg: &P2pMessage<A>) -> Result<(), SocketError> {
        let bytes = Self::encode(msg)?;
        self.check_size(&bytes)?;
        let (tx, rx) = oneshot::channel();
        let size = bytes.len();
        self.inner
            .write_tx
            .push(
                WriteItem {
                    bytes,
                    done: Some(tx),
                },
                size,
            )
            .await
            .map_err(|_| SocketError::ConnectionClosed)?;
        rx.await.unwrap_or(Err(SocketError::ConnectionClosed))
    }

    /// The next message and its size on the wire, waiting for one. Fails
    /// with the error that ended the connection, then with
    /// [`SocketError::ConnectionClosed`].
    pub async fn read(&self) -> Result<(usize, P2pMessage<A>), SocketError> {
        let mut rx = self.inner.read_rx.lock().await;
        rx.pop().await.unwrap_or(Err(SocketError::ConnectionClosed))
    }

    /// The next message if one is queued.
    pub fn read_now(&self) -> Option<Result<(usize, P2pMessage<A>), SocketError>> {
        let mut rx = self.inner.read_rx.try_lock().ok()?;
        rx.try_pop()
    }
}

impl<A, M> Connection<A, M> {
    /// Whether both handles share the same underlying connection.
    pub fn equal(&self, other: &Connection<A, M>) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// What is known of the peer.
    pub fn info(&self) -> &ConnectionInfo<M> {
        &self.inner.info
    }

    /// Our metadata.
    pub fn local_metadata(&self) -> &M {
        &self.inner.info.local_metadata
    }

    /// The peer's metadata.
    pub fn remote_metadata(&self) -> &M {
        &self.inner.info.remote_metadata
    }

    /// Whether the peer runs in private mode.
    pub fn private_node(&self) -> bool {
        self.inner.info.private_node
    }

    /// Bandwidth statistics of this connection.
    pub fn stat(&self) -> Stat {
        self.inner.io.stat()
    }

    /// Whether the connection has ended (closed here or by the peer).
    pub fn is_closed(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Resolves when the connection has ended.
    pub async fn closed(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Closes the connection. With `flush`, what is queued is written
    /// first; then both tasks and the socket end. Returns once they have.
    pub async fn close(&self, flush: bool) {
        if flush {
            self.inner.write_tx.close();
            let writer = self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            // The writer ends once the queue is drained; the reader is the
            // other task.
            if let Some(w) = writer {
                let _ = w.await;
            }
        }
        self.inner.cancel.cancel();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn reader_loop<A: AppMessage>(
    rd: ReadHalf<BoxStream>,
    io: Arc<ConnectionIo>,
    cipher: ChunkCipher,
    decoder: MessageDecoder<A>,
    tx: queue::Sender<ReadItem<A>>,
    pending: Vec<u8>,
    cancel: CancellationToken,
) {
    let err = tokio::select! {
        biased;
        _ = cancel.cancelled() => SocketError::ConnectionClosed,
        Err(e) = read_messages(rd, &io, cipher, decoder, &tx, pending) => e,
    };
    debug!(error = %err, "reader ends");
    let _ = tx.force_push(Err(err));
    cancel.cancel();
}

/// Reads chunks, opens them and pushes the messages cut out of the
/// decrypted stream, until an error.
async fn read_messages<A: AppMessage>(
    mut rd: ReadHalf<BoxStream>,
    io: &ConnectionIo,
    mut cipher: ChunkCipher,
    mut decoder: MessageDecoder<A>,
    tx: &queue::Sender<ReadItem<A>>,
    mut buf: Vec<u8>,
) -> Result<std::convert::Infallible, SocketError> {
    let read_size = io.read_buffer_size().max(HEADER_LEN);
    loop {
        let mut off = 0;
        while buf.len() - off >= HEADER_LEN {
            let body =
                chunk_body_len([buf[off], buf[off + 1]]).map_err(SocketError::from_crypto)?;
            if buf.len() - off < HEADER_LEN + body {
                break;
            }
            let start = off + HEADER_LEN;
            let pt = cipher
                .open_chunk(&mut buf[start..start + body])
                .map_err(SocketError::from_crypto)?;
            decoder.feed(pt);
            off = start + body;
            while let Some((size, msg)) = decoder.next().map_err(SocketError::Decoding)? {
                tx.push(Ok((size, msg)), size)
                    .await
                    .map_err(|_| SocketError::ConnectionClosed)?;
            }
        }
        buf.drain(..off);
        if buf.is_empty() && buf.capacity() > 0 {
            // A busy connection keeps its buffer while data is there at
            // once; one that would wait gives it back, so idle connections
            // hold no read buffer.
            let ready = tokio::select! {
                biased;
                r = read_scheduled(&mut rd, io, &mut buf, read_size) => Some(r),
                () = std::future::ready(()) => None,
            };
            match ready {
                Some(r) => {
                    r?;
                    continue;
                }
                None => buf = Vec::new(),
            }
        }
        // Read at least the rest of the chunk under way, so a large chunk
        // takes one read rather than several.
        let rest_of_chunk = match buf.get(..HEADER_LEN) {
            Some(&[a, b]) => {
                (HEADER_LEN + usize::from(u16::from_be_bytes([a, b]))).saturating_sub(buf.len())
            }
            _ => 0,
        };
        read_scheduled(&mut rd, io, &mut buf, read_size.max(rest_of_chunk)).await?;
    }
}

async fn writer_loop(
    mut wr: WriteHalf<BoxStream>,
    io: Arc<ConnectionIo>,
    mut cipher: ChunkCipher,
    mut rx: queue::Receiver<WriteItem>,
    piece: usize,
    cancel: CancellationToken,
) {
    /// How many sealed bytes the writer gathers before one write call.
    const BATCH: usize = 64 << 10;
    /// How many bytes one round writes before it reports to `write_sync`
    /// waiters.
    const ROUND: usize = 1 << 20;
    let mut out = Vec::new();
    let mut waiters = Vec::new();
    let run = async {
        loop {
            let Some(item) = rx.pop().await else {
                // Closed and drained: a flushing close.
                let _ = wr.shutdown().await;
                return Ok(());
            };
            // Seal and write in batches of about BATCH bytes, so the
            // kernel gets data while we seal the rest; gather small
            // messages queued meanwhile, up to a round's worth.
            let mut next = Some(item);
            let mut round = 0;
            while let Some(item) = next.take() {
                for p in item.bytes.chunks(piece) {
                    cipher
                        .seal_chunk(p, &mut out)
                        .map_err(SocketError::from_crypto)?;
                    if out.len() >= BATCH {
                        write_scheduled(&mut wr, &io, &out).await?;
                        round += out.len();
                        out.clear();
                    }
                }
                waiters.extend(item.done);
                if round < ROUND {
                    next = rx.try_pop();
                }
            }
            if !out.is_empty() {
                write_scheduled(&mut wr, &io, &out).await?;
            }
            wr.flush().await.map_err(SocketError::from_io)?;
            if rx.is_empty() {
                // Idle connections keep no write buffer.
                out = Vec::new();
            } else {
                out.clear();
            }
            for w in waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
    };
    let res: Result<(), SocketError> = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(SocketError::ConnectionClosed),
        r = run => r,
    };
    if let Err(e) = &res {
        debug!(error = %e, "writer ends");
        for w in waiters.drain(..) {
            let _ = w.send(Err(e.clone()));
        }
        cancel.cancel();
    }
    for item in rx.drain() {
        if let Some(d) = item.done {
            let _ = d.send(Err(SocketError::ConnectionClosed));
        }
    }
}
