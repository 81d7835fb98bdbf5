//! `cargo xtask shrink --seed S --design D [--mutant M]`: shrink a failing
//! seed to a small scenario and write it under `scenarios/regressions/`.

use crate::args::{parse_number, usage_error, RunSpec};
use crate::repo_root;
use crate::signals;
use clap::Args;
use sim::run::scratch_root;
use sim::shrink::shrink;
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
    let shrunk = match shrink(&args.spec.case(args.seed, design, false), &root, args.max_runs, &stop) {
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
    let mut scenario = shrunk.scenario;
    let mutant = args.spec.mutant.map_or(String::new(), |m| format!(" --mutant {m}"));
    scenario.description = format!(
        "Shrunk by `cargo xtask shrink --seed {} --design {design}{mutant}` from {} events to {}: fails with {}.",
        args.seed, shrunk.events_before, shrunk.events_after, shrunk.kind
    );
    let dir = args.out.unwrap_or_else(|| repo_root().join("scenarios").join("regressions"));
    let name = args.spec.mutant.map_or(design.name().to_string(), |m| m.name().to_string());
    let path = dir.join(format!("{name}-seed-{}.toml", args.seed));
    let written = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, scenario.to_toml()));
    if let Err(error) = written {
        eprintln!("error: cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    println!("shrunk seed {} design {design}: {} events -> {}", args.seed, shrunk.events_before, shrunk.events_after);
    println!("  {} candidate runs in {seconds:.1} s", shrunk.runs);
    println!("  fails with: {}", shrunk.message);
    println!("wrote {}", path.display());
    println!("replay: cargo xtask scenario {}", path.file_stem().unwrap_or_default().to_string_lossy());
    ExitCode::SUCCESS
}
