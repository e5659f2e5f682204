//! `/messages`: the received messages, and sending.

use super::*;

pub(super) fn message_of<M: App>(body: &Bytes) -> Result<M, ApiError> {
    let v: Value = json_body(body, "a message")?;
    M::from_post(&v).map_err(ApiError::bad)
}

pub(super) async fn broadcast<M: App>(State(node): St<M>, q: Q, body: Bytes) -> Res {
    query(q, &[])?;
    let msg = message_of::<M>(&body)?;
    let n = node
        .broadcast(&msg)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    ok(json!({ "sent_to": n }))
}

pub(super) async fn send<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
    body: Bytes,
) -> Res {
    query(q, &[])?;
    let id = peer_id(&p?.0)?;
    let msg = message_of::<M>(&body)?;
    match node.send(&id, msg).await {
        Ok(()) => ok(json!({ "sent": true })),
        Err(NetError::NotConnected) => Err(ApiError::not_found(format!("not connected to {id}"))),
        Err(NetError::Socket(tezos_p2p::socket::SocketError::ConnectionClosed)) => {
            Err(ApiError::not_found(format!("not connected to {id}")))
        }
        Err(e) => Err(net_error(e)),
    }
}

/// The received messages after `?since=SEQ`, oldest first: `{seq, peer_id,
/// tag, name, size, received_at, message}`, `message` in Octez's JSON (on
/// octez-p2p-node's network, also `hex` and, for a Text, `text`).
pub(super) async fn messages<M: App>(State(node): St<M>, q: Q) -> Res {
    let pairs = query(q, &["since"])?;
    let mut since = 0u64;
    for (k, v) in &pairs {
        if k == "since" {
            since = v.parse().map_err(|_| {
                ApiError::bad(format!("invalid since {v:?}: expected a sequence number"))
            })?;
        }
    }
    let list: Vec<Value> = node
        .inbox
        .lock()
        .unwrap()
        .since(since)
        .into_iter()
        .map(|m| {
            let mut v = serde_json::Map::new();
            v.insert("seq".into(), json!(m.seq));
            v.insert("peer_id".into(), json!(m.peer_id.to_string()));
            v.insert("tag".into(), json!(m.msg.tag()));
            v.insert("name".into(), json!(m.msg.name()));
            v.insert("size".into(), json!(m.size));
            v.insert("received_at".into(), time(m.received_at));
            v.insert("message".into(), m.msg.to_json());
            m.msg.extra_json(&mut v);
            Value::Object(v)
        })
        .collect();
    ok(Value::Array(list))
}
