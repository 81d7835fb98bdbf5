//! Timelines: a pictured run is the same run as a plain one; the picture's
//! bytes are a function of the run (an insta snapshot pins a small one); the
//! heights it reads from the crash images show the window between point A
//! and point B and a lost directory operation; the pictures in
//! docs/timelines/ are those of the regressions as they run now.

use sim::event::Event;
use sim::options::Flags;
use sim::run::{run_case, run_case_pictured, scratch_root, Case, SeedConfig};
use sim::scenario::{files_under, load, Scenario};
use sim::timeline::{Heights, Reading, Timeline};
use std::path::{Path, PathBuf};
use store::Design;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scenario(path: &str) -> Scenario {
    load(&repo().join("scenarios").join(path)).unwrap_or_else(|e| panic!("{e}"))
}

/// The point where the timeline's first crash happened.
fn crash_point(timeline: &Timeline) -> &sim::timeline::Point {
    let ordinal = timeline.events.iter().find_map(|e| match e {
        Event::Crash(point) => Some(point.ordinal),
        _ => None,
    });
    let ordinal = ordinal.expect("a crash");
    timeline.points.iter().find(|p| p.ordinal == ordinal).expect("the crash's point is drawn")
}

/// Seeds with crashes, I/O faults, torn power losses and a failing design:
/// the pictured run has the same trace and report, draws every point once
/// in order, and draws the same bytes twice.
#[test]
fn a_pictured_run_is_the_same_run() {
    let root = scratch_root().0;
    for (seed, design) in
        [(2, Design::LengthZero), (3, Design::StartPosition), (5, Design::RamBuffer), (9, Design::StartPosition)]
    {
        let case = Case::from_seed(&SeedConfig { seed, design, flags: Flags::default(), verbose: true });
        let plain = run_case(&case, &root);
        let (pictured, timeline) = run_case_pictured(&case, &root);
        assert_eq!(plain.trace.lines(), pictured.trace.lines(), "seed {seed} {design}");
        assert_eq!(plain.trace.hash(), pictured.trace.hash());
        assert_eq!(
            (&plain.crashes, &plain.faults, &plain.failure),
            (&pictured.crashes, &pictured.faults, &pictured.failure)
        );
        assert_eq!((&plain.events, &plain.coverage), (&pictured.events, &pictured.coverage));
        let ordinals: Vec<u64> = timeline.points.iter().map(|p| p.ordinal).collect();
        assert_eq!(ordinals, (0..ordinals.len() as u64).collect::<Vec<_>>(), "seed {seed}: every point once, in order");
        assert!(ordinals.len() > 50, "seed {seed}: only {} points", ordinals.len());
        assert_eq!(timeline.svg(), run_case_pictured(&case, &root).1.svg(), "seed {seed}: the same bytes again");
    }
}

/// The shrunk `length-zero` failure: SQLite committed block 2 at point A and
/// the process died before LMDB did; at that point a power loss keeps SQLite
/// at block 2 and kvStore at block 1, and both had acknowledged their last
/// commit there (SQLite 2, LMDB 1). Before the crash's block, both at 1.
#[test]
fn the_window_between_the_commit_points_shows_in_the_heights() {
    let (_, timeline) = scenario("regressions/length-zero-seed-2.toml").run_pictured(&scratch_root().0);
    let at_crash = crash_point(&timeline);
    assert_eq!(at_crash.kind, sim::fault::PointKind::PointA);
    let apart = Heights { sqlite: Reading::At(2), kv: Reading::At(1) };
    assert_eq!((at_crash.durable, at_crash.acknowledged), (apart, Some(apart)));
    let block_1_committed = timeline.points.iter().find(|p| p.height == 1 && p.kind == sim::fault::PointKind::PointB);
    let both = Heights { sqlite: Reading::At(1), kv: Reading::At(1) };
    assert_eq!(block_1_committed.map(|p| p.durable), Some(both));
    assert!(timeline.svg().contains("FAILED transcript-mismatch"));
}

/// A lost directory operation: without its directory syncs the store's
/// LMDB environment is not durable, so a power loss keeps no kvStore at all
/// while SQLite holds a block.
#[test]
fn a_lost_directory_operation_shows_in_the_heights() {
    let (_, timeline) = scenario("disk/created-file-missing.toml").run_pictured(&scratch_root().0);
    let at_crash = crash_point(&timeline);
    assert_eq!(at_crash.durable.kv, Reading::Absent, "{:?}", at_crash.durable);
    assert!(matches!(at_crash.durable.sqlite, Reading::At(_)), "{:?}", at_crash.durable);
}

/// The picture of a shrunk failure, byte for byte (review a change with
/// `cargo insta review`; then redraw docs/timelines, see below).
#[test]
fn a_shrunk_failure_draws_as_its_snapshot() {
    let (_, timeline) = scenario("regressions/length-zero-seed-2.toml").run_pictured(&scratch_root().0);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!("timeline-length-zero-seed-2", timeline.svg()));
}

/// docs/findings.md shows each regression's picture from docs/timelines/.
#[test]
fn the_pictures_in_the_docs_are_current() {
    let root = scratch_root().0;
    let regressions = files_under(&repo().join("scenarios/regressions"));
    assert!(regressions.len() >= 3);
    let names: Vec<String> =
        regressions.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    let redraw = format!("cargo xtask scenario {} --timeline docs/timelines", names.join(" "));
    for (path, name) in regressions.iter().zip(&names) {
        let (_, timeline) = load(path).unwrap_or_else(|e| panic!("{e}")).run_pictured(&root);
        let drawn = repo().join(format!("docs/timelines/{name}.svg"));
        let kept = std::fs::read_to_string(&drawn).unwrap_or_default();
        assert!(kept == timeline.svg(), "{} is not the picture of {name} as it runs now: {redraw}", drawn.display());
    }
}
