//! Every example scenario in `loadtest/scenarios/` parses and validates, and together they cover
//! every scenario kind.

use fleetmq_loadtest::scenario::spec::{Origin, Spec};
use fleetmq_loadtest::scenario::Workload;
use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn example_scenarios_parse_validate_and_cover_every_kind() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut kinds = BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        files += 1;
        let spec = Spec::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let scn = spec.resolve(Origin::File).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert_eq!(scn.name, stem, "{}: name should match the file name", path.display());
        if let Workload::PubSub(p) = &scn.workload {
            assert!(p.duration.as_secs() > 0 && p.payload >= 16, "{}", path.display());
        }
        kinds.insert(scn.workload.kind_name());
    }
    assert!(files >= 5, "only {files} scenario files");
    let want: BTreeSet<_> = ["connect", "fan-in", "fan-out", "p2p", "shared"].into_iter().collect();
    assert_eq!(kinds, want);
}
