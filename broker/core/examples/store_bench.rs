//! Group-commit throughput of the RocksDB engine: 50,000 small batches from 32 concurrent tasks
//! through the `Committer`, once with `sync = always` and once with `sync = interval` (100 ms).
//! Each mode writes into a fresh temporary directory (or under the directory given as argument).
//!
//! Run: `cargo run --release -p fleetmq-core --example store_bench [DIR]`
#![forbid(unsafe_code)]

use fleetmq_core::store::commit::{Committer, SyncMode};
use fleetmq_core::store::{Batch, Cf, RocksOptions, RocksStore, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TASKS: usize = 32;
const BATCHES: usize = 50_000;

fn main() -> anyhow::Result<()> {
    let base = std::env::args().nth(1).map(std::path::PathBuf::from);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    for (label, mode) in
        [("always", SyncMode::Always), ("interval-100ms", SyncMode::Interval(Duration::from_millis(100)))]
    {
        let dir = match &base {
            Some(b) => tempfile::tempdir_in(b)?,
            None => tempfile::tempdir()?,
        };
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir.path(), &RocksOptions::default())?);
        let committer = Arc::new(Committer::start(store, mode)?);
        let started = Instant::now();
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..TASKS {
                let c = committer.clone();
                tasks.push(tokio::spawn(async move {
                    for i in (t..BATCHES).step_by(TASKS) {
                        let mut b = Batch::new();
                        b.put(Cf::Sessions, format!("client-{i:06}").into_bytes(), vec![0x5a; 64]);
                        c.commit(b).await?;
                    }
                    Ok::<(), fleetmq_core::store::Error>(())
                }));
            }
            for task in tasks {
                task.await??;
            }
            Ok::<(), anyhow::Error>(())
        })?;
        let elapsed = started.elapsed();
        let stats = committer.stats();
        println!(
            "{label:>15}: {} batches in {:.2} s = {:.0} batches/s, {} groups ({:.1} batches/group)",
            stats.batches,
            elapsed.as_secs_f64(),
            stats.batches as f64 / elapsed.as_secs_f64(),
            stats.groups,
            stats.batches as f64 / stats.groups.max(1) as f64,
        );
    }
    Ok(())
}
