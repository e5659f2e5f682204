//! `/chains/main` and `/monitor`: the chain and its heads, as Octez's
//! RPCs give them, and the `/network/heads` extension.

use super::*;

pub(super) fn chain<M: App>(node: &Node<M>) -> Result<&crate::chain::Chain, ApiError> {
    node.chain.as_deref().ok_or_else(|| {
        ApiError::not_found(format!(
            "no chain: the node is on {}, which has no blocks",
            node.network
        ))
    })
}

pub(super) fn best<M: App>(node: &Node<M>) -> Result<Arc<crate::chain::Head>, ApiError> {
    chain(node)?.best().ok_or_else(|| {
        ApiError::not_found(
            "no head known yet: no peer has announced one (Current_head or Current_branch)",
        )
    })
}

/// `GET /chains/main/chain_id`.
pub(super) async fn chain_id<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(json!(chain(&node)?.chain_id.to_string()))
}

/// `GET /chains/main/blocks/head/hash`.
pub(super) async fn head_hash<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(json!(best(&node)?.hash.to_string()))
}

/// `GET /chains/main/blocks/head/header/shell`: Octez's shell header.
pub(super) async fn head_shell_header<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(best(&node)?.header.shell_json())
}

/// `GET /monitor/heads/main`: a chunked stream of one JSON object per new
/// best head (its header with `hash`), the current one first, as Octez
/// streams them.
pub(super) async fn monitor_heads<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    let chain = chain(&node)?;
    let rx = chain.subscribe();
    let current = chain.best();
    let line = |h: &crate::chain::Head| {
        let mut line = h.json().to_string();
        line.push('\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    };
    let first = futures_util::stream::iter(current.as_deref().map(line));
    let last = current.map(|h| h.hash);
    let rest = futures_util::stream::unfold((rx, last), move |(mut rx, last)| async move {
        loop {
            match rx.recv().await {
                // The current head may also be the first one sent.
                Ok(h) if Some(h.hash) == last => continue,
                Ok(h) => return Some((line(&h), (rx, None))),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(futures_util::StreamExt::chain(first, rest)),
    )
        .into_response())
}

/// Extension `GET /network/heads`: each connected peer's latest head.
pub(super) async fn network_heads<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(chain(&node)?.peer_heads_json())
}
