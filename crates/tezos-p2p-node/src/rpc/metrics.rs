//! `/metrics`: Prometheus text with Octez's names.

use super::*;

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

pub(super) async fn metrics<M: App>(State(node): St<M>, q: Q) -> Res {
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
