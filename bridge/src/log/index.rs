//! Sparse per-segment index files: fixed-size big-endian entries, appended in order and
//! binary-searched with positional reads, never loaded whole into memory.
//!
//! Two kinds share this code:
//! - `.index`: `rel_offset u32, position u32`. "A batch with base offset `base + rel_offset`
//!   starts at byte `position`." Both fields strictly increase.
//! - `.timeindex`: `timestamp i64, rel_offset u32`. "Every record below offset
//!   `base + rel_offset` has a timestamp <= `timestamp`." Both fields never decrease. A sealed,
//!   non-empty segment ends with an entry whose `rel_offset` is the segment's record count and
//!   whose timestamp is therefore the segment's newest timestamp.
//!
//! Invariant: `entries` counts the whole entries written; a reader snapshot ([`IndexView`]) only
//! searches the entries that existed when it was taken.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::scan::PosReader;
use super::{io_err, Error, Result};

/// Size of an `.index` entry.
pub(crate) const OFFSET_ENTRY: usize = 8;
/// Size of a `.timeindex` entry.
pub(crate) const TIME_ENTRY: usize = 12;

/// One append-only index file.
#[derive(Debug)]
pub(crate) struct IndexFile {
    path: Arc<Path>,
    file: Arc<File>,
    entry_len: usize,
    entries: u64,
}

/// A cheap read-only snapshot of an index, usable without the partition lock.
#[derive(Debug, Clone)]
pub(crate) struct IndexView {
    path: Arc<Path>,
    file: Arc<File>,
    entry_len: usize,
    entries: u64,
}

impl IndexFile {
    /// Opens (creating if missing) an index; with `truncate` it starts empty.
    pub fn open(path: PathBuf, entry_len: usize, truncate: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(truncate)
            .open(&path)
            .map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        Ok(Self { entries: len / entry_len as u64, path: path.into(), file: Arc::new(file), entry_len })
    }

    /// Drops every entry, for a rebuild.
    pub fn clear(&mut self) -> Result<()> {
        self.file.set_len(0).map_err(io_err(&self.path))?;
        self.entries = 0;
        Ok(())
    }

    /// Appends one entry with a single positional write.
    pub fn append(&mut self, entry: &[u8]) -> Result<()> {
        debug_assert_eq!(entry.len(), self.entry_len);
        let pos = self.entries * self.entry_len as u64;
        self.file.write_all_at(entry, pos).map_err(io_err(&self.path))?;
        self.entries += 1;
        Ok(())
    }

    /// Number of whole entries.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The path, for error messages and deletion.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the entries durable (on seal; the active index is rebuilt on recovery anyway).
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(io_err(&self.path))
    }

    /// True when the file length is a whole number of entries (no torn entry).
    pub fn is_whole(&self) -> Result<bool> {
        let len = self.file.metadata().map_err(io_err(&self.path))?.len();
        Ok(len % self.entry_len as u64 == 0)
    }

    /// Calls `f` on every entry in order, streaming; stops early when `f` returns false.
    pub fn for_each(&self, mut f: impl FnMut(&[u8]) -> bool) -> Result<()> {
        let mut reader = BufReader::with_capacity(64 * 1024, PosReader::new(&self.file, 0));
        let mut entry = vec![0u8; self.entry_len];
        for _ in 0..self.entries {
            reader.read_exact(&mut entry).map_err(io_err(&self.path))?;
            if !f(&entry) {
                break;
            }
        }
        Ok(())
    }

    /// A snapshot for lock-free lookups.
    pub fn view(&self) -> IndexView {
        IndexView { path: self.path.clone(), file: self.file.clone(), entry_len: self.entry_len, entries: self.entries }
    }
}

impl IndexView {
    /// Reads entry `i` into `buf` (which must be `entry_len` long).
    fn read(&self, i: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, i * self.entry_len as u64).map_err(io_err(&self.path))
    }

    /// Binary search for the last entry for which `below` holds, given that `below` is true for
    /// a prefix of the entries and false after it. Returns that entry's bytes.
    pub fn last_where(&self, below: impl Fn(&[u8]) -> bool) -> Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; self.entry_len];
        let (mut lo, mut hi) = (0u64, self.entries); // answer index + 1 lies in lo..=hi
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            self.read(mid, &mut buf)?;
            if below(&buf) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return Ok(None);
        }
        self.read(lo - 1, &mut buf)?;
        Ok(Some(buf))
    }
}

/// Encodes an `.index` entry.
pub(crate) fn offset_entry(rel: u32, pos: u32) -> [u8; OFFSET_ENTRY] {
    let mut e = [0u8; OFFSET_ENTRY];
    e[..4].copy_from_slice(&rel.to_be_bytes());
    e[4..].copy_from_slice(&pos.to_be_bytes());
    e
}

/// Decodes an `.index` entry into `(rel_offset, position)`.
pub(crate) fn parse_offset_entry(e: &[u8]) -> Result<(u32, u32)> {
    let rel = e.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
    let pos = e.get(4..8).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
    rel.zip(pos).ok_or_else(|| bad_entry(e))
}

/// Encodes a `.timeindex` entry.
pub(crate) fn time_entry(ts: i64, rel: u32) -> [u8; TIME_ENTRY] {
    let mut e = [0u8; TIME_ENTRY];
    e[..8].copy_from_slice(&ts.to_be_bytes());
    e[8..].copy_from_slice(&rel.to_be_bytes());
    e
}

/// Decodes a `.timeindex` entry into `(timestamp, rel_offset)`.
pub(crate) fn parse_time_entry(e: &[u8]) -> Result<(i64, u32)> {
    let ts = e.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes);
    let rel = e.get(8..12).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
    ts.zip(rel).ok_or_else(|| bad_entry(e))
}

fn bad_entry(e: &[u8]) -> Error {
    Error::Decode(format!("index entry of {} bytes", e.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_where_finds_greatest_lower_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = IndexFile::open(dir.path().join("x.index"), OFFSET_ENTRY, true).unwrap();
        for i in 0..100u32 {
            idx.append(&offset_entry(i * 10, i * 100)).unwrap();
        }
        let view = idx.view();
        for target in 0..1000u32 {
            let found = view
                .last_where(|e| parse_offset_entry(e).unwrap().0 <= target)
                .unwrap()
                .map(|e| parse_offset_entry(&e).unwrap());
            assert_eq!(found, Some((target / 10 * 10, target / 10 * 100)));
        }
        // Nothing below the first entry, and an empty index finds nothing.
        assert_eq!(view.last_where(|_| false).unwrap(), None);
        idx.clear().unwrap();
        assert_eq!(idx.view().last_where(|_| true).unwrap(), None);
    }
}
