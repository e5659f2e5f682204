//! Shell messages (`tezos-p2p-shell`): the input is `tag ‖ body` (as the
//! vectors give messages). A message that decodes re-encodes to bytes that
//! decode to it again, the same bytes except a protocol's interface
//! presence byte (always written `ff`), and owns heap in proportion to the
//! input. The same message framed with its size goes through
//! `MessageDecoder`, fed in data-dependent pieces: same message, or an
//! error of the same class (or, for a size over the tag's bound, the tag's
//! `oversize_error`: `Extra_bytes` for a fixed-size request,
//! `Size_limit_exceeded` otherwise). `ShellMessage::check_prefix` on the
//! framed message agrees with the decoder, and on each of its prefixes
//! either waits or already reports that error; it also runs on the raw input as a framed
//! prefix (seeds from `framed_prefix_hex`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tezos_p2p_shell::ShellMessage;
use tezos_p2p_wire::encoding::DecodeError;
use tezos_p2p_wire::message::{AppMessage, MessageDecoder, P2pMessage, MAX_MESSAGE_SIZE_FIELD};

/// The first message (or error) of `framed`, fed in pieces of 1..=19
/// bytes chosen by the data.
fn through_decoder(framed: &[u8]) -> Result<Option<ShellMessage>, DecodeError> {
    let mut d = MessageDecoder::<ShellMessage>::new();
    let mut pos = 0;
    while pos < framed.len() {
        let len = 1 + (usize::from(framed[pos]) * 5 + pos) % 19;
        let end = (pos + len).min(framed.len());
        d.feed(&framed[pos..end]);
        pos = end;
        match d.next()? {
            Some((n, P2pMessage::Message(m))) => {
                assert_eq!(n, framed.len());
                return Ok(Some(m));
            }
            Some((_, other)) => panic!("a shell-tagged message decoded as {other:?}"),
            None => {}
        }
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    // The input as the first bytes of a wire message: never panics.
    let _ = ShellMessage::check_prefix(data);

    let Some((tag, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let tag = u16::from_be_bytes(*tag);
    let decoded = <ShellMessage as AppMessage>::decode(tag, body);
    if let Ok(m) = &decoded {
        assert_eq!(m.tag(), tag);
        let again = m.to_bytes().expect("a decoded message re-encodes");
        assert_eq!(again.len(), 2 + m.body_len());
        assert_eq!(ShellMessage::from_bytes(&again).as_ref(), Ok(m));
        if !matches!(m, ShellMessage::Protocol(_)) {
            assert_eq!(&again[..], data);
        }
        let json = m.to_json();
        assert_eq!(ShellMessage::from_octez_json(&json).as_ref(), Ok(m));
        assert_eq!(ShellMessage::from_json(m.name(), &json).as_ref(), Ok(m));
    }
    if (1..=5).contains(&tag) || data.len() > MAX_MESSAGE_SIZE_FIELD {
        return;
    }

    let mut framed = (data.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(data);
    let whole = ShellMessage::check_prefix(&framed);
    assert_eq!(whole, decoded.as_ref().map(|_| ()).map_err(Clone::clone));
    for n in [4, 5, 6, 7, 8, 10, 20, 38, 40, 45, 50, 80, 83, 100, 120, 150] {
        if let Some(p) = framed.get(..n) {
            if let Err(e) = ShellMessage::check_prefix(p) {
                assert_eq!(Err(e), whole, "prefix of {n}");
            }
        }
    }
    if let Some(p) = framed.get(..framed.len() - 1) {
        if let Err(e) = ShellMessage::check_prefix(p) {
            assert_eq!(Err(e), whole);
        }
    }

    match (through_decoder(&framed), &decoded) {
        (Ok(Some(m)), Ok(d)) => assert_eq!(&m, d),
        (Err(e), Err(d)) => match ShellMessage::max_size(tag) {
            // Over the tag's bound: refused on the size and the tag, with
            // the tag's oversize error (`Extra_bytes` for the fixed-size
            // requests, as Octez's stream reader reports, else
            // `Size_limit_exceeded`).
            Some(max) if data.len() > max => {
                assert_eq!(e, ShellMessage::oversize_error(tag, data.len(), max));
            }
            _ => assert_eq!(e.octez_class(), d.octez_class()),
        },
        (got, want) => panic!("MessageDecoder gave {got:?}, decode {want:?}"),
    }
});
