//! The handshake state machine in each role.
//!
//! The first input byte picks a scenario and flags, the rest is both the
//! bytes and the fragmentation (fragment lengths are read from the data):
//!
//! * raw: arbitrary bytes from the "peer";
//! * valid: a genuine peer connection message, then arbitrary bytes;
//! * pair: two honest handshakes talking to each other through fragmented
//!   pipes, each accepting or nacking, optionally with one byte of the
//!   responder-to-us stream flipped.
//!
//! Invariants: `feed` never consumes more than it is given and stops early
//! only outside the reading states; an error moves to `Failed` for good;
//! forged chunks never authenticate (random bytes never get past the
//! metadata); an honest pair establishes matching sessions, or reports the
//! peer's Nack; a flipped byte never lets the handshake through.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tezos_p2p_wire::crypto::{ChunkCipher, HEADER_LEN};
use tezos_p2p_wire::handshake::{Handshake, HandshakeConfig, HandshakeError, Status};
use tezos_p2p_wire::identity::{Identity, PowStamp, PowTarget, SecretKey};
use tezos_p2p_wire::message::OctezMetadata;
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::rejection::Motive;
use tezos_p2p_wire::version::{ChainName, NetworkVersion};

type Hs = Handshake<OctezMetadata>;

fn identities() -> &'static (Identity, Identity) {
    static IDS: OnceLock<(Identity, Identity)> = OnceLock::new();
    IDS.get_or_init(|| {
        (
            Identity::from_secret_key(SecretKey([0xA1; 32]), PowStamp([0x0A; 24])),
            Identity::from_secret_key(SecretKey([0xB2; 32]), PowStamp([0x0B; 24])),
        )
    })
}

fn config(
    id: &Identity,
    incoming: bool,
    level: f64,
    p2p: u16,
    seed: u8,
) -> HandshakeConfig<OctezMetadata> {
    HandshakeConfig {
        identity: id.clone(),
        pow_target: PowTarget::new(level).unwrap(),
        incoming,
        listening_port: (seed % 3 != 0).then_some(9732 + u16::from(seed)),
        version: NetworkVersion {
            chain_name: ChainName::from("TEZOS_FUZZ"),
            distributed_db_version: 2,
            p2p_version: p2p,
        },
        metadata: OctezMetadata {
            disable_mempool: seed & 1 != 0,
            private_node: seed & 2 != 0,
        },
        message_nonce: [seed; 24],
    }
}

fn reading(s: Status) -> bool {
    matches!(
        s,
        Status::ReadingConnectionMessage | Status::ReadingMetadata | Status::ReadingAck
    )
}

fn alternatives() -> Vec<Point> {
    vec![
        "203.0.113.5:9732".parse().unwrap(),
        "[2001:db8::1]:1".parse().unwrap(),
    ]
}

/// One side: its state machine, what it has received and not yet fed, and
/// how it decides.
struct Side {
    hs: Hs,
    inbox: Vec<u8>,
    nack: bool,
    error: Option<HandshakeError>,
}

impl Side {
    fn new(hs: Hs, nack: bool) -> Self {
        Side {
            hs,
            inbox: Vec::new(),
            nack,
            error: None,
        }
    }

    /// Feeds at most `max` bytes of the inbox, deciding when asked.
    /// Returns whether anything happened.
    fn step(&mut self, max: usize) -> bool {
        let mut progress = false;
        if self.hs.status() == Status::AwaitingDecision {
            assert!(self.hs.remote().unwrap().metadata.is_some());
            if self.nack {
                self.hs
                    .nack(Motive::TooManyConnections, alternatives())
                    .unwrap();
                assert_eq!(self.hs.status(), Status::Nacked);
            } else {
                self.hs.accept().unwrap();
                assert_eq!(self.hs.status(), Status::ReadingAck);
            }
            assert!(!self.hs.output().is_empty());
            progress = true;
        }
        if self.inbox.is_empty() || !reading(self.hs.status()) {
            return progress;
        }
        let n = max.clamp(1, self.inbox.len());
        match self.hs.feed(&self.inbox[..n]) {
            Ok(used) => {
                assert!(used <= n);
                if used < n {
                    assert!(!reading(self.hs.status()), "stopped early while reading");
                }
                self.inbox.drain(..used);
                progress |= used > 0;
            }
            Err(e) => {
                assert_eq!(self.hs.status(), Status::Failed);
                // Failure is final: nothing more is read, no decision taken.
                assert_eq!(self.hs.feed(&self.inbox), Ok(0));
                assert!(self.hs.accept().is_err());
                self.error = Some(e);
                progress = true;
            }
        }
        if matches!(
            self.hs.status(),
            Status::ReadingMetadata | Status::AwaitingDecision | Status::ReadingAck
        ) {
            assert!(self.hs.remote().is_some());
        }
        progress
    }
}

/// Fragment lengths read from `cuts`, cycling; everything at once without cuts.
struct Cuts<'a> {
    cuts: &'a [u8],
    i: usize,
}

impl Cuts<'_> {
    fn next(&mut self) -> usize {
        if self.cuts.is_empty() {
            return usize::MAX;
        }
        let c = self.cuts[self.i % self.cuts.len()];
        self.i += 1;
        1 + usize::from(c)
    }
}

/// Feeds `stream` to `side` in fragments until it stops reading.
fn feed_all(side: &mut Side, stream: &[u8], cuts: &mut Cuts<'_>) {
    side.inbox.extend_from_slice(stream);
    while side.step(cuts.next()) {}
}

/// Random bytes (after an optional genuine connection message) can never
/// be a chunk under a key the sender does not know.
fn check_not_past_metadata(side: &Side) {
    assert!(
        matches!(
            side.hs.status(),
            Status::ReadingConnectionMessage | Status::ReadingMetadata | Status::Failed
        ),
        "forged bytes got past the metadata: {:?}",
        side.hs.status()
    );
}

fn raw(flags: u8, rest: &[u8]) {
    let (a, _) = identities();
    // Level 4 lets about one random stamp in 16 through.
    let level = if flags & 0x40 != 0 { 4.0 } else { 0.0 };
    let hs = Hs::new(config(a, flags & 0x04 != 0, level, 1, flags)).unwrap();
    let mut side = Side::new(hs, flags & 0x08 != 0);
    feed_all(&mut side, rest, &mut Cuts { cuts: rest, i: 0 });
    check_not_past_metadata(&side);
}

fn valid_then_garbage(flags: u8, rest: &[u8]) {
    let (a, b) = identities();
    let incoming = flags & 0x04 != 0;
    let hs = Hs::new(config(a, incoming, 0.0, 1, flags)).unwrap();
    let mut peer = Hs::new(config(b, !incoming, 0.0, u16::from(flags >> 7), !flags)).unwrap();
    let peer_msg = peer.take_output();
    let mut side = Side::new(hs, flags & 0x08 != 0);
    let mut cuts = Cuts { cuts: rest, i: 0 };
    feed_all(&mut side, &peer_msg, &mut cuts);
    assert_eq!(side.error, None);
    assert_eq!(side.hs.status(), Status::ReadingMetadata);
    let remote = side.hs.remote().unwrap();
    assert_eq!(remote.peer_id, b.peer_id);
    assert_eq!(remote.connection_message.public_key, b.public_key);
    assert_eq!(remote.connection_message.version, peer.config().version);
    // Our connection message, then our metadata chunk.
    assert!(side
        .hs
        .output()
        .starts_with(side.hs.sent_connection_message()));
    feed_all(&mut side, rest, &mut cuts);
    check_not_past_metadata(&side);
}

fn pair(flags: u8, rest: &[u8]) {
    let (a, b) = identities();
    let incoming = flags & 0x04 != 0;
    let nack_a = flags & 0x08 != 0;
    let nack_b = flags & 0x80 != 0;
    let corrupt = flags & 0x10 != 0;
    let b_p2p = u16::from(flags & 0x20 == 0);
    let (seed_a, seed_b, flip_at) = match rest {
        [x, y, z, ..] => (*x, *y, usize::from(*z)),
        _ => (1, 2, 0),
    };
    let mut sa = Side::new(
        Hs::new(config(a, incoming, 0.0, 1, seed_a)).unwrap(),
        nack_a,
    );
    let mut sb = Side::new(
        Hs::new(config(b, !incoming, 0.0, b_p2p, seed_b)).unwrap(),
        nack_b,
    );
    let mut cuts = Cuts {
        cuts: rest.get(3..).unwrap_or(&[]),
        i: 0,
    };
    let mut b_sent = 0usize;
    let mut flipped = false;
    for _round in 0..10_000 {
        let out_a = sa.hs.take_output();
        sb.inbox.extend_from_slice(&out_a);
        let mut out_b = sb.hs.take_output();
        if corrupt && !flipped && flip_at < b_sent + out_b.len() {
            // Flip one byte of what B sends to A, anywhere in the handshake.
            out_b[flip_at - b_sent] ^= 0x80 >> (flip_at % 8);
            flipped = true;
        }
        b_sent += out_b.len();
        sa.inbox.extend_from_slice(&out_b);
        let pa = sa.step(cuts.next());
        let pb = sb.step(cuts.next());
        if !pa && !pb && out_a.is_empty() && out_b.is_empty() {
            break;
        }
    }
    assert!(sa.hs.output().is_empty() && sb.hs.output().is_empty());

    if flipped {
        assert_ne!(
            sa.hs.status(),
            Status::Established,
            "a flipped byte went unnoticed"
        );
        return;
    }
    assert_eq!(
        sa.error
            .as_ref()
            .filter(|e| !matches!(e, HandshakeError::RejectedByNack { .. })),
        None
    );
    assert_eq!(
        sb.error
            .as_ref()
            .filter(|e| !matches!(e, HandshakeError::RejectedByNack { .. })),
        None
    );
    let expect_rejection = |side: &Side, nacker_saw_p2p: u16| {
        let want = if nacker_saw_p2p >= 1 {
            HandshakeError::RejectedByNack {
                motive: Motive::TooManyConnections,
                alternative_points: Some(alternatives()),
            }
        } else {
            HandshakeError::RejectedByNack {
                motive: Motive::NoMotive,
                alternative_points: None,
            }
        };
        assert_eq!(side.error.as_ref(), Some(&want));
        assert_eq!(side.hs.status(), Status::Failed);
    };
    match (nack_a, nack_b) {
        (false, false) => {
            assert!(sa.inbox.is_empty() && sb.inbox.is_empty());
            let a_s = sa.hs.into_session().unwrap();
            let b_s = sb.hs.into_session().unwrap();
            assert_eq!(a_s.remote_peer_id, b.peer_id);
            assert_eq!(b_s.remote_peer_id, a.peer_id);
            assert_eq!(a_s.cipher.key, b_s.cipher.key);
            assert_eq!(a_s.cipher.nonces.local, b_s.cipher.nonces.remote);
            assert_eq!(a_s.cipher.nonces.remote, b_s.cipher.nonces.local);
            let (mut a_tx, mut a_rx) = (a_s.cipher.sender(), a_s.cipher.receiver());
            let (mut b_tx, mut b_rx) = (b_s.cipher.sender(), b_s.cipher.receiver());
            send(&mut a_tx, &mut b_rx, rest);
            send(&mut b_tx, &mut a_rx, rest);
        }
        (true, false) => {
            assert_eq!(sa.hs.status(), Status::Nacked);
            expect_rejection(&sb, b_p2p);
        }
        (false, true) => {
            assert_eq!(sb.hs.status(), Status::Nacked);
            expect_rejection(&sa, 1);
        }
        (true, true) => {
            assert_eq!(sa.hs.status(), Status::Nacked);
            assert_eq!(sb.hs.status(), Status::Nacked);
        }
    }
}

/// One chunk from `tx` opens under `rx`.
fn send(tx: &mut ChunkCipher, rx: &mut ChunkCipher, pt: &[u8]) {
    let pt = &pt[..pt.len().min(1000)];
    let mut wire = Vec::new();
    tx.seal_chunk(pt, &mut wire).unwrap();
    assert_eq!(rx.open_chunk(&mut wire[HEADER_LEN..]).unwrap(), pt);
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    match flags & 0x03 {
        0 | 1 => raw(flags, rest),
        2 => valid_then_garbage(flags, rest),
        _ => pair(flags, rest),
    }
});
