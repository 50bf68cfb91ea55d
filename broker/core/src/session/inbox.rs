//! The bounded per-session queue that publishers push deliveries into.
//!
//! Each session has its own small lock, so a publish touches only the locks of the sessions it
//! delivers to, never a global one. Invariants: the queue never holds more than
//! `max_queued_messages` deliveries or (beyond one message) `max_queued_bytes`; when full, the
//! configured policy drops the oldest entries or rejects the newest, and every drop is reported to
//! the caller so it can be counted.

use crate::config::QueueOverflow;
use crate::message::Delivery;
use fleetmq_codec::QoS;
use std::collections::VecDeque;

/// Limits applied when enqueuing.
#[derive(Debug, Clone, Copy)]
pub struct InboxLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub overflow: QueueOverflow,
    pub queue_qos0_offline: bool,
}

/// Outcome of an enqueue: whether the delivery was taken, and the older deliveries dropped to make
/// room (returned so stored ones can be released).
#[derive(Debug, Default)]
pub struct Enqueued {
    pub accepted: bool,
    pub dropped: Vec<Delivery>,
    /// The session is online and its inbox past the high-water mark: the publisher should pause.
    pub congested: bool,
}

/// FIFO of deliveries waiting for the session's connection (or for window space).
#[derive(Debug, Default)]
pub struct Inbox {
    queue: VecDeque<Delivery>,
    bytes: usize,
    /// Deliveries taken out with [`Inbox::pop`] so far (drain progress, for back-pressure).
    taken: u64,
}

impl Inbox {
    /// Appends a delivery, applying the overflow policy. QoS 0 deliveries to an offline session are
    /// refused unless configured otherwise (like Mosquitto).
    pub fn push(&mut self, d: Delivery, online: bool, limits: &InboxLimits) -> Enqueued {
        if !online && d.qos == QoS::AtMostOnce && !limits.queue_qos0_offline {
            return Enqueued { accepted: false, dropped: Vec::new(), congested: false };
        }
        let cost = d.msg.cost();
        let full = |q: &Inbox| {
            q.queue.len() >= limits.max_messages || (!q.queue.is_empty() && q.bytes + cost > limits.max_bytes)
        };
        let mut dropped = Vec::new();
        if full(self) {
            match limits.overflow {
                QueueOverflow::RejectNewest => return Enqueued { accepted: false, dropped, congested: false },
                QueueOverflow::DropOldest => {
                    while full(self) {
                        match self.queue.pop_front() {
                            Some(old) => {
                                self.bytes -= old.msg.cost();
                                dropped.push(old);
                            }
                            None => break,
                        }
                    }
                }
            }
        }
        self.bytes += cost;
        self.queue.push_back(d);
        Enqueued { accepted: true, dropped, congested: false }
    }

    /// Puts older deliveries (reloaded from storage, or handed over by another shard) in front of
    /// what is queued, in their order, without applying limits (they were admitted before).
    pub fn prepend(&mut self, older: Vec<Delivery>) {
        let newer = std::mem::take(&mut self.queue);
        for d in older {
            self.bytes += d.msg.cost();
            self.queue.push_back(d);
        }
        self.queue.extend(newer);
    }

    /// Puts a delivery back at the front (it could not be started yet).
    pub fn push_front(&mut self, d: Delivery) {
        self.bytes += d.msg.cost();
        self.queue.push_front(d);
    }

    /// Removes every delivery (the session ends or starts over), returning them for release.
    pub fn take_all(&mut self) -> Vec<Delivery> {
        self.bytes = 0;
        self.queue.drain(..).collect()
    }

    /// Uids of the queued messages.
    pub fn uids(&self) -> impl Iterator<Item = crate::ids::MessageUid> + '_ {
        self.queue.iter().map(|d| d.msg.uid)
    }

    /// Removes the oldest delivery.
    pub fn pop(&mut self) -> Option<Delivery> {
        let d = self.queue.pop_front()?;
        self.bytes -= d.msg.cost();
        self.taken += 1;
        Some(d)
    }

    /// How many deliveries were taken out so far.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// QoS of the oldest delivery, if any.
    pub fn front_qos(&self) -> Option<QoS> {
        self.queue.front().map(|d| d.qos)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Past the high-water mark (half of either limit): publishers to an online session pause.
    pub fn above_high_water(&self, limits: &InboxLimits) -> bool {
        self.queue.len() >= (limits.max_messages / 2).max(1) || self.bytes >= limits.max_bytes / 2
    }

    /// Still above the low-water mark (a quarter of either limit): paused publishers keep waiting.
    pub fn above_low_water(&self, limits: &InboxLimits) -> bool {
        self.queue.len() > limits.max_messages / 4 || self.bytes > limits.max_bytes / 4
    }

    /// Whether one more delivery of `cost` bytes fits without dropping anything.
    pub fn has_room(&self, limits: &InboxLimits) -> bool {
        self.queue.len() < limits.max_messages && self.bytes < limits.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ClientId;
    use crate::message::Message;
    use std::sync::Arc;

    fn d(qos: QoS, n: u8) -> Delivery {
        let msg = Message {
            topic: Arc::from("t"),
            payload: bytes::Bytes::from(vec![n; 10]),
            qos,
            retain: false,
            properties: Default::default(),
            publisher: ClientId::new("p"),
            expires_at: None,
            uid: crate::ids::MessageUid::next(),
        };
        Delivery { msg: Arc::new(msg), qos, retain: false, sub_ids: vec![], durable: None }
    }

    fn limits(overflow: QueueOverflow) -> InboxLimits {
        InboxLimits { max_messages: 3, max_bytes: usize::MAX, overflow, queue_qos0_offline: false }
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let mut q = Inbox::default();
        let l = limits(QueueOverflow::DropOldest);
        for n in 0..5 {
            q.push(d(QoS::AtLeastOnce, n), true, &l);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop().unwrap().msg.payload[0], 2);
    }

    #[test]
    fn reject_newest_keeps_the_first() {
        let mut q = Inbox::default();
        let l = limits(QueueOverflow::RejectNewest);
        let results: Vec<bool> = (0..5).map(|n| q.push(d(QoS::AtLeastOnce, n), true, &l).accepted).collect();
        assert_eq!(results, vec![true, true, true, false, false]);
        assert_eq!(q.pop().unwrap().msg.payload[0], 0);
    }

    #[test]
    fn byte_limit_applies() {
        let mut q = Inbox::default();
        let one = d(QoS::AtLeastOnce, 0).msg.cost();
        let l = InboxLimits {
            max_messages: 100,
            max_bytes: one * 2,
            overflow: QueueOverflow::DropOldest,
            queue_qos0_offline: false,
        };
        for n in 0..4 {
            q.push(d(QoS::AtLeastOnce, n), true, &l);
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop().unwrap().msg.payload[0], 2);
    }

    #[test]
    fn qos0_not_queued_offline_by_default() {
        let mut q = Inbox::default();
        let l = limits(QueueOverflow::DropOldest);
        assert!(!q.push(d(QoS::AtMostOnce, 0), false, &l).accepted);
        assert!(q.push(d(QoS::AtMostOnce, 0), true, &l).accepted);
        assert!(q.push(d(QoS::AtLeastOnce, 0), false, &l).accepted);
    }
}
