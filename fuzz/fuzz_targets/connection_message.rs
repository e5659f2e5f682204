//! `ConnectionMessage`: the framed form (`from_bytes`) and the bare body
//! (`decode_body`). The encoding is canonical (port 0 is `None`, every other
//! field is raw bytes or integers), so whatever decodes must re-encode to
//! exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tezos_p2p_wire::encoding::{Decode, Encode};
use tezos_p2p_wire::message::{ConnectionMessage, RawConnectionMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ConnectionMessage::from_bytes(data) {
        let framed = m.to_bytes().expect("a decoded message re-encodes");
        assert_eq!(framed, data);
        assert_eq!(ConnectionMessage::from_bytes(&framed).unwrap(), m);
        assert_eq!(m.to_framed().unwrap(), framed);
    }

    if let Ok(m) = ConnectionMessage::decode_body(data) {
        let mut body = Vec::new();
        m.encode_body(&mut body).expect("a decoded body re-encodes");
        assert_eq!(body, data);
        assert_eq!(ConnectionMessage::decode_body(&body).unwrap(), m);
        // A body fits the u16 frame exactly when it is at most 65 535 bytes.
        match m.to_framed() {
            Ok(framed) => {
                assert_eq!(&framed[2..], data);
                assert_eq!(
                    usize::from(u16::from_be_bytes([framed[0], framed[1]])),
                    data.len()
                );
            }
            Err(_) => assert!(data.len() > usize::from(u16::MAX)),
        }
    }

    // Stream reading: a frame at the start of the input, the rest left alone.
    match RawConnectionMessage::try_decode(data) {
        Ok(Some((raw, used))) => {
            assert!(used <= data.len());
            assert_eq!(raw.raw, &data[..used]);
            assert_eq!(raw.msg.to_bytes().unwrap(), raw.raw);
            assert_eq!(
                RawConnectionMessage::from_framed(&data[..used]).unwrap(),
                raw
            );
        }
        Ok(None) => {
            // Not enough bytes for the announced frame.
            let whole = data.len() >= 2
                && data.len() >= 2 + usize::from(u16::from_be_bytes([data[0], data[1]]));
            assert!(!whole);
        }
        Err(_) => {}
    }
});
