//! Encrypted chunks: `ChunkCipher::open_chunk` on arbitrary bodies (which
//! must never authenticate, and must leave the body untouched on failure),
//! `chunk_body_len` on the first two bytes, and seal → open of the input as
//! plaintext, where flipping any byte of the sealed chunk must be caught.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tezos_p2p_wire::crypto::{
    chunk_body_len, ChunkCipher, CryptoError, Nonce, SessionKey, HEADER_LEN, MAX_CHUNK_PLAINTEXT,
    TAG_LEN,
};

const KEY: SessionKey = SessionKey([0x42; 32]);

fuzz_target!(|data: &[u8]| {
    // A header: the body length, at least the tag's.
    if let [a, b, ..] = *data {
        let n = usize::from(u16::from_be_bytes([a, b]));
        match chunk_body_len([a, b]) {
            Ok(len) => assert!(len == n && n >= TAG_LEN),
            Err(e) => {
                assert!(n < TAG_LEN);
                assert_eq!(e, CryptoError::InvalidIncomingCiphertextSize(n));
            }
        }
    }

    // Arbitrary bodies do not open; the nonce moves on only past the size check.
    let nonce = Nonce([0x17; 24]);
    let mut rx = ChunkCipher::new(KEY, nonce);
    let mut body = data.to_vec();
    let res = rx.open_chunk(&mut body).map(|pt| pt.to_vec());
    if data.len() < TAG_LEN {
        assert_eq!(
            res,
            Err(CryptoError::InvalidIncomingCiphertextSize(data.len()))
        );
        assert_eq!(rx.nonce(), nonce);
    } else {
        assert_eq!(res, Err(CryptoError::Decipher));
        let mut next = nonce;
        next.increment();
        assert_eq!(rx.nonce(), next);
    }
    assert_eq!(body, data, "a failed open leaves the body as it was");

    // Seal the input, open it on the other side.
    let mut tx = ChunkCipher::new(KEY, nonce);
    let mut wire = Vec::new();
    match tx.seal_chunk(data, &mut wire) {
        Ok(()) => {
            assert!(data.len() <= MAX_CHUNK_PLAINTEXT);
            assert_eq!(wire.len(), HEADER_LEN + TAG_LEN + data.len());
            let len = chunk_body_len([wire[0], wire[1]]).unwrap();
            assert_eq!(len, wire.len() - HEADER_LEN);
            let mut rx = ChunkCipher::new(KEY, nonce);
            let mut body = wire[HEADER_LEN..].to_vec();
            assert_eq!(rx.open_chunk(&mut body).unwrap(), data);
            assert_eq!(rx.nonce(), tx.nonce());

            // Flip one byte of the body at a data-dependent position.
            let at = data.first().map_or(0, |&b| usize::from(b)) % (wire.len() - HEADER_LEN);
            let mut bad = wire[HEADER_LEN..].to_vec();
            bad[at] ^= 0x01;
            let mut rx = ChunkCipher::new(KEY, nonce);
            assert_eq!(
                rx.open_chunk(&mut bad).map(|_| ()),
                Err(CryptoError::Decipher)
            );
            // The wrong nonce does not open it either.
            let mut rx = ChunkCipher::new(KEY, tx.nonce());
            let mut body = wire[HEADER_LEN..].to_vec();
            assert_eq!(
                rx.open_chunk(&mut body).map(|_| ()),
                Err(CryptoError::Decipher)
            );
        }
        Err(e) => {
            assert!(data.len() > MAX_CHUNK_PLAINTEXT);
            assert_eq!(e, CryptoError::InvalidMessageSize(data.len()));
            assert!(wire.is_empty());
        }
    }
});
