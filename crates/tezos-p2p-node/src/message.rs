//! The node's application messages: Text (0x10) and Bytes (0x11) as in
//! `octez-p2p-node`, and any other tag from 0x10 up kept opaque, so that the
//! node can sit on a real Tezos network without greylisting honest peers.

use tezos_p2p_wire::encoding::{DecodeError, EncodeError};
use tezos_p2p_wire::message::{AppMessage, MIN_APP_TAG};

/// Tag of a Text message (u32-length-prefixed UTF-8).
pub const TAG_TEXT: u16 = 0x10;
/// Tag of a Bytes message (u32-length-prefixed bytes).
pub const TAG_BYTES: u16 = 0x11;
/// Largest body accepted for any application message (8 MiB).
pub const MAX_BODY: usize = 8 << 20;

/// An application message of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMessage {
    /// Tag 0x10: a UTF-8 text.
    Text(String),
    /// Tag 0x11: bytes.
    Bytes(Vec<u8>),
    /// Any other tag from 0x12 up, body kept as is.
    Other {
        /// The tag.
        tag: u16,
        /// The body after the tag.
        body: Vec<u8>,
    },
}

impl NodeMessage {
    /// The body after the tag, as sent on the wire.
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding an in-memory message cannot fail but for size.
        let _ = self.encode_body(&mut out);
        out
    }

    /// The text of a Text message.
    pub fn text(&self) -> Option<&str> {
        match self {
            NodeMessage::Text(t) => Some(t),
            _ => None,
        }
    }
}

fn put_prefixed(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), EncodeError> {
    if bytes.len() > MAX_BODY {
        return Err(EncodeError::SizeLimitExceeded {
            size: bytes.len(),
            limit: MAX_BODY,
        });
    }
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn get_prefixed(body: &[u8]) -> Result<&[u8], DecodeError> {
    let Some((len, rest)) = body.split_first_chunk::<4>() else {
        return Err(DecodeError::NotEnoughData);
    };
    let len = u32::from_be_bytes(*len) as usize;
    if len > MAX_BODY {
        return Err(DecodeError::SizeLimitExceeded {
            size: len,
            limit: MAX_BODY,
        });
    }
    match rest.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(DecodeError::NotEnoughData),
        std::cmp::Ordering::Greater => Err(DecodeError::ExtraBytes(rest.len() - len)),
        std::cmp::Ordering::Equal => Ok(rest),
    }
}

impl AppMessage for NodeMessage {
    fn tag(&self) -> u16 {
        match self {
            NodeMessage::Text(_) => TAG_TEXT,
            NodeMessage::Bytes(_) => TAG_BYTES,
            NodeMessage::Other { tag, .. } => *tag,
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            NodeMessage::Text(t) => put_prefixed(out, t.as_bytes()),
            NodeMessage::Bytes(b) => put_prefixed(out, b),
            NodeMessage::Other { body, .. } => {
                if body.len() > MAX_BODY {
                    return Err(EncodeError::SizeLimitExceeded {
                        size: body.len(),
                        limit: MAX_BODY,
                    });
                }
                out.extend_from_slice(body);
                Ok(())
            }
        }
    }

    fn decode(tag: u16, body: &[u8]) -> Result<Self, DecodeError> {
        match tag {
            TAG_TEXT => {
                let b = get_prefixed(body)?;
                let s = std::str::from_utf8(b).map_err(|_| DecodeError::InvalidUtf8)?;
                Ok(NodeMessage::Text(s.to_owned()))
            }
            TAG_BYTES => Ok(NodeMessage::Bytes(get_prefixed(body)?.to_vec())),
            t if t < MIN_APP_TAG => Err(DecodeError::UnexpectedTag(t)),
            _ if body.len() > MAX_BODY => Err(DecodeError::SizeLimitExceeded {
                size: body.len(),
                limit: MAX_BODY,
            }),
            t => Ok(NodeMessage::Other {
                tag: t,
                body: body.to_vec(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_u32_prefixed_utf8() {
        let m = NodeMessage::Text("hi".into());
        assert_eq!(m.body(), [0, 0, 0, 2, b'h', b'i']);
        assert_eq!(NodeMessage::decode(0x10, &m.body()).unwrap(), m);
        assert!(NodeMessage::decode(0x10, &[0, 0, 0, 1, 0xff]).is_err());
        assert!(NodeMessage::decode(0x10, &[0, 0, 0, 3, b'a']).is_err());
        assert!(NodeMessage::decode(0x10, &[0, 0, 0, 0, b'a']).is_err());
    }

    #[test]
    fn other_tags_are_opaque_and_low_tags_refused() {
        let m = NodeMessage::decode(0x20, b"abc").unwrap();
        assert_eq!(
            m,
            NodeMessage::Other {
                tag: 0x20,
                body: b"abc".to_vec()
            }
        );
        assert_eq!(m.body(), b"abc");
        assert!(NodeMessage::decode(0x05, b"").is_err());
        let b = NodeMessage::decode(0x11, &[0, 0, 0, 1, 7]).unwrap();
        assert_eq!(b, NodeMessage::Bytes(vec![7]));
    }
}
