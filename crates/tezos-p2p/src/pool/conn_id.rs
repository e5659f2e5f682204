//! The connection id (`P2p_connection.Id`): a remote address and, if
//! known, its listening port.

use std::fmt;
use std::net::IpAddr;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tezos_p2p_wire::point::{ipv6_form, Point};

/// A connection id (`P2p_connection.Id`): the remote address and, if
/// known, its listening port.
///
/// JSON (Octez `p2p_connection.id`): `{"addr": "<ipv6 text>", "port": n}`
/// with `port` omitted when unknown; IPv4 addresses are written IPv4-mapped
/// (`::ffff:a.b.c.d`) as Octez does, and read in either form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    /// Remote address (IPv4-mapped addresses are stored as IPv4).
    pub addr: IpAddr,
    /// Remote listening port, if known.
    pub port: Option<u16>,
}

impl ConnId {
    /// A connection id; an IPv4-mapped IPv6 address becomes IPv4.
    pub fn new(addr: IpAddr, port: Option<u16>) -> Self {
        ConnId {
            addr: addr.to_canonical(),
            port,
        }
    }

    /// `(addr, Some port)` for a point (Octez `Id.of_point`).
    pub fn of_point(p: Point) -> Self {
        ConnId::new(p.ip(), Some(p.port()))
    }

    /// The point, if the port is known (Octez `Id.to_point`).
    pub fn to_point(&self) -> Option<Point> {
        self.port.map(|port| Point::new(self.addr, port))
    }

    pub(crate) fn addr_json(&self) -> String {
        ipv6_form(self.addr).to_string()
    }
}

impl From<Point> for ConnId {
    fn from(p: Point) -> Self {
        ConnId::of_point(p)
    }
}

impl fmt::Display for ConnId {
    /// `a.b.c.d:port` / `[v6]:port`, or just the address without a port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.addr, self.port) {
            (IpAddr::V4(a), Some(p)) => write!(f, "{a}:{p}"),
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
            (a, None) => write!(f, "{a}"),
        }
    }
}

impl Serialize for ConnId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1 + usize::from(self.port.is_some())))?;
        m.serialize_entry("addr", &self.addr_json())?;
        if let Some(p) = self.port {
            m.serialize_entry("port", &p)?;
        }
        m.end()
    }
}

#[derive(Deserialize)]
struct ConnIdJson {
    addr: String,
    #[serde(default)]
    port: Option<u16>,
}

pub(crate) fn parse_addr<E: serde::de::Error>(s: &str) -> Result<IpAddr, E> {
    s.parse::<IpAddr>()
        .map_err(|_| E::custom(format_args!("invalid address {s:?}")))
}

impl<'de> Deserialize<'de> for ConnId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = ConnIdJson::deserialize(d)?;
        Ok(ConnId::new(parse_addr(&j.addr)?, j.port))
    }
}
