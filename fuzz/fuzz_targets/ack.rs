//! `Ack` (`Ack`, `Nack_v_0`, `Nack` with a motive and a point list).
//! Point texts are normalised on decoding (IPv4-mapped IPv6 becomes IPv4,
//! IPv6 is compressed), so the round trip is decode → encode → decode, and
//! re-encoding the re-encoded form is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tezos_p2p_wire::encoding::{Decode, Encode};
use tezos_p2p_wire::message::Ack;
use tezos_p2p_wire::point::MAX_POINTS;

fuzz_target!(|data: &[u8]| {
    if let Ok(ack) = Ack::from_bytes(data) {
        if let Ack::Nack {
            alternative_points, ..
        } = &ack
        {
            assert!(alternative_points.len() <= MAX_POINTS);
        }
        let bytes = ack.to_bytes().expect("a decoded ack re-encodes");
        let again = Ack::from_bytes(&bytes).expect("the re-encoded ack decodes");
        assert_eq!(again, ack);
        assert_eq!(again.to_bytes().unwrap(), bytes);
    }
});
