//! `octez-p2p-node`'s messages (`src/lib_shell/p2p_node.ml`): Text (0x10,
//! `obj1 (req "content" string)`) and Bytes (0x11, `obj1 (req "content"
//! bytes)`), both a `u32` length then the content. No other tag exists on
//! that network: Octez refuses any other one as a decoding error.

use tezos_p2p_wire::encoding::{DecodeError, EncodeError};
use tezos_p2p_wire::message::AppMessage;

/// Tag of a Text message.
pub const TAG_TEXT: u16 = 0x10;
/// Tag of a Bytes message.
pub const TAG_BYTES: u16 = 0x11;
/// Largest content accepted (8 MiB; Octez bounds only the whole message,
/// at 100 MiB: see the README's differences from Octez).
pub const MAX_CONTENT: usize = 8 << 20;

/// A message of `octez-p2p-node`'s network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum P2pNodeMessage {
    /// Tag 0x10: a text. Octez's `string` is any bytes; content that is not
    /// UTF-8 is read with U+FFFD replacements rather than refused, so that
    /// an honest peer is never greylisted for it.
    Text(String),
    /// Tag 0x11: bytes.
    Bytes(Vec<u8>),
}

impl P2pNodeMessage {
    /// The content as sent.
    pub fn content(&self) -> &[u8] {
        match self {
            P2pNodeMessage::Text(t) => t.as_bytes(),
            P2pNodeMessage::Bytes(b) => b,
        }
    }

    /// Octez's case title.
    pub fn name(&self) -> &'static str {
        match self {
            P2pNodeMessage::Text(_) => "Text",
            P2pNodeMessage::Bytes(_) => "Bytes",
        }
    }
}

impl AppMessage for P2pNodeMessage {
    fn tag(&self) -> u16 {
        match self {
            P2pNodeMessage::Text(_) => TAG_TEXT,
            P2pNodeMessage::Bytes(_) => TAG_BYTES,
        }
    }

    fn size_hint(&self) -> usize {
        4 + self.content().len()
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let content = self.content();
        if content.len() > MAX_CONTENT {
            return Err(EncodeError::SizeLimitExceeded {
                size: content.len(),
                limit: MAX_CONTENT,
            });
        }
        out.extend_from_slice(&(content.len() as u32).to_be_bytes());
        out.extend_from_slice(content);
        Ok(())
    }

    fn decode(tag: u16, body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = tezos_p2p_wire::encoding::Reader::new(body);
        let content = match tag {
            TAG_TEXT | TAG_BYTES => r.bounded_bytes(4 + MAX_CONTENT)?,
            t => return Err(DecodeError::UnexpectedTag(t)),
        };
        r.finish()?;
        Ok(if tag == TAG_TEXT {
            P2pNodeMessage::Text(String::from_utf8_lossy(content).into_owned())
        } else {
            P2pNodeMessage::Bytes(content.to_vec())
        })
    }

    fn max_size(tag: u16) -> Option<usize> {
        matches!(tag, TAG_TEXT | TAG_BYTES).then_some(2 + 4 + MAX_CONTENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(m: &P2pNodeMessage) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode_body(&mut out).unwrap();
        out
    }

    #[test]
    fn text_and_bytes_are_u32_prefixed() {
        let m = P2pNodeMessage::Text("hi".into());
        assert_eq!(body(&m), [0, 0, 0, 2, b'h', b'i']);
        assert_eq!(P2pNodeMessage::decode(0x10, &body(&m)).unwrap(), m);
        let b = P2pNodeMessage::decode(0x11, &[0, 0, 0, 1, 7]).unwrap();
        assert_eq!(b, P2pNodeMessage::Bytes(vec![7]));
        assert_eq!(
            P2pNodeMessage::decode(0x10, &[0, 0, 0, 3, b'a']),
            Err(DecodeError::NotEnoughData)
        );
        assert_eq!(
            P2pNodeMessage::decode(0x10, &[0, 0, 0, 0, b'a']),
            Err(DecodeError::ExtraBytes(1))
        );
    }

    #[test]
    fn text_that_is_not_utf8_is_read_not_refused() {
        let m = P2pNodeMessage::decode(0x10, &[0, 0, 0, 2, b'a', 0xff]).unwrap();
        assert_eq!(m, P2pNodeMessage::Text("a\u{fffd}".into()));
    }

    #[test]
    fn other_tags_are_refused_as_soon_as_they_are_read() {
        assert_eq!(
            P2pNodeMessage::decode(0x12, b""),
            Err(DecodeError::UnexpectedTag(0x12))
        );
        assert_eq!(P2pNodeMessage::max_size(0x20), None);
        assert_eq!(P2pNodeMessage::max_size(0x10), Some(6 + MAX_CONTENT));
    }
}
