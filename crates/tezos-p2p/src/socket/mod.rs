//! Authenticated, encrypted connections: Octez's `P2p_socket` API
//! (`shared/seed/p2p_socket_api.txt`) over tokio (wire spec §3–10).
//!
//! [`authenticate`] runs the first two steps of the handshake (connection
//! messages, metadata) by driving the wire crate's state machine; the
//! caller then decides with [`AuthenticatedConnection::accept`] or
//! [`AuthenticatedConnection::nack`]. An accepted [`Connection`] is run by
//! one task (`driver.rs`), a hand-polled state machine with two sides that
//! feed and drain the wire crate's sans-IO
//! [`ChunkReader`](tezos_p2p_wire::chunk::ChunkReader) and
//! [`ChunkWriter`](tezos_p2p_wire::chunk::ChunkWriter): the read side
//! pushes the messages the reader cuts out of the decrypted stream into a
//! read queue bounded in bytes (so a slow application pushes back down to
//! TCP); the write side pops encoded messages, has the writer seal them
//! into chunks and writes them. Both go through the
//! [`IoScheduler`](crate::socket::scheduler::IoScheduler) for bandwidth limits and
//! statistics. Nothing but the state machine lives across a wait, and an
//! idle connection holds no buffer, so it costs about a kilobyte.
//!
//! Every message decoded before the connection's end is queued before the
//! end is reported, as in a TCP half-close: the end is the read side's
//! (EOF, an error, a message that does not decode). A socket that fails a
//! write ends only the write side; the read side still delivers what the
//! peer sent before it went, until it meets the end itself.
//!
//! # Example
//!
//! One connection without a pool, over any byte stream (TCP, or here an
//! in-memory pipe): both ends [`authenticate`], look at the peer, and
//! [`accept`](AuthenticatedConnection::accept) (or
//! [`nack`](AuthenticatedConnection::nack)); the [`Connection`]s then carry
//! messages.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};
//! use tezos_p2p::socket::{authenticate, AcceptOptions, AuthConfig, SocketError};
//! use tezos_p2p::wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
//! use tezos_p2p::wire::message::{OctezMetadata, P2pMessage, RawMessage};
//! use tezos_p2p::wire::version::{ChainName, NetworkVersion};
//! use tokio_util::sync::CancellationToken;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let identity = |seed: u8| Identity::from_secret_key(SecretKey([seed; 32]), PowStamp([0; 24]));
//! let config = |seed: u8, incoming: bool| AuthConfig {
//!     identity: Arc::new(identity(seed)),
//!     pow_target: PowTarget::new(0.0).unwrap(), // Octez: 26
//!     incoming,
//!     remote_addr: "127.0.0.1:9732".parse().unwrap(), // the peer's, for the logs and errors
//!     listening_port: Some(9732),
//!     version: NetworkVersion {
//!         chain_name: ChainName::from("SANDBOXED_TEZOS"),
//!         distributed_db_version: 2,
//!         p2p_version: 1,
//!     },
//!     metadata: OctezMetadata::default(),
//!     cancel: CancellationToken::new(),
//!     timeout: Some(Duration::from_secs(10)),
//! };
//! let (a, b) = tokio::io::duplex(64 << 10);
//! // Bandwidth caps and statistics, shared by the connections registered.
//! let scheduler = IoScheduler::new(SchedulerConfig::default());
//!
//! // Steps 1 and 2 on both ends at once: connection messages, metadata.
//! let (a, b) = tokio::join!(
//!     authenticate(Box::new(a), scheduler.register(), config(1, false)),
//!     authenticate(Box::new(b), scheduler.register(), config(2, true)),
//! );
//! let ((a_info, a), (b_info, b)) = (a?, b?);
//! assert_eq!(a_info.peer_id, identity(2).peer_id);
//! assert_eq!(b_info.peer_id, identity(1).peer_id);
//!
//! // Step 3: both accept, and the connections run.
//! let (a, b) = tokio::join!(
//!     a.accept::<RawMessage>(AcceptOptions::default()),
//!     b.accept::<RawMessage>(AcceptOptions::default()),
//! );
//! let (a, b) = (a?, b?);
//! let hello = RawMessage { tag: 0x10, body: b"hello".to_vec() };
//! a.write(&P2pMessage::Message(hello.clone())).await?;
//! let (_size, received) = b.read().await?;
//! assert_eq!(received, P2pMessage::Message(hello));
//! a.close(true).await;
//! # Ok::<(), SocketError>(())
//! # }).unwrap();
//! ```

pub mod budget;
mod driver;
pub(crate) mod queue;
pub mod scheduler;
pub mod transport;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use tezos_p2p_wire::chunk::{ChunkSize, InvalidChunksSize, ReadError};
use tezos_p2p_wire::crypto::SessionCipher;
use tezos_p2p_wire::encoding::{DecodeError, EncodeError};
use tezos_p2p_wire::handshake::{Handshake, HandshakeConfig, HandshakeError, Status};
use tezos_p2p_wire::identity::{Identity, PeerId, PowTarget};
use tezos_p2p_wire::message::{AppMessage, ConnMeta, P2pMessage};
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::rejection::Motive;
use tezos_p2p_wire::version::NetworkVersion;

use crate::socket::budget::MessageBudget;
use crate::socket::driver::Driver;
use crate::socket::queue::Queue;
use crate::socket::scheduler::{ConnectionIo, Stat};
use crate::socket::transport::BoxStream;

/// An IO error kept as the source of a [`SocketError`] or a pool error:
/// shared, so that the error stays `Clone`, and compared by
/// [`kind`](std::io::Error::kind).
#[derive(Debug, Clone)]
pub struct IoError(pub Arc<std::io::Error>);

impl IoError {
    /// The IO error itself.
    pub fn get_ref(&self) -> &std::io::Error {
        &self.0
    }
}

impl From<std::io::Error> for IoError {
    fn from(e: std::io::Error) -> Self {
        IoError(Arc::new(e))
    }
}

impl PartialEq for IoError {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind()
    }
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Errors of the socket layer, named after Octez's `P2p_errors`.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
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
    #[error("connection error")]
    ConnectionError(#[source] IoError),
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
            HandshakeError::InvalidState(s) => {
                SocketError::ConnectionError(std::io::Error::other(s.to_string()).into())
            }
            // A case of a newer wire crate: the handshake failed, its
            // error is kept as the cause.
            e => SocketError::ConnectionError(std::io::Error::other(e).into()),
        }
    }

    fn from_io(e: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match e.kind() {
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => {
                SocketError::ConnectionClosed
            }
            _ => SocketError::ConnectionError(e.into()),
        }
    }

    /// Whether the socket itself failed (an error of [`Self::from_io`]).
    fn is_socket_failure(&self) -> bool {
        matches!(
            self,
            SocketError::ConnectionClosed | SocketError::ConnectionError(_)
        )
    }

    fn from_read(e: ReadError) -> Self {
        match e {
            ReadError::Decipher => SocketError::DecipherError,
            ReadError::InvalidIncomingCiphertextSize(n) => {
                SocketError::InvalidIncomingCiphertextSize(n)
            }
            ReadError::Decoding(e) => SocketError::Decoding(e),
            // A case of a newer wire crate: the stream ends, its error is
            // kept as the cause.
            e => SocketError::ConnectionError(std::io::Error::other(e).into()),
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
    cancel: Option<&CancellationToken>,
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
    let cancelled = async {
        match cancel {
            Some(c) => c.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        () = cancelled => Err(SocketError::Canceled),
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
        Some(&cfg.cancel),
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
        .ok_or_else(|| SocketError::ConnectionError(std::io::Error::other("no remote").into()))?;
    let remote_metadata = remote
        .metadata
        .clone()
        .ok_or_else(|| SocketError::ConnectionError(std::io::Error::other("no metadata").into()))?;
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
    /// Cancels the Ack exchange, and later the connection. `None` (the
    /// default): only [`Connection::close`] or dropping the last handle
    /// ends it.
    pub cancel: Option<CancellationToken>,
    /// Bounds the Ack exchange.
    pub timeout: Option<Duration>,
    /// The budget for partially received messages this connection shares
    /// with others (a pool's): a message larger than a chunk waits for
    /// room in it before its body is read (see [`crate::socket::budget`]). `None`
    /// (the default): no budget, each connection buffers up to one
    /// message of `max_message_size`.
    pub message_budget: Option<MessageBudget>,
}

impl Default for AcceptOptions {
    fn default() -> Self {
        AcceptOptions {
            incoming_message_queue_size: 8 << 20,
            outgoing_message_queue_size: 8 << 20,
            binary_chunks_size: None,
            max_message_size: tezos_p2p_wire::message::MAX_MESSAGE_SIZE,
            cancel: None,
            timeout: None,
            message_budget: None,
        }
    }
}

/// Octez's `check_binary_chunks_size` (the wire crate's [`ChunkSize::new`]).
pub fn check_binary_chunks_size(size: usize) -> Result<(), SocketError> {
    ChunkSize::new(size)?;
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
    /// task that runs the connection.
    pub async fn accept<A: AppMessage>(
        mut self,
        opts: AcceptOptions,
    ) -> Result<Connection<A, M>, SocketError> {
        let chunk_size = ChunkSize::from_option(opts.binary_chunks_size)?;
        self.handshake
            .accept()
            .map_err(|e| SocketError::from_handshake(e, self.remote_addr))?;
        let remote = self.remote_addr;
        guarded(
            opts.cancel.as_ref(),
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
            self.io,
            session.cipher,
            &self.pending,
            self.info,
            chunk_size,
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
    shared: Arc<Shared<A, M>>,
}

/// What the handles and the driver task share.
struct Shared<A, M> {
    info: ConnectionInfo<M>,
    io: ConnectionIo,
    write_q: Queue<WriteItem>,
    read_q: Queue<ReadItem<A>>,
    max_message_size: usize,
    /// The budget for partially received messages, if any.
    budget: Option<MessageBudget>,
    /// The size of the chunks we send.
    chunk_size: ChunkSize,
    /// The connection's cancellation (the pool's, usually).
    cancel: Option<CancellationToken>,
    /// Set by the driver when it has ended and dropped the socket.
    closed: AtomicBool,
    /// Wakes [`Connection::closed`] when `closed` is set.
    closed_notify: Notify,
    /// Live [`Connection`] handles: the last one to go stops the driver.
    handles: AtomicUsize,
    driver: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl<A, M> Shared<A, M> {
    fn take_driver(&self) -> Option<JoinHandle<()>> {
        self.driver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl<A, M> Clone for Connection<A, M> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<A, M> Drop for Connection<A, M> {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(driver) = self.shared.take_driver() {
                driver.abort();
            }
        }
    }
}

impl<A, M: fmt::Debug> fmt::Debug for Connection<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Connection({self})")
    }
}

impl<A, M> fmt::Display for Connection<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ip, port) = self.shared.info.id_point;
        match port {
            Some(p) => write!(f, "{}@{}", self.shared.info.peer_id, Point::new(ip, p)),
            None => write!(f, "{}@{}", self.shared.info.peer_id, ip),
        }
    }
}

impl<A: AppMessage, M: ConnMeta> Connection<A, M> {
    fn start(
        stream: BoxStream,
        io: ConnectionIo,
        cipher: SessionCipher,
        received: &[u8],
        info: ConnectionInfo<M>,
        chunk_size: ChunkSize,
        opts: AcceptOptions,
    ) -> Self {
        let shared = Arc::new(Shared {
            info,
            io,
            write_q: Queue::new(opts.outgoing_message_queue_size),
            read_q: Queue::new(opts.incoming_message_queue_size),
            max_message_size: opts.max_message_size,
            budget: opts.message_budget,
            chunk_size,
            cancel: opts.cancel.clone(),
            closed: AtomicBool::new(false),
            closed_notify: Notify::new(),
            handles: AtomicUsize::new(1),
            driver: std::sync::Mutex::new(None),
        });
        let driver = Driver::new(shared.clone(), stream, cipher, received, opts.cancel);
        // In the caller's span (the pool's connection span), so that the
        // driver's lines say whose connection they are about.
        let handle = tokio::spawn(tracing::Instrument::in_current_span(driver));
        *shared.driver.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Connection { shared }
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
        if bytes.len() > self.shared.max_message_size {
            return Err(SocketError::Encoding(EncodeError::SizeLimitExceeded {
                size: bytes.len(),
                limit: self.shared.max_message_size,
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
        self.shared
            .write_q
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
        self.shared
            .write_q
            .try_push(WriteItem { bytes, done: None }, size)
            .map_err(|_| SocketError::ConnectionClosed)
    }

    /// Queues `msg` and returns once its bytes are written to the socket.
    pub async fn write_sync(&self, msg: &P2pMessage<A>) -> Result<(), SocketError> {
        let bytes = Self::encode(msg)?;
        self.check_size(&bytes)?;
        let (tx, rx) = oneshot::channel();
        let size = bytes.len();
        self.shared
            .write_q
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
        self.shared
            .read_q
            .pop()
            .await
            .unwrap_or(Err(SocketError::ConnectionClosed))
    }

    /// The next message if one is queued.
    pub fn read_now(&self) -> Option<Result<(usize, P2pMessage<A>), SocketError>> {
        self.shared.read_q.try_pop()
    }
}

impl<A, M> Connection<A, M> {
    /// Whether both handles share the same underlying connection.
    pub fn equal(&self, other: &Connection<A, M>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// What is known of the peer.
    pub fn info(&self) -> &ConnectionInfo<M> {
        &self.shared.info
    }

    /// Our metadata.
    pub fn local_metadata(&self) -> &M {
        &self.shared.info.local_metadata
    }

    /// The peer's metadata.
    pub fn remote_metadata(&self) -> &M {
        &self.shared.info.remote_metadata
    }

    /// Whether the peer runs in private mode.
    pub fn private_node(&self) -> bool {
        self.shared.info.private_node
    }

    /// Bandwidth statistics of this connection.
    pub fn stat(&self) -> Stat {
        self.shared.io.stat()
    }

    /// Whether the connection has ended or is ending (closed here, by the
    /// peer, or cancelled).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
            || self
                .shared
                .cancel
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
    }

    /// Resolves when the connection has ended and its socket is closed.
    pub async fn closed(&self) {
        loop {
            let mut notified = std::pin::pin!(self.shared.closed_notify.notified());
            notified.as_mut().enable();
            if self.shared.closed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Closes the connection. With `flush`, what is queued is written
    /// first; then the driver task and the socket end. Returns once they
    /// have.
    pub async fn close(&self, flush: bool) {
        if flush {
            // The driver drains the queue, shuts the socket down and ends.
            self.shared.write_q.close();
        }
        match self.shared.take_driver() {
            Some(driver) => {
                if !flush {
                    driver.abort();
                }
                let _ = driver.await;
            }
            // Another close is under way, or the last handle is gone.
            None => self.closed().await,
        }
    }
}
