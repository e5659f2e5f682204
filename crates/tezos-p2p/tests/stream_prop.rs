//! Property: whatever the messages, the chunk size, the pipe between the
//! peers, the read size and the way writes are batched (messages queued
//! together share chunks), the reader gets exactly the messages written, in
//! order, with their sizes; after a flushing close, the end.

use proptest::prelude::*;

use tezos_p2p::socket::{AcceptOptions, SocketError};

mod common;
use common::*;

#[derive(Debug, Clone)]
struct Case {
    /// Message body sizes; the body of message `i` is `i` repeated.
    sizes: Vec<usize>,
    /// Let the connection run after message `i` (else keep queueing).
    pause_after: Vec<bool>,
    binary_chunks_size: Option<usize>,
    pipe: usize,
    read_buffer_size: usize,
}

fn case() -> impl Strategy<Value = Case> {
    let size = prop_oneof![
        6 => 0usize..200,
        3 => 0usize..5_000,
        1 => 60_000usize..140_000,
    ];
    (
        prop::collection::vec((size, any::<bool>()), 1..40),
        prop_oneof![
            Just(None),
            (19usize..=300).prop_map(Some),
            (60_000usize..=65_535).prop_map(Some),
        ],
        prop_oneof![7usize..100, 100usize..200_000],
        prop_oneof![1usize..100, 100usize..70_000],
    )
        .prop_map(|(msgs, binary_chunks_size, pipe, read_buffer_size)| {
            let (sizes, pause_after) = msgs.into_iter().unzip();
            Case {
                sizes,
                pause_after,
                binary_chunks_size,
                pipe,
                read_buffer_size,
            }
        })
}

async fn run(case: Case) {
    let opts = AcceptOptions {
        binary_chunks_size: case.binary_chunks_size,
        ..AcceptOptions::default()
    };
    let (c, s) = memory_pair(case.pipe, case.read_buffer_size, opts).await;
    let writer = tokio::spawn({
        let case = case.clone();
        async move {
            for (i, (&n, &pause)) in case.sizes.iter().zip(&case.pause_after).enumerate() {
                s.write(&app(0x10, vec![i as u8; n])).await.unwrap();
                if pause {
                    tokio::task::yield_now().await;
                }
            }
            s.close(true).await;
        }
    });
    for (i, &n) in case.sizes.iter().enumerate() {
        let (size, msg) = c.read().await.unwrap();
        assert_eq!(size, n + 6, "message {i}");
        assert_eq!(msg, app(0x10, vec![i as u8; n]), "message {i}");
    }
    writer.await.unwrap();
    assert_eq!(c.read().await.unwrap_err(), SocketError::ConnectionClosed);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_message_arrives_whole_and_in_order(case in case()) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(case));
    }
}
