//! Publish/subscribe driver (fan-in, fan-out, p2p, shared).
//!
//! Setup connects every owned subscriber and waits for its SUBACK before any publisher connects, so
//! no message can precede a subscription. At `t0` each publisher paces its own sequence
//! (`t0 + (phase + seq) / rate`, phases spread over one interval so publishers do not burst in
//! lockstep) until the measurement window ends; then the drain period waits for in-flight
//! deliveries; then every client disconnects and the per-client accumulators are collected.
//!
//! Invariants: each client's event loop runs in its own task and owns that client's statistics (no
//! shared locks on the message path); a message counts as sent only once the client accepted it,
//! so sequence numbers `0..sent` are exactly what the broker may deliver.

use super::{instant_at, nanos, Control, Error, Live, RawResult, Result, Slice};
use crate::client::mqtt::{self, Event, MqttClient, MqttEvents, Session};
use crate::client::{Endpoint, Failure};
use crate::payload::{self, Header};
use crate::scenario::{PubSubLoad, Scenario};
use crate::stats::latency::Latency;
use crate::stats::recorder::{ReceiverStats, SenderStats, Window};
use crate::stats::seq::Seen;
use crate::sys::CpuMeter;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Parallel connection attempts during setup.
const SETUP_PARALLELISM: usize = 64;
/// Request channel capacity per client (small, so queueing inside the client stays negligible).
const CHANNEL_CAPACITY: usize = 10;
/// Longest wait for a clean disconnect at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

type ErrorCounts = BTreeMap<String, u64>;

struct PubHandle {
    index: u32,
    client: MqttClient,
    dead: CancellationToken,
    events: JoinHandle<PubOutcome>,
}

/// What a publisher's event task collected.
struct PubOutcome {
    stats: SenderStats,
    errors: ErrorCounts,
    /// Publish → PUBACK/PUBCOMP latency of messages sent inside the measurement window.
    ack_latency: Latency,
}

struct SubOutcome {
    stats: Option<ReceiverStats>,
    errors: ErrorCounts,
}

/// Connected clients of one process, waiting for `t0`.
pub struct Prepared {
    load: PubSubLoad,
    run_id: String,
    threads: usize,
    live: Arc<Live>,
    window: Arc<OnceLock<Window>>,
    finish: CancellationToken,
    publishers: Vec<PubHandle>,
    subscribers: Vec<JoinHandle<SubOutcome>>,
}

fn session(scn: &Scenario, load: &PubSubLoad, role: char, index: u32) -> Session {
    Session {
        client_id: scn.client_id(role, index),
        clean: load.clean,
        inflight: load.inflight,
        max_packet: (load.payload + 64 * 1024).max(10 * 1024),
        capacity: CHANNEL_CAPACITY,
    }
}

async fn close(client: &MqttClient, events: &mut MqttEvents) {
    client.disconnect();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async { while events.next().await.is_ok() {} }).await;
}

async fn connect_subscriber(
    ep: Arc<Endpoint>,
    s: Session,
    filter: String,
    qos: u8,
) -> Result<(MqttClient, MqttEvents)> {
    let addr = ep.addr_text();
    let (client, mut events) =
        mqtt::connect(&ep, &s).await.map_err(|failure| Error::Connect { addr: addr.clone(), failure })?;
    client.subscribe(&filter, qos).await.map_err(|failure| Error::Connect { addr: addr.clone(), failure })?;
    let wait = async {
        loop {
            match events.next().await {
                Ok(Event::SubAck(r)) => return r.map_err(|reason| Error::Subscribe { filter: filter.clone(), reason }),
                Ok(_) => {}
                Err(failure) => return Err(Error::Connect { addr: addr.clone(), failure }),
            }
        }
    };
    match tokio::time::timeout(ep.connect_timeout, wait).await {
        Ok(r) => r?,
        Err(_) => return Err(Error::Connect { addr, failure: Failure::Timeout }),
    }
    Ok((client, events))
}

/// Connects this process's subscribers (waiting for SUBACKs), then its publishers.
pub async fn prepare(
    scn: &Scenario,
    load: &PubSubLoad,
    ep: Endpoint,
    slice: Slice,
    live: Arc<Live>,
) -> Result<Prepared> {
    let ep = Arc::new(ep);
    let mut p = Prepared {
        load: load.clone(),
        run_id: scn.run_id.clone(),
        threads: scn.threads,
        live,
        window: Arc::new(OnceLock::new()),
        finish: CancellationToken::new(),
        publishers: Vec::new(),
        subscribers: Vec::new(),
    };
    let gate = Arc::new(Semaphore::new(SETUP_PARALLELISM));
    let mut subs = JoinSet::new();
    for j in slice.indices(load.subscribers) {
        let (ep, s, filter, gate) =
            (ep.clone(), session(scn, load, 's', j), load.subscribe_filter(&scn.run_id, j), gate.clone());
        let qos = load.qos;
        subs.spawn(async move {
            let _permit = gate.acquire().await;
            connect_subscriber(ep, s, filter, qos).await.map(|c| (j, c))
        });
    }
    while let Some(joined) = subs.join_next().await {
        let (j, (client, events)) = match joined.map_err(|e| Error::Task(e.to_string())).and_then(|r| r) {
            Ok(v) => v,
            Err(e) => {
                p.finish.cancel();
                return Err(e);
            }
        };
        let (window, live, finish) = (p.window.clone(), p.live.clone(), p.finish.clone());
        p.subscribers.push(tokio::spawn(subscriber_task(j, client, events, window, live, finish)));
    }
    let mut pubs = JoinSet::new();
    for i in slice.indices(load.publishers) {
        let (ep, s, gate) = (ep.clone(), session(scn, load, 'p', i), gate.clone());
        pubs.spawn(async move {
            let _permit = gate.acquire().await;
            let addr = ep.addr_text();
            mqtt::connect(&ep, &s).await.map(|c| (i, c)).map_err(|failure| Error::Connect { addr, failure })
        });
    }
    while let Some(joined) = pubs.join_next().await {
        let (i, (client, events)) = match joined.map_err(|e| Error::Task(e.to_string())).and_then(|r| r) {
            Ok(v) => v,
            Err(e) => {
                p.finish.cancel();
                return Err(e);
            }
        };
        let dead = CancellationToken::new();
        let task = publisher_events(
            i,
            load.qos,
            client.clone(),
            events,
            p.window.clone(),
            p.live.clone(),
            p.finish.clone(),
            dead.clone(),
            Latency::new()?,
        );
        p.publishers.push(PubHandle { index: i, client, dead, events: tokio::spawn(task) });
    }
    Ok(p)
}

async fn subscriber_task(
    index: u32,
    client: MqttClient,
    mut events: MqttEvents,
    window: Arc<OnceLock<Window>>,
    live: Arc<Live>,
    finish: CancellationToken,
) -> SubOutcome {
    let mut out = SubOutcome { stats: None, errors: ErrorCounts::new() };
    let mut alive = true;
    loop {
        let ev = tokio::select! {
            biased;
            _ = finish.cancelled() => break,
            ev = events.next() => ev,
        };
        match ev {
            Ok(Event::Publish(bytes)) => {
                let now = payload::now_ns();
                if out.stats.is_none() {
                    if let Some(w) = window.get() {
                        out.stats = ReceiverStats::new(index, *w).ok();
                    }
                }
                live.delivered.fetch_add(1, Ordering::Relaxed);
                match out.stats.as_mut().map(|s| s.on_payload(&bytes, now)) {
                    Some(Some(Seen::New | Seen::Reordered)) => {
                        live.distinct.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Some(_)) => {}
                    Some(None) | None => {
                        live.errors.fetch_add(1, Ordering::Relaxed);
                        if out.stats.is_none() {
                            *out.errors.entry("message before the run started".into()).or_default() += 1;
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(f) => {
                live.errors.fetch_add(1, Ordering::Relaxed);
                *out.errors.entry(format!("subscriber {f}")).or_default() += 1;
                alive = false;
                break;
            }
        }
    }
    if alive {
        close(&client, &mut events).await;
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn publisher_events(
    index: u32,
    qos: u8,
    client: MqttClient,
    mut events: MqttEvents,
    window: Arc<OnceLock<Window>>,
    live: Arc<Live>,
    finish: CancellationToken,
    dead: CancellationToken,
    mut ack_latency: Latency,
) -> PubOutcome {
    let mut stats = SenderStats { publisher: index, ..SenderStats::default() };
    let mut errors = ErrorCounts::new();
    // When each QoS 1/2 publish went out on the wire, oldest first: a broker acknowledges one
    // connection's publishes in order, so each PUBACK/PUBCOMP (or rejection) settles the front one.
    // Timed from the write, not from handing the message to the client, so the client's own queue
    // is not counted as broker latency.
    let mut unacked: VecDeque<u64> = VecDeque::new();
    let acked = |unacked: &mut VecDeque<u64>, latency: &mut Latency| {
        if let (Some(sent), Some(w)) = (unacked.pop_front(), window.get()) {
            if w.measures(sent) {
                latency.record_ns_span(sent, payload::now_ns());
            }
        }
    };
    loop {
        let ev = tokio::select! {
            biased;
            _ = finish.cancelled() => break,
            ev = events.next() => ev,
        };
        match ev {
            Ok(Event::Written) if qos == 0 => complete(&mut stats, &window, &live),
            Ok(Event::Written) => unacked.push_back(payload::now_ns()),
            Ok(Event::Completed) if qos > 0 => {
                acked(&mut unacked, &mut ack_latency);
                complete(&mut stats, &window, &live);
            }
            Ok(Event::Rejected(reason)) => {
                acked(&mut unacked, &mut ack_latency);
                stats.rejected += 1;
                live.errors.fetch_add(1, Ordering::Relaxed);
                *errors.entry(format!("publish rejected: {reason}")).or_default() += 1;
            }
            Ok(_) => {}
            Err(f) => {
                live.errors.fetch_add(1, Ordering::Relaxed);
                *errors.entry(format!("publisher {f}")).or_default() += 1;
                dead.cancel();
                return PubOutcome { stats, errors, ack_latency };
            }
        }
    }
    close(&client, &mut events).await;
    PubOutcome { stats, errors, ack_latency }
}

fn complete(stats: &mut SenderStats, window: &OnceLock<Window>, live: &Live) {
    if let Some(w) = window.get() {
        stats.on_complete(w, payload::now_ns());
        live.completed.fetch_add(1, Ordering::Relaxed);
    }
}

struct Pacer {
    index: u32,
    client: MqttClient,
    topic: String,
    qos: u8,
    size: usize,
    rate: f64,
    /// Fraction of one interval this publisher is offset by (spreads publishers evenly).
    phase: f64,
    t0: Instant,
    end: Instant,
}

impl Pacer {
    /// Publishes until the window ends (or stop / client death); returns the number sent. With a
    /// rate, exactly the messages due before the end are sent, even when a wake-up runs late.
    async fn publish(self, stop: CancellationToken, dead: CancellationToken, live: Arc<Live>) -> u64 {
        let mut seq: u32 = 0;
        loop {
            if self.rate > 0.0 {
                let offset = Duration::try_from_secs_f64((self.phase + f64::from(seq)) / self.rate).ok();
                let Some(due) = offset.and_then(|o| self.t0.checked_add(o)) else { break };
                if due >= self.end {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stop.cancelled() => break,
                    _ = dead.cancelled() => break,
                }
            }
            let over = self.rate <= 0.0 && Instant::now() >= self.end;
            if over || stop.is_cancelled() || dead.is_cancelled() || seq == u32::MAX {
                break;
            }
            let header = Header { publisher: self.index, seq, sent_ns: payload::now_ns() };
            let Ok(bytes) = payload::encode(&header, self.size) else { break };
            let accepted = tokio::select! {
                r = self.client.publish(&self.topic, self.qos, bytes) => r.is_ok(),
                _ = stop.cancelled() => false,
                _ = dead.cancelled() => false,
            };
            if !accepted {
                break;
            }
            seq += 1;
            live.sent.fetch_add(1, Ordering::Relaxed);
        }
        live.publishers_done.fetch_add(1, Ordering::Relaxed);
        u64::from(seq)
    }
}

impl Prepared {
    /// Runs the load from `t0_ns`, drains, disconnects and collects.
    pub async fn run(self, t0_ns: u64, control: Control) -> Result<RawResult> {
        let load = &self.load;
        let window = Window::new(t0_ns, nanos(load.warmup), nanos(load.duration));
        let _ = self.window.set(window);
        let t0 = instant_at(t0_ns);
        let end = t0 + Duration::from_nanos(window.end_ns - t0_ns);
        tokio::select! {
            _ = tokio::time::sleep_until(t0) => {}
            _ = control.stop.cancelled() => {}
        }
        let meter = CpuMeter::start(self.threads);
        let mut pacers = JoinSet::new();
        for h in &self.publishers {
            let pacer = Pacer {
                index: h.index,
                client: h.client.clone(),
                topic: load.publish_topic(&self.run_id, h.index),
                qos: load.qos,
                size: load.payload,
                rate: load.rate,
                phase: if load.rate > 0.0 { f64::from(h.index) / f64::from(load.publishers.max(1)) } else { 0.0 },
                t0,
                end,
            };
            let (stop, dead, live) = (control.stop.clone(), h.dead.clone(), self.live.clone());
            pacers.spawn(async move { (pacer.index, pacer.publish(stop, dead, live).await) });
        }
        let mut sent: BTreeMap<u32, u64> = BTreeMap::new();
        while let Some(r) = pacers.join_next().await {
            let (i, n) = r.map_err(|e| Error::Task(e.to_string()))?;
            sent.insert(i, n);
        }
        let usage = meter.finish();
        let load_end_ns = payload::now_ns();
        let drain_end = Instant::now().max(end) + load.drain;
        tokio::select! {
            _ = tokio::time::sleep_until(drain_end) => {}
            _ = control.drained.cancelled() => {}
            _ = control.stop.cancelled() => {}
        }
        self.finish.cancel();
        let mut result = RawResult { window: Some(window), processes: vec![usage], ..RawResult::default() };
        result.interrupted = control.stop.is_cancelled();
        result.load_end_ns = result.interrupted.then_some(load_end_ns);
        let mut ack_latency = Latency::new()?;
        for h in self.publishers {
            let PubOutcome { mut stats, errors, ack_latency: acks } =
                h.events.await.map_err(|e| Error::Task(e.to_string()))?;
            stats.sent = sent.get(&h.index).copied().unwrap_or(0);
            super::add_map(&mut result.errors, &errors);
            result.senders.push(stats);
            ack_latency.merge(&acks);
        }
        result.ack_latency = ack_latency.data();
        let mut latency = Latency::new()?;
        for s in self.subscribers {
            let outcome = s.await.map_err(|e| Error::Task(e.to_string()))?;
            super::add_map(&mut result.errors, &outcome.errors);
            if let Some(stats) = outcome.stats {
                latency.merge(&stats.latency);
                result.delivered.merge(&stats.series);
                result.delivered_measured += stats.measured;
                result.undecodable += stats.undecodable;
                result.streams.extend(stats.records());
            }
        }
        result.latency = latency.data();
        Ok(result)
    }
}
