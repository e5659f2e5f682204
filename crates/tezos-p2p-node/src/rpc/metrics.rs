//! `/metrics`: the pool's metrics ([`tezos_p2p::metrics`]) and the node's
//! counters in one [`prometheus_client`] registry, in the Prometheus text
//! format (0.0.4) or, when the `Accept` header prefers it, in OpenMetrics.
//!
//! The node's counters, read at every scrape from [`Counters`]: Octez's
//! `P2p_metrics` (names, help texts and what they count):
//!
//! * `octez_p2p_messages_user_message_sent`: `send` and `try_send` calls
//!   (Octez's `P2p_conn.write`, `write_now`), whether or not the message
//!   is queued;
//! * `octez_p2p_messages_broadcast_message_sent`: one per connection a
//!   broadcast is written to (Octez's `write_encoded_now`, one per
//!   connection), whether it is queued or dropped on a full queue (the
//!   drops are the pool's `tezos_p2p_broadcast_dropped`); broadcasts are
//!   not in `user_message_sent`, as in Octez;
//! * `octez_p2p_messages_user_message_received`: application messages
//!   received;
//! * `octez_p2p_messages_user_message_received_error`: reads of a
//!   connection's messages that fail, that is connections ending under
//!   the application (Octez's `P2p_conn.read` failing on the closed pipe);
//! * `octez_p2p_messages_{advertise,bootstrap}_{sent,received}`,
//!   `octez_p2p_messages_swap_{requests,ack}_{sent,received}`,
//!   `octez_p2p_swap_{ignored,success,fail}`: from the pool's events.
//!
//! and the node's own: `tezos_p2p_node_messages_{received,sent}` by `kind`
//! (Octez's case title) and `tezos_p2p_node_user_message_received_bytes`.
//!
//! Every counter's samples end in `_total` (`prometheus_client` follows
//! OpenMetrics): `octez_p2p_messages_user_message_sent_total` where Octez
//! writes `octez_p2p_messages_user_message_sent`.

use std::sync::Weak;

use axum::http::HeaderMap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tezos_p2p::events::EventKind;

use super::*;

/// The `Content-Type` of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The node's registry: the pool's metrics and the node's counters, read
/// at every scrape. It holds the node weakly.
pub fn registry<M: App>(node: &Arc<Node<M>>) -> Registry {
    let mut registry = Registry::default();
    tezos_p2p::metrics::register(&node.net, &mut registry);
    registry.register_collector(Box::new(NodeCollector {
        node: Arc::downgrade(node),
    }));
    registry
}

struct NodeCollector<M: App> {
    node: Weak<Node<M>>,
}

impl<M: App> std::fmt::Debug for NodeCollector<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").finish_non_exhaustive()
    }
}

impl<M: App> Collector for NodeCollector<M> {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let Some(node) = self.node.upgrade() else {
            return Ok(());
        };
        let c = &node.counters;
        // Octez's swap, bootstrap and advertise counters are the pool's
        // exact counts of those events.
        let events = |kind: EventKind| node.net.event_count(kind);
        for (name, help, value) in [
            (
                "octez_p2p_messages_broadcast_message_sent",
                "Number of user message sent by broadcasting",
                Counters::get(&c.broadcast_message_sent),
            ),
            (
                "octez_p2p_messages_user_message_sent",
                "Number of user message sent",
                Counters::get(&c.user_message_sent),
            ),
            (
                "octez_p2p_messages_user_message_received",
                "Number of user message received",
                Counters::get(&c.user_message_received),
            ),
            (
                "octez_p2p_messages_user_message_received_error",
                "Number of user message received that resulted in error",
                Counters::get(&c.user_message_received_error),
            ),
            (
                "octez_p2p_messages_advertise_received",
                "Number of advertise received",
                events(EventKind::AdvertiseReceived),
            ),
            (
                "octez_p2p_messages_advertise_sent",
                "Number of advertise sent",
                events(EventKind::AdvertiseSent),
            ),
            (
                "octez_p2p_messages_bootstrap_received",
                "Number of bootstrap received",
                events(EventKind::BootstrapReceived),
            ),
            (
                "octez_p2p_messages_bootstrap_sent",
                "Number of bootstrap sent",
                events(EventKind::BootstrapSent),
            ),
            (
                "octez_p2p_messages_swap_requests_sent",
                "Number of swap sent",
                events(EventKind::SwapRequestSent),
            ),
            (
                "octez_p2p_messages_swap_requests_received",
                "Number of swap received",
                events(EventKind::SwapRequestReceived),
            ),
            (
                "octez_p2p_messages_swap_ack_sent",
                "Number of swap acks sent",
                events(EventKind::SwapAckSent),
            ),
            (
                "octez_p2p_messages_swap_ack_received",
                "Number of swap acks received",
                events(EventKind::SwapAckReceived),
            ),
            (
                "octez_p2p_swap_ignored",
                "Number of ignored swap",
                events(EventKind::SwapRequestIgnored),
            ),
            (
                "octez_p2p_swap_success",
                "Number of successful swap",
                events(EventKind::SwapSuccess),
            ),
            (
                "octez_p2p_swap_fail",
                "Number of failed swap",
                events(EventKind::SwapFailure),
            ),
            (
                "tezos_p2p_node_user_message_received_bytes",
                "Bytes of the application messages received",
                Counters::get(&c.user_bytes_received),
            ),
        ] {
            let v = ConstCounter::new(value);
            v.encode(e.encode_descriptor(name, help, None, v.metric_type())?)?;
        }
        let kinds = c.kinds();
        for (dir, help) in [
            ("received", "Application messages received, by kind"),
            ("sent", "Application messages queued for sending, by kind"),
        ] {
            let name = format!("tezos_p2p_node_messages_{dir}");
            let mut family = e.encode_descriptor(&name, help, None, MetricType::Counter)?;
            for (kind, n) in &kinds {
                let v = ConstCounter::new(if dir == "sent" { n.sent } else { n.received });
                v.encode(family.encode_family(&[("kind", *kind)])?)?;
            }
        }
        Ok(())
    }
}

/// Whether `Accept` prefers OpenMetrics to the Prometheus text format:
/// an `application/openmetrics-text` range with a non-zero quality at
/// least that of `text/plain`.
pub fn wants_openmetrics(headers: &HeaderMap) -> bool {
    let (mut om, mut plain) = (None::<f32>, None::<f32>);
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let slot = match media.as_str() {
                "application/openmetrics-text" => &mut om,
                "text/plain" => &mut plain,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |s: f32| s.max(q)));
        }
    }
    om.is_some_and(|om| om > 0.0 && om >= plain.unwrap_or(0.0))
}

/// The exposition of `registry` in the format `Accept` asks for, and its
/// `Content-Type`.
pub fn exposition(registry: &Registry, headers: &HeaderMap) -> (&'static str, String) {
    let mut out = String::new();
    if wants_openmetrics(headers) {
        let _ = text::encode(&mut out, registry);
        (OPENMETRICS, out)
    } else {
        let _ = prometheus_text::encode(&mut out, registry);
        (prometheus_text::CONTENT_TYPE, out)
    }
}

pub(super) async fn metrics(registry: Arc<Registry>, headers: HeaderMap, q: Q) -> Res {
    query(q, &[])?;
    let (content_type, body) = exposition(&registry, &headers);
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
