//! Fills a RocksDB data directory with retained messages and persistent sessions, to measure how
//! long `fleetmq` takes to start on it (see README, "Durability").
//!
//! cargo run --release -p fleetmq-core --example startup_bench -- DIR RETAINED SESSIONS

use bytes::Bytes;
use fleetmq_codec::{QoS, SubOptions};
use fleetmq_core::ids::ClientId;
use fleetmq_core::message::record;
use fleetmq_core::message::Message;
use fleetmq_core::persist::keys;
use fleetmq_core::persist::records::{SessionRecord, SubscriptionRecord};
use fleetmq_core::store::{Batch, Cf, RocksOptions, RocksStore, Store};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "bench-data".into()));
    let retained: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let sessions: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let store = RocksStore::open(&dir, &RocksOptions::default())?;
    let now = Instant::now();
    let started = Instant::now();
    let mut batch = Batch::new();
    for i in 0..retained {
        let msg = Message {
            topic: Arc::from(format!("fleet/{}/device/{}/state", i % 1000, i)),
            payload: Bytes::from(format!("{{\"device\":{i},\"state\":\"online\",\"fw\":\"1.2.3\"}}")),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
            publisher: ClientId::new("bench"),
            expires_at: None,
            uid: fleetmq_core::ids::MessageUid::next(),
        };
        batch.put(Cf::Retained, Bytes::copy_from_slice(msg.topic.as_bytes()), record::encode_message(&msg, now)?);
        if batch.ops.len() >= 10_000 {
            store.write(std::mem::take(&mut batch))?;
        }
    }
    for i in 0..sessions {
        let id = format!("device-{i}");
        let mut r = SessionRecord::new(None, 86_400);
        r.offline_since_ms = Some(0);
        let opts = SubOptions { qos: QoS::AtLeastOnce, ..Default::default() };
        r.subscriptions.push(SubscriptionRecord::new(&format!("fleet/cmd/{id}"), opts, None));
        r.offline_since_ms = None;
        batch.put(Cf::Sessions, keys::session(&id, i + 1), r.encode());
        if batch.ops.len() >= 10_000 {
            store.write(std::mem::take(&mut batch))?;
        }
    }
    store.write(batch)?;
    println!(
        "wrote {retained} retained messages and {sessions} sessions to {} in {:?}",
        dir.display(),
        started.elapsed()
    );
    Ok(())
}
