//! The coverage list sees what the stories tell: each named scenario below
//! reaches exactly the rare states it is about (and nothing it is not), and
//! between them every conjunction on the list is reached.

use sim::coverage::{left_out, states};
use sim::run::{run_case, scratch_root};
use sim::scenario::{files_under, load};
use std::collections::BTreeSet;
use std::path::Path;

/// Scenario, and every rare state a run of it reaches.
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "several-upgrades-crash",
        &[
            "crash-at-point-a",
            "window-crash-after-upgrade",
            "window-crash-after-failed-upgrade",
            "window-crash-upgraded-vat-evicted",
            "sqlite-ahead-at-recovery",
        ],
    ),
    ("fsync-eio-lmdb-after-point-a", &["fault-fsync-eio", "lmdb-fault-after-point-a", "sqlite-ahead-at-recovery"]),
    (
        "eviction-across-upgrade",
        &[
            "crash-at-lmdb-sync",
            "fault-torn",
            "torn-sqlite-journal-or-wal",
            "upgraded-worker-rebuilt",
            "sqlite-ahead-at-recovery",
        ],
    ),
    ("store-created-files-lost", &["crash-at-dir-sync", "lost-directory-operation", "crash-while-store-created"]),
    (
        "upgraded-worker-rebuilt",
        &["crash-at-point-b", "hangover-at-restart", "upgraded-worker-rebuilt", "recovered-block-in-flight"],
    ),
    (
        "two-crashes-in-one-block",
        &["crash-at-point-a", "window-crash-after-upgrade", "two-crashes-in-one-block", "sqlite-ahead-at-recovery"],
    ),
    ("write-eio-twice", &["fault-write-eio", "crash-during-recovery"]),
    ("crash-at-point-b", &["crash-at-point-b", "hangover-at-restart", "recovered-block-in-flight"]),
    ("notify-chain", &["crash-at-crank"]),
    (
        "crash-between-b-and-c",
        &["crash-at-point-b", "hangover-at-restart", "hangover-with-chain-sends", "recovered-block-in-flight"],
    ),
    (
        "superseded-across-point-a",
        &[
            "crash-at-point-a",
            "orphan-snapshot-removed",
            "rebuilt-from-snapshot-after-crash",
            "sqlite-ahead-at-recovery",
        ],
    ),
    ("graceful-stop-mid-block", &["fault-stop"]),
];

#[test]
fn named_scenarios_reach_the_states_they_are_about() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files = files_under(&dir);
    let root = scratch_root().0;
    let mut reached = BTreeSet::new();
    for (name, expected) in EXPECTED {
        let path = files.iter().find(|p| p.file_stem().is_some_and(|s| s == *name)).expect("a named scenario");
        let scenario = load(path).unwrap_or_else(|e| panic!("{e}"));
        let report = run_case(&scenario.case(None, false), &root);
        assert_eq!(report.coverage, *expected, "{name}");
        reached.extend(report.coverage);
    }
    let names: BTreeSet<String> = states().into_iter().map(|s| s.name).collect();
    let conjunctions = names.iter().filter(|n| !n.starts_with("crash-at-") && !n.starts_with("fault-"));
    let missing: Vec<&String> = conjunctions.filter(|n| !reached.contains(*n)).collect();
    assert!(missing.is_empty(), "no scenario here reaches {missing:?}");
}

/// What the list leaves out is not on it, and says why.
#[test]
fn states_left_out_say_why() {
    let names: Vec<String> = states().into_iter().map(|s| s.name).collect();
    let out = left_out();
    assert!(out.iter().any(|(name, _)| name == "io-fault-absorbed"), "{out:?}");
    for (name, why) in out {
        assert!(!names.contains(&name) && why.len() > 20, "{name}: {why}");
    }
}
