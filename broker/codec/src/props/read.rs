//! Per-packet MQTT 5.0 property readers.
//!
//! Each reader consumes one property block and returns the packet's property struct with every
//! value range rule of the 5.0 specification applied: Receive Maximum, Maximum Packet Size, Topic
//! Alias and Subscription Identifier are never 0; the byte-valued flags (Payload Format Indicator,
//! Request Problem/Response Information, Maximum QoS, the "available" flags) are only 0 or 1;
//! Response Topic is a valid Topic Name; Authentication Data needs an Authentication Method.

use super::*;
use crate::wire::check_topic_name;
use crate::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties, PublishProperties, QoS,
    SubscribeProperties, WillProperties,
};

/// The message of the Protocol Error for a Topic Alias of 0, which the 5.0 specification answers
/// with DISCONNECT 0x94 (Topic Alias invalid) rather than 0x82; see `Error::reason_code`.
pub(crate) const TOPIC_ALIAS_ZERO: &str = "topic alias 0";

/// Identifiers outside the allowed set never reach a reader (checked by `read_block`).
const UNREACHABLE: Error = Error::Malformed("property not allowed in this packet");

fn flag(v: u8, msg: &'static str) -> Result<bool> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::Protocol(msg)),
    }
}

fn payload_format(v: u8) -> Result<u8> {
    match v {
        0 | 1 => Ok(v),
        _ => Err(Error::Protocol("payload format indicator must be 0 or 1")),
    }
}

fn user(r: &mut Reader) -> Result<UserProperty> {
    let name = r.string()?;
    let value = r.string()?;
    Ok((name, value))
}

fn response_topic(r: &mut Reader) -> Result<String> {
    let topic = r.string()?;
    // [MQTT-3.3.2-14]: the Response Topic is a Topic Name and must not contain wildcards.
    check_topic_name(&topic).map_err(|_| Error::Protocol("invalid response topic"))?;
    Ok(topic)
}

fn subscription_identifier(r: &mut Reader) -> Result<u32> {
    match r.varint()? {
        0 => Err(Error::Protocol("subscription identifier 0")),
        id => Ok(id),
    }
}

pub(crate) fn connect(r: &mut Reader) -> Result<ConnectProperties> {
    let mut p = ConnectProperties::default();
    read_block(r, CONNECT, |id, v| {
        match id {
            SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(v.u32()?),
            RECEIVE_MAXIMUM => match v.u16()? {
                0 => return Err(Error::Protocol("receive maximum 0")),
                n => p.receive_maximum = Some(n),
            },
            MAXIMUM_PACKET_SIZE => match v.u32()? {
                0 => return Err(Error::Protocol("maximum packet size 0")),
                n => p.maximum_packet_size = Some(n),
            },
            TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(v.u16()?),
            REQUEST_RESPONSE_INFORMATION => {
                let msg = "request response information must be 0 or 1";
                p.request_response_information = Some(flag(v.u8()?, msg)?);
            }
            REQUEST_PROBLEM_INFORMATION => {
                let msg = "request problem information must be 0 or 1";
                p.request_problem_information = Some(flag(v.u8()?, msg)?);
            }
            USER_PROPERTY => p.user_properties.push(user(v)?),
            AUTHENTICATION_METHOD => p.authentication_method = Some(v.string()?),
            AUTHENTICATION_DATA => p.authentication_data = Some(v.binary()?),
            _ => return Err(UNREACHABLE),
        }
        Ok(())
    })?;
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(Error::Protocol("authentication data without authentication method"));
    }
    Ok(p)
}

pub(crate) fn will(r: &mut Reader) -> Result<WillProperties> {
    let mut p = WillProperties::default();
    read_block(r, WILL, |id, v| {
        match id {
            WILL_DELAY_INTERVAL => p.will_delay_interval = Some(v.u32()?),
            PAYLOAD_FORMAT_INDICATOR => p.payload_format_indicator = Some(payload_format(v.u8()?)?),
            MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(v.u32()?),
            CONTENT_TYPE => p.content_type = Some(v.string()?),
            RESPONSE_TOPIC => p.response_topic = Some(response_topic(v)?),
            CORRELATION_DATA => p.correlation_data = Some(v.binary()?),
            USER_PROPERTY => p.user_properties.push(user(v)?),
            _ => return Err(UNREACHABLE),
        }
        Ok(())
    })?;
    Ok(p)
}

pub(crate) fn connack(r: &mut Reader) -> Result<ConnAckProperties> {
    let mut p = ConnAckProperties::default();
    read_block(r, CONNACK, |id, v| {
        match id {
            SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(v.u32()?),
            RECEIVE_MAXIMUM => match v.u16()? {
                0 => return Err(Error::Protocol("receive maximum 0")),
                n => p.receive_maximum = Some(n),
            },
            MAXIMUM_QOS => match v.u8()? {
                0 => p.maximum_qos = Some(QoS::AtMostOnce),
                1 => p.maximum_qos = Some(QoS::AtLeastOnce),
                _ => return Err(Error::Protocol("maximum QoS must be 0 or 1")),
            },
            RETAIN_AVAILABLE => {
                p.retain_available = Some(flag(v.u8()?, "retain available must be 0 or 1")?);
            }
            MAXIMUM_PACKET_SIZE => match v.u32()? {
                0 => return Err(Error::Protocol("maximum packet size 0")),
                n => p.maximum_packet_size = Some(n),
            },
            ASSIGNED_CLIENT_IDENTIFIER => p.assigned_client_identifier = Some(v.string()?),
            TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(v.u16()?),
            REASON_STRING => p.reason_string = Some(v.string()?),
            USER_PROPERTY => p.user_properties.push(user(v)?),
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                let msg = "wildcard subscription available must be 0 or 1";
                p.wildcard_subscription_available = Some(flag(v.u8()?, msg)?);
            }
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                let msg = "subscription identifiers available must be 0 or 1";
                p.subscription_identifiers_available = Some(flag(v.u8()?, msg)?);
            }
            SHARED_SUBSCRIPTION_AVAILABLE => {
                let msg = "shared subscription available must be 0 or 1";
                p.shared_subscription_available = Some(flag(v.u8()?, msg)?);
            }
            SERVER_KEEP_ALIVE => p.server_keep_alive = Some(v.u16()?),
            RESPONSE_INFORMATION => p.response_information = Some(v.string()?),
            SERVER_REFERENCE => p.server_reference = Some(v.string()?),
            AUTHENTICATION_METHOD => p.authentication_method = Some(v.string()?),
            AUTHENTICATION_DATA => p.authentication_data = Some(v.binary()?),
            _ => return Err(UNREACHABLE),
        }
        Ok(())
    })?;
    Ok(p)
}

pub(crate) fn publish(r: &mut Reader) -> Result<PublishProperties> {
    let mut p = PublishProperties::default();
    read_block(r, PUBLISH, |id, v| {
        match id {
            PAYLOAD_FORMAT_INDICATOR => p.payload_format_indicator = Some(payload_format(v.u8()?)?),
            MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(v.u32()?),
            TOPIC_ALIAS => match v.u16()? {
                0 => return Err(Error::Protocol(TOPIC_ALIAS_ZERO)),
                n => p.topic_alias = Some(n),
            },
            RESPONSE_TOPIC => p.response_topic = Some(response_topic(v)?),
            CORRELATION_DATA => p.correlation_data = Some(v.binary()?),
            USER_PROPERTY => p.user_properties.push(user(v)?),
            SUBSCRIPTION_IDENTIFIER => p.subscription_identifiers.push(subscription_identifier(v)?),
            CONTENT_TYPE => p.content_type = Some(v.string()?),
            _ => return Err(UNREACHABLE),
        }
        Ok(())
    })?;
    Ok(p)
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
pub(crate) fn ack(r: &mut Reader) -> Result<AckProperties> {
    let mut p = AckProperties::default();
    read_block(r, ACK, |id, v| {
        match id {
            REASON_STRING => p.reason_string = Some(v.string()?),
            USER_PROPERTY => p.user_properties.push(user(v)?),
            _ => return Err(UNREACHABLE),
        }
        Ok(())
    })?;
    Ok(p)
}

pub(crate) fn subscribe(r: &mut Reader) -> Result<SubscribeProperties> {
    let mut p = SubscribeProperties::default();
    read_block(r, SUBSCRIBE, |id, v| {
        match id {
            SUBSCRIPTION_IDENTIFIER => p.subscription_identifier = Some(subscription_identifier(v)?),
            USER_PROPERTY => p.user_properties.push(user(v)?),
            _ => return Err(UNREACHABLE),
        }
        Ok(())
    })?;
    Ok(p)
}

/// UNSUBSCRIBE carries only user properties.
pub(crate) fn unsubscribe(r: &mut Reader) -> Result<Vec<UserProperty>> {
    let mut users = Vec::new();
    read_block(r, UNSUBSCRIBE, |id, v| {
        match id {
            USER_PROPERTY => users.push(user(v)?),
            _ => return Err(UNREACHABLE),
        }
        Ok(())
    })?;
    Ok(users)
}

pub(crate) fn disconnect(r: &mut Reader) -> Result<DisconnectProperties> {
    let mut p = DisconnectProperties::default();
    read_block(r, DISCONNECT, |id, v| {
        match id {
            SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(v.u32()?),
            REASON_STRING => p.reason_string = Some(v.string()?),
            USER_PROPERTY => p.user_properties.push(user(v)?),
            SERVER_REFERENCE => p.server_reference = Some(v.string()?),
            _ => return Err(UNREACHABLE),
        }
        Ok(())
    })?;
    Ok(p)
}

pub(crate) fn auth(r: &mut Reader) -> Result<AuthProperties> {
    let mut p = AuthProperties::default();
    read_block(r, AUTH, |id, v| {
        match id {
            AUTHENTICATION_METHOD => p.authentication_method = Some(v.string()?),
            AUTHENTICATION_DATA => p.authentication_data = Some(v.binary()?),
            REASON_STRING => p.reason_string = Some(v.string()?),
            USER_PROPERTY => p.user_properties.push(user(v)?),
            _ => return Err(UNREACHABLE),
        }
        Ok(())
    })?;
    // 5.0 section 3.15.2.2.2: omitting the Authentication Method is a Protocol Error.
    if p.authentication_method.is_none() {
        return Err(Error::Protocol("AUTH without authentication method"));
    }
    Ok(p)
}
