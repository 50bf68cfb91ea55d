//! The durable engine: a RocksDB database in the node's `data_dir`. This is the only module of
//! FleetMQ that talks to RocksDB; everything else sees the [`Store`] trait.
//!
//! On-disk layout: one RocksDB column family per [`Cf`], named by [`Cf::name`] and created on first
//! open (RocksDB's own `default` family exists but stays empty). Keys are raw bytes, ordered
//! bytewise, so a prefix scan is a seek plus a forward range:
//!
//! | family     | key                          | value                                   |
//! |------------|------------------------------|-----------------------------------------|
//! | `retained` | topic name (UTF-8 bytes)     | retained message record (`message::record`) |
//! | `sessions` | session key (`persist::keys`) | persistent session record (`persist::records`) |
//! | `meta`     | `format`                     | storage format version, ASCII decimal   |
//! | `queue`    | session key + seq (u64 BE)   | queue entry: message id, QoS, flags, subscription ids |
//! | `messages` | message id (u64 BE)          | message record (`message::record`), shared by queue entries |
//! | `inbound`  | session key + packet id (u16 BE) | empty: inbound QoS 2 id awaiting PUBREL |
//!
//! A session key is `[client id length: u16 BE][client id][incarnation: u64 BE]`, so one client's
//! keys are contiguous and a later incarnation of the same client id never shares a prefix with an
//! earlier one.
//!
//! Invariants: `meta/format` is written on the first open of an empty directory and checked on every
//! later open, so a node never reads data laid out by an incompatible version; a [`Batch`] and a
//! `write_many` group each become one RocksDB `WriteBatch` (atomic, also across families); `write`
//! and `write_many(.., true)` return only after the write-ahead log is synced. RocksDB's `LOCK` file
//! keeps a second process (or a second store in this one) off the same directory; that case is
//! reported as [`Error::Locked`].

use super::{Batch, Cf, Error, Op, Result, Store};
use bytes::Bytes;
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options, WriteBatch, WriteOptions, DB};
use std::path::{Path, PathBuf};

/// The storage format this build writes and reads (`meta/format`).
pub const FORMAT_VERSION: u32 = 1;

/// Key of the format version in `Cf::Meta`.
const FORMAT_KEY: &[u8] = b"format";

/// Tuning of the RocksDB engine; the defaults suit a broker node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RocksOptions {
    /// Create the directory and database when missing (otherwise opening a fresh dir fails).
    pub create_if_missing: bool,
    /// LZ4-compress table files (records are small and repetitive).
    pub compression: bool,
    /// Size of one memtable before it is flushed to a table file.
    pub write_buffer_bytes: usize,
    /// Memtable memory across all column families, after which the largest is flushed (bounds
    /// RAM however many column families are busy).
    pub total_write_buffer_bytes: usize,
    /// Background flush and compaction threads.
    pub max_background_jobs: i32,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            create_if_missing: true,
            compression: true,
            write_buffer_bytes: 32 << 20,
            total_write_buffer_bytes: 128 << 20,
            max_background_jobs: 2,
        }
    }
}

/// A durable store over RocksDB. Cheap to share behind an `Arc`; all calls may block on disk.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RocksStore {
    /// Opens (or creates) the database in `dir`, creating every column family, and checks the
    /// storage format. Fails with [`Error::Locked`] when another store holds `dir`, with
    /// [`Error::Format`] on a format mismatch and with [`Error::Open`] otherwise.
    pub fn open(dir: &Path, opts: &RocksOptions) -> Result<RocksStore> {
        let path = dir.to_path_buf();
        let open_err = |reason: String| Error::Open { path: path.clone(), reason };
        if dir.exists() && !dir.is_dir() {
            return Err(open_err("not a directory".into()));
        }
        if opts.create_if_missing {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        } else if !dir.exists() {
            return Err(open_err("does not exist".into()));
        }
        let mut db_opts = Options::default();
        db_opts.create_if_missing(opts.create_if_missing);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(opts.max_background_jobs);
        db_opts.set_db_write_buffer_size(opts.total_write_buffer_bytes);
        db_opts.set_keep_log_file_num(4);
        db_opts.set_max_log_file_size(4 << 20);
        let cfs = Cf::ALL.map(|cf| {
            let mut cf_opts = Options::default();
            cf_opts.set_write_buffer_size(opts.write_buffer_bytes);
            let compression = if opts.compression { DBCompressionType::Lz4 } else { DBCompressionType::None };
            cf_opts.set_compression_type(compression);
            ColumnFamilyDescriptor::new(cf.name(), cf_opts)
        });
        let db = DB::open_cf_descriptors(&db_opts, dir, cfs).map_err(|e| open_error(&path, e))?;
        let store = RocksStore { db, path };
        store.check_format()?;
        Ok(store)
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `meta/format` into a new database, or checks it against [`FORMAT_VERSION`].
    fn check_format(&self) -> Result<()> {
        let expected = FORMAT_VERSION.to_string();
        match self.get(Cf::Meta, FORMAT_KEY)? {
            Some(found) if found.as_ref() == expected.as_bytes() => Ok(()),
            Some(found) => Err(Error::Format {
                path: self.path.clone(),
                found: String::from_utf8_lossy(&found).into_owned(),
                expected: FORMAT_VERSION,
            }),
            None => {
                let mut b = Batch::new();
                b.put(Cf::Meta, FORMAT_KEY, expected.into_bytes());
                self.write(b)
            }
        }
    }

    fn cf(&self, cf: Cf) -> Result<&ColumnFamily> {
        self.db.cf_handle(cf.name()).ok_or_else(|| Error::Engine(format!("column family `{}` is missing", cf.name())))
    }
}

/// Classifies an open failure: a held `LOCK` file means another store owns the directory.
fn open_error(path: &Path, e: rocksdb::Error) -> Error {
    let text = e.into_string();
    let locked = text.contains("LOCK")
        && ["lock hold by current process", "Resource temporarily unavailable", "No locks available"]
            .iter()
            .any(|m| text.contains(m));
    if locked {
        Error::Locked { path: path.to_path_buf() }
    } else {
        Error::Open { path: path.to_path_buf(), reason: text }
    }
}

fn engine(e: rocksdb::Error) -> Error {
    Error::Engine(e.into_string())
}

impl Store for RocksStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.db.get_cf(self.cf(cf)?, key).map_err(engine)?.map(Bytes::from))
    }

    fn scan_prefix(&self, cf: Cf, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf)?);
        it.seek(prefix);
        while let Some((k, v)) = it.item() {
            if !k.starts_with(prefix) || !f(k, v) {
                break;
            }
            it.next();
        }
        it.status().map_err(engine)
    }

    fn scan_from(&self, cf: Cf, start: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf)?);
        it.seek(start);
        while let Some((k, v)) = it.item() {
            if !f(k, v) {
                break;
            }
            it.next();
        }
        it.status().map_err(engine)
    }

    fn write(&self, batch: Batch) -> Result<()> {
        self.write_many(vec![batch], true)
    }

    fn write_many(&self, batches: Vec<Batch>, sync: bool) -> Result<()> {
        let mut wb = WriteBatch::default();
        for op in batches.into_iter().flat_map(|b| b.ops) {
            match op {
                Op::Put { cf, key, value } => wb.put_cf(self.cf(cf)?, key, value),
                Op::Delete { cf, key } => wb.delete_cf(self.cf(cf)?, key),
                Op::DeleteRange { cf, from, to } => wb.delete_range_cf(self.cf(cf)?, from, to),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo).map_err(engine)
    }

    fn sync_wal(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(engine)
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        if let Err(e) = self.db.flush_wal(true) {
            tracing::warn!(path = %self.path.display(), error = %e, "syncing the storage log on close failed");
        }
    }
}

#[cfg(test)]
mod tests;
