//! The task that owns one session and, while a client is attached, its connection: it reads and
//! validates client packets, applies them to the session's state, pulls deliveries from the
//! session's inbox into the connection's write buffer as the send window allows, writes, and runs
//! the keep-alive, will-delay and session-expiry timers.
//!
//! One task per connection and session: a QoS 1 message costs one wake-up of the publisher's task
//! and one of each subscriber's, with no channel between reading, the session and writing. The
//! task polls what it waits on in place, in priority order (requests, node shutdown, end of a
//! pause, timer, storage acknowledgements, the connection, deliveries), with no future stored per
//! source: every idle connection holds one such task, so its size is the broker's per-connection
//! memory. Requests, deliveries and shutdown all wake it through the session's one waker.
//!
//! Invariants: the task never waits on a client (writes go out as the socket takes them; past the
//! connection's delivery mark it stops pulling deliveries, so a stalled client only fills its own
//! bounded inbox, and past the higher read mark it stops reading as well, so a delivery backlog
//! alone never keeps the client's PINGREQs and acknowledgements unread); while `pause` is set (a subscriber this client
//! published to is congested) it reads acknowledgements only; when the session ends, its
//! subscriptions and registry entry are removed before the task exits.

use super::backpressure::{Outcome, Pause};
use super::flow::{Deferred, PendingAcks};
use super::link::Link;
use super::qos::QosState;
use super::{AttachRequest, Control, SessionShared};
use crate::broker::Broker;
use crate::connection::{IoEvent, ReadMode};
use crate::message::Message;
use crate::metrics::DropReason;
use crate::store::Batch;
use fleetmq_codec::{Disconnect, LastWill, Packet, Protocol, ReasonCode, SubOptions};
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::time::Sleep;

pub(super) struct SessionTask {
    pub broker: Arc<Broker>,
    pub shared: Arc<SessionShared>,
    pub qos: QosState,
    /// Full filters (with any `$share/group/` prefix) this session subscribed to, with options.
    pub subscriptions: HashMap<String, (SubOptions, Option<u32>)>,
    pub expiry_secs: u32,
    pub link: Option<Link>,
    /// Username of the connection that owns the session (resuming under another one starts fresh);
    /// while a connection is attached, its username.
    pub owner: Option<String>,
    /// The will and the username it is published under (boxed: most clients have none).
    pub will: Option<Box<(LastWill, Option<String>)>>,
    pub will_at: Option<Instant>,
    pub expire_at: Option<Instant>,
    /// When the client went offline (wall clock in ms since the Unix epoch, for the stored record).
    pub offline_since: Option<NonZeroU64>,
    /// Acknowledgements waiting for their writes, in arrival order.
    pub pending: PendingAcks,
    /// Releases of finished stored deliveries, written once per loop iteration.
    pub releases: Batch,
    /// Counts attachments, so a late acknowledgement never reaches a newer connection.
    pub generation: u32,
    /// Counts resets of the session state (a takeover that does not resume it), so retained
    /// messages of a subscription made before are not queued after.
    pub resets: u32,
    /// Recovered after a restart with deliveries still on disk, loaded at the first attach: those
    /// stored below this sequence (the first one this process assigns the session; never 0).
    pub cold: Option<NonZeroU64>,
    /// While set, a subscriber this client published to is congested (publisher back-pressure):
    /// only acknowledgements and PINGREQ are read until the pause ends.
    pub pause: Option<Pause>,
    /// Set while the session, created by a hand-over, waits for the previous owner's entries.
    pub receiving: Option<Box<super::handover::Receiving>>,
    pub ended: bool,
    /// The one timer of the session: keep-alive while online, will delay and expiry while not.
    timer: Pin<Box<Sleep>>,
    /// Whether `timer` is armed (for its deadline). It may fire early; the handler re-checks.
    timer_armed: bool,
    /// While online with parking on: when to look whether the connection stayed quiet.
    park_at: Option<Instant>,
    /// Nothing but the timer woke the task since `park_at` was last set (or the link attached
    /// or resumed).
    quiet: bool,
    /// The connection stayed quiet a whole period: park at the end of this turn if still idle.
    park_now: bool,
}

/// What woke the session task.
enum Wake {
    Control(Control),
    Shutdown,
    PauseEnded(Outcome),
    Timer,
    Acked(Deferred, crate::store::Result<()>),
    Io(IoEvent),
    Deliveries,
}

pub(super) mod park;

/// Creates a new session for `req`, attaches the connection and starts the session task.
pub(crate) fn spawn_session(broker: Arc<Broker>, shared: Arc<SessionShared>, req: AttachRequest) {
    let mut task = SessionTask::new(broker, shared);
    task.attach(req, false);
    tokio::spawn(task.run());
}

impl SessionTask {
    /// A session with no state yet.
    pub(super) fn new(broker: Arc<Broker>, shared: Arc<SessionShared>) -> Self {
        broker.stats.sessions.increment(1.0);
        Self::blank(broker, shared)
    }

    /// The task of a session with no state yet, not counted (a parked session resuming).
    fn blank(broker: Arc<Broker>, shared: Arc<SessionShared>) -> Self {
        let mqtt = &broker.config.mqtt;
        SessionTask {
            qos: QosState::new(mqtt.receive_maximum, broker.config.limits.max_inflight),
            broker: broker.clone(),
            shared,
            subscriptions: HashMap::new(),
            expiry_secs: 0,
            link: None,
            owner: None,
            will: None,
            will_at: None,
            expire_at: None,
            offline_since: None,
            pending: PendingAcks::default(),
            releases: Batch::new(),
            generation: 0,
            resets: 0,
            cold: None,
            pause: None,
            receiving: None,
            ended: false,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            timer_armed: false,
            park_at: None,
            quiet: false,
            park_now: false,
        }
    }

    /// The task's future. Written as a function returning an `async move` block that works on
    /// the captured task in place: an `async fn` taking `self` keeps the argument and its moved
    /// copy side by side in the future (the task's state twice, ~0.8 KB per connection).
    #[expect(clippy::manual_async_fn, reason = "an async fn would hold the task state twice")]
    pub(super) fn run(mut self) -> impl Future<Output = ()> + Send {
        async move {
            while !self.ended {
                self.arm_timer();
                let mode = self.read_mode();
                let pumpable = self.link.as_ref().is_some_and(|l| l.io.pump_room());
                let wake = poll_fn(|cx| self.poll_wake(cx, mode, pumpable)).await;
                if !matches!(wake, Wake::Timer) {
                    self.quiet = false;
                }
                if let Some(rare) = self.on_wake(wake) {
                    rare.await;
                }
                self.pump();
                self.shared.after_pump(&self.broker.inbox_limits);
                if !self.releases.is_empty() {
                    self.broker.durability.fire(std::mem::take(&mut self.releases));
                }
                if std::mem::take(&mut self.park_now) && self.parkable() {
                    match self.park() {
                        Some(task) => self = task,
                        None => return,
                    }
                }
            }
            self.finish();
        }
    }

    /// Handles what woke the task. The rare wake-ups that must wait for storage or a peer return
    /// a boxed future instead: the loop's future then holds a pointer across that wait, not the
    /// `Wake` (a whole client packet) nor their state.
    fn on_wake(&mut self, wake: Wake) -> Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> {
        match wake {
            Wake::Control(Control::Attach(req)) => {
                let req = self.hold(req)?;
                if self.cold.is_none() {
                    self.attach(*req, true);
                    return None;
                }
                return Some(Box::pin(async move {
                    self.load_cold().await;
                    self.attach(*req, true);
                }));
            }
            Wake::Control(Control::HandOut { peer, link, done }) => {
                return Some(Box::pin(async move {
                    let _ = done.send(self.hand_out(peer, link).await);
                }));
            }
            Wake::Control(Control::Merge { entries, inbound, done }) => {
                return Some(Box::pin(async move {
                    let stored = self.merge(entries, inbound).await;
                    if let Some(done) = done {
                        let _ = done.send(stored);
                    }
                }));
            }
            Wake::Control(Control::Discard) => {
                // A DISCONNECT the old connection sent first still decides its will.
                self.drain_link();
                self.kick(ReasonCode::SESSION_TAKEN_OVER);
                self.end();
            }
            Wake::Shutdown => self.close_for(ReasonCode::SERVER_SHUTTING_DOWN, false),
            Wake::PauseEnded(outcome) => {
                self.pause = None;
                if outcome == Outcome::MarkedSlow {
                    self.broker.stats.backpressure_slow_mark();
                }
                // Time spent paused is not the client's idling.
                if let Some(link) = self.link.as_mut() {
                    link.last_packet = Instant::now();
                }
            }
            Wake::Timer => {
                self.timer_armed = false;
                self.on_timer();
            }
            Wake::Acked(op, result) => self.complete(op, result),
            Wake::Io(ev) => self.on_io(ev),
            Wake::Deliveries => {}
        }
        None
    }

    /// Polls everything the task waits on, in priority order, without a future per source (each
    /// idle connection holds this task: see the module docs). The waker is registered with the
    /// session first, so a request, delivery or shutdown that arrives during the poll wakes it.
    fn poll_wake(&mut self, cx: &mut Context<'_>, mode: ReadMode, pumpable: bool) -> Poll<Wake> {
        self.shared.register(cx);
        if let Some(c) = self.shared.take_control() {
            return Poll::Ready(Wake::Control(c));
        }
        if self.link.is_some() && self.broker.is_shutting_down() {
            return Poll::Ready(Wake::Shutdown);
        }
        if let Some(Poll::Ready(outcome)) = self.pause.as_mut().map(|p| p.as_mut().poll(cx)) {
            return Poll::Ready(Wake::PauseEnded(outcome));
        }
        if self.timer_armed && self.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Wake::Timer);
        }
        if let Poll::Ready((op, result)) = self.pending.poll_next(cx) {
            return Poll::Ready(Wake::Acked(op, result));
        }
        if let Some(Poll::Ready(ev)) = self.link.as_mut().map(|l| l.io.poll_event(cx, mode)) {
            return Poll::Ready(Wake::Io(ev));
        }
        if pumpable && self.shared.take_deliveries() {
            return Poll::Ready(Wake::Deliveries);
        }
        Poll::Pending
    }

    /// Arms the timer for the earliest deadline (keep-alive online; will delay or expiry offline).
    /// Keep-alive only moves later, so an armed timer stays and re-checks when it fires.
    fn arm_timer(&mut self) {
        let want = match &self.link {
            Some(link) => [link.keepalive_due(), self.park_at].into_iter().flatten().min(),
            None => [self.will_at, self.expire_at, self.hold_deadline()].into_iter().flatten().min(),
        };
        match want {
            None => self.timer_armed = false,
            Some(t) if !self.timer_armed || t < self.timer.deadline().into_std() => {
                self.timer.as_mut().reset(t.into());
                self.timer_armed = true;
            }
            Some(_) => {}
        }
    }

    /// Attaches a connection and queues its CONNACK; `existing` says whether this session existed.
    pub(super) fn attach(&mut self, req: AttachRequest, mut existing: bool) {
        if self.link.is_some() && !self.take_over() {
            existing = false;
        }
        if existing && self.owner != req.username {
            // A session resumed under another identity would hand its subscriptions (authorized for
            // the previous user) to the new one: treat it as a clean start instead.
            self.reset();
            existing = false;
        }
        let AttachRequest { connect: c, username, io, mut connack, keepalive, .. } = req;
        let mqtt = &self.broker.config.mqtt;
        let requested = match c.protocol {
            Protocol::V5 => c.properties.session_expiry_interval.unwrap_or(0),
            _ if c.clean_start => 0,
            _ => u32::MAX,
        };
        self.expiry_secs = requested.min(mqtt.max_session_expiry_secs);
        let send_window = c.properties.receive_maximum.unwrap_or(u16::MAX).min(self.broker.config.limits.max_inflight);
        // 3.1.1 clients were never told our Receive Maximum, so it is not enforced on them.
        let receive_maximum = if c.protocol.is_v5() { mqtt.receive_maximum } else { u16::MAX };
        self.qos.set_limits(receive_maximum, send_window);
        self.will = c.will.clone().map(|w| Box::new((w, username.clone())));
        self.owner = username;
        self.will_at = None;
        self.expire_at = None;
        let mut link = Link::new(&self.broker, io, c.protocol, keepalive);
        link.max_packet_size = c.properties.maximum_packet_size;
        link.connect_expiry_zero = requested == 0;
        connack.session_present = existing;
        connack.reason = ReasonCode::SUCCESS;
        if c.protocol.is_v5() {
            connack.properties.session_expiry_interval = Some(self.expiry_secs);
        }
        link.io.send(Packet::ConnAck(connack));
        link.io.guard.opened();
        self.link = Some(link);
        self.park_at = self.park_after().map(|d| Instant::now() + d);
        self.quiet = true;
        self.shared.online.store(true, Ordering::Relaxed);
        self.offline_since = None;
        self.generation = self.generation.wrapping_add(1);
        self.qos.resume();
        self.persist_record();
    }

    /// Ends the attached connection because a new one takes the session over. Packets the old
    /// connection already delivered (a DISCONNECT among them) are applied first, so they decide
    /// its will and expiry. Returns `false` if the session would have ended with the old connection
    /// (its state is then reset and the new connection starts fresh).
    fn take_over(&mut self) -> bool {
        self.drain_link();
        if self.link.is_some() {
            self.kick(ReasonCode::SESSION_TAKEN_OVER);
            self.close_link(true);
        }
        self.will_at = None;
        if self.expiry_secs == 0 {
            self.reset();
            return false;
        }
        true
    }

    /// A DISCONNECT during takeover: its will and expiry effects apply, but the session stays.
    pub(super) fn on_disconnect_keep(&mut self, d: Disconnect) {
        if let Some(new) = d.properties.session_expiry_interval {
            if !self.link.as_ref().is_some_and(|l| l.connect_expiry_zero && new != 0) {
                self.expiry_secs = new.min(self.broker.config.mqtt.max_session_expiry_secs);
            }
        }
        self.close_link(d.reason != ReasonCode::NORMAL_DISCONNECTION);
    }

    /// Drops the link, publishing the will now if it has no delay (a takeover ends the old
    /// connection; a delayed will is cancelled by the new connection arriving).
    pub(super) fn close_link(&mut self, publish_will: bool) {
        if !self.drop_link() {
            return;
        }
        if !publish_will {
            self.will = None;
        }
        if self.will.as_deref().is_some_and(|(w, _)| w.properties.will_delay_interval.unwrap_or(0) == 0) {
            self.publish_will();
        }
    }

    /// Forgets all session state (subscriptions, queue, in-flight): the session starts over.
    fn reset(&mut self) {
        self.resets = self.resets.wrapping_add(1);
        self.unsubscribe_all();
        self.release_all();
        let mqtt = &self.broker.config.mqtt;
        self.qos = QosState::new(mqtt.receive_maximum, self.broker.config.limits.max_inflight);
        self.will = None;
        self.will_at = None;
        self.expire_at = None;
    }

    pub(super) fn unsubscribe_all(&mut self) {
        for (filter, _) in self.subscriptions.drain() {
            let (group, inner) = super::subscribe::split(&filter);
            self.broker.unsubscribe(inner, group, self.shared.id);
        }
        self.broker.stats.subscriptions.set(self.broker.router.len() as f64);
    }

    /// Drops every queued and in-flight delivery, releasing the stored ones.
    fn release_all(&mut self) {
        let queued = self.shared.inbox.lock().take_all();
        for d in queued.iter().chain(self.qos.take_all().iter()) {
            self.release(d);
        }
    }

    /// The connection is gone: start will-delay and expiry timers, or end the session.
    pub(super) fn detach(&mut self, publish_will: bool) {
        if self.drop_link() {
            self.went_offline(publish_will);
        }
    }

    /// After the link was dropped: start will-delay and expiry timers, or end the session.
    fn went_offline(&mut self, publish_will: bool) {
        let now = Instant::now();
        if !publish_will {
            self.will = None;
        }
        if let Some((will, _)) = self.will.as_deref() {
            let delay = will.properties.will_delay_interval.unwrap_or(0).min(self.expiry_secs);
            if delay == 0 {
                self.publish_will();
            } else {
                self.will_at = Some(now + Duration::from_secs(u64::from(delay)));
            }
        }
        self.offline_since = super::durable::wall_ms(SystemTime::now());
        match self.expiry_secs {
            0 => self.end(),
            u32::MAX => self.persist_record(),
            secs => {
                self.expire_at = Some(now + Duration::from_secs(u64::from(secs)));
                self.persist_record();
            }
        }
    }

    /// Closes and forgets the attached connection; `false` if there was none.
    fn drop_link(&mut self) -> bool {
        let Some(link) = self.link.take() else { return false };
        link.close();
        self.link_gone();
        true
    }

    /// The link (already taken) was lost while parking or resuming: the session goes offline as
    /// for any lost connection (will, expiry).
    fn link_lost(&mut self) {
        self.link_gone();
        self.went_offline(true);
    }

    /// The session's side of losing its link (already taken).
    fn link_gone(&mut self) {
        self.pause = None;
        self.park_at = None;
        self.shared.online.store(false, Ordering::Relaxed);
        self.shared.wake_publishers(false);
        self.qos.detach();
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if let Some(link) = self.link.as_mut() {
            if link.keepalive_due().is_some_and(|t| t <= now) {
                if self.pause.is_some() {
                    // Not reading is our doing, not the client's silence.
                    link.last_packet = now;
                    return;
                }
                tracing::debug!(client_id = %self.shared.client_id, "keepalive timeout");
                self.broker.stats.limit_rejection("keepalive_timeout");
                self.close_for(ReasonCode::KEEP_ALIVE_TIMEOUT, true);
                return;
            }
            if self.park_at.is_some_and(|t| t <= now) {
                // Parks after a whole period in which only the timer woke the task.
                self.park_now = self.quiet;
                self.quiet = true;
                self.park_at = self.park_after().map(|d| now + d);
            }
            return;
        }
        if self.hold_deadline().is_some_and(|t| t <= now) {
            // The previous owner's entries did not come in time: serve the client without them.
            self.release_held();
            return;
        }
        if self.will_at.is_some_and(|t| t <= now) {
            self.will_at = None;
            self.publish_will();
        }
        if self.expire_at.is_some_and(|t| t <= now) {
            self.end();
        }
    }

    fn publish_will(&mut self) {
        let Some((will, username)) = self.will.take().map(|w| *w) else { return };
        if !self.broker.may_publish(username.as_deref(), self.shared.client_id.as_str(), &will.topic) {
            self.broker.stats.dropped(DropReason::NotAuthorized, 1);
            return;
        }
        let msg = Message::from_will(&will, self.shared.client_id.clone(), Instant::now());
        let _ = self.broker.publish_unacknowledged(Arc::new(msg));
    }

    /// Ends the session: the pending will goes out now, subscriptions and registry entry go away.
    fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.detach(true);
        self.publish_will();
        self.unsubscribe_all();
        self.broker.sessions.remove(&self.shared.client_id, self.shared.id);
        if self.shared.durable {
            // Everything stored for this incarnation goes, including what was never loaded.
            self.shared.inbox.lock().take_all();
            self.qos.take_all();
            self.broker.durability.purge(self.shared.client_id.to_string(), self.shared.id.0);
        } else {
            self.release_all();
        }
        self.broker.stats.sessions.decrement(1.0);
    }

    /// After the session ended: hand any attach that raced with the end to a fresh session.
    fn finish(self) {
        for c in self.shared.close_control() {
            match c {
                Control::Attach(req) => super::attach(&self.broker, *req),
                Control::HandOut { done, .. } => {
                    let _ = done.send(false);
                }
                Control::Merge { entries, inbound, done } => {
                    // Handed to whatever session has the client id now (or dropped if none: the
                    // session ended here).
                    let broker = self.broker.clone();
                    let client_id = self.shared.client_id.to_string();
                    tokio::spawn(async move {
                        let stored = super::handover::merge(&broker, &client_id, entries, inbound).await;
                        if let Some(done) = done {
                            let _ = done.send(stored);
                        }
                    });
                }
                Control::Discard => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
