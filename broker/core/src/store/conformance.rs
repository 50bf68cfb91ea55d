//! Conformance tests every [`Store`] engine must pass: write and read back, prefix iteration in key
//! order, delete, range delete, atomic batches, grouped writes and column-family isolation. Engines call [`run_all`] with a factory.

use super::{Batch, Cf, Store};

/// Runs every conformance check against fresh stores from `make`.
pub(crate) fn run_all<S: Store>(make: impl Fn() -> S) {
    write_then_read(&make());
    prefix_scan_in_order(&make());
    delete_removes(&make());
    delete_range_removes_the_range_only(&make());
    batch_is_applied_whole(&make());
    column_families_are_isolated(&make());
    write_many_applies_every_batch_in_order(&make());
}

fn write_then_read<S: Store>(s: &S) {
    let mut b = Batch::new();
    b.put(Cf::Retained, &b"a/b"[..], &b"v1"[..]);
    s.write(b).unwrap();
    assert_eq!(s.get(Cf::Retained, b"a/b").unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(s.get(Cf::Retained, b"a/c").unwrap(), None);
    let mut b = Batch::new();
    b.put(Cf::Retained, &b"a/b"[..], &b"v2"[..]);
    s.write(b).unwrap();
    assert_eq!(s.get(Cf::Retained, b"a/b").unwrap().as_deref(), Some(&b"v2"[..]), "put replaces");
}

fn prefix_scan_in_order<S: Store>(s: &S) {
    let mut b = Batch::new();
    for k in ["b/2", "a/1", "b/1", "b", "c/1", "b/10"] {
        b.put(Cf::Sessions, k.as_bytes().to_vec(), k.as_bytes().to_vec());
    }
    s.write(b).unwrap();
    let mut seen = Vec::new();
    s.scan_prefix(Cf::Sessions, b"b/", &mut |k, v| {
        assert_eq!(k, v);
        seen.push(String::from_utf8(k.to_vec()).unwrap());
        true
    })
    .unwrap();
    assert_eq!(seen, ["b/1", "b/10", "b/2"]);
    let mut first = Vec::new();
    s.scan_prefix(Cf::Sessions, b"", &mut |k, _| {
        first.push(k.to_vec());
        first.len() < 2
    })
    .unwrap();
    assert_eq!(first, [b"a/1".to_vec(), b"b".to_vec()], "scan stops when the visitor says so");
    let mut from = Vec::new();
    s.scan_from(Cf::Sessions, b"b/10", &mut |k, _| {
        from.push(String::from_utf8(k.to_vec()).unwrap());
        from.len() < 3
    })
    .unwrap();
    assert_eq!(from, ["b/10", "b/2", "c/1"], "from the start key on, across prefixes, until told to stop");
    let mut deleted = Batch::new();
    deleted.delete(Cf::Sessions, &b"b/2"[..]);
    s.write(deleted).unwrap();
    let mut after = Vec::new();
    s.scan_from(Cf::Sessions, b"b/1\0", &mut |k, _| {
        after.push(String::from_utf8(k.to_vec()).unwrap());
        true
    })
    .unwrap();
    assert_eq!(after, ["b/10", "c/1"], "deleted keys are skipped");
}

fn delete_range_removes_the_range_only<S: Store>(s: &S) {
    let mut b = Batch::new();
    for k in ["a", "b", "b/1", "c", "d"] {
        b.put(Cf::Bridge, k.as_bytes().to_vec(), &b"v"[..]);
    }
    s.write(b).unwrap();
    let mut b = Batch::new();
    b.delete_range(Cf::Bridge, &b"b"[..], &b"d"[..]).delete_range(Cf::Bridge, &b"z"[..], &b"a"[..]);
    s.write(b).unwrap();
    let mut left = Vec::new();
    s.scan_prefix(Cf::Bridge, b"", &mut |k, _| {
        left.push(String::from_utf8(k.to_vec()).unwrap());
        true
    })
    .unwrap();
    assert_eq!(left, ["a", "d"], "from inclusive, to exclusive; an empty range deletes nothing");
    let mut b = Batch::new();
    b.put(Cf::Bridge, &b"c"[..], &b"again"[..]);
    s.write(b).unwrap();
    assert_eq!(s.get(Cf::Bridge, b"c").unwrap().as_deref(), Some(&b"again"[..]), "later writes stay");
}

fn delete_removes<S: Store>(s: &S) {
    let mut b = Batch::new();
    b.put(Cf::Retained, &b"x"[..], &b"1"[..]).put(Cf::Retained, &b"y"[..], &b"2"[..]);
    s.write(b).unwrap();
    let mut b = Batch::new();
    b.delete(Cf::Retained, &b"x"[..]).delete(Cf::Retained, &b"never-existed"[..]);
    s.write(b).unwrap();
    assert_eq!(s.get(Cf::Retained, b"x").unwrap(), None);
    assert!(s.get(Cf::Retained, b"y").unwrap().is_some());
}

fn batch_is_applied_whole<S: Store>(s: &S) {
    let mut b = Batch::new();
    b.put(Cf::Sessions, &b"k"[..], &b"old"[..]);
    s.write(b).unwrap();
    let mut b = Batch::new();
    b.put(Cf::Sessions, &b"k"[..], &b"new"[..]).delete(Cf::Sessions, &b"k"[..]).put(Cf::Meta, &b"m"[..], &b"1"[..]);
    s.write(b).unwrap();
    assert_eq!(s.get(Cf::Sessions, b"k").unwrap(), None, "ops apply in order");
    assert!(s.get(Cf::Meta, b"m").unwrap().is_some());
}

fn column_families_are_isolated<S: Store>(s: &S) {
    let mut b = Batch::new();
    b.put(Cf::Meta, &b"same"[..], &b"meta"[..]).put(Cf::Retained, &b"same"[..], &b"retained"[..]);
    s.write(b).unwrap();
    assert_eq!(s.get(Cf::Meta, b"same").unwrap().as_deref(), Some(&b"meta"[..]));
    assert_eq!(s.get(Cf::Retained, b"same").unwrap().as_deref(), Some(&b"retained"[..]));
    assert_eq!(s.get(Cf::Sessions, b"same").unwrap(), None);
}

fn write_many_applies_every_batch_in_order<S: Store>(s: &S) {
    let mut first = Batch::new();
    first.put(Cf::Sessions, &b"c1"[..], &b"a"[..]).put(Cf::Retained, &b"t"[..], &b"x"[..]);
    let mut second = Batch::new();
    second.put(Cf::Sessions, &b"c1"[..], &b"b"[..]).delete(Cf::Retained, &b"t"[..]);
    let mut third = Batch::new();
    third.put(Cf::Sessions, &b"c2"[..], &b"c"[..]);
    s.write_many(vec![first, second, third], false).unwrap();
    assert_eq!(s.get(Cf::Sessions, b"c1").unwrap().as_deref(), Some(&b"b"[..]), "later batches win");
    assert_eq!(s.get(Cf::Retained, b"t").unwrap(), None);
    assert_eq!(s.get(Cf::Sessions, b"c2").unwrap().as_deref(), Some(&b"c"[..]));
    s.write_many(Vec::new(), true).unwrap();
    s.sync_wal().unwrap();
}
