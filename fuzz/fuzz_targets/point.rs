//! `Point`: the binary form (`u32` length + text, at most 51 bytes) and the
//! text form (`FromStr`, with an optional `#peer_id`). Whatever parses
//! prints back to a text that parses to the same point and fits the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tezos_p2p_wire::encoding::{Decode, Encode, Reader};
use tezos_p2p_wire::point::{
    decode_point_list, decode_points_to_end, Point, MAX_POINTS, MAX_POINT_ENCODED_SIZE,
    MAX_POINT_TEXT_LEN,
};

fn check(p: Point) {
    let text = p.to_string();
    assert!(text.len() <= MAX_POINT_TEXT_LEN, "{text}");
    assert_eq!(text.parse::<Point>().unwrap(), p);
    let bytes = p.to_bytes().expect("every point encodes");
    assert!(bytes.len() <= MAX_POINT_ENCODED_SIZE);
    assert_eq!(Point::from_bytes(&bytes).unwrap(), p);
    assert_eq!(Point::from(p.to_socket_addr()), p);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Point::from_bytes(data) {
        check(p);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = s.parse::<Point>() {
            check(p);
        }
    }
    // Both list forms.
    let mut r = Reader::new(data);
    if let Ok(points) = decode_points_to_end(&mut r) {
        assert!(points.len() <= MAX_POINTS);
        assert!(r.is_empty());
        points.into_iter().for_each(check);
    }
    let mut r = Reader::new(data);
    if let Ok(points) = decode_point_list(&mut r) {
        assert!(points.len() <= MAX_POINTS);
        points.into_iter().for_each(check);
    }
});
