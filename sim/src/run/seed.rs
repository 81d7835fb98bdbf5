//! The phases of a seed: its trace header and reference run ([`start`]),
//! the crash and I/O fault plans, the faulty run (from the reference's
//! capture of the first planned crash when it can), and the verdict.

use super::case::ordinal_of;
use super::host::{run_host, Course, FaultyOutcome, Start};
use super::reference::{reference_run, Reference};
use super::scratch::RunDir;
use super::{Case, CrashPlan, FaultPlan, SeedReport};
use crate::check::{self, Failure};
use crate::fault::CrashAt;
use crate::options::Mutation;
use crate::trace::Trace;
use crate::world::{self, CrashState, PointRecord, World};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::Arc;

/// Run one case in `root` (a per-process scratch directory); its files are
/// removed afterwards, whatever the outcome.
pub fn run_case(case: &Case, root: &Path) -> SeedReport {
    run_case_resuming(case, root, true)
}

/// [`run_case`] with a faulty run that executes the workload from the start up
/// to its first crash instead of starting from the reference's capture of it.
/// The two must agree exactly (same report, same trace): a test holds them equal.
#[cfg(test)]
pub(super) fn run_case_from_start(case: &Case, root: &Path) -> SeedReport {
    run_case_resuming(case, root, false)
}

/// [`run_case`]; `from_capture`: the faulty run may start from the
/// reference's capture of its first crash.
fn run_case_resuming(case: &Case, root: &Path, from_capture: bool) -> SeedReport {
    let run_dir = RunDir::claim(case, root);
    let dir = run_dir.store();
    let (mut report, mut trace, reference) = match start(case, &dir, "") {
        Ok(started) => started,
        Err(report) => return *report,
    };
    report.plan = case.crash_plan(&reference.sites);
    let named: Vec<String> = report.plan.iter().map(|c| c.to_string()).collect();
    let named = if named.is_empty() { "none".to_string() } else { named.join(", ") };
    trace.line(format!("crash plan: {named} (of {} crash points)", reference.sites.len()));
    report.fault_plan = case.fault_plan(&reference.io_counts);
    if !report.fault_plan.is_empty() {
        let named: Vec<String> = report.fault_plan.iter().map(|f| f.to_string()).collect();
        trace.line(format!("I/O fault plan: {}", named.join(", ")));
    }
    let faulty = faulty_run(case, &dir, &report, Arc::new(reference), trace, from_capture);
    verdict(case, report, faulty)
}

/// The first line of a seed's trace, its empty report, and its reference run in
/// `dir`; `Err` is the finished report of a reference run that failed.
pub(super) fn start(
    case: &Case,
    dir: &Path,
    header_suffix: &str,
) -> Result<(SeedReport, Trace, Reference), Box<SeedReport>> {
    let mut trace = Trace::new(case.verbose);
    trace.line(format!("SEED={} design={} {}{header_suffix}", case.seed, case.design, case.options));
    let mut report = SeedReport::empty(case);
    let reference = match reference_run(case, dir, &mut trace) {
        Ok(reference) => reference,
        Err(failure) => return Err(Box::new(finish(report, trace, Some(failure)))),
    };
    report.cranks = reference.reports.iter().map(|r| r.cranks).sum();
    report.evictions = reference.final_snapshot.evictions;
    Ok((report, trace, reference))
}

/// The report of a seed whose faulty run came out as `faulty`.
fn verdict(case: &Case, mut report: SeedReport, faulty: FaultyOutcome) -> SeedReport {
    report.crashes = faulty.crashes;
    report.faults = faulty.faults;
    report.skips.faults_absorbed = faulty.faults_absorbed;
    report.recoveries_checked = faulty.recoveries;
    report.final_state = faulty.final_state;
    let mut trace = faulty.trace;
    // A seeded event may name a point or an operation that an event before it
    // made the run skip (a block committed before it, a block re-run with
    // fewer operations, a recovery that checkpointed SQLite's WAL and changed
    // its schedule of syncs, the store created again at height 1): it is not
    // injected; it is counted as skipped. Named ones must be reached.
    let faults_unreached = match case.faults {
        FaultPlan::Seeded => {
            report.skips.faults_skipped = faulty.faults_unreached.len() as u64;
            not_reached(&mut trace, &faulty.faults_unreached)
        }
        FaultPlan::Explicit(_) => &faulty.faults_unreached[..],
    };
    let crashes_unreached = match case.plan {
        CrashPlan::Seeded => {
            report.skips.crashes_skipped = faulty.unreached.len() as u64;
            not_reached(&mut trace, &faulty.unreached)
        }
        CrashPlan::Explicit(_) => &faulty.unreached[..],
    };
    let failure = faulty.failure.or_else(|| check::plan_reached(crashes_unreached, faults_unreached));
    finish(report, trace, failure)
}

/// Say in the trace that the seeded `events` were not reached; none is a failure.
fn not_reached<'a, T: std::fmt::Display>(trace: &mut Trace, events: &[T]) -> &'a [T] {
    for event in events {
        trace.line(format!("not injected: {event} (the run did not reach it)"));
    }
    &[]
}

/// The finished report: `failure` (or none), said last in the trace.
pub(super) fn finish(mut report: SeedReport, mut trace: Trace, failure: Option<Failure>) -> SeedReport {
    match &failure {
        Some(failure) => trace.line(format!("FAILED: {failure}")),
        None => trace.line("passed".to_string()),
    }
    report.failure = failure;
    report.trace = trace;
    report
}

/// The faulty run, following the plans in `report`. It does not run the
/// workload up to its first crash again: the reference run is that run (same
/// seed, same points), so the run starts from the crash image the reference
/// captured at the first planned point, as a run that crashed there would
/// (ordinals, torn draws and trace alike), and recovers. With no crash
/// planned, a first crash the reference never reached, or an I/O fault
/// planned in its block or before, it runs from the start (an I/O fault needs
/// the live process). Without `from_capture` it always runs from the start.
fn faulty_run(
    case: &Case,
    dir: &Path,
    report: &SeedReport,
    reference: Arc<Reference>,
    trace: Trace,
    from_capture: bool,
) -> FaultyOutcome {
    let (plan, faults) = (report.plan.clone(), report.fault_plan.clone());
    let events = plan.len() + faults.len();
    let resumable = plan.first().is_some_and(|first| faults.iter().all(|f| f.block > first.block));
    let resume = match !from_capture || !resumable {
        true => None,
        false => resume_at(case, &reference, plan[0], plan[1..].to_vec()),
    };
    let (world, start) = match resume {
        Some((world, acked)) => (world, Start::AfterCrash { acked }),
        None => (World::new(case.seed, case.options.crash, plan), Start::Fresh),
    };
    let world = world.with_faults(faults, case.mutation == Some(Mutation::FsyncRetry));
    run_host(case, dir, reference, world, Course { start, events, limit: None }, trace)
}

/// The world of a run that crashed first at `first`, as the reference
/// captured it, with `rest` of the plan ahead; and the block the host had seen
/// committed then. `None` if the reference never reached `first`.
fn resume_at(case: &Case, reference: &Reference, first: CrashAt, rest: Vec<CrashAt>) -> Option<(World, u64)> {
    let ordinal = ordinal_of(&reference.sites, first)?;
    let (world, acked) = resumed_world(case, reference, ordinal, first, rest)?;
    Some((world, acked))
}

/// The world of a run that crashed first at point `ordinal` (named `named`),
/// with `rest` of the plan ahead, and the block the host had seen committed.
pub(super) fn resumed_world(
    case: &Case,
    reference: &Reference,
    ordinal: usize,
    named: CrashAt,
    rest: Vec<CrashAt>,
) -> Option<(World, u64)> {
    let (first, rng) = first_crash_state(case, reference, ordinal)?;
    resumed_in_state(case, reference, ordinal, named, rest, first, rng)
}

/// The crash state a run crashing first at point `ordinal` gets: the crash
/// image drawn with the run's torn rng, as a live crash there draws it; and
/// that rng after the draws, for the crashes after it.
pub(super) fn first_crash_state(
    case: &Case,
    reference: &Reference,
    ordinal: usize,
) -> Option<(CrashState, ChaCha8Rng)> {
    let captured = reference.captured.get(ordinal)?;
    let mut rng = world::torn_rng(case.seed);
    let image = world::crash_image(&captured.disk, case.options.crash, &mut rng);
    let torn = rng.get_word_pos() != world::torn_rng(case.seed).get_word_pos();
    Some((CrashState { label: "as a seeded crash here".into(), image, torn }, rng))
}

/// The world of a run that crashed at point `ordinal` (named `named`) into
/// `state`, with `rest` of the plan ahead and `rng` for its later torn
/// draws; and the block the host had seen committed.
pub(super) fn resumed_in_state(
    case: &Case,
    reference: &Reference,
    ordinal: usize,
    named: CrashAt,
    rest: Vec<CrashAt>,
    state: CrashState,
    rng: ChaCha8Rng,
) -> Option<(World, u64)> {
    let captured = reference.captured.get(ordinal)?;
    let record = PointRecord {
        kind: named.at,
        ordinal: ordinal as u64,
        named,
        database: captured.database,
        file: captured.file.clone(),
        at: captured.at,
        torn: state.torn,
        disk: crate::disk::describe_crash(&captured.disk, &state.image),
    };
    let world = World::resumed(case.seed, case.options.crash, rest, record, state.image, rng);
    // The host sees block h committed when run_block(h) returns: a crash while
    // it runs block h (or opens the store, h = 0) leaves h - 1 acknowledged.
    Some((world, reference.sites[ordinal].height.saturating_sub(1)))
}
