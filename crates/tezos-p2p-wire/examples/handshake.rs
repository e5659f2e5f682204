//! Two peers authenticate in memory, then exchange one encrypted message.
//!
//! ```text
//! cargo run --release -p tezos-p2p-wire --example handshake
//! ```
//!
//! Everything here is sans-IO: the two `Handshake` state machines only
//! produce and consume bytes, and this program moves them between the two.

use std::time::Instant;

use tezos_p2p_wire::chunk::ChunkSize;
use tezos_p2p_wire::crypto::derive_nonces;
use tezos_p2p_wire::handshake::{Handshake, HandshakeConfig, Status};
use tezos_p2p_wire::identity::{Identity, PowSearch, PowTarget};
use tezos_p2p_wire::message::{encode_message, OctezMetadata, P2pMessage, RawMessage};
use tezos_p2p_wire::version::{ChainName, SupportedVersions};

/// A low proof-of-work level, so that generating identities is instant
/// (Octez's default is 26).
const POW_LEVEL: f64 = 8.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = PowTarget::new(POW_LEVEL)?;

    // 1. Two identities: a key pair and a proof-of-work stamp each.
    let mut ids = Vec::new();
    for name in ["A", "B"] {
        let start = Instant::now();
        let id = Identity::generate(&target, &PowSearch::default(), |_| {})
            .ok_or("identity generation was cancelled")?;
        println!(
            "identity {name}: {}  (target level {POW_LEVEL}, ~{} attempts expected; \
             stamp reaches level {}, found in {:.1?})",
            id.peer_id,
            2f64.powf(POW_LEVEL),
            id.pow_level(),
            start.elapsed(),
        );
        ids.push(id);
    }
    let (id_b, id_a) = (ids.pop().unwrap(), ids.pop().unwrap());

    // 2. One state machine per side: A dials B (A is the initiator).
    let version = SupportedVersions::octez(ChainName::from("TEZOS_EXAMPLE")).announced();
    let config = |identity: Identity, incoming: bool| HandshakeConfig {
        identity,
        pow_target: target,
        incoming,
        listening_port: Some(9732),
        version: version.clone(),
        metadata: OctezMetadata::default(),
        message_nonce: rand::random(),
    };
    let mut a = Handshake::new(config(id_a, false))?;
    let mut b = Handshake::new(config(id_b, true))?;

    // 3. Move bytes both ways until both sides are established, accepting
    //    each other when asked.
    while a.status() != Status::Established || b.status() != Status::Established {
        for hs in [&mut a, &mut b] {
            if hs.status() == Status::AwaitingDecision {
                let remote = hs.remote().expect("known once the metadata is read");
                println!(
                    "{} accepts peer {}",
                    hs.config().identity.peer_id,
                    remote.peer_id
                );
                hs.accept()?;
            }
        }
        let a_to_b = a.take_output();
        let b_to_a = b.take_output();
        if a_to_b.is_empty() && b_to_a.is_empty() {
            return Err(format!("stuck: A {:?}, B {:?}", a.status(), b.status()).into());
        }
        // Each batch is consumed whole: an Ack is only sent after `accept`.
        assert_eq!(b.feed(&a_to_b)?, a_to_b.len());
        assert_eq!(a.feed(&b_to_a)?, b_to_a.len());
    }

    // The nonces both sides derived from the two connection messages.
    let a_nonces = derive_nonces(
        a.sent_connection_message(),
        b.sent_connection_message(),
        false,
    );
    let b_nonces = derive_nonces(
        b.sent_connection_message(),
        a.sent_connection_message(),
        true,
    );
    println!("initiator A: local  {}", hex::encode(a_nonces.local.0));
    println!("             remote {}", hex::encode(a_nonces.remote.0));
    println!("responder B: local  {}", hex::encode(b_nonces.local.0));
    println!("             remote {}", hex::encode(b_nonces.remote.0));
    assert_eq!(
        a_nonces.local, b_nonces.remote,
        "A's sending nonce is B's receiving one"
    );
    assert_eq!(a_nonces.remote, b_nonces.local, "and the other way round");

    let a = a.into_session()?;
    let b = b.into_session()?;
    println!(
        "A sees B as {}, B sees A as {}",
        a.remote_peer_id, b.remote_peer_id
    );
    let (mut a_tx, _) = a.cipher.split::<RawMessage>(ChunkSize::MAX, 1 << 20);
    let (_, mut b_rx) = b.cipher.split::<RawMessage>(ChunkSize::MAX, 1 << 20);

    // 4. A sends an application message: encode, then the chunk writer
    //    cuts it into chunk-sized pieces and seals each piece.
    let msg = P2pMessage::Message(RawMessage {
        tag: 0x10,
        body: b"hello from A".to_vec(),
    });
    let mut plain = Vec::new();
    encode_message(&msg, &mut plain)?;
    a_tx.push(&plain, usize::MAX);
    a_tx.flush();
    let wire = a_tx.output().to_vec();
    a_tx.advance(wire.len());
    println!(
        "A -> B: {} bytes on the wire: {}",
        wire.len(),
        hex::encode(&wire)
    );

    // 5. B's chunk reader opens the chunks and cuts the message out of
    //    their plaintext.
    b_rx.feed(&wire);
    let (size, got) = b_rx.next_message()?.ok_or("incomplete message")?;
    match &got {
        P2pMessage::Message(m) => println!(
            "B decoded {} (tag {:#04x}, {size} bytes): {:?}",
            got.name(),
            m.tag,
            String::from_utf8_lossy(&m.body)
        ),
        other => println!("B decoded {other:?}"),
    }
    assert_eq!(got, msg);
    Ok(())
}
