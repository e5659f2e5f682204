//! `/network`: Octez's P2P directory, with Octez's JSON shapes.

use super::*;

pub(super) fn version_json(v: &NetworkVersion) -> Value {
    json!({
        "chain_name": v.chain_name.to_string(),
        "distributed_db_version": v.distributed_db_version,
        "p2p_version": v.p2p_version,
    })
}

pub(super) fn meta_json(m: &OctezMetadata) -> Value {
    json!({ "disable_mempool": m.disable_mempool, "private_node": m.private_node })
}

pub(super) fn conn_info_json(i: &ConnectionInfo<OctezMetadata>) -> Value {
    let mut id_point = json!({ "addr": ipv6_text(i.id_point.0) });
    if let Some(p) = i.id_point.1 {
        id_point["port"] = json!(p);
    }
    json!({
        "incoming": i.incoming,
        "peer_id": i.peer_id.to_string(),
        "id_point": id_point,
        "remote_socket_port": i.remote_socket_port,
        "announced_version": version_json(&i.announced_version),
        "private": i.private_node,
        "local_metadata": meta_json(&i.local_metadata),
        "remote_metadata": meta_json(&i.remote_metadata),
    })
}

/// Octez writes addresses as IPv6 (IPv4-mapped for IPv4).
pub(super) fn ipv6_text(ip: std::net::IpAddr) -> String {
    tezos_p2p::wire::point::ipv6_form(ip).to_string()
}

pub(super) fn stat_json(s: &Stat) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

pub(super) fn peer_info_json<M: App, P: tezos_p2p::peers::PeerMeta>(
    node: &Node<M>,
    info: &PeerInfo<P>,
) -> Value {
    let conn = node.net.find_connection_by_peer_id(&info.peer_id);
    let pair =
        |x: Option<(tezos_p2p::peers::ConnId, SystemTime)>| x.map(|(c, t)| json!([c, time(t)]));
    let mut m = serde_json::Map::new();
    m.insert("score".into(), json!(info.score()));
    m.insert("trusted".into(), json!(info.trusted));
    if let Some(c) = &conn {
        m.insert("conn_metadata".into(), meta_json(&c.info().remote_metadata));
    }
    m.insert(
        "peer_metadata".into(),
        serde_json::to_value(&info.metadata).unwrap_or(Value::Null),
    );
    m.insert("state".into(), json!(info.state.name()));
    if let Some(p) = info.state.point() {
        m.insert("reachable_at".into(), json!(p));
    }
    m.insert(
        "stat".into(),
        stat_json(&conn.as_ref().map(|c| c.stat()).unwrap_or_default()),
    );
    for (k, v) in [
        ("last_failed_connection", pair(info.last_failed_connection)),
        (
            "last_rejected_connection",
            pair(info.last_rejected_connection),
        ),
        (
            "last_established_connection",
            pair(info.last_established_connection),
        ),
        ("last_disconnection", pair(info.last_disconnection)),
        ("last_seen", pair(info.last_seen())),
        ("last_miss", pair(info.last_miss())),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    }
    Value::Object(m)
}

pub(super) async fn net_self<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(json!(node.net.peer_id().to_string()))
}

pub(super) async fn net_version<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(version_json(&node.net.announced_version()))
}

/// Octez's `GET /version` (`Octez_node_version.encoding`): this node's
/// version as Octez's `Version.t` (the crate's version, `"dev"` before
/// 1.0), the network version it announces, and no commit information.
pub(super) async fn version<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    let part = |s: &str| s.parse::<u64>().unwrap_or(0);
    let major = part(env!("CARGO_PKG_VERSION_MAJOR"));
    ok(json!({
        "version": {
            "major": major,
            "minor": part(env!("CARGO_PKG_VERSION_MINOR")),
            "build": part(env!("CARGO_PKG_VERSION_PATCH")),
            "additional_info": if major == 0 { "dev" } else { "release" },
        },
        "network_version": version_json(&node.net.announced_version()),
        "commit_info": null,
    }))
}

pub(super) async fn net_stat<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(stat_json(&node.net.global_stat()))
}

/// Octez's `Full_stat`: the global statistics, the connections by
/// direction, and every known peer and point, as the list RPCs give them.
pub(super) async fn full_stat<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    let (incoming, outgoing): (Vec<_>, Vec<_>) = node
        .net
        .connections()
        .iter()
        .map(|c| (c.info().incoming, conn_info_json(c.info())))
        .partition(|(incoming, _)| *incoming);
    let strip = |v: Vec<(bool, Value)>| v.into_iter().map(|(_, j)| j).collect::<Vec<_>>();
    ok(json!({
        "stat": stat_json(&node.net.global_stat()),
        "incoming_connections": strip(incoming),
        "outgoing_connections": strip(outgoing),
        "peers": peer_list(&node, &[]),
        "points": point_list(&node, &[]),
    }))
}

/// Streams the pool's events as chunked JSON, one object per line.
pub(super) async fn net_log<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    let rx = node.net.events();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    let mut line = serde_json::to_string(&e).unwrap_or_default();
                    line.push('\n');
                    return Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), rx));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

pub(super) async fn connections<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    let list: Vec<Value> = node
        .net
        .connections()
        .iter()
        .map(|c| conn_info_json(c.info()))
        .collect();
    ok(Value::Array(list))
}

pub(super) async fn connection<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
) -> Res {
    query(q, &[])?;
    let id = peer_id(&p?.0)?;
    let c = node
        .net
        .find_connection_by_peer_id(&id)
        .ok_or_else(|| ApiError::not_found(format!("not connected to {id}")))?;
    ok(conn_info_json(c.info()))
}

pub(super) async fn kick<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
) -> Res {
    let wait = flag(q, "wait")?;
    let id = peer_id(&p?.0)?;
    if let Some(c) = node.net.find_connection_by_peer_id(&id) {
        node.net.disconnect(&c, wait, "explicit RPC").await;
    }
    ok(json!({}))
}

pub(super) fn filters(
    pairs: &[(String, String)],
    allowed: &[&str],
) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        if k == "filter" {
            if !allowed.contains(&v.as_str()) {
                return Err(ApiError::bad(format!(
                    "invalid filter {v:?}: expected one of {allowed:?}"
                )));
            }
            out.push(v.clone());
        }
    }
    Ok(out)
}

pub(super) async fn peers<M: App>(State(node): St<M>, q: Q) -> Res {
    let f = filters(
        &query(q, &["filter"])?,
        &["accepted", "running", "disconnected"],
    )?;
    ok(peer_list(&node, &f))
}

/// `[[peer id, peer info], …]` of the known peers in one of the states
/// `f` (all when empty).
pub(super) fn peer_list<M: App>(node: &Node<M>, f: &[String]) -> Value {
    let infos: Vec<_> = node.net.with_tables(|t| {
        t.known_peers
            .values()
            .filter(|i| f.is_empty() || f.iter().any(|s| s == i.state.name()))
            .cloned()
            .collect()
    });
    infos
        .iter()
        .map(|i| json!([i.peer_id.to_string(), peer_info_json(node, i)]))
        .collect()
}

pub(super) fn find_peer<M: App>(node: &Node<M>, id: &PeerId) -> Option<Value> {
    let info = node.net.with_tables(|t| t.known_peers.get(id).cloned())?;
    Some(peer_info_json(node, &info))
}

pub(super) async fn peer<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
) -> Res {
    query(q, &[])?;
    let id = peer_id(&p?.0)?;
    ok(find_peer(&node, &id).ok_or_else(|| ApiError::not_found(format!("unknown peer {id}")))?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AclPatch {
    acl: Option<String>,
    peer_id: Option<String>,
}

pub(super) fn acl_kind(acl: &Option<String>) -> Result<Option<&str>, ApiError> {
    match acl.as_deref() {
        None => Ok(None),
        Some(a @ ("ban" | "trust" | "open")) => Ok(Some(a)),
        Some(other) => Err(ApiError::bad(format!(
            "invalid acl {other:?}: expected \"ban\", \"trust\" or \"open\""
        ))),
    }
}

pub(super) async fn patch_peer<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
    body: Bytes,
) -> Res {
    query(q, &[])?;
    let id = peer_id(&p?.0)?;
    let patch: AclPatch = json_body(&body, r#"{"acl": "ban"|"trust"|"open"}"#)?;
    if patch.peer_id.is_some() {
        return Err(ApiError::bad("\"peer_id\" is only for points"));
    }
    match acl_kind(&patch.acl)? {
        Some("ban") => {
            node.net.untrust_peer(id);
            node.net.ban_peer(id).await;
        }
        Some("trust") => node.net.trust_peer(id),
        Some(_) => {
            node.net.unban_peer(id);
            node.net.untrust_peer(id);
        }
        None => {}
    }
    // As Octez: the change is made, then an unknown peer is a 404.
    ok(find_peer(&node, &id).ok_or_else(|| ApiError::not_found(format!("unknown peer {id}")))?)
}

pub(super) async fn peer_banned<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
) -> Res {
    query(q, &[])?;
    let id = peer_id(&p?.0)?;
    let trusted = node
        .net
        .with_tables(|t| t.known_peers.get(&id).is_some_and(|i| i.trusted));
    ok(json!(!trusted && node.net.with_acl(|a| a.banned_peer(&id))))
}

pub(super) async fn peer_log<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
) -> Res {
    let monitor = flag(q, "monitor")?;
    let id = peer_id(&p?.0)?;
    let since = move |node: &Node<M>, mark: u64| {
        node.net.with_tables(|t| {
            t.known_peers.get(&id).map(|i| {
                let new: Vec<_> = i.events.since(mark).collect();
                (
                    serde_json::to_value(new).unwrap_or(Value::Null),
                    i.events.pushed(),
                )
            })
        })
    };
    log_answer(node, monitor, since)
}

/// A peer's or a point's event log (`since(node, mark)`: the events after
/// `mark` as a JSON array and the new mark, or `None` when unknown: then
/// `[]`, as Octez answers, even with `?monitor`). Without `?monitor`, the
/// events held. With it, a stream of JSON arrays, one per
/// line: first the events held, then each batch of new ones, until the
/// client goes away or the peer or point is forgotten. New events are
/// looked for at every pool event and at least once a second.
pub(super) fn log_answer<M: App>(
    node: Arc<Node<M>>,
    monitor: bool,
    since: impl Fn(&Node<M>, u64) -> Option<(Value, u64)> + Send + Sync + 'static,
) -> Res {
    let Some((history, mark)) = since(&node, 0) else {
        return ok(json!([]));
    };
    if !monitor {
        return ok(history);
    }
    let line = |v: &Value| {
        let mut line = v.to_string();
        line.push('\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    };
    let first = futures_util::stream::once(std::future::ready(line(&history)));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let events = node.net.events();
    let since = Arc::new(since);
    let rest = futures_util::stream::unfold(
        (node, events, tick, mark),
        move |(node, mut events, mut tick, mark)| {
            let since = since.clone();
            async move {
                loop {
                    tokio::select! {
                        e = events.recv() => {
                            if let Err(tokio::sync::broadcast::error::RecvError::Closed) = e {
                                return None;
                            }
                        }
                        _ = tick.tick() => {}
                    }
                    let (new, mark) = since(&node, mark)?;
                    if new.as_array().is_some_and(|a| !a.is_empty()) {
                        return Some((line(&new), (node, events, tick, mark)));
                    }
                }
            }
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(futures_util::StreamExt::chain(first, rest)),
    )
        .into_response())
}

pub(super) async fn points<M: App>(State(node): St<M>, q: Q) -> Res {
    let f = filters(
        &query(q, &["filter"])?,
        &["requested", "accepted", "running", "disconnected"],
    )?;
    ok(point_list(&node, &f))
}

/// `[[point, point info], …]` of the known points in one of the states `f`
/// (all when empty).
pub(super) fn point_list<M: App>(node: &Node<M>, f: &[String]) -> Value {
    node.net.with_tables(|t| {
        t.known_points
            .values()
            .filter(|i| f.is_empty() || f.iter().any(|s| s == i.state.name()))
            .map(|i| json!([i.point.to_string(), i.to_octez_json()]))
            .collect()
    })
}

pub(super) fn find_point<M: App>(node: &Node<M>, p: &Point) -> Option<Value> {
    node.net
        .with_tables(|t| t.known_points.get(p).map(|i| i.to_octez_json()))
}

pub(super) async fn point_get<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
) -> Res {
    query(q, &[])?;
    let pt = point(&p?.0)?;
    ok(find_point(&node, &pt).ok_or_else(|| ApiError::not_found(format!("unknown point {pt}")))?)
}

pub(super) async fn point_connect<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
) -> Res {
    let pairs = query(q, &["timeout"])?;
    let pt = point(&p?.0)?;
    let mut timeout = Duration::from_secs(10);
    for (k, v) in &pairs {
        if k == "timeout" {
            let s: f64 = v
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    ApiError::bad(format!(
                        "invalid timeout {v:?}: expected a positive number of seconds"
                    ))
                })?;
            timeout = Duration::from_secs_f64(s);
        }
    }
    node.net
        .connect_with(pt, tezos_p2p::ConnectOptions::default().timeout(timeout))
        .await
        .map_err(net_error)?;
    ok(json!({}))
}

pub(super) async fn patch_point<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
    body: Bytes,
) -> Res {
    query(q, &[])?;
    let pt = point(&p?.0)?;
    let patch: AclPatch = json_body(&body, r#"{"acl"?: "ban"|"trust"|"open", "peer_id"?: ID}"#)?;
    let acl = acl_kind(&patch.acl)?;
    let expected = patch.peer_id.as_deref().map(peer_id).transpose()?;
    if let Some(id) = expected {
        node.net.set_expected_peer_id(pt, id).await;
    }
    match acl {
        Some("ban") => {
            node.net.untrust_point(pt);
            node.net.ban_point(pt, true).await;
        }
        Some("trust") => node.net.trust_point(pt),
        Some(_) => {
            node.net.unban_point(pt);
            node.net.untrust_point(pt);
        }
        None => {}
    }
    // As Octez: the change is made, then an unknown point is a 404.
    ok(find_point(&node, &pt).ok_or_else(|| ApiError::not_found(format!("unknown point {pt}")))?)
}

pub(super) async fn point_banned<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
) -> Res {
    query(q, &[])?;
    let pt = point(&p?.0)?;
    let trusted = node
        .net
        .with_tables(|t| t.known_points.get(&pt).is_some_and(|i| i.trusted));
    ok(json!(
        !trusted && node.net.with_acl(|a| a.banned_addr(pt.ip()))
    ))
}

pub(super) async fn point_log<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
) -> Res {
    let monitor = flag(q, "monitor")?;
    let pt = point(&p?.0)?;
    let since = move |node: &Node<M>, mark: u64| {
        node.net.with_tables(|t| {
            t.known_points.get(&pt).map(|i| {
                let new = i.events.since(mark).map(|e| e.to_octez_json()).collect();
                (Value::Array(new), i.events.pushed())
            })
        })
    };
    log_answer(node, monitor, since)
}

pub(super) async fn greylist_ips<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    let g = node.net.with_acl(|a| a.greylisted_ips());
    ok(json!({
        // Octez writes every address as IPv6 (`::ffff:1.2.3.4`).
        "ips": g.ips.iter().map(|ip| ipv6_text(*ip)).collect::<Vec<_>>(),
        "not_reliable_since": g.not_reliable_since.map(time),
    }))
}

pub(super) async fn greylist_peers<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    let peers = node.net.with_acl(|a| a.greylisted_peers());
    ok(json!(peers
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()))
}

pub(super) async fn greylist_clear<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    node.net.with_acl(|a| a.clear());
    ok(json!({}))
}
