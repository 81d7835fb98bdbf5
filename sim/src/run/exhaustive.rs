//! Exhaustive mode: crash at every crash point of a seed, one after the
//! other, and check each recovery. The workload runs once: the reference run
//! keeps every point's disk state (copy-on-write), and each point's run
//! starts from its crash image, recovers, is checked against the reference
//! at the recovered height, and runs on as far as its [`Depth`] says.

use super::host::{run_host, Course, Start};
use super::reference::Reference;
use super::scratch::RunDir;
use super::seed::{finish, first_crash_state, resumed_in_state, start};
use super::{Case, SeedReport};
use crate::check::{Failure, FailureKind};
use crate::fault::CrashAt;
use crate::trace::Trace;
use crate::world::{self, Site, World};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// How far exhaustive exploration runs the workload after each recovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Depth {
    /// Recover and check the recovered state only.
    Recover,
    /// Also run the block that was in flight again and check it (the default).
    #[default]
    NextBlock,
    /// Run every remaining block and check the final state (cost grows with the
    /// square of the workload: each point runs the rest of it).
    ToEnd,
}

impl Depth {
    pub const ALL: [Depth; 3] = [Depth::Recover, Depth::NextBlock, Depth::ToEnd];

    pub fn name(self) -> &'static str {
        match self {
            Depth::Recover => "recover",
            Depth::NextBlock => "next-block",
            Depth::ToEnd => "to-end",
        }
    }

    pub fn parse(text: &str) -> Option<Depth> {
        Depth::ALL.into_iter().find(|d| d.name() == text)
    }

    /// Blocks to run after the recovery (`None`: to the end).
    fn limit(self) -> Option<u64> {
        match self {
            Depth::Recover => Some(0),
            Depth::NextBlock => Some(1),
            Depth::ToEnd => None,
        }
    }
}

impl std::fmt::Display for Depth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Explore every crash point of `case` in `root` to `depth`. The report names
/// every point explored (`plan`, `crashes`); its failure is the first point's
/// that failed.
pub fn run_exhaustive(case: &Case, root: &Path, depth: Depth) -> SeedReport {
    let run_dir = RunDir::claim(case, root);
    let dir = run_dir.store();
    let (mut report, mut trace, reference) = match start(case, &dir, &format!(" exhaustive={}", depth.name())) {
        Ok(started) => started,
        Err(failed) => return failed.report,
    };
    trace.line(format!("exhaustive: {} crash points", reference.sites.len()));
    let reference = Arc::new(reference);
    let mut failed = 0u64;
    let mut first_failure = None;
    let mut counts: BTreeMap<Site, u64> = BTreeMap::new();
    for ordinal in 0..reference.sites.len() {
        // The point's count among its kind and block, in one pass.
        let site = reference.sites[ordinal];
        let nth = counts.entry(site).or_default();
        *nth += 1;
        let named = CrashAt { at: site.kind, block: site.height, nth: *nth };
        report.plan.push(named);
        let point = PointRun { case, dir: &dir, reference: &reference, ordinal, named, depth };
        if let Err(failure) = point.explore(&mut report, &mut trace) {
            failed += 1;
            first_failure.get_or_insert(failure);
        }
    }
    trace.line(format!(
        "exhaustive: {} points explored, {} recoveries checked, {failed} failed",
        reference.sites.len(),
        report.recoveries_checked
    ));
    report.coverage = crate::coverage::reached(&report, &reference);
    finish(report, trace, first_failure)
}

/// One crash point to explore.
struct PointRun<'a> {
    case: &'a Case,
    dir: &'a Path,
    reference: &'a Arc<Reference>,
    ordinal: usize,
    named: CrashAt,
    depth: Depth,
}

impl PointRun<'_> {
    /// Crash here into every state the persistence model allows (see
    /// [`world::exhaustive_states`]), recover, run on to the depth; what each
    /// run found goes into `report` and `trace` (its own lines as notes, and
    /// its hash). The first failure found here, if any.
    fn explore(&self, report: &mut SeedReport, trace: &mut Trace) -> Result<(), Failure> {
        let (ordinal, named) = (self.ordinal, self.named);
        let Some((first, rng)) = first_crash_state(self.case, self.reference, ordinal) else {
            // Every point must be explored: a missing image is the harness's own failure.
            let message = format!("no crash image was captured at point {ordinal} ({named})");
            trace.line(format!("FAILED at point {ordinal} ({named}): {message}"));
            return Err(Failure::new(FailureKind::InvalidPlan, named.block, message));
        };
        let disk = &self.reference.captured[ordinal].disk;
        let seed = self.case.seed ^ (ordinal as u64).rotate_left(32);
        let states = world::exhaustive_states(disk, self.case.options.crash, first, seed);
        let count = states.len();
        let mut first_failure = None;
        for (index, state) in states.into_iter().enumerate() {
            let label = state.label.clone();
            let resumed = resumed_in_state(self.case, self.reference, ordinal, named, Vec::new(), state, rng.clone());
            let (world, acked) = resumed.expect("the point was captured");
            let failure = self.run_from(world, acked, report, trace);
            let state = format!("state {}/{count}", index + 1);
            trace.line(format!("point {ordinal} ({named}) {state} ({label}): trace {}", failure.1));
            if let Some(failure) = failure.0 {
                trace.line(format!("FAILED at point {ordinal} ({named}) {state}: {failure}"));
                first_failure.get_or_insert(failure);
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    /// Recover from the crash `world` holds and run on; the failure, and the trace's hash.
    fn run_from(
        &self,
        world: World,
        acked: u64,
        report: &mut SeedReport,
        trace: &mut Trace,
    ) -> (Option<Failure>, String) {
        let course = Course { start: Start::AfterCrash { acked }, events: 1, limit: self.depth.limit() };
        let point_trace = Trace::new(self.case.verbose);
        let outcome = run_host(self.case, self.dir, self.reference.clone(), world, course, point_trace);
        debug_assert!(outcome.faults.is_empty(), "exhaustive runs plan no I/O faults");
        report.crashes.extend(outcome.crashes.iter().cloned());
        report.recoveries_checked += outcome.recoveries;
        for line in outcome.trace.lines() {
            trace.note(format!("  {line}"));
        }
        (outcome.failure, outcome.trace.hash())
    }
}
