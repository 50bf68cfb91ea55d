//! The offset store on real files: durability across reopen, torn tails, compaction, limits.

use super::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

fn part(partition: i32, offset: i64, metadata: Option<&str>) -> CommitPartition {
    CommitPartition { partition, offset, leader_epoch: 3, metadata: metadata.map(str::to_owned) }
}

fn commit(group: &str, topic: &str, partitions: Vec<CommitPartition>) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        generation_id: -1,
        member_id: MemberId::default(),
        group_instance_id: None,
        topics: vec![CommitTopic { name: topic.into(), partitions }],
    }
}

fn errors(resp: &CommitResponse) -> Vec<ErrorCode> {
    resp.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error)).collect()
}

fn fetch(group: &str, topics: Option<Vec<(&str, Vec<i32>)>>) -> FetchRequest {
    FetchRequest {
        group_id: group.into(),
        topics: topics.map(|ts| ts.into_iter().map(|(n, p)| FetchTopic { name: n.into(), partitions: p }).collect()),
    }
}

fn offset_of(store: &OffsetStore, group: &str, topic: &str, partition: i32) -> Option<i64> {
    store.get(group, topic, partition).map(|c| c.offset)
}

fn open(dir: &Path) -> OffsetStore {
    OffsetStore::open(dir, OffsetStoreConfig::default()).expect("open")
}

#[test]
fn committed_offsets_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let resp = store.commit(&commit("g", "telemetry", vec![part(0, 10, Some("m0")), part(2, 20, None)])).unwrap();
    assert_eq!(errors(&resp), vec![ErrorCode::None, ErrorCode::None]);
    store.commit(&commit("g", "alerts", vec![part(1, 5, None)])).unwrap();
    store.commit(&commit("other", "telemetry", vec![part(0, 99, None)])).unwrap();
    drop(store);

    let store = open(dir.path());
    let got = store.fetch(&fetch("g", Some(vec![("telemetry", vec![2, 0, 1])])));
    assert_eq!(got.error, ErrorCode::None);
    let parts = &got.topics[0].partitions;
    assert_eq!(
        parts.iter().map(|p| (p.partition, p.offset, p.leader_epoch, p.metadata.as_deref())).collect::<Vec<_>>(),
        vec![(2, 20, 3, Some("")), (0, 10, 3, Some("m0")), (1, -1, -1, Some(""))],
        "unknown partitions report offset -1"
    );

    let all = store.fetch(&fetch("g", None));
    let names: Vec<(&str, Vec<i32>)> =
        all.topics.iter().map(|t| (t.name.as_str(), t.partitions.iter().map(|p| p.partition).collect())).collect();
    assert_eq!(names, vec![("alerts", vec![1]), ("telemetry", vec![0, 2])]);
    assert!(store.fetch(&fetch("nobody", None)).topics.is_empty());
    assert_eq!(store.stats().live, 4);
}

#[test]
fn a_torn_tail_is_cut_off_and_later_commits_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    store.commit(&commit("g", "t", vec![part(0, 1, None)])).unwrap();
    store.commit(&commit("g", "t", vec![part(1, 2, None)])).unwrap();
    drop(store);

    // Crash in the middle of the second commit's frame.
    let file = dir.path().join("offsets.log");
    let len = std::fs::metadata(&file).unwrap().len();
    OpenOptions::new().write(true).open(&file).unwrap().set_len(len - 3).unwrap();

    let mut store = open(dir.path());
    assert_eq!(offset_of(&store, "g", "t", 0), Some(1));
    assert_eq!(offset_of(&store, "g", "t", 1), None, "the torn commit was never acknowledged");
    store.commit(&commit("g", "t", vec![part(2, 3, None)])).unwrap();
    drop(store);

    // Garbage after valid frames (e.g. a half-written length) is cut off too.
    OpenOptions::new().append(true).open(&file).unwrap().write_all(&[0xFF, 0x00]).unwrap();
    let store = open(dir.path());
    assert_eq!(offset_of(&store, "g", "t", 0), Some(1));
    assert_eq!(offset_of(&store, "g", "t", 2), Some(3), "written after the cut, so it must be readable");
}

#[test]
fn compaction_keeps_only_the_latest_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = OffsetStoreConfig { compact_min_records: 16, ..OffsetStoreConfig::default() };
    let mut store = OffsetStore::open(dir.path(), config.clone()).unwrap();
    store.commit(&commit("g", "t", vec![part(7, 700, Some("keep"))])).unwrap();
    for offset in 0..100 {
        store.commit(&commit("g", "t", vec![part(0, offset, None), part(1, offset * 2, None)])).unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.live, 3);
    assert!(stats.file_records < 16 + 2, "compacted: {stats:?}");
    let file_len = std::fs::metadata(dir.path().join("offsets.log")).unwrap().len();
    assert_eq!(file_len, stats.file_bytes);
    drop(store);

    let store = OffsetStore::open(dir.path(), config).unwrap();
    assert_eq!(offset_of(&store, "g", "t", 0), Some(99));
    assert_eq!(offset_of(&store, "g", "t", 1), Some(198));
    assert_eq!(store.get("g", "t", 7).map(|c| c.metadata.as_str()), Some("keep"));
    assert_eq!(store.stats().live, 3);
}

#[test]
fn explicit_compaction_preserves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    for offset in 0..10 {
        store.commit(&commit("g", "t", vec![part(0, offset, None)])).unwrap();
    }
    assert_eq!(store.stats().file_records, 10);
    store.compact().unwrap();
    assert_eq!(store.stats().file_records, 1);
    store.commit(&commit("g", "t", vec![part(1, 5, None)])).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!((offset_of(&store, "g", "t", 0), offset_of(&store, "g", "t", 1)), (Some(9), Some(5)));
}

#[test]
fn invalid_partitions_are_rejected_individually_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let config = OffsetStoreConfig { max_offsets: 2, max_metadata_bytes: 8, ..OffsetStoreConfig::default() };
    let mut store = OffsetStore::open(dir.path(), config).unwrap();
    let resp = store
        .commit(&commit("g", "t", vec![part(0, 1, Some("short")), part(1, 1, Some("far too long")), part(-1, 1, None)]))
        .unwrap();
    assert_eq!(
        errors(&resp),
        vec![ErrorCode::None, ErrorCode::OffsetMetadataTooLarge, ErrorCode::UnknownTopicOrPartition]
    );
    assert_eq!(errors(&store.commit(&commit("g", "", vec![part(0, 1, None)])).unwrap()), vec![ErrorCode::InvalidTopic]);

    // Capacity: one new entry fits, the next does not, updates always do.
    let resp = store.commit(&commit("g", "t", vec![part(1, 1, None), part(1, 2, None), part(2, 1, None)])).unwrap();
    assert_eq!(errors(&resp), vec![ErrorCode::None, ErrorCode::None, ErrorCode::InvalidCommitOffsetSize]);
    assert_eq!(errors(&store.commit(&commit("g", "t", vec![part(0, 9, None)])).unwrap()), vec![ErrorCode::None]);
    assert_eq!((offset_of(&store, "g", "t", 1), offset_of(&store, "g", "t", 2)), (Some(2), None));
    assert_eq!(store.stats().live, 2);
}

#[test]
fn a_foreign_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("offsets.log"), b"not an offset file").unwrap();
    assert!(matches!(OffsetStore::open(dir.path(), OffsetStoreConfig::default()), Err(Error::Corrupt { .. })));
    std::fs::write(dir.path().join("offsets.log"), b"FMQ").unwrap();
    let store = OffsetStore::open(dir.path(), OffsetStoreConfig::default()).expect("a torn header is a fresh store");
    assert_eq!(store.stats().live, 0);
}
