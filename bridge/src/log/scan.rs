//! Sequential batch scanning of a segment file, for recovery and index rebuilds.
//!
//! Invariant: a scan reports only a prefix of whole, structurally valid batches with dense
//! offsets starting at the segment's base offset (and, when asked, matching CRCs); it stops at
//! the first batch that is not, and says why. Memory stays bounded by the read buffer whatever
//! the batch sizes: CRCs are computed over fixed-size chunks.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::batch::{BatchHeader, CRC_START, HEADER_LEN};
use super::{io_err, Result};

const BUF_LEN: usize = 64 * 1024;

/// `Read + Seek` over a shared `&File` using positional reads, so scans never disturb (or depend
/// on) the file cursor and can run on a file other threads also read.
pub(crate) struct PosReader<'a> {
    file: &'a File,
    pos: u64,
}

impl<'a> PosReader<'a> {
    /// A reader starting at byte `pos`.
    pub fn new(file: &'a File, pos: u64) -> Self {
        Self { file, pos }
    }
}

impl Read for PosReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PosReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.file.metadata()?.len().checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

/// Where a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanOutcome {
    /// Bytes of valid batches from the start of the file.
    pub valid_len: u64,
    /// Offset the next batch after the valid prefix would get.
    pub next_offset: i64,
    /// Why scanning stopped before `file_len`, `None` when the whole file was valid.
    pub stop: Option<String>,
}

/// Scans the first `file_len` bytes of a segment whose first batch must have `base_offset`,
/// calling `on_batch(position, header)` for every valid batch in order.
pub(crate) fn scan_batches(
    file: &File,
    path: &Path,
    base_offset: i64,
    file_len: u64,
    verify_crc: bool,
    mut on_batch: impl FnMut(u64, &BatchHeader) -> Result<()>,
) -> Result<ScanOutcome> {
    let mut reader = BufReader::with_capacity(BUF_LEN, PosReader::new(file, 0));
    let mut chunk = if verify_crc { vec![0u8; BUF_LEN] } else { Vec::new() };
    let mut raw = [0u8; HEADER_LEN];
    let (mut pos, mut next) = (0u64, base_offset);
    let stop = loop {
        if pos == file_len {
            break None;
        }
        if file_len - pos < HEADER_LEN as u64 {
            break Some(format!("torn batch header at byte {pos}"));
        }
        reader.read_exact(&mut raw).map_err(io_err(path))?;
        let header = BatchHeader::parse(&raw);
        if let Err(reason) = header.check() {
            break Some(format!("{reason} at byte {pos}"));
        }
        if header.base_offset != next {
            break Some(format!("batch at byte {pos} has base offset {}, expected {next}", header.base_offset));
        }
        let total = header.total_len();
        if total > file_len - pos {
            break Some(format!("torn batch at byte {pos} ({total} bytes, file ends first)"));
        }
        let mut body = total - HEADER_LEN as u64;
        if verify_crc {
            let mut crc = crc32c::crc32c(&raw[CRC_START..]);
            while body > 0 {
                let n = body.min(BUF_LEN as u64) as usize;
                reader.read_exact(&mut chunk[..n]).map_err(io_err(path))?;
                crc = crc32c::crc32c_append(crc, &chunk[..n]);
                body -= n as u64;
            }
            if crc != header.crc {
                break Some(format!("CRC mismatch in batch at byte {pos}"));
            }
        } else {
            let skip = i64::try_from(body).map_err(|_| io_err(path)(io::Error::from(io::ErrorKind::InvalidData)))?;
            reader.seek_relative(skip).map_err(io_err(path))?;
        }
        on_batch(pos, &header)?;
        pos += total;
        next = header.last_offset().saturating_add(1);
    };
    Ok(ScanOutcome { valid_len: pos, next_offset: next, stop })
}
