//! The CONNECT checks that the spec leaves to the server: connection limits, client identifier rules,
//! keepalive cap, will validity and authentication, and the CONNACK properties we advertise.
//!
//! Invariant: a refused CONNECT always gets a CONNACK whose reason the client's protocol level can
//! express (the encoder maps 5.0 reasons to 3.1.1 return codes), and authentication never runs the
//! slow password hash on a reactor thread.

use super::{reason_label, Accepted};
use crate::broker::Broker;
use crate::config::MqttConfig;
use crate::connection::{ClientIo, Error};
use crate::topic;
use fleetmq_codec::{self as codec, ConnAck, ConnAckProperties, Connect, Packet, Protocol, QoS, ReasonCode};
use std::net::SocketAddr;
use std::sync::Arc;

/// A CONNECT that passed every check.
pub(super) struct Admitted {
    pub connect: Box<Connect>,
    pub username: Option<String>,
    pub connack_props: ConnAckProperties,
    /// Keepalive enforced, in seconds (0: none).
    pub keepalive: u16,
}

/// Answers an undecodable first packet: a CONNACK where the protocol lets us say why, then close.
pub(super) async fn refuse_decode_error(broker: &Broker, io: &mut ClientIo, e: &Error, peer: SocketAddr) {
    let Error::Codec(c) = e else { return };
    broker.stats.malformed(reason_label(c.reason_code()));
    tracing::debug!(%peer, error = %c, "refusing CONNECT");
    let (protocol, reason) = match c {
        codec::Error::UnsupportedProtocol(_) => (Protocol::V3_1_1, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        codec::Error::Connect { protocol: Protocol::V5, error } => (Protocol::V5, error.reason_code()),
        _ => return,
    };
    let connack = ConnAck { reason, ..Default::default() };
    io.write_now(&Packet::ConnAck(connack), protocol).await;
}

fn refuse(reason: ReasonCode) -> ConnAck {
    ConnAck { reason, ..Default::default() }
}

/// Runs the server-side CONNECT checks and authentication.
pub(super) async fn admit(
    broker: &Arc<Broker>,
    mut connect: Box<Connect>,
    accepted: &Accepted,
) -> Result<Admitted, ConnAck> {
    let config = &broker.config;
    let v5 = connect.protocol.is_v5();
    if let Some(reason) = accepted.refuse {
        return Err(refuse(reason));
    }
    if broker.is_shutting_down() {
        return Err(refuse(ReasonCode::SERVER_UNAVAILABLE));
    }
    let mut assigned = None;
    let mut server_keep_alive = None;
    if connect.client_id.is_empty() {
        let allowed = match connect.protocol {
            Protocol::V5 => true,
            Protocol::V3_1_1 => connect.clean_start,
            Protocol::V3_1 => false,
        };
        if !allowed {
            return Err(refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID));
        }
        connect.client_id = assign_client_id();
        if v5 {
            assigned = Some(connect.client_id.clone());
        }
    }
    if connect.properties.authentication_method.is_some() {
        broker.stats.auth_failure();
        return Err(refuse(ReasonCode::BAD_AUTHENTICATION_METHOD));
    }
    let max_ka = config.mqtt.max_keepalive;
    let ka = connect.keep_alive;
    let over_cap = ka > max_ka || (ka == 0 && max_ka < u16::MAX);
    let keepalive = if over_cap { max_ka } else { ka };
    if over_cap {
        if v5 {
            server_keep_alive = Some(max_ka);
        } else {
            broker.stats.limit_rejection("max_keepalive");
            return Err(refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID));
        }
    }
    if let Some(will) = &connect.will {
        if topic::validate_topic_name(&will.topic, &broker.topic_limits).is_err() {
            return Err(refuse(ReasonCode::TOPIC_NAME_INVALID));
        }
        if (will.qos as u8) > config.mqtt.max_qos {
            return Err(refuse(ReasonCode::QOS_NOT_SUPPORTED));
        }
        if will.retain && !config.mqtt.retain_available {
            return Err(refuse(ReasonCode::RETAIN_NOT_SUPPORTED));
        }
    }
    let username = authenticate(broker, &connect, accepted).await?;
    let connack_props = connack_properties(&config.mqtt, connect.protocol, assigned, server_keep_alive);
    Ok(Admitted { connect, username, connack_props, keepalive })
}

/// The CONNACK properties a node advertises (5.0; none for older protocols). A shard computes the
/// same ones for a client a front admitted.
pub fn connack_properties(
    m: &MqttConfig,
    protocol: Protocol,
    assigned_client_identifier: Option<String>,
    server_keep_alive: Option<u16>,
) -> ConnAckProperties {
    let mut props = ConnAckProperties::default();
    if protocol.is_v5() {
        props.assigned_client_identifier = assigned_client_identifier;
        props.server_keep_alive = server_keep_alive;
        props.receive_maximum = Some(m.receive_maximum);
        props.maximum_packet_size = Some(m.max_packet_size);
        props.topic_alias_maximum = Some(m.topic_alias_maximum);
        props.retain_available = Some(m.retain_available);
        if m.max_qos < 2 {
            props.maximum_qos = QoS::from_u8(m.max_qos);
        }
        props.wildcard_subscription_available = Some(true);
        props.subscription_identifiers_available = Some(true);
        props.shared_subscription_available = Some(true);
    }
    props
}

/// Decides who the client is: certificate CN, or username/password against the password file.
async fn authenticate(broker: &Arc<Broker>, connect: &Connect, accepted: &Accepted) -> Result<Option<String>, ConnAck> {
    if let Some(cn) = &accepted.cert_username {
        return Ok(Some(cn.clone()));
    }
    let Some(username) = connect.username.clone() else {
        if broker.config.auth.allow_anonymous {
            return Ok(None);
        }
        broker.stats.auth_failure();
        return Err(refuse(ReasonCode::NOT_AUTHORIZED));
    };
    if broker.passwords.is_none() {
        return Ok(Some(username));
    }
    let password = connect.password.clone().unwrap_or_default();
    let b = broker.clone();
    let user = username.clone();
    let ok = tokio::task::spawn_blocking(move || b.passwords.as_ref().is_some_and(|p| p.verify(&user, &password)))
        .await
        .unwrap_or(false);
    if ok {
        Ok(Some(username))
    } else {
        broker.stats.auth_failure();
        tracing::info!(%username, peer = %accepted.peer, "authentication failed");
        Err(refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD))
    }
}

/// A fresh client identifier for clients that sent an empty one.
fn assign_client_id() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("fleetmq-{n:016x}")
}
