//! The local-discovery datagram (pool spec §8): `DISCOMAGIC`, the
//! sender's peer id and its listening port, 28 bytes. The UDP side is the
//! pool's (`tezos_p2p::discovery`).

use crate::identity::{PeerId, PEER_ID_LEN};

/// The datagram's magic prefix.
pub const MAGIC: &[u8; 10] = b"DISCOMAGIC";
/// Length of a discovery datagram.
pub const MESSAGE_LEN: usize = MAGIC.len() + PEER_ID_LEN + 2;

/// Encodes an announcement. The port is written as its 16 bits (Octez
/// writes a signed 16-bit integer and cannot announce ports above 32767).
pub fn encode(peer_id: &PeerId, port: u16) -> [u8; MESSAGE_LEN] {
    let mut m = [0u8; MESSAGE_LEN];
    m[..MAGIC.len()].copy_from_slice(MAGIC);
    m[MAGIC.len()..MAGIC.len() + PEER_ID_LEN].copy_from_slice(&peer_id.0);
    m[MAGIC.len() + PEER_ID_LEN..].copy_from_slice(&port.to_be_bytes());
    m
}

/// Decodes an announcement; `None` for anything else.
pub fn decode(datagram: &[u8]) -> Option<(PeerId, u16)> {
    if datagram.len() != MESSAGE_LEN || &datagram[..MAGIC.len()] != MAGIC {
        return None;
    }
    let mut id = [0u8; PEER_ID_LEN];
    id.copy_from_slice(&datagram[MAGIC.len()..MAGIC.len() + PEER_ID_LEN]);
    let port = u16::from_be_bytes([datagram[MESSAGE_LEN - 2], datagram[MESSAGE_LEN - 1]]);
    Some((PeerId(id), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_round_trips_and_rejects_other_datagrams() {
        let id = PeerId([7; 16]);
        let m = encode(&id, 40_000);
        assert_eq!(m.len(), 28);
        assert_eq!(decode(&m), Some((id, 40_000)));
        assert_eq!(decode(&m[..27]), None);
        let mut bad = m;
        bad[0] = b'X';
        assert_eq!(decode(&bad), None);
    }
}
