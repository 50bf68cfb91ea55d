//! [`OffsetStore`]: committed offsets per (group, topic, partition), durable across restarts.
//!
//! Layout: one file, `offsets.log` in the store's directory, in the format of `offsets/frame.rs`.
//! A commit appends one frame per partition in a single write and fsyncs before it returns;
//! when superseded frames outnumber live ones the file is rewritten (temp file, fsync, rename,
//! fsync of the directory). Opening replays the file, keeping the last value per key, and cuts
//! off a torn or corrupt tail.
//!
//! Invariants:
//! - The in-memory map changes only after the frames saying so are durable, so an acknowledged
//!   commit survives a crash and a failed one is not visible.
//! - `len` is the length of the file's valid prefix; after a failed append the file is truncated
//!   back to it, and if that fails the store refuses writes ([`Error::Poisoned`]).
//! - All I/O is blocking: call from a dedicated thread or `spawn_blocking`, never a reactor thread.

use super::{
    CommitPartitionResult, CommitRequest, CommitResponse, CommitTopicResult, Error, ErrorCode, FetchPartitionResult,
    FetchRequest, FetchResponse, FetchTopicResult, Result, MAX_NAME_BYTES,
};
use frame::{Record, MAGIC};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

mod frame;

const FILE_NAME: &str = "offsets.log";
const TMP_NAME: &str = "offsets.log.tmp";

/// Offset store limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetStoreConfig {
    /// Most (group, topic, partition) entries kept; commits that would add more get
    /// INVALID_COMMIT_OFFSET_SIZE (existing entries can still be updated).
    pub max_offsets: usize,
    /// Kafka's `offset.metadata.max.bytes`; longer metadata gets OFFSET_METADATA_TOO_LARGE.
    pub max_metadata_bytes: usize,
    /// The file is compacted only once it holds at least this many frames (and more than twice
    /// the live entries), so small stores are never rewritten.
    pub compact_min_records: u64,
}

impl Default for OffsetStoreConfig {
    fn default() -> Self {
        OffsetStoreConfig { max_offsets: 100_000, max_metadata_bytes: 4_096, compact_min_records: 10_000 }
    }
}

/// One committed offset, as OffsetFetch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch of the committed offset, -1 when the client did not say.
    pub leader_epoch: i32,
    /// The client's metadata string ("" when none).
    pub metadata: String,
}

/// Size figures, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetStoreStats {
    /// Live (group, topic, partition) entries.
    pub live: usize,
    /// Frames in the file, live or superseded.
    pub file_records: u64,
    /// Bytes of the file's valid prefix.
    pub file_bytes: u64,
}

type Partitions = BTreeMap<i32, CommittedOffset>;

/// Durable committed offsets (see the module docs).
#[derive(Debug)]
pub struct OffsetStore {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    len: u64,
    file_records: u64,
    offsets: HashMap<String, BTreeMap<String, Partitions>>,
    live: usize,
    config: OffsetStoreConfig,
    poisoned: bool,
}

impl OffsetStore {
    /// Opens (or creates) the store in `dir`, replaying its file. A torn or corrupt tail is cut
    /// off with a warning; a file that is not an offset file at all is an error.
    pub fn open(dir: impl AsRef<Path>, config: OffsetStoreConfig) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join(FILE_NAME);
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        match fs::remove_file(dir.join(TMP_NAME)) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(io("remove", &dir.join(TMP_NAME))(e)),
            _ => {}
        }
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("read", &path)(e)),
        };
        if bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) {
            // Missing, or torn while being created: start a fresh, empty file.
            let file = write_snapshot(&dir, &path, std::iter::empty())?;
            return Ok(OffsetStore::with_file(dir, path, file, config));
        }
        let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) else {
            return Err(Error::Corrupt { path, reason: "bad magic" });
        };
        let (records, valid) = frame::decode(body);
        let file = open_append(&path)?;
        let mut store = OffsetStore::with_file(dir, path, file, config);
        if valid < body.len() {
            tracing::warn!(
                path = %store.path.display(),
                dropped_bytes = body.len() - valid,
                "offset store: cutting off a torn or corrupt tail"
            );
            let keep = (MAGIC.len() + valid) as u64;
            store.file.set_len(keep).and_then(|()| store.file.sync_all()).map_err(io("truncate", &store.path))?;
        }
        store.len = (MAGIC.len() + valid) as u64;
        store.file_records = records.len() as u64;
        for Record::Commit { group, topic, partition, offset, leader_epoch, metadata } in records {
            store.apply(group, topic, partition, CommittedOffset { offset, leader_epoch, metadata });
        }
        store.maybe_compact();
        Ok(store)
    }

    fn with_file(dir: PathBuf, path: PathBuf, file: File, config: OffsetStoreConfig) -> Self {
        OffsetStore {
            dir,
            path,
            file,
            len: MAGIC.len() as u64,
            file_records: 0,
            offsets: HashMap::new(),
            live: 0,
            config,
            poisoned: false,
        }
    }

    /// Persists the offsets of `req` (whose membership the coordinator already checked) and
    /// reports per partition. Rejected partitions are not written; the rest are durable when this
    /// returns. `Err` means nothing was written.
    pub fn commit(&mut self, req: &CommitRequest) -> Result<CommitResponse> {
        if req.group_id.len() > MAX_NAME_BYTES {
            return Ok(CommitResponse::all(req, ErrorCode::InvalidGroupId));
        }
        let mut buf = Vec::new();
        let mut accepted = Vec::new();
        let mut new_keys: HashSet<(&str, i32)> = HashSet::new();
        let mut topics = Vec::with_capacity(req.topics.len());
        for topic in &req.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let metadata = p.metadata.clone().unwrap_or_default();
                let error = if topic.name.is_empty() || topic.name.len() > MAX_NAME_BYTES {
                    ErrorCode::InvalidTopic
                } else if p.partition < 0 {
                    ErrorCode::UnknownTopicOrPartition
                } else if metadata.len() > self.config.max_metadata_bytes {
                    ErrorCode::OffsetMetadataTooLarge
                } else if self.get(&req.group_id, &topic.name, p.partition).is_none()
                    && !new_keys.contains(&(topic.name.as_str(), p.partition))
                    && self.live + new_keys.len() >= self.config.max_offsets
                {
                    ErrorCode::InvalidCommitOffsetSize
                } else {
                    if self.get(&req.group_id, &topic.name, p.partition).is_none() {
                        new_keys.insert((&topic.name, p.partition));
                    }
                    let committed = CommittedOffset { offset: p.offset, leader_epoch: p.leader_epoch, metadata };
                    frame::encode(&record(&req.group_id, &topic.name, p.partition, &committed), &mut buf)?;
                    accepted.push((topic.name.clone(), p.partition, committed));
                    ErrorCode::None
                };
                partitions.push(CommitPartitionResult { partition: p.partition, error });
            }
            topics.push(CommitTopicResult { name: topic.name.clone(), partitions });
        }
        if !accepted.is_empty() {
            self.append(&buf, accepted.len() as u64)?;
            for (topic, partition, committed) in accepted {
                self.apply(req.group_id.clone(), topic, partition, committed);
            }
            self.maybe_compact();
        }
        Ok(CommitResponse { topics })
    }

    /// Answers OffsetFetch: the requested partitions (unknown ones as offset -1, metadata ""),
    /// or with `topics: None` everything the group committed, sorted by topic and partition.
    pub fn fetch(&self, req: &FetchRequest) -> FetchResponse {
        if req.group_id.len() > MAX_NAME_BYTES {
            return FetchResponse { error: ErrorCode::InvalidGroupId, topics: Vec::new() };
        }
        let group = self.offsets.get(&req.group_id);
        let topics = match &req.topics {
            None => group
                .into_iter()
                .flatten()
                .map(|(name, parts)| FetchTopicResult {
                    name: name.clone(),
                    partitions: parts.iter().map(|(p, c)| found(*p, Some(c))).collect(),
                })
                .collect(),
            Some(wanted) => wanted
                .iter()
                .map(|t| {
                    let parts = group.and_then(|g| g.get(&t.name));
                    FetchTopicResult {
                        name: t.name.clone(),
                        partitions: t.partitions.iter().map(|p| found(*p, parts.and_then(|ps| ps.get(p)))).collect(),
                    }
                })
                .collect(),
        };
        FetchResponse { error: ErrorCode::None, topics }
    }

    /// The committed offset of one partition, if any.
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.offsets.get(group)?.get(topic)?.get(&partition)
    }

    /// Current sizes.
    pub fn stats(&self) -> OffsetStoreStats {
        OffsetStoreStats { live: self.live, file_records: self.file_records, file_bytes: self.len }
    }

    /// Rewrites the file with only the live entries (temp file, fsync, rename, directory fsync).
    /// If the rename happened but a later step failed, the store is poisoned.
    pub fn compact(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned { path: self.path.clone() });
        }
        let records = self.offsets.iter().flat_map(|(group, topics)| {
            topics.iter().flat_map(move |(topic, parts)| parts.iter().map(move |(p, c)| record(group, topic, *p, c)))
        });
        let tmp = self.dir.join(TMP_NAME);
        let written = write_tmp(&tmp, records)?;
        fs::rename(&tmp, &self.path).map_err(io("rename into", &self.path))?;
        let reopened = sync_dir(&self.dir).and_then(|()| open_append(&self.path));
        match reopened {
            Ok(file) => {
                self.file = file;
                self.len = written.bytes;
                self.file_records = written.records;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }

    fn maybe_compact(&mut self) {
        let live = self.live as u64;
        if self.file_records >= self.config.compact_min_records && self.file_records > live.saturating_mul(2) {
            if let Err(e) = self.compact() {
                tracing::warn!(error = %e, "offset store: compaction failed; appending to the old file");
            }
        }
    }

    fn append(&mut self, buf: &[u8], frames: u64) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned { path: self.path.clone() });
        }
        if let Err(e) = self.file.write_all(buf).and_then(|()| self.file.sync_data()) {
            if self.file.set_len(self.len).and_then(|()| self.file.sync_data()).is_err() {
                self.poisoned = true;
            }
            return Err(io("append to", &self.path)(e));
        }
        self.len += buf.len() as u64;
        self.file_records += frames;
        Ok(())
    }

    fn apply(&mut self, group: String, topic: String, partition: i32, committed: CommittedOffset) {
        let parts = self.offsets.entry(group).or_default().entry(topic).or_default();
        if parts.insert(partition, committed).is_none() {
            self.live += 1;
        }
    }
}

fn record(group: &str, topic: &str, partition: i32, c: &CommittedOffset) -> Record {
    Record::Commit {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partition,
        offset: c.offset,
        leader_epoch: c.leader_epoch,
        metadata: c.metadata.clone(),
    }
}

fn found(partition: i32, committed: Option<&CommittedOffset>) -> FetchPartitionResult {
    match committed {
        Some(c) => FetchPartitionResult {
            partition,
            offset: c.offset,
            leader_epoch: c.leader_epoch,
            metadata: Some(c.metadata.clone()),
            error: ErrorCode::None,
        },
        None => FetchPartitionResult {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: Some(String::new()),
            error: ErrorCode::None,
        },
    }
}

struct Written {
    bytes: u64,
    records: u64,
}

/// Writes a complete file (header and `records`) to `tmp` and fsyncs it.
fn write_tmp(tmp: &Path, records: impl Iterator<Item = Record>) -> Result<Written> {
    let file = File::create(tmp).map_err(io("create", tmp))?;
    let mut out = BufWriter::new(file);
    out.write_all(MAGIC).map_err(io("write", tmp))?;
    let mut written = Written { bytes: MAGIC.len() as u64, records: 0 };
    let mut buf = Vec::new();
    for rec in records {
        buf.clear();
        frame::encode(&rec, &mut buf)?;
        out.write_all(&buf).map_err(io("write", tmp))?;
        written.bytes += buf.len() as u64;
        written.records += 1;
    }
    let file = out.into_inner().map_err(|e| io("write", tmp)(e.into_error()))?;
    file.sync_all().map_err(io("fsync", tmp))?;
    Ok(written)
}

/// Atomically replaces `path` with a file of `records`; returns it opened for appending.
fn write_snapshot(dir: &Path, path: &Path, records: impl Iterator<Item = Record>) -> Result<File> {
    let tmp = dir.join(TMP_NAME);
    write_tmp(&tmp, records)?;
    fs::rename(&tmp, path).map_err(io("rename into", path))?;
    sync_dir(dir)?;
    open_append(path)
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new().append(true).open(path).map_err(io("open", path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync", dir))
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}
