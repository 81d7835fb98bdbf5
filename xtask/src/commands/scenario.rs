//! `cargo xtask scenario [NAME|--all]`: run named scenarios with their story.

use crate::args::usage_error;
use crate::repo_root;
use crate::signals;
use clap::Args;
use sim::run::{run_case, scratch_root};
use sim::scenario::{files_under, load, Scenario};
use std::path::PathBuf;
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
    let (ran, wrong) = run_all(&scenarios, args.quiet);
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

/// Run `scenarios` until done or a signal; how many ran, and how many did
/// not come out as expected.
fn run_all(scenarios: &[Scenario], quiet: bool) -> (usize, usize) {
    let root = scratch_root().0;
    let (mut ran, mut wrong) = (0, 0);
    for scenario in scenarios {
        if signals::interrupted().is_some() {
            break;
        }
        ran += 1;
        let report = run_case(&scenario.case(None, !quiet), &root);
        if !quiet {
            println!("== {} ({})", scenario.name, scenario.description);
            report.trace.lines().iter().for_each(|line| println!("  {line}"));
        }
        match scenario.verdict(&report) {
            Ok(()) => println!("ok    {} ({:?} as expected)", scenario.name, scenario.expect),
            Err(message) => {
                wrong += 1;
                println!("WRONG {}: {message}", scenario.name);
            }
        }
    }
    (ran, wrong)
}
