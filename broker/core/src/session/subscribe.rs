//! SUBSCRIBE and UNSUBSCRIBE handling of a session task: filter validation, authorization, limits,
//! router updates and retained-message delivery per the subscription options.
//!
//! Invariants: the session's own subscription map and the router agree after every packet; a
//! SUBACK carries exactly one reason per requested filter; retained messages are queued after the
//! SUBACK (behind it in the deferred queue) so the client sees the acknowledgement first, and never
//! for shared subscriptions; those kept only in the store are read on the blocking pool, never on
//! the reactor.

use super::flow::Deferred;
use super::task::SessionTask;
use crate::broker::{Found, SubEntry};
use crate::message::{Delivery, Message};
use crate::topic::{self, Filter};
use fleetmq_codec::{AckProperties, Packet, QoS, ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Splits a full filter into (share group, filter the router matches on).
pub(super) fn split(filter: &str) -> (Option<&str>, &str) {
    match topic::parse_filter(filter) {
        Filter::Shared { group, filter } => (Some(group), filter),
        Filter::Normal(f) => (None, f),
    }
}

/// Version of a retained message another shard owns: this shard cannot tell whether it is still
/// current, so it is delivered as received.
pub(super) const REMOTE_RETAINED: u64 = u64::MAX;

/// A retained message matched by one filter of a SUBSCRIBE, with that subscription's options.
struct RetainedMatch {
    found: Found,
    max_qos: QoS,
    sub_id: Option<u32>,
}

impl RetainedMatch {
    /// The delivery for this match with the retained entry's version; a stored-only message is
    /// taken from `read` (absent when it vanished, expired or was not read).
    fn delivery(self, read: Option<&HashMap<Arc<str>, Arc<Message>>>) -> Option<(Delivery, u64)> {
        let (msg, version) = match self.found {
            Found::Loaded(m, version) => (m, version),
            Found::InStore(topic, version) => (read?.get(&topic)?.clone(), version),
        };
        let qos = msg.qos.min(self.max_qos);
        let d = Delivery { msg, qos, retain: true, sub_ids: self.sub_id.into_iter().collect(), durable: None };
        Some((d, version))
    }
}

fn granted_code(qos: QoS) -> ReasonCode {
    ReasonCode(qos as u8)
}

impl SessionTask {
    pub(super) fn on_subscribe(&mut self, s: Subscribe) {
        let Some(link) = &self.link else { return };
        let v5 = link.protocol.is_v5();
        let username = self.owner.clone();
        let failure = |code: ReasonCode| if v5 { code } else { ReasonCode::UNSPECIFIED_ERROR };
        let config = self.broker.config.clone();
        let max_qos = QoS::from_u8(config.mqtt.max_qos).unwrap_or(QoS::ExactlyOnce);
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        // Filters whose retained messages other shards own (cluster shards only).
        let mut remote = Vec::new();
        // New routes the other shards must know before the SUBACK (cluster shards only).
        let mut route_syncs = Vec::new();
        let now = Instant::now();
        for f in s.filters {
            if topic::validate_topic_filter(&f.filter, &self.broker.topic_limits).is_err() {
                self.broker.stats.malformed("topic filter invalid");
                reasons.push(failure(ReasonCode::TOPIC_FILTER_INVALID));
                continue;
            }
            let (group, inner) = split(&f.filter);
            if group.is_some() && f.options.no_local {
                return self.violation(ReasonCode::PROTOCOL_ERROR, "no local on a shared subscription");
            }
            if !self.broker.may_subscribe(username.as_deref(), self.shared.client_id.as_str(), &f.filter) {
                reasons.push(failure(ReasonCode::NOT_AUTHORIZED));
                continue;
            }
            let existing = self.subscriptions.contains_key(&f.filter);
            if !existing && self.subscriptions.len() >= config.limits.max_subscriptions_per_client {
                self.broker.stats.limit_rejection("max_subscriptions_per_client");
                reasons.push(failure(ReasonCode::QUOTA_EXCEEDED));
                continue;
            }
            let mut options = f.options;
            options.qos = options.qos.min(max_qos);
            let sub_id = s.properties.subscription_identifier;
            let entry = SubEntry { session: self.shared.clone(), options, sub_id };
            route_syncs.extend(self.broker.subscribe(inner, group, entry));
            self.subscriptions.insert(f.filter.clone(), (options, sub_id));
            reasons.push(granted_code(options.qos));
            let send_retained = match options.retain_handling {
                0 => true,
                1 => !existing,
                _ => false,
            };
            if group.is_none() && send_retained {
                for found in self.broker.retained_matching(inner, now) {
                    retained.push(RetainedMatch { found, max_qos: options.qos, sub_id });
                }
                if self.broker.routing.is_some() {
                    remote.push((inner.to_string(), options.qos, sub_id));
                }
            }
        }
        self.broker.stats.subscriptions.set(self.broker.router.len() as f64);
        let packet =
            Box::new(Packet::SubAck(SubAck { packet_id: s.packet_id, reasons, properties: AckProperties::default() }));
        let mut commit = self.record_commit();
        if let (false, Some(routing)) = (route_syncs.is_empty(), &self.broker.routing) {
            // Bounded: a shard that does not answer is lost, and learns the route on reconnect.
            let limit = routing.route_sync_timeout();
            let record = commit.take();
            commit = Some(Box::pin(async move {
                if let Some(c) = record {
                    c.await?;
                }
                let _ = tokio::time::timeout(limit, futures_util::future::join_all(route_syncs)).await;
                Ok(())
            }));
        }
        self.defer(Deferred::Reply { generation: self.generation, packet }, commit);
        self.defer_retained(retained);
        self.defer_remote_retained(remote);
    }

    /// Queues, behind the local ones, the retained messages other shards own for these filters.
    fn defer_remote_retained(&mut self, wanted: Vec<(String, QoS, Option<u32>)>) {
        let Some(routing) = self.broker.routing.clone() else { return };
        if wanted.is_empty() {
            return;
        }
        let resets = self.resets;
        self.pending.push_back(Box::pin(async move {
            let mut deliveries = Vec::new();
            for (filter, max_qos, sub_id) in wanted {
                for msg in routing.gather_retained(&filter).await {
                    let qos = msg.qos.min(max_qos);
                    let d = Delivery { msg, qos, retain: true, sub_ids: sub_id.into_iter().collect(), durable: None };
                    deliveries.push((d, REMOTE_RETAINED));
                }
            }
            (Deferred::Retained { resets, deliveries }, Ok(()))
        }));
    }

    /// Queues the retained messages a SUBSCRIBE matched, behind its SUBACK; those only in the store
    /// are read on the blocking pool first.
    fn defer_retained(&mut self, matches: Vec<RetainedMatch>) {
        if matches.is_empty() {
            return;
        }
        let resets = self.resets;
        let stored: Vec<Arc<str>> = matches
            .iter()
            .filter_map(|m| match &m.found {
                Found::InStore(topic, _) => Some(topic.clone()),
                Found::Loaded(..) => None,
            })
            .collect();
        if stored.is_empty() {
            let deliveries = matches.into_iter().filter_map(|m| m.delivery(None)).collect();
            return self.defer(Deferred::Retained { resets, deliveries }, None);
        }
        let broker = self.broker.clone();
        self.pending.push_back(Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || broker.read_retained(&stored)).await.unwrap_or_default();
            let read = read.into_iter().map(|m| (m.topic.clone(), m)).collect::<HashMap<_, _>>();
            let deliveries = matches.into_iter().filter_map(|m| m.delivery(Some(&read))).collect();
            (Deferred::Retained { resets, deliveries }, Ok(()))
        }));
    }

    pub(super) fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let mut reasons = Vec::with_capacity(u.filters.len());
        for f in &u.filters {
            if self.subscriptions.remove(f).is_some() {
                let (group, inner) = split(f);
                self.broker.unsubscribe(inner, group, self.shared.id);
                reasons.push(ReasonCode::SUCCESS);
            } else {
                reasons.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
            }
        }
        self.broker.stats.subscriptions.set(self.broker.router.len() as f64);
        let packet = Box::new(Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            reasons,
            properties: AckProperties::default(),
        }));
        let commit = self.record_commit();
        self.defer(Deferred::Reply { generation: self.generation, packet }, commit);
    }
}
