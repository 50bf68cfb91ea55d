//! Wire primitives shared by the decoder and the encoder.
//!
//! [`Reader`] is a bounds-checked cursor over one packet's `Bytes`: every read reports
//! `Error::Malformed` instead of panicking, strings it returns are valid UTF-8 without U+0000, and
//! binary data it returns shares the packet's allocation.
//!
//! [`Sink`] lets one description of a packet's layout both count and write its bytes: a
//! [`Counter`] run reports exactly the number of bytes a `BytesMut` run appends, and records every
//! reason the packet cannot be encoded (over-long strings, values a Variable Byte Integer cannot
//! carry, length overflow), so the writing run that follows a successful count never fails.

use super::{Error, Result};
use bytes::{BufMut, Bytes, BytesMut};

/// The largest value a Variable Byte Integer can carry (four bytes).
pub(crate) const VARINT_MAX: u32 = 268_435_455;

/// The largest UTF-8 string or binary data field (two-byte length prefix).
const FIELD_MAX: usize = 65_535;

const SHORT: Error = Error::Malformed("packet is shorter than its fields");

/// A bounds-checked cursor over the bytes of one packet.
pub(crate) struct Reader {
    data: Bytes,
    pos: usize,
}

impl Reader {
    /// A reader over `data` starting at offset `pos`.
    pub(crate) fn new(data: Bytes, pos: usize) -> Reader {
        Reader { data, pos }
    }

    /// Bytes left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails unless every byte was consumed (trailing bytes inside a packet are malformed).
    pub(crate) fn finish(&self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed("unexpected bytes after the last field"))
        }
    }

    /// Advances over `n` bytes and returns their range.
    fn advance(&mut self, n: usize) -> Result<(usize, usize)> {
        let start = self.pos;
        let end = start.checked_add(n).filter(|&end| end <= self.data.len()).ok_or(SHORT)?;
        self.pos = end;
        Ok((start, end))
    }

    /// The next `n` bytes, borrowed.
    pub(crate) fn slice(&mut self, n: usize) -> Result<&[u8]> {
        let (start, end) = self.advance(n)?;
        self.data.get(start..end).ok_or(SHORT)
    }

    /// The next `n` bytes, sharing the packet's allocation.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes> {
        let (start, end) = self.advance(n)?;
        Ok(self.data.slice(start..end))
    }

    /// Everything left, sharing the packet's allocation.
    pub(crate) fn rest(&mut self) -> Bytes {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        self.data.slice(start..)
    }

    /// A reader over the next `n` bytes (a property block).
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader> {
        Ok(Reader::new(self.take(n)?, 0))
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        let b = *self.data.get(self.pos).ok_or(SHORT)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        let raw: [u8; 2] = self.slice(2)?.try_into().map_err(|_| SHORT)?;
        Ok(u16::from_be_bytes(raw))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        let raw: [u8; 4] = self.slice(4)?.try_into().map_err(|_| SHORT)?;
        Ok(u32::from_be_bytes(raw))
    }

    /// A Variable Byte Integer in its minimal form (MQTT 5.0 [MQTT-1.5.5-1]; only 5.0 fields use
    /// this reader, the 3.1.1 remaining length is parsed by the fixed-header decoder).
    pub(crate) fn varint(&mut self) -> Result<u32> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(Error::Malformed("variable byte integer is not minimally encoded"));
                }
                return Ok(value);
            }
        }
        Err(Error::Malformed("variable byte integer longer than four bytes"))
    }

    /// Binary Data: a two-byte length and that many bytes, sharing the packet's allocation.
    pub(crate) fn binary(&mut self) -> Result<Bytes> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    /// A UTF-8 Encoded String: well-formed UTF-8 without U+0000 ([MQTT-1.5.4-1], [MQTT-1.5.4-2]).
    pub(crate) fn string(&mut self) -> Result<String> {
        let len = usize::from(self.u16()?);
        let raw = self.slice(len)?;
        // In well-formed UTF-8 a zero byte only ever encodes U+0000.
        if raw.contains(&0) {
            return Err(Error::Malformed("string contains U+0000"));
        }
        let s = std::str::from_utf8(raw).map_err(|_| Error::Malformed("string is not valid UTF-8"))?;
        Ok(s.to_owned())
    }
}

/// The number of bytes of the Variable Byte Integer encoding of `v` (`v` at most [`VARINT_MAX`]).
pub(crate) fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Where an encoder run puts its bytes: a [`Counter`] or a `BytesMut`.
pub(crate) trait Sink {
    fn byte(&mut self, v: u8);
    fn two(&mut self, v: u16);
    fn four(&mut self, v: u32);
    /// Bytes without a length prefix (a PUBLISH payload).
    fn raw(&mut self, v: &[u8]);
    /// A Variable Byte Integer; values above [`VARINT_MAX`] cannot be encoded.
    fn varint(&mut self, v: usize);
    /// Binary Data; more than 65535 bytes cannot be encoded.
    fn binary(&mut self, v: &[u8]);
    /// A UTF-8 Encoded String; more than 65535 bytes cannot be encoded.
    fn string(&mut self, v: &str) {
        self.binary(v.as_bytes());
    }
    /// Records why the packet cannot be encoded (only a [`Counter`] acts on it).
    fn fail(&mut self, e: Error);
}

/// Counts the bytes of an encoder run and records the first reason it cannot be encoded.
#[derive(Default)]
pub(crate) struct Counter {
    len: usize,
    err: Option<Error>,
}

impl Counter {
    fn add(&mut self, n: usize) {
        match self.len.checked_add(n) {
            Some(len) => self.len = len,
            None => self.fail(Error::Encode("packet length overflows")),
        }
    }

    /// The counted length, or why the run cannot be encoded.
    pub(crate) fn finish(self) -> Result<usize> {
        match self.err {
            Some(e) => Err(e),
            None => Ok(self.len),
        }
    }

    /// Whether nothing at all was emitted (and nothing failed).
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.err.is_none()
    }
}

impl Sink for Counter {
    fn byte(&mut self, _: u8) {
        self.add(1);
    }

    fn two(&mut self, _: u16) {
        self.add(2);
    }

    fn four(&mut self, _: u32) {
        self.add(4);
    }

    fn raw(&mut self, v: &[u8]) {
        self.add(v.len());
    }

    fn varint(&mut self, v: usize) {
        if v > VARINT_MAX as usize {
            self.fail(Error::Encode("value exceeds 268435455 (variable byte integer)"));
        } else {
            self.add(varint_len(v));
        }
    }

    fn binary(&mut self, v: &[u8]) {
        if v.len() > FIELD_MAX {
            self.fail(Error::Encode("string or binary data longer than 65535 bytes"));
        } else {
            self.add(2 + v.len());
        }
    }

    fn fail(&mut self, e: Error) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }
}

/// Writes; only ever run after a [`Counter`] run of the same layout succeeded, so every value is
/// known to be representable.
impl Sink for BytesMut {
    fn byte(&mut self, v: u8) {
        self.put_u8(v);
    }

    fn two(&mut self, v: u16) {
        self.put_u16(v);
    }

    fn four(&mut self, v: u32) {
        self.put_u32(v);
    }

    fn raw(&mut self, v: &[u8]) {
        self.put_slice(v);
    }

    fn varint(&mut self, v: usize) {
        let mut x = v;
        loop {
            let mut b = (x & 0x7F) as u8;
            x >>= 7;
            if x > 0 {
                b |= 0x80;
            }
            self.put_u8(b);
            if x == 0 {
                break;
            }
        }
    }

    fn binary(&mut self, v: &[u8]) {
        self.put_u16(u16::try_from(v.len()).unwrap_or(u16::MAX));
        self.put_slice(v);
    }

    fn fail(&mut self, _: Error) {}
}

/// Checks a Topic Name (PUBLISH, will, response topic): no wildcards ([MQTT-3.3.2-2]) and at least
/// one character ([MQTT-4.7.3-1]). UTF-8 validity and U+0000 were checked when it was read.
pub(crate) fn check_topic_name(topic: &str) -> Result<()> {
    if topic.is_empty() {
        return Err(Error::TopicName("empty topic name"));
    }
    if topic.contains(['+', '#']) {
        return Err(Error::TopicName("wildcard in topic name"));
    }
    Ok(())
}
