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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

mod link;

pub use link::{HostProfile, LinkModel, FIVE_REGIONS_MS};

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
            Transport::Memory(network) => network.connect(addr).await,
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
/// `tokio::io::duplex` pairs, or, on a network made with
/// [`MemoryNetwork::with_links`], streams that go through a [`LinkModel`]
/// (latency by region, jitter, loss, bandwidth, NAT, partitions, hosts
/// going down; on tokio's clock and seeded).
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
    links: Option<link::Links>,
}

#[derive(Default)]
struct MemoryState {
    listeners: HashMap<SocketAddr, Registration>,
    next_port: u16,
}

struct Registration {
    id: u64,
    incoming: mpsc::Sender<(BoxStream, SocketAddr)>,
}

impl Default for MemoryNetwork {
    fn default() -> Self {
        MemoryNetwork::build(None)
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

    /// A new, empty network whose connections go through `model`: see
    /// [`LinkModel`] and [`HostProfile`]. Hosts are known by IP; one not
    /// described by [`set_host`](Self::set_host) is in region 0, has no
    /// bandwidth limit and is not behind NAT. The window of each direction
    /// is the model's, not [`with_buffer_size`](Self::with_buffer_size)'s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tezos_p2p::transport::{HostProfile, LinkModel, MemoryNetwork, Transport};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
    /// let network = MemoryNetwork::with_links(LinkModel::uniform(7, Duration::from_millis(50)));
    /// let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    /// network.set_host(b, HostProfile { nat: true, ..HostProfile::default() });
    /// let listener = Transport::Memory(network.with_local_ip(a)).bind((a, 9732).into()).await.unwrap();
    /// let dialer = Transport::Memory(network.with_local_ip(b));
    /// let start = tokio::time::Instant::now();
    /// let mut stream = dialer.connect((a, 9732).into()).await.unwrap(); // one round trip
    /// assert_eq!(start.elapsed(), Duration::from_millis(100));
    /// stream.write_all(b"ping").await.unwrap();
    /// let (mut theirs, _) = listener.accept().await.unwrap();
    /// let mut buf = [0; 4];
    /// theirs.read_exact(&mut buf).await.unwrap(); // one way
    /// assert_eq!(start.elapsed(), Duration::from_millis(150));
    /// // b is behind NAT: nobody reaches it.
    /// let b_listens = Transport::Memory(network.with_local_ip(b)).bind((b, 9732).into()).await.unwrap();
    /// let to_b = Transport::Memory(network.with_local_ip(a)).connect((b, 9732).into()).await;
    /// assert_eq!(to_b.err().unwrap().kind(), std::io::ErrorKind::ConnectionRefused);
    /// # drop(b_listens);
    /// # });
    /// ```
    pub fn with_links(model: LinkModel) -> Self {
        MemoryNetwork::build(Some(link::Links::new(model)))
    }

    fn build(links: Option<link::Links>) -> Self {
        MemoryNetwork {
            shared: Arc::new(MemoryShared {
                state: Mutex::new(MemoryState::default()),
                next_listener_id: AtomicU64::new(0),
                links,
            }),
            local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            buffer_size: DEFAULT_MEMORY_BUFFER,
        }
    }

    /// The link model, if the network has one.
    pub fn link_model(&self) -> Option<&LinkModel> {
        self.shared.links.as_ref().map(|l| &*l.model)
    }

    /// Describes the host at `ip` (region, bandwidth, NAT). Connections
    /// already open keep the latency of the region they were opened with.
    /// Does nothing on a network without links.
    pub fn set_host(&self, ip: IpAddr, profile: HostProfile) {
        if let Some(links) = &self.shared.links {
            links.set_host(ip, profile);
        }
    }

    /// The profile of the host at `ip` (`None` without links).
    pub fn host(&self, ip: IpAddr) -> Option<HostProfile> {
        self.shared.links.as_ref().map(|l| l.host(ip).profile())
    }

    /// Partitions the network: hosts reach each other only when `group`
    /// gives them the same number (hosts met later are in group 0). Dials
    /// across the partition hang; data on open connections across it is
    /// held, and after the model's user timeout they are reset. Must run
    /// inside a tokio runtime (the reset is a task). Does nothing without
    /// links.
    pub fn partition(&self, group: impl Fn(IpAddr) -> u32) {
        let Some(links) = &self.shared.links else {
            return;
        };
        let after = links.partition(&group);
        let network = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(links) = &network.shared.links {
                links.expire(None);
            }
        });
    }

    /// Ends a partition: every host reaches every other (but those that are
    /// down) and held data leaves again.
    pub fn heal(&self) {
        if let Some(links) = &self.shared.links {
            links.heal();
        }
    }

    /// Takes the host at `ip` down (a crash: it sends nothing more, not
    /// even the end of its connections, and nobody reaches it; its peers'
    /// connections are reset after the user timeout), or back up. Must run
    /// inside a tokio runtime. Does nothing without links.
    pub fn set_down(&self, ip: IpAddr, down: bool) {
        let Some(links) = &self.shared.links else {
            return;
        };
        let after = links.set_down(ip, down);
        if down {
            let network = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                if let Some(links) = &network.shared.links {
                    links.expire(Some(ip));
                }
            });
        }
    }

    /// Whether hosts `a` and `b` reach each other now (always without
    /// links).
    pub fn reachable(&self, a: IpAddr, b: IpAddr) -> bool {
        self.shared
            .links
            .as_ref()
            .is_none_or(|l| link::reachable(&l.host(a), &l.host(b)))
    }

    /// Directions of connections still open over the links (0 without
    /// links).
    pub fn open_link_directions(&self) -> usize {
        self.shared.links.as_ref().map_or(0, |l| l.open_pipes())
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

    async fn connect(&self, addr: SocketAddr) -> io::Result<BoxStream> {
        let refused = |why: &str| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("connection to {addr} refused: {why}"),
            )
        };
        let Some(links) = &self.shared.links else {
            let mut state = self.shared.state();
            let remote = SocketAddr::new(self.local_ip, state.ephemeral_port());
            let registration = state
                .listener_for(addr)
                .ok_or_else(|| refused("nobody listens"))?;
            let (ours, theirs) = tokio::io::duplex(self.buffer_size);
            registration
                .incoming
                .try_send((Box::new(theirs), remote))
                .map_err(|error| match error {
                    mpsc::error::TrySendError::Full(_) => refused("backlog full"),
                    mpsc::error::TrySendError::Closed(_) => refused("listener closed"),
                })?;
            return Ok(Box::new(ours));
        };
        let ours = links.host(self.local_ip);
        let theirs = links.host(canonical(addr).ip());
        // A SYN that gets no answer: the caller's timeout ends the dial.
        if !link::reachable(&ours, &theirs) {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(links.round_trip(&ours, &theirs)).await;
        if !link::reachable(&ours, &theirs) {
            std::future::pending::<()>().await;
        }
        if theirs.profile().nat {
            return Err(refused("behind NAT"));
        }
        let mut state = self.shared.state();
        let remote = SocketAddr::new(self.local_ip, state.ephemeral_port());
        let registration = state
            .listener_for(addr)
            .ok_or_else(|| refused("nobody listens"))?;
        let (out, back) = links.open(ours, theirs);
        let mine = link::LinkStream::new(Arc::clone(&out), Arc::clone(&back));
        let other = link::LinkStream::new(back, out);
        registration
            .incoming
            .try_send((Box::new(other), remote))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => refused("backlog full"),
                mpsc::error::TrySendError::Closed(_) => refused("listener closed"),
            })?;
        Ok(Box::new(mine))
    }
}

struct MemoryListener {
    id: u64,
    addr: SocketAddr,
    shared: Arc<MemoryShared>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<(BoxStream, SocketAddr)>>,
}

impl MemoryListener {
    async fn accept(&self) -> io::Result<(BoxStream, SocketAddr)> {
        let mut incoming = self.incoming.lock().await;
        match incoming.recv().await {
            Some((stream, remote)) => Ok((stream, remote)),
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

    // -----------------------------------------------------------------
    // The link model.

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// A listener at `b`:9732 and a connection to it from `a`; returns
    /// (dialer's end, listener's end).
    async fn linked(network: &MemoryNetwork, a: &str, b: &str) -> (BoxStream, BoxStream) {
        let listener = Transport::Memory(network.with_local_ip(ip(b)))
            .bind(SocketAddr::new(ip(b), 9732))
            .await
            .expect("bind");
        let ours = Transport::Memory(network.with_local_ip(ip(a)))
            .connect(SocketAddr::new(ip(b), 9732))
            .await
            .expect("connect");
        let (theirs, remote) = listener.accept().await.expect("accept");
        assert_eq!(remote.ip(), ip(a));
        (ours, theirs)
    }

    #[tokio::test(start_paused = true)]
    async fn links_delay_by_region_and_keep_order_under_jitter() {
        let mut model = LinkModel::five_regions(3, Duration::from_millis(100));
        model.jitter = 0.5;
        let network = MemoryNetwork::with_links(model);
        network.set_host(
            ip("10.0.0.1"),
            HostProfile {
                region: 1,
                ..HostProfile::default()
            },
        );
        network.set_host(
            ip("10.0.0.2"),
            HostProfile {
                region: 4,
                ..HostProfile::default()
            },
        );
        let start = tokio::time::Instant::now();
        let (mut a, mut b) = linked(&network, "10.0.0.1", "10.0.0.2").await;
        // Europe ↔ Oceania: 160 ms one way, a round trip ± 50 % to connect.
        let rtt = start.elapsed();
        assert!(
            rtt >= Duration::from_millis(160) && rtt <= Duration::from_millis(480),
            "{rtt:?}"
        );
        let sent = tokio::time::Instant::now();
        let payload: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        for chunk in payload.chunks(1000) {
            a.write_all(chunk).await.expect("write");
        }
        let mut got = vec![0u8; payload.len()];
        b.read_exact(&mut got).await.expect("read");
        assert_eq!(got, payload, "bytes arrive whole and in order");
        let took = sent.elapsed();
        assert!(
            took >= Duration::from_millis(80) && took <= Duration::from_millis(240),
            "{took:?}"
        );
        drop(a);
        let mut rest = [0u8; 1];
        assert_eq!(b.read(&mut rest).await.expect("eof"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn links_share_a_host_s_upload_and_bound_the_window() {
        let mut model = LinkModel::uniform(1, Duration::from_millis(10));
        model.window = 10_000;
        let network = MemoryNetwork::with_links(model);
        network.set_host(
            ip("10.0.0.1"),
            HostProfile {
                upload: Some(100_000),
                ..HostProfile::default()
            },
        );
        let (mut a, mut b) = linked(&network, "10.0.0.1", "10.0.0.2").await;
        // The window: a writer gets no further than 10 000 unread bytes.
        let n = tokio::time::timeout(Duration::from_secs(5), a.write(&[7u8; 50_000]))
            .await
            .expect("room")
            .expect("write");
        assert_eq!(n, 10_000);
        let blocked = tokio::time::timeout(Duration::from_secs(5), a.write(&[7u8; 1])).await;
        assert!(blocked.is_err(), "a full window blocks the writer");
        // 10 000 bytes at 100 000 B/s: 100 ms on the uplink, then 10 ms.
        let start = tokio::time::Instant::now();
        let mut got = vec![0u8; 10_000];
        b.read_exact(&mut got).await.expect("read");
        assert!(start.elapsed() <= Duration::from_millis(110));
        // Then 100 000 bytes take a second of uplink.
        let writer = tokio::spawn(async move {
            a.write_all(&[1u8; 100_000]).await.expect("write");
            a
        });
        let start = tokio::time::Instant::now();
        let mut got = vec![0u8; 100_000];
        b.read_exact(&mut got).await.expect("read");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1000) && took <= Duration::from_millis(1100),
            "{took:?}"
        );
        drop(writer.await.expect("writer"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_behind_nat_is_not_reachable_but_dials_out() {
        let network = MemoryNetwork::with_links(LinkModel::uniform(1, Duration::from_millis(20)));
        network.set_host(
            ip("10.0.0.9"),
            HostProfile {
                nat: true,
                ..HostProfile::default()
            },
        );
        let _listening = Transport::Memory(network.with_local_ip(ip("10.0.0.9")))
            .bind(SocketAddr::new(ip("10.0.0.9"), 9732))
            .await
            .expect("bind");
        let error = Transport::Memory(network.with_local_ip(ip("10.0.0.1")))
            .connect(SocketAddr::new(ip("10.0.0.9"), 9732))
            .await
            .err()
            .expect("refused");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        let (mut out, mut back) = linked(&network, "10.0.0.9", "10.0.0.1").await;
        out.write_all(b"hi").await.expect("write");
        let mut buf = [0u8; 2];
        back.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hi");
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_holds_data_until_it_heals() {
        let network = MemoryNetwork::with_links(LinkModel::uniform(1, Duration::from_millis(20)));
        let (mut a, mut b) = linked(&network, "10.0.0.1", "10.0.0.2").await;
        network.partition(|addr| u32::from(addr == ip("10.0.0.2")));
        assert!(!network.reachable(ip("10.0.0.1"), ip("10.0.0.2")));
        // New dials hang (the caller's timeout ends them).
        let dial = tokio::time::timeout(
            Duration::from_secs(10),
            Transport::Memory(network.with_local_ip(ip("10.0.0.1")))
                .connect(SocketAddr::new(ip("10.0.0.2"), 9732)),
        )
        .await;
        assert!(dial.is_err(), "a dial across the partition hangs");
        a.write_all(b"held").await.expect("write");
        let mut buf = [0u8; 4];
        let early = tokio::time::timeout(Duration::from_secs(20), b.read_exact(&mut buf)).await;
        assert!(early.is_err(), "nothing crosses the partition");
        network.heal();
        let healed = tokio::time::Instant::now();
        b.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"held");
        assert_eq!(healed.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn links_cut_for_the_user_timeout_are_reset_at_both_ends() {
        let network = MemoryNetwork::with_links(LinkModel::uniform(1, Duration::from_millis(20)));
        let (mut a, mut b) = linked(&network, "10.0.0.1", "10.0.0.2").await;
        let (mut c, mut d) = linked(&network, "10.0.0.3", "10.0.0.4").await;
        let start = tokio::time::Instant::now();
        network.partition(|addr| u32::from(addr == ip("10.0.0.2")));
        let mut buf = [0u8; 1];
        let error = b.read(&mut buf).await.expect_err("reset");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(start.elapsed(), DEFAULT_USER_TIMEOUT);
        let error = a.write_all(b"x").await.expect_err("reset");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        // A link inside one side is untouched.
        c.write_all(b"y").await.expect("write");
        d.read_exact(&mut buf).await.expect("read");
        assert_eq!(network.open_link_directions(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_wrote_then_closed_is_read_in_full_and_a_write_fails_a_round_trip_later() {
        // A Nack written just before a close must reach a peer that writes
        // its Ack meanwhile: TCP accepts the write, the reset comes back
        // one round trip later.
        let network = MemoryNetwork::with_links(LinkModel::uniform(1, Duration::from_millis(20)));
        let (mut a, mut b) = linked(&network, "10.0.0.1", "10.0.0.2").await;
        b.write_all(b"nack").await.expect("write");
        b.shutdown().await.expect("shutdown");
        drop(b);
        let start = tokio::time::Instant::now();
        a.write_all(b"ack")
            .await
            .expect("the first write is accepted");
        let mut buf = Vec::new();
        a.read_to_end(&mut buf).await.expect("read");
        assert_eq!(buf, b"nack");
        tokio::time::sleep_until(start + Duration::from_millis(39)).await;
        a.write_all(b"more").await.expect("no reset yet");
        tokio::time::sleep_until(start + Duration::from_millis(40)).await;
        let error = a.write_all(b"more").await.expect_err("reset");
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test(start_paused = true)]
    async fn a_crashed_host_says_nothing_and_its_peers_learn_it_from_the_timeout() {
        let network = MemoryNetwork::with_links(LinkModel::uniform(1, Duration::from_millis(20)));
        let (mut alive, crashed) = linked(&network, "10.0.0.1", "10.0.0.2").await;
        let start = tokio::time::Instant::now();
        network.set_down(ip("10.0.0.2"), true);
        drop(crashed); // its process is gone: no end of stream is sent
        alive
            .write_all(b"anyone?")
            .await
            .expect("write is buffered");
        let mut buf = [0u8; 1];
        let error = alive.read(&mut buf).await.expect_err("reset");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(start.elapsed(), DEFAULT_USER_TIMEOUT);
    }

    #[test]
    fn the_five_regions_have_a_median_of_100_ms() {
        let model = LinkModel::five_regions(0, Duration::from_millis(100));
        let mut all: Vec<Duration> = (0..5)
            .flat_map(|a| (0..5).map(move |b| (a, b)))
            .map(|(a, b)| model.one_way(a, b))
            .collect();
        all.sort();
        assert_eq!(all[all.len() / 2], Duration::from_millis(100));
        assert_eq!(all[0], Duration::from_millis(10));
        assert_eq!(all[all.len() - 1], Duration::from_millis(250));
        let half = LinkModel::five_regions(0, Duration::from_millis(50));
        assert_eq!(half.one_way(3, 4), Duration::from_millis(125));
    }
}
