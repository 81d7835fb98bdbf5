//! `cargo xtask soak --minutes M [--seed-base B] [--shard K/N]`: fresh seeds until
//! the time is up, every design expected to pass, the fault mode chosen per seed;
//! each failure shrunk into a scenario file in the output folder, with its repro.
//! `--shard K/N` lets N machines share one soak with no overlap and no coordination.

use crate::pool::{run_pool, PoolConfig};
use crate::report;
use crate::sim::{parse_designs, parse_number, parse_shard, print_summary, Shard};
use clap::Args;
use sim::options::Flags;
use sim::run::{scratch_root, Case, SeedConfig};
use sim::shrink::shrink;
use sim::summary::Summary;
use std::path::PathBuf;
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
    #[arg(long, value_parser = parse_shard)]
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

fn designs(text: &str) -> Result<Vec<Design>, String> {
    match text {
        "safe" => Ok(vec![Design::Generation, Design::StartPosition, Design::Unified]),
        other => parse_designs(other),
    }
}

pub fn run(args: SoakArgs) -> ExitCode {
    let designs = match designs(&args.design) {
        Ok(designs) if args.minutes > 0.0 && args.jobs != Some(0) => designs,
        Ok(_) => return usage("--minutes must be positive and --jobs at least 1".into()),
        Err(message) => return usage(message),
    };
    let base = args.seed_base.unwrap_or_else(seed_base_today);
    let shard = args.shard.unwrap_or(Shard { index: 1, count: 1 });
    let seeds = Shard::seeds(Some(shard), base, None);
    println!(
        "soak: seed base {base} shard {}/{} designs {} for {} min",
        shard.index, shard.count, args.design, args.minutes
    );
    let started = Instant::now();
    let config = PoolConfig {
        deadline: Some(started + Duration::from_secs_f64(args.minutes * 60.0)),
        ..PoolConfig::new(seeds, designs.clone(), args.jobs)
    };
    let mut summary = Summary::new(designs.iter().map(|d| d.name().to_string()).collect());
    let mut completed = std::collections::BTreeSet::new();
    let ran = run_pool(&config, |result| {
        if let Some(failure) = &result.failure {
            println!(
                "FAILED seed {} design {}: {}; repro: {}",
                failure.seed, failure.design, failure.kind, failure.repro
            );
        }
        completed.insert(result.seed);
        summary.add(result);
        true
    });
    if let Err(message) = ran {
        return usage(format!("the soak is incomplete: {message}"));
    }
    summary.finish(started.elapsed().as_secs_f64());
    let scenarios = shrink_failures(&summary, &args.out, args.max_shrink);
    print_summary(&summary);
    finish(&args, &summary, base, shard, &completed, scenarios)
}

fn usage(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Shrink every failure into a scenario file under `out`.
fn shrink_failures(summary: &Summary, out: &std::path::Path, max: usize) -> Vec<String> {
    let mut written = Vec::new();
    let root = scratch_root().0;
    for failure in summary.failures.iter().take(max) {
        let Ok(design) = failure.design.parse::<Design>() else { continue };
        let flags = Flags::default();
        let case = Case::from_seed(&SeedConfig { seed: failure.seed, design, flags, verbose: false });
        let Ok(shrunk) = shrink(&case, &root, 2000) else {
            println!("  seed {} did not fail again when run alone: {}", failure.seed, failure.repro);
            continue;
        };
        let mut scenario = shrunk.scenario;
        scenario.description = format!("Soak failure, shrunk from `{}`: {}", failure.repro, shrunk.message);
        let path = out.join(format!("{design}-seed-{}.toml", failure.seed));
        let saved = std::fs::create_dir_all(out).and_then(|_| std::fs::write(&path, scenario.to_toml()));
        match saved {
            Ok(()) => {
                println!("  shrunk seed {} to {} events: {}", failure.seed, shrunk.events_after, path.display());
                written.push(path.display().to_string());
            }
            Err(error) => eprintln!("error: cannot write {}: {error}", path.display()),
        }
    }
    written
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

fn finish(
    args: &SoakArgs,
    summary: &Summary,
    base: u64,
    shard: Shard,
    completed: &std::collections::BTreeSet<u64>,
    scenarios: Vec<String>,
) -> ExitCode {
    let soak = SoakSummary {
        summary,
        seed_base: base,
        shard: format!("{}/{}", shard.index, shard.count),
        seed_runs: runs(completed, shard.count),
        stride: shard.count,
        scenarios,
    };
    let markdown = format!(
        "### Soak shard {}\n\n{}\n\nseed base {base}, seeds run: {:?}\n\n{}\n",
        soak.shard,
        summary.line(),
        soak.seed_runs,
        summary.failures.iter().map(|f| format!("- `{}`: {} {}\n", f.repro, f.kind, f.message)).collect::<String>(),
    );
    let written = std::fs::create_dir_all(&args.out)
        .map_err(|e| e.to_string())
        .and_then(|_| report::write_json(&args.out.join("summary.json"), &soak))
        .and_then(|_| std::fs::write(args.out.join("summary.md"), markdown).map_err(|e| e.to_string()))
        .and_then(|_| args.json.as_deref().map_or(Ok(()), |p| report::write_json(p, &soak)))
        .and_then(|_| {
            args.junit.as_deref().map_or(Ok(()), |p| report::write_junit(p, "soak", report::seed_cases(summary)))
        });
    if let Err(message) = written {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
