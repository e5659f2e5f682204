//! Points: an IP address and a port (wire spec §8.3, `P2p_point.Id`).
//!
//! On the wire a point is **text**, not a binary address:
//! `check_size 51 (string)`, i.e. a `u32` length then at most 47 ASCII bytes
//! such as `203.0.113.5:9732` or `[2001:db8::1]:9732`. Octez keeps IPv4
//! addresses as IPv4-mapped IPv6 and always writes them in dotted form; this
//! type does the converse and keeps them as [`IpAddr::V4`], normalising
//! `::ffff:a.b.c.d` to `a.b.c.d`, so both spellings give equal points.
//!
//! Lists of points appear twice: in `Nack` with a `u32` byte-length prefix
//! ([`encode_point_list`] / [`decode_point_list`]) and in `Advertise` running
//! to the end of the message ([`encode_points_to_end`] /
//! [`decode_points_to_end`]). Both hold at most [`MAX_POINTS`] points.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::encoding::{Decode, DecodeError, Encode, EncodeError, Reader, WriteExt};
use crate::identity::PeerId;

/// The `check_size` bound of an encoded point, its `u32` prefix included.
pub const MAX_POINT_ENCODED_SIZE: usize = 51;
/// The longest point text: `[` + 39 + `]:` + 5 characters.
pub const MAX_POINT_TEXT_LEN: usize = MAX_POINT_ENCODED_SIZE - 4;
/// The `max_length` of the point lists of `Nack` and `Advertise`.
pub const MAX_POINTS: usize = 100;

/// A network point: an IP address and a TCP port.
///
/// IPv4 addresses, including IPv4-mapped IPv6 ones, are stored as
/// [`IpAddr::V4`]; the fields are private so that this always holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Point {
    ip: IpAddr,
    port: u16,
}

/// Why a point text does not parse (Octez `P2p_point.Id.of_string`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PointParseError {
    /// No `:<port>` after the address (Octez requires the port).
    #[error("missing port in point {0:?}")]
    MissingPort(String),
    /// The port is not a decimal number in `0..=65535`.
    #[error("invalid port in point {0:?}")]
    InvalidPort(String),
    /// The address is not an IP literal (hostnames are refused).
    #[error("invalid address in point {0:?}")]
    InvalidAddress(String),
    /// The text after `#` is not a base58 peer id.
    #[error("invalid peer id in point {0:?}")]
    InvalidPeerId(String),
    /// Anything else: unbracketed IPv6, unbalanced brackets, junk.
    #[error("malformed point {0:?}")]
    BadFormat(String),
}

/// The 16-byte IPv6 form of `ip`, IPv4 as IPv4-mapped: how Octez keys and
/// writes every address. Its inverse is [`IpAddr::to_canonical`], which
/// every address entering the library goes through.
pub fn ipv6_form(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

impl Point {
    /// A point; an IPv4-mapped IPv6 address becomes the IPv4 address.
    pub fn new(ip: IpAddr, port: u16) -> Self {
        Point {
            ip: ip.to_canonical(),
            port,
        }
    }

    /// The address (IPv4 for IPv4 and IPv4-mapped addresses).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The point as a socket address (no flow info or scope id).
    pub fn to_socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

impl From<SocketAddr> for Point {
    fn from(sa: SocketAddr) -> Self {
        Point::new(sa.ip(), sa.port())
    }
}

impl From<Point> for SocketAddr {
    fn from(p: Point) -> Self {
        p.to_socket_addr()
    }
}

impl fmt::Display for Point {
    /// Octez's text: `a.b.c.d:port` or `[compressed-ipv6]:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(v4) => write!(f, "{v4}:{}", self.port),
            IpAddr::V6(v6) => write!(f, "[{v6}]:{}", self.port),
        }
    }
}

impl fmt::Debug for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Point({self})")
    }
}

/// A decimal port: digits only, value at most 65535.
fn parse_port(s: &str, whole: &str) -> Result<u16, PointParseError> {
    if s.is_empty() {
        return Err(PointParseError::MissingPort(whole.to_owned()));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PointParseError::InvalidPort(whole.to_owned()));
    }
    let mut v: u32 = 0;
    for b in s.bytes() {
        v = v.saturating_mul(10).saturating_add(u32::from(b - b'0'));
    }
    u16::try_from(v).map_err(|_| PointParseError::InvalidPort(whole.to_owned()))
}

impl FromStr for Point {
    type Err = PointParseError;

    /// Accepts `<dotted quad>:<port>` or `[<ipv6 or ipv4>]:<port>`, with an
    /// optional `#<b58 peer id>` suffix that is checked and then ignored, as
    /// Octez's `of_string_exn` does. Hostnames, unbracketed IPv6 and a
    /// missing port are refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PointParseError::BadFormat(s.to_owned());
        let main = match s.split_once('#') {
            Some((main, id)) => {
                id.parse::<PeerId>()
                    .map_err(|_| PointParseError::InvalidPeerId(s.to_owned()))?;
                main
            }
            None => s,
        };
        if let Some(inner) = main.strip_prefix('[') {
            let (addr, rest) = inner.split_once(']').ok_or_else(bad)?;
            let port = match rest.strip_prefix(':') {
                Some(port) => port,
                None if rest.is_empty() => return Err(PointParseError::MissingPort(s.to_owned())),
                None => return Err(bad()),
            };
            let ip = addr
                .parse::<IpAddr>()
                .map_err(|_| PointParseError::InvalidAddress(s.to_owned()))?;
            return Ok(Point::new(ip, parse_port(port, s)?));
        }
        let (addr, port) = match main.split_once(':') {
            Some((_, port)) if port.contains(':') => return Err(bad()),
            Some(parts) => parts,
            None => return Err(PointParseError::MissingPort(s.to_owned())),
        };
        if addr.contains(['[', ']']) {
            return Err(bad());
        }
        let ip = addr
            .parse::<Ipv4Addr>()
            .map_err(|_| PointParseError::InvalidAddress(s.to_owned()))?;
        Ok(Point::new(IpAddr::V4(ip), parse_port(port, s)?))
    }
}

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Encode for Point {
    /// `u32` length then the Octez text (at most 47 bytes).
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        // Formatted on the stack: a Nack or Advertise lists up to 100
        // points, and a `String` each was a few percent of a simulated
        // node's CPU. The longest text fits by construction.
        use std::io::Write;
        let mut text = [0u8; MAX_POINT_TEXT_LEN];
        let mut rest = &mut text[..];
        if write!(rest, "{self}").is_err() {
            return Err(EncodeError::SizeLimitExceeded {
                size: self.to_string().len() + 4,
                limit: MAX_POINT_ENCODED_SIZE,
            });
        }
        let len = MAX_POINT_TEXT_LEN - rest.len();
        out.put_dynamic_bytes(&text[..len])
    }
}

impl Decode for Point {
    /// `check_size 51 (string)`, then the text must parse
    /// ([`DecodeError::InvalidPoint`] otherwise).
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let bytes = r.bounded_bytes(MAX_POINT_ENCODED_SIZE)?;
        let invalid = || DecodeError::InvalidPoint(String::from_utf8_lossy(bytes).into_owned());
        let text = std::str::from_utf8(bytes).map_err(|_| invalid())?;
        text.parse().map_err(|_| invalid())
    }
}

/// Writes points back to back, with no prefix (`Variable.list ~max_length:100`,
/// the body of `Advertise`). More than [`MAX_POINTS`] is
/// [`EncodeError::ListTooLong`].
pub fn encode_points_to_end(points: &[Point], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if points.len() > MAX_POINTS {
        return Err(EncodeError::ListTooLong {
            len: points.len(),
            max: MAX_POINTS,
        });
    }
    let at = out.len();
    for p in points {
        if let Err(e) = p.encode(out) {
            out.truncate(at);
            return Err(e);
        }
    }
    Ok(())
}

/// Reads points until `r` is empty (`Variable.list ~max_length:100`). As in
/// data-encoding, bytes left after [`MAX_POINTS`] points are
/// [`DecodeError::ListTooLong`].
pub fn decode_points_to_end(r: &mut Reader<'_>) -> Result<Vec<Point>, DecodeError> {
    let mut points = Vec::new();
    while !r.is_empty() {
        if points.len() == MAX_POINTS {
            return Err(DecodeError::ListTooLong { max: MAX_POINTS });
        }
        points.push(Point::decode(r)?);
    }
    Ok(points)
}

/// Writes a `list ~max_length:100 point`: a `u32` byte length, then the
/// points (the point list of `Nack`).
pub fn encode_point_list(points: &[Point], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let at = out.len();
    out.put_dynamic(|o| encode_points_to_end(points, o))
        .inspect_err(|_| out.truncate(at))
}

/// Reads a `list ~max_length:100 point`: a `u32` byte length, then exactly
/// that many bytes of points.
pub fn decode_point_list(r: &mut Reader<'_>) -> Result<Vec<Point>, DecodeError> {
    let mut sub = r.dynamic()?;
    decode_points_to_end(&mut sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv6Addr, SocketAddrV6};

    fn p(s: &str) -> Point {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_and_ipv6_print_in_octez_form() {
        assert_eq!(p("203.0.113.5:9732").to_string(), "203.0.113.5:9732");
        assert_eq!(p("[2001:db8::1]:9732").to_string(), "[2001:db8::1]:9732");
        assert_eq!(
            p("[2001:0DB8:0:0:0:0:0:1]:1").to_string(),
            "[2001:db8::1]:1",
            "IPv6 is printed compressed and lowercase"
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_is_normalised_to_ipv4() {
        let mapped = p("[::ffff:1.2.3.4]:9732");
        assert_eq!(mapped, p("1.2.3.4:9732"));
        assert_eq!(mapped.ip(), IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(mapped.to_string(), "1.2.3.4:9732");
        let sa = SocketAddr::V6(SocketAddrV6::new(
            Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped(),
            80,
            0,
            0,
        ));
        assert_eq!(Point::from(sa).to_string(), "10.0.0.1:80");
    }

    #[test]
    fn bracketed_ipv4_is_accepted() {
        assert_eq!(p("[1.2.3.4]:5"), p("1.2.3.4:5"));
    }

    #[test]
    fn socket_addr_round_trips() {
        let sa: SocketAddr = "[2001:db8::7]:65535".parse().unwrap();
        assert_eq!(Point::from(sa).to_socket_addr(), sa);
        assert_eq!(SocketAddr::from(Point::from(sa)), sa);
    }

    #[test]
    fn peer_id_suffix_is_checked_then_ignored() {
        assert_eq!(
            p("1.2.3.4:9732#idrAta9tLVKFCVMECJb62aQXbEBYBo"),
            p("1.2.3.4:9732")
        );
        assert_eq!(
            p("[::1]:1#idrAta9tLVKFCVMECJb62aQXbEBYBo"),
            Point::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1)
        );
        assert!(matches!(
            "1.2.3.4:9732#garbage".parse::<Point>(),
            Err(PointParseError::InvalidPeerId(_))
        ));
    }

    #[test]
    fn what_octez_refuses_is_refused() {
        let err = |s: &str| s.parse::<Point>().unwrap_err();
        assert!(matches!(err("1.2.3.4"), PointParseError::MissingPort(_)));
        assert!(matches!(err("1.2.3.4:"), PointParseError::MissingPort(_)));
        assert!(matches!(err("[::1]"), PointParseError::MissingPort(_)));
        assert!(matches!(
            err("1.2.3.4:65536"),
            PointParseError::InvalidPort(_)
        ));
        assert!(matches!(
            err("1.2.3.4:+80"),
            PointParseError::InvalidPort(_)
        ));
        assert!(matches!(
            err("1.2.3.4:99999999999999999999"),
            PointParseError::InvalidPort(_)
        ));
        assert!(matches!(
            err("localhost:9732"),
            PointParseError::InvalidAddress(_)
        ));
        assert!(matches!(
            err("tezos.com:9732"),
            PointParseError::InvalidAddress(_)
        ));
        assert!(matches!(err(":9732"), PointParseError::InvalidAddress(_)));
        assert!(matches!(
            err("2001:db8::1:9732"),
            PointParseError::BadFormat(_)
        ));
        assert!(matches!(
            err("[2001:db8::1:9732"),
            PointParseError::BadFormat(_)
        ));
        assert!(matches!(err("[::1]x:1"), PointParseError::BadFormat(_)));
        assert!(matches!(
            err("[nope]:1"),
            PointParseError::InvalidAddress(_)
        ));
        assert!(matches!(err(""), PointParseError::MissingPort(_)));
        assert!(matches!(
            err("x".repeat(47).as_str()),
            PointParseError::MissingPort(_)
        ));
    }

    #[test]
    fn ports_zero_and_max_parse() {
        assert_eq!(p("1.2.3.4:0").port(), 0);
        assert_eq!(p("1.2.3.4:65535").port(), 65535);
        assert_eq!(p("1.2.3.4:009732").port(), 9732);
    }

    #[test]
    fn encoding_is_a_length_prefixed_string() {
        let bytes = p("198.51.100.7:9732").to_bytes().unwrap();
        assert_eq!(
            hex::encode(&bytes),
            "000000113139382e35312e3130302e373a39373332"
        );
        assert_eq!(Point::from_bytes(&bytes).unwrap(), p("198.51.100.7:9732"));
    }

    #[test]
    fn longest_ipv6_point_fits_in_47_bytes() {
        let pt = p("[1111:2222:3333:4444:5555:6666:7777:8888]:65535");
        let bytes = pt.to_bytes().unwrap();
        assert_eq!(bytes.len(), MAX_POINT_ENCODED_SIZE);
        assert_eq!(Point::from_bytes(&bytes).unwrap(), pt);
    }

    #[test]
    fn text_longer_than_47_bytes_is_size_limit_exceeded() {
        let mut bytes = Vec::new();
        bytes
            .put_dynamic_bytes(b"1.2.3.4:0000000000000000000000000000000000000009")
            .unwrap();
        assert!(matches!(
            Point::from_bytes(&bytes),
            Err(DecodeError::SizeLimitExceeded {
                size: 52,
                limit: 51
            })
        ));
    }

    #[test]
    fn unparsable_text_is_invalid_point() {
        let mut bytes = Vec::new();
        bytes.put_dynamic_bytes(b"localhost:9732").unwrap();
        assert_eq!(
            Point::from_bytes(&bytes),
            Err(DecodeError::InvalidPoint("localhost:9732".into()))
        );
        let mut bytes = Vec::new();
        bytes.put_dynamic_bytes(&[0xFF, b':', b'1']).unwrap();
        assert!(matches!(
            Point::from_bytes(&bytes),
            Err(DecodeError::InvalidPoint(_))
        ));
    }

    #[test]
    fn serde_uses_the_text_form() {
        let pt = p("[2001:db8::1]:9732");
        let json = serde_json::to_string(&pt).unwrap();
        assert_eq!(json, "\"[2001:db8::1]:9732\"");
        assert_eq!(serde_json::from_str::<Point>(&json).unwrap(), pt);
        assert!(serde_json::from_str::<Point>("\"example.com:1\"").is_err());
    }

    #[test]
    fn point_list_has_a_byte_length_prefix() {
        let pts = [p("198.51.100.7:9732")];
        let mut out = Vec::new();
        encode_point_list(&pts, &mut out).unwrap();
        assert_eq!(
            hex::encode(&out),
            "00000015000000113139382e35312e3130302e373a39373332"
        );
        let mut r = Reader::new(&out);
        assert_eq!(decode_point_list(&mut r).unwrap(), pts);
        r.finish().unwrap();
    }

    #[test]
    fn more_than_100_points_is_list_too_long() {
        let pts = vec![p("1.2.3.4:1"); MAX_POINTS + 1];
        let mut out = vec![7];
        assert_eq!(
            encode_point_list(&pts, &mut out),
            Err(EncodeError::ListTooLong { len: 101, max: 100 })
        );
        assert_eq!(out, [7], "a failed encoding leaves the buffer as it was");
        assert!(encode_points_to_end(&pts, &mut out).is_err());

        let mut bytes = Vec::new();
        for pt in &pts {
            pt.encode(&mut bytes).unwrap();
        }
        assert_eq!(
            decode_points_to_end(&mut Reader::new(&bytes)),
            Err(DecodeError::ListTooLong { max: 100 })
        );
        let exactly_100 = &bytes[..bytes.len() - 13];
        assert_eq!(
            decode_points_to_end(&mut Reader::new(exactly_100))
                .unwrap()
                .len(),
            100
        );
    }

    #[test]
    fn truncated_point_list_is_not_enough_data() {
        let mut out = Vec::new();
        encode_point_list(&[p("1.2.3.4:1")], &mut out).unwrap();
        out.pop();
        assert_eq!(
            decode_point_list(&mut Reader::new(&out)),
            Err(DecodeError::NotEnoughData)
        );
        // The byte length cuts a point in the middle.
        let cut = [0, 0, 0, 3, 0, 0, 0];
        assert_eq!(
            decode_point_list(&mut Reader::new(&cut)),
            Err(DecodeError::NotEnoughData)
        );
    }
}
