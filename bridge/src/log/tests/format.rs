//! Stored bytes are Kafka's: identical to `kafka_protocol`'s encoder, decodable by its decoder,
//! CRC-protected, and compressed with the configured codec.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KCompression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType,
};

use super::super::batch::crc_matches;
use super::*;

fn sample() -> Vec<Record> {
    (0..5)
        .map(|i| Record {
            timestamp_ms: 1_700_000_000_000 + i * 10,
            key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from("telemetry ".repeat(20 + i as usize))),
            headers: vec![("mqtt.qos".into(), Some(Bytes::from_static(b"1"))), ("retain".into(), None)],
        })
        .collect()
}

/// The same records as `kafka_protocol` models them, at `base_offset`.
fn as_kafka(records: &[Record], base_offset: i64) -> Vec<KRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| KRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: PARTITION_LEADER_EPOCH,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i as i64,
            // Keeps offset - sequence constant (one batch) and the base sequence at -1.
            sequence: i as i32 - 1,
            timestamp: r.timestamp_ms,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.iter().map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone())).collect(),
        })
        .collect()
}

fn stored_batch(compression: Compression) -> (Bytes, Vec<Record>) {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_topic(LogConfig { compression, ..config(dir.path()) });
    log.append("t", 0, &[rec(0, "first")], None).unwrap();
    let records = sample();
    assert_eq!(log.append("t", 0, &records, None).unwrap().base_offset, 1);
    (log.read("t", 0, 1, 1).unwrap().records, records)
}

#[test]
fn stored_bytes_equal_kafka_protocol_encoding() {
    for (ours, theirs) in [
        (Compression::None, KCompression::None),
        (Compression::Lz4, KCompression::Lz4),
        (Compression::Zstd, KCompression::Zstd),
    ] {
        let (stored, records) = stored_batch(ours);
        let mut encoded = BytesMut::new();
        let opts = RecordEncodeOptions { version: 2, compression: theirs };
        RecordBatchEncoder::encode(&mut encoded, &as_kafka(&records, 1), &opts).unwrap();
        assert_eq!(stored, encoded.freeze(), "{ours:?}");
    }
}

#[test]
fn kafka_protocol_decodes_stored_batches() {
    for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let (stored, records) = stored_batch(compression);
        let mut buf = stored.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
        assert_eq!(sets.len(), 1);
        let got = &sets[0].records;
        assert_eq!(got.len(), records.len());
        for (i, (k, r)) in got.iter().zip(&records).enumerate() {
            assert_eq!(k.offset, 1 + i as i64);
            assert_eq!(k.timestamp, r.timestamp_ms);
            assert_eq!((&k.key, &k.value), (&r.key, &r.value));
            assert_eq!(k.headers.len(), r.headers.len());
        }
        // And our own decoder agrees.
        let ours = decode_batches(&stored).unwrap();
        assert_eq!(
            ours.iter().map(|r| &r.value).collect::<Vec<_>>(),
            records.iter().map(|r| &r.value).collect::<Vec<_>>()
        );
    }
}

#[test]
fn compression_is_applied_and_roundtrips() {
    let (plain, _) = stored_batch(Compression::None);
    for (compression, codec) in [(Compression::Lz4, 3), (Compression::Zstd, 4)] {
        let (stored, records) = stored_batch(compression);
        assert_eq!(stored[22] & 0x7, codec, "attributes codec bits");
        assert!(stored.len() < plain.len() / 2, "{compression:?} did not compress");
        let decoded = decode_batches(&stored).unwrap();
        for (d, r) in decoded.iter().zip(&records) {
            assert_eq!((&d.key, &d.value, &d.headers), (&r.key, &r.value, &r.headers));
            assert_eq!(d.timestamp_ms, r.timestamp_ms);
        }
        assert_eq!(decoded.len(), records.len());
    }
    assert_eq!(plain[22] & 0x7, 0);
}

#[test]
fn batch_header_fields_are_kafkas() {
    let (stored, records) = stored_batch(Compression::None);
    let be_i64 = |at: usize| i64::from_be_bytes(stored[at..at + 8].try_into().unwrap());
    let be_i32 = |at: usize| i32::from_be_bytes(stored[at..at + 4].try_into().unwrap());
    assert_eq!(be_i64(0), 1, "base offset");
    assert_eq!(be_i32(8) as usize, stored.len() - 12, "batch length");
    assert_eq!(be_i32(12), PARTITION_LEADER_EPOCH);
    assert_eq!(stored[16], 2, "magic");
    assert_eq!(be_i32(23), 4, "last offset delta");
    assert_eq!(be_i64(27), records[0].timestamp_ms, "first timestamp");
    assert_eq!(be_i64(35), records[4].timestamp_ms, "max timestamp");
    assert_eq!(be_i32(57), 5, "record count");
    assert!(crc_matches(&stored));
    let mut flipped = stored.to_vec();
    flipped[100] ^= 0x01;
    assert!(!crc_matches(&flipped));
    assert!(decode_batches(&Bytes::from(flipped)).is_err());
}

#[test]
fn decode_rejects_truncated_input() {
    let (stored, _) = stored_batch(Compression::None);
    for cut in [1, 11, 12, 60, stored.len() - 1] {
        assert!(decode_batches(&stored.slice(..cut)).is_err(), "cut at {cut}");
    }
    assert!(decode_batches(&Bytes::new()).unwrap().is_empty());
}
