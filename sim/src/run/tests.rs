//! The faulty run's short cut, held to the long way: starting from the
//! reference's capture of the first crash is the run that executes the
//! workload up to it.

use super::seed::run_case_from_start;
use super::{run_case, scratch_root, Case, CrashPlan, FaultPlan, SeedReport};
use crate::fault::FaultMode;
use crate::options::{Flags, SeedOptions};
use store::Design;

fn case(seed: u64, design: Design, mode: FaultMode, torn: bool) -> Case {
    let flags = Flags { mode: Some(mode), torn, ..Flags::default() };
    Case {
        seed,
        design,
        options: SeedOptions::derive_sized(seed, &flags, Some(5)),
        plan: CrashPlan::Seeded,
        faults: FaultPlan::Seeded,
        mutation: None,
        verbose: true,
    }
}

fn same(a: &SeedReport, b: &SeedReport) {
    assert_eq!(a.trace.lines(), b.trace.lines());
    assert_eq!(a.trace.hash(), b.trace.hash());
    assert_eq!(a.crashes, b.crashes);
    assert_eq!(a.faults, b.faults);
    assert_eq!(a.failure, b.failure);
    assert_eq!(a.recoveries_checked, b.recoveries_checked);
    assert_eq!(a.final_state, b.final_state);
}

/// Starting the faulty run from the captured crash state changes nothing:
/// every mode, torn writes, a failing design, one and two crashes, I/O faults
/// after the first crash (a run with one before it starts from the start).
#[test]
fn resumed_faulty_run_equals_the_run_from_the_start() {
    let root = scratch_root().0;
    let (mut crashes, mut faults) = (0, 0);
    for seed in 0..6 {
        for (design, mode, torn) in [
            (Design::StartPosition, FaultMode::PowerLoss, false),
            (Design::StartPosition, FaultMode::PowerLoss, true),
            (Design::LengthZero, FaultMode::ProcessCrash, false),
            (Design::RamBuffer, FaultMode::PowerLoss, true),
        ] {
            let case = case(seed, design, mode, torn);
            let resumed = run_case(&case, &root);
            let from_start = run_case_from_start(&case, &root);
            same(&resumed, &from_start);
            crashes += resumed.crashes.len();
            faults += resumed.faults.len();
        }
    }
    assert!(crashes >= 24, "only {crashes} crashes");
    assert!(faults >= 6, "only {faults} I/O faults");
}
