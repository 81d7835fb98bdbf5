//! Results in a form that crosses process boundaries and ends up in JSON: one
//! [`SeedResult`] per seed and design, and the [`Summary`] of a whole run.

use crate::fault::{FaultKind, PointKind};
use crate::run::SeedReport;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// A failure as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub seed: u64,
    pub design: String,
    pub kind: String,
    /// The crash point before the failure (kind, ordinal, database, file, block, crank).
    pub point: Option<String>,
    /// The I/O fault before the failure, if any.
    #[serde(default)]
    pub fault: Option<String>,
    pub height: u64,
    pub message: String,
    /// What differs, decoded (transcript items, kv values, heaps), a line each.
    #[serde(default)]
    pub detail: Vec<String>,
    pub repro: String,
}

/// One seed and design, as a worker reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    pub design: String,
    pub options: String,
    /// Kinds of the crash points hit, in order.
    pub crashes: Vec<String>,
    /// Kinds of the faults injected, in order: each I/O fault, and `torn` for
    /// each power loss that tore unsynced sectors.
    #[serde(default)]
    pub faults: Vec<String>,
    /// The skipped and absorbed events (see [`Skips`]).
    #[serde(default)]
    pub skips: Skips,
    pub recoveries_checked: u64,
    pub cranks: u64,
    pub evictions: u64,
    pub trace_hash: String,
    pub failure: Option<FailureRecord>,
    /// The rare states of [`crate::coverage`] the seed reached.
    #[serde(default)]
    pub coverage: Vec<String>,
}

/// Planned events a seed did not get, and I/O faults its store survived
/// without stopping: counted, never failures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skips {
    /// Seeded crashes the run no longer reached (an earlier event changed its course).
    pub crashes_skipped: u64,
    /// Seeded I/O faults the run no longer reached.
    pub faults_skipped: u64,
    /// I/O faults after which the kernel still acknowledged its block, which
    /// then survived a power cut.
    pub faults_absorbed: u64,
}

impl Skips {
    fn add(&mut self, other: &Skips) {
        self.crashes_skipped += other.crashes_skipped;
        self.faults_skipped += other.faults_skipped;
        self.faults_absorbed += other.faults_absorbed;
    }
}

impl SeedResult {
    /// The result of `report`; `repro` is the command that runs it again.
    pub fn from_report(report: &SeedReport, repro: &str) -> SeedResult {
        let design = report.design.name().to_string();
        let failure = report.failure.as_ref().map(|f| FailureRecord {
            seed: report.seed,
            design: design.clone(),
            kind: f.kind.name(),
            point: f.point.as_ref().map(|p| p.to_string()),
            fault: f.fault.as_ref().map(|p| p.to_string()),
            height: f.height,
            message: f.message.clone(),
            detail: f.detail.clone(),
            repro: repro.to_string(),
        });
        SeedResult {
            seed: report.seed,
            design,
            options: report.options.to_string(),
            crashes: report.crashes.iter().map(|c| c.kind.name().to_string()).collect(),
            faults: faults_of(report),
            skips: report.skips.clone(),
            recoveries_checked: report.recoveries_checked,
            cranks: report.cranks,
            evictions: report.evictions,
            trace_hash: report.trace.hash(),
            failure,
            coverage: report.coverage.clone(),
        }
    }
}

/// The faults a seed's run got, by kind name, in order (torn crashes first).
fn faults_of(report: &SeedReport) -> Vec<String> {
    let torn = report.crashes.iter().filter(|c| c.torn).map(|_| FaultKind::Torn.name().to_string());
    torn.chain(report.faults.iter().map(|f| f.named.fault.name().to_string())).collect()
}

/// A whole run's summary (the `--json` file).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub seeds: u64,
    pub failed: u64,
    pub designs: Vec<String>,
    pub crashes: u64,
    pub crashes_by_point: BTreeMap<String, u64>,
    /// Faults injected, by kind (`torn`: power losses that tore sectors).
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Seeds that got at least one fault of the kind.
    pub seeds_by_fault: BTreeMap<String, u64>,
    /// Seeded events skipped, and I/O faults absorbed, over all seeds.
    #[serde(default)]
    pub skips: Skips,
    /// Per rare state of [`crate::coverage`], the seeds that reached it
    /// (every state on the list, reached or not).
    #[serde(default)]
    pub coverage: BTreeMap<String, u64>,
    pub recoveries_checked: u64,
    pub cranks: u64,
    pub evictions: u64,
    pub elapsed_seconds: f64,
    pub seeds_per_second: f64,
    /// A digest of every seed's trace hash, in seed order: equal across runs,
    /// processes and `--jobs` values when the simulation is deterministic.
    pub trace_digest: String,
    pub failures: Vec<FailureRecord>,
    /// The signal that stopped the run early (`SIGINT`, `SIGTERM`): the
    /// summary covers only the seeds completed by then.
    #[serde(default)]
    pub interrupted: Option<String>,
    #[serde(skip)]
    trace_hashes: BTreeMap<(u64, String), String>,
}

impl Summary {
    pub fn new(designs: Vec<String>) -> Summary {
        let crashes_by_point = PointKind::ALL.iter().map(|k| (k.name().to_string(), 0)).collect();
        let faults_by_kind: BTreeMap<String, u64> = FaultKind::ALL.iter().map(|k| (k.name().to_string(), 0)).collect();
        let seeds_by_fault = faults_by_kind.clone();
        let coverage = crate::coverage::states().into_iter().map(|s| (s.name, 0)).collect();
        Summary { designs, crashes_by_point, faults_by_kind, seeds_by_fault, coverage, ..Summary::default() }
    }

    pub fn add(&mut self, result: &SeedResult) {
        self.seeds += 1;
        self.crashes += result.crashes.len() as u64;
        for kind in &result.crashes {
            *self.crashes_by_point.entry(kind.clone()).or_default() += 1;
        }
        for kind in &result.faults {
            *self.faults_by_kind.entry(kind.clone()).or_default() += 1;
        }
        let mut kinds = result.faults.clone();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            *self.seeds_by_fault.entry(kind).or_default() += 1;
        }
        self.skips.add(&result.skips);
        for state in &result.coverage {
            *self.coverage.entry(state.clone()).or_default() += 1;
        }
        self.recoveries_checked += result.recoveries_checked;
        self.cranks += result.cranks;
        self.evictions += result.evictions;
        self.trace_hashes.insert((result.seed, result.design.clone()), result.trace_hash.clone());
        if let Some(failure) = &result.failure {
            self.failed += 1;
            self.failures.push(failure.clone());
        }
    }

    /// Sort failures by seed and design, so the summary does not depend on job timing.
    pub fn finish(&mut self, elapsed_seconds: f64) {
        self.failures.sort_by(|a, b| (a.seed, &a.design).cmp(&(b.seed, &b.design)));
        self.elapsed_seconds = elapsed_seconds;
        let mut hasher = Sha256::new();
        for ((seed, design), hash) in &self.trace_hashes {
            hasher.update(format!("{seed} {design} {hash}\n").as_bytes());
        }
        self.trace_digest = hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        self.seeds_per_second = if elapsed_seconds > 0.0 { self.seeds as f64 / elapsed_seconds } else { 0.0 };
    }

    /// The states on the coverage list that no seed reached, in list order.
    pub fn not_covered(&self) -> Vec<crate::coverage::State> {
        let reached = |name: &String| self.coverage.get(name).is_some_and(|n| *n > 0);
        crate::coverage::states().into_iter().filter(|s| !reached(&s.name)).collect()
    }

    /// The closing line.
    pub fn line(&self) -> String {
        let interrupted =
            self.interrupted.as_ref().map_or(String::new(), |signal| format!(" (interrupted by {signal})"));
        format!(
            "sim: {} seeds, {} failed, {} crashes, {} faults, {} recoveries checked, {:.1} seeds/s{interrupted}",
            self.seeds,
            self.failed,
            self.crashes,
            self.faults_by_kind.values().sum::<u64>(),
            self.recoveries_checked,
            self.seeds_per_second
        )
    }
}
