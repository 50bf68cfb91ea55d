use super::*;
use crate::store::{Cf, MemoryStore, RocksOptions, RocksStore};
use parking_lot::Mutex;
use tempfile::TempDir;

/// A memory store that records how it is driven and can be told to fail writes.
#[derive(Default)]
struct Recording {
    inner: MemoryStore,
    write_sync_flags: Mutex<Vec<bool>>,
    syncs: AtomicU64,
    fail: bool,
}

impl Store for Recording {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<bytes::Bytes>> {
        self.inner.get(cf, key)
    }
    fn scan_prefix(&self, cf: Cf, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        self.inner.scan_prefix(cf, prefix, f)
    }
    fn scan_from(&self, cf: Cf, start: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        self.inner.scan_from(cf, start, f)
    }
    fn write(&self, batch: Batch) -> Result<()> {
        self.write_many(vec![batch], true)
    }
    fn write_many(&self, batches: Vec<Batch>, sync: bool) -> Result<()> {
        self.write_sync_flags.lock().push(sync);
        if self.fail {
            return Err(Error::Engine("disk on fire".into()));
        }
        self.inner.write_many(batches, sync)
    }
    fn sync_wal(&self) -> Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn put(key: String) -> Batch {
    let mut b = Batch::new();
    b.put(Cf::Sessions, key.into_bytes(), &b"session-record"[..]);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_all_land_in_fewer_groups() {
    let dir = TempDir::new().unwrap();
    let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir.path(), &RocksOptions::default()).unwrap());
    let committer = Arc::new(Committer::start(store.clone(), SyncMode::Always).unwrap());
    let mut tasks = Vec::new();
    for t in 0..8 {
        let c = committer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                c.commit(put(format!("client-{t}-{i:03}"))).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = committer.stats();
    assert_eq!(stats.batches, 1600);
    assert!(stats.groups >= 1 && stats.groups < stats.batches, "no grouping: {stats:?}");
    drop(committer);
    drop(store);
    let reopened = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
    let mut count = 0;
    reopened
        .scan_prefix(Cf::Sessions, b"client-", &mut |_, v| {
            assert_eq!(v, b"session-record");
            count += 1;
            true
        })
        .unwrap();
    assert_eq!(count, 1600);
}

#[test]
fn always_mode_syncs_every_group_and_never_separately() {
    let store = Arc::new(Recording::default());
    let committer = Committer::start(store.clone(), SyncMode::Always).unwrap();
    for i in 0..5 {
        committer.commit_blocking(put(format!("k{i}"))).unwrap();
    }
    drop(committer);
    assert_eq!(*store.write_sync_flags.lock(), [true; 5]);
    assert_eq!(store.syncs.load(Ordering::SeqCst), 0);
    assert!(store.get(Cf::Sessions, b"k4").unwrap().is_some());
}

#[test]
fn interval_mode_syncs_within_the_interval_when_idle() {
    let store = Arc::new(Recording::default());
    let committer = Committer::start(store.clone(), SyncMode::Interval(Duration::from_millis(20))).unwrap();
    committer.commit_blocking(put("a".into())).unwrap();
    assert_eq!(*store.write_sync_flags.lock(), [false], "interval mode writes unsynced");
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.syncs.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(store.syncs.load(Ordering::SeqCst), 1, "one sync after the interval");
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(store.syncs.load(Ordering::SeqCst), 1, "nothing new written, nothing to sync");
}

#[test]
fn drop_syncs_pending_interval_writes() {
    let store = Arc::new(Recording::default());
    let committer = Committer::start(store.clone(), SyncMode::Interval(Duration::from_secs(3600))).unwrap();
    committer.commit_blocking(put("a".into())).unwrap();
    assert_eq!(store.syncs.load(Ordering::SeqCst), 0);
    drop(committer);
    assert_eq!(store.syncs.load(Ordering::SeqCst), 1);
}

#[test]
fn interval_mode_data_survives_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir.path(), &RocksOptions::default()).unwrap());
        let committer = Committer::start(store, SyncMode::Interval(Duration::from_millis(10))).unwrap();
        for i in 0..50 {
            committer.commit_blocking(put(format!("k{i:02}"))).unwrap();
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let reopened = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
    for i in 0..50 {
        assert!(reopened.get(Cf::Sessions, format!("k{i:02}").as_bytes()).unwrap().is_some(), "k{i:02}");
    }
}

#[tokio::test]
async fn a_failed_group_fails_every_writer() {
    let store = Arc::new(Recording { fail: true, ..Recording::default() });
    let committer = Arc::new(Committer::start(store.clone(), SyncMode::Always).unwrap());
    let mut tasks = Vec::new();
    for i in 0..4 {
        let c = committer.clone();
        tasks.push(tokio::spawn(async move { c.commit(put(format!("k{i}"))).await }));
    }
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(&err, Error::Engine(m) if m == "disk on fire"), "{err:?}");
    }
    assert_eq!(committer.stats().batches, 4);
    assert_eq!(store.get(Cf::Sessions, b"k0").unwrap(), None);
}

#[test]
fn sync_mode_follows_the_config() {
    use crate::config::{StorageConfig, SyncSetting};
    let mut c = StorageConfig::default();
    assert_eq!(SyncMode::from_config(&c), SyncMode::Interval(Duration::from_millis(100)), "the default");
    c.sync = SyncSetting::Always;
    assert_eq!(SyncMode::from_config(&c), SyncMode::Always);
    c.sync = SyncSetting::Interval;
    c.sync_interval_ms = 250;
    assert_eq!(SyncMode::from_config(&c), SyncMode::Interval(Duration::from_millis(250)));
}
