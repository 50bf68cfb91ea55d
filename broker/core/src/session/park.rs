//! The parking lot: sessions of idle connections held without a task (see `task::park` for
//! what a parked record holds and when a session parks).
//!
//! One lot per node. Parked sockets are registered with the lot's own poller (an epoll instance
//! whose user-space cost per socket is nothing beyond its slot), which the lot's task watches
//! through the async reactor. A parked session is resumed into a new task by the first of:
//! bytes or a hang-up on its socket, its waker (a delivery, a request such as a takeover, node
//! shutdown), or its keep-alive deadline.
//!
//! Invariants: a parked record lives in exactly one slot until it is resumed, and only the one
//! who empties the slot (under the lock) resumes it, so a session is never resumed twice; a slot's
//! token carries its generation, bumped on every emptying, so a late poller event, wake or
//! deadline for a reused slot is ignored; once the lot is closed (node shutdown) nothing parks
//! and everything parked has been resumed.

use super::task::park::Parked;
use crate::broker::Broker;
use mio::unix::SourceFd;
use mio::{Interest, Token};
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

const _: () = assert!(usize::BITS == 64, "a token holds a 32-bit slot index and a 32-bit generation");

/// Not a slot: asks the lot's task to look at its earliest deadline again.
const REARM: u64 = u64::MAX;
/// Stale deadlines (of sessions resumed early) kept at most, beyond twice the parked count.
const STALE_DEADLINES: usize = 1024;

/// The node's parked sessions.
pub(crate) struct Lot {
    registry: mio::Registry,
    slots: Mutex<Slots>,
    /// Tokens of woken sessions (and [`REARM`]) for the lot's task.
    woken: mpsc::UnboundedSender<u64>,
    /// Cleared when the lot closes (node shutdown, or its poller failed): nothing parks then.
    /// Cleared before `close` takes the slots' lock, and read under it by `park`.
    open: AtomicBool,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Slot>,
    free: Vec<u32>,
    /// Keep-alive deadlines by token; entries of resumed sessions are skipped when due.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    parked: usize,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    parked: Option<Box<Parked>>,
}

fn token(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

/// A token's slot index and generation.
fn split(token: u64) -> (usize, u32) {
    ((token & u64::from(u32::MAX)) as usize, (token >> 32) as u32)
}

/// Starts a task for a session that did not stay parked (or never got a slot).
fn restart(parked: Parked, broker: &Arc<Broker>) {
    tokio::spawn(parked.resume(broker).run());
}

/// The waker of a parked session: resumes it through the lot's task.
struct SlotWaker {
    lot: Arc<Lot>,
    token: u64,
}

impl std::task::Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.lot.woken.send(self.token);
    }
}

/// The lot's poller as the reactor sees it (a file descriptor that is readable when a parked
/// socket is).
struct Poller(mio::Poll);

impl AsRawFd for Poller {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Registers the poller with the reactor. The constructor is deprecated for types whose
/// descriptor may be closed while registered; `Poller` owns its descriptor, which closes only
/// when the `AsyncFd` (deregistering first) drops it, so the safe constructor is sound here and
/// spares an `unsafe` block in a crate that forbids them.
#[expect(deprecated, reason = "sound for an owned descriptor, see above")]
fn watch(poller: Poller) -> std::io::Result<AsyncFd<Poller>> {
    AsyncFd::with_interest(poller, tokio::io::Interest::READABLE)
}

impl Lot {
    /// Creates the node's lot and starts its task (on the current runtime); `None`, with a
    /// warning, if the poller cannot be created (connections then simply never park).
    pub fn start(broker: &Arc<Broker>) -> Option<Arc<Lot>> {
        let made = mio::Poll::new().and_then(|poll| {
            let registry = poll.registry().try_clone()?;
            Ok((watch(Poller(poll))?, registry))
        });
        let (poller, registry) = match made {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the parking lot's poller: idle connections keep their tasks");
                return None;
            }
        };
        let (woken, rx) = mpsc::unbounded_channel();
        let lot = Arc::new(Lot { registry, slots: Mutex::new(Slots::default()), woken, open: AtomicBool::new(true) });
        tokio::spawn(serve(lot.clone(), poller, rx, broker.clone()));
        Some(lot)
    }

    /// Parks a session: registers its socket and keep-alive deadline and makes the slot's waker
    /// the session's. A session that cannot park (the lot closed, registration failed) is
    /// resumed at once.
    pub(super) fn park(self: &Arc<Self>, parked: Box<Parked>, broker: &Arc<Broker>) {
        let shared = parked.shared.clone();
        let token = {
            let mut slots = self.slots.lock();
            // Read under the lock, which `close` takes after clearing it: a session either parks
            // before `close` collects the slots, or sees the lot closed.
            if !self.is_open() {
                drop(slots);
                restart(*parked, broker);
                return;
            }
            let index = match slots.free.pop() {
                Some(i) => i,
                None => {
                    slots.entries.push(Slot::default());
                    (slots.entries.len() - 1) as u32
                }
            };
            let token = token(index, slots.entries[index as usize].generation);
            let fd = parked.link.fd();
            if let Err(e) = self.registry.register(&mut SourceFd(&fd), Token(token as usize), Interest::READABLE) {
                slots.free.push(index);
                drop(slots);
                tracing::debug!(error = %e, "cannot register a parked connection; it stays active");
                restart(*parked, broker);
                return;
            }
            let due = parked.link.keepalive_due(broker.started);
            slots.entries[index as usize].parked = Some(parked);
            // Under the lock, after the record is in its slot: the lot's task can resume it only
            // after this, so this never replaces the waker of a task already resumed.
            shared.waker.register(&Waker::from(Arc::new(SlotWaker { lot: self.clone(), token })));
            slots.parked += 1;
            broker.stats.parked.set(slots.parked as f64);
            if let Some(due) = due {
                let earliest = slots.deadlines.peek().map(|Reverse((t, _))| *t);
                slots.deadlines.push(Reverse((due, token)));
                if earliest.is_none_or(|t| due < t) {
                    let _ = self.woken.send(REARM);
                }
            }
            token
        };
        // Anything that arrived while parking woke the task's old waker: look once more.
        if shared.control_pending.load(Ordering::Acquire)
            || shared.deliveries.load(Ordering::Acquire)
            || broker.is_shutting_down()
        {
            let _ = self.woken.send(token);
        }
    }

    /// Empties the slot of `token` if it still holds that parked session.
    fn take(&self, token: u64, broker: &Broker) -> Option<Box<Parked>> {
        let (index, generation) = split(token);
        let mut slots = self.slots.lock();
        let slot = slots.entries.get_mut(index).filter(|s| s.generation == generation)?;
        let parked = slot.parked.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        slots.free.push(index as u32);
        slots.parked -= 1;
        broker.stats.parked.set(slots.parked as f64);
        Some(parked)
    }

    /// Resumes the session of `token` into a new task (if it is still parked there).
    fn resume(&self, token: u64, broker: &Arc<Broker>) {
        let Some(parked) = self.take(token, broker) else { return };
        let fd = parked.link.fd();
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        restart(*parked, broker);
    }

    /// Resumes every session whose keep-alive deadline passed; returns the next deadline.
    fn resume_due(&self, now: Instant, broker: &Arc<Broker>) -> Option<Instant> {
        loop {
            let token = {
                let mut slots = self.slots.lock();
                match slots.deadlines.peek() {
                    Some(Reverse((t, _))) if *t > now => return Some(*t),
                    None => return None,
                    Some(_) => {}
                }
                let Reverse((_, token)) = slots.deadlines.pop()?;
                token
            };
            self.resume(token, broker);
        }
    }

    /// Drops deadlines of sessions no longer parked once they outnumber the parked ones.
    fn prune_deadlines(&self) {
        let mut slots = self.slots.lock();
        if slots.deadlines.len() <= 2 * slots.parked + STALE_DEADLINES {
            return;
        }
        let Slots { entries, deadlines, .. } = &mut *slots;
        deadlines.retain(|Reverse((_, token))| {
            let (index, generation) = split(*token);
            entries.get(index).is_some_and(|s| s.generation == generation && s.parked.is_some())
        });
    }

    /// Whether sessions may park here (the lot has not closed).
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Closes the lot (nothing parks any more) and resumes everything parked.
    fn close(&self, broker: &Arc<Broker>) {
        self.open.store(false, Ordering::Relaxed);
        let tokens: Vec<u64> = {
            let slots = self.slots.lock();
            slots
                .entries
                .iter()
                .enumerate()
                .filter(|(_, s)| s.parked.is_some())
                .map(|(i, s)| token(i as u32, s.generation))
                .collect()
        };
        for t in tokens {
            self.resume(t, broker);
        }
    }

    /// Sessions parked now.
    pub fn len(&self) -> usize {
        self.slots.lock().parked
    }
}

/// The lot's task: resumes sessions whose socket became readable, whose waker fired or whose
/// keep-alive deadline passed; on node shutdown closes the lot.
async fn serve(
    lot: Arc<Lot>,
    mut poller: AsyncFd<Poller>,
    mut woken: mpsc::UnboundedReceiver<u64>,
    broker: Arc<Broker>,
) {
    let mut shutdown = broker.shutdown_signal();
    let mut events = mio::Events::with_capacity(256);
    let far = || Instant::now() + Duration::from_secs(3600);
    let timer = tokio::time::sleep_until(far().into());
    tokio::pin!(timer);
    let mut next = None;
    'serve: loop {
        timer.as_mut().reset(next.unwrap_or_else(far).into());
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|down| *down) => break 'serve,
            ready = poller.readable_mut() => {
                let mut guard = match ready {
                    Ok(g) => g,
                    Err(e) => {
                        tracing::warn!(error = %e, "parking lot poller failed; resuming every parked session");
                        break 'serve;
                    }
                };
                loop {
                    match guard.get_inner_mut().0.poll(&mut events, Some(Duration::ZERO)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "parking lot poll failed; resuming every parked session");
                            break 'serve;
                        }
                    }
                    if events.is_empty() {
                        guard.clear_ready();
                        break;
                    }
                    for e in events.iter() {
                        lot.resume(e.token().0 as u64, &broker);
                    }
                }
            }
            Some(token) = woken.recv() => {
                let mut token = Some(token);
                while let Some(t) = token {
                    // A new earlier deadline (REARM) is picked up below.
                    if t != REARM {
                        lot.resume(t, &broker);
                    }
                    token = woken.try_recv().ok();
                }
            }
            () = &mut timer => {}
        }
        next = lot.resume_due(Instant::now(), &broker);
        lot.prune_deadlines();
    }
    lot.close(&broker);
}
