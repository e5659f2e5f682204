//! The dashboard: `GET /` serves a single page whose script and style are
//! embedded in the binary (no network fetch, no CDN), and `GET
//! /dashboard/snapshot` the compact JSON it polls. Everything the page
//! changes goes through the existing RPCs (`PATCH /network/peers/…`,
//! `DELETE /network/connections/…`, `PUT /network/points/…`); the live
//! event log is `/network/log`.

use std::collections::{BTreeMap, HashMap};
use std::time::UNIX_EPOCH;

use super::*;

const INDEX_HTML: &str = include_str!("../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../assets/dashboard/dashboard.js");
const APP_CSS: &str = include_str!("../../assets/dashboard/dashboard.css");
const SWARM_HTML: &str = include_str!("../../assets/dashboard/swarm.html");
const SWARM_JS: &str = include_str!("../../assets/dashboard/swarm.js");

/// The page's policy: its own script, style and data only, never framed
/// (its buttons must not be clickjacked).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// At most this many entries of each list (greylists, bans, trusted
/// points and peers) in a snapshot; the count says how many there are.
pub const LIST_CAP: usize = 1000;

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the node's page.
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /dashboard/dashboard.js`.
pub(super) async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /dashboard/dashboard.css`.
pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The swarm's page (served by `swarm --dashboard`).
pub async fn swarm_index() -> Response {
    asset("text/html; charset=utf-8", SWARM_HTML)
}

/// The swarm page's script.
pub async fn swarm_js() -> Response {
    asset("text/javascript; charset=utf-8", SWARM_JS)
}

fn capped<T: ToString>(items: impl ExactSizeIterator<Item = T>) -> Value {
    let total = items.len();
    let list: Vec<String> = items.take(LIST_CAP).map(|x| x.to_string()).collect();
    json!({ "total": total, "list": list })
}

/// `GET /dashboard/snapshot`: everything the page shows but the event log,
/// in one answer whose size is bounded by the connection limit and
/// [`LIST_CAP`].
pub(super) async fn snapshot<M: App>(State(node): St<M>, q: Q) -> Res {
    query(q, &[])?;
    ok(snapshot_json(&node))
}

/// The node's row: who it is, where, since when.
pub fn node_json<M: App>(node: &Node<M>) -> Value {
    let now = SystemTime::now();
    let listening = node.net.listening_port().map(|port| {
        let ip = node
            .net
            .config()
            .listening_addr
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        std::net::SocketAddr::new(ip, port).to_string()
    });
    json!({
        "peer_id": node.net.peer_id().to_string(),
        "network": node.network.to_string(),
        "chain_id": node.chain.as_ref().map(|c| c.chain_id.to_string()),
        "listening": listening,
        "started_at": time(node.started_at),
        "uptime_s": now.duration_since(node.started_at).unwrap_or_default().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
        "network_version": network::version_json(&node.net.announced_version()),
        "connections": node.net.active_connections(),
        "stat": network::stat_json(&node.net.global_stat()),
    })
}

/// The whole snapshot (see [`snapshot`]).
pub fn snapshot_json<M: App>(node: &Node<M>) -> Value {
    let conns = node.net.connections();
    // One pass over the tables: the points and peers by state, the trusted
    // ones, and when each running connection's peer was connected.
    let mut points: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut peers: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut trusted_points: Vec<Point> = Vec::new();
    let mut trusted_peers: Vec<PeerId> = Vec::new();
    let since: HashMap<PeerId, SystemTime> = node.net.with_tables(|t| {
        for p in t.known_points.values() {
            *points.entry(p.state.name()).or_default() += 1;
            if p.trusted {
                trusted_points.push(p.point);
            }
        }
        for p in t.known_peers.values() {
            *peers.entry(p.state.name()).or_default() += 1;
            if p.trusted {
                trusted_peers.push(p.peer_id);
            }
        }
        conns
            .iter()
            .filter_map(|c| {
                let id = c.peer_id();
                Some((id, t.known_peers.get(&id)?.last_established_connection?.1))
            })
            .collect()
    });
    let rows: Vec<Value> = conns
        .iter()
        .map(|c| {
            let i = c.info();
            let s = c.stat();
            let v = &i.announced_version;
            let port = i.id_point.1.unwrap_or(i.remote_socket_port);
            json!({
                "peer_id": i.peer_id.to_string(),
                "point": Point::new(i.id_point.0, port).to_string(),
                "incoming": i.incoming,
                "version": format!(
                    "{} ddb {} p2p {}",
                    v.chain_name, v.distributed_db_version, v.p2p_version
                ),
                "private": i.private_node,
                "disable_mempool": i.remote_metadata.disable_mempool,
                "inflow": s.current_inflow,
                "outflow": s.current_outflow,
                "recv": s.total_recv,
                "sent": s.total_sent,
                "since": since.get(&i.peer_id).map(|t| time(*t)),
            })
        })
        .collect();
    let (grey_ips, grey_peers, banned_ips, banned_peers) = node.net.with_acl(|a| {
        (
            a.greylisted_ips(),
            a.greylisted_peers(),
            a.blacklisted_addrs(),
            a.blacklisted_peers(),
        )
    });
    json!({
        "node": node_json(node),
        "limits": {
            "min_connections": node.net.limits().min_connections,
            "expected_connections": node.net.limits().expected_connections,
            "max_connections": node.net.limits().max_connections,
        },
        "connections": rows,
        "points": points,
        "peers": peers,
        "greylist": {
            "ips": capped(grey_ips.ips.iter().map(|ip| network::ipv6_text(*ip))),
            "not_reliable_since": grey_ips.not_reliable_since.map(time),
            "peers": capped(grey_peers.iter()),
        },
        "banned": {
            "ips": capped(banned_ips.iter().map(|ip| network::ipv6_text(*ip))),
            "peers": capped(banned_peers.iter()),
        },
        "trusted": {
            "points": capped(trusted_points.iter()),
            "peers": capped(trusted_peers.iter()),
        },
        "heads": heads_json(node),
    })
}

/// On a Tezos chain, the best head the node has seen and which connected
/// peers announce it as their head, each with how long after the first of
/// them it did; and how many peers announce each other head.
fn heads_json<M: App>(node: &Node<M>) -> Value {
    let Some(chain) = &node.chain else {
        return Value::Null;
    };
    let best = chain.best();
    let mut by_hash: BTreeMap<String, (i32, usize)> = BTreeMap::new();
    let mut announcers = Vec::new();
    for (peer, h) in chain.peer_heads() {
        if best.as_ref().is_some_and(|b| b.hash == h.hash) {
            announcers.push((peer, h.received_at));
        } else {
            let e = by_hash.entry(h.hash.to_string()).or_insert((h.level, 0));
            e.1 += 1;
        }
    }
    let first = announcers.iter().map(|(_, t)| *t).min();
    announcers.sort_by_key(|(_, t)| *t);
    let best = best.map(|b| {
        let ts = b.header.timestamp;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        json!({
            "hash": b.hash.to_string(),
            "level": b.header.level,
            "timestamp": crate::octez_time::octez_protocol_time(ts),
            "age_s": now.saturating_sub(ts),
            "first_seen": first.map(time),
            "announced_by": announcers.iter().map(|(p, t)| json!({
                "peer_id": p.to_string(),
                "after_ms": first.and_then(|f| t.duration_since(f).ok()).map_or(0, |d| d.as_millis() as u64),
            })).collect::<Vec<_>>(),
        })
    });
    let mut others: Vec<Value> = by_hash
        .into_iter()
        .map(|(hash, (level, peers))| json!({ "hash": hash, "level": level, "peers": peers }))
        .collect();
    others.sort_by_key(|v| std::cmp::Reverse(v["peers"].as_u64()));
    others.truncate(10);
    json!({ "best": best, "others": others })
}
