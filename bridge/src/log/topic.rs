//! Topic names and topic metadata files.
//!
//! A topic exists once `<dir>/<topic>.topic` exists; that file is written last (temp file,
//! fsync, rename, fsync dir) when a topic is created, so a crash mid-creation leaves at most
//! unused partition directories, never a topic with missing partitions. Names follow Kafka's
//! rules, which also makes them safe as file names.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::partition::sync_dir;
use super::{io_err, Error, Result};

/// Kafka's limit on topic name length.
const MAX_NAME_LEN: usize = 249;
const META_SUFFIX: &str = ".topic";
const META_VERSION_LINE: &str = "fleetmq-topic 1";

/// Rejects names Kafka clients could not use: 1..=249 chars of `[a-zA-Z0-9._-]`, not `.`/`..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are reserved")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 249 characters")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidTopicName { name: name.to_owned(), reason }),
        None => Ok(()),
    }
}

/// Directory of one partition: `<dir>/<topic>-<partition>`, as Kafka lays it out.
pub(crate) fn partition_dir(root: &Path, topic: &str, partition: u32) -> PathBuf {
    root.join(format!("{topic}-{partition}"))
}

fn meta_path(root: &Path, topic: &str) -> PathBuf {
    root.join(format!("{topic}{META_SUFFIX}"))
}

/// Durably records that `topic` exists with `partitions` partitions.
pub(crate) fn write_meta(root: &Path, topic: &str, partitions: u32) -> Result<()> {
    let path = meta_path(root, topic);
    let tmp = root.join(format!("{topic}{META_SUFFIX}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(format!("{META_VERSION_LINE}\npartitions={partitions}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(root)
}

fn read_meta(path: &Path) -> Result<u32> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut lines = text.lines();
    let partitions = (lines.next() == Some(META_VERSION_LINE))
        .then(|| lines.next()?.strip_prefix("partitions=")?.parse::<u32>().ok())
        .flatten()
        .filter(|p| *p > 0);
    partitions
        .ok_or_else(|| Error::Corrupt { path: path.to_path_buf(), reason: "not a FleetMQ topic metadata file".into() })
}

/// Every topic recorded under `root` with its partition count, sorted by name. With `tidy`
/// (the log's owner opening it), leftover temp files of an interrupted creation are removed;
/// readers pass `false` and write nothing.
pub(crate) fn list_topics(root: &Path, tidy: bool) -> Result<Vec<(String, u32)>> {
    let mut topics = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io_err(root))? {
        let path = entry.map_err(io_err(root))?.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if file_name.ends_with(".topic.tmp") {
            if tidy {
                std::fs::remove_file(&path).map_err(io_err(&path))?;
            }
            continue;
        }
        let Some(name) = file_name.strip_suffix(META_SUFFIX) else {
            continue;
        };
        if !path.is_file() || validate_topic_name(name).is_err() {
            tracing::warn!(file = %path.display(), "ignoring unexpected file in log dir");
            continue;
        }
        topics.push((name.to_owned(), read_meta(&path)?));
    }
    topics.sort();
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        for ok in ["a", "fleet.telemetry", "A_b-9", &"x".repeat(249), "..."] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(250), "a\0"] {
            assert!(matches!(validate_topic_name(bad), Err(Error::InvalidTopicName { .. })), "{bad}");
        }
    }

    #[test]
    fn meta_roundtrip_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        write_meta(dir.path(), "b", 3).unwrap();
        write_meta(dir.path(), "a.topic", 1).unwrap();
        std::fs::create_dir(dir.path().join("b-0")).unwrap();
        std::fs::write(dir.path().join("c.topic.tmp"), "junk").unwrap();
        let listed = list_topics(dir.path(), true).unwrap();
        assert_eq!(listed, vec![("a.topic".into(), 1), ("b".into(), 3)]);
        assert!(!dir.path().join("c.topic.tmp").exists());
    }
}
