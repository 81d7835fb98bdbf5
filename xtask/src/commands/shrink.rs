//! `cargo xtask shrink --seed S --design D [--mutant M]`: shrink a failing
//! seed to a small scenario and write it under `scenarios/regressions/`;
//! `--timeline` draws the scenario's timeline, `--report` writes the
//! failure's bug report.

use crate::args::{parse_number, usage_error, RunSpec};
use crate::bug_report::{self, Failed};
use crate::repo_root;
use crate::signals;
use crate::unit;
use clap::Args;
use sim::run::scratch_root;
use sim::shrink::{shrink, Shrunk};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use store::Design;

#[derive(Args, Debug)]
pub struct ShrinkArgs {
    #[arg(long, value_parser = parse_number)]
    pub seed: u64,
    /// The seed's design, fault settings and mutant, as `sim` takes them (one
    /// design; no exhaustive or determinism run: a scenario records neither).
    #[command(flatten)]
    pub spec: RunSpec,
    /// At most this many candidate runs.
    #[arg(long, default_value = "2000")]
    pub max_runs: u64,
    /// Where to write the scenario (default: scenarios/regressions/ of the repository).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Draw the shrunk scenario's timeline into this SVG file.
    #[arg(long)]
    pub timeline: Option<PathBuf>,
    /// Write the failure's bug report (Markdown, timelines as SVG) into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// The one design a shrink runs; `Err` for what a scenario cannot record.
fn validate(spec: &RunSpec) -> Result<Design, String> {
    spec.validate()?;
    if spec.exhaustive || spec.check_determinism {
        return Err("shrink takes no --exhaustive or --check-determinism".into());
    }
    match spec.design.0[..] {
        [design] => Ok(design),
        _ => Err("shrink takes one --design".into()),
    }
}

pub fn run(args: ShrinkArgs) -> ExitCode {
    let design = match validate(&args.spec) {
        Ok(design) => design,
        Err(message) => return usage_error(message),
    };
    let (root, _) = scratch_root();
    let started = Instant::now();
    let stop = || signals::interrupted().is_some();
    let mut shrunk = match shrink(&args.spec.case(args.seed, design, false), &root, args.max_runs, &stop) {
        Ok(shrunk) => shrunk,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(1);
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    if let Some(signal) = signals::interrupted() {
        println!(
            "shrink interrupted by {}: {} events -> {} so far, after {} candidate runs in {seconds:.1} s; nothing written",
            signal.name(),
            shrunk.events_before,
            shrunk.events_after,
            shrunk.runs
        );
        return signal.exit_code();
    }
    let mutant = args.spec.mutant.map_or(String::new(), |m| format!(" --mutant {m}"));
    shrunk.scenario.description = format!(
        "Shrunk by `cargo xtask shrink --seed {} --design {design}{mutant}` from {} events to {}: fails with {}.",
        args.seed, shrunk.events_before, shrunk.events_after, shrunk.kind
    );
    let dir = args.out.clone().unwrap_or_else(|| repo_root().join("scenarios").join("regressions"));
    let name = args.spec.mutant.map_or(design.name().to_string(), |m| m.name().to_string());
    let path = dir.join(format!("{name}-seed-{}.toml", args.seed));
    let written = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, shrunk.scenario.to_toml()));
    if let Err(error) = written {
        eprintln!("error: cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    println!("shrunk seed {} design {design}: {} events -> {}", args.seed, shrunk.events_before, shrunk.events_after);
    println!("  {} candidate runs in {seconds:.1} s", shrunk.runs);
    println!("  fails with: {}", shrunk.message);
    println!("wrote {}", path.display());
    println!("replay: cargo xtask scenario {}", path.file_stem().unwrap_or_default().to_string_lossy());
    match draw_and_report(&args, design, &shrunk) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// `--timeline` and `--report` for the shrunk failure.
fn draw_and_report(args: &ShrinkArgs, design: Design, shrunk: &Shrunk) -> Result<(), String> {
    let root = scratch_root().0;
    if let Some(path) = &args.timeline {
        let (_, timeline) = shrunk.scenario.run_pictured(&root);
        std::fs::write(path, timeline.svg()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("timeline: {}", path.display());
    }
    let Some(dir) = &args.report else { return Ok(()) };
    let spec = args.spec.with_design(design);
    let seed = unit::run(&spec, args.seed, design, &root, false);
    let failure = seed.result.failure.ok_or("the seed passed when run again for its report")?;
    let failed = Failed { failure: &failure, spec: &spec, design, shrunk: Ok(shrunk) };
    println!("report: {}", bug_report::write(dir, &failed, &bug_report::commit())?.display());
    Ok(())
}
