//! `NetworkVersion`: chain name (`u32` length + bytes) and two `u16`s;
//! canonical, so decode → encode gives back the input exactly. Also runs
//! version selection against Octez's lists, which must pick a supported
//! version or give a motive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tezos_p2p_wire::encoding::{Decode, Encode};
use tezos_p2p_wire::version::{NetworkVersion, SupportedVersions};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = NetworkVersion::from_bytes(data) {
        let bytes = v.to_bytes().expect("a decoded version re-encodes");
        assert_eq!(bytes, data);
        assert_eq!(NetworkVersion::from_bytes(&bytes).unwrap(), v);

        let ours = SupportedVersions::octez(v.chain_name.clone());
        if let Ok(sel) = ours.select(&v) {
            assert_eq!(sel.chain_name, v.chain_name);
            assert!(ours
                .distributed_db_versions
                .contains(&sel.distributed_db_version));
            assert!(ours.p2p_versions.contains(&sel.p2p_version));
            // Never newer than what the peer announced.
            assert!(sel.distributed_db_version <= v.distributed_db_version);
            assert!(sel.p2p_version <= v.p2p_version);
        }
    }
});
