use super::*;
use crate::crypto::{SessionKey, TAG_LEN};
use crate::message::{encode_message, RawMessage, MAX_MESSAGE_SIZE};
use proptest::prelude::*;

const KEY: SessionKey = SessionKey([0x42; 32]);

/// Near a carry: the third chunk's nonce carries over two bytes.
fn first_nonce() -> Nonce {
    let mut n = [0x07; 24];
    n[21..].copy_from_slice(&[0xff, 0xff, 0xfe]);
    Nonce(n)
}

fn nonce_plus(k: usize) -> Nonce {
    let mut n = first_nonce();
    n.add(k as u64);
    n
}

fn writer(size: usize) -> ChunkWriter {
    ChunkWriter::new(
        ChunkCipher::new(KEY, first_nonce()),
        ChunkSize::new(size).unwrap(),
    )
}

fn reader() -> ChunkReader<RawMessage> {
    ChunkReader::new(ChunkCipher::new(KEY, first_nonce()), MAX_MESSAGE_SIZE)
}

fn text(tag: u16, len: usize) -> P2pMessage<RawMessage> {
    P2pMessage::Message(RawMessage {
        tag,
        body: (0..len).map(|i| (i * 7 + usize::from(tag)) as u8).collect(),
    })
}

fn encode(m: &P2pMessage<RawMessage>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(m, &mut out).unwrap();
    out
}

/// Pushes every message, flushes, and returns the wire.
fn send_all(w: &mut ChunkWriter, msgs: &[P2pMessage<RawMessage>]) -> Vec<u8> {
    for m in msgs {
        let bytes = encode(m);
        assert_eq!(w.push(&bytes, usize::MAX), bytes.len());
    }
    w.flush();
    let wire = w.output().to_vec();
    w.advance(wire.len());
    assert!(w.is_idle());
    wire
}

/// The frames of a wire: (body length, plaintext length) each.
fn frames(wire: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut lens = Vec::new();
    while at < wire.len() {
        let body = chunk_body_len([wire[at], wire[at + 1]]).unwrap();
        lens.push(body - TAG_LEN);
        at += HEADER_LEN + body;
    }
    assert_eq!(at, wire.len());
    lens
}

/// Takes every message the reader has now; the error that ends it, if any.
fn drain(
    r: &mut ChunkReader<RawMessage>,
    got: &mut Vec<(usize, P2pMessage<RawMessage>)>,
) -> Result<(), ReadError> {
    loop {
        let size = r.next_size()?;
        match r.next_message()? {
            Some((n, m)) => {
                assert_eq!(size, Some(n));
                got.push((n, m));
            }
            None => {
                assert_eq!(size, None);
                // Less than a chunk is left unopened.
                assert!(r.unopened() < HEADER_LEN || r.chunk_remaining() > 0);
                return Ok(());
            }
        }
    }
}

fn sample() -> Vec<P2pMessage<RawMessage>> {
    vec![
        P2pMessage::Bootstrap,
        text(0x10, 3),
        P2pMessage::Advertise(vec!["203.0.113.5:9732".parse().unwrap()]),
        text(0x11, 150),
        P2pMessage::Disconnect,
    ]
}

fn sized(msgs: &[P2pMessage<RawMessage>]) -> Vec<(usize, P2pMessage<RawMessage>)> {
    msgs.iter().map(|m| (encode(m).len(), m.clone())).collect()
}

#[test]
fn every_split_position_gives_the_same_messages() {
    let msgs = sample();
    for size in [19, 40, 100, MAX_CHUNK_SIZE] {
        let wire = send_all(&mut writer(size), &msgs);
        let chunks = frames(&wire).len();
        for cut in 0..=wire.len() {
            let mut r = reader();
            let mut got = Vec::new();
            r.feed(&wire[..cut]);
            drain(&mut r, &mut got).unwrap();
            r.feed(&wire[cut..]);
            drain(&mut r, &mut got).unwrap();
            assert_eq!(got, sized(&msgs), "size {size}, cut {cut}");
            assert!(r.is_idle());
            assert_eq!(r.nonce(), nonce_plus(chunks));
        }
    }
}

#[test]
fn byte_by_byte_through_the_receive_buffer() {
    let msgs = sample();
    let wire = send_all(&mut writer(27), &msgs);
    let mut r = reader();
    let mut got = Vec::new();
    for &byte in &wire {
        r.recv_buf(1).push(byte);
        drain(&mut r, &mut got).unwrap();
        assert!(r.unopened() <= MAX_CHUNK_SIZE);
    }
    assert_eq!(got, sized(&msgs));
    assert_eq!(r.nonce(), nonce_plus(frames(&wire).len()));
}

#[test]
fn nonces_move_by_one_per_chunk_both_ways() {
    let mut w = writer(19);
    let mut r = reader();
    let mut got = Vec::new();
    // One plaintext byte per chunk: a 7-byte message is 7 chunks.
    let m = text(0x10, 1);
    let wire = send_all(&mut w, std::slice::from_ref(&m));
    assert_eq!(frames(&wire), vec![1; 7]);
    assert_eq!(w.nonce(), nonce_plus(7));
    let mut at = 0;
    for k in 1..=7 {
        r.feed(&wire[at..at + CHUNK_OVERHEAD + 1]);
        at += CHUNK_OVERHEAD + 1;
        drain(&mut r, &mut got).unwrap();
        assert_eq!(r.nonce(), nonce_plus(k));
    }
    assert_eq!(got, sized(&[m]));
}

#[test]
fn a_failed_open_moves_the_nonce_and_ends_the_stream() {
    let msgs = sample();
    let wire = send_all(&mut writer(60), &msgs);
    let lens = frames(&wire);
    // Flip a bit of the third chunk's ciphertext.
    let third = lens[..2].iter().map(|n| CHUNK_OVERHEAD + n).sum::<usize>();
    let mut bad = wire.clone();
    bad[third + CHUNK_OVERHEAD] ^= 0x01;
    let mut r = reader();
    let mut got = Vec::new();
    r.feed(&bad);
    assert_eq!(drain(&mut r, &mut got), Err(ReadError::Decipher));
    assert_eq!(r.nonce(), nonce_plus(3));
    assert!(r.is_failed());
    // The messages whole in the first two chunks came out first.
    let mut once = reader();
    let mut before = Vec::new();
    once.feed(&wire[..third]);
    drain(&mut once, &mut before).unwrap();
    assert_eq!(got, before);
    // Sticky, and nothing more is kept or opened.
    r.feed(&wire);
    assert_eq!(r.unopened(), 0);
    assert_eq!(r.next_size(), Err(ReadError::Decipher));
    assert_eq!(r.next_message(), Err(ReadError::Decipher));
    assert_eq!(r.next_announced_size(), Err(ReadError::Decipher));
    assert_eq!(r.nonce(), nonce_plus(3));
    assert!(r.recv_buf(10).is_empty());
}

#[test]
fn every_flipped_bit_of_a_chunk_is_its_error() {
    let m = text(0x10, 20);
    let wire = send_all(&mut writer(MAX_CHUNK_SIZE), std::slice::from_ref(&m));
    for bit in 0..wire.len() * 8 {
        let mut bad = wire.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let mut r = reader();
        let mut got = Vec::new();
        r.feed(&bad);
        let res = drain(&mut r, &mut got);
        assert!(got.is_empty(), "bit {bit}");
        if bit / 8 >= HEADER_LEN {
            assert_eq!(res, Err(ReadError::Decipher), "bit {bit}");
        } else {
            let len = usize::from(u16::from_be_bytes([bad[0], bad[1]]));
            match res {
                // A longer frame waits for its bytes.
                Ok(()) => assert!(HEADER_LEN + len > bad.len(), "bit {bit}"),
                Err(ReadError::InvalidIncomingCiphertextSize(n)) => {
                    assert_eq!(n, len);
                    assert!(n < TAG_LEN);
                }
                Err(e) => assert_eq!(e, ReadError::Decipher, "bit {bit}"),
            }
        }
    }
}

#[test]
fn a_short_length_field_is_invalid_ciphertext_size_without_opening() {
    let mut r = reader();
    r.feed(&[0x00, 0x0f]);
    assert_eq!(
        r.next_size(),
        Err(ReadError::InvalidIncomingCiphertextSize(15))
    );
    assert_eq!(r.nonce(), first_nonce());
}

#[test]
fn a_bad_message_is_a_decoding_error_and_sticky() {
    let mut w = writer(MAX_CHUNK_SIZE);
    let mut plain = encode(&P2pMessage::Bootstrap);
    // A size field over the limit.
    plain.extend_from_slice(&u32::MAX.to_be_bytes());
    w.push(&plain, usize::MAX);
    w.flush();
    let wire = w.output().to_vec();
    let mut r = reader();
    r.feed(&wire);
    assert_eq!(r.next_message(), Ok(Some((6, P2pMessage::Bootstrap))));
    let err = r.next_size().unwrap_err();
    assert!(matches!(err, ReadError::Decoding(_)), "{err:?}");
    assert!(r.is_failed());
    assert_eq!(r.next_message(), Err(err));
    r.feed(&wire);
    assert_eq!(r.unopened(), 0);
}

#[test]
fn a_whole_message_is_told_before_a_bad_frame_behind_it() {
    let mut wire = send_all(&mut writer(MAX_CHUNK_SIZE), &[P2pMessage::Bootstrap]);
    wire.extend_from_slice(&[0, 3, 1, 2, 3]);
    let mut r = reader();
    r.feed(&wire);
    assert_eq!(r.next_size(), Ok(Some(6)));
    assert_eq!(r.next_message(), Ok(Some((6, P2pMessage::Bootstrap))));
    assert_eq!(
        r.next_message(),
        Err(ReadError::InvalidIncomingCiphertextSize(3))
    );
}

#[test]
fn chunks_are_opened_only_as_messages_are_taken() {
    // Ten messages of one chunk each, all received at once: the decoder
    // holds one at a time.
    let mut w = writer(MAX_CHUNK_SIZE);
    let mut wire = Vec::new();
    for i in 0..10 {
        let bytes = encode(&text(0x10, 1000 + i));
        w.push(&bytes, usize::MAX);
        w.flush();
        wire.extend_from_slice(w.output());
        let n = w.output().len();
        w.advance(n);
    }
    let mut r = reader();
    r.feed(&wire);
    for k in 1..=10 {
        let size = r.next_size().unwrap().unwrap();
        assert_eq!(r.nonce(), nonce_plus(k));
        assert_eq!(r.buffered(), size);
        assert!(r.next_message().unwrap().is_some());
    }
    assert_eq!(r.next_size(), Ok(None));
    assert!(r.is_idle());
}

#[test]
fn remaining_and_announced_sizes_of_a_large_message() {
    let m = text(0x10, 200_000);
    let bytes = encode(&m);
    let wire = send_all(&mut writer(MAX_CHUNK_SIZE), std::slice::from_ref(&m));
    let mut r = reader();
    assert_eq!(r.chunk_remaining(), 0);
    r.feed(&wire[..1]);
    assert_eq!(r.chunk_remaining(), 0);
    r.feed(&wire[1..10]);
    assert_eq!(r.chunk_remaining(), MAX_CHUNK_SIZE - 10);
    assert_eq!(r.next_size(), Ok(None));
    assert_eq!(r.next_announced_size(), Ok(None));
    r.feed(&wire[10..MAX_CHUNK_SIZE + 3]);
    assert_eq!(r.next_size(), Ok(None));
    assert_eq!(r.next_announced_size(), Ok(Some(bytes.len())));
    assert_eq!(r.chunk_remaining(), MAX_CHUNK_SIZE - 3);
    r.reserve_next(MAX_CHUNK_PLAINTEXT);
    // Room for the body (the decoder keeps no size field and tag for a
    // body it sets apart) and a chunk after it: no reallocation follows.
    let cap = r.decoder_capacity();
    assert!(cap >= bytes.len() - 6 + MAX_CHUNK_PLAINTEXT, "{cap}");
    r.feed(&wire[MAX_CHUNK_SIZE + 3..]);
    assert_eq!(r.next_size(), Ok(Some(bytes.len())));
    assert_eq!(r.decoder_capacity(), cap);
    assert_eq!(r.next_message(), Ok(Some((bytes.len(), m))));
    r.shrink(0);
    assert_eq!(r.decoder_capacity(), 0);
    r.release_recv_buf();
    assert_eq!(r.recv_capacity(), 0);
    assert!(r.is_idle());
}

#[test]
fn the_receive_buffer_is_kept_while_a_chunk_is_under_way() {
    let wire = send_all(&mut writer(MAX_CHUNK_SIZE), &[text(0x10, 100)]);
    let mut r = reader();
    r.recv_buf(64).extend_from_slice(&wire[..50]);
    assert_eq!(r.next_size(), Ok(None));
    r.release_recv_buf();
    assert_eq!(r.unopened(), 50);
    r.feed(&wire[50..]);
    assert!(r.next_message().unwrap().is_some());
    // Back to its cipher and resumed, with the nonce where it was.
    let nonce = r.nonce();
    let r = ChunkReader::<RawMessage>::new(r.into_cipher(), MAX_MESSAGE_SIZE);
    assert_eq!(r.nonce(), nonce);
}

// --- Packing policy -------------------------------------------------------

#[test]
fn full_chunks_then_one_shorter_never_empty() {
    // What `chunk_pieces` used to cut: a message alone is full pieces then
    // one shorter one.
    let data = vec![7u8; 2 * 65517 + 1];
    let mut w = writer(MAX_CHUNK_SIZE);
    assert_eq!(w.push(&data, usize::MAX), data.len());
    w.flush();
    assert_eq!(frames(w.output()), [65517, 65517, 1]);
    let mut w = writer(MAX_CHUNK_SIZE);
    w.push(&data[..2 * 65517], usize::MAX);
    w.flush();
    assert_eq!(frames(w.output()), [65517, 65517]);
    let mut w = writer(MAX_CHUNK_SIZE);
    w.push(&data[..6], usize::MAX);
    w.flush();
    assert_eq!(frames(w.output()), [6]);
    let mut w = writer(MAX_CHUNK_SIZE);
    assert_eq!(w.push(&[], usize::MAX), 0);
    w.flush();
    assert!(w.output().is_empty() && w.is_idle());
    let mut w = writer(19);
    w.push(&data[..3], usize::MAX);
    w.flush();
    assert_eq!(frames(w.output()), [1, 1, 1]);
}

#[test]
fn small_messages_pushed_together_share_a_chunk() {
    let msgs: Vec<_> = (0..10).map(|i| text(0x10, i)).collect();
    let total: usize = msgs.iter().map(|m| encode(m).len()).sum();
    let wire = send_all(&mut writer(MAX_CHUNK_SIZE), &msgs);
    assert_eq!(frames(&wire), [total]);
    // With small chunks, every chunk but the last is full.
    let wire = send_all(&mut writer(50), &msgs);
    let lens = frames(&wire);
    assert!(lens[..lens.len() - 1].iter().all(|&n| n == 32));
    assert_eq!(lens.iter().sum::<usize>(), total);
}

#[test]
fn a_large_message_goes_out_in_full_chunks_and_its_end_is_shared() {
    let mut w = writer(100); // 82 bytes of plaintext per chunk
    let small = encode(&text(0x10, 10)); // 16 bytes
    let large = encode(&text(0x10, 200)); // 206 bytes
    w.push(&small, usize::MAX);
    // The shared chunk under way is not output.
    assert!(w.output().is_empty());
    assert!(!w.is_idle());
    w.push(&large, usize::MAX);
    w.push(&small, usize::MAX);
    w.flush();
    // 16 + 66 | 82 | 58 + 16
    assert_eq!(frames(w.output()), [82, 82, 74]);
    let mut w = writer(100);
    w.push(&large, usize::MAX);
    // Full chunks straight from the message, its end waits.
    assert_eq!(frames(w.output()), [82, 82]);
    w.flush();
    assert_eq!(frames(w.output()), [82, 82, 42]);
}

#[test]
fn push_stops_at_the_batch_and_resumes() {
    let large = encode(&text(0x10, 300_000));
    let mut w = writer(MAX_CHUNK_SIZE);
    let mut wire = Vec::new();
    let mut at = 0;
    let mut rounds = 0;
    while at < large.len() {
        let n = w.push(&large[at..], 64 << 10);
        at += n;
        if at == large.len() {
            w.flush();
        }
        let out = w.output();
        assert!(out.len() < (64 << 10) + MAX_CHUNK_SIZE);
        wire.extend_from_slice(out);
        // Written in two parts.
        let half = out.len() / 2;
        w.advance(half);
        let rest = w.output().len();
        w.advance(rest);
        assert!(w.is_idle());
        rounds += 1;
    }
    assert_eq!(rounds, 3);
    let mut r = reader();
    r.feed(&wire);
    assert_eq!(r.next_message().unwrap().map(|(n, _)| n), Some(large.len()));
}

#[test]
fn a_full_output_takes_nothing() {
    let mut w = writer(MAX_CHUNK_SIZE);
    let data = vec![1u8; 100];
    assert_eq!(w.push(&data, 50), 100);
    w.flush();
    assert_eq!(w.push(&data, 50), 0);
    assert_eq!(w.push(&data, usize::MAX), 100);
}

#[test]
fn chunk_size_bounds() {
    assert_eq!(ChunkSize::new(19).map(ChunkSize::plaintext), Ok(1));
    assert_eq!(ChunkSize::new(65535), Ok(ChunkSize::MAX));
    assert_eq!(ChunkSize::MAX.plaintext(), MAX_CHUNK_PLAINTEXT);
    assert_eq!(ChunkSize::default().get(), 65535);
    assert_eq!(
        ChunkSize::new(18),
        Err(InvalidChunksSize {
            value: 18,
            min: 19,
            max: 65535
        })
    );
    assert_eq!(ChunkSize::new(65536).unwrap_err().value, 65536);
    assert_eq!(ChunkSize::from_option(None), Ok(ChunkSize::MAX));
    assert_eq!(ChunkSize::from_option(Some(100)).unwrap().get(), 100);
    assert!(ChunkSize::from_option(Some(0)).is_err());
    assert_eq!(check_binary_chunks_size(100), Ok(82));
}

#[test]
fn split_gives_matching_directions() {
    let a = SessionCipher {
        key: KEY,
        nonces: crate::crypto::Nonces {
            local: nonce_plus(5),
            remote: nonce_plus(9),
        },
    };
    let b = SessionCipher {
        key: KEY,
        nonces: crate::crypto::Nonces {
            local: a.nonces.remote,
            remote: a.nonces.local,
        },
    };
    let (mut a_tx, mut a_rx) = a.split::<RawMessage>(ChunkSize::new(30).unwrap(), 1000);
    let (mut b_tx, mut b_rx) = b.split::<RawMessage>(ChunkSize::MAX, 1000);
    assert_eq!(a_tx.chunk_size().get(), 30);
    assert_eq!(a_rx.max_message_size(), 1000);
    let msgs = sample();
    b_rx.feed(&send_all(&mut a_tx, &msgs));
    a_rx.feed(&send_all(&mut b_tx, &msgs));
    for r in [&mut a_rx, &mut b_rx] {
        let mut got = Vec::new();
        drain(r, &mut got).unwrap();
        assert_eq!(got, sized(&msgs));
    }
}

#[test]
fn a_bad_chunk_inside_a_large_body_is_a_decipher_error() {
    let m = text(0x10, 300_000);
    let wire = send_all(&mut writer(MAX_CHUNK_SIZE), &[text(0x11, 5), m]);
    // The third chunk is all body: it is opened straight into it.
    let at = 2 * MAX_CHUNK_SIZE + 100;
    let mut bad = wire.clone();
    bad[at] ^= 0x20;
    let mut r = reader();
    let mut got = Vec::new();
    let mut res = Ok(());
    for piece in bad.chunks(10_000) {
        r.feed(piece);
        if matches!(r.next_announced_size(), Ok(Some(_))) {
            r.reserve_next(MAX_CHUNK_PLAINTEXT);
        }
        res = drain(&mut r, &mut got);
        if res.is_err() {
            break;
        }
    }
    assert_eq!(res, Err(ReadError::Decipher));
    assert_eq!(got, sized(&[text(0x11, 5)]));
    assert_eq!(r.nonce(), nonce_plus(3));
    assert_eq!(
        (r.buffered(), r.decoder_capacity()),
        (0, 0),
        "nothing is kept"
    );
    assert_eq!(r.next_message(), Err(ReadError::Decipher));
}

#[test]
fn read_ahead_ends_on_chunk_boundaries_of_the_message() {
    let m = text(0x10, 1 << 20);
    let wire = send_all(&mut writer(MAX_CHUNK_SIZE), std::slice::from_ref(&m));
    let mut r = reader();
    assert_eq!(r.read_ahead(1 << 20), 0, "no header yet");
    r.feed(&wire[..100]);
    // The size field is not opened yet: the rest of the chunk.
    assert_eq!(r.read_ahead(1 << 20), MAX_CHUNK_SIZE - 100);
    r.feed(&wire[100..MAX_CHUNK_SIZE + 10]);
    assert_eq!(r.next_size(), Ok(None));
    // The message needs 15 more chunks after the one under way.
    let rest = MAX_CHUNK_SIZE - 10;
    assert_eq!(r.read_ahead(0), rest);
    assert_eq!(
        r.read_ahead(rest + 3 * MAX_CHUNK_SIZE),
        rest + 3 * MAX_CHUNK_SIZE
    );
    assert_eq!(
        r.read_ahead(rest + 3 * MAX_CHUNK_SIZE + 1),
        rest + 3 * MAX_CHUNK_SIZE
    );
    let all = wire.len() - MAX_CHUNK_SIZE - 10;
    assert!(r.read_ahead(usize::MAX) >= all);
    assert!(r.read_ahead(usize::MAX) < all + MAX_CHUNK_SIZE);
    r.feed(&wire[MAX_CHUNK_SIZE + 10..]);
    assert_eq!(r.next_message(), Ok(Some((encode(&m).len(), m))));
}

#[test]
fn open_chunk_into_gives_what_open_chunk_gives() {
    let mut w = writer(MAX_CHUNK_SIZE);
    let pt: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    assert_eq!(w.push(&pt, usize::MAX), pt.len());
    w.flush();
    let wire = w.output().to_vec();
    let body = &wire[HEADER_LEN..];
    let mut a = ChunkCipher::new(KEY, first_nonce());
    let mut out = vec![1, 2];
    a.open_chunk_into(body, &mut out).unwrap();
    assert_eq!(&out[..2], &[1, 2]);
    assert_eq!(&out[2..], &pt[..]);
    assert_eq!(a.nonce(), nonce_plus(1));
    let mut b = ChunkCipher::new(KEY, first_nonce());
    let mut copy = body.to_vec();
    assert_eq!(b.open_chunk(&mut copy).unwrap(), &pt[..]);
    // A bad tag: nothing written, the nonce moves on; a short body.
    let mut bad = body.to_vec();
    bad[0] ^= 1;
    let mut c = ChunkCipher::new(KEY, first_nonce());
    let mut out = vec![7];
    assert_eq!(
        c.open_chunk_into(&bad, &mut out),
        Err(CryptoError::Decipher)
    );
    assert_eq!((out, c.nonce()), (vec![7], nonce_plus(1)));
    assert_eq!(
        c.open_chunk_into(&body[..TAG_LEN - 1], &mut Vec::new()),
        Err(CryptoError::InvalidIncomingCiphertextSize(TAG_LEN - 1))
    );
}

// --- Properties -----------------------------------------------------------

fn message() -> impl Strategy<Value = P2pMessage<RawMessage>> {
    prop_oneof![
        Just(P2pMessage::Bootstrap),
        Just(P2pMessage::Disconnect),
        (0x10u16..0x20, prop_oneof![0usize..100, 100usize..3000])
            .prop_map(|(tag, len)| text(tag, len)),
    ]
}

proptest! {
    /// Whatever the messages, the chunk size, how pushes are grouped and
    /// batched and how the wire is cut, the reader gets the messages, and
    /// both nonces moved by the number of chunks.
    #[test]
    fn writer_to_reader_round_trips(
        msgs in proptest::collection::vec((message(), any::<bool>()), 1..20),
        size in prop_oneof![19usize..64, 64usize..5000, Just(MAX_CHUNK_SIZE)],
        batch in prop_oneof![Just(usize::MAX), 1usize..10_000],
        cuts in proptest::collection::vec(1usize..3000, 1..20),
        direct in any::<bool>(),
    ) {
        let mut w = writer(size);
        let mut wire = Vec::new();
        for (m, flush) in &msgs {
            let bytes = encode(m);
            let mut at = 0;
            while at < bytes.len() {
                at += w.push(&bytes[at..], batch);
                if at < bytes.len() {
                    // The batch is full: write it.
                    prop_assert!(w.output().len() >= batch);
                    wire.extend_from_slice(w.output());
                    let n = w.output().len();
                    w.advance(n);
                }
            }
            if *flush {
                w.flush();
            }
        }
        w.flush();
        wire.extend_from_slice(w.output());
        let n = w.output().len();
        w.advance(n);
        prop_assert!(w.is_idle());
        let lens = frames(&wire);
        prop_assert!(lens.iter().all(|&n| 0 < n && n + CHUNK_OVERHEAD <= size));
        prop_assert_eq!(w.nonce(), nonce_plus(lens.len()));

        let mut r = reader();
        let mut got = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < wire.len() {
            let end = (at + cuts[i % cuts.len()]).min(wire.len());
            i += 1;
            if direct {
                r.recv_buf(end - at).extend_from_slice(&wire[at..end]);
            } else {
                r.feed(&wire[at..end]);
            }
            at = end;
            drain(&mut r, &mut got).unwrap();
            prop_assert!(r.buffered() <= r.max_message_size() + size);
        }
        let want: Vec<_> = msgs.iter().map(|(m, _)| m.clone()).collect();
        prop_assert_eq!(got, sized(&want));
        prop_assert!(r.is_idle());
        prop_assert_eq!(r.nonce(), nonce_plus(lens.len()));
    }

    /// Large messages (their bodies opened straight into their own
    /// buffers, with or without room made first, as the driver does) mixed
    /// with small ones arrive whole and in order, whatever the cuts; read
    /// ahead never asks for less than the rest of a chunk.
    #[test]
    fn large_messages_round_trip(
        msgs in proptest::collection::vec(
            prop_oneof![
                Just(P2pMessage::Bootstrap),
                (0x10u16..0x14, 0usize..2000).prop_map(|(t, l)| text(t, l)),
                (0x10u16..0x14, 65_000usize..300_000).prop_map(|(t, l)| text(t, l)),
            ],
            1..6),
        size in prop_oneof![1000usize..5000, Just(MAX_CHUNK_SIZE)],
        cuts in proptest::collection::vec(1usize..200_000, 1..10),
        reserve in any::<bool>(),
    ) {
        let wire = send_all(&mut writer(size), &msgs);
        let mut r = reader();
        let mut got = Vec::new();
        let (mut at, mut i) = (0, 0);
        while at < wire.len() {
            let ahead = r.read_ahead(256 << 10);
            prop_assert!(ahead >= r.chunk_remaining());
            prop_assert!(ahead <= r.chunk_remaining().max(256 << 10));
            let end = (at + cuts[i % cuts.len()]).min(wire.len());
            i += 1;
            r.recv_buf(end - at).extend_from_slice(&wire[at..end]);
            at = end;
            drain(&mut r, &mut got).unwrap();
            if let Ok(Some(t)) = r.next_announced_size() {
                if reserve && t > MAX_CHUNK_PLAINTEXT {
                    r.reserve_next(MAX_CHUNK_PLAINTEXT);
                }
            }
        }
        prop_assert_eq!(got, sized(&msgs));
        prop_assert!(r.is_idle());
        prop_assert_eq!(r.nonce(), nonce_plus(frames(&wire).len()));
    }

    /// Garbage never panics, keeps less than a chunk unopened once drained
    /// and a bounded decoder, and an error is for good.
    #[test]
    fn garbage_never_panics_and_stays_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        cut in 1usize..200,
        limit in 6usize..5000,
    ) {
        let mut r = ChunkReader::<RawMessage>::new(ChunkCipher::new(KEY, first_nonce()), limit);
        let mut failed = None;
        for c in bytes.chunks(cut) {
            r.feed(c);
            loop {
                match r.next_message() {
                    Ok(Some(_)) => continue,
                    Ok(None) => {
                        prop_assert!(r.unopened() <= MAX_CHUNK_SIZE + 1);
                        break;
                    }
                    Err(e) => {
                        if let Some(f) = &failed {
                            prop_assert_eq!(f, &e);
                        }
                        failed = Some(e);
                        prop_assert_eq!(r.unopened(), 0);
                        break;
                    }
                }
            }
            prop_assert!(r.buffered() <= limit + MAX_CHUNK_PLAINTEXT);
        }
    }
}
