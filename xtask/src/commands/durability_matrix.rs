//! `cargo xtask durability-matrix`: every durability setting of SQLite and
//! LMDB, and redb as the host uses it, held against what their own
//! documentation promises.
//!
//! Per setting (the other database at its durable default):
//! 1. the database alone, observed directly: `--seeds` probes in each crash
//!    mode it is judged in ([`sim::probe`]; run in `probe-worker` processes,
//!    since reading a corrupt LMDB environment can kill its reader), the
//!    worst outcome of any being what it did: durable, loses commits, or
//!    corrupts;
//! 2. what the two-database store did with it: `--store-seeds` seeds of
//!    `cargo xtask sim` (passes, or its failure kind and first failing seed);
//! 3. what the documentation promises, quoted ([`sim::promise`]);
//! 4. a verdict: agree or disagree.
//!
//! Exit 0 only when every setting the simulator can observe agrees; one it
//! cannot (LMDB's `MDB_WRITEMAP`) is listed as refused, with why.

use crate::args::{parse_number, usage_error, Designs, RunSpec};
use crate::pool::{jobs_or_cores, run_pool, PoolConfig, SeedSet};
use crate::signals::{self, Interrupted};
use clap::Args;
use serde::Serialize;
use sim::probe::{Behaviour, ProbeDb, ProbeMode, ProbeOutcome, RedbDurability};
use sim::promise::{judged_modes, promise, refused, Promise};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use store::{Design, HostDb, JournalMode, Synchronous};

#[derive(Args, Debug)]
pub struct MatrixArgs {
    /// Probes of each setting in each crash mode (seeds from 0).
    #[arg(long, value_parser = parse_number, default_value = "200")]
    pub seeds: u64,
    /// Seeds of the two-database store per setting.
    #[arg(long, value_parser = parse_number, default_value = "300")]
    pub store_seeds: u64,
    /// Worker processes (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Also write the table, with the documentation quoted, as Markdown.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Also write every row as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Only these settings (`sqlite:JOURNAL:SYNC`, `lmdb:FLAGS`,
    /// `redb:immediate`, `redb:none`; repeatable).
    #[arg(long = "setting", value_parser = ProbeDb::parse)]
    pub settings: Vec<ProbeDb>,
}

impl MatrixArgs {
    /// The settings this run covers.
    fn rows(&self) -> Vec<ProbeDb> {
        match self.settings.is_empty() {
            true => ProbeDb::all(),
            false => self.settings.clone(),
        }
    }
}

/// What the probes of one setting in one mode found.
#[derive(Clone, Debug, Default, Serialize)]
struct ModeResult {
    durable: u64,
    loses_commits: u64,
    corrupts: u64,
    /// The first seed of the worst outcome, and what it was.
    worst_example: Option<String>,
}

impl ModeResult {
    fn add(&mut self, outcome: &ProbeOutcome) {
        let before = self.worst();
        match outcome.behaviour {
            Behaviour::Durable => self.durable += 1,
            Behaviour::LosesCommits => self.loses_commits += 1,
            Behaviour::Corrupts => self.corrupts += 1,
        }
        if self.worst() > before || self.worst_example.is_none() && outcome.behaviour != Behaviour::Durable {
            self.worst_example = Some(describe(outcome));
        }
    }

    fn worst(&self) -> Behaviour {
        match (self.corrupts, self.loses_commits) {
            (0, 0) => Behaviour::Durable,
            (0, _) => Behaviour::LosesCommits,
            _ => Behaviour::Corrupts,
        }
    }

    fn counts(&self) -> String {
        format!("{}/{}/{}", self.durable, self.loses_commits, self.corrupts)
    }
}

fn describe(outcome: &ProbeOutcome) -> String {
    let what = match outcome.behaviour {
        Behaviour::Corrupts => outcome.detail.clone(),
        _ => format!("{} of {} acknowledged commits found", outcome.found, outcome.acknowledged),
    };
    format!("seed {}: crash at {}: {what}", outcome.seed, outcome.crash)
}

/// One row of the matrix.
#[derive(Clone, Debug, Serialize)]
struct Row {
    setting: String,
    /// Per crash mode, what the database alone did.
    modes: BTreeMap<String, ModeResult>,
    /// The worst over the modes it is judged in (`None`: refused).
    observed: Option<Behaviour>,
    store: String,
    promise: Option<String>,
    source: Option<String>,
    allows: Option<Behaviour>,
    states: Option<Behaviour>,
    verdict: String,
}

pub fn run(args: MatrixArgs) -> ExitCode {
    if args.seeds == 0 || args.store_seeds == 0 || args.jobs == Some(0) {
        return usage_error("--seeds, --store-seeds and --jobs must be at least 1");
    }
    let jobs = jobs_or_cores(args.jobs);
    let probes = match run_probes(&args.rows(), args.seeds, jobs) {
        Ok(probes) => probes,
        Err(signal) => return stopped(signal),
    };
    let mut rows = Vec::new();
    for db in args.rows() {
        let store = match store_column(db, args.store_seeds, args.jobs) {
            Ok(store) => store,
            Err(Stop::Interrupted(signal)) => return stopped(signal),
            Err(Stop::Broken(message)) => {
                eprintln!("error: the store's run of {db} is incomplete: {message}");
                return ExitCode::from(2);
            }
        };
        rows.push(row(db, &probes, store));
    }
    print_table(&rows);
    if let Err(message) = write_files(&rows, &args) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let disagree = rows.iter().filter(|r| r.verdict == "DISAGREE").count();
    let refused = rows.iter().filter(|r| r.observed.is_none()).count();
    println!("durability-matrix: {} settings, {disagree} disagree, {refused} refused", rows.len());
    if disagree == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn stopped(signal: Interrupted) -> ExitCode {
    println!("durability-matrix: interrupted by {}", signal.name());
    signal.exit_code()
}

/// The probes each setting gets: the modes it is judged in, and for LMDB
/// also sectors that tear (shown, not judged: LMDB assumes they do not).
fn probe_tasks(rows: &[ProbeDb]) -> Vec<(ProbeDb, ProbeMode)> {
    let mut tasks = Vec::new();
    for db in rows.iter().copied().filter(|db| refused(*db).is_none()) {
        tasks.extend(judged_modes(db).into_iter().map(|mode| (db, mode)));
        if let ProbeDb::Lmdb { .. } | ProbeDb::Redb { .. } = db {
            tasks.push((db, ProbeMode::Torn));
        }
    }
    tasks
}

type Probes = BTreeMap<(ProbeDb, ProbeMode), ModeResult>;

/// Run every probe task on `jobs` threads, each driving worker processes.
fn run_probes(rows: &[ProbeDb], seeds: u64, jobs: usize) -> Result<Probes, Interrupted> {
    let tasks = Arc::new(Mutex::new(probe_tasks(rows)));
    let results: Arc<Mutex<Probes>> = Arc::default();
    let total = tasks.lock().expect("tasks").len();
    println!("durability-matrix: {total} probe runs of {seeds} seeds each, {jobs} jobs");
    let threads: Vec<_> = (0..jobs)
        .map(|_| {
            let (tasks, results) = (tasks.clone(), results.clone());
            std::thread::spawn(move || loop {
                if signals::interrupted().is_some() {
                    return;
                }
                let Some((db, mode)) = tasks.lock().expect("tasks").pop() else { return };
                let result = probe_task(db, mode, seeds);
                results.lock().expect("results").insert((db, mode), result);
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    if let Some(signal) = signals::interrupted() {
        return Err(signal);
    }
    let results = std::mem::take(&mut *results.lock().expect("results"));
    Ok(results)
}

/// The probes of `db` in `mode` over `seeds` seeds, in worker processes; a
/// worker killed by a signal while reading a seed's database makes that seed
/// a corruption, and a new worker goes on after it.
fn probe_task(db: ProbeDb, mode: ProbeMode, seeds: u64) -> ModeResult {
    let mut result = ModeResult::default();
    let mut next = 0;
    // Each restart consumes a seed, so the loop ends.
    while next < seeds && signals::interrupted().is_none() {
        let (outcomes, died) = probe_worker(db, mode, next, seeds - next);
        for outcome in &outcomes {
            result.add(outcome);
        }
        next += outcomes.len() as u64;
        if let Some((seed, status)) = died {
            let detail = format!("reading the database killed its reader ({status})");
            let crash = "(see the worker's seed)".to_string();
            let outcome =
                ProbeOutcome { seed, behaviour: Behaviour::Corrupts, crash, acknowledged: 0, found: 0, detail };
            result.add(&outcome);
            next = seed + 1;
        }
    }
    result
}

/// One worker's outcomes; and the seed it was on when it died, with how.
fn probe_worker(db: ProbeDb, mode: ProbeMode, start: u64, count: u64) -> (Vec<ProbeOutcome>, Option<(u64, String)>) {
    let exe = std::env::current_exe().expect("own executable");
    let mut command = Command::new(exe);
    command.args(["probe-worker", "--setting", &db.word(), "--mode", mode.name()]);
    command.args(["--start", &start.to_string(), "--count", &count.to_string()]);
    command.stdout(Stdio::piped()).stdin(Stdio::null());
    signals::ignored_by(&mut command);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return (Vec::new(), Some((start, format!("could not start: {e}")))),
    };
    let (mut outcomes, mut current) = (Vec::new(), None);
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(seed) = line.strip_prefix("begin ") {
            current = seed.trim().parse().ok();
        } else if let Ok(outcome) = serde_json::from_str::<ProbeOutcome>(&line) {
            current = None;
            outcomes.push(outcome);
        }
        if signals::interrupted().is_some() {
            let _ = child.kill();
            break;
        }
    }
    let status = child.wait().map_or_else(|e| e.to_string(), |s| s.to_string());
    let scratch = std::path::Path::new("/dev/shm").join(format!("swingsim-probe-{}", child.id()));
    let _ = std::fs::remove_dir_all(scratch);
    (outcomes, current.map(|seed| (seed, status)))
}

enum Stop {
    Interrupted(Interrupted),
    Broken(String),
}

/// What the two-database store did with `db`'s setting over `seeds` seeds.
fn store_column(db: ProbeDb, seeds: u64, jobs: Option<usize>) -> Result<String, Stop> {
    if let Some(why) = refused(db) {
        return Ok(format!("refused: {why}"));
    }
    let mut spec = RunSpec { design: Designs(vec![Design::StartPosition]), ..RunSpec::default() };
    match db {
        ProbeDb::Sqlite { journal, sync } => (spec.sqlite_journal, spec.sqlite_sync) = (journal, sync),
        ProbeDb::Lmdb { flags } => {
            (spec.sqlite_journal, spec.sqlite_sync, spec.lmdb_flags) = (JournalMode::Wal, Synchronous::Full, flags)
        }
        // The store's host database; redb's commits there are Immediate.
        ProbeDb::Redb { durability: RedbDurability::Immediate } => spec.host_db = HostDb::Redb,
        ProbeDb::Redb { durability: RedbDurability::None } => {
            return Ok("not run: the host commits redb with Durability::Immediate".into())
        }
    }
    let config = PoolConfig::new(SeedSet::range(0, seeds), spec, jobs);
    let (mut failed, mut first) = (0u64, None::<(u64, String)>);
    let ran = run_pool(&config, |result| {
        if let Some(failure) = &result.failure {
            failed += 1;
            if first.as_ref().is_none_or(|(seed, _)| failure.seed < *seed) {
                first = Some((failure.seed, failure.kind.clone()));
            }
        }
        true
    });
    match ran {
        Ok(Some(signal)) => Err(Stop::Interrupted(signal)),
        Err(message) => Err(Stop::Broken(message)),
        Ok(None) => Ok(match first {
            None => format!("passes ({seeds} seeds)"),
            Some((seed, kind)) => format!("fails: {failed} of {seeds} seeds; first seed {seed}, {kind}"),
        }),
    }
}

fn row(db: ProbeDb, probes: &Probes, store: String) -> Row {
    let mut modes = BTreeMap::new();
    for ((probed, mode), result) in probes {
        if *probed == db {
            modes.insert(mode.name().to_string(), result.clone());
        }
    }
    let observed = refused(db).is_none().then(|| {
        let judged = judged_modes(db);
        judged.iter().filter_map(|m| probes.get(&(db, *m))).map(ModeResult::worst).max().unwrap_or(Behaviour::Durable)
    });
    let promised: Option<Promise> = promise(db);
    let verdict = match (observed, promised) {
        (Some(observed), Some(promised)) if promised.agrees(observed) => "agree",
        (Some(_), Some(_)) => "DISAGREE",
        _ => "refused",
    };
    Row {
        setting: db.to_string(),
        modes,
        observed,
        store,
        promise: promised.map(|p| p.quote.to_string()),
        source: promised.map(|p| p.source.to_string()),
        allows: promised.map(|p| p.allows),
        states: promised.map(|p| p.states),
        verdict: verdict.into(),
    }
}

/// The documented bounds as a person reads them.
fn bounds(row: &Row) -> String {
    match (row.states, row.allows) {
        (Some(states), Some(allows)) if states == allows => states.name().to_string(),
        (Some(states), Some(allows)) => format!("{} (may: {})", states.name(), allows.name()),
        _ => "-".into(),
    }
}

fn modes_cell(row: &Row) -> String {
    let cells: Vec<String> = row.modes.iter().map(|(mode, result)| format!("{mode} {}", result.counts())).collect();
    if cells.is_empty() {
        return "-".into();
    }
    cells.join(", ")
}

fn print_table(rows: &[Row]) {
    println!(
        "setting | alone (durable/loses/corrupts per mode) | observed | documented | verdict | two-database store"
    );
    for row in rows {
        let observed = row.observed.map_or("refused", Behaviour::name);
        println!(
            "{} | {} | {observed} | {} | {} | {}",
            row.setting,
            modes_cell(row),
            bounds(row),
            row.verdict,
            row.store
        );
    }
}

fn write_files(rows: &[Row], args: &MatrixArgs) -> Result<(), String> {
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, markdown(rows, args)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn markdown(rows: &[Row], args: &MatrixArgs) -> String {
    let mut out = format!(
        "Probes per setting and mode: {} seeds; the two-database store: {} seeds. Counts are durable/loses \
         commits/corrupts.\n\n| setting | the database alone | observed | documented | verdict | the two-database \
         store | the documentation |\n|---|---|---|---|---|---|---|\n",
        args.seeds, args.store_seeds
    );
    for row in rows {
        let observed = row.observed.map_or("refused", Behaviour::name);
        let quote = match (&row.promise, &row.source) {
            (Some(quote), Some(source)) => format!("\"{quote}\" ({source})"),
            _ => row.store.clone(),
        };
        out += &format!(
            "| {} | {} | {observed} | {} | {} | {} | {} |\n",
            row.setting,
            modes_cell(row),
            bounds(row),
            row.verdict,
            row.store,
            quote.replace('|', "\\|")
        );
    }
    out
}
