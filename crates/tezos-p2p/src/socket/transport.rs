//! How bytes reach a peer: TCP in production, an in-memory network for tests
//! and simulations.
//!
//! Everything above this module sees a [`Transport`], a [`Listener`] and
//! boxed byte streams ([`BoxStream`]), so whole networks of nodes can run in
//! one process on a [`MemoryNetwork`].
//!
//! TCP sockets get Octez's options (wire-protocol.md §8.1, pool-behaviour.md
//! §3.1b and §7.6, `p2p_fd.ml`): keepalive after 10 s idle then every 5 s,
//! `TCP_USER_TIMEOUT` = 45 s (Linux), both overridable through the
//! environment; listening sockets also get `SO_REUSEADDR` and, for IPv6,
//! dual-stack. Failing to set an option is logged and ignored, as in Octez.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// A bidirectional byte stream to a peer.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncStream for T {}

/// A connection to a peer, whatever the transport.
pub type BoxStream = Box<dyn AsyncStream>;

/// Octez's default `listen(2)` backlog (`P2p_limits.backlog`).
pub const DEFAULT_BACKLOG: u32 = 20;

/// Octez's default `TCP_USER_TIMEOUT`.
pub const DEFAULT_USER_TIMEOUT: Duration = Duration::from_millis(45_000);

/// Octez's default keepalive idle time.
pub const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_millis(10_000);

/// Octez's default keepalive probe interval.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_millis(5_000);

/// Environment variables for the user timeout, in milliseconds, "0"
/// disables; the first one set wins.
pub const USER_TIMEOUT_ENV: [&str; 2] =
    ["TEZOS_P2P_TCP_USER_TIMEOUT", "OCTEZ_P2P_TCP_USER_TIMEOUT"];

/// Environment variables for keepalive: `"ms"` or `"ms,interval_ms"`, "0"
/// disables; the first one set wins.
pub const KEEPALIVE_ENV: [&str; 2] = ["TEZOS_P2P_TCP_KEEPALIVE", "OCTEZ_P2P_TCP_KEEPALIVE"];

/// Socket options of TCP connections and listening sockets.
///
/// `Default` is Octez's ([`TcpOptions::octez`]); [`TcpOptions::from_env`]
/// reads overrides from the environment ([`USER_TIMEOUT_ENV`],
/// [`KEEPALIVE_ENV`]), as the node does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// `TCP_NODELAY`. Octez leaves Nagle on; we turn it off by default
    /// because the writer already hands whole chunks to the socket, and
    /// Nagle only adds latency to small messages.
    pub nodelay: bool,
    /// Idle time before the first keepalive probe; `Duration::ZERO` disables
    /// keepalive.
    pub keepalive_idle: Duration,
    /// Interval between keepalive probes (where the OS supports it).
    pub keepalive_interval: Duration,
    /// `TCP_USER_TIMEOUT` (Linux/Android only): how long sent data may stay
    /// unacknowledged before the connection is dropped; `None` leaves the OS
    /// default.
    pub user_timeout: Option<Duration>,
}

/// Octez's defaults ([`TcpOptions::octez`]); the environment is read only
/// by [`TcpOptions::from_env`].
impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions::octez()
    }
}

impl TcpOptions {
    /// Octez's defaults, ignoring the environment.
    pub fn octez() -> Self {
        TcpOptions {
            nodelay: true,
            keepalive_idle: DEFAULT_KEEPALIVE_IDLE,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            user_timeout: Some(DEFAULT_USER_TIMEOUT),
        }
    }

    /// Octez's defaults, overridden by the environment variables.
    pub fn from_env() -> Self {
        TcpOptions::from_vars(|name| std::env::var(name).ok())
    }

    /// Octez's defaults, overridden by the variables `var` returns.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: [&str; 2]| names.iter().find_map(|name| var(name));
        let mut options = TcpOptions::octez();
        if let Some(value) = first(USER_TIMEOUT_ENV) {
            options.user_timeout = parse_user_timeout(&value);
        }
        if let Some(value) = first(KEEPALIVE_ENV) {
            match parse_keepalive(&value) {
                Some((idle, interval)) => {
                    options.keepalive_idle = idle;
                    options.keepalive_interval = interval;
                }
                None => options.keepalive_idle = Duration::ZERO,
            }
        }
        options
    }

    /// Sets the options on a socket; failures are logged and ignored.
    fn apply(&self, socket: SockRef<'_>) {
        if let Err(error) = socket.set_nodelay(self.nodelay) {
            tracing::debug!(%error, "failed to set TCP_NODELAY");
        }
        if self.keepalive_idle.is_zero() {
            if let Err(error) = socket.set_keepalive(false) {
                tracing::debug!(%error, "failed to disable SO_KEEPALIVE");
            }
        } else {
            let keepalive = TcpKeepalive::new().with_time(self.keepalive_idle);
            #[cfg(any(
                target_os = "linux",
                target_os = "android",
                target_os = "macos",
                target_os = "freebsd",
                target_os = "windows"
            ))]
            let keepalive = keepalive.with_interval(self.keepalive_interval);
            if let Err(error) = socket.set_tcp_keepalive(&keepalive) {
                tracing::info!(%error, "failed to set TCP keepalive");
            }
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Err(error) = socket.set_tcp_user_timeout(self.user_timeout) {
            tracing::info!(%error, "failed to set TCP_USER_TIMEOUT");
        }
    }
}

/// Octez's parsing: "0" disables, a number of milliseconds, anything else
/// is the default.
fn parse_user_timeout(value: &str) -> Option<Duration> {
    match value.trim() {
        "0" => None,
        ms => Some(
            ms.parse::<u64>()
                .map_or(DEFAULT_USER_TIMEOUT, Duration::from_millis),
        ),
    }
}

/// Octez's parsing: "0" disables, `"ms"` or `"ms,interval_ms"`; more
/// fields disable too. Unparsable numbers fall back to the defaults (Octez
/// raises an exception there).
fn parse_keepalive(value: &str) -> Option<(Duration, Duration)> {
    let ms = |field: &str, default: Duration| {
        field
            .trim()
            .parse::<u64>()
            .map_or(default, Duration::from_millis)
    };
    if value.trim() == "0" {
        return None;
    }
    let fields: Vec<&str> = value.split(',').collect();
    match fields.as_slice() {
        [idle] => Some((ms(idle, DEFAULT_KEEPALIVE_IDLE), DEFAULT_KEEPALIVE_INTERVAL)),
        [idle, interval] => Some((
            ms(idle, DEFAULT_KEEPALIVE_IDLE),
            ms(interval, DEFAULT_KEEPALIVE_INTERVAL),
        )),
        _ => None,
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) become IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The way a pool reaches its peers.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Real TCP sockets with these options.
    Tcp(TcpOptions),
    /// An in-process network.
    Memory(MemoryNetwork),
}

impl Default for Transport {
    fn default() -> Self {
        Transport::Tcp(TcpOptions::default())
    }
}

impl Transport {
    /// Listens on `addr` with Octez's backlog; port 0 picks a free port.
    pub async fn bind(&self, addr: SocketAddr) -> io::Result<Listener> {
        self.bind_with_backlog(addr, DEFAULT_BACKLOG).await
    }

    /// Listens on `addr`; at most `backlog` connections wait to be accepted
    /// (for TCP the kernel may round it).
    pub async fn bind_with_backlog(&self, addr: SocketAddr, backlog: u32) -> io::Result<Listener> {
        match self {
            Transport::Tcp(options) => bind_tcp(options, addr, backlog),
            Transport::Memory(network) => network.bind(addr, backlog),
        }
    }

    /// Opens a connection to `addr`; `ConnectionRefused` when nobody
    /// listens there. No timeout: the caller bounds it.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<BoxStream> {
        match self {
            Transport::Tcp(options) => Ok(Box::new(connect_tcp(options, addr).await?)),
            Transport::Memory(network) => network.connect(addr),
        }
    }
}

fn bind_tcp(options: &TcpOptions, addr: SocketAddr, backlog: u32) -> io::Result<Listener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if addr.is_ipv6() {
        // Dual stack, as Octez: IPv4 peers appear as IPv4-mapped addresses.
        if let Err(error) = SockRef::from(&socket).set_only_v6(false) {
            tracing::debug!(%error, "failed to clear IPV6_V6ONLY");
        }
    }
    options.apply(SockRef::from(&socket));
    socket.bind(addr)?;
    let listener = socket.listen(backlog)?;
    let local_addr = listener.local_addr()?;
    Ok(Listener {
        local_addr,
        kind: ListenerKind::Tcp {
            listener,
            options: options.clone(),
        },
    })
}

async fn connect_tcp(options: &TcpOptions, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // Before connecting, so the user timeout also bounds the handshake.
    options.apply(SockRef::from(&socket));
    socket.connect(addr).await
}

async fn accept_tcp(
    listener: &TcpListener,
    options: &TcpOptions,
) -> io::Result<(TcpStream, SocketAddr)> {
    let (stream, remote) = listener.accept().await?;
    options.apply(SockRef::from(&stream));
    Ok((stream, canonical(remote)))
}

/// A listening endpoint; dropping it stops listening.
pub struct Listener {
    local_addr: SocketAddr,
    kind: ListenerKind,
}

enum ListenerKind {
    Tcp {
        listener: TcpListener,
        options: TcpOptions,
    },
    Memory(MemoryListener),
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ListenerKind::Tcp { .. } => "tcp",
            ListenerKind::Memory(_) => "memory",
        };
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .field("kind", &kind)
            .finish()
    }
}

impl Listener {
    /// The address actually bound (with the chosen port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for the next incoming connection and returns it with the
    /// remote address (IPv4-mapped addresses are returned as IPv4). Errors
    /// are the OS's; the caller decides whether to retry.
    pub async fn accept(&self) -> io::Result<(BoxStream, SocketAddr)> {
        match &self.kind {
            ListenerKind::Tcp { listener, options } => {
                let (stream, remote) = accept_tcp(listener, options).await?;
                Ok((Box::new(stream), remote))
            }
            ListenerKind::Memory(listener) => listener.accept().await,
        }
    }
}

/// Default buffer of each direction of an in-memory connection.
pub const DEFAULT_MEMORY_BUFFER: usize = 64 * 1024;

/// First port handed out for port 0 and for dialers' source ports.
const EPHEMERAL_FIRST: u16 = 49_152;

/// An in-process network: listeners register addresses, connections are
/// `tokio::io::duplex` pairs.
///
/// Clones share the network. Each handle dials from its own IP
/// ([`MemoryNetwork::with_local_ip`], default `127.0.0.1`), so a simulated
/// node can have its own address; every connection gets a fresh source port
/// from one network-wide counter, so remote addresses are distinct (until
/// the 16 384 ephemeral ports wrap around).
#[derive(Clone)]
pub struct MemoryNetwork {
    shared: Arc<MemoryShared>,
    local_ip: IpAddr,
    buffer_size: usize,
}

struct MemoryShared {
    state: Mutex<MemoryState>,
    next_listener_id: AtomicU64,
}

#[derive(Default)]
struct MemoryState {
    listeners: HashMap<SocketAddr, Registration>,
    next_port: u16,
}

struct Registration {
    id: u64,
    incoming: mpsc::Sender<(DuplexStream, SocketAddr)>,
}

impl Default for MemoryNetwork {
    fn default() -> Self {
        MemoryNetwork {
            shared: Arc::new(MemoryShared {
                state: Mutex::new(MemoryState::default()),
                next_listener_id: AtomicU64::new(0),
            }),
            local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            buffer_size: DEFAULT_MEMORY_BUFFER,
        }
    }
}

impl fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryNetwork")
            .field("local_ip", &self.local_ip)
            .field("buffer_size", &self.buffer_size)
            .field("listeners", &self.shared.state().listeners.len())
            .finish()
    }
}

impl MemoryShared {
    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryState {
    fn ephemeral_port(&mut self) -> u16 {
        let port = self.next_port.max(EPHEMERAL_FIRST);
        self.next_port = port.checked_add(1).unwrap_or(EPHEMERAL_FIRST);
        port
    }

    /// The listener for `addr`: exact address first, then a wildcard of the
    /// same port (an IPv6 wildcard also takes IPv4, as a dual-stack socket).
    fn listener_for(&self, addr: SocketAddr) -> Option<&Registration> {
        let port = addr.port();
        let wildcards = match addr {
            SocketAddr::V4(_) => [
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ],
            SocketAddr::V6(_) => [IpAddr::V6(Ipv6Addr::UNSPECIFIED); 2],
        };
        self.listeners.get(&canonical(addr)).or_else(|| {
            wildcards
                .iter()
                .find_map(|ip| self.listeners.get(&SocketAddr::new(*ip, port)))
        })
    }
}

impl MemoryNetwork {
    /// A new, empty network.
    pub fn new() -> Self {
        MemoryNetwork::default()
    }

    /// A handle on the same network that dials from `ip`.
    pub fn with_local_ip(&self, ip: IpAddr) -> Self {
        MemoryNetwork {
            local_ip: ip,
            ..self.clone()
        }
    }

    /// A handle on the same network whose connections buffer `size` bytes
    /// in each direction (at least 1).
    pub fn with_buffer_size(&self, size: usize) -> Self {
        MemoryNetwork {
            buffer_size: size.max(1),
            ..self.clone()
        }
    }

    /// The IP this handle dials from.
    pub fn local_ip(&self) -> IpAddr {
        self.local_ip
    }

    /// Number of addresses currently listening.
    pub fn listeners(&self) -> usize {
        self.shared.state().listeners.len()
    }

    fn bind(&self, addr: SocketAddr, backlog: u32) -> io::Result<Listener> {
        let addr = canonical(addr);
        let mut state = self.shared.state();
        let addr = if addr.port() == 0 {
            let mut found = None;
            for _ in EPHEMERAL_FIRST..=u16::MAX {
                let candidate = SocketAddr::new(addr.ip(), state.ephemeral_port());
                if !state.listeners.contains_key(&candidate) {
                    found = Some(candidate);
                    break;
                }
            }
            found
                .ok_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free ephemeral port"))?
        } else if state.listeners.contains_key(&addr) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is already bound"),
            ));
        } else {
            addr
        };
        let capacity = usize::try_from(backlog).unwrap_or(usize::MAX).max(1);
        let (incoming, receiver) = mpsc::channel(capacity);
        let id = self.shared.next_listener_id.fetch_add(1, Ordering::Relaxed);
        state.listeners.insert(addr, Registration { id, incoming });
        Ok(Listener {
            local_addr: addr,
            kind: ListenerKind::Memory(MemoryListener {
                id,
                addr,
                shared: Arc::clone(&self.shared),
                incoming: tokio::sync::Mutex::new(receiver),
            }),
        })
    }

    fn connect(&self, addr: SocketAddr) -> io::Result<BoxStream> {
        let refused = |why: &str| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("connection to {addr} refused: {why}"),
            )
        };
        let mut state = self.shared.state();
        let remote = SocketAddr::new(self.local_ip, state.ephemeral_port());
        let registration = state
            .listener_for(addr)
            .ok_or_else(|| refused("nobody listens"))?;
        let (ours, theirs) = tokio::io::duplex(self.buffer_size);
        registration
            .incoming
            .try_send((theirs, remote))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => refused("backlog full"),
                mpsc::error::TrySendError::Closed(_) => refused("listener closed"),
            })?;
        Ok(Box::new(ours))
    }
}

struct MemoryListener {
    id: u64,
    addr: SocketAddr,
    shared: Arc<MemoryShared>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<(DuplexStream, SocketAddr)>>,
}

impl MemoryListener {
    async fn accept(&self) -> io::Result<(BoxStream, SocketAddr)> {
        let mut incoming = self.incoming.lock().await;
        match incoming.recv().await {
            Some((stream, remote)) => Ok((Box::new(stream), remote)),
            // Unreachable while registered: the registration holds a sender.
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "memory listener closed",
            )),
        }
    }
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        if state
            .listeners
            .get(&self.addr)
            .is_some_and(|registration| registration.id == self.id)
        {
            state.listeners.remove(&self.addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn localhost(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    /// Accepts one connection and echoes it until EOF.
    fn spawn_echo(listener: Listener) -> tokio::task::JoinHandle<SocketAddr> {
        tokio::spawn(async move {
            let (mut stream, remote) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            loop {
                let n = stream.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                stream.write_all(&buf[..n]).await.expect("write");
            }
            remote
        })
    }

    async fn round_trip(stream: &mut BoxStream, payload: &[u8]) -> Vec<u8> {
        stream.write_all(payload).await.expect("write");
        let mut back = vec![0u8; payload.len()];
        stream.read_exact(&mut back).await.expect("read");
        back
    }

    #[tokio::test]
    async fn memory_transport_binds_connects_accepts_and_echoes() {
        let network = MemoryNetwork::new();
        let transport = Transport::Memory(network.clone());
        let listener = transport.bind(localhost(0)).await.expect("bind");
        let addr = listener.local_addr();
        assert_ne!(addr.port(), 0);
        let echo = spawn_echo(listener);
        let mut stream = transport.connect(addr).await.expect("connect");
        assert_eq!(
            round_trip(&mut stream, b"hello tezos").await,
            b"hello tezos"
        );
        drop(stream);
        let remote = echo.await.expect("echo task");
        assert_eq!(remote.ip(), network.local_ip());
    }

    #[tokio::test]
    async fn memory_connections_have_distinct_remote_addresses() {
        let network = MemoryNetwork::new();
        let node_a = Transport::Memory(network.with_local_ip("10.0.0.1".parse().expect("ip")));
        let node_b = Transport::Memory(network.with_local_ip("10.0.0.2".parse().expect("ip")));
        let listen_addr: SocketAddr = "10.0.0.2:9732".parse().expect("addr");
        let listener = node_b.bind(listen_addr).await.expect("bind");
        assert_eq!(listener.local_addr(), listen_addr);
        let _first = node_a.connect(listen_addr).await.expect("connect");
        let _second = node_a.connect(listen_addr).await.expect("connect");
        let (_, r1) = listener.accept().await.expect("accept");
        let (_, r2) = listener.accept().await.expect("accept");
        assert_eq!(r1.ip(), "10.0.0.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(r2.ip(), r1.ip());
        assert_ne!(r1.port(), r2.port());
    }

    #[tokio::test]
    async fn memory_connect_is_refused_when_not_bound() {
        let transport = Transport::Memory(MemoryNetwork::new());
        let error = transport
            .connect(localhost(9732))
            .await
            .err()
            .expect("refused");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn memory_listener_unbinds_on_drop() {
        let network = MemoryNetwork::new();
        let transport = Transport::Memory(network.clone());
        let listener = transport.bind(localhost(9732)).await.expect("bind");
        assert_eq!(network.listeners(), 1);
        let taken = transport.bind(localhost(9732)).await.expect_err("in use");
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
        drop(listener);
        assert_eq!(network.listeners(), 0);
        let error = transport
            .connect(localhost(9732))
            .await
            .err()
            .expect("refused");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        let _again = transport.bind(localhost(9732)).await.expect("rebind");
    }

    #[tokio::test]
    async fn memory_wildcard_listener_accepts_any_address() {
        let transport = Transport::Memory(MemoryNetwork::new());
        let listener = transport
            .bind("[::]:0".parse().expect("addr"))
            .await
            .expect("bind");
        let port = listener.local_addr().port();
        let echo = spawn_echo(listener);
        let mut stream = transport.connect(localhost(port)).await.expect("connect");
        assert_eq!(round_trip(&mut stream, b"dual stack").await, b"dual stack");
        drop(stream);
        echo.await.expect("echo task");
    }

    #[tokio::test]
    async fn memory_backlog_bounds_pending_connections() {
        let transport = Transport::Memory(MemoryNetwork::new());
        let listener = transport
            .bind_with_backlog(localhost(0), 2)
            .await
            .expect("bind");
        let addr = listener.local_addr();
        let _a = transport.connect(addr).await.expect("first");
        let _b = transport.connect(addr).await.expect("second");
        let error = transport.connect(addr).await.err().expect("full");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        listener.accept().await.expect("accept");
        let _c = transport.connect(addr).await.expect("room again");
    }

    #[tokio::test]
    async fn pending_memory_connections_see_eof_when_the_listener_goes() {
        let transport = Transport::Memory(MemoryNetwork::new());
        let listener = transport.bind(localhost(0)).await.expect("bind");
        let mut stream = transport
            .connect(listener.local_addr())
            .await
            .expect("connect");
        drop(listener);
        let mut buf = [0u8; 8];
        assert_eq!(stream.read(&mut buf).await.expect("eof"), 0);
    }

    #[tokio::test]
    async fn tcp_transport_connects_accepts_and_echoes() {
        let transport = Transport::Tcp(TcpOptions::octez());
        let listener = transport.bind(localhost(0)).await.expect("bind");
        let addr = listener.local_addr();
        assert_ne!(addr.port(), 0);
        let echo = spawn_echo(listener);
        let mut stream = transport.connect(addr).await.expect("connect");
        assert_eq!(round_trip(&mut stream, b"over tcp").await, b"over tcp");
        drop(stream);
        let remote = echo.await.expect("echo task");
        assert_eq!(remote.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[tokio::test]
    async fn tcp_connect_is_refused_when_not_listening() {
        // Bind then drop to find a port nobody listens on.
        let port = {
            let probe = std::net::TcpListener::bind(localhost(0)).expect("probe");
            probe.local_addr().expect("addr").port()
        };
        let transport = Transport::Tcp(TcpOptions::octez());
        let error = transport
            .connect(localhost(port))
            .await
            .err()
            .expect("refused");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    }

    fn assert_options(socket: SockRef<'_>, options: &TcpOptions) {
        assert_eq!(socket.nodelay().expect("nodelay"), options.nodelay);
        assert!(socket.keepalive().expect("keepalive"));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            assert_eq!(
                socket.keepalive_time().expect("idle"),
                options.keepalive_idle
            );
            assert_eq!(
                socket.keepalive_interval().expect("interval"),
                options.keepalive_interval
            );
            assert_eq!(
                socket.tcp_user_timeout().expect("user timeout"),
                options.user_timeout
            );
        }
    }

    #[tokio::test]
    async fn tcp_options_are_set_on_dialled_and_accepted_sockets() {
        let options = TcpOptions {
            nodelay: true,
            keepalive_idle: Duration::from_secs(11),
            keepalive_interval: Duration::from_secs(3),
            user_timeout: Some(Duration::from_millis(42_000)),
        };
        let transport = Transport::Tcp(options.clone());
        let listener = transport.bind(localhost(0)).await.expect("bind");
        if let ListenerKind::Tcp { listener, .. } = &listener.kind {
            let listening = SockRef::from(listener);
            assert!(listening.reuse_address().expect("reuseaddr"));
            assert!(listening.keepalive().expect("keepalive"));
        }
        let ListenerKind::Tcp { listener: tcp, .. } = &listener.kind else {
            unreachable!("tcp listener")
        };
        let addr = listener.local_addr();
        let (dialled, accepted) =
            tokio::join!(connect_tcp(&options, addr), accept_tcp(tcp, &options));
        let dialled = dialled.expect("connect");
        let (accepted, _) = accepted.expect("accept");
        assert_options(SockRef::from(&dialled), &options);
        assert_options(SockRef::from(&accepted), &options);
    }

    #[tokio::test]
    async fn ipv4_mapped_remotes_are_reported_as_ipv4() {
        let transport = Transport::Tcp(TcpOptions::octez());
        let Ok(listener) = transport.bind("[::]:0".parse().expect("addr")).await else {
            return; // no IPv6 in this environment
        };
        let port = listener.local_addr().port();
        let echo = spawn_echo(listener);
        let mut stream = transport.connect(localhost(port)).await.expect("connect");
        assert_eq!(round_trip(&mut stream, b"mapped").await, b"mapped");
        drop(stream);
        assert_eq!(
            echo.await.expect("echo").ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }

    #[test]
    fn tcp_options_default_to_octez_values() {
        let options = TcpOptions::from_vars(|_| None);
        assert_eq!(options, TcpOptions::octez());
        assert_eq!(options.keepalive_idle, Duration::from_secs(10));
        assert_eq!(options.keepalive_interval, Duration::from_secs(5));
        assert_eq!(options.user_timeout, Some(Duration::from_secs(45)));
    }

    #[test]
    fn user_timeout_follows_the_environment() {
        let with = |name: &'static str, value: &'static str| {
            TcpOptions::from_vars(move |var| (var == name).then(|| value.to_owned()))
        };
        assert_eq!(
            with("OCTEZ_P2P_TCP_USER_TIMEOUT", "15000").user_timeout,
            Some(Duration::from_secs(15))
        );
        assert_eq!(with("TEZOS_P2P_TCP_USER_TIMEOUT", "0").user_timeout, None);
        assert_eq!(with("OCTEZ_P2P_TCP_USER_TIMEOUT", "0").user_timeout, None);
        assert_eq!(
            with("OCTEZ_P2P_TCP_USER_TIMEOUT", "soon").user_timeout,
            Some(DEFAULT_USER_TIMEOUT)
        );
        let both = TcpOptions::from_vars(|var| match var {
            "TEZOS_P2P_TCP_USER_TIMEOUT" => Some("1000".into()),
            "OCTEZ_P2P_TCP_USER_TIMEOUT" => Some("2000".into()),
            _ => None,
        });
        assert_eq!(both.user_timeout, Some(Duration::from_secs(1)));
    }

    #[test]
    fn keepalive_follows_the_environment() {
        let with = |value: &'static str| {
            TcpOptions::from_vars(move |var| {
                (var == "OCTEZ_P2P_TCP_KEEPALIVE").then(|| value.to_owned())
            })
        };
        let one = with("20000");
        assert_eq!(
            (one.keepalive_idle, one.keepalive_interval),
            (Duration::from_secs(20), DEFAULT_KEEPALIVE_INTERVAL)
        );
        let two = with("20000,1000");
        assert_eq!(
            (two.keepalive_idle, two.keepalive_interval),
            (Duration::from_secs(20), Duration::from_secs(1))
        );
        assert!(with("0").keepalive_idle.is_zero());
        assert!(with("1,2,3").keepalive_idle.is_zero());
    }
}
