//! Admission: who may connect, decided over the pool's state with no IO.
//!
//! Also the count of incoming handshakes in progress
//! ([`IncomingHandshakes`]): in all (Octez's `max_incoming_connections`)
//! and per source address (ours, `max_incoming_connections_per_ip`), so
//! that one address cannot hold every slot.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

/// The source an incoming connection counts against: an IPv4 address
/// (IPv4-mapped IPv6 addresses included), or the /64 of an IPv6 address —
/// the usual allocation of one site, whose addresses cost an attacker
/// nothing.
pub(crate) fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Why an incoming connection was refused before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_incoming_connections` handshakes are in progress.
    TooMany,
    /// `max_incoming_connections_per_ip` handshakes from that source are.
    TooManyFromSource,
}

/// Incoming handshakes in progress, in all and per source
/// ([`source_of`]). The table holds only sources with a handshake in
/// progress, so it has at most `max_incoming_connections` entries and is
/// empty when no handshake is.
#[derive(Debug, Default)]
pub(crate) struct IncomingHandshakes {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

impl IncomingHandshakes {
    /// Counts a handshake from `ip` if both limits allow it.
    pub(crate) fn admit(
        &mut self,
        ip: IpAddr,
        max_total: usize,
        max_per_source: usize,
    ) -> Result<(), Refusal> {
        if self.total >= max_total {
            return Err(Refusal::TooMany);
        }
        let source = source_of(ip);
        let n = self.per_source.get(&source).copied().unwrap_or(0);
        if n >= max_per_source {
            return Err(Refusal::TooManyFromSource);
        }
        self.per_source.insert(source, n + 1);
        self.total += 1;
        Ok(())
    }

    /// Uncounts a handshake from `ip` that [`admit`](Self::admit) counted.
    pub(crate) fn release(&mut self, ip: IpAddr) {
        let source = source_of(ip);
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
                if self.per_source.is_empty() {
                    // Give a burst's memory back.
                    self.per_source = HashMap::new();
                }
            }
            self.total -= 1;
        }
    }

    /// Handshakes in progress.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Handshakes in progress from `ip`'s source.
    pub(crate) fn of_source(&self, ip: IpAddr) -> usize {
        self.per_source.get(&source_of(ip)).copied().unwrap_or(0)
    }

    /// Sources with a handshake in progress (entries of the table).
    pub(crate) fn sources(&self) -> usize {
        self.per_source.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_slash_64s() {
        assert_eq!(source_of(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(source_of(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("::1")), ip("::"));
    }

    #[test]
    fn a_source_over_its_limit_is_refused_while_others_pass() {
        let mut t = IncomingHandshakes::default();
        for _ in 0..3 {
            t.admit(ip("10.0.0.1"), 20, 3).unwrap();
        }
        assert_eq!(
            t.admit(ip("10.0.0.1"), 20, 3),
            Err(Refusal::TooManyFromSource)
        );
        assert_eq!(
            t.admit(ip("::ffff:10.0.0.1"), 20, 3),
            Err(Refusal::TooManyFromSource)
        );
        t.admit(ip("10.0.0.2"), 20, 3).unwrap();
        assert_eq!((t.total(), t.sources()), (4, 2));
        assert_eq!(t.of_source(ip("10.0.0.1")), 3);
        // The global limit still holds.
        assert_eq!(t.admit(ip("10.0.0.3"), 4, 3), Err(Refusal::TooMany));
        t.release(ip("10.0.0.1"));
        t.admit(ip("10.0.0.1"), 20, 3).unwrap();
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_count() {
        let mut t = IncomingHandshakes::default();
        t.admit(ip("2001:db8:0:1::1"), 20, 2).unwrap();
        t.admit(ip("2001:db8:0:1::2"), 20, 2).unwrap();
        assert_eq!(
            t.admit(ip("2001:db8:0:1:ffff::3"), 20, 2),
            Err(Refusal::TooManyFromSource)
        );
        t.admit(ip("2001:db8:0:2::1"), 20, 2).unwrap();
        assert_eq!(t.of_source(ip("2001:db8:0:1::9")), 2);
    }

    #[test]
    fn the_table_empties_as_handshakes_end() {
        let mut t = IncomingHandshakes::default();
        let ips: Vec<IpAddr> = (1..=20).map(|i| ip(&format!("10.0.0.{i}"))).collect();
        for &a in &ips {
            t.admit(a, 20, 4).unwrap();
        }
        assert_eq!(t.sources(), 20);
        for &a in &ips {
            t.release(a);
        }
        assert_eq!((t.total(), t.sources()), (0, 0));
        assert_eq!(t.per_source.capacity(), 0);
        // Releasing what was never admitted changes nothing.
        t.release(ip("10.0.0.1"));
        assert_eq!(t.total(), 0);
    }
}
