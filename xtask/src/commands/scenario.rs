//! `cargo xtask scenario [NAME|--all]`: run named scenarios with their story;
//! `--timeline` draws each one's timeline.

use crate::args::usage_error;
use crate::repo_root;
use crate::signals;
use clap::Args;
use sim::run::{run_case, scratch_root, SeedReport};
use sim::scenario::{files_under, load, Scenario};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ScenarioArgs {
    /// Scenario names (file names without .toml), or a path to a file.
    pub names: Vec<String>,
    /// Run every scenario under scenarios/.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Print only the verdicts, not the stories.
    #[arg(long)]
    pub quiet: bool,
    /// Draw each scenario's timeline: into this SVG file for one scenario,
    /// into this directory (as NAME.svg) for several. The pictures of
    /// docs/findings.md: `cargo xtask scenario erase-seed-0 length-zero-seed-2
    /// ram-buffer-seed-2 --timeline docs/timelines`.
    #[arg(long)]
    pub timeline: Option<PathBuf>,
}

fn find(name: &str, all: &[PathBuf]) -> Result<PathBuf, String> {
    let as_path = PathBuf::from(name);
    if as_path.is_file() {
        return Ok(as_path);
    }
    let found: Vec<&PathBuf> = all.iter().filter(|p| p.file_stem().is_some_and(|s| s == name)).collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!("no scenario named `{name}` under scenarios/")),
        _ => Err(format!("`{name}` names several scenarios: {found:?}")),
    }
}

pub fn run(args: ScenarioArgs) -> ExitCode {
    let all = files_under(&repo_root().join("scenarios"));
    let paths: Result<Vec<PathBuf>, String> = match (args.all, args.names.is_empty()) {
        (true, _) => Ok(all.clone()),
        (false, true) => Err("name a scenario, or --all".into()),
        (false, false) => args.names.iter().map(|n| find(n, &all)).collect(),
    };
    let scenarios: Result<Vec<Scenario>, String> = paths.and_then(|p| p.iter().map(|p| load(p)).collect());
    let scenarios = match scenarios {
        Ok(scenarios) => scenarios,
        Err(message) => return usage_error(message),
    };
    let (ran, wrong) = match run_all(&scenarios, args.quiet, args.timeline.as_deref()) {
        Ok(counts) => counts,
        Err(message) => return usage_error(message),
    };
    let interrupted = signals::interrupted();
    let stopped = interrupted
        .map_or(String::new(), |s| format!(" (interrupted by {}: {} not run)", s.name(), scenarios.len() - ran));
    println!("scenarios: {ran} run, {} as expected, {wrong} not{stopped}", ran - wrong);
    if let Some(signal) = interrupted {
        signal.exit_code()
    } else if wrong > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Run `scenarios` until done or a signal, drawing their timelines into
/// `timeline` if asked; how many ran, and how many did not come out as expected.
fn run_all(scenarios: &[Scenario], quiet: bool, timeline: Option<&Path>) -> Result<(usize, usize), String> {
    let root = scratch_root().0;
    let (mut ran, mut wrong) = (0, 0);
    for scenario in scenarios {
        if signals::interrupted().is_some() {
            break;
        }
        ran += 1;
        let report = match timeline {
            Some(path) => run_drawn(scenario, path, scenarios.len() > 1)?,
            None => run_case(&scenario.case(None, !quiet), &root),
        };
        if !quiet {
            println!("== {} ({})", scenario.name, scenario.description);
            report.trace.lines().iter().for_each(|line| println!("  {line}"));
            println!("  rare states reached (sim::coverage): {}", report.coverage.join(", "));
        }
        match scenario.verdict(&report) {
            Ok(()) => println!("ok    {} ({:?} as expected)", scenario.name, scenario.expect),
            Err(message) => {
                wrong += 1;
                println!("WRONG {}: {message}", scenario.name);
            }
        }
    }
    Ok((ran, wrong))
}

/// Run `scenario` with its timeline, drawn into `path` (a directory when `several`).
fn run_drawn(scenario: &Scenario, path: &Path, several: bool) -> Result<SeedReport, String> {
    let (report, timeline) = scenario.run_pictured(&scratch_root().0);
    let file = match several {
        true => path.join(format!("{}.svg", scenario.name)),
        false => path.to_path_buf(),
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&file, timeline.svg()).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    println!("timeline: {}", file.display());
    Ok(report)
}
