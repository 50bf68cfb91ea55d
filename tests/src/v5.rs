//! A real MQTT 5.0 client (rumqttc `v5`) driven for tests, mirroring [`crate::v4`]: the event loop
//! runs in a task that forwards incoming PUBLISHes and other packets into channels.
//!
//! Invariants: the event loop never reconnects; a DISCONNECT from the broker or any error ends the
//! task and is reported as [`Note::Closed`]; dropping a [`V5`] closes the socket without DISCONNECT.

use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectProperties, ConnectReturnCode, Filter, Publish, PublishProperties, SubscribeProperties,
    SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, Incoming, MqttOptions};
use rumqttc::Outgoing;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

/// Default bound for connecting and for a single expected event.
pub const WAIT: Duration = Duration::from_secs(5);

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connection refused with {0:?}")]
    Refused(ConnectReturnCode),
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("no CONNACK within the timeout")]
    Timeout,
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Something other than a PUBLISH that the event loop saw.
#[derive(Debug)]
pub enum Note {
    Packet(Box<Incoming>),
    Closed(String),
}

/// A connected 5.0 client.
pub struct V5 {
    pub client: AsyncClient,
    pub connack: ConnAck,
    publishes: mpsc::UnboundedReceiver<Publish>,
    notes: mpsc::UnboundedReceiver<Note>,
    task: JoinHandle<()>,
}

/// Options for a plain TCP connection: 30 s keepalive, 1 MiB incoming packets, and — when `clean`
/// is false — a session expiry of 300 s so the session outlives the connection.
pub fn options(addr: SocketAddr, id: &str, clean: bool) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_clean_start(clean);
    o.set_keep_alive(Duration::from_secs(30));
    let mut props = ConnectProperties::new();
    props.max_packet_size = Some(1 << 20);
    if !clean {
        props.session_expiry_interval = Some(300);
    }
    o.set_connect_properties(props);
    o
}

/// Connects with [`options`] and panics unless the broker accepts.
pub async fn v5_client(addr: SocketAddr, id: &str, clean: bool) -> V5 {
    connect(options(addr, id, clean)).await.unwrap_or_else(|e| panic!("5.0 client {id} could not connect: {e}"))
}

/// Connects with arbitrary options; the CONNACK outcome is returned, not asserted.
pub async fn connect(opts: MqttOptions) -> Result<V5> {
    let (client, mut el) = AsyncClient::new(opts, 64);
    let connack = match tokio::time::timeout(WAIT, el.poll()).await {
        Err(_) => return Err(Error::Timeout),
        Ok(Err(ConnectionError::ConnectionRefused(code))) => return Err(Error::Refused(code)),
        Ok(Err(e)) => return Err(Error::Connection(e.to_string())),
        Ok(Ok(Event::Incoming(Incoming::ConnAck(ack)))) => ack,
        Ok(Ok(other)) => return Err(Error::Connection(format!("expected CONNACK, got {other:?}"))),
    };
    let (ptx, publishes) = mpsc::unbounded_channel();
    let (ntx, notes) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let _ = ptx.send(p);
                }
                Ok(Event::Incoming(i)) => {
                    let _ = ntx.send(Note::Packet(Box::new(i)));
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    let _ = ntx.send(Note::Closed("client sent DISCONNECT".into()));
                    break;
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => {
                    let _ = ntx.send(Note::Closed(e.to_string()));
                    break;
                }
            }
        }
    });
    Ok(V5 { client, connack, publishes, notes, task })
}

/// The topic of a received PUBLISH as text.
pub fn topic(p: &Publish) -> String {
    String::from_utf8_lossy(&p.topic).into_owned()
}

impl V5 {
    /// Subscribes with full 5.0 options (and an optional subscription identifier); returns the
    /// SUBACK reason codes.
    pub async fn subscribe_filter(&mut self, filter: Filter, id: Option<usize>) -> Vec<SubscribeReasonCode> {
        let props = SubscribeProperties { id, user_properties: Vec::new() };
        self.client
            .subscribe_many_with_properties([filter], props)
            .await
            .unwrap_or_else(|e| panic!("subscribe request failed: {e}"));
        match self.next_note(WAIT, |n| matches!(n, Note::Packet(p) if matches!(**p, Incoming::SubAck(_)))).await {
            Note::Packet(p) => match *p {
                Incoming::SubAck(s) => s.return_codes,
                other => panic!("expected SUBACK, got {other:?}"),
            },
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Subscribes with default options and asserts the broker granted exactly `qos`.
    pub async fn subscribe_ok(&mut self, filter: &str, qos: QoS) {
        let codes = self.subscribe_filter(Filter::new(filter, qos), None).await;
        assert_eq!(codes, vec![SubscribeReasonCode::Success(qos)], "SUBACK for {filter}");
    }

    /// Publishes with properties and, for QoS 1/2, waits for the PUBACK / PUBCOMP.
    pub async fn publish_with(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
        props: PublishProperties,
    ) {
        let payload: Vec<u8> = payload.into();
        self.client
            .publish_with_properties(topic, qos, retain, payload, props)
            .await
            .unwrap_or_else(|e| panic!("publish request failed: {e}"));
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.next_note(WAIT, |n| matches!(n, Note::Packet(p) if matches!(**p, Incoming::PubAck(_)))).await;
            }
            QoS::ExactlyOnce => {
                self.next_note(WAIT, |n| matches!(n, Note::Packet(p) if matches!(**p, Incoming::PubComp(_)))).await;
            }
        }
    }

    /// Publishes without properties and waits for the acknowledgement flow to finish.
    pub async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
        self.publish_with(topic, qos, retain, payload, PublishProperties::default()).await
    }

    /// Waits until `n` PUBLISHes arrived and returns them in arrival order; panics with what did
    /// arrive if fewer came within `timeout`.
    pub async fn wait_for_publishes(&mut self, n: usize, timeout: Duration) -> Vec<Publish> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match timeout_at(deadline, self.publishes.recv()).await {
                Ok(Some(p)) => got.push(p),
                _ => panic!(
                    "expected {n} PUBLISHes within {timeout:?}, got {}: {:?}",
                    got.len(),
                    got.iter().map(|p| (topic(p), &p.payload)).collect::<Vec<_>>()
                ),
            }
        }
        got
    }

    /// Returns every PUBLISH arriving within `dur` (waits the whole duration).
    pub async fn collect_for(&mut self, dur: Duration) -> Vec<Publish> {
        let deadline = Instant::now() + dur;
        let mut got = Vec::new();
        while let Ok(Some(p)) = timeout_at(deadline, self.publishes.recv()).await {
            got.push(p);
        }
        got
    }

    /// Panics if any PUBLISH arrives within `dur`.
    pub async fn expect_no_publish(&mut self, dur: Duration) {
        let got = self.collect_for(dur).await;
        assert!(
            got.is_empty(),
            "expected no PUBLISH, got {:?}",
            got.iter().map(|p| (topic(p), &p.payload)).collect::<Vec<_>>()
        );
    }

    /// Waits until the connection ends; returns the reason text.
    pub async fn wait_closed(&mut self, timeout: Duration) -> String {
        match self.next_note(timeout, |n| matches!(n, Note::Closed(_))).await {
            Note::Closed(why) => why,
            other => panic!("expected close, got {other:?}"),
        }
    }

    /// Sends DISCONNECT (normal disconnection) and waits for the event loop to finish.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap_or_else(|e| panic!("disconnect request failed: {e}"));
        self.wait_closed(WAIT).await;
        let _ = tokio::time::timeout(WAIT, &mut self.task).await;
    }

    /// Drops the connection without DISCONNECT (abrupt network loss).
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = tokio::time::timeout(WAIT, &mut self.task).await;
    }

    async fn next_note(&mut self, timeout: Duration, want: impl Fn(&Note) -> bool) -> Note {
        let deadline = Instant::now() + timeout;
        loop {
            match timeout_at(deadline, self.notes.recv()).await {
                Ok(Some(n)) if want(&n) => return n,
                Ok(Some(Note::Closed(why))) => panic!("connection closed while waiting: {why}"),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("expected event not seen within {timeout:?}"),
            }
        }
    }
}

impl Drop for V5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}
