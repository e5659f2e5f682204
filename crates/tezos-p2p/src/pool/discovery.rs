//! Local discovery over UDP (pool spec §8, F39): opt-in, and actually
//! started (Octez creates its workers but never activates them).
//!
//! Every node binds the discovery port (shared with `SO_REUSEPORT`), and
//! broadcasts a 28-byte datagram — `DISCOMAGIC`, its peer id, its listening
//! port — to the discovery address, with a delay that doubles from 0.1 s to
//! 51.2 s and restarts from 0.1 s when the maintenance runs short of
//! candidates. What it hears from other peers registers their points.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tracing::debug;

pub use tezos_p2p_wire::discovery::{decode, encode, MAGIC, MESSAGE_LEN};
use tezos_p2p_wire::message::{AppMessage, ConnMeta};
use tezos_p2p_wire::point::Point;

use crate::pool::core::{Inner, Registrations};
use crate::pool::peers::PeerMeta;

/// Octez's default discovery port.
pub const DEFAULT_PORT: u16 = 10732;
/// First delay between two announcements.
pub const INITIAL_DELAY: Duration = Duration::from_millis(100);
/// Largest delay between two announcements (0.1 s × 2⁹).
pub const MAX_DELAY: Duration = Duration::from_millis(51_200);

/// Where discovery announces and listens.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// The (broadcast) address and port announcements go to; the port is
    /// also the one we listen on. Octez's default is 255.255.255.255:10732;
    /// 127.255.255.255 keeps announcements on this machine.
    pub addr: SocketAddr,
    /// Register discovered points as trusted.
    pub trust_discovered_peers: bool,
}

/// The delay after `delay`: doubled, up to [`MAX_DELAY`].
pub fn next_delay(delay: Duration) -> Duration {
    (delay * 2).min(MAX_DELAY)
}

fn udp_socket(bind: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    s.set_broadcast(true)?;
    s.set_nonblocking(true)?;
    s.bind(&bind.into())?;
    UdpSocket::from_std(s.into())
}

/// Starts local discovery on `inner`'s pool: needs a listening port.
/// Runs until shutdown.
pub(crate) fn start<A, C, P>(inner: &Arc<Inner<A, C, P>>, cfg: DiscoveryConfig) -> io::Result<()>
where
    A: AppMessage + Clone + Sync,
    C: ConnMeta,
    P: PeerMeta,
{
    let port = inner
        .config
        .advertised_port
        .or(inner.listening_port)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "discovery needs a listening port",
            )
        })?;
    let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), cfg.addr.port());
    let receiver = udp_socket(listen)?;
    let sender = udp_socket(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))?;
    let message = encode(&inner.config.identity.peer_id, port);
    inner.spawn(receive(inner.clone(), receiver, cfg.trust_discovered_peers));
    inner.spawn(announce(inner.clone(), sender, cfg.addr, message));
    Ok(())
}

async fn receive<A, C, P: PeerMeta>(inner: Arc<Inner<A, C, P>>, socket: UdpSocket, trusted: bool) {
    let mut buf = [0u8; MESSAGE_LEN + 1];
    let me = inner.config.identity.peer_id;
    loop {
        let r = tokio::select! {
            biased;
            _ = inner.cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let Ok((n, from)) = r else { continue };
        let Some((peer, port)) = decode(&buf[..n]) else {
            continue;
        };
        if peer == me || port == 0 {
            continue;
        }
        let point = Point::new(from.ip(), port);
        let now = inner.now();
        let mut regs = Registrations::default();
        let new = regs.new_point(
            &mut inner.state().tables,
            point,
            trusted.then_some(true),
            now,
        );
        if new {
            debug!(%point, %peer, "discovered");
        }
        inner.announce(regs);
    }
}

async fn announce<A, C, P>(
    inner: Arc<Inner<A, C, P>>,
    socket: UdpSocket,
    to: SocketAddr,
    message: [u8; MESSAGE_LEN],
) {
    let mut delay = INITIAL_DELAY;
    loop {
        if let Err(e) = socket.send_to(&message, to).await {
            debug!(error = %e, "discovery announcement failed");
        }
        tokio::select! {
            biased;
            _ = inner.cancel.cancelled() => return,
            _ = inner.maintenance.wake_discovery.notified() => delay = INITIAL_DELAY,
            _ = tokio::time::sleep(delay) => delay = next_delay(delay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_51_2_s() {
        let mut d = INITIAL_DELAY;
        let mut seen = vec![d];
        for _ in 0..12 {
            d = next_delay(d);
            seen.push(d);
        }
        assert_eq!(seen[1], Duration::from_millis(200));
        assert_eq!(seen[9], MAX_DELAY);
        assert_eq!(seen[12], MAX_DELAY);
    }
}
