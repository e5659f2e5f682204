//! P2P messages: `P2pMessage::<RawMessage>::from_bytes` (one whole message)
//! and the streaming `MessageDecoder` (with `next_size` checked against
//! `next`), fed the same bytes in one piece and
//! in pieces cut at data-dependent positions, with and without room made
//! for each message once announced (`reserve_next`, which sets a large
//! body apart for `AppMessage::decode_owned`): all must give the same
//! messages and end the same way. Decoded messages round-trip through
//! `encode_message` (points are normalised, so decode → encode → decode).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tezos_p2p_wire::encoding::{Decode, DecodeError, Encode};
use tezos_p2p_wire::message::{
    encode_message, MessageDecoder, NoAppMessage, P2pMessage, RawMessage, MAX_MESSAGE_SIZE,
};

type Msg = P2pMessage<RawMessage>;

fn round_trip(m: &Msg) {
    let bytes = m.to_bytes().expect("a decoded message re-encodes");
    let again = Msg::from_bytes(&bytes).expect("the re-encoded message decodes");
    assert_eq!(&again, m);
    let mut out = vec![0xAA];
    encode_message(m, &mut out).unwrap();
    assert_eq!(&out[1..], &bytes[..]);
}

/// Drains `d`: the messages (with their wire sizes) and the error, if any.
/// Before each message, `next_size` announces it: its size, `None` when
/// more bytes are needed, or the size field's error.
fn drain(d: &mut MessageDecoder<RawMessage>, got: &mut Vec<(usize, Msg)>) -> Option<DecodeError> {
    loop {
        let size = d.next_size();
        match d.next() {
            Ok(Some(m)) => {
                assert_eq!(size, Ok(Some(m.0)));
                got.push(m)
            }
            Ok(None) => {
                assert_eq!(size, Ok(None));
                return None;
            }
            Err(e) => {
                // A bad size field fails both; a bad body only `next`.
                assert!(size == Err(e.clone()) || matches!(size, Ok(Some(_))));
                return Some(e);
            }
        }
    }
}

fn run_decoder(data: &[u8], limit: usize) {
    // Reference: everything at once.
    let mut whole = MessageDecoder::<RawMessage>::with_max_message_size(limit);
    whole.feed(data);
    let mut expected = Vec::new();
    let expected_err = drain(&mut whole, &mut expected);

    for reserve in [false, true] {
        run_split(data, limit, reserve, &expected, &expected_err, &whole);
    }
}

/// The bytes in pieces of 1..=23 bytes chosen by the data; with `reserve`,
/// room made for each message once announced.
fn run_split(
    data: &[u8],
    limit: usize,
    reserve: bool,
    expected: &[(usize, Msg)],
    expected_err: &Option<DecodeError>,
    whole: &MessageDecoder<RawMessage>,
) {
    let mut split = MessageDecoder::<RawMessage>::with_max_message_size(limit);
    let mut got = Vec::new();
    let mut err = None;
    let mut pos = 0;
    while pos < data.len() {
        let len = 1 + (usize::from(data[pos]) * 7 + pos) % 23;
        let end = (pos + len).min(data.len());
        split.feed(&data[pos..end]);
        pos = end;
        if err.is_none() {
            if reserve && matches!(split.next_announced_size(), Ok(Some(_))) {
                split.reserve_next(len);
            }
            err = drain(&mut split, &mut got);
        }
    }
    if data.is_empty() {
        err = drain(&mut split, &mut got);
    }
    assert_eq!(got, expected);
    assert_eq!(&err, expected_err);
    assert_eq!(split.is_failed(), err.is_some());
    assert_eq!(whole.is_failed(), expected_err.is_some());
    if let Some(e) = &err {
        // Errors are sticky.
        assert_eq!(split.next().as_ref().err(), Some(e));
        assert_eq!(split.buffered(), 0);
    } else {
        let used: usize = got.iter().map(|(n, _)| n).sum();
        assert_eq!(used + split.buffered(), data.len());
        assert_eq!(split.buffered(), whole.buffered());
    }
    for (n, m) in &got {
        assert!(*n <= split.max_message_size());
        round_trip(m);
    }
}

fuzz_target!(|data: &[u8]| {
    let one = Msg::from_bytes(data);
    if let Ok(m) = &one {
        round_trip(m);
        // The decoder reads the same single message.
        let mut d = MessageDecoder::<RawMessage>::new();
        d.feed(data);
        assert_eq!(d.next().unwrap(), Some((data.len(), m.clone())));
        assert_eq!(d.next().unwrap(), None);
    }
    // Without application messages, exactly the P2P-layer ones decode.
    let bare = P2pMessage::<NoAppMessage>::from_bytes(data);
    assert_eq!(
        bare.is_ok(),
        matches!(one, Ok(ref m) if !matches!(m, P2pMessage::Message(_)))
    );

    run_decoder(data, MAX_MESSAGE_SIZE);
    run_decoder(data, 64);
});
