//! Per-packet MQTT 5.0 property writers.
//!
//! Each property struct emits exactly the properties that are set, in identifier order, with user
//! properties last in their original order. Values are written as given: the encoder only rejects
//! what cannot be represented on the wire (over-long strings, identifiers above 268435455).

use super::*;
use crate::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties, PublishProperties,
    SubscribeProperties, WillProperties,
};

impl Emit for ConnectProperties {
    fn emit<S: Sink>(&self, s: &mut S) {
        put_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_str(s, AUTHENTICATION_METHOD, self.authentication_method.as_deref());
        put_bin(s, AUTHENTICATION_DATA, self.authentication_data.as_deref());
        put_bool(s, REQUEST_PROBLEM_INFORMATION, self.request_problem_information);
        put_bool(s, REQUEST_RESPONSE_INFORMATION, self.request_response_information);
        put_u16(s, RECEIVE_MAXIMUM, self.receive_maximum);
        put_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_u32(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_users(s, &self.user_properties);
    }
}

impl Emit for WillProperties {
    fn emit<S: Sink>(&self, s: &mut S) {
        put_u8(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        put_u32(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_str(s, CONTENT_TYPE, self.content_type.as_deref());
        put_str(s, RESPONSE_TOPIC, self.response_topic.as_deref());
        put_bin(s, CORRELATION_DATA, self.correlation_data.as_deref());
        put_u32(s, WILL_DELAY_INTERVAL, self.will_delay_interval);
        put_users(s, &self.user_properties);
    }
}

impl Emit for ConnAckProperties {
    fn emit<S: Sink>(&self, s: &mut S) {
        put_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_str(s, ASSIGNED_CLIENT_IDENTIFIER, self.assigned_client_identifier.as_deref());
        put_u16(s, SERVER_KEEP_ALIVE, self.server_keep_alive);
        put_str(s, AUTHENTICATION_METHOD, self.authentication_method.as_deref());
        put_bin(s, AUTHENTICATION_DATA, self.authentication_data.as_deref());
        put_str(s, RESPONSE_INFORMATION, self.response_information.as_deref());
        put_str(s, SERVER_REFERENCE, self.server_reference.as_deref());
        put_str(s, REASON_STRING, self.reason_string.as_deref());
        put_u16(s, RECEIVE_MAXIMUM, self.receive_maximum);
        put_u16(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_u8(s, MAXIMUM_QOS, self.maximum_qos.map(|q| q as u8));
        put_bool(s, RETAIN_AVAILABLE, self.retain_available);
        put_u32(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_bool(s, WILDCARD_SUBSCRIPTION_AVAILABLE, self.wildcard_subscription_available);
        put_bool(s, SUBSCRIPTION_IDENTIFIER_AVAILABLE, self.subscription_identifiers_available);
        put_bool(s, SHARED_SUBSCRIPTION_AVAILABLE, self.shared_subscription_available);
        put_users(s, &self.user_properties);
    }
}

impl Emit for PublishProperties {
    fn emit<S: Sink>(&self, s: &mut S) {
        put_u8(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        put_u32(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_str(s, CONTENT_TYPE, self.content_type.as_deref());
        put_str(s, RESPONSE_TOPIC, self.response_topic.as_deref());
        put_bin(s, CORRELATION_DATA, self.correlation_data.as_deref());
        for &id in &self.subscription_identifiers {
            s.byte(SUBSCRIPTION_IDENTIFIER);
            s.varint(id as usize);
        }
        put_u16(s, TOPIC_ALIAS, self.topic_alias);
        put_users(s, &self.user_properties);
    }
}

impl Emit for AckProperties {
    fn emit<S: Sink>(&self, s: &mut S) {
        put_str(s, REASON_STRING, self.reason_string.as_deref());
        put_users(s, &self.user_properties);
    }
}

impl Emit for SubscribeProperties {
    fn emit<S: Sink>(&self, s: &mut S) {
        if let Some(id) = self.subscription_identifier {
            s.byte(SUBSCRIPTION_IDENTIFIER);
            s.varint(id as usize);
        }
        put_users(s, &self.user_properties);
    }
}

/// The UNSUBSCRIBE property block (user properties only).
impl Emit for [UserProperty] {
    fn emit<S: Sink>(&self, s: &mut S) {
        put_users(s, self);
    }
}

impl Emit for DisconnectProperties {
    fn emit<S: Sink>(&self, s: &mut S) {
        put_u32(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_str(s, SERVER_REFERENCE, self.server_reference.as_deref());
        put_str(s, REASON_STRING, self.reason_string.as_deref());
        put_users(s, &self.user_properties);
    }
}

impl Emit for AuthProperties {
    fn emit<S: Sink>(&self, s: &mut S) {
        put_str(s, AUTHENTICATION_METHOD, self.authentication_method.as_deref());
        put_bin(s, AUTHENTICATION_DATA, self.authentication_data.as_deref());
        put_str(s, REASON_STRING, self.reason_string.as_deref());
        put_users(s, &self.user_properties);
    }
}
