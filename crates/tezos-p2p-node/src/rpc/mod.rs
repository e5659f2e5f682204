//! The RPC server, one module per directory: [`network`] (Octez's
//! `/network`, with Octez's JSON shapes), [`chains`] (`/chains/main` and
//! `/monitor` on a Tezos chain), [`messages`] (the node's `/messages`) and
//! [`metrics`]. This module holds what they share: errors, query and body
//! parsing, and the router.

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

use tezos_p2p::peers::PeerInfo;
use tezos_p2p::scheduler::Stat;
use tezos_p2p::socket::ConnectionInfo;
use tezos_p2p::NetError;
use tezos_p2p_wire::identity::PeerId;
use tezos_p2p_wire::message::OctezMetadata;
use tezos_p2p_wire::point::Point;
use tezos_p2p_wire::version::NetworkVersion;

use crate::node::{App, Counters, Node};

mod chains;
pub mod dashboard;
mod messages;
pub mod metrics;
mod network;

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

pub(super) fn ok(v: Value) -> Res {
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

pub use crate::octez_time::octez_time;

fn time(t: SystemTime) -> Value {
    Value::String(octez_time(t))
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

/// The routes.
pub fn router<M: App>(node: Arc<Node<M>>) -> Router {
    let registry = Arc::new(metrics::registry(&node));
    Router::new()
        .route("/", get(dashboard::index))
        .route("/dashboard/dashboard.js", get(dashboard::app_js))
        .route("/dashboard/dashboard.css", get(dashboard::app_css))
        .route("/dashboard/snapshot", get(dashboard::snapshot::<M>))
        .route("/version", get(network::version::<M>))
        .route("/network/self", get(network::net_self::<M>))
        .route("/network/version", get(network::net_version::<M>))
        .route("/network/stat", get(network::net_stat::<M>))
        .route("/network/full_stat", get(network::full_stat::<M>))
        .route("/network/log", get(network::net_log::<M>))
        .route("/network/connections", get(network::connections::<M>))
        .route(
            "/network/connections/{peer_id}",
            get(network::connection::<M>).delete(network::kick::<M>),
        )
        .route("/network/peers", get(network::peers::<M>))
        .route(
            "/network/peers/{peer_id}",
            get(network::peer::<M>).patch(network::patch_peer::<M>),
        )
        .route(
            "/network/peers/{peer_id}/banned",
            get(network::peer_banned::<M>),
        )
        .route("/network/peers/{peer_id}/log", get(network::peer_log::<M>))
        .route("/network/points", get(network::points::<M>))
        .route(
            "/network/points/{point}",
            get(network::point_get::<M>)
                .put(network::point_connect::<M>)
                .patch(network::patch_point::<M>),
        )
        .route(
            "/network/points/{point}/banned",
            get(network::point_banned::<M>),
        )
        .route("/network/points/{point}/log", get(network::point_log::<M>))
        .route("/network/greylist/ips", get(network::greylist_ips::<M>))
        .route("/network/greylist/peers", get(network::greylist_peers::<M>))
        .route("/network/greylist", delete(network::greylist_clear::<M>))
        .route("/chains/main/chain_id", get(chains::chain_id::<M>))
        .route("/chains/main/blocks/head/hash", get(chains::head_hash::<M>))
        .route(
            "/chains/main/blocks/head/header/shell",
            get(chains::head_shell_header::<M>),
        )
        .route("/monitor/heads/main", get(chains::monitor_heads::<M>))
        .route("/network/heads", get(chains::network_heads::<M>))
        .route("/messages", get(messages::messages::<M>))
        .route("/messages/broadcast", post(messages::broadcast::<M>))
        .route("/messages/send/{peer_id}", post(messages::send::<M>))
        .route(
            "/metrics",
            get(move |headers, q| metrics::metrics(registry.clone(), headers, q)),
        )
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(cross_site_guard))
        .with_state(node)
}

/// Refuses what a web page the operator happens to visit could make their
/// browser send to the RPC (cross-site request forgery). A request that
/// changes something (POST, PUT, PATCH, DELETE) must say `Content-Type:
/// application/json`: an HTML form cannot, and a script of another origin
/// cannot without a CORS preflight, which this server never grants (it
/// sends no `Access-Control-*` header). And it must not say it comes from
/// another origin (`Origin` other than the `Host` it is sent to, or
/// `Sec-Fetch-Site` other than `same-origin` or `none`). `octez-client`,
/// `curl -H 'Content-Type: application/json'` and the dashboard pass.
/// Every answer also forbids framing (the dashboard's buttons must not be
/// clickjacked) and content sniffing.
pub async fn cross_site_guard(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(e) = check_cross_site(&req) {
        return e.into_response();
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    res
}

fn check_cross_site(req: &axum::extract::Request) -> Result<(), ApiError> {
    let m = req.method();
    if matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let h = req.headers();
    let text = |name: header::HeaderName| h.get(name).and_then(|v| v.to_str().ok());
    let json = text(header::CONTENT_TYPE).is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{m} needs the header Content-Type: application/json (refused as a possible cross-site request)"
            ),
        ));
    }
    let forbidden = |why: String| Err(ApiError(StatusCode::FORBIDDEN, why));
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if !matches!(site, "same-origin" | "none") {
            return forbidden(format!("{m} from a {site:?} page is refused"));
        }
    }
    if let Some(origin) = text(header::ORIGIN) {
        // `scheme://host[:port]`, to compare with `Host`.
        let authority = origin.split_once("://").map(|(_, a)| a);
        let host = text(header::HOST);
        if authority.is_none() || authority != host {
            return forbidden(format!(
                "{m} from origin {origin:?} is refused: not this server's"
            ));
        }
    }
    Ok(())
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
