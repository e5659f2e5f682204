//! The scenarios of Octez's `test_p2p_socket` and `test_p2p_buffer_reader`
//! (shared/spec/octez-p2p-tests.md §1.6, §2.3), over real loopback TCP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tezos_p2p::scheduler::{IoScheduler, SchedulerConfig};
use tezos_p2p::socket::{
    authenticate, check_binary_chunks_size, AcceptOptions, AuthConfig, AuthenticatedConnection,
    SocketError,
};
use tezos_p2p::transport::BoxStream;
use tezos_p2p::wire::identity::{Identity, PowTarget};
use tezos_p2p::wire::message::{OctezMetadata, P2pMessage, RawMessage};
use tezos_p2p::wire::rejection::Motive;

mod common;
use common::*;

type AuthResult = Result<
    (
        tezos_p2p::socket::ConnectionInfo<OctezMetadata>,
        AuthenticatedConnection<OctezMetadata>,
    ),
    SocketError,
>;

/// Runs `authenticate` on both ends: (client's result, server's result).
async fn authenticate_pair(
    sched: &IoScheduler,
    client: AuthConfig<OctezMetadata>,
    server: AuthConfig<OctezMetadata>,
) -> (AuthResult, AuthResult) {
    let (c, s, caddr, saddr) = tcp_pair().await;
    let client = AuthConfig {
        remote_addr: saddr,
        ..client
    };
    let server = AuthConfig {
        remote_addr: caddr,
        ..server
    };
    tokio::join!(
        authenticate(c, sched.register(), client),
        authenticate(s, sched.register(), server)
    )
}

async fn connected_pair_with(opts: AcceptOptions) -> (Conn, Conn) {
    let sched = IoScheduler::new(SchedulerConfig::default());
    connected_pair_on(&sched, &sched, opts).await
}

async fn connected_pair() -> (Conn, Conn) {
    connected_pair_with(AcceptOptions::default()).await
}

#[tokio::test]
async fn low_level_bytes_pass_through_the_scheduler() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let (mut c, mut s, _, _) = tcp_pair().await;
    let data = random_bytes(16);
    let io = sched.register();
    let n = io.reserve_write(data.len()).await;
    assert_eq!(n, 16);
    s.write_all(&data).await.unwrap();
    io.record_write(n);
    let mut got = [0u8; 16];
    c.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[..], &data[..]);
    assert_eq!(io.stat().total_sent, 16);
}

#[tokio::test]
async fn authenticated_peers_see_each_other() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let any: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut server_cfg = auth(identity(2), true, any);
    server_cfg.metadata.private_node = true;
    let (c, s) = authenticate_pair(&sched, auth(identity(1), false, any), server_cfg).await;
    let (ci, _) = c.unwrap();
    let (si, _) = s.unwrap();
    assert!(!ci.incoming);
    assert!(si.incoming);
    assert_eq!(ci.peer_id, identity(2).peer_id);
    assert_eq!(si.peer_id, identity(1).peer_id);
    assert!(ci.private_node);
    assert!(!si.private_node);
    // The server knows the client by its advertised port, the client the
    // server by the port it dialled.
    assert_eq!(si.id_point.1, Some(9732));
    assert_ne!(ci.id_point.1, Some(9732));
}

#[tokio::test]
async fn nack_without_points_rejects_with_motive() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let any: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (c, s) = authenticate_pair(
        &sched,
        auth(identity(1), false, any),
        auth(identity(2), true, any),
    )
    .await;
    let (_, c) = c.unwrap();
    let (_, s) = s.unwrap();
    let (c, s) = tokio::join!(
        c.nack(Motive::NoMotive, vec![]),
        s.accept::<RawMessage>(AcceptOptions::default())
    );
    c.unwrap();
    assert_eq!(
        s.unwrap_err(),
        SocketError::RejectedByNack {
            motive: Motive::NoMotive,
            alternative_points: Some(vec![])
        }
    );
}

#[tokio::test]
async fn nack_with_points_carries_them() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let any: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (c, s) = authenticate_pair(
        &sched,
        auth(identity(1), false, any),
        auth(identity(2), true, any),
    )
    .await;
    let (_, c) = c.unwrap();
    let (_, s) = s.unwrap();
    let points = vec![
        "203.0.113.5:9732".parse().unwrap(),
        "[2001:db8::1]:9732".parse().unwrap(),
    ];
    let (s, c) = tokio::join!(
        s.nack(Motive::TooManyConnections, points.clone()),
        c.accept::<RawMessage>(AcceptOptions::default())
    );
    s.unwrap();
    assert_eq!(
        c.unwrap_err(),
        SocketError::RejectedByNack {
            motive: Motive::TooManyConnections,
            alternative_points: Some(points)
        }
    );
}

#[tokio::test]
async fn peer_announcing_p2p_version_0_gets_nack_v0() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let any: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut client = auth(identity(1), false, any);
    client.version = version(0);
    let (c, s) = authenticate_pair(&sched, client, auth(identity(2), true, any)).await;
    let (_, c) = c.unwrap();
    let (_, s) = s.unwrap();
    let (s, c) = tokio::join!(
        s.nack(
            Motive::TooManyConnections,
            vec!["1.2.3.4:5".parse().unwrap()]
        ),
        c.accept::<RawMessage>(AcceptOptions::default())
    );
    s.unwrap();
    assert_eq!(
        c.unwrap_err(),
        SocketError::RejectedByNack {
            motive: Motive::NoMotive,
            alternative_points: None
        }
    );
}

#[tokio::test]
async fn nack_with_more_than_100_points_fails_before_sending() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let any: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (c, s) = authenticate_pair(
        &sched,
        auth(identity(1), false, any),
        auth(identity(2), true, any),
    )
    .await;
    let (_, c) = c.unwrap();
    let (_, s) = s.unwrap();
    let points = vec!["1.2.3.4:5".parse().unwrap(); 101];
    let err = s.nack(Motive::NoMotive, points).await.unwrap_err();
    assert!(matches!(err, SocketError::Encoding(_)), "{err:?}");
    // Nothing was sent: the client sees the socket close, not a Nack.
    assert_eq!(
        c.accept::<RawMessage>(AcceptOptions::default())
            .await
            .unwrap_err(),
        SocketError::RejectedSocketConnection
    );
}

#[tokio::test]
async fn pow_too_low_fails_the_server_and_closes_the_client() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let any: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut server = auth(identity(2), true, any);
    server.pow_target = PowTarget::new(100.0).unwrap();
    let (c, s) = authenticate_pair(&sched, auth(identity(1), false, any), server).await;
    assert_eq!(
        s.unwrap_err(),
        SocketError::NotEnoughProofOfWork(identity(1).peer_id)
    );
    assert_eq!(c.unwrap_err(), SocketError::ConnectionClosed);
}

/// A peer driven by hand with the wire state machine, which keeps its socket
/// open whatever happens, so the other side's error does not race with a
/// close. Returns the stream once the handshake stops reading.
async fn hold_open_peer(
    mut stream: BoxStream,
    id: Identity,
    incoming: bool,
) -> (
    BoxStream,
    Result<(), tezos_p2p::wire::handshake::HandshakeError>,
) {
    use tezos_p2p::wire::handshake::{Handshake, HandshakeConfig, Status};
    let mut hs = Handshake::new(HandshakeConfig {
        identity: id,
        pow_target: PowTarget::new(0.0).unwrap(),
        incoming,
        listening_port: None,
        version: version(1),
        metadata: OctezMetadata::default(),
        message_nonce: [7; 24],
    })
    .unwrap();
    let mut buf = vec![0u8; 4096];
    loop {
        let out = hs.take_output();
        stream.write_all(&out).await.unwrap();
        if !matches!(
            hs.status(),
            Status::ReadingConnectionMessage | Status::ReadingMetadata
        ) {
            return (stream, Ok(()));
        }
        let n = stream.read(&mut buf).await.unwrap();
        if let Err(e) = hs.feed(&buf[..n]) {
            let out = hs.take_output();
            stream.write_all(&out).await.unwrap();
            return (stream, Err(e));
        }
    }
}

#[tokio::test]
async fn same_identity_is_myself() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let (c, s, caddr, _) = tcp_pair().await;
    let ((_c, peer), server) = tokio::join!(
        hold_open_peer(c, (*identity(1)).clone(), false),
        authenticate(s, sched.register(), auth(identity(1), true, caddr))
    );
    assert_eq!(
        peer,
        Err(tezos_p2p::wire::handshake::HandshakeError::Myself)
    );
    assert_eq!(server.unwrap_err(), SocketError::Myself(caddr));
}

/// An impostor announces the server's own public key but cannot encrypt
/// with it: the server fails on decryption, never with `Myself`
/// (octez-p2p-tests §2.3 "self peer id").
#[tokio::test]
async fn impostor_with_our_public_key_fails_to_decipher() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let server_id = identity(2);
    let mut impostor = (*identity(1)).clone();
    impostor.public_key = server_id.public_key;
    impostor.peer_id = server_id.peer_id;
    let (c, s, caddr, _) = tcp_pair().await;
    let ((_c, _), server) = tokio::join!(
        hold_open_peer(c, impostor, false),
        authenticate(s, sched.register(), auth(server_id, true, caddr))
    );
    assert_eq!(server.unwrap_err(), SocketError::DecipherError);
}

#[tokio::test]
async fn garbage_instead_of_a_connection_message_is_a_decoding_error() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let (mut c, s, caddr, _) = tcp_pair().await;
    c.write_all(b"\x00\x0aHello, world. This is garbage, greylist me !")
        .await
        .unwrap();
    let err = authenticate(s, sched.register(), auth(identity(2), true, caddr))
        .await
        .unwrap_err();
    assert!(matches!(err, SocketError::Decoding(_)), "{err:?}");
}

#[tokio::test]
async fn handshake_times_out_on_a_silent_peer() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let (_c, s, caddr, _) = tcp_pair().await;
    let mut cfg = auth(identity(2), true, caddr);
    cfg.timeout = Some(Duration::from_millis(50));
    let err = authenticate(s, sched.register(), cfg).await.unwrap_err();
    assert_eq!(err, SocketError::Timeout);
}

#[tokio::test]
async fn handshake_can_be_cancelled() {
    let sched = IoScheduler::new(SchedulerConfig::default());
    let (_c, s, caddr, _) = tcp_pair().await;
    let cfg = auth(identity(2), true, caddr);
    let cancel = cfg.cancel.clone();
    let task = tokio::spawn(authenticate(s, sched.register(), cfg));
    cancel.cancel();
    assert_eq!(task.await.unwrap().unwrap_err(), SocketError::Canceled);
}

#[tokio::test]
async fn simple_message_both_ways() {
    let (c, s) = connected_pair().await;
    let (m1, m2) = (random_bytes(16), random_bytes(16));
    let (a1, a2) = (app(0x11, m1.clone()), app(0x11, m2.clone()));
    let (r1, r2) = tokio::join!(s.write_sync(&a1), c.write_sync(&a2));
    r1.unwrap();
    r2.unwrap();
    let (size, msg) = c.read().await.unwrap();
    assert_eq!(size, 4 + 2 + 16);
    assert_eq!(msg, app(0x11, m1));
    assert_eq!(s.read().await.unwrap().1, app(0x11, m2));
    assert!(c.stat().total_recv > 0);
}

#[tokio::test]
async fn chunked_message_with_21_byte_chunks_is_reassembled() {
    let opts = AcceptOptions {
        binary_chunks_size: Some(21),
        ..AcceptOptions::default()
    };
    let (c, s) = connected_pair_with(opts).await;
    for _ in 0..3 {
        let m = random_bytes(256);
        s.write_sync(&app(0x10, m.clone())).await.unwrap();
        assert_eq!(c.read().await.unwrap().1, app(0x10, m));
    }
}

#[tokio::test]
async fn oversized_message_spans_several_chunks() {
    let (c, s) = connected_pair().await;
    let m = random_bytes(131_072);
    s.write(&app(0x10, m.clone())).await.unwrap();
    let (size, msg) = c.read().await.unwrap();
    assert_eq!(size, 131_072 + 6);
    assert_eq!(msg, app(0x10, m));
}

#[tokio::test]
async fn p2p_messages_round_trip() {
    let (c, s) = connected_pair().await;
    let peer = identity(9).peer_id;
    let msgs = vec![
        P2pMessage::Bootstrap,
        P2pMessage::Advertise(vec!["203.0.113.5:9732".parse().unwrap()]),
        P2pMessage::SwapRequest("1.2.3.4:5".parse().unwrap(), peer),
        P2pMessage::SwapAck("[::1]:5".parse().unwrap(), peer),
        P2pMessage::Disconnect,
    ];
    for m in &msgs {
        s.write(m).await.unwrap();
    }
    for m in msgs {
        assert_eq!(c.read().await.unwrap().1, m);
    }
}

#[tokio::test]
async fn close_during_read_fails_the_reader_with_connection_closed() {
    let (c, s) = connected_pair().await;
    let reader = tokio::spawn({
        let c = c.clone();
        async move { c.read().await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.close(false).await;
    assert_eq!(
        reader.await.unwrap().unwrap_err(),
        SocketError::ConnectionClosed
    );
    // And later reads keep failing.
    assert_eq!(c.read().await.unwrap_err(), SocketError::ConnectionClosed);
}

#[tokio::test]
async fn read_after_local_close_fails() {
    let (c, _s) = connected_pair().await;
    c.close(false).await;
    assert!(c.is_closed());
    assert_eq!(c.read().await.unwrap_err(), SocketError::ConnectionClosed);
    assert_eq!(
        c.write(&P2pMessage::Bootstrap).await.unwrap_err(),
        SocketError::ConnectionClosed
    );
}

#[tokio::test]
async fn write_sync_to_a_closed_peer_fails_with_connection_closed() {
    let (c, s) = connected_pair().await;
    s.close(false).await;
    // The peer's close reaches us as EOF; a write_sync then fails.
    c.closed().await;
    assert_eq!(
        c.write_sync(&app(0x10, vec![1, 2, 3])).await.unwrap_err(),
        SocketError::ConnectionClosed
    );
}

#[tokio::test]
async fn close_with_flush_delivers_what_was_queued() {
    let (c, s) = connected_pair().await;
    for i in 0..100u8 {
        s.write(&app(0x10, vec![i; 1000])).await.unwrap();
    }
    s.close(true).await;
    for i in 0..100u8 {
        assert_eq!(c.read().await.unwrap().1, app(0x10, vec![i; 1000]));
    }
    assert_eq!(c.read().await.unwrap_err(), SocketError::ConnectionClosed);
}

#[tokio::test]
async fn write_now_drops_when_the_queue_is_full() {
    let opts = AcceptOptions {
        outgoing_message_queue_size: 4096,
        incoming_message_queue_size: 4096,
        ..AcceptOptions::default()
    };
    let (c, s) = connected_pair_with(opts).await;
    // Nobody reads on `c`: its read queue fills, then TCP's buffers, then
    // our write queue. write_now must then drop instead of waiting.
    let msg = app(0x10, vec![0; 1000]);
    let mut dropped = 0;
    for _ in 0..100_000 {
        if !s.write_now(&msg).unwrap() {
            dropped += 1;
            if dropped > 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(dropped > 10, "the write queue never filled");
    // Reading drains it again.
    c.read().await.unwrap();
}

#[tokio::test]
async fn garbled_data_is_a_decoding_error_and_the_peer_then_sees_a_close() {
    let (c, s) = connected_pair().await;
    // Bytes inside the encrypted channel that do not decode: size 4, then
    // an unknown tag.
    s.write_encoded(bytes::Bytes::from_static(&[
        0, 0, 0, 4, 0, 0x07, 0xff, 0xff,
    ]))
    .await
    .unwrap();
    let err = c.read().await.unwrap_err();
    assert!(matches!(err, SocketError::Decoding(_)), "{err:?}");
    assert!(c.is_closed());
    assert_eq!(s.read().await.unwrap_err(), SocketError::ConnectionClosed);
}

/// Several tasks reading one connection share its messages: each message
/// reaches exactly one of them, and the end reaches all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_get_every_message_once() {
    let (c, s) = connected_pair().await;
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    match c.read().await {
                        Ok((_, P2pMessage::Message(m))) => {
                            got.push(u16::from_be_bytes([m.body[0], m.body[1]]))
                        }
                        Ok(other) => panic!("unexpected {other:?}"),
                        Err(e) => return (got, e),
                    }
                }
            })
        })
        .collect();
    for i in 0..2000u16 {
        s.write(&app(0x10, i.to_be_bytes().to_vec())).await.unwrap();
    }
    s.close(true).await;
    let mut all = Vec::new();
    for r in readers {
        let (got, end) = r.await.unwrap();
        assert_eq!(end, SocketError::ConnectionClosed);
        // Each reader sees its share in the order sent.
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(all, (0..2000).collect::<Vec<_>>());
}

/// Messages queued together share chunks (the reader reassembles them from
/// the decrypted stream): 200 messages of 16 bytes cost far fewer than 200
/// chunk overheads of 18 bytes, and all arrive intact and in order.
#[tokio::test]
async fn queued_small_messages_share_chunks() {
    let (c, s) = connected_pair().await;
    let before = s.stat().total_sent;
    for i in 0..200u8 {
        assert!(s.write_now(&app(0x10, vec![i; 10])).unwrap());
    }
    s.close(true).await;
    let sent = s.stat().total_sent - before;
    let payload = 200 * 16;
    assert!(
        sent < payload + 20 * 18,
        "{sent} bytes on the wire for {payload} bytes of messages"
    );
    for i in 0..200u8 {
        assert_eq!(c.read().await.unwrap(), (16, app(0x10, vec![i; 10])));
    }
    assert_eq!(c.read().await.unwrap_err(), SocketError::ConnectionClosed);
}

/// Fills `to`'s read queue and the TCP buffers by writing on `from` until
/// `write_now` fails: `to`'s reading is then stuck on its full queue, and
/// `from`'s writing on a full socket.
async fn jam(from: &Conn) {
    let msg = app(0x10, vec![0; 1000]);
    let mut dropped = 0;
    while dropped < 10 {
        if !from.write_now(&msg).unwrap() {
            dropped += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// One task runs both directions of a connection, and neither waits for
/// the other: with its read side stuck (full read queue), a connection
/// still writes; with its write side stuck (full socket), it still reads.
#[tokio::test]
async fn a_stuck_direction_does_not_stop_the_other() {
    let opts = AcceptOptions {
        outgoing_message_queue_size: 4096,
        incoming_message_queue_size: 4096,
        ..AcceptOptions::default()
    };
    let (c, s) = connected_pair_with(opts).await;
    // c's read side stuck: nobody reads c.
    jam(&s).await;
    for i in 0..100u8 {
        c.write(&app(0x11, vec![i; 100])).await.unwrap();
    }
    let read = |s: Conn| async move {
        tokio::time::timeout(Duration::from_secs(10), s.read())
            .await
            .expect("the other direction is stuck too")
            .unwrap()
            .1
    };
    for i in 0..100u8 {
        assert_eq!(read(s.clone()).await, app(0x11, vec![i; 100]));
    }
    // s's write side stuck too now (c still reads nothing): s reads on.
    jam(&s).await;
    c.write(&app(0x12, vec![7; 10])).await.unwrap();
    assert_eq!(read(s.clone()).await, app(0x12, vec![7; 10]));
}

#[tokio::test]
async fn equal_is_identity_of_the_connection() {
    let (c, s) = connected_pair().await;
    assert!(c.equal(&c.clone()));
    assert!(!c.equal(&s));
    assert!(c.to_string().starts_with(&identity(2).peer_id.to_string()));
}

#[test]
fn binary_chunks_size_bounds() {
    assert!(check_binary_chunks_size(19).is_ok());
    assert!(check_binary_chunks_size(65_535).is_ok());
    assert!(matches!(
        check_binary_chunks_size(18),
        Err(SocketError::InvalidChunksSize(_))
    ));
    assert!(matches!(
        check_binary_chunks_size(65_536),
        Err(SocketError::InvalidChunksSize(_))
    ));
}

/// Octez's `test_p2p_buffer_reader`: reads return what is there and keep
/// the rest for the next read, without loss. Over an in-memory pipe of 7
/// bytes every read and write is partial, so messages of every size cross
/// many chunk and read boundaries.
#[tokio::test]
async fn tiny_pipe_reads_lose_nothing() {
    let opts = AcceptOptions {
        binary_chunks_size: Some(100),
        ..AcceptOptions::default()
    };
    let (c, s) = memory_pair(7, 5, opts).await;
    let sizes = [0usize, 1, 5, 81, 82, 83, 500, 4096, 70_000];
    let writer = tokio::spawn({
        let s = s.clone();
        async move {
            for (i, &n) in sizes.iter().enumerate() {
                s.write(&app(0x10, vec![i as u8; n])).await.unwrap();
            }
        }
    });
    for (i, &n) in sizes.iter().enumerate() {
        let (size, msg) = c.read().await.unwrap();
        assert_eq!(size, n + 6);
        assert_eq!(msg, app(0x10, vec![i as u8; n]));
    }
    writer.await.unwrap();
}
