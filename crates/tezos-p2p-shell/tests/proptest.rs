//! Property tests: every valid message survives encode → decode (bytes,
//! stream decoder and JSON); arbitrary and mutated bytes never panic,
//! decode to messages that re-encode, and allocate in proportion to the
//! input; the stream-reader check of a prefix agrees with the decoder.

use std::mem::size_of;

use proptest::collection::vec;
use proptest::prelude::*;
use tezos_p2p_shell::message::TAGS;
use tezos_p2p_shell::{
    BlockHash, BlockHeader, BlockLocator, ChainId, Component, ContextHash, Fitness, Mempool,
    MerklePath, Operation, OperationHash, OperationListListHash, OperationsForBlock, PathStep,
    Protocol, ProtocolHash, ShellMessage,
};
use tezos_p2p_wire::encoding::DecodeError;
use tezos_p2p_wire::message::{encode_message, AppMessage, MessageDecoder, P2pMessage};

fn h32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn chain() -> impl Strategy<Value = ChainId> {
    any::<[u8; 4]>().prop_map(ChainId::from_bytes)
}

fn block() -> impl Strategy<Value = BlockHash> {
    h32().prop_map(BlockHash::from_bytes)
}

fn op_hash() -> impl Strategy<Value = OperationHash> {
    h32().prop_map(OperationHash::from_bytes)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn header() -> impl Strategy<Value = BlockHeader> {
    (
        (
            any::<i32>(),
            any::<u8>(),
            block(),
            any::<i64>(),
            any::<u8>(),
        ),
        (h32(), vec(bytes(10), 0..4), h32(), bytes(64)),
    )
        .prop_map(
            |((level, proto, predecessor, timestamp, validation_pass), (oh, fit, ctx, pd))| {
                BlockHeader {
                    level,
                    proto,
                    predecessor,
                    timestamp,
                    validation_pass,
                    operations_hash: OperationListListHash::from_bytes(oh),
                    fitness: Fitness(fit),
                    context: ContextHash::from_bytes(ctx),
                    protocol_data: pd,
                }
            },
        )
}

fn locator() -> impl Strategy<Value = BlockLocator> {
    (header(), vec(block(), 0..20)).prop_map(|(current_head, history)| BlockLocator {
        current_head,
        history,
    })
}

fn mempool() -> impl Strategy<Value = Mempool> {
    (vec(op_hash(), 0..8), vec(op_hash(), 0..8)).prop_map(|(known_valid, pending)| Mempool {
        known_valid,
        pending,
    })
}

fn operation() -> impl Strategy<Value = Operation> {
    (block(), bytes(100)).prop_map(|(branch, data)| Operation { branch, data })
}

fn protocol() -> impl Strategy<Value = Protocol> {
    let component = (bytes(10), proptest::option::of(bytes(20)), bytes(40)).prop_map(
        |(name, interface, implementation)| Component {
            name,
            interface,
            implementation,
        },
    );
    (0u16..=17, vec(component, 0..4)).prop_map(|(expected_env_version, components)| Protocol {
        expected_env_version,
        components,
    })
}

fn path() -> impl Strategy<Value = MerklePath> {
    let step = (any::<bool>(), h32()).prop_map(|(left, h)| {
        let h = OperationListListHash::from_bytes(h);
        if left {
            PathStep::Left { right: h }
        } else {
            PathStep::Right { left: h }
        }
    });
    vec(step, 0..=3).prop_map(MerklePath)
}

fn message() -> impl Strategy<Value = ShellMessage> {
    use ShellMessage as M;
    prop_oneof![
        chain().prop_map(M::GetCurrentBranch),
        (chain(), locator()).prop_map(|(chain_id, locator)| M::CurrentBranch { chain_id, locator }),
        chain().prop_map(M::Deactivate),
        chain().prop_map(M::GetCurrentHead),
        (chain(), header(), mempool()).prop_map(|(chain_id, header, mempool)| M::CurrentHead {
            chain_id,
            header,
            mempool
        }),
        vec(block(), 0..=10).prop_map(M::GetBlockHeaders),
        header().prop_map(M::BlockHeader),
        vec(op_hash(), 0..=10).prop_map(M::GetOperations),
        operation().prop_map(M::Operation),
        vec(h32().prop_map(ProtocolHash::from_bytes), 0..=10).prop_map(M::GetProtocols),
        protocol().prop_map(M::Protocol),
        vec((block(), any::<i8>()), 0..=10).prop_map(M::GetOperationsForBlocks),
        (block(), any::<i8>(), path(), vec(operation(), 0..5)).prop_map(
            |(block, validation_pass, path, operations)| M::OperationsForBlocks(
                OperationsForBlock {
                    block,
                    validation_pass,
                    path,
                    operations
                }
            )
        ),
        chain().prop_map(M::GetCheckpoint),
        (chain(), header()).prop_map(|(chain_id, header)| M::Checkpoint { chain_id, header }),
        (chain(), any::<u8>()).prop_map(|(chain_id, proto_level)| M::GetProtocolBranch {
            chain_id,
            proto_level
        }),
        (chain(), any::<u8>(), locator()).prop_map(|(chain_id, proto_level, locator)| {
            M::ProtocolBranch {
                chain_id,
                proto_level,
                locator,
            }
        }),
        (block(), any::<i32>())
            .prop_map(|(block, offset)| M::GetPredecessorHeader { block, offset }),
        (block(), any::<i32>(), header()).prop_map(|(block, offset, header)| {
            M::PredecessorHeader {
                block,
                offset,
                header,
            }
        }),
    ]
}

/// Mostly the known tags, sometimes any.
fn tag() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => proptest::sample::select(TAGS.iter().map(|(t, _)| *t).collect::<Vec<_>>()),
        1 => any::<u16>(),
    ]
}

fn heap<T>(v: &Vec<T>) -> usize {
    v.capacity() * size_of::<T>()
}

fn header_heap(h: &BlockHeader) -> usize {
    heap(&h.fitness.0) + h.fitness.0.iter().map(heap).sum::<usize>() + heap(&h.protocol_data)
}

fn ops_heap(ops: &Vec<Operation>) -> usize {
    heap(ops) + ops.iter().map(|o| heap(&o.data)).sum::<usize>()
}

/// Heap bytes a decoded message owns.
fn owned_bytes(m: &ShellMessage) -> usize {
    use ShellMessage as M;
    match m {
        M::CurrentBranch { locator, .. } | M::ProtocolBranch { locator, .. } => {
            header_heap(&locator.current_head) + heap(&locator.history)
        }
        M::CurrentHead {
            header, mempool, ..
        } => header_heap(header) + heap(&mempool.known_valid) + heap(&mempool.pending),
        M::GetBlockHeaders(v) => heap(v),
        M::GetOperations(v) => heap(v),
        M::GetProtocols(v) => heap(v),
        M::GetOperationsForBlocks(v) => heap(v),
        M::BlockHeader(h)
        | M::Checkpoint { header: h, .. }
        | M::PredecessorHeader { header: h, .. } => header_heap(h),
        M::Operation(o) => heap(&o.data),
        M::Protocol(p) => {
            heap(&p.components)
                + p.components
                    .iter()
                    .map(|c| {
                        heap(&c.name)
                            + c.interface.as_ref().map_or(0, heap)
                            + heap(&c.implementation)
                    })
                    .sum::<usize>()
        }
        M::OperationsForBlocks(o) => heap(&o.path.0) + ops_heap(&o.operations),
        _ => 0,
    }
}

/// Decodes `tag ‖ body`, and checks what holds of any input: no panic,
/// bounded allocation, a message that re-encodes and decodes to itself,
/// and a stream-reader check that agrees.
fn check_any(tag: u16, body: &[u8]) -> Result<ShellMessage, DecodeError> {
    let r = <ShellMessage as AppMessage>::decode(tag, body);
    let mut framed = ((body.len() + 2) as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&tag.to_be_bytes());
    framed.extend_from_slice(body);
    if (1..=5).contains(&tag) {
        return r;
    }
    assert_eq!(ShellMessage::check_prefix(&framed), r.clone().map(|_| ()));
    // Each prefix is awaited, or already the final error.
    for n in [
        0,
        3,
        4,
        5,
        6,
        7,
        10,
        40,
        41,
        80,
        framed.len() / 2,
        framed.len().saturating_sub(1),
    ] {
        if let Some(p) = framed.get(..n) {
            match ShellMessage::check_prefix(p) {
                Ok(()) => {}
                Err(e) => assert_eq!(Err(e), r.clone().map(|_| ()), "prefix {n}"),
            }
        }
    }
    if let Ok(m) = &r {
        assert!(
            owned_bytes(m) <= 16 * body.len() + 256,
            "{} bytes owned for {} of input",
            owned_bytes(m),
            body.len()
        );
        let again = m.to_bytes().expect("a decoded message re-encodes");
        assert_eq!(ShellMessage::from_bytes(&again).as_ref(), Ok(m));
        if !matches!(m, ShellMessage::Protocol(_)) {
            // Only a protocol's presence byte is normalised.
            assert_eq!(&again[2..], body);
        }
    }
    r
}

proptest! {
    // 512 cases unless PROPTEST_CASES says otherwise.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn valid_messages_round_trip(m in message()) {
        let bytes = m.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), 2 + m.body_len());
        prop_assert_eq!(m.size_hint(), m.body_len());
        prop_assert_eq!(&ShellMessage::from_bytes(&bytes).unwrap(), &m);
        let again = check_any(m.tag(), &bytes[2..]);
        prop_assert_eq!(again.as_ref(), Ok(&m));
        prop_assert!(bytes.len() <= ShellMessage::max_size(m.tag()).unwrap());

        // On the wire, through the stream decoder, cut anywhere.
        let p2p = P2pMessage::Message(m.clone());
        let mut wire = Vec::new();
        encode_message(&p2p, &mut wire).unwrap();
        let mut d = MessageDecoder::<ShellMessage>::new();
        let cut = 1 + wire.len() / 3;
        let mut got = None;
        for piece in wire.chunks(cut) {
            d.feed(piece);
            if let Some(x) = d.next().unwrap() {
                got = Some(x);
            }
        }
        prop_assert_eq!(got, Some((wire.len(), p2p)));

        // JSON, both ways in.
        let j = m.to_json();
        prop_assert_eq!(&serde_json::from_value::<ShellMessage>(j.clone()).unwrap(), &m);
        prop_assert_eq!(&ShellMessage::from_json(m.name(), &j).unwrap(), &m);
    }

    #[test]
    fn mutated_messages_never_panic(
        m in message(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        extra in bytes(8),
        truncate in any::<bool>(),
    ) {
        let mut bytes = m.to_bytes().unwrap();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(2.max(cut.index(bytes.len() + 1)));
        }
        bytes.extend_from_slice(&extra);
        let tag = u16::from_be_bytes([bytes[0], bytes[1]]);
        let _ = check_any(tag, &bytes[2..]);
    }

    #[test]
    fn arbitrary_bodies_never_panic(tag in tag(), body in bytes(600)) {
        let _ = check_any(tag, &body);
    }

    #[test]
    fn the_stream_decoder_never_panics(
        data in bytes(800),
        piece in 1usize..64,
        prefix_known_tag in tag(),
    ) {
        for stream in [data.clone(), {
            // A plausible header in front: size of the rest, a shell tag.
            let mut s = ((data.len() + 2) as u32).to_be_bytes().to_vec();
            s.extend_from_slice(&prefix_known_tag.to_be_bytes());
            s.extend_from_slice(&data);
            s
        }] {
            let mut d = MessageDecoder::<ShellMessage>::with_max_message_size(4096);
            for c in stream.chunks(piece) {
                d.feed(c);
                while let Ok(Some(_)) = d.next() {}
            }
            let _ = ShellMessage::check_prefix(&stream);
        }
    }
}
