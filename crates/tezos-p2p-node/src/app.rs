//! The two applications the node runs, one per kind of network: the
//! shell's messages on a Tezos chain, Text and Bytes on `octez-p2p-node`'s
//! network (their [`App`] implementations).

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{json, Map, Value};
use tracing::{debug, info};

use tezos_p2p_shell::ShellMessage;
use tezos_p2p_wire::identity::PeerId;
use tezos_p2p_wire::message::AppMessage;

use crate::chain::Reply;
use crate::message::P2pNodeMessage;
use crate::node::{App, Conn, Node};

/// `{"tag": N, "hex": BODY}` or `{"hex": TAG_AND_BODY}`: the message those
/// bytes decode to, `None` for another shape.
fn from_hex<M: AppMessage>(body: &Value) -> Option<Result<M, String>> {
    let obj = body.as_object()?;
    let hex_str = obj.get("hex")?.as_str()?;
    let tag = match obj.get("tag") {
        None if obj.len() == 1 => None,
        Some(t) if obj.len() == 2 => Some(t),
        _ => return None,
    };
    Some((|| {
        let bytes = hex::decode(hex_str).map_err(|e| format!("invalid hex: {e}"))?;
        let (tag, body) = match tag {
            Some(t) => {
                let t = t
                    .as_u64()
                    .and_then(|t| u16::try_from(t).ok())
                    .ok_or_else(|| format!("invalid tag {t}: expected 0..=65535"))?;
                (t, &bytes[..])
            }
            None => match bytes.split_first_chunk::<2>() {
                Some((t, body)) => (u16::from_be_bytes(*t), body),
                None => return Err("the hex must hold at least the 2-byte tag".into()),
            },
        };
        if tag < tezos_p2p_wire::message::MIN_APP_TAG {
            return Err(format!(
                "invalid tag {tag}: application tags start at 16 (0x10)"
            ));
        }
        M::decode(tag, body).map_err(|e| {
            format!(
                "invalid message of tag {tag:#06x}: {e} ({})",
                e.octez_class()
            )
        })
    })())
}

impl App for P2pNodeMessage {
    fn name(&self) -> &'static str {
        P2pNodeMessage::name(self)
    }

    fn to_json(&self) -> Value {
        match self {
            P2pNodeMessage::Text(t) => json!({ "content": t }),
            P2pNodeMessage::Bytes(b) => json!({ "content": hex::encode(b) }),
        }
    }

    fn extra_json(&self, out: &mut Map<String, Value>) {
        // The body after the tag, as in the POST bodies.
        let mut body = Vec::with_capacity(self.size_hint());
        if self.encode_body(&mut body).is_ok() {
            out.insert("hex".into(), json!(hex::encode(body)));
        }
        if let P2pNodeMessage::Text(t) = self {
            out.insert("text".into(), json!(t));
        }
    }

    fn from_post(body: &Value) -> Result<Self, String> {
        if let Some(r) = from_hex(body) {
            return r;
        }
        match body.as_object() {
            Some(o) if o.len() == 1 => match o.get("text").and_then(Value::as_str) {
                Some(t) => Ok(P2pNodeMessage::Text(t.to_owned())),
                None => Err(POST_SHAPE_P2P_NODE.into()),
            },
            _ => Err(POST_SHAPE_P2P_NODE.into()),
        }
    }

    fn ping(from: &PeerId) -> Option<Self> {
        Some(P2pNodeMessage::Text(format!("Hello from {from} !")))
    }

    fn on_message(_node: &Node<Self>, conn: &Arc<Conn<Self>>, msg: &Self) {
        // Debug formatting escapes what the peer chose (newlines, escape
        // sequences), so it cannot forge log lines.
        match msg {
            P2pNodeMessage::Text(t) => {
                info!(peer = %conn.peer_id(), text = ?t, "text message received")
            }
            P2pNodeMessage::Bytes(b) => {
                info!(peer = %conn.peer_id(), size = b.len(), "bytes message received")
            }
        }
    }
}

/// The POST bodies on `octez-p2p-node`'s network.
pub const POST_SHAPE_P2P_NODE: &str =
    r#"expected {"text": "..."}, {"tag": N, "hex": "<body>"} or {"hex": "<tag and body>"}"#;
/// The POST bodies on a Tezos chain.
pub const POST_SHAPE_SHELL: &str = r#"expected a shell message in Octez's JSON (e.g. {"get_current_head": "NetXdQprcVkpaWU"}), {"tag": N, "hex": "<body>"} or {"hex": "<tag and body>"}"#;

impl App for ShellMessage {
    fn name(&self) -> &'static str {
        ShellMessage::name(self)
    }

    fn to_json(&self) -> Value {
        ShellMessage::to_json(self)
    }

    fn from_post(body: &Value) -> Result<Self, String> {
        if let Some(r) = from_hex(body) {
            return r;
        }
        ShellMessage::from_octez_json(body).map_err(|e| format!("{e}; {POST_SHAPE_SHELL}"))
    }

    fn on_connection(node: &Node<Self>, conn: &Arc<Conn<Self>>) {
        if let Some(chain) = &node.chain {
            let first = chain.greeting();
            if node.try_send(conn, first) {
                debug!(peer = %conn.peer_id(), "Get_current_branch sent");
            }
        }
    }

    fn on_message(node: &Node<Self>, conn: &Arc<Conn<Self>>, msg: &Self) {
        let peer = conn.peer_id();
        debug!(%peer, message = msg.name(), "shell message received");
        let Some(chain) = &node.chain else {
            return;
        };
        if let Reply::Send(answers) = chain.handle(peer, msg, SystemTime::now()) {
            for a in answers {
                // Best effort, as Octez's `try_send`: a full queue drops it.
                node.try_send(conn, a);
            }
        }
    }
}
