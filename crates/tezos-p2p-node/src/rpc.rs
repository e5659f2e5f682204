//! The RPC server: Octez's `/network` directory with Octez's JSON shapes,
//! the node's `/messages` endpoints and `/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use tezos_p2p::events::rfc3339;
use tezos_p2p::peers::{PeerInfo, PeerState};
use tezos_p2p::points::PointState;
use tezos_p2p::pool::ExpectedIdAction;
use tezos_p2p::scheduler::Stat;
use tezos_p2p::socket::ConnectionInfo;
use tezos_p2p::NetError;
use tezos_p2p_wire::identity::PeerId;
use tezos_p2p_wire::message::OctezMetadata;
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::version::NetworkVersion;

use crate::app::App;
use crate::node::{Counters, Node};

type St<M> = State<Arc<Node<M>>>;

/// An error answer: a status and `{"error": "…"}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    fn not_found(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::bad(format!("bad path: {}", e.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad(format!("bad query string: {}", e.body_text()))
    }
}

type Res = Result<Response, ApiError>;
type Q = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn ok(v: Value) -> Res {
    Ok(Json(v).into_response())
}

fn peer_id(s: &str) -> Result<PeerId, ApiError> {
    s.parse::<PeerId>().map_err(|_| {
        ApiError::bad(format!(
            "invalid peer id {s:?}: expected a base58 id (idt…/ids…)"
        ))
    })
}

fn point(s: &str) -> Result<Point, ApiError> {
    s.parse::<Point>().map_err(|e| {
        ApiError::bad(format!(
            "invalid point {s:?}: {e} (expected ADDR:PORT, IPv6 in brackets)"
        ))
    })
}

fn query(q: Q, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let Query(pairs) = q?;
    for (k, _) in &pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad(if allowed.is_empty() {
                format!("unknown query parameter {k:?}: this RPC takes none")
            } else {
                format!("unknown query parameter {k:?}: expected one of {allowed:?}")
            }));
        }
    }
    Ok(pairs)
}

/// A query that may hold only the flag `name` (`?name`): whether it does.
fn flag(q: Q, name: &str) -> Result<bool, ApiError> {
    Ok(query(q, &[name])?.iter().any(|(k, _)| k == name))
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &Bytes, expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("invalid JSON body: {e}; expected {expected}")))
}

fn time(t: SystemTime) -> Value {
    Value::String(rfc3339::format(t))
}

fn version_json(v: &NetworkVersion) -> Value {
    json!({
        "chain_name": v.chain_name.to_string(),
        "distributed_db_version": v.distributed_db_version,
        "p2p_version": v.p2p_version,
    })
}

fn meta_json(m: &OctezMetadata) -> Value {
    json!({ "disable_mempool": m.disable_mempool, "private_node": m.private_node })
}

fn conn_info_json(i: &ConnectionInfo<OctezMetadata>) -> Value {
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
fn ipv6_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().to_string(),
        std::net::IpAddr::V6(v6) => v6.to_string(),
    }
}

fn stat_json(s: &Stat) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

fn peer_info_json<M: App, P: tezos_p2p::peers::PeerMeta>(
    node: &Node<M>,
    info: &PeerInfo<P>,
) -> Value {
    let conn = node.net.find_connection_by_peer_id(&info.peer_id);
    let pair = |x: Option<(tezos_p2p::peers::ConnId, SystemTime)>| {
        x.map(|(c, t)| json!([c, rfc3339::format(t)]))
    };
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

/// The routes.
pub fn router<M: App>(node: Arc<Node<M>>) -> Router {
    Router::new()
        .route("/network/self", get(net_self::<M>))
        .route("/network/version", get(net_version::<M>))
        .route("/network/stat", get(net_stat::<M>))
        .route("/network/full_stat", get(full_stat::<M>))
        .route("/network/log", get(net_log::<M>))
        .route("/network/connections", get(connections::<M>))
        .route(
            "/network/connections/{peer_id}",
            get(connection::<M>).delete(kick::<M>),
        )
        .route("/network/peers", get(peers::<M>))
        .route(
            "/network/peers/{peer_id}",
            get(peer::<M>).patch(patch_peer::<M>),
        )
        .route("/network/peers/{peer_id}/banned", get(peer_banned::<M>))
        .route("/network/peers/{peer_id}/log", get(peer_log::<M>))
        .route("/network/points", get(points::<M>))
        .route(
            "/network/points/{point}",
            get(point_get::<M>)
                .put(point_connect::<M>)
                .patch(patch_point::<M>),
        )
        .route("/network/points/{point}/banned", get(point_banned::<M>))
        .route("/network/points/{point}/log", get(point_log::<M>))
        .route("/network/greylist/ips", get(greylist_ips::<M>))
        .route("/network/greylist/peers", get(greylist_peers::<M>))
        .route("/network/greylist", delete(greylist_clear::<M>))
        .route("/chains/main/chain_id", get(chain_id::<M>))
        .route("/chains/main/blocks/head/hash", get(head_hash::<M>))
        .route(
            "/chains/main/blocks/head/header/shell",
            get(head_shell_header::<M>),
        )
        .route("/monitor/heads/main", get(monitor_heads::<M>))
        .route("/network/heads", get(network_heads::<M>))
        .route("/messages", get(messages::<M>))
        .route("/messages/broadcast", post(broadcast::<M>))
        .route("/messages/send/{peer_id}", post(send::<M>))
        .route("/metrics", get(metrics::<M>))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(node)
}

async fn fallback(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such RPC: {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

async fn net_self<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(json!(node.net.peer_id().to_string()))
}

async fn net_version<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(version_json(&node.net.announced_version()))
}

async fn net_stat<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(stat_json(&node.net.global_stat()))
}

/// Octez's `Full_stat`: the global statistics, the connections by
/// direction, and every known peer and point, as the list RPCs give them.
async fn full_stat<M: App>(State(node): St<M>, q: Q) -> Res {
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
async fn net_log<M: App>(State(node): St<M>, q: Q) -> Res {
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

async fn connections<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    let list: Vec<Value> = node
        .net
        .connections()
        .iter()
        .map(|c| conn_info_json(c.info()))
        .collect();
    ok(Value::Array(list))
}

async fn connection<M: App>(
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

async fn kick<M: App>(State(node): St<M>, p: Result<Path<String>, PathRejection>, q: Q) -> Res {
    let wait = flag(q, "wait")?;
    let id = peer_id(&p?.0)?;
    if let Some(c) = node.net.find_connection_by_peer_id(&id) {
        node.net.disconnect(&c, wait, "explicit RPC").await;
    }
    ok(json!({}))
}

fn filters(pairs: &[(String, String)], allowed: &[&str]) -> Result<Vec<String>, ApiError> {
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

async fn peers<M: App>(State(node): St<M>, q: Q) -> Res {
    let f = filters(
        &query(q, &["filter"])?,
        &["accepted", "running", "disconnected"],
    )?;
    ok(peer_list(&node, &f))
}

/// `[[peer id, peer info], …]` of the known peers in one of the states
/// `f` (all when empty).
fn peer_list<M: App>(node: &Node<M>, f: &[String]) -> Value {
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

fn find_peer<M: App>(node: &Node<M>, id: &PeerId) -> Option<Value> {
    let info = node.net.with_tables(|t| t.known_peers.get(id).cloned())?;
    Some(peer_info_json(node, &info))
}

async fn peer<M: App>(State(node): St<M>, p: Result<Path<String>, PathRejection>, q: Q) -> Res {
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

fn acl_kind(acl: &Option<String>) -> Result<Option<&str>, ApiError> {
    match acl.as_deref() {
        None => Ok(None),
        Some(a @ ("ban" | "trust" | "open")) => Ok(Some(a)),
        Some(other) => Err(ApiError::bad(format!(
            "invalid acl {other:?}: expected \"ban\", \"trust\" or \"open\""
        ))),
    }
}

async fn patch_peer<M: App>(
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
    ok(find_peer(&node, &id).unwrap_or(Value::Null))
}

async fn peer_banned<M: App>(
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

async fn peer_log<M: App>(State(node): St<M>, p: Result<Path<String>, PathRejection>, q: Q) -> Res {
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
    log_answer(node, monitor, since, format!("unknown peer {id}"))
}

/// A peer's or a point's event log (`since(node, mark)`: the events after
/// `mark` as a JSON array and the new mark, or `None` when unknown). Without
/// `?monitor`, the events held. With it, a stream of JSON arrays, one per
/// line: first the events held, then each batch of new ones, until the
/// client goes away or the peer or point is forgotten. New events are
/// looked for at every pool event and at least once a second.
fn log_answer<M: App>(
    node: Arc<Node<M>>,
    monitor: bool,
    since: impl Fn(&Node<M>, u64) -> Option<(Value, u64)> + Send + Sync + 'static,
    unknown: String,
) -> Res {
    let (history, mark) = since(&node, 0).ok_or_else(|| ApiError::not_found(unknown))?;
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

async fn points<M: App>(State(node): St<M>, q: Q) -> Res {
    let f = filters(
        &query(q, &["filter"])?,
        &["requested", "accepted", "running", "disconnected"],
    )?;
    ok(point_list(&node, &f))
}

/// `[[point, point info], …]` of the known points in one of the states `f`
/// (all when empty).
fn point_list<M: App>(node: &Node<M>, f: &[String]) -> Value {
    node.net.with_tables(|t| {
        t.known_points
            .values()
            .filter(|i| f.is_empty() || f.iter().any(|s| s == i.state.name()))
            .map(|i| json!([i.point.to_string(), i.to_octez_json()]))
            .collect()
    })
}

fn find_point<M: App>(node: &Node<M>, p: &Point) -> Option<Value> {
    node.net
        .with_tables(|t| t.known_points.get(p).map(|i| i.to_octez_json()))
}

async fn point_get<M: App>(
    State(node): St<M>,
    p: Result<Path<String>, PathRejection>,
    q: Q,
) -> Res {
    query(q, &[])?;
    let pt = point(&p?.0)?;
    ok(find_point(&node, &pt).ok_or_else(|| ApiError::not_found(format!("unknown point {pt}")))?)
}

fn net_error(e: NetError) -> ApiError {
    let status = match &e {
        NetError::PointBanned(_) | NetError::PeerBanned(_) | NetError::PrivateMode(_) => {
            StatusCode::FORBIDDEN
        }
        NetError::PendingConnection(_) | NetError::Connected(_) | NetError::TooManyConnections => {
            StatusCode::CONFLICT
        }
        NetError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        NetError::NotConnected => StatusCode::NOT_FOUND,
        NetError::ShutDown => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError(status, e.to_string())
}

async fn point_connect<M: App>(
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
        .connect(pt, false, None, Some(timeout))
        .await
        .map_err(net_error)?;
    ok(json!({}))
}

async fn patch_point<M: App>(
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
        match node.net.with_tables(|t| t.set_expected_peer_id(pt, id)) {
            ExpectedIdAction::None => {}
            ExpectedIdAction::GreylistOnly { ip } => node.net.greylist_addr(ip),
            ExpectedIdAction::GreylistAndDisconnect { ip, peer } => {
                node.net.greylist_addr(ip);
                if let Some(c) = node.net.find_connection_by_peer_id(&peer) {
                    node.net.disconnect(&c, false, "unexpected peer id").await;
                }
            }
        }
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
    ok(find_point(&node, &pt).unwrap_or(Value::Null))
}

async fn point_banned<M: App>(
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

async fn point_log<M: App>(
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
    log_answer(node, monitor, since, format!("unknown point {pt}"))
}

async fn greylist_ips<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    let g = node.net.with_acl(|a| a.greylisted_ips());
    ok(json!({
        "ips": g.ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
        "not_reliable_since": g.not_reliable_since.map(time),
    }))
}

async fn greylist_peers<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    let peers = node.net.with_acl(|a| a.greylisted_peers());
    ok(json!(peers
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()))
}

async fn greylist_clear<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    node.net.with_acl(|a| a.clear());
    ok(json!({}))
}

// ---------------------------------------------------------------------------
// Messages

fn message_of<M: App>(body: &Bytes) -> Result<M, ApiError> {
    let v: Value = json_body(body, "a message")?;
    M::from_post(&v).map_err(ApiError::bad)
}

async fn broadcast<M: App>(State(node): St<M>, q: Q, body: Bytes) -> Res {
    query(q, &[])?;
    let msg = message_of::<M>(&body)?;
    let n = node
        .broadcast(&msg)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    ok(json!({ "sent_to": n }))
}

async fn send<M: App>(
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
async fn messages<M: App>(State(node): St<M>, q: Q) -> Res {
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

// ---------------------------------------------------------------------------
// Chains and heads

fn chain<M: App>(node: &Node<M>) -> Result<&crate::chain::Chain, ApiError> {
    node.chain.as_deref().ok_or_else(|| {
        ApiError::not_found(format!(
            "no chain: the node is on {}, which has no blocks",
            node.network
        ))
    })
}

fn best<M: App>(node: &Node<M>) -> Result<Arc<crate::chain::Head>, ApiError> {
    chain(node)?.best().ok_or_else(|| {
        ApiError::not_found(
            "no head known yet: no peer has announced one (Current_head or Current_branch)",
        )
    })
}

/// `GET /chains/main/chain_id`.
async fn chain_id<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(json!(chain(&node)?.chain_id.to_string()))
}

/// `GET /chains/main/blocks/head/hash`.
async fn head_hash<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(json!(best(&node)?.hash.to_string()))
}

/// `GET /chains/main/blocks/head/header/shell`: Octez's shell header.
async fn head_shell_header<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(best(&node)?.header.shell_json())
}

/// `GET /monitor/heads/main`: a chunked stream of one JSON object per new
/// best head (its header with `hash`), the current one first, as Octez
/// streams them.
async fn monitor_heads<M: App>(State(node): St<M>, q: Q) -> Res {
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
async fn network_heads<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(chain(&node)?.peer_heads_json())
}

// ---------------------------------------------------------------------------
// Metrics

/// Prometheus text exposition with Octez's `octez_p2p_*` names.
pub fn metrics_text<M: App>(node: &Node<M>) -> String {
    let c = &node.counters;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# HELP octez_p2p_{name} {help}");
        let _ = writeln!(out, "# TYPE octez_p2p_{name} {kind}");
        let _ = writeln!(out, "octez_p2p_{name} {v}");
    };
    for (name, help, counter) in [
        (
            "messages_broadcast_message_sent",
            "Broadcasts made",
            &c.broadcast_message_sent,
        ),
        (
            "messages_user_message_sent",
            "Application messages sent",
            &c.user_message_sent,
        ),
        (
            "messages_user_message_received",
            "Application messages received",
            &c.user_message_received,
        ),
        (
            "messages_user_message_received_error",
            "Application messages that failed to decode",
            &c.user_message_received_error,
        ),
        (
            "messages_advertise_received",
            "Advertise messages received",
            &c.advertise_received,
        ),
        (
            "messages_advertise_sent",
            "Advertise messages sent",
            &c.advertise_sent,
        ),
        (
            "messages_bootstrap_received",
            "Bootstrap messages received",
            &c.bootstrap_received,
        ),
        (
            "messages_bootstrap_sent",
            "Bootstrap messages sent",
            &c.bootstrap_sent,
        ),
        (
            "messages_swap_requests_sent",
            "Swap requests sent",
            &c.swap_requests_sent,
        ),
        (
            "messages_swap_requests_received",
            "Swap requests received",
            &c.swap_requests_received,
        ),
        ("messages_swap_ack_sent", "Swap acks sent", &c.swap_ack_sent),
        (
            "messages_swap_ack_received",
            "Swap acks received",
            &c.swap_ack_received,
        ),
        ("swap_ignored", "Swap requests ignored", &c.swap_ignored),
        ("swap_success", "Successful swaps", &c.swap_success),
        ("swap_fail", "Failed swaps", &c.swap_fail),
    ] {
        metric(name, "counter", help, Counters::get(counter));
    }
    let conns = node.net.connections();
    let incoming = conns.iter().filter(|c| c.info().incoming).count() as u64;
    let private = conns.iter().filter(|c| c.info().private_node).count() as u64;
    let now = node.net.now();
    let (peers, points) = node.net.with_tables(|t| {
        let mut peers = [0u64; 3];
        for p in t.known_peers.values() {
            peers[match p.state {
                PeerState::Accepted { .. } => 0,
                PeerState::Running { .. } => 1,
                PeerState::Disconnected => 2,
            }] += 1;
        }
        let mut points = [0u64; 5];
        for p in t.known_points.values() {
            if p.trusted {
                points[0] += 1;
            }
            if p.cannot_reconnect_yet(now) {
                points[1] += 1;
            }
            match p.state {
                PointState::Accepted { .. } => points[2] += 1,
                PointState::Running { .. } => points[3] += 1,
                PointState::Disconnected => points[4] += 1,
                PointState::Requested => {}
            }
        }
        (peers, points)
    });
    let stat = node.net.global_stat();
    for (name, help, v) in [
        (
            "connections_active",
            "Running connections",
            conns.len() as u64,
        ),
        (
            "connections_incoming",
            "Running incoming connections",
            incoming,
        ),
        (
            "connections_outgoing",
            "Running outgoing connections",
            conns.len() as u64 - incoming,
        ),
        (
            "connections_private",
            "Running connections to private nodes",
            private,
        ),
        ("peers_accepted", "Known peers in state accepted", peers[0]),
        ("peers_running", "Known peers in state running", peers[1]),
        (
            "peers_disconnected",
            "Known peers in state disconnected",
            peers[2],
        ),
        ("points_trusted", "Trusted known points", points[0]),
        (
            "points_greylisted",
            "Known points in reconnection back-off",
            points[1],
        ),
        (
            "points_accepted",
            "Known points in state accepted",
            points[2],
        ),
        ("points_running", "Known points in state running", points[3]),
        (
            "points_disconnected",
            "Known points in state disconnected",
            points[4],
        ),
        ("io_scheduler_total_sent", "Bytes sent", stat.total_sent),
        ("io_scheduler_total_recv", "Bytes received", stat.total_recv),
        (
            "io_scheduler_current_inflow",
            "Download rate (B/s)",
            stat.current_inflow,
        ),
        (
            "io_scheduler_current_outflow",
            "Upload rate (B/s)",
            stat.current_outflow,
        ),
    ] {
        metric(name, "gauge", help, v);
    }
    // The node's own: application messages by kind (Octez's case title).
    let kinds = c.kinds();
    for (dir, help) in [
        ("received", "Application messages received, by kind"),
        ("sent", "Application messages queued for sending, by kind"),
    ] {
        let _ = writeln!(out, "# HELP tezos_p2p_node_messages_{dir}_total {help}");
        let _ = writeln!(out, "# TYPE tezos_p2p_node_messages_{dir}_total counter");
        for (kind, n) in &kinds {
            let v = if dir == "sent" { n.sent } else { n.received };
            let _ = writeln!(
                out,
                "tezos_p2p_node_messages_{dir}_total{{kind=\"{kind}\"}} {v}"
            );
        }
    }
    out
}

async fn metrics<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics_text(&node),
    )
        .into_response())
}
