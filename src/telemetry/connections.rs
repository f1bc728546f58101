//! `ConnectionMetrics`: each listener's open connections, failed handshakes and closes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::model::listener::Listener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    listener: &'static str,
    reason: &'static str,
}

/// Handles of one listener's connection metrics.
#[derive(Clone, Debug, Default)]
pub struct ConnMetrics {
    pub open: Gauge,
    pub handshake_errors: Counter,
    pub handshake_timeouts: Counter,
    /// Connections closed at accept: their address already held its limit.
    pub refused_per_address: Counter,
    /// Connections closed because a request head did not arrive within `header_timeout`.
    pub header_timeouts: Counter,
    /// Connections closed after `idle_timeout` without a request.
    pub idle_closes: Counter,
    /// Connections closed because the client took nothing for `send_timeout`.
    pub send_timeouts: Counter,
}

/// The connection families; a listener's series exist once it asked for its handles.
pub struct ConnectionMetrics {
    connections: Family<ListenerLabels, Gauge>,
    handshakes: Family<ReasonLabels, Counter>,
    closes: Family<ReasonLabels, Counter>,
}

impl ConnectionMetrics {
    pub fn register(registry: &mut Registry) -> ConnectionMetrics {
        let connections = Family::<ListenerLabels, Gauge>::default();
        registry.register("open_connections", "Connections open per listener", connections.clone());
        let handshakes = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            handshakes.clone(),
        );
        let closes = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections the proxy closed, by reason: per_address (refused at accept), header_timeout, idle, send_timeout",
            closes.clone(),
        );
        ConnectionMetrics {
            connections,
            handshakes,
            closes,
        }
    }

    /// The connection metrics of one listener.
    pub fn listener(&self, listener: Listener) -> ConnMetrics {
        let listener = listener.as_str();
        // One lookup per statement: a family's read guard must be gone before the next
        // lookup, which may need its write lock.
        let open = self.connections.get_or_create(&ListenerLabels { listener }).clone();
        let reason = |reason| ReasonLabels { listener, reason };
        let handshake_errors = self.handshakes.get_or_create(&reason("error")).clone();
        let handshake_timeouts = self.handshakes.get_or_create(&reason("timeout")).clone();
        let refused_per_address = self.closes.get_or_create(&reason("per_address")).clone();
        let header_timeouts = self.closes.get_or_create(&reason("header_timeout")).clone();
        let idle_closes = self.closes.get_or_create(&reason("idle")).clone();
        let send_timeouts = self.closes.get_or_create(&reason("send_timeout")).clone();
        ConnMetrics {
            open,
            handshake_errors,
            handshake_timeouts,
            refused_per_address,
            header_timeouts,
            idle_closes,
            send_timeouts,
        }
    }
}
