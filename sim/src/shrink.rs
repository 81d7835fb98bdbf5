//! Shrinking a failing run to a reproduction a person can read: fewer crashes,
//! vats, blocks and inputs, and earlier crash points, as long as it still fails
//! with the same kind of failure. The search is proptest's: each dimension is a
//! proptest value tree (a mask of booleans that shrink to "dropped", a binary
//! search for a crash point's count) driven by proptest's simplify/complicate
//! protocol, with "still fails the same way" as the test.

use crate::check::FailureKind;
use crate::fault::{CrashAt, FaultAt};
use crate::run::{run_case, Case, SeedReport};
use crate::scenario::{Expect, Scenario, VatDecl};
use proptest::num::u64::BinarySearch;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use store::kernel::HostInput;

/// What shrinking found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    pub scenario: Scenario,
    pub kind: FailureKind,
    /// Events (vats, inputs, crashes) before and after.
    pub events_before: usize,
    pub events_after: usize,
    /// Candidate runs made.
    pub runs: u64,
    /// The failure of the shrunk scenario, as a person reads it.
    pub message: String,
}

/// The explicit scenario of a seeded run: its vats, blocks, and the crashes
/// and I/O faults it got (a seeded one the run skipped is left out).
fn scenario_of(case: &Case, report: &SeedReport) -> Scenario {
    let vats = case.options.workload.first().into_iter().flatten().filter_map(|input| match input {
        HostInput::CreateVat { vat, bundle, params } => {
            Some(VatDecl { id: vat.clone(), bundle: bundle.clone(), multiplier: params.multiplier })
        }
        _ => None,
    });
    Scenario {
        name: format!("{}-seed-{}", case.design, case.seed),
        path: PathBuf::new(),
        description: String::new(),
        design: case.design,
        seed: case.seed,
        crash: case.options.crash,
        worker_cap: case.options.kernel.max_workers_online,
        max_cranks_per_block: case.options.kernel.max_cranks_per_block,
        snapshot_interval: case.options.kernel.snapshot_interval,
        expect: Expect::Fails,
        failure: report.failure.as_ref().map(|f| f.kind),
        vats: vats.collect(),
        blocks: case.options.workload.iter().skip(1).cloned().collect(),
        plan: report.crashes.iter().map(|c| c.named).collect(),
        faults: report.faults.iter().map(|f| f.named).collect(),
        settings: case.options.settings,
        mutation: case.mutation,
    }
}

/// The shrinking search, with its memo of candidates already run.
struct Search<'a> {
    root: &'a Path,
    /// Asked before each candidate run: once it says stop, no candidate fails.
    stop: &'a dyn Fn() -> bool,
    kind: FailureKind,
    runs: u64,
    max_runs: u64,
    seen: BTreeMap<String, bool>,
}

impl Search<'_> {
    /// Whether `candidate` still fails with the same kind.
    fn fails(&mut self, candidate: &Option<Scenario>) -> bool {
        let Some(scenario) = candidate else { return false };
        let key = scenario.to_toml();
        if let Some(known) = self.seen.get(&key) {
            return *known;
        }
        if self.runs >= self.max_runs || (self.stop)() {
            return false;
        }
        self.runs += 1;
        let report = run_case(&scenario.case(None, false), self.root);
        let fails = report.failure.as_ref().is_some_and(|f| f.kind == self.kind);
        self.seen.insert(key, fails);
        fails
    }

    /// proptest's shrink loop over one value tree; returns the smallest failing candidate.
    fn minimize<T: ValueTree>(
        &mut self,
        mut tree: T,
        best: Scenario,
        build: impl Fn(&T::Value) -> Option<Scenario>,
    ) -> Scenario {
        let mut best = best;
        if !tree.simplify() {
            return best;
        }
        loop {
            let candidate = build(&tree.current());
            if self.fails(&candidate) {
                best = candidate.expect("a failing candidate exists");
                if !tree.simplify() {
                    break;
                }
            } else if !tree.complicate() {
                break;
            }
        }
        best
    }

    /// Shrink over a mask of `len` elements that each shrink from kept to dropped.
    fn mask(&mut self, len: usize, best: Scenario, apply: impl Fn(&Scenario, &[bool]) -> Option<Scenario>) -> Scenario {
        if len == 0 {
            return best;
        }
        let strategy: Vec<_> = (0..len).map(|_| proptest::bool::weighted(1.0)).collect();
        let tree = strategy.new_tree(&mut TestRunner::deterministic()).expect("a mask tree");
        let base = best.clone();
        self.minimize(tree, best, move |mask| apply(&base, mask))
    }

    fn round(&mut self, best: Scenario) -> Scenario {
        let best =
            self.mask(best.plan.len(), best, |s, mask| Some(Scenario { plan: keep(&s.plan, mask), ..s.clone() }));
        let best =
            self.mask(best.faults.len(), best, |s, mask| Some(Scenario { faults: keep(&s.faults, mask), ..s.clone() }));
        let best = self.mask(best.vats.len(), best, drop_vats);
        let best = self.mask(best.blocks.len(), best, drop_blocks);
        let inputs = best.blocks.iter().map(Vec::len).sum();
        let mut best = self.mask(inputs, best, drop_inputs);
        for index in 0..best.plan.len() {
            best = self.lower_nth(best, |s| &mut s.plan[index].nth);
        }
        for index in 0..best.faults.len() {
            best = self.lower_nth(best, |s| &mut s.faults[index].nth);
        }
        best
    }

    /// Binary search down the count (`nth`) that `field` points at: an earlier
    /// crash point or operation of the same kind, if the failure stays.
    fn lower_nth(&mut self, best: Scenario, field: impl Fn(&mut Scenario) -> &mut u64) -> Scenario {
        let mut base = best.clone();
        let tree = BinarySearch::new_above(1, *field(&mut base));
        self.minimize(tree, best, move |nth| {
            let mut candidate = base.clone();
            *field(&mut candidate) = *nth;
            Some(candidate)
        })
    }
}

fn keep<T: Clone>(items: &[T], mask: &[bool]) -> Vec<T> {
    items.iter().zip(mask).filter(|(_, keep)| **keep).map(|(item, _)| item.clone()).collect()
}

/// Drop vats and every input that names a dropped vat.
fn drop_vats(s: &Scenario, mask: &[bool]) -> Option<Scenario> {
    let vats = keep(&s.vats, mask);
    let known: Vec<&str> = vats.iter().map(|v| v.id.as_str()).collect();
    let names_only_known = |input: &HostInput| match input {
        HostInput::Send { target, method, args } => {
            known.contains(&target.as_str())
                && (method != "forward" || args[1..].iter().all(|a| known.contains(&a.as_str())))
        }
        HostInput::UpgradeVat { vat, .. } | HostInput::CreateVat { vat, .. } => known.contains(&vat.as_str()),
    };
    let blocks = s.blocks.iter().map(|b| b.iter().filter(|i| names_only_known(i)).cloned().collect()).collect();
    Some(Scenario { vats, blocks, ..s.clone() })
}

/// Drop blocks (2..); crash points move with their block, or the candidate is void.
fn drop_blocks(s: &Scenario, mask: &[bool]) -> Option<Scenario> {
    let mut new_height = BTreeMap::from([(0, 0), (1, 1)]);
    let mut next = 2;
    for (index, kept) in mask.iter().enumerate() {
        if *kept {
            new_height.insert(index as u64 + 2, next);
            next += 1;
        }
    }
    let plan: Option<Vec<CrashAt>> =
        s.plan.iter().map(|c| new_height.get(&c.block).map(|block| CrashAt { block: *block, ..*c })).collect();
    let faults: Option<Vec<FaultAt>> =
        s.faults.iter().map(|f| new_height.get(&f.block).map(|block| FaultAt { block: *block, ..*f })).collect();
    Some(Scenario { blocks: keep(&s.blocks, mask), plan: plan?, faults: faults?, ..s.clone() })
}

/// Drop single inputs (the mask runs over all inputs of all blocks, in order).
fn drop_inputs(s: &Scenario, mask: &[bool]) -> Option<Scenario> {
    let mut bits = mask.iter();
    let blocks =
        s.blocks.iter().map(|b| b.iter().filter(|_| *bits.next().unwrap_or(&true)).cloned().collect()).collect();
    Some(Scenario { blocks, ..s.clone() })
}

/// Shrink a failing case, in at most `max_runs` candidate runs; once `stop`
/// says so, the search ends with the smallest failing case found so far.
/// `Err` when the case does not fail.
pub fn shrink(case: &Case, root: &Path, max_runs: u64, stop: &dyn Fn() -> bool) -> Result<Shrunk, String> {
    let report = run_case(&Case { verbose: false, ..case.clone() }, root);
    let Some(failure) = &report.failure else {
        return Err(format!("seed {} with design {} does not fail: nothing to shrink", case.seed, case.design));
    };
    let original = scenario_of(case, &report);
    let mut search = Search { root, stop, kind: failure.kind, runs: 0, max_runs, seen: BTreeMap::new() };
    let mut best = original.clone();
    for _ in 0..4 {
        let before = best.events();
        best = search.round(best);
        if best.events() == before {
            break;
        }
    }
    let last = run_case(&best.case(None, false), root);
    let message = last.failure.as_ref().map_or_else(|| "passed".into(), |f| f.to_string());
    Ok(Shrunk {
        events_before: original.events(),
        events_after: best.events(),
        kind: failure.kind,
        runs: search.runs,
        message,
        scenario: best,
    })
}
