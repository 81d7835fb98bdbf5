//! `cargo xtask soak --minutes M [--seed-base B] [--shard K/N]`: fresh seeds until
//! the time is up, every design expected to pass, the fault mode chosen per seed;
//! each failure shrunk into a scenario file in the output folder, with its repro
//! and its timeline (`NAME.svg` beside `NAME.toml`); `--report DIR` writes a bug
//! report per failure, `--require-coverage` fails a soak that missed a rare state.
//! `--shard K/N` lets N machines share one soak with no overlap and no coordination.

use crate::args::{parse_number, usage_error, Designs, RunSpec, Shard};
use crate::bug_report::{self, Failed};
use crate::pool::{run_pool, PoolConfig};
use crate::report::{self, coverage_complete, print_failure, print_summary};
use crate::signals::{self, Interrupted};
use clap::Args;
use sim::run::scratch_root;
use sim::shrink::{shrink, Shrunk};
use sim::summary::{FailureRecord, Summary};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use store::Design;

#[derive(Args, Debug)]
pub struct SoakArgs {
    #[arg(long)]
    pub minutes: f64,
    /// First seed (default: a base from today's date, printed).
    #[arg(long, value_parser = parse_number)]
    pub seed_base: Option<u64>,
    #[arg(long, value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// `safe` (generation, start-position, unified), `all`, or one design.
    #[arg(long, default_value = "safe")]
    pub design: String,
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Where shrunk failures, summary.json and summary.md go.
    #[arg(long, default_value = "target/soak")]
    pub out: PathBuf,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Shrink at most this many failures (the first by seed); the rest keep their repro line.
    #[arg(long, default_value = "5")]
    pub max_shrink: usize,
    /// Fail when the soak never reached a state of the coverage list (sim::coverage), naming it.
    #[arg(long)]
    pub require_coverage: bool,
    /// Write a bug report (Markdown, timelines as SVG) per failure into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// With --report: report at most this many failures (the first by seed;
    /// default: every failure). The first --max-shrink of them are shrunk.
    #[arg(long)]
    pub max_reports: Option<usize>,
}

/// What a soak covered, besides the summary: which seeds, exactly.
#[derive(serde::Serialize)]
struct SoakSummary<'a> {
    #[serde(flatten)]
    summary: &'a Summary,
    seed_base: u64,
    shard: String,
    /// Seeds completed, as inclusive runs `[first, last]` of every `stride`-th seed.
    seed_runs: Vec<(u64, u64)>,
    stride: u64,
    scenarios: Vec<String>,
}

/// Today's default seed base: days since the epoch times 10^9 (disjoint per day).
fn seed_base_today() -> u64 {
    let days = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400);
    days * 1_000_000_000
}

fn designs(text: &str) -> Result<Designs, String> {
    match text {
        "safe" => Ok(Designs(vec![Design::Generation, Design::StartPosition, Design::Unified])),
        other => Designs::parse(other),
    }
}

pub fn run(args: SoakArgs) -> ExitCode {
    let designs = match designs(&args.design) {
        Ok(designs) if args.minutes > 0.0 && args.jobs != Some(0) => designs,
        Ok(_) => return usage_error("--minutes must be positive and --jobs at least 1"),
        Err(message) => return usage_error(message),
    };
    let base = args.seed_base.unwrap_or_else(seed_base_today);
    let shard = args.shard.unwrap_or(Shard::ALL);
    println!(
        "soak: seed base {base} shard {}/{} designs {} for {} min",
        shard.index, shard.count, args.design, args.minutes
    );
    let started = Instant::now();
    let spec = RunSpec { design: designs, ..RunSpec::default() };
    let config = PoolConfig {
        deadline: Some(started + Duration::from_secs_f64(args.minutes * 60.0)),
        ..PoolConfig::new(shard.seeds(base, None), spec.clone(), args.jobs)
    };
    let mut summary = Summary::new(spec.design.0.iter().map(|d| d.name().to_string()).collect());
    let mut completed = std::collections::BTreeSet::new();
    let ran = run_pool(&config, |result| {
        if let Some(failure) = &result.failure {
            print_failure(failure);
        }
        completed.insert(result.seed);
        summary.add(result);
        true
    });
    let interrupted = match ran {
        Ok(interrupted) => interrupted,
        Err(message) => return usage_error(format!("the soak is incomplete: {message}")),
    };
    summary.finish(started.elapsed().as_secs_f64());
    // Interrupted, the soak shrinks nothing: every failure keeps its repro line.
    let shrunk = match interrupted {
        None => shrink_failures(&summary, &spec, args.max_shrink),
        Some(_) => Vec::new(),
    };
    let scenarios = save_scenarios(&shrunk, &args.out);
    summary.interrupted = signals::interrupted().map(Interrupted::name);
    print_summary(&summary);
    let soak = SoakSummary {
        summary: &summary,
        seed_base: base,
        shard: format!("{}/{}", shard.index, shard.count),
        seed_runs: runs(&completed, shard.count),
        stride: shard.count,
        scenarios,
    };
    if let Err(message) = write(&args, &soak) {
        return usage_error(message);
    }
    // Reports come after the summary files: a report that cannot be written
    // must not lose the soak's record.
    if let (Some(dir), None) = (&args.report, signals::interrupted()) {
        let max = args.max_reports.unwrap_or(usize::MAX);
        if let Err(message) = report_failures(&summary, &spec, &shrunk, dir, max) {
            return usage_error(message);
        }
    }
    let covered = signals::interrupted().is_some() || !args.require_coverage || coverage_complete(&summary);
    match (signals::interrupted(), summary.failed) {
        (Some(signal), _) => signal.exit_code(),
        (None, 0) if covered => ExitCode::SUCCESS,
        (None, _) => ExitCode::from(1),
    }
}

/// The first `max` failures by seed, each shrunk (a signal stops the
/// shrinking), with the seed it came from.
fn shrink_failures(summary: &Summary, spec: &RunSpec, max: usize) -> Vec<(u64, Design, Shrunk)> {
    let mut shrunk = Vec::new();
    let root = scratch_root().0;
    let stop = || signals::interrupted().is_some();
    for failure in summary.failures.iter().take(max) {
        let Ok(design) = failure.design.parse::<Design>() else { continue };
        if stop() || !bug_report::rerunnable(failure) {
            continue;
        }
        let Ok(mut one) = shrink(&spec.case(failure.seed, design, false), &root, 2000, &stop) else {
            println!("  seed {} did not fail again when run alone: {}", failure.seed, failure.repro);
            continue;
        };
        one.scenario.description = format!("Soak failure, shrunk from `{}`: {}", failure.repro, one.message);
        println!("  shrunk seed {} to {} events", failure.seed, one.events_after);
        shrunk.push((failure.seed, design, one));
    }
    shrunk
}

/// Each shrunk failure as a scenario file under `out`, its timeline beside
/// it (`NAME.svg`); the scenario files written.
fn save_scenarios(shrunk: &[(u64, Design, Shrunk)], out: &Path) -> Vec<String> {
    let root = scratch_root().0;
    let mut written = Vec::new();
    for (seed, design, one) in shrunk {
        let path = out.join(format!("{design}-seed-{seed}.toml"));
        let (_, timeline) = one.scenario.run_pictured(&root);
        let saved = std::fs::create_dir_all(out)
            .and_then(|_| std::fs::write(&path, one.scenario.to_toml()))
            .and_then(|_| std::fs::write(path.with_extension("svg"), timeline.svg()));
        match saved {
            Ok(()) => {
                println!("  {}: {} events, timeline beside it", path.display(), one.events_after);
                written.push(path.display().to_string());
            }
            Err(error) => eprintln!("error: cannot write {}: {error}", path.display()),
        }
    }
    written
}

/// `--report`: a bug report for each of the first `max` failures, with its
/// shrunk scenario when it has one (a signal stops the reporting).
fn report_failures(
    summary: &Summary,
    spec: &RunSpec,
    shrunk: &[(u64, Design, Shrunk)],
    dir: &Path,
    max: usize,
) -> Result<(), String> {
    let commit = bug_report::commit();
    for failure in summary.failures.iter().take(max) {
        if signals::interrupted().is_some() {
            break;
        }
        let design: Design = failure.design.parse()?;
        let failed = Failed { failure, spec, design, shrunk: shrunk_of(failure, design, shrunk) };
        println!("report: {}", bug_report::write(dir, &failed, &commit)?.display());
    }
    if summary.failures.len() > max {
        println!("report: {} more failures not reported (--max-reports {max})", summary.failures.len() - max);
    }
    Ok(())
}

/// The shrunk scenario of `failure`, or why it has none.
fn shrunk_of<'a>(
    failure: &FailureRecord,
    design: Design,
    shrunk: &'a [(u64, Design, Shrunk)],
) -> Result<&'a Shrunk, String> {
    let found = shrunk.iter().find(|(seed, d, _)| *seed == failure.seed && *d == design).map(|(_, _, s)| s);
    found.ok_or_else(|| "not shrunk (beyond --max-shrink, or it did not fail again alone)".into())
}

/// Seeds as runs of consecutive shard members.
fn runs(completed: &std::collections::BTreeSet<u64>, stride: u64) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &seed in completed {
        match runs.last_mut() {
            Some((_, last)) if *last + stride == seed => *last = seed,
            _ => runs.push((seed, seed)),
        }
    }
    runs
}

/// `summary.json` and `summary.md` in `--out`, and `--json`, `--junit`.
fn write(args: &SoakArgs, soak: &SoakSummary) -> Result<(), String> {
    let summary = soak.summary;
    let markdown = format!(
        "### Soak shard {}\n\n{}\n\nseed base {}, seeds run: {:?}\n\n{}\n",
        soak.shard,
        summary.line(),
        soak.seed_base,
        soak.seed_runs,
        summary.failures.iter().map(|f| format!("- `{}`: {} {}\n", f.repro, f.kind, f.message)).collect::<String>(),
    );
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    report::write_json(&args.out.join("summary.json"), soak)?;
    std::fs::write(args.out.join("summary.md"), markdown).map_err(|e| e.to_string())?;
    if let Some(path) = &args.json {
        report::write_json(path, soak)?;
    }
    if let Some(path) = &args.junit {
        report::write_junit(path, "soak", report::seed_cases(summary))?;
    }
    Ok(())
}
