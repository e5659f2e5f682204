//! `Identity::from_json` on arbitrary text. A loaded identity is consistent
//! (peer id = hash of the public key, public key = X25519 of the secret
//! key) and survives `to_json` → `from_json` unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tezos_p2p_wire::identity::{Identity, PowStamp, PowTarget, SecretKey};

fn same(a: &Identity, b: &Identity) {
    assert_eq!(a.peer_id, b.peer_id);
    assert_eq!(a.public_key, b.public_key);
    assert_eq!(a.secret_key.0, b.secret_key.0);
    assert_eq!(a.proof_of_work_stamp, b.proof_of_work_stamp);
}

fuzz_target!(|data: &[u8]| {
    // Valid key pairs are out of the mutator's reach: also build one from
    // the input's first 56 bytes and round-trip it through JSON.
    if let (Some(sk), Some(stamp)) = (data.get(..32), data.get(32..56)) {
        let id = Identity::from_secret_key(
            SecretKey(sk.try_into().unwrap()),
            PowStamp(stamp.try_into().unwrap()),
        );
        let again = Identity::from_json(&id.to_json(), Some(&PowTarget::new(0.0).unwrap()))
            .expect("to_json output loads");
        same(&id, &again);
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let level = PowTarget::new(f64::from(data.len() as u8 % 8)).unwrap();
    let loose = Identity::from_json(text, None);
    let strict = Identity::from_json(text, Some(&level));
    if let Ok(id) = &strict {
        same(
            id,
            loose
                .as_ref()
                .expect("passing the PoW check implies loading"),
        );
        assert!(level.check(&id.public_key, &id.proof_of_work_stamp));
    }
    if let Ok(id) = loose {
        assert_eq!(id.public_key.peer_id(), id.peer_id);
        assert_eq!(id.secret_key.public_key(), id.public_key);
        let json = id.to_json();
        let again = Identity::from_json(&json, None).expect("to_json output loads");
        same(&id, &again);
        assert_eq!(again.to_json(), json);
        assert_eq!(
            Identity::from_json(&json, Some(&level)).is_ok(),
            level.check(&id.public_key, &id.proof_of_work_stamp)
        );
    }
});
