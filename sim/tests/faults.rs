//! I/O faults and the liveness phase, end to end: every kind is injected and
//! the adopted design survives them; narrowing `--faults` changes nothing but
//! the faults; a store that retries a failed fsync, or that never makes
//! progress again after a storage error, is caught.

use sim::check::FailureKind;
use sim::fault::{FaultAt, FaultKind, FaultMode, FaultSet};
use sim::options::{Flags, Mutation, SeedOptions};
use sim::run::{run_case, scratch_root, Case, CrashPlan, FaultPlan, SeedConfig, SeedReport};
use sim::summary::SeedResult;
use std::collections::BTreeMap;
use store::Design;

fn case(seed: u64, faults: FaultSet, mutation: Option<Mutation>) -> Case {
    let flags = Flags { faults, ..Flags::default() };
    Case::from_seed(&SeedConfig { seed, design: Design::StartPosition, flags, verbose: true }).with_mutation(mutation)
}

fn run(case: &Case) -> SeedReport {
    run_case(case, &scratch_root().0)
}

fn describe(report: &SeedReport) -> String {
    report.failure.as_ref().map_or("passed".into(), |f| f.to_string())
}

/// Every fault kind is injected within 60 seeds, each seed passes, and the
/// kinds a report counts are the ones the run's trace shows.
#[test]
fn every_fault_kind_is_injected_and_start_position_survives() {
    let mut seeds_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for seed in 0..60 {
        let report = run(&case(seed, FaultSet::all(), None));
        assert!(report.failure.is_none(), "seed {seed}: {}", describe(&report));
        let result = SeedResult::from_report(&report, "");
        let mut kinds = result.faults.clone();
        kinds.dedup();
        for kind in kinds {
            *seeds_by_kind.entry(kind).or_default() += 1;
        }
        for fault in &report.faults {
            let line = match fault.named.fault {
                FaultKind::Stop => format!("graceful {fault}"),
                _ => format!("I/O fault {fault}"),
            };
            assert!(report.trace.lines().iter().any(|l| l.starts_with(&line)), "seed {seed}: no `{line}` in the trace");
        }
    }
    for kind in FaultKind::ALL {
        let seeds = seeds_by_kind.get(kind.name()).copied().unwrap_or(0);
        assert!(seeds >= 3, "{kind} injected in only {seeds} of 60 seeds: {seeds_by_kind:?}");
    }
}

/// `--faults none` gives the same workload and crash plan, and no fault; one
/// kind alone gives only that kind.
#[test]
fn narrowing_faults_changes_only_the_faults() {
    let mut enospc = 0;
    for seed in 0..12 {
        let all = SeedOptions::derive(seed, &Flags::default());
        let none = SeedOptions::derive(seed, &Flags { faults: FaultSet::none(), ..Flags::default() });
        assert_eq!(
            (&all.workload, all.crashes, &all.point_weights),
            (&none.workload, none.crashes, &none.point_weights)
        );
        assert_eq!((none.io_faults, none.crash.torn), (0, false), "seed {seed}");
        let report = run(&case(seed, FaultSet::none(), None));
        assert!(report.faults.is_empty() && report.crashes.iter().all(|c| !c.torn), "seed {seed}");
        let only = FaultSet::parse("enospc").unwrap();
        let report = run(&case(seed, only, None));
        assert!(report.faults.iter().all(|f| f.named.fault == FaultKind::Enospc), "seed {seed}");
        enospc += report.faults.len();
    }
    assert!(enospc >= 3, "`--faults enospc` injected only {enospc} faults in 12 seeds");
    assert!(FaultSet::parse("fsync-eio,meteor").is_err());
    assert_eq!(FaultSet::parse("all").unwrap(), FaultSet::all());
    assert!(SeedOptions::derive(3, &Flags::crashes_only(Some(FaultMode::PowerLoss), true)).crash.torn);
}

/// A store whose I/O layer retries a failed fsync and carries on loses data
/// the kernel reported committed (the power cut after the acknowledged block
/// shows it): found within 40 seeds, and only in seeds with an fsync-eio.
#[test]
fn a_store_that_retries_a_failed_fsync_is_caught() {
    let mut caught = Vec::new();
    for seed in 0..40 {
        let report = run(&case(seed, FaultSet::all(), Some(Mutation::FsyncRetry)));
        if let Some(failure) = &report.failure {
            let had_fsync_eio = report.faults.iter().any(|f| f.named.fault == FaultKind::FsyncEio);
            assert!(had_fsync_eio, "seed {seed} failed without an fsync-eio: {failure}");
            caught.push(failure.kind);
        }
    }
    assert!(caught.len() >= 3, "fsync-retry caught in only {} of 40 seeds", caught.len());
}

/// A store that never makes progress again after a storage error is stuck in
/// the liveness phase, a failure of its own kind: one write fault and no
/// crash planned, so that nothing more is planned after the fault.
#[test]
fn a_store_that_stays_poisoned_is_stuck() {
    let mutation = Some(Mutation::Store(store::Mutant::PoisonPersists));
    let fault = FaultAt { fault: FaultKind::WriteEio, block: 2, nth: 1 };
    let case = Case {
        plan: CrashPlan::Explicit(Vec::new()),
        faults: FaultPlan::Explicit(vec![fault]),
        ..case(0, FaultSet::all(), mutation)
    };
    let stuck = run(&case);
    let failure = stuck.failure.as_ref().expect("poison-persists fails");
    assert_eq!(failure.kind, FailureKind::Stuck, "{failure}");
    assert!(failure.message.contains("cannot complete"), "{failure}");
    assert!(stuck.trace.lines().iter().any(|l| l.starts_with("liveness: nothing more planned")), "{failure}");
    let healthy = run(&Case { mutation: None, ..case });
    assert!(healthy.failure.is_none(), "without the mutant: {}", describe(&healthy));
}
