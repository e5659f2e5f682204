//! Property tests of every codec: encode → decode gives the value back,
//! for every message type; and arbitrary bytes into every decoder never
//! panic (they give a value or a typed error).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use tezos_p2p_wire::encoding::{Decode, Encode, Reader};
use tezos_p2p_wire::identity::{Identity, PeerId, PowStamp, PublicKey};
use tezos_p2p_wire::message::{
    Ack, ConnectionMessage, MessageDecoder, OctezMetadata, P2pMessage, RawMessage,
};
use tezos_p2p_wire::point::{decode_point_list, decode_points_to_end, Point};
use tezos_p2p_wire::rejection::Motive;
use tezos_p2p_wire::version::{ChainName, NetworkVersion};

fn point() -> impl Strategy<Value = Point> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| Point::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| Point::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn points(max: usize) -> impl Strategy<Value = Vec<Point>> {
    proptest::collection::vec(point(), 0..=max)
}

fn peer_id() -> impl Strategy<Value = PeerId> {
    any::<[u8; 16]>().prop_map(PeerId)
}

fn motive() -> impl Strategy<Value = Motive> {
    any::<i16>().prop_map(Motive::from_code)
}

fn version() -> impl Strategy<Value = NetworkVersion> {
    (
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(name, ddb, p2p)| NetworkVersion {
            chain_name: ChainName::new(name),
            distributed_db_version: ddb,
            p2p_version: p2p,
        })
}

fn connection_message() -> impl Strategy<Value = ConnectionMessage> {
    (
        prop_oneof![Just(None), (1u16..).prop_map(Some)],
        any::<[u8; 32]>(),
        any::<[u8; 24]>(),
        any::<[u8; 24]>(),
        version(),
    )
        .prop_map(|(port, pk, stamp, nonce, version)| ConnectionMessage {
            port,
            public_key: PublicKey(pk),
            proof_of_work_stamp: PowStamp(stamp),
            message_nonce: nonce,
            version,
        })
}

fn ack() -> impl Strategy<Value = Ack> {
    prop_oneof![
        Just(Ack::Ack),
        Just(Ack::NackV0),
        (motive(), points(100)).prop_map(|(motive, alternative_points)| Ack::Nack {
            motive,
            alternative_points
        }),
    ]
}

fn p2p_message() -> impl Strategy<Value = P2pMessage<RawMessage>> {
    prop_oneof![
        Just(P2pMessage::Disconnect),
        Just(P2pMessage::Bootstrap),
        points(100).prop_map(P2pMessage::Advertise),
        (point(), peer_id()).prop_map(|(p, id)| P2pMessage::SwapRequest(p, id)),
        (point(), peer_id()).prop_map(|(p, id)| P2pMessage::SwapAck(p, id)),
        (0x10u16.., proptest::collection::vec(any::<u8>(), 0..512))
            .prop_map(|(tag, body)| P2pMessage::Message(RawMessage { tag, body })),
    ]
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..600)
}

proptest! {
    #[test]
    fn point_round_trips(p in point()) {
        prop_assert_eq!(Point::from_bytes(&p.to_bytes().unwrap()).unwrap(), p);
        prop_assert_eq!(p.to_string().parse::<Point>().unwrap(), p);
    }

    #[test]
    fn network_version_round_trips(v in version()) {
        prop_assert_eq!(NetworkVersion::from_bytes(&v.to_bytes().unwrap()).unwrap(), v);
    }

    #[test]
    fn motive_round_trips(m in motive()) {
        prop_assert_eq!(Motive::from_bytes(&m.to_bytes().unwrap()).unwrap(), m);
    }

    #[test]
    fn connection_message_round_trips(m in connection_message()) {
        let framed = m.to_bytes().unwrap();
        prop_assert_eq!(ConnectionMessage::from_bytes(&framed).unwrap(), m.clone());
        prop_assert_eq!(ConnectionMessage::decode_body(&framed[2..]).unwrap(), m);
    }

    #[test]
    fn metadata_round_trips(a in any::<bool>(), b in any::<bool>()) {
        let m = OctezMetadata { disable_mempool: a, private_node: b };
        prop_assert_eq!(OctezMetadata::from_bytes(&m.to_bytes().unwrap()).unwrap(), m);
    }

    #[test]
    fn ack_round_trips(a in ack()) {
        prop_assert_eq!(Ack::from_bytes(&a.to_bytes().unwrap()).unwrap(), a);
    }

    #[test]
    fn p2p_message_round_trips(m in p2p_message()) {
        let bytes = m.to_bytes().unwrap();
        prop_assert_eq!(P2pMessage::<RawMessage>::from_bytes(&bytes).unwrap(), m.clone());
        // And through the stream decoder, split anywhere.
        let cut = bytes.len() / 3;
        let mut d = MessageDecoder::<RawMessage>::new();
        d.feed(&bytes[..cut]);
        prop_assert!(d.next().unwrap().is_none() || cut == bytes.len());
        d.feed(&bytes[cut..]);
        prop_assert_eq!(d.next().unwrap(), Some((bytes.len(), m)));
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in garbage(), split in 0usize..600) {
        let _ = Point::from_bytes(&bytes);
        let _ = NetworkVersion::from_bytes(&bytes);
        let _ = Motive::from_bytes(&bytes);
        let _ = ConnectionMessage::from_bytes(&bytes);
        let _ = ConnectionMessage::decode_body(&bytes);
        let _ = OctezMetadata::from_bytes(&bytes);
        let _ = Ack::from_bytes(&bytes);
        let _ = P2pMessage::<RawMessage>::from_bytes(&bytes);
        let _ = decode_point_list(&mut Reader::new(&bytes));
        let _ = decode_points_to_end(&mut Reader::new(&bytes));
        let text = String::from_utf8_lossy(&bytes);
        let _ = text.parse::<Point>();
        let _ = text.parse::<PeerId>();
        let _ = Identity::from_json(&text, None);
        let mut d = MessageDecoder::<RawMessage>::new();
        let split = split.min(bytes.len());
        d.feed(&bytes[..split]);
        while let Ok(Some(_)) = d.next() {}
        d.feed(&bytes[split..]);
        while let Ok(Some(_)) = d.next() {}
    }
}
