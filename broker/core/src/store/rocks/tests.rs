use super::*;
use tempfile::TempDir;

fn open(dir: &Path) -> RocksStore {
    RocksStore::open(dir, &RocksOptions::default()).unwrap()
}

#[test]
fn rocks_store_passes_conformance() {
    let dirs = std::cell::RefCell::new(Vec::new());
    crate::store::conformance::run_all(|| {
        let dir = TempDir::new().unwrap();
        let store = open(dir.path());
        dirs.borrow_mut().push(dir);
        store
    });
}

#[test]
fn reopen_keeps_every_column_family() {
    let dir = TempDir::new().unwrap();
    {
        let s = open(dir.path());
        let mut b = Batch::new();
        for cf in Cf::ALL {
            b.put(cf, format!("key-{}", cf.name()).into_bytes(), format!("value-{}", cf.name()).into_bytes());
        }
        s.write(b).unwrap();
        let mut unsynced = Batch::new();
        unsynced.put(Cf::Sessions, &b"late"[..], &b"1"[..]);
        s.write_many(vec![unsynced], false).unwrap();
    }
    let s = open(dir.path());
    for cf in Cf::ALL {
        let got = s.get(cf, format!("key-{}", cf.name()).as_bytes()).unwrap();
        assert_eq!(got.as_deref(), Some(format!("value-{}", cf.name()).as_bytes()), "{cf:?}");
    }
    assert_eq!(s.get(Cf::Sessions, b"late").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(s.get(Cf::Meta, FORMAT_KEY).unwrap().as_deref(), Some(FORMAT_VERSION.to_string().as_bytes()));
}

#[test]
fn second_open_of_a_held_dir_is_locked() {
    let dir = TempDir::new().unwrap();
    let first = open(dir.path());
    let err = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::Locked { path } if path == dir.path()), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()) && msg.contains("in use"), "{msg}");
    drop(first);
    open(dir.path());
}

#[test]
fn a_file_where_the_dir_should_be_is_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a database").unwrap();
    let err = RocksStore::open(&file, &RocksOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::Open { path, .. } if path == &file), "{err:?}");
    assert!(err.to_string().contains("not a directory"), "{err}");
    let below = file.join("data");
    let err = RocksStore::open(&below, &RocksOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::Open { path, .. } if path == &below), "{err:?}");
    assert!(err.to_string().contains(&below.display().to_string()), "{err}");
}

#[test]
fn missing_dir_without_create_fails() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("absent");
    let opts = RocksOptions { create_if_missing: false, ..RocksOptions::default() };
    let err = RocksStore::open(&missing, &opts).unwrap_err();
    assert!(matches!(&err, Error::Open { path, .. } if path == &missing), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(!missing.exists());
    std::fs::create_dir(&missing).unwrap();
    let err = RocksStore::open(&missing, &opts).unwrap_err();
    assert!(matches!(&err, Error::Open { path, .. } if path == &missing), "{err:?}");
}

#[test]
fn format_mismatch_is_detected_on_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let s = open(dir.path());
        let mut b = Batch::new();
        b.put(Cf::Meta, FORMAT_KEY, &b"999"[..]);
        s.write(b).unwrap();
    }
    let err = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap_err();
    match &err {
        Error::Format { path, found, expected } => {
            assert_eq!(path, dir.path());
            assert_eq!(found, "999");
            assert_eq!(*expected, FORMAT_VERSION);
        }
        other => panic!("expected a format error, got {other:?}"),
    }
    assert!(err.to_string().contains("format 999"), "{err}");
}

#[test]
fn uncompressed_store_round_trips() {
    let dir = TempDir::new().unwrap();
    let opts = RocksOptions { compression: false, ..RocksOptions::default() };
    let s = RocksStore::open(dir.path(), &opts).unwrap();
    let mut b = Batch::new();
    b.put(Cf::Retained, &b"t"[..], vec![7u8; 4096]);
    s.write(b).unwrap();
    assert_eq!(s.get(Cf::Retained, b"t").unwrap().map(|v| v.len()), Some(4096));
    assert_eq!(s.path(), dir.path());
}
