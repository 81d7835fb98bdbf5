//! The phases of a seed: its trace header and reference run ([`start`]),
//! the crash and I/O fault plans, the faulty run (from the reference's
//! capture of the first planned crash when it can), and the verdict.

use super::case::ordinal_of;
use super::host::{run_host, Course, FaultyOutcome, Start};
use super::reference::{reference_run, Reference};
use super::scratch::RunDir;
use super::{Case, CrashPlan, FaultPlan, SeedReport};
use crate::check::{self, Failure};
use crate::coverage;
use crate::fault::CrashAt;
use crate::options::Mutation;
use crate::timeline::{self, Timeline};
use crate::trace::Trace;
use crate::world::{self, Captured, CrashState, PointRecord, World};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::Arc;

/// Run one case in `root` (a per-process scratch directory); its files are
/// removed afterwards, whatever the outcome.
pub fn run_case(case: &Case, root: &Path) -> SeedReport {
    run_case_resuming(case, root, true, false).0
}

/// [`run_case`], and the run's [`Timeline`]: the faulty run keeps the disk's
/// state at every point it hits (the run itself is the same: same trace,
/// same report), and each point's heights are read from its crash images.
pub fn run_case_pictured(case: &Case, root: &Path) -> (SeedReport, Timeline) {
    let (report, timeline) = run_case_resuming(case, root, true, true);
    (report, timeline.expect("a pictured run draws its timeline"))
}

/// [`run_case`] with a faulty run that executes the workload from the start up
/// to its first crash instead of starting from the reference's capture of it.
/// The two must agree exactly (same report, same trace): a test holds them equal.
#[cfg(test)]
pub(super) fn run_case_from_start(case: &Case, root: &Path) -> SeedReport {
    run_case_resuming(case, root, false, false).0
}

/// [`run_case`]; `from_capture`: the faulty run may start from the
/// reference's capture of its first crash; `picture`: draw its timeline too.
fn run_case_resuming(case: &Case, root: &Path, from_capture: bool, picture: bool) -> (SeedReport, Option<Timeline>) {
    let run_dir = RunDir::claim(case, root);
    let dir = run_dir.store();
    let (mut report, mut trace, reference) = match start(case, &dir, "") {
        Ok(started) => started,
        Err(failed) => {
            let ReferenceFailed { report, captured } = *failed;
            let timeline = picture.then(|| timeline::build(case, &report, &captured, &run_dir.scratch("heights")));
            return (report, timeline);
        }
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
    let reference = Arc::new(reference);
    let mut faulty = faulty_run(case, &dir, &report, reference.clone(), trace, (from_capture, picture));
    let points = picture.then(|| run_points(&reference, &mut faulty));
    let report = verdict(case, report, faulty, &reference);
    let timeline = points.map(|points| timeline::build(case, &report, &points, &run_dir.scratch("heights")));
    (report, timeline)
}

/// Every point the faulty run went through, with its disk: the reference's
/// up to the first crash when the run started from its capture, then its own.
fn run_points(reference: &Reference, faulty: &mut FaultyOutcome) -> Vec<Captured> {
    let own = std::mem::take(&mut faulty.captured);
    let first_own = own.first().map(|c| c.ordinal);
    let resumed_after = faulty.crashes.first().map(|c| c.ordinal + 1);
    let prefix = first_own.or(resumed_after).unwrap_or(0) as usize;
    reference.captured.iter().take(prefix).cloned().chain(own).collect()
}

/// A seed whose reference run failed: its finished report, and the disk at
/// every point the run hit (what its timeline draws).
pub(super) struct ReferenceFailed {
    pub(super) report: SeedReport,
    captured: Vec<Captured>,
}

/// The first line of a seed's trace, its empty report, and its reference run in
/// `dir`; `Err` when the reference run failed.
pub(super) fn start(
    case: &Case,
    dir: &Path,
    header_suffix: &str,
) -> Result<(SeedReport, Trace, Reference), Box<ReferenceFailed>> {
    let mut trace = Trace::new(case.verbose);
    trace.line(format!("SEED={} design={} {}{header_suffix}", case.seed, case.design, case.options));
    let mut report = SeedReport::empty(case);
    let reference = match reference_run(case, dir, &mut trace) {
        Ok(reference) => reference,
        Err((failure, captured)) => {
            return Err(Box::new(ReferenceFailed { report: finish(report, trace, Some(failure)), captured }))
        }
    };
    report.cranks = reference.reports.iter().map(|r| r.cranks).sum();
    report.evictions = reference.final_snapshot.evictions;
    Ok((report, trace, reference))
}

/// The report of a seed whose faulty run came out as `faulty`, with the rare
/// states it reached.
fn verdict(case: &Case, mut report: SeedReport, faulty: FaultyOutcome, reference: &Reference) -> SeedReport {
    report.crashes = faulty.crashes;
    report.faults = faulty.faults;
    report.events = faulty.events;
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
    report.coverage = coverage::reached(&report, reference);
    finish(report, trace, failure)
}

/// Say in the trace that the seeded `events` were not reached; none is a failure.
fn not_reached<'a, T: std::fmt::Display>(trace: &mut Trace, events: &[T]) -> &'a [T] {
    for event in events {
        trace.line(format!("not injected: {event} (the run did not reach it)"));
    }
    &[]
}

/// The finished report: `failure` (or none), said last in the trace, with
/// what differs decoded below it.
pub(super) fn finish(mut report: SeedReport, mut trace: Trace, failure: Option<Failure>) -> SeedReport {
    match &failure {
        Some(failure) => {
            trace.line(format!("FAILED: {failure}"));
            failure.detail.iter().for_each(|line| trace.line(format!("  {line}")));
        }
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
    (from_capture, recording): (bool, bool),
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
    let world = world.with_faults(faults, case.mutation == Some(Mutation::FsyncRetry)).recording(recording);
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
        window: captured.window,
        disk: crate::disk::CrashDisk::of(&captured.disk, &state.image),
    };
    let world = World::resumed(case.seed, case.options.crash, rest, record, state.image, rng);
    // The host sees block h committed when run_block(h) returns: a crash while
    // it runs block h (or opens the store, h = 0) leaves h - 1 acknowledged.
    Some((world, reference.sites[ordinal].height.saturating_sub(1)))
}
