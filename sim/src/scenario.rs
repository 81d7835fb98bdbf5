//! Scenarios: named cases as data (TOML). A scenario fixes everything a seed
//! would otherwise derive: the design, the vats (created in block 1), the host's
//! inputs for blocks 2.., the crash plan, the fault mode, and the outcome a
//! person expects. Regressions written by `cargo xtask shrink` use the same format.
//!
//! ```toml
//! description = "The seed issue: an upgrade, a crash at point A, a restart."
//! design = "erase"           # erase | length-zero | ram-buffer | generation | start-position | unified
//! seed = 0                   # seeds SQLite's randomness, madsim and torn writes (default 0)
//! mode = "power-loss"        # power-loss (default) | process-crash
//! torn = false
//! worker_cap = 2             # workers online (default 2)
//! expect = "fails"           # passes | fails
//! failure = "replay-diverged" # with `fails`: the failure kind expected (optional)
//! sqlite_journal = "wal"     # delete | truncate | persist | memory | wal | off (default: the store's, wal)
//! sqlite_sync = "full"       # off | normal | full | extra (default: the store's, full)
//! lmdb_flags = "default"     # default | nometasync | nosync (the writemap ones are refused)
//! mutant = "no-dir-sync"     # run with a deliberate defect (regressions of `cargo xtask mutants`)
//!
//! [[vats]]                   # block 1 creates them, in order
//! id = "v1"
//! bundle = "counter-v1"
//! multiplier = 1
//!
//! [[blocks]]                 # block 2, then 3, ...
//! inputs = [
//!   { type = "send", target = "v1", method = "bump", args = ["3"] },
//!   { type = "upgrade-vat", vat = "v1", bundle = "counter-v2", params = { multiplier = 2 } },
//! ]
//!
//! [[crash]]                  # the nth point of kind `at` while the host runs block `block`
//! at = "point-a"             # (counted from the previous crash for later ones)
//! block = 2
//! nth = 1
//!
//! [[fault]]                  # an I/O fault: fsync-eio (nth sync), enospc (nth extending
//! fault = "fsync-eio"        # write) or write-eio (nth write) while the host runs `block`,
//! block = 3                  # counted from the start or the last crash
//! nth = 2
//! ```

use crate::check::FailureKind;
use crate::fault::{CrashAt, CrashSpec, FaultAt, FaultMode, PointKind};
use crate::options::{Mutation, SeedOptions, Settings};
use crate::run::{run_case_pictured, Case, CrashPlan, FaultPlan, SeedReport};
use crate::timeline::Timeline;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use store::kernel::{HostInput, KernelConfig};
use store::vat::{bundle, VatParams};
use store::Design;
use toml::Spanned;

/// A vat the scenario creates in block 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VatDecl {
    pub id: String,
    pub bundle: String,
    #[serde(default = "one")]
    pub multiplier: i64,
}

/// The host's inputs of one block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDecl {
    #[serde(default)]
    pub inputs: Vec<HostInput>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    Passes,
    Fails,
}

/// One scenario file, as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    #[serde(default)]
    pub description: String,
    pub design: Spanned<String>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "power_loss")]
    pub mode: FaultMode,
    #[serde(default)]
    pub torn: bool,
    #[serde(default = "two")]
    pub worker_cap: usize,
    #[serde(default = "forty")]
    pub max_cranks_per_block: u64,
    /// Save each vat's heap every this many deliveries (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_interval: Option<u64>,
    pub expect: Expect,
    #[serde(default)]
    pub failure: Option<Spanned<String>>,
    pub vats: Vec<Spanned<VatDecl>>,
    #[serde(default)]
    pub blocks: Vec<BlockDecl>,
    #[serde(default)]
    pub crash: Vec<Spanned<CrashAt>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fault: Vec<Spanned<FaultAt>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite_journal: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite_sync: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lmdb_flags: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_db: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutant: Option<Spanned<String>>,
}

fn one() -> i64 {
    1
}
fn two() -> usize {
    2
}
fn forty() -> u64 {
    40
}
fn power_loss() -> FaultMode {
    FaultMode::PowerLoss
}

/// A loaded, validated scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub design: Design,
    pub seed: u64,
    pub crash: CrashSpec,
    pub worker_cap: usize,
    pub max_cranks_per_block: u64,
    pub snapshot_interval: Option<u64>,
    pub expect: Expect,
    pub failure: Option<FailureKind>,
    pub vats: Vec<VatDecl>,
    pub blocks: Vec<Vec<HostInput>>,
    pub plan: Vec<CrashAt>,
    /// I/O faults, injected when their operation comes.
    pub faults: Vec<FaultAt>,
    /// The databases' durability settings.
    pub settings: Settings,
    /// A deliberate defect the scenario runs with (a mutant's regression).
    pub mutation: Option<Mutation>,
}

/// Read and validate a scenario file; errors name the file, line and field.
pub fn load(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Scenario, String> {
    let file: ScenarioFile = toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let at = |span: std::ops::Range<usize>, field: &str, message: String| {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        format!("{}: line {line}: field `{field}`: {message}", path.display())
    };
    let design = file.design.get_ref().parse::<Design>().map_err(|e| at(file.design.span(), "design", e))?;
    let failure = match &file.failure {
        None => None,
        Some(kind) => Some(FailureKind::parse(kind.get_ref()).ok_or_else(|| {
            let names: Vec<String> = FailureKind::ALL.iter().map(|k| k.name()).collect();
            at(kind.span(), "failure", format!("unknown failure kind `{}` ({})", kind.get_ref(), names.join(", ")))
        })?),
    };
    if file.torn && file.mode != FaultMode::PowerLoss {
        return Err(format!("{}: field `torn`: torn writes need mode = \"power-loss\"", path.display()));
    }
    if file.worker_cap == 0 {
        return Err(format!("{}: field `worker_cap`: at least 1", path.display()));
    }
    if file.snapshot_interval == Some(0) {
        return Err(format!(
            "{}: field `snapshot_interval`: at least 1 (leave it out for no snapshots)",
            path.display()
        ));
    }
    let mut ids = Vec::new();
    for vat in &file.vats {
        let decl = vat.get_ref();
        if bundle(&decl.bundle).is_none() {
            return Err(at(vat.span(), "vats.bundle", format!("unknown bundle `{}`", decl.bundle)));
        }
        if ids.contains(&decl.id) {
            return Err(at(vat.span(), "vats.id", format!("vat `{}` declared twice", decl.id)));
        }
        ids.push(decl.id.clone());
    }
    let last_block = file.blocks.len() as u64 + 1;
    for crash in &file.crash {
        let c = crash.get_ref();
        if c.block > last_block || c.nth == 0 {
            let message = format!("{c} is not a point of this scenario (blocks 0..={last_block}, nth from 1)");
            return Err(at(crash.span(), "crash", message));
        }
    }
    for fault in &file.fault {
        let f = fault.get_ref();
        if f.fault.class().is_none() {
            return Err(at(fault.span(), "fault", "torn is not an I/O fault: set `torn = true` instead".into()));
        }
        if f.block > last_block || f.nth == 0 {
            let message = format!("{f} is not an operation of this scenario (blocks 0..={last_block}, nth from 1)");
            return Err(at(fault.span(), "fault", message));
        }
    }
    let settings = parse_settings(&file, &at)?;
    let mutation = match &file.mutant {
        None => None,
        Some(name) => Some(Mutation::parse(name.get_ref()).map_err(|e| at(name.span(), "mutant", e))?),
    };
    let name = path.file_stem().map_or(String::new(), |s| s.to_string_lossy().into_owned());
    Ok(Scenario {
        name,
        path: path.to_path_buf(),
        description: file.description,
        design,
        seed: file.seed,
        crash: CrashSpec { mode: file.mode, torn: file.torn },
        worker_cap: file.worker_cap,
        max_cranks_per_block: file.max_cranks_per_block,
        snapshot_interval: file.snapshot_interval,
        expect: file.expect,
        failure,
        vats: file.vats.into_iter().map(Spanned::into_inner).collect(),
        blocks: file.blocks.into_iter().map(|b| b.inputs).collect(),
        plan: file.crash.into_iter().map(Spanned::into_inner).collect(),
        faults: file.fault.into_iter().map(Spanned::into_inner).collect(),
        settings,
        mutation,
    })
}

/// The settings a scenario names (the store's defaults for those it does not);
/// one the simulator cannot observe is refused.
fn parse_settings(
    file: &ScenarioFile,
    at: &dyn Fn(std::ops::Range<usize>, &str, String) -> String,
) -> Result<Settings, String> {
    fn field<T: std::str::FromStr<Err = String>>(
        value: &Option<Spanned<String>>,
        name: &str,
        at: &dyn Fn(std::ops::Range<usize>, &str, String) -> String,
    ) -> Result<Option<T>, String> {
        value.as_ref().map(|v| v.get_ref().parse::<T>().map_err(|e| at(v.span(), name, e))).transpose()
    }
    let mut settings = Settings::default();
    if let Some(journal) = field(&file.sqlite_journal, "sqlite_journal", at)? {
        settings.sqlite_journal = journal;
    }
    if let Some(sync) = field(&file.sqlite_sync, "sqlite_sync", at)? {
        settings.sqlite_sync = sync;
    }
    if let Some(flags) = field(&file.lmdb_flags, "lmdb_flags", at)? {
        settings.lmdb_flags = flags;
    }
    if let Some(host_db) = field(&file.host_db, "host_db", at)? {
        settings.host_db = host_db;
    }
    if let Err(why) = settings.check_observable() {
        let span = file.lmdb_flags.as_ref().map_or(0..0, |f| f.span());
        return Err(at(span, "lmdb_flags", why));
    }
    Ok(settings)
}

impl Scenario {
    /// The case this scenario runs, with `design` (its own unless overridden).
    pub fn case(&self, design: Option<Design>, verbose: bool) -> Case {
        let create = self.vats.iter().map(|v| HostInput::CreateVat {
            vat: v.id.clone(),
            bundle: v.bundle.clone(),
            params: VatParams { multiplier: v.multiplier },
        });
        let mut workload = vec![create.collect::<Vec<_>>()];
        workload.extend(self.blocks.iter().cloned());
        let options = SeedOptions {
            seed: self.seed,
            vats: self.vats.len(),
            blocks: workload.len() as u64,
            kernel: KernelConfig {
                max_workers_online: self.worker_cap,
                max_cranks_per_block: self.max_cranks_per_block,
                snapshot_interval: self.snapshot_interval,
            },
            crash: self.crash,
            settings: self.settings,
            crashes: self.plan.len(),
            same_block_crash: false,
            point_weights: PointKind::ALL.iter().map(|k| (*k, 1)).collect(),
            io_kinds: self.faults.iter().map(|f| f.fault).collect(),
            io_faults: self.faults.len(),
            stops: 0,
            workload,
        };
        Case {
            seed: self.seed,
            design: design.unwrap_or(self.design),
            options,
            plan: CrashPlan::Explicit(self.plan.clone()),
            faults: FaultPlan::Explicit(self.faults.clone()),
            mutation: self.mutation,
            verbose,
        }
    }

    /// A run of this scenario (verbose) and its timeline, titled with its name.
    pub fn run_pictured(&self, root: &Path) -> (SeedReport, Timeline) {
        let (report, timeline) = run_case_pictured(&self.case(None, true), root);
        (report, timeline.titled(format!("scenario {}, design {}", self.name, self.design)))
    }

    /// Whether a run of this scenario (with its own design) came out as expected.
    pub fn verdict(&self, report: &SeedReport) -> Result<(), String> {
        match (self.expect, &report.failure) {
            (Expect::Passes, None) => Ok(()),
            (Expect::Passes, Some(failure)) => Err(format!("expected to pass, failed: {failure}")),
            (Expect::Fails, None) => Err("expected to fail, passed".into()),
            (Expect::Fails, Some(failure)) => match self.failure {
                Some(kind) if kind != failure.kind => Err(format!("expected a {kind} failure, got: {failure}")),
                _ => Ok(()),
            },
        }
    }

    /// Input events: vats created, inputs, crashes and I/O faults (the size of a reproduction).
    pub fn events(&self) -> usize {
        self.vats.len() + self.blocks.iter().map(Vec::len).sum::<usize>() + self.plan.len() + self.faults.len()
    }

    /// The scenario as TOML.
    pub fn to_toml(&self) -> String {
        let file = ScenarioFile {
            description: self.description.clone(),
            design: Spanned::new(0..0, self.design.name().to_string()),
            seed: self.seed,
            mode: self.crash.mode,
            torn: self.crash.torn,
            worker_cap: self.worker_cap,
            max_cranks_per_block: self.max_cranks_per_block,
            snapshot_interval: self.snapshot_interval,
            expect: self.expect,
            failure: self.failure.map(|k| Spanned::new(0..0, k.name())),
            vats: self.vats.iter().cloned().map(|v| Spanned::new(0..0, v)).collect(),
            blocks: self.blocks.iter().map(|inputs| BlockDecl { inputs: inputs.clone() }).collect(),
            crash: self.plan.iter().map(|c| Spanned::new(0..0, *c)).collect(),
            fault: self.faults.iter().map(|f| Spanned::new(0..0, *f)).collect(),
            sqlite_journal: None,
            sqlite_sync: None,
            lmdb_flags: None,
            host_db: None,
            mutant: self.mutation.map(|m| Spanned::new(0..0, m.name().to_string())),
        };
        let file = self.settings_into(file);
        toml::to_string(&file).expect("scenarios encode")
    }
}

impl Scenario {
    /// `file` with the settings that differ from the store's defaults.
    fn settings_into(&self, mut file: ScenarioFile) -> ScenarioFile {
        let (mine, default) = (self.settings, Settings::default());
        let named = |differs: bool, name: &str| differs.then(|| Spanned::new(0..0, name.to_string()));
        file.sqlite_journal = named(mine.sqlite_journal != default.sqlite_journal, mine.sqlite_journal.name());
        file.sqlite_sync = named(mine.sqlite_sync != default.sqlite_sync, mine.sqlite_sync.name());
        file.lmdb_flags = named(mine.lmdb_flags != default.lmdb_flags, mine.lmdb_flags.name());
        file.host_db = named(mine.host_db != default.host_db, mine.host_db.name());
        file
    }
}

/// Every `*.toml` file under `dir`, sorted by path.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
