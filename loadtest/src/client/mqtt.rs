//! rumqttc behind one interface: [`connect`] returns a request handle ([`MqttClient`]) and an event
//! source ([`MqttEvents`]) for either protocol version, with events reduced to what the drivers count.
//!
//! Invariants: `connect` returns only after CONNACK success (bounded by the endpoint's connect
//! timeout); the event source reports the first error and the caller stops polling (rumqttc would
//! otherwise reconnect); QoS 1/2 completion means PUBACK / PUBCOMP with a success reason code.

use super::{Endpoint, Failure};
use crate::scenario::MqttVersion;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{
    ConnectProperties, PubAckReason, PubCompReason, PubRecReason, SubscribeReasonCode as SubCode5,
};
use rumqttc::{Outgoing, SubscribeReasonCode as SubCode4, TlsConfiguration, Transport};
use std::time::Duration;

/// Per-client session settings.
#[derive(Debug, Clone)]
pub struct Session {
    /// Client identifier.
    pub client_id: String,
    /// Clean session (3.1.1) / clean start (5.0).
    pub clean: bool,
    /// Max unacknowledged outgoing QoS 1/2 publishes.
    pub inflight: u16,
    /// Largest packet accepted or sent.
    pub max_packet: usize,
    /// Request channel capacity (small keeps client-side queueing out of latency).
    pub capacity: usize,
}

/// Session expiry requested for persistent 5.0 sessions, in seconds.
pub const SESSION_EXPIRY_SECS: u32 = 300;

/// What the drivers care about from the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An incoming application message.
    Publish(Bytes),
    /// A PUBLISH was written to the socket (completion for QoS 0).
    Written,
    /// PUBACK / PUBCOMP with success (completion for QoS 1 / 2).
    Completed,
    /// PUBACK / PUBREC with a failure reason (the message will not be delivered).
    Rejected(String),
    /// SUBACK: granted, or the refusal reason.
    SubAck(Result<(), String>),
    /// Anything else (pings, PUBREL, …).
    Other,
}

/// Request handle.
#[derive(Clone)]
pub enum MqttClient {
    /// 3.1.1.
    V4(rumqttc::AsyncClient),
    /// 5.0.
    V5(rumqttc::v5::AsyncClient),
}

/// Event source.
pub enum MqttEvents {
    /// 3.1.1.
    V4(Box<rumqttc::EventLoop>),
    /// 5.0.
    V5(Box<rumqttc::v5::EventLoop>),
}

fn qos4(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS;
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn transport(ep: &Endpoint) -> Transport {
    match &ep.tls {
        Some(cfg) => Transport::Tls(TlsConfiguration::Rustls(cfg.clone())),
        None => Transport::Tcp,
    }
}

/// Connects and waits for a successful CONNACK.
pub async fn connect(ep: &Endpoint, s: &Session) -> Result<(MqttClient, MqttEvents), Failure> {
    let timeout_secs = ep.connect_timeout.as_secs().max(1);
    let (client, mut events) = match ep.mqtt {
        MqttVersion::V311 => {
            let mut o = rumqttc::MqttOptions::new(&s.client_id, &ep.host, ep.port);
            o.set_clean_session(s.clean)
                .set_keep_alive(ep.keepalive.max(Duration::from_secs(5)))
                .set_inflight(s.inflight.max(1))
                .set_max_packet_size(s.max_packet, s.max_packet)
                .set_transport(transport(ep));
            if let Some((u, p)) = &ep.credentials {
                o.set_credentials(u, p);
            }
            let (c, mut el) = rumqttc::AsyncClient::new(o, s.capacity.max(1));
            el.network_options.set_connection_timeout(timeout_secs);
            (MqttClient::V4(c), MqttEvents::V4(Box::new(el)))
        }
        MqttVersion::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(&s.client_id, &ep.host, ep.port);
            let mut props = ConnectProperties::new();
            props.max_packet_size = Some(u32::try_from(s.max_packet).unwrap_or(u32::MAX));
            if !s.clean {
                props.session_expiry_interval = Some(SESSION_EXPIRY_SECS);
            }
            o.set_clean_start(s.clean)
                .set_keep_alive(ep.keepalive.max(Duration::from_secs(5)))
                .set_connect_properties(props)
                .set_outgoing_inflight_upper_limit(s.inflight.max(1))
                .set_connection_timeout(timeout_secs)
                .set_transport(transport(ep));
            if let Some((u, p)) = &ep.credentials {
                o.set_credentials(u, p);
            }
            let (c, el) = rumqttc::v5::AsyncClient::new(o, s.capacity.max(1));
            (MqttClient::V5(c), MqttEvents::V5(Box::new(el)))
        }
    };
    let first = tokio::time::timeout(ep.connect_timeout, events.poll_raw()).await.map_err(|_| Failure::Timeout)?;
    match first? {
        Raw::ConnAck => Ok((client, events)),
        Raw::Other(what) => Err(Failure::Protocol(format!("expected CONNACK, got {what}"))),
    }
}

enum Raw {
    ConnAck,
    Other(String),
}

impl MqttEvents {
    async fn poll_raw(&mut self) -> Result<Raw, Failure> {
        match self {
            MqttEvents::V4(el) => match el.poll().await.map_err(|e| classify4(&e))? {
                rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) => Ok(Raw::ConnAck),
                other => Ok(Raw::Other(format!("{other:?}"))),
            },
            MqttEvents::V5(el) => match el.poll().await.map_err(|e| classify5(&e))? {
                rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(_)) => Ok(Raw::ConnAck),
                other => Ok(Raw::Other(format!("{other:?}"))),
            },
        }
    }

    /// Next event; an error means the connection is gone (stop polling).
    pub async fn next(&mut self) -> Result<Event, Failure> {
        match self {
            MqttEvents::V4(el) => {
                use rumqttc::Packet as P;
                Ok(match el.poll().await.map_err(|e| classify4(&e))? {
                    rumqttc::Event::Incoming(P::Publish(p)) => Event::Publish(p.payload),
                    rumqttc::Event::Incoming(P::PubAck(_) | P::PubComp(_)) => Event::Completed,
                    rumqttc::Event::Incoming(P::SubAck(ack)) => Event::SubAck(match ack.return_codes.first() {
                        Some(SubCode4::Success(_)) => Ok(()),
                        Some(SubCode4::Failure) => Err("SUBACK 0x80".to_string()),
                        None => Err("SUBACK without return code".to_string()),
                    }),
                    rumqttc::Event::Outgoing(Outgoing::Publish(_)) => Event::Written,
                    _ => Event::Other,
                })
            }
            MqttEvents::V5(el) => {
                use rumqttc::v5::Incoming as P;
                Ok(match el.poll().await.map_err(|e| classify5(&e))? {
                    rumqttc::v5::Event::Incoming(P::Publish(p)) => Event::Publish(p.payload),
                    rumqttc::v5::Event::Incoming(P::PubAck(a)) => match a.reason {
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Event::Completed,
                        r => Event::Rejected(format!("PUBACK {r:?}")),
                    },
                    rumqttc::v5::Event::Incoming(P::PubRec(a)) => match a.reason {
                        PubRecReason::Success | PubRecReason::NoMatchingSubscribers => Event::Other,
                        r => Event::Rejected(format!("PUBREC {r:?}")),
                    },
                    rumqttc::v5::Event::Incoming(P::PubComp(a)) => match a.reason {
                        PubCompReason::Success => Event::Completed,
                        r => Event::Rejected(format!("PUBCOMP {r:?}")),
                    },
                    rumqttc::v5::Event::Incoming(P::SubAck(ack)) => Event::SubAck(match ack.return_codes.first() {
                        Some(SubCode5::Success(_)) => Ok(()),
                        Some(code) => Err(format!("SUBACK {code:?}")),
                        None => Err("SUBACK without reason code".to_string()),
                    }),
                    rumqttc::v5::Event::Incoming(P::Disconnect(d)) => {
                        return Err(Failure::Disconnected(format!("{:?}", d.reason_code)))
                    }
                    rumqttc::v5::Event::Outgoing(Outgoing::Publish(_)) => Event::Written,
                    _ => Event::Other,
                })
            }
        }
    }
}

impl MqttClient {
    /// Queues a publish (waits while the request channel is full).
    pub async fn publish(&self, topic: &str, qos: u8, payload: Vec<u8>) -> Result<(), Failure> {
        let r = match self {
            MqttClient::V4(c) => c.publish(topic, qos4(qos), false, payload).await.map_err(|e| e.to_string()),
            MqttClient::V5(c) => c.publish(topic, qos5(qos), false, payload).await.map_err(|e| e.to_string()),
        };
        r.map_err(|e| Failure::Protocol(format!("client stopped: {e}")))
    }

    /// Queues a subscription.
    pub async fn subscribe(&self, filter: &str, qos: u8) -> Result<(), Failure> {
        let r = match self {
            MqttClient::V4(c) => c.subscribe(filter, qos4(qos)).await.map_err(|e| e.to_string()),
            MqttClient::V5(c) => c.subscribe(filter, qos5(qos)).await.map_err(|e| e.to_string()),
        };
        r.map_err(|e| Failure::Protocol(format!("client stopped: {e}")))
    }

    /// Queues a DISCONNECT without waiting for channel space (best effort at shutdown).
    pub fn disconnect(&self) {
        let _ = match self {
            MqttClient::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            MqttClient::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

fn classify_state(e: &impl std::fmt::Display) -> Failure {
    Failure::Protocol(e.to_string())
}

fn classify4(e: &rumqttc::ConnectionError) -> Failure {
    use rumqttc::ConnectionError as E;
    match e {
        E::ConnectionRefused(code) => Failure::Refused(format!("{} ({code:?})", *code as u8)),
        E::NetworkTimeout | E::FlushTimeout => Failure::Timeout,
        E::Tls(t) => Failure::Tls(t.to_string()),
        E::Io(io) => Failure::from_io(io),
        E::MqttState(rumqttc::StateError::Io(io)) => Failure::from_io(io),
        E::MqttState(s) => classify_state(s),
        E::NotConnAck(p) => Failure::Protocol(format!("expected CONNACK, got {p:?}")),
        E::RequestsDone => Failure::Protocol("client handle dropped".to_string()),
    }
}

fn classify5(e: &rumqttc::v5::ConnectionError) -> Failure {
    use rumqttc::v5::ConnectionError as E;
    match e {
        E::ConnectionRefused(code) => Failure::Refused(format!("{code:?}")),
        E::Timeout(_) => Failure::Timeout,
        E::Tls(t) => Failure::Tls(t.to_string()),
        E::Io(io) => Failure::from_io(io),
        E::MqttState(rumqttc::v5::StateError::Io(io)) => Failure::from_io(io),
        E::MqttState(s) => classify_state(s),
        E::NotConnAck(p) => Failure::Protocol(format!("expected CONNACK, got {p:?}")),
        E::RequestsDone => Failure::Protocol("client handle dropped".to_string()),
    }
}
