//! Reports for people and dashboards: the closing lines of a run, the JSON
//! summary and JUnit XML (one test case per failing seed, plus one for the
//! run as a whole).

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use sim::summary::{FailureRecord, Summary};
use std::path::Path;

/// One JUnit test case: a failing seed, a scenario, or the run.
pub struct JunitCase {
    pub name: String,
    /// `None`: passed.
    pub failure: Option<(String, String)>,
}

impl JunitCase {
    pub fn failing_seed(failure: &FailureRecord) -> JunitCase {
        let name = format!("seed {} design {}", failure.seed, failure.design);
        let mut text = failure.message.clone();
        failure.detail.iter().for_each(|line| text += &format!("\n  {line}"));
        if let Some(point) = &failure.point {
            text += &format!("\nafter crash at {point}");
        }
        if let Some(fault) = &failure.fault {
            text += &format!("\nafter I/O fault {fault}");
        }
        text += &format!("\nrepro: {}", failure.repro);
        JunitCase { name, failure: Some((failure.kind.clone(), text)) }
    }

    /// The run as a whole: fails when any seed did, or when a signal stopped it.
    pub fn whole_run(summary: &Summary) -> JunitCase {
        let failure = match (&summary.interrupted, summary.failed) {
            (Some(_), _) => Some(("interrupted".to_string(), summary.line())),
            (None, 0) => None,
            (None, _) => Some(("failed".to_string(), summary.line())),
        };
        JunitCase { name: summary.line(), failure }
    }
}

/// Write a JUnit XML file with one suite named `suite`.
pub fn write_junit(path: &Path, suite: &str, cases: Vec<JunitCase>) -> Result<(), String> {
    let mut test_suite = TestSuite::new(suite);
    for case in cases {
        let status = match &case.failure {
            None => TestCaseStatus::success(),
            Some((kind, text)) => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(kind.as_str()).set_description(text.as_str());
                status
            }
        };
        let mut test_case = TestCase::new(case.name, status);
        test_case.set_classname(suite);
        test_suite.add_test_case(test_case);
    }
    let mut report = Report::new("swingsim");
    report.add_test_suite(test_suite);
    let xml = report.to_string().map_err(|e| format!("JUnit: {e}"))?;
    std::fs::write(path, xml).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Write the JSON summary.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).expect("reports encode");
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The JUnit cases of a seed run.
pub fn seed_cases(summary: &Summary) -> Vec<JunitCase> {
    let mut cases: Vec<JunitCase> = summary.failures.iter().map(JunitCase::failing_seed).collect();
    cases.push(JunitCase::whole_run(summary));
    cases
}

/// The closing lines of a run: crashes by point, faults by kind, each failure
/// with its repro line, the trace digest, and last the one-line summary.
pub fn print_summary(summary: &Summary) {
    if let Some(signal) = &summary.interrupted {
        println!("interrupted by {signal}: the summary covers the {} seeds completed", summary.seeds);
    }
    for (kind, count) in &summary.crashes_by_point {
        println!("  crashes at {kind}: {count}");
    }
    for (kind, count) in &summary.faults_by_kind {
        let seeds = summary.seeds_by_fault.get(kind).copied().unwrap_or(0);
        println!("  faults {kind}: {count} (in {seeds} seeds)");
    }
    let skips = &summary.skips;
    println!(
        "  I/O faults absorbed (block acknowledged, then survived a power cut): {}; seeded events skipped \
         (an earlier event changed the run's course): {} crashes, {} I/O faults",
        skips.faults_absorbed, skips.crashes_skipped, skips.faults_skipped
    );
    print_coverage(summary);
    for failure in &summary.failures {
        println!(
            "FAILED seed {} design {}: {} at block {}: {}",
            failure.seed, failure.design, failure.kind, failure.height, failure.message
        );
        failure.detail.iter().for_each(|line| println!("    {line}"));
        if let Some(point) = &failure.point {
            println!("  after crash at {point}");
        }
        if let Some(fault) = &failure.fault {
            println!("  after I/O fault {fault}");
        }
        println!("repro: {}", failure.repro);
    }
    println!("trace digest {}", summary.trace_digest);
    println!("{}", summary.line());
}

/// How many seeds reached each rare state of the coverage list.
fn print_coverage(summary: &Summary) {
    println!("  coverage of rare states (seeds that reached each; sim::coverage):");
    for state in sim::coverage::states() {
        let seeds = summary.coverage.get(&state.name).copied().unwrap_or(0);
        let never = if seeds == 0 { "   <- never reached" } else { "" };
        println!("    {}: {seeds}{never}", state.name);
    }
    for (name, why) in sim::coverage::left_out() {
        println!("    ({name}: left off the list: {why})");
    }
}

/// `--require-coverage`: whether every state on the coverage list was
/// reached; each one that was not is named, with why it matters.
pub fn coverage_complete(summary: &Summary) -> bool {
    let missing = summary.not_covered();
    for state in &missing {
        println!("NOT COVERED {}: {}", state.name, state.reason);
    }
    if !missing.is_empty() {
        println!(
            "coverage: {} of {} rare states never reached in {} seeds (--require-coverage)",
            missing.len(),
            summary.coverage.len(),
            summary.seeds
        );
    }
    missing.is_empty()
}

/// A failure as the run finds it (the summary repeats it in full).
pub fn print_failure(failure: &FailureRecord) {
    println!("FAILED seed {} design {}: {}; repro: {}", failure.seed, failure.design, failure.kind, failure.repro);
}

/// `--json` (the summary) and `--junit` of a run named `suite`.
pub fn write_reports(summary: &Summary, json: Option<&Path>, junit: Option<&Path>, suite: &str) -> Result<(), String> {
    if let Some(path) = json {
        write_json(path, summary)?;
    }
    if let Some(path) = junit {
        write_junit(path, suite, seed_cases(summary))?;
    }
    Ok(())
}
