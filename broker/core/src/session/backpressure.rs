//! Publisher back-pressure: a publisher whose message lands in an online subscriber's inbox that is
//! past its high-water mark stops reading from its own connection until that inbox drains below the
//! low-water mark, so TCP slows the publishers down instead of the broker accepting messages it
//! then drops (and instead of the publishers' tasks starving the subscriber of CPU).
//!
//! Invariants: a pause is bounded by `limits.backpressure_wait_ms`; a subscriber that hardly drains
//! during a whole pause (less than a quarter of the way from high to low water, pro rata) is marked
//! slow for [`SLOW_HOLD_FACTOR`] pauses' time, during which nobody waits for it and its queue applies
//! the overflow policy — so a stalled subscriber costs each publisher at most one bounded pause per
//! hold period, while a slow but draining one keeps slowing its publishers (like TCP); offline
//! sessions never push back (their queue is the overflow policy's business); the session task wakes
//! waiters when it drains, goes offline or ends, so no wait outlives its cause.

use super::inbox::InboxLimits;
use super::SessionShared;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::time::Instant;

/// A slow mark lasts this many times `backpressure_wait_ms`.
pub(crate) const SLOW_HOLD_FACTOR: u32 = 20;

/// A publisher's pause, polled by its session task instead of reading the connection.
pub(crate) type Pause = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// How a pause ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every congested inbox drained, went offline, or was still draining when the wait ran out.
    Released,
    /// The wait ran out on a subscriber that hardly drained: it is now marked slow.
    MarkedSlow,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl SessionShared {
    /// Whether publishers currently skip waiting for this session.
    pub(crate) fn is_slow(&self) -> bool {
        let until = self.slow_until_ms.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }

    /// Whether a waiting publisher may go on: drained below low water, offline or marked slow.
    fn has_drained(&self, limits: &InboxLimits) -> bool {
        !self.is_online() || self.is_slow() || !self.inbox.lock().above_low_water(limits)
    }

    /// Called by the session task after each turn of its loop: if a publisher waits or a slow mark
    /// is set, checks the inbox and wakes or clears accordingly (two atomic loads otherwise).
    pub(crate) fn after_pump(&self, limits: &InboxLimits) {
        if !self.room_wanted.load(Ordering::Acquire) && self.slow_until_ms.load(Ordering::Relaxed) == 0 {
            return;
        }
        let drained = !self.inbox.lock().above_low_water(limits);
        self.wake_publishers(drained);
    }

    /// Clears the slow mark once drained and wakes waiting publishers when drained or offline
    /// (the session task calls it through [`SessionShared::after_pump`] and when going offline).
    pub(crate) fn wake_publishers(&self, drained: bool) {
        if drained {
            self.slow_until_ms.store(0, Ordering::Relaxed);
        }
        if self.room_wanted.load(Ordering::Acquire) && (drained || !self.is_online()) {
            self.room_wanted.store(false, Ordering::Release);
            if let Some(room) = self.room.get() {
                room.notify_waiters();
            }
        }
    }

    /// Marks the session slow for `hold` and releases everyone waiting for it.
    fn mark_slow(&self, hold: Duration) {
        let until = now_ms().saturating_add(hold.as_millis() as u64).max(1);
        self.slow_until_ms.store(until, Ordering::Relaxed);
        if let Some(room) = self.room.get() {
            room.notify_waiters();
        }
    }
}

/// Waits until every session in `congested` has drained, at most `max_wait` in total.
pub(crate) fn pause(congested: Vec<Arc<SessionShared>>, max_wait: Duration, limits: InboxLimits) -> Pause {
    Box::pin(async move {
        let deadline = Instant::now() + max_wait;
        // Draining a quarter of the way from high (1/2) to low (1/4) water during a whole pause
        // counts as progress.
        let progress_per_pause = (limits.max_messages / 16).max(1) as f64;
        let mut outcome = Outcome::Released;
        for s in congested {
            let (started, taken) = (Instant::now(), s.inbox.lock().taken());
            loop {
                let notified = s.room.get_or_init(|| Box::new(Notify::new())).notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                s.room_wanted.store(true, Ordering::Release);
                if s.has_drained(&limits) {
                    break;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    let waited = (started.elapsed().as_secs_f64() / max_wait.as_secs_f64().max(1e-3)).min(1.0);
                    let drained = s.inbox.lock().taken().saturating_sub(taken) as f64;
                    if !s.has_drained(&limits) && drained < progress_per_pause * waited {
                        s.mark_slow(max_wait * SLOW_HOLD_FACTOR);
                        outcome = Outcome::MarkedSlow;
                    }
                    return outcome;
                }
            }
        }
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueOverflow;
    use crate::ids::{ClientId, SessionId};
    use crate::message::{Delivery, Message};
    use fleetmq_codec::QoS;

    fn limits() -> InboxLimits {
        InboxLimits {
            max_messages: 8,
            max_bytes: usize::MAX,
            overflow: QueueOverflow::DropOldest,
            queue_qos0_offline: false,
        }
    }

    fn delivery() -> Delivery {
        let msg = Arc::new(Message {
            topic: Arc::from("t"),
            payload: bytes::Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
            publisher: ClientId::new("p"),
            expires_at: None,
            uid: crate::ids::MessageUid::next(),
        });
        Delivery { msg, qos: QoS::AtMostOnce, retain: false, sub_ids: Vec::new(), durable: None }
    }

    fn online_session() -> Arc<SessionShared> {
        let s = super::super::new_shared(ClientId::new("s"), SessionId::next(), false, 0);
        s.online.store(true, Ordering::Relaxed);
        s
    }

    #[tokio::test]
    async fn a_publisher_waits_until_the_inbox_drains_below_low_water() {
        let (s, l) = (online_session(), limits());
        let congested: Vec<bool> = (0..4).map(|_| s.enqueue(delivery(), &l).congested).collect();
        assert_eq!(congested, [false, false, false, true], "half full is the high-water mark");
        let mut p = pause(vec![s.clone()], Duration::from_secs(60), l);
        let drain = {
            let s = s.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                s.inbox.lock().pop();
                s.after_pump(&l);
                tokio::time::sleep(Duration::from_millis(10)).await;
                s.inbox.lock().pop();
                s.after_pump(&l);
            }
        };
        let started = Instant::now();
        let (outcome, ()) = tokio::join!(&mut p, drain);
        assert_eq!(outcome, Outcome::Released);
        assert!(started.elapsed() >= Duration::from_millis(20), "released only at low water (2 of 8)");
        assert!(!s.enqueue(delivery(), &l).congested);
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_drain_is_marked_slow_and_not_waited_for_again() {
        let (s, l) = (online_session(), limits());
        for _ in 0..6 {
            s.enqueue(delivery(), &l);
        }
        let p = pause(vec![s.clone()], Duration::from_millis(50), l);
        assert_eq!(p.await, Outcome::MarkedSlow);
        assert!(!s.enqueue(delivery(), &l).congested, "a slow subscriber no longer pushes back");
        s.after_pump(&l);
        assert!(!s.enqueue(delivery(), &l).congested, "still slow while above low water");
        while s.inbox.lock().pop().is_some() {}
        s.after_pump(&l);
        let congested: Vec<bool> = (0..4).map(|_| s.enqueue(delivery(), &l).congested).collect();
        assert_eq!(congested, [false, false, false, true], "once drained it pushes back again");
    }

    #[tokio::test]
    async fn a_subscriber_that_drains_slowly_is_not_marked_slow() {
        let (s, l) = (online_session(), limits());
        for _ in 0..6 {
            s.enqueue(delivery(), &l);
        }
        let mut p = pause(vec![s.clone()], Duration::from_millis(50), l);
        let one = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            s.inbox.lock().pop();
        };
        let (outcome, ()) = tokio::join!(&mut p, one);
        assert_eq!(outcome, Outcome::Released, "progress was made: keep pushing back");
        assert!(s.enqueue(delivery(), &l).congested);
    }

    #[tokio::test]
    async fn going_offline_releases_waiting_publishers() {
        let (s, l) = (online_session(), limits());
        for _ in 0..6 {
            s.enqueue(delivery(), &l);
        }
        let mut p = pause(vec![s.clone()], Duration::from_secs(60), l);
        let leave = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            s.online.store(false, Ordering::Relaxed);
            s.after_pump(&l);
        };
        let (outcome, ()) = tokio::join!(&mut p, leave);
        assert_eq!(outcome, Outcome::Released);
    }
}
