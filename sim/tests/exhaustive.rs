//! Crash states captured in one pass: exhaustive exploration crashes at every
//! point and finds what single crashes find. (That a faulty run started from
//! the reference's capture of its first crash is the run that executes the
//! workload up to it is a unit test of `sim::run`.)

use sim::fault::FaultMode;
use sim::options::{Flags, SeedOptions, Settings};
use sim::run::{run_case, run_exhaustive, scratch_root, Case, CrashPlan, Depth, FaultPlan};
use store::{Design, JournalMode, Synchronous};

fn case(seed: u64, design: Design, mode: Option<FaultMode>, torn: bool, blocks: Option<u64>) -> Case {
    let flags = Flags { mode, torn, ..Flags::default() };
    Case {
        seed,
        design,
        options: SeedOptions::derive_sized(seed, &flags, blocks),
        plan: CrashPlan::Seeded,
        faults: FaultPlan::Seeded,
        mutation: None,
        verbose: true,
    }
}

/// Each point explored to the end is what a run planned to crash there finds.
#[test]
fn every_point_explored_is_the_single_crash_run() {
    let root = scratch_root().0;
    for (seed, design) in [(1, Design::StartPosition), (2, Design::LengthZero)] {
        let base = case(seed, design, Some(FaultMode::PowerLoss), true, Some(3));
        let exhaustive = run_exhaustive(&base, &root, Depth::ToEnd);
        assert!(exhaustive.crashes.len() >= exhaustive.plan.len(), "a crash per state, at least one per point");
        assert!(exhaustive.plan.len() > 20, "{} points", exhaustive.plan.len());
        // Each point's first state is the one a crash planned there gets.
        let states: Vec<&String> = exhaustive.trace.lines().iter().filter(|l| l.starts_with("point ")).collect();
        assert_eq!(states.len(), exhaustive.crashes.len(), "a trace line per state explored");
        let firsts: Vec<usize> = (0..states.len()).filter(|i| states[*i].contains(" state 1/")).collect();
        assert_eq!(firsts.len(), exhaustive.plan.len(), "a first state per point");
        let points: Vec<&String> = firsts.iter().map(|i| states[*i]).collect();
        for (ordinal, named) in exhaustive.plan.iter().enumerate().step_by(5) {
            let plan = CrashPlan::Explicit(vec![*named]);
            let single = run_case(&Case { plan, faults: FaultPlan::Explicit(Vec::new()), ..base.clone() }, &root);
            assert_eq!(single.crashes.len(), 1, "point {ordinal}: {named}");
            assert_eq!(single.crashes[0], exhaustive.crashes[firsts[ordinal]], "point {ordinal}");
            // The single run's lines after its crash plan are the point's lines.
            let after_plan: Vec<&String> =
                single.trace.lines().iter().skip_while(|l| !l.starts_with("crash plan")).skip(1).collect();
            let failed = single.failure.is_some();
            let lines = &after_plan[..after_plan.len() - 1];
            let hash = {
                let mut trace = sim::trace::Trace::new(false);
                lines.iter().for_each(|l| trace.line((*l).clone()));
                trace.hash()
            };
            assert!(points[ordinal].ends_with(&format!("trace {hash}")), "point {ordinal}: {}", points[ordinal]);
            let failed_here = exhaustive
                .trace
                .lines()
                .iter()
                .any(|l| l.starts_with(&format!("FAILED at point {ordinal} ")) && l.contains(" state 1/"));
            assert_eq!(failed, failed_here, "point {ordinal}");
        }
    }
}

/// Exhaustive exploration finds the seed issue's failure of `length-zero`, a
/// lost journal unlink under a rollback journal with `synchronous=FULL` (the
/// journal comes back), and none in `start-position`, and is deterministic.
#[test]
fn exhaustive_finds_what_it_should() {
    let root = scratch_root().0;
    let bad = run_exhaustive(&case(2, Design::LengthZero, None, false, Some(4)), &root, Depth::NextBlock);
    assert!(bad.failure.is_some(), "length-zero: no point failed");
    let mut lost_unlink = case(1, Design::StartPosition, Some(FaultMode::PowerLoss), false, Some(4));
    lost_unlink.options.settings =
        Settings { sqlite_journal: JournalMode::Delete, sqlite_sync: Synchronous::Full, ..Settings::default() };
    let found = run_exhaustive(&lost_unlink, &root, Depth::Recover);
    assert!(found.failure.is_some(), "DELETE+FULL: no lost journal unlink found");
    assert!(
        found.trace.lines().iter().any(|l| l.contains("back: swingstore/swingstore.sqlite-journal")),
        "the journal came back"
    );
    let good = case(2, Design::StartPosition, None, false, Some(4));
    let first = run_exhaustive(&good, &root, Depth::NextBlock);
    assert!(first.failure.is_none(), "{:?}", first.failure);
    assert_eq!(first.recoveries_checked, first.plan.len() as u64);
    let again = run_exhaustive(&Case { verbose: false, ..good }, &root, Depth::NextBlock);
    assert_eq!(first.trace.hash(), again.trace.hash(), "verbose or not, the same hash");
}
