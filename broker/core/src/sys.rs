//! The `$SYS/broker/...` statistics topics, published as retained QoS 0 messages on an interval.
//!
//! Invariant: values come from the same counters as the Prometheus metrics, so the two agree; topics
//! follow Mosquitto's names so existing dashboards work.

use crate::broker::Broker;
use crate::ids::ClientId;
use crate::message::Message;
use bytes::Bytes;
use fleetmq_codec::QoS;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Publishes `$SYS` topics every `interval` until shutdown.
pub async fn run(broker: Arc<Broker>, interval: Duration) {
    let mut shutdown = broker.shutdown_signal();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => publish_all(&broker),
        }
    }
}

/// The current `$SYS` topic values.
pub fn snapshot(broker: &Broker) -> Vec<(&'static str, String)> {
    let s = &broker.stats;
    vec![
        ("$SYS/broker/version", format!("FleetMQ {}", env!("CARGO_PKG_VERSION"))),
        ("$SYS/broker/uptime", format!("{} seconds", broker.started.elapsed().as_secs())),
        ("$SYS/broker/clients/connected", s.connected().to_string()),
        ("$SYS/broker/messages/received", s.sys_received.load(Ordering::Relaxed).to_string()),
        ("$SYS/broker/messages/sent", s.sys_sent.load(Ordering::Relaxed).to_string()),
        ("$SYS/broker/messages/dropped", s.sys_dropped.load(Ordering::Relaxed).to_string()),
        ("$SYS/broker/bytes/received", s.sys_bytes_received.load(Ordering::Relaxed).to_string()),
        ("$SYS/broker/bytes/sent", s.sys_bytes_sent.load(Ordering::Relaxed).to_string()),
        ("$SYS/broker/retained messages/count", broker.retained.len().to_string()),
        ("$SYS/broker/subscriptions/count", broker.router.len().to_string()),
        ("$SYS/broker/sessions/count", broker.sessions.len().to_string()),
    ]
}

fn publish_all(broker: &Broker) {
    for (topic, value) in snapshot(broker) {
        let msg = Message {
            topic: Arc::from(topic),
            payload: Bytes::from(value),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
            publisher: ClientId::default(),
            expires_at: None,
            uid: crate::ids::MessageUid::next(),
        };
        let _ = broker.publish_unacknowledged(Arc::new(msg));
    }
}
