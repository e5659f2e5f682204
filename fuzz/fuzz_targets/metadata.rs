//! `OctezMetadata`: two lenient booleans (any non-zero byte is true), so the
//! round trip is decode → encode → decode, and the encoding is `00`/`FF`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tezos_p2p_wire::encoding::{Decode, Encode};
use tezos_p2p_wire::message::OctezMetadata;

fuzz_target!(|data: &[u8]| {
    match OctezMetadata::from_bytes(data) {
        Ok(m) => {
            assert_eq!(data.len(), 2);
            assert_eq!(m.disable_mempool, data[0] != 0);
            assert_eq!(m.private_node, data[1] != 0);
            let bytes = m.to_bytes().unwrap();
            assert!(bytes.iter().all(|&b| b == 0x00 || b == 0xFF));
            assert_eq!(OctezMetadata::from_bytes(&bytes).unwrap(), m);
        }
        Err(_) => assert_ne!(data.len(), 2),
    }
});
