//! Sample packets: every packet type with every MQTT 5.0 field set, the 5.0 short forms, and the
//! same packets as they exist at the 3.x levels.

use crate::*;
use bytes::Bytes;

fn users() -> Vec<UserProperty> {
    vec![("k".into(), "v".into()), ("k".into(), "second ✓".into())]
}

pub(super) fn ack_props() -> AckProperties {
    AckProperties { reason_string: Some("why".into()), user_properties: users() }
}

pub(super) fn connect_v5() -> Connect {
    Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 30,
        client_id: "device-17".into(),
        will: Some(LastWill {
            topic: "fleet/17/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(5),
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(60),
                content_type: Some("text/plain".into()),
                response_topic: Some("fleet/17/reply".into()),
                correlation_data: Some(Bytes::from_static(&[0, 1, 2])),
                user_properties: users(),
            },
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"secret\0\xff")),
        properties: ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(20),
            maximum_packet_size: Some(65_536),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: users(),
            authentication_method: Some("SCRAM-SHA-256".into()),
            authentication_data: Some(Bytes::from_static(b"client-first")),
        },
    }
}

fn connack_v5() -> ConnAck {
    ConnAck {
        session_present: true,
        reason: ReasonCode::SUCCESS,
        properties: ConnAckProperties {
            session_expiry_interval: Some(7200),
            receive_maximum: Some(100),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            maximum_packet_size: Some(1 << 20),
            assigned_client_identifier: Some("auto-1".into()),
            topic_alias_maximum: Some(16),
            reason_string: Some("welcome".into()),
            user_properties: users(),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(false),
            server_keep_alive: Some(45),
            response_information: Some("resp/".into()),
            server_reference: Some("other:1883".into()),
            authentication_method: Some("SCRAM-SHA-256".into()),
            authentication_data: Some(Bytes::from_static(b"server-final")),
        },
    }
}

pub(super) fn publish_v5() -> Publish {
    Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "fleet/17/telemetry".into(),
        packet_id: 7,
        payload: Bytes::from_static("{\"t\":21.5,\"µ\":1}".as_bytes()),
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(300),
            topic_alias: Some(3),
            response_topic: Some("fleet/17/reply".into()),
            correlation_data: Some(Bytes::from_static(b"corr")),
            user_properties: users(),
            subscription_identifiers: vec![1, 268_435_455, 1],
            content_type: Some("application/json".into()),
        },
    }
}

/// Every packet type with every 5.0 field set, plus the short forms.
fn samples_v5() -> Vec<Packet> {
    vec![
        Packet::Connect(Box::new(connect_v5())),
        Packet::ConnAck(connack_v5()),
        Packet::ConnAck(ConnAck { reason: ReasonCode::NOT_AUTHORIZED, ..Default::default() }),
        Packet::Publish(publish_v5()),
        Packet::Publish(Publish {
            qos: QoS::ExactlyOnce,
            topic: "".into(),
            packet_id: 65_535,
            properties: PublishProperties { topic_alias: Some(3), ..Default::default() },
            ..Default::default()
        }),
        Packet::Publish(Publish { topic: "a".into(), ..Default::default() }),
        Packet::PubAck(PubResp { packet_id: 7, reason: ReasonCode::NO_MATCHING_SUBSCRIBERS, properties: ack_props() }),
        Packet::PubAck(PubResp::new(8)),
        Packet::PubAck(PubResp::with_reason(9, ReasonCode::QUOTA_EXCEEDED)),
        Packet::PubRec(PubResp { packet_id: 10, reason: ReasonCode::PAYLOAD_FORMAT_INVALID, properties: ack_props() }),
        Packet::PubRel(PubResp {
            packet_id: 11,
            reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            properties: ack_props(),
        }),
        Packet::PubComp(PubResp { packet_id: 12, reason: ReasonCode::SUCCESS, properties: ack_props() }),
        Packet::Subscribe(Subscribe {
            packet_id: 13,
            filters: vec![
                SubscribeFilter {
                    filter: "fleet/+/telemetry".into(),
                    options: SubOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: 2,
                    },
                },
                SubscribeFilter {
                    filter: "$share/g/fleet/#".into(),
                    options: SubOptions { qos: QoS::AtLeastOnce, retain_handling: 1, ..Default::default() },
                },
            ],
            properties: SubscribeProperties { subscription_identifier: Some(268_435_455), user_properties: users() },
        }),
        Packet::SubAck(SubAck {
            packet_id: 13,
            reasons: vec![
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::GRANTED_QOS_2,
                ReasonCode::UNSPECIFIED_ERROR,
                ReasonCode::NOT_AUTHORIZED,
            ],
            properties: ack_props(),
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 14,
            filters: vec!["fleet/#".into(), "a/b".into()],
            user_properties: users(),
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 14,
            reasons: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            properties: ack_props(),
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::DISCONNECT_WITH_WILL,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some("bye".into()),
                user_properties: users(),
                server_reference: Some("other:1883".into()),
            },
        }),
        Packet::Disconnect(Disconnect::default()),
        Packet::Disconnect(Disconnect::new(ReasonCode::SESSION_TAKEN_OVER)),
        Packet::Auth(Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: AuthProperties {
                authentication_method: Some("SCRAM-SHA-256".into()),
                authentication_data: Some(Bytes::from_static(b"server-first")),
                reason_string: Some("more".into()),
                user_properties: users(),
            },
        }),
        Packet::Auth(Auth::default()),
    ]
}

/// The form `p` takes at a 3.x level: no properties, reasons that level can express; `None` for
/// AUTH, which does not exist there.
fn at_level(p: Packet, protocol: Protocol) -> Option<Packet> {
    if protocol.is_v5() {
        return Some(p);
    }
    let resp = |r: PubResp| PubResp::new(r.packet_id);
    Some(match p {
        Packet::Connect(mut c) => {
            c.protocol = protocol;
            c.properties = Default::default();
            if let Some(w) = &mut c.will {
                w.properties = Default::default();
            }
            Packet::Connect(c)
        }
        Packet::ConnAck(c) => Packet::ConnAck(ConnAck {
            session_present: c.session_present && protocol != Protocol::V3_1,
            reason: c.reason,
            properties: Default::default(),
        }),
        Packet::Publish(mut p) => {
            p.properties = Default::default();
            if p.topic.is_empty() {
                p.topic = "x".into();
            }
            Packet::Publish(p)
        }
        Packet::PubAck(r) => Packet::PubAck(resp(r)),
        Packet::PubRec(r) => Packet::PubRec(resp(r)),
        Packet::PubRel(r) => Packet::PubRel(resp(r)),
        Packet::PubComp(r) => Packet::PubComp(resp(r)),
        Packet::Subscribe(mut s) => {
            s.properties = Default::default();
            for f in &mut s.filters {
                f.options = SubOptions { qos: f.options.qos, ..Default::default() };
            }
            Packet::Subscribe(s)
        }
        Packet::SubAck(mut s) => {
            s.properties = Default::default();
            s.reasons.retain(|r| r.0 <= 2 || r.0 == 0x80);
            Packet::SubAck(s)
        }
        Packet::Unsubscribe(mut u) => {
            u.user_properties.clear();
            Packet::Unsubscribe(u)
        }
        Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck { packet_id: u.packet_id, ..Default::default() }),
        Packet::Disconnect(_) => Packet::Disconnect(Disconnect::default()),
        Packet::Auth(_) => return None,
        other => other,
    })
}

/// Samples for one level.
pub(super) fn samples(protocol: Protocol) -> Vec<Packet> {
    samples_v5().into_iter().filter_map(|p| at_level(p, protocol)).collect()
}

/// The connection state in which `p` is decoded.
pub(super) fn state_for(p: &Packet, protocol: Protocol) -> Option<Protocol> {
    match p {
        Packet::Connect(_) => None,
        _ => Some(protocol),
    }
}
