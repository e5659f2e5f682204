//! Keys, nonces, the session key and encrypted chunks (wire spec §2, §4–5).
//!
//! The primitives are libsodium's (`crypto_box_beforenm` and the detached
//! `crypto_box_*_afternm` functions: X25519, HSalsa20, XSalsa20-Poly1305),
//! an audited constant-time implementation built from its bundled source.
//! A test cross-checks them against the pure-Rust `crypto_box` crate.

use std::fmt;
use std::sync::Once;

use thiserror::Error;

/// Length of a public or secret key.
pub const KEY_LEN: usize = 32;

/// An X25519 public key, as sent in the connection message.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; KEY_LEN]);

/// An X25519 secret key, kept unclamped as Octez does.
#[derive(Clone)]
pub struct SecretKey(pub [u8; KEY_LEN]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// 32 random bytes from the operating system's generator.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut sk = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut sk);
        SecretKey(sk)
    }

    /// The matching public key: X25519 with the base point.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(scalarmult_base(&self.0))
    }
}

/// Length of a nonce.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag that precedes every chunk's ciphertext.
pub const TAG_LEN: usize = 16;
/// Length of a chunk's header (the `u16` length).
pub const HEADER_LEN: usize = 2;
/// Header and tag: what a chunk adds to its plaintext.
pub const CHUNK_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The largest chunk on the wire, header included.
pub const MAX_CHUNK_SIZE: usize = 65_535;
/// The most plaintext we put in one chunk (Octez's `max_content_length`).
pub const MAX_CHUNK_PLAINTEXT: usize = MAX_CHUNK_SIZE - CHUNK_OVERHEAD;
/// The smallest valid `binary_chunks_size`.
pub const MIN_BINARY_CHUNKS_SIZE: usize = CHUNK_OVERHEAD + 1;

static SODIUM_INIT: Once = Once::new();

/// Initialises libsodium once, so that it picks the fastest implementation
/// of each primitive for this CPU.
fn init() {
    SODIUM_INIT.call_once(|| {
        // SAFETY: `sodium_init` is thread-safe and idempotent; it returns
        // -1 only when it cannot initialise, in which case every later call
        // still uses the portable reference implementations.
        unsafe {
            libsodium_sys::sodium_init();
        }
    });
}

/// X25519 multiplication of the base point by `sk`.
pub(crate) fn scalarmult_base(sk: &[u8; 32]) -> [u8; 32] {
    init();
    let mut pk = [0u8; 32];
    // SAFETY: both pointers are valid for 32 bytes.
    unsafe {
        libsodium_sys::crypto_scalarmult_base(pk.as_mut_ptr(), sk.as_ptr());
    }
    pk
}

/// A 24-byte nonce used as a big-endian 192-bit counter.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl Nonce {
    /// Adds one, wrapping from `ff…ff` to `00…00`.
    pub fn increment(&mut self) {
        self.add(1);
    }

    /// Adds `n` with carry towards byte 0, wrapping modulo 2^192.
    pub fn add(&mut self, n: u64) {
        let mut carry = u128::from(n);
        for b in self.0.iter_mut().rev() {
            if carry == 0 {
                break;
            }
            let v = u128::from(*b) + (carry & 0xff);
            *b = v as u8;
            carry = (carry >> 8) + (v >> 8);
        }
    }

    /// Returns the current value and increments (a chunk uses the current
    /// nonce, then the counter moves on).
    pub fn fetch_increment(&mut self) -> Nonce {
        let cur = *self;
        self.increment();
        cur
    }
}

/// The pair of nonces of one side of a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Nonces {
    /// Encrypts what we send.
    pub local: Nonce,
    /// Decrypts what we receive.
    pub remote: Nonce,
}

fn nonce_from(init: &[u8], resp: &[u8], label: &[u8]) -> Nonce {
    let mut st = blake2b_simd::Params::new().hash_length(32).to_state();
    st.update(init).update(resp).update(label);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(&st.finalize().as_bytes()[..NONCE_LEN]);
    Nonce(n)
}

/// Derives both nonces from the raw framed connection messages (with their
/// 2-byte prefix). The initiator's message is hashed first, whichever side
/// computes; the initiator sends under the "Resp -> Init" nonce.
pub fn derive_nonces(sent_msg: &[u8], recv_msg: &[u8], incoming: bool) -> Nonces {
    let (init, resp) = if incoming {
        (recv_msg, sent_msg)
    } else {
        (sent_msg, recv_msg)
    };
    let i2r = nonce_from(init, resp, b"Init -> Resp");
    let r2i = nonce_from(init, resp, b"Resp -> Init");
    if incoming {
        Nonces {
            local: i2r,
            remote: r2i,
        }
    } else {
        Nonces {
            local: r2i,
            remote: i2r,
        }
    }
}

/// The cipher state of an established session, as the handshake hands it
/// over: the one key both directions share and the nonce of the next chunk
/// each way ([`Nonces::local`] for what we send, [`Nonces::remote`] for
/// what we receive). [`SessionCipher::split`] turns it into
/// the data phase's [`ChunkWriter`](crate::chunk::ChunkWriter) and
/// [`ChunkReader`](crate::chunk::ChunkReader).
#[derive(Clone, Debug)]
pub struct SessionCipher {
    /// The precomputed key, the same on both sides.
    pub key: SessionKey,
    /// The nonces of the next chunk sent and of the next chunk received.
    pub nonces: Nonces,
}

impl SessionCipher {
    /// The sending direction: the key and our nonce.
    pub fn sender(&self) -> ChunkCipher {
        ChunkCipher::new(self.key.clone(), self.nonces.local)
    }

    /// The receiving direction: the key and the peer's nonce.
    pub fn receiver(&self) -> ChunkCipher {
        ChunkCipher::new(self.key.clone(), self.nonces.remote)
    }

    /// Seals `plaintext` into one framed chunk with our nonce, which moves
    /// on (the handshake's metadata and Ack chunks).
    pub fn seal_chunk(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.key.seal_chunk(&mut self.nonces.local, plaintext, out)
    }

    /// Opens one chunk body in place with the peer's nonce, which moves on
    /// even on failure.
    pub fn open_chunk<'b>(&mut self, body: &'b mut [u8]) -> Result<&'b mut [u8], CryptoError> {
        self.key.open_chunk(&mut self.nonces.remote, body)
    }
}

/// Errors of the crypto layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The peer's public key is of low order: the shared secret is zero.
    #[error("error computing box_beforenm: low-order public key")]
    LowOrderKey,
    /// A chunk whose MAC does not verify (`Decipher_error`).
    #[error("decipher error")]
    Decipher,
    /// A chunk length field below the tag length
    /// (`Invalid_incoming_ciphertext_size`).
    #[error("invalid incoming ciphertext size {0}")]
    InvalidIncomingCiphertextSize(usize),
    /// More plaintext than fits in one chunk (`Invalid_message_size`).
    #[error("invalid message size {0} (at most {MAX_CHUNK_PLAINTEXT} bytes per chunk)")]
    InvalidMessageSize(usize),
}

/// The precomputed `crypto_box` key of a session, the same on both sides.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// `crypto_box_beforenm(remote_pk, local_sk)`; rejects low-order keys.
    pub fn precompute(remote: &PublicKey, local: &SecretKey) -> Result<Self, CryptoError> {
        init();
        let mut k = [0u8; 32];
        // SAFETY: all pointers are valid for 32 bytes.
        let rc = unsafe {
            libsodium_sys::crypto_box_beforenm(k.as_mut_ptr(), remote.0.as_ptr(), local.0.as_ptr())
        };
        if rc != 0 {
            return Err(CryptoError::LowOrderKey);
        }
        Ok(SessionKey(k))
    }

    /// Encrypts `buf` in place and returns its tag
    /// (`crypto_box_detached_afternm`).
    pub fn seal_in_place(&self, nonce: &Nonce, buf: &mut [u8]) -> [u8; TAG_LEN] {
        // A key built from its bytes skips `precompute`; without
        // `sodium_init` libsodium would stay on its portable XSalsa20 and
        // Poly1305, about 3.5 times slower.
        init();
        let mut tag = [0u8; TAG_LEN];
        // SAFETY: `buf` is valid for its length and libsodium allows the
        // ciphertext to overwrite the message; other pointers are fixed-size.
        unsafe {
            libsodium_sys::crypto_box_detached_afternm(
                buf.as_mut_ptr(),
                tag.as_mut_ptr(),
                buf.as_ptr(),
                buf.len() as u64,
                nonce.0.as_ptr(),
                self.0.as_ptr(),
            );
        }
        tag
    }

    /// Verifies `tag` and decrypts `buf` in place; `buf` is left unchanged on
    /// failure.
    pub fn open_in_place(
        &self,
        nonce: &Nonce,
        tag: &[u8; TAG_LEN],
        buf: &mut [u8],
    ) -> Result<(), CryptoError> {
        init();
        // SAFETY: as in `seal_in_place`; libsodium verifies before writing.
        let rc = unsafe {
            libsodium_sys::crypto_box_open_detached_afternm(
                buf.as_mut_ptr(),
                buf.as_ptr(),
                tag.as_ptr(),
                buf.len() as u64,
                nonce.0.as_ptr(),
                self.0.as_ptr(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(CryptoError::Decipher)
        }
    }

    /// `MAC || ciphertext` of `plaintext` (`crypto_box_easy_afternm`).
    pub fn seal(&self, nonce: &Nonce, plaintext: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; TAG_LEN + plaintext.len()];
        out[TAG_LEN..].copy_from_slice(plaintext);
        let tag = self.seal_in_place(nonce, &mut out[TAG_LEN..]);
        out[..TAG_LEN].copy_from_slice(&tag);
        out
    }

    /// Opens `MAC || ciphertext`.
    pub fn open(&self, nonce: &Nonce, boxed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if boxed.len() < TAG_LEN {
            return Err(CryptoError::InvalidIncomingCiphertextSize(boxed.len()));
        }
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&boxed[..TAG_LEN]);
        let mut out = boxed[TAG_LEN..].to_vec();
        self.open_in_place(nonce, &tag, &mut out)?;
        Ok(out)
    }
}

/// One direction of an encrypted session: the key and that direction's
/// nonce counter. The sender and the receiver each own one, so the reader
/// and writer of a connection need no shared state.
#[derive(Clone, Debug)]
pub struct ChunkCipher {
    key: SessionKey,
    nonce: Nonce,
}

impl ChunkCipher {
    /// A cipher whose next chunk uses `nonce`.
    pub fn new(key: SessionKey, nonce: Nonce) -> Self {
        ChunkCipher { key, nonce }
    }

    /// The nonce the next chunk will use.
    pub fn nonce(&self) -> Nonce {
        self.nonce
    }

    /// Appends the framed chunk `u16 len || MAC || ciphertext` of
    /// `plaintext` to `out`, then moves the nonce on.
    pub fn seal_chunk(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.key.seal_chunk(&mut self.nonce, plaintext, out)
    }

    /// Opens a chunk body (`MAC || ciphertext`, without the length header)
    /// in place and returns the plaintext, which is a sub-slice of `body`.
    /// The nonce moves on even on failure, as in Octez (a failure is fatal).
    pub fn open_chunk<'b>(&mut self, body: &'b mut [u8]) -> Result<&'b mut [u8], CryptoError> {
        self.key.open_chunk(&mut self.nonce, body)
    }

    /// Opens a chunk body (`MAC || ciphertext`, without the length header)
    /// and appends its plaintext to `out`, leaving `body` as it is: the
    /// plaintext goes straight where it is wanted, with no copy. `out` is
    /// unchanged on failure; the nonce moves on even then, as in
    /// [`open_chunk`](Self::open_chunk).
    pub fn open_chunk_into(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.key.open_chunk_into(&mut self.nonce, body, out)
    }

    /// The key and the nonce of the next chunk.
    pub fn into_parts(self) -> (SessionKey, Nonce) {
        (self.key, self.nonce)
    }

    /// Seals a chunk laid out in place: `frame` is [`CHUNK_OVERHEAD`] bytes
    /// of room for the header and the tag, then at most
    /// [`MAX_CHUNK_PLAINTEXT`] bytes of plaintext, which is encrypted where
    /// it is; the header and the tag are written in front. The nonce moves
    /// on. (The chunk writer's shared chunk: no copy of its plaintext.)
    pub(crate) fn seal_frame_in_place(&mut self, frame: &mut [u8]) {
        debug_assert!(frame.len() >= CHUNK_OVERHEAD);
        debug_assert!(frame.len() <= MAX_CHUNK_SIZE);
        let nonce = self.nonce.fetch_increment();
        let (head, pt) = frame.split_at_mut(CHUNK_OVERHEAD);
        let tag = self.key.seal_in_place(&nonce, pt);
        head[..HEADER_LEN].copy_from_slice(&((TAG_LEN + pt.len()) as u16).to_be_bytes());
        head[HEADER_LEN..].copy_from_slice(&tag);
    }
}

impl SessionKey {
    /// [`ChunkCipher::seal_chunk`] with the nonce kept by the caller.
    pub fn seal_chunk(
        &self,
        nonce: &mut Nonce,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if plaintext.len() > MAX_CHUNK_PLAINTEXT {
            return Err(CryptoError::InvalidMessageSize(plaintext.len()));
        }
        init();
        let n = plaintext.len();
        out.reserve(CHUNK_OVERHEAD + n);
        out.extend_from_slice(&((TAG_LEN + n) as u16).to_be_bytes());
        let nonce = nonce.fetch_increment();
        let tag_at = out.len();
        let spare = out.spare_capacity_mut();
        // SAFETY: `spare` has room for TAG_LEN + n bytes (reserved above);
        // libsodium writes the tag and the ciphertext (read from
        // `plaintext`, which cannot overlap `out`'s spare capacity) into
        // them, so all TAG_LEN + n bytes are initialised before `set_len`.
        unsafe {
            let dst = spare.as_mut_ptr().cast::<u8>();
            libsodium_sys::crypto_box_detached_afternm(
                dst.add(TAG_LEN),
                dst,
                plaintext.as_ptr(),
                n as u64,
                nonce.0.as_ptr(),
                self.0.as_ptr(),
            );
            out.set_len(tag_at + TAG_LEN + n);
        }
        Ok(())
    }

    /// [`ChunkCipher::open_chunk`] with the nonce kept by the caller.
    pub fn open_chunk<'b>(
        &self,
        nonce: &mut Nonce,
        body: &'b mut [u8],
    ) -> Result<&'b mut [u8], CryptoError> {
        if body.len() < TAG_LEN {
            return Err(CryptoError::InvalidIncomingCiphertextSize(body.len()));
        }
        let nonce = nonce.fetch_increment();
        let (tag, ct) = body.split_at_mut(TAG_LEN);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag);
        self.open_in_place(&nonce, &t, ct)?;
        Ok(ct)
    }

    /// [`ChunkCipher::open_chunk_into`] with the nonce kept by the caller.
    pub fn open_chunk_into(
        &self,
        nonce: &mut Nonce,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if body.len() < TAG_LEN {
            return Err(CryptoError::InvalidIncomingCiphertextSize(body.len()));
        }
        let nonce = nonce.fetch_increment();
        let (tag, ct) = body.split_at(TAG_LEN);
        init();
        out.reserve(ct.len());
        let at = out.len();
        // SAFETY: `out`'s spare capacity has room for `ct.len()` bytes
        // (reserved above) and cannot overlap `body`, which is borrowed
        // immutably; libsodium verifies the tag before it writes anything,
        // and on success writes all `ct.len()` bytes of plaintext, so they
        // are initialised before `set_len`.
        let rc = unsafe {
            libsodium_sys::crypto_box_open_detached_afternm(
                out.spare_capacity_mut().as_mut_ptr().cast::<u8>(),
                ct.as_ptr(),
                tag.as_ptr(),
                ct.len() as u64,
                nonce.0.as_ptr(),
                self.0.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(CryptoError::Decipher);
        }
        // SAFETY: see above.
        unsafe { out.set_len(at + ct.len()) };
        Ok(())
    }
}

/// Reads a chunk header: the length of the body that follows, which must
/// be at least [`TAG_LEN`].
pub fn chunk_body_len(header: [u8; HEADER_LEN]) -> Result<usize, CryptoError> {
    let n = usize::from(u16::from_be_bytes(header));
    if n < TAG_LEN {
        return Err(CryptoError::InvalidIncomingCiphertextSize(n));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::check_binary_chunks_size;
    use proptest::prelude::*;

    fn key() -> SessionKey {
        let a = SecretKey(std::array::from_fn(|i| i as u8));
        let b = SecretKey(std::array::from_fn(|i| 32 + i as u8));
        SessionKey::precompute(&b.public_key(), &a).unwrap()
    }

    #[test]
    fn session_key_of_the_spec_is_symmetric() {
        let a = SecretKey(std::array::from_fn(|i| i as u8));
        let b = SecretKey(std::array::from_fn(|i| 32 + i as u8));
        let k1 = SessionKey::precompute(&b.public_key(), &a).unwrap();
        let k2 = SessionKey::precompute(&a.public_key(), &b).unwrap();
        assert_eq!(k1, k2);
        assert_eq!(
            hex::encode(k1.0),
            "429b61f5d96e37268dfc5114849d599c9ceabffdb68c1f52cd0499af30f5b377"
        );
    }

    #[test]
    fn low_order_peer_keys_are_rejected() {
        let sk = SecretKey([1; 32]);
        // The identity point and a point of order 8.
        let zero = PublicKey([0; 32]);
        let mut order8 = [0u8; 32];
        hex::decode_to_slice(
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            &mut order8,
        )
        .unwrap();
        assert_eq!(
            SessionKey::precompute(&zero, &sk),
            Err(CryptoError::LowOrderKey)
        );
        assert_eq!(
            SessionKey::precompute(&PublicKey(order8), &sk),
            Err(CryptoError::LowOrderKey)
        );
    }

    #[test]
    fn nonce_increment_wraps_and_carries() {
        let mut n = Nonce([0xff; 24]);
        n.increment();
        assert_eq!(n, Nonce([0; 24]));
        let mut n = Nonce([0; 24]);
        n.0[23] = 0xff;
        n.increment();
        assert_eq!(hex::encode(n.0), format!("{}0100", "0".repeat(44)));
        let mut n = Nonce([0; 24]);
        n.add(u64::MAX);
        n.add(1);
        assert_eq!(
            hex::encode(n.0),
            format!("{}010000000000000000", "0".repeat(30))
        );
    }

    #[test]
    fn spec_metadata_chunk() {
        let mut nonce = [0u8; 24];
        hex::decode_to_slice(
            "efb64e38c80ffc16b0d04d66f18696c5ac122f82e73f74bb",
            &mut nonce,
        )
        .unwrap();
        let mut c = ChunkCipher::new(key(), Nonce(nonce));
        let mut out = Vec::new();
        c.seal_chunk(&[0, 0], &mut out).unwrap();
        assert_eq!(
            hex::encode(&out),
            "00127bc0a291786ba38b7717cfc4f74ccdfee82a"
        );
        c.seal_chunk(&[0], &mut out).unwrap();
        assert_eq!(
            hex::encode(&out[20..]),
            "00111f572a3f772b086b7086debcd036d67d28"
        );
    }

    #[test]
    fn oversized_plaintext_is_invalid_message_size() {
        let mut c = ChunkCipher::new(key(), Nonce([0; 24]));
        let mut out = Vec::new();
        assert_eq!(
            c.seal_chunk(&vec![0; MAX_CHUNK_PLAINTEXT + 1], &mut out),
            Err(CryptoError::InvalidMessageSize(MAX_CHUNK_PLAINTEXT + 1))
        );
        c.seal_chunk(&vec![0; MAX_CHUNK_PLAINTEXT], &mut out)
            .unwrap();
        assert_eq!(out.len(), MAX_CHUNK_SIZE);
        assert_eq!(&out[..2], &[0xff, 0xfd]);
    }

    #[test]
    fn short_length_field_is_invalid_ciphertext_size() {
        assert_eq!(
            chunk_body_len([0, 15]),
            Err(CryptoError::InvalidIncomingCiphertextSize(15))
        );
        assert_eq!(chunk_body_len([0, 16]), Ok(16));
        assert_eq!(chunk_body_len([0xff, 0xff]), Ok(65535));
    }

    #[test]
    fn empty_chunk_is_legal() {
        let mut tx = ChunkCipher::new(key(), Nonce([3; 24]));
        let mut rx = tx.clone();
        let mut out = Vec::new();
        tx.seal_chunk(&[], &mut out).unwrap();
        assert_eq!(out.len(), 18);
        assert_eq!(rx.open_chunk(&mut out[2..]).unwrap(), &[] as &[u8]);
    }

    #[test]
    fn chunks_size_bounds() {
        assert_eq!(check_binary_chunks_size(19), Ok(1));
        assert_eq!(check_binary_chunks_size(65535), Ok(65517));
        assert_eq!(check_binary_chunks_size(18).unwrap_err().min, 19);
        assert_eq!(check_binary_chunks_size(65536).unwrap_err().max, 65535);
    }

    proptest! {
        /// libsodium agrees with a second implementation (RustCrypto's
        /// `crypto_box`) on keys, boxes and openings.
        #[test]
        fn libsodium_agrees_with_rustcrypto(
            a in any::<[u8; 32]>(),
            b in any::<[u8; 32]>(),
            nonce in any::<[u8; 24]>(),
            msg in proptest::collection::vec(any::<u8>(), 0..2000),
        ) {
            use crypto_box::aead::{Aead, generic_array::GenericArray};
            let (ska, skb) = (SecretKey(a), SecretKey(b));
            let ours = SessionKey::precompute(&skb.public_key(), &ska).unwrap();
            let theirs = crypto_box::SalsaBox::new(
                &crypto_box::PublicKey::from(skb.public_key().0),
                &crypto_box::SecretKey::from(a),
            );
            prop_assert_eq!(crypto_box::PublicKey::from(&crypto_box::SecretKey::from(a)).to_bytes(), ska.public_key().0);
            let sealed = ours.seal(&Nonce(nonce), &msg);
            let expected = theirs.encrypt(GenericArray::from_slice(&nonce), msg.as_slice()).unwrap();
            prop_assert_eq!(&sealed, &expected);
            prop_assert_eq!(ours.open(&Nonce(nonce), &expected).unwrap(), msg.clone());
            let mut tampered = sealed.clone();
            let i = tampered.len() - 1;
            tampered[i] ^= 1;
            prop_assert_eq!(ours.open(&Nonce(nonce), &tampered), Err(CryptoError::Decipher));
        }

        #[test]
        fn nonce_add_equals_repeated_increment(start in any::<[u8; 24]>(), n in 0u64..600) {
            let mut a = Nonce(start);
            let mut b = Nonce(start);
            a.add(n);
            for _ in 0..n { b.increment(); }
            prop_assert_eq!(a, b);
        }
    }
}
