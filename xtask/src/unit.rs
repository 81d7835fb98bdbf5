//! One unit of a run, in this process: a seed with a design, under a run
//! specification. The worker runs its stripe of units with it and `sim --seed`
//! its one seed, so both make the same result and the same repro line. A panic
//! is the unit's failure; with the determinism check the unit runs twice.

use crate::args::RunSpec;
use sim::check::FailureKind;
use sim::run::{run_case, run_case_pictured, run_exhaustive, Case, SeedReport};
use sim::summary::{FailureRecord, SeedResult};
use sim::timeline::Timeline;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use store::Design;

/// What a unit came to.
pub struct Unit {
    pub result: SeedResult,
    /// The trace of its (first) run, line by line when `verbose`.
    pub lines: Vec<String>,
    /// Its timeline, when asked for and the run did not panic.
    pub timeline: Option<Timeline>,
}

/// Run `seed` with `design` under `spec` in `root` (a per-process scratch directory).
pub fn run(spec: &RunSpec, seed: u64, design: Design, root: &Path, verbose: bool) -> Unit {
    run_unit(spec, seed, design, root, (verbose, false))
}

/// [`run`], verbose, with the run's timeline (not for exhaustive runs).
pub fn run_pictured(spec: &RunSpec, seed: u64, design: Design, root: &Path) -> Unit {
    run_unit(spec, seed, design, root, (true, true))
}

fn run_unit(spec: &RunSpec, seed: u64, design: Design, root: &Path, (verbose, picture): (bool, bool)) -> Unit {
    let case = spec.case(seed, design, verbose);
    let (first, timeline) = match catching(|| run_report(spec, &case, root, picture)) {
        Ok(ran) => ran,
        Err(message) => {
            return Unit { result: panicked(spec, seed, design, &message), lines: Vec::new(), timeline: None }
        }
    };
    let lines = first.trace.lines().to_vec();
    let result = SeedResult::from_report(&first, &spec.repro_line(seed, design));
    if !spec.check_determinism {
        return Unit { result, lines, timeline };
    }
    let second = match catching(|| run_report(spec, &Case { verbose: false, ..case }, root, false)) {
        Ok((report, _)) => SeedResult::from_report(&report, &spec.repro_line(seed, design)),
        Err(message) => panicked(spec, seed, design, &message),
    };
    if second == result {
        return Unit { result, lines, timeline };
    }
    let message = format!("two runs differ: trace {} vs {}", result.trace_hash, second.trace_hash);
    let repro = spec.repro_line(seed, design);
    Unit { result: with_failure(result, FailureKind::Nondeterministic, &message, repro), lines, timeline }
}

/// One run of `case`: every crash point explored when the spec is
/// exhaustive; with its timeline when `picture`.
fn run_report(spec: &RunSpec, case: &Case, root: &Path, picture: bool) -> (SeedReport, Option<Timeline>) {
    match (spec.exhaustive_depth(), picture) {
        (Some(depth), _) => (run_exhaustive(case, root, depth), None),
        (None, false) => (run_case(case, root), None),
        (None, true) => {
            let (report, timeline) = run_case_pictured(case, root);
            (report, Some(timeline))
        }
    }
}

/// `run`, with a panic in it caught: `Err` says what it was.
pub fn catching<T>(run: impl FnOnce() -> T) -> Result<T, String> {
    // The run's disk guard is dropped by the unwinding: nothing stays installed.
    catch_unwind(AssertUnwindSafe(run)).map_err(|panic| panic_message(panic.as_ref()))
}

/// The result of a unit whose run panicked or whose worker died (`why`).
pub fn panicked(spec: &RunSpec, seed: u64, design: Design, why: &str) -> SeedResult {
    let result = SeedResult {
        seed,
        design: design.name().to_string(),
        options: String::new(),
        crashes: Vec::new(),
        faults: Vec::new(),
        skips: Default::default(),
        recoveries_checked: 0,
        cranks: 0,
        evictions: 0,
        trace_hash: String::new(),
        failure: None,
        coverage: Vec::new(),
    };
    with_failure(result, FailureKind::Panic, why, spec.repro_line(seed, design))
}

/// `result` with `kind` as its failure (replacing any other), reproduced by `repro`.
fn with_failure(mut result: SeedResult, kind: FailureKind, message: &str, repro: String) -> SeedResult {
    result.failure = Some(FailureRecord {
        seed: result.seed,
        design: result.design.clone(),
        kind: kind.name(),
        point: None,
        fault: None,
        height: 0,
        message: message.to_string(),
        detail: Vec::new(),
        repro,
    });
    result
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-string panic".into());
    format!("panicked: {text}")
}
