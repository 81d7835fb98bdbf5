//! `cargo xtask sim` as a user runs it: exit codes, failures with repro lines,
//! the JSON summary, and determinism across processes and job counts.

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().expect("xtask runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn line_starting(text: &str, prefix: &str) -> String {
    text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` line in:\n{text}")).to_string()
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    let cases: &[&[&str]] = &[
        &["sim", "--design", "nope"],
        &["sim", "--mode", "meteor"],
        &["sim", "--seed", "12x"],
        &["sim", "--seed", "0xZZ"],
        &["sim", "--seeds", "0"],
        &["sim", "--jobs", "0"],
        &["sim", "--torn", "--mode", "process-crash"],
        &["sim", "--seed", "1", "--seeds", "5"],
        &["sim", "--faults", "meteor"],
        &["sim", "--faults", "fsync-eio,"],
        &["sim", "--sqlite-journal", "nope"],
        &["sim", "--sqlite-sync", "fast"],
        &["sim", "--lmdb-flags", "writemap"],
        &["sim", "--seeds", "2", "--lmdb-flags", "writemap-mapasync"],
        &["sim", "--seeds", "2", "--timeline", "t.svg"],
        &["sim", "--seed", "1", "--design", "erase,unified", "--timeline", "t.svg"],
        &["sim", "--seed", "1", "--exhaustive", "--timeline", "t.svg"],
    ];
    for args in cases {
        let output = xtask(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("error"), "{args:?}: no error message: {stderr}");
    }
}

#[test]
fn misbehaving_seeds_fail_alone_and_print_their_repro() {
    let args = ["sim", "--seeds", "6", "--jobs", "2", "--seed-timeout-secs", "3"];
    let output =
        xtask(&[&args[..], &["--misbehave", "1:abort", "--misbehave", "2:hang", "--misbehave", "4:panic"]].concat());
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stdout(&output);
    assert!(text.trim_end().ends_with("seeds/s"), "last line is the summary:\n{text}");
    assert!(line_starting(&text, "sim: 6 seeds, 3 failed").contains("recoveries checked"));
    for (seed, why) in [(1, "worker process died"), (2, "hang"), (4, "injected panic")] {
        assert!(text.contains(&format!("repro: cargo xtask sim --seed {seed} --design start-position")), "{text}");
        assert!(text.lines().any(|l| l.contains(&format!("seed {seed} ")) && l.contains(why)), "seed {seed}: {text}");
    }
}

#[test]
fn json_summary_has_the_documented_keys() {
    let path = std::env::temp_dir().join(format!("xtask-cli-{}.json", std::process::id()));
    let output = xtask(&["sim", "--seeds", "4", "--design", "erase", "--json", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "erase fails within 4 seeds: {output:?}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(summary["seeds"], 4);
    assert!(summary["failed"].as_u64().unwrap() >= 1);
    for kind in ["sqlite-sync", "lmdb-sync", "point-a", "point-b", "crank"] {
        assert!(summary["crashes_by_point"][kind].is_u64(), "crashes_by_point.{kind}");
    }
    for kind in ["fsync-eio", "enospc", "write-eio", "torn"] {
        assert!(summary["faults_by_kind"][kind].is_u64(), "faults_by_kind.{kind}");
        assert!(summary["seeds_by_fault"][kind].is_u64(), "seeds_by_fault.{kind}");
    }
    assert!(summary["recoveries_checked"].is_u64());
    for state in ["crash-at-point-a", "window-crash-after-upgrade", "lost-directory-operation"] {
        assert!(summary["coverage"][state].is_u64(), "coverage.{state}");
    }
    assert!(summary["seeds_per_second"].as_f64().unwrap() > 0.0);
    let failure = &summary["failures"][0];
    for key in ["seed", "design", "point", "message", "repro"] {
        assert!(!failure[key].is_null() || key == "point", "failure.{key}: {failure}");
    }
    assert!(failure["repro"].as_str().unwrap().starts_with("cargo xtask sim --seed "));
}

/// Narrowed faults are part of a repro line; the default (all) is not.
#[test]
fn a_repro_line_repeats_narrowed_faults() {
    let narrowed = stdout(&xtask(&["sim", "--seeds", "2", "--design", "erase", "--faults", "torn,enospc"]));
    assert!(narrowed.contains("repro: cargo xtask sim --seed 1 --design erase --faults enospc,torn\n"), "{narrowed}");
    let default = stdout(&xtask(&["sim", "--seeds", "2", "--design", "erase"]));
    assert!(default.contains("repro: cargo xtask sim --seed 1 --design erase\n"), "{default}");
}

/// Seed 239 is a seed whose `length-zero` failure is a transcript
/// mismatch (seed 2, which the findings name, no longer fails since its
/// workload gained I/O faults and settings): the failure says the items decoded.
#[test]
fn a_repro_line_fails_again_the_same_way() {
    let first = xtask(&["sim", "--seed", "239", "--design", "length-zero"]);
    let again = xtask(&["sim", "--seed", "239", "--design", "length-zero"]);
    assert_eq!(first.status.code(), Some(1), "{first:?}");
    let (first, again) = (stdout(&first), stdout(&again));
    assert!(first.starts_with("SEED=239 design=length-zero"), "the seed's first line: {first}");
    let expected = line_starting(&first, "    expected item 0 (");
    assert!(expected.contains("startVat(multiplier=") && expected.contains("| ok"), "decoded: {expected}");
    assert_eq!(line_starting(&first, "FAILED seed"), line_starting(&again, "FAILED seed"));
    assert_eq!(line_starting(&first, "trace hash"), line_starting(&again, "trace hash"));
}

#[test]
fn the_trace_digest_does_not_depend_on_jobs() {
    let one = stdout(&xtask(&["sim", "--seeds", "12", "--jobs", "1"]));
    let three = stdout(&xtask(&["sim", "--seeds", "12", "--jobs", "3"]));
    assert_eq!(line_starting(&one, "trace digest"), line_starting(&three, "trace digest"));
    assert!(line_starting(&one, "sim: 12 seeds, 0 failed").contains("recoveries"));
}

/// A failure's repro line runs exactly what failed, in this process instead
/// of a worker: the same failure, the same trace (between them, the two runs
/// below give every flag of the run specification).
#[test]
fn a_repro_line_reruns_exactly_what_failed() {
    let flag_sets: [(&str, &[&str]); 2] = [
        (
            "0",
            &[
                "--design",
                "length-zero",
                "--mode",
                "power-loss",
                "--torn",
                "--faults",
                "fsync-eio,torn",
                "--mutant",
                "lmdb-first",
            ],
        ),
        (
            "15",
            &[
                "--design",
                "length-zero",
                "--faults",
                "none",
                "--exhaustive",
                "--depth",
                "recover",
                "--check-determinism",
            ],
        ),
    ];
    for (seed, flags) in flag_sets {
        let json = scratch("repro").with_extension("json");
        let seeds = ["sim", "--start", seed, "--seeds", "1"];
        let pool = xtask(&[&seeds[..], &["--json", json.to_str().unwrap()], flags].concat());
        assert_eq!(pool.status.code(), Some(1), "{flags:?}: seed {seed} fails: {pool:?}");
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let _ = std::fs::remove_file(&json);
        let failure = &summary["failures"][0];
        let repro = failure["repro"].as_str().unwrap();
        let words: Vec<&str> = repro.split(' ').collect();
        assert_eq!(words[..2], ["cargo", "xtask"], "{repro}");
        let again = xtask(&words[2..]);
        assert_eq!(again.status.code(), Some(1), "{repro}: {again:?}");
        let text = stdout(&again);
        let expected = format!(
            "FAILED seed {seed} design length-zero: {} at block {}: {}",
            failure["kind"].as_str().unwrap(),
            failure["height"],
            failure["message"].as_str().unwrap()
        );
        assert_eq!(line_starting(&text, "FAILED seed"), expected, "{repro}");
        let digest = format!("trace digest {}", summary["trace_digest"].as_str().unwrap());
        assert_eq!(line_starting(&text, "trace digest"), digest, "{repro}");
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn soak_seeds(summary: &serde_json::Value) -> Vec<u64> {
    let stride = summary["stride"].as_u64().unwrap();
    let runs = summary["seed_runs"].as_array().unwrap();
    runs.iter().flat_map(|run| (run[0].as_u64().unwrap()..=run[1].as_u64().unwrap()).step_by(stride as usize)).collect()
}

#[test]
fn soak_shards_cover_disjoint_seeds() {
    let mut covered = Vec::new();
    for shard in ["1/2", "2/2"] {
        let out = scratch(&format!("soak-{}", &shard[..1]));
        let args = ["soak", "--minutes", "0.03", "--seed-base", "500", "--jobs", "1", "--shard", shard];
        let output = xtask(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        assert!(stdout(&output).trim_end().ends_with("seeds/s"));
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        let seeds = soak_seeds(&summary);
        assert!(!seeds.is_empty(), "shard {shard} ran no seed");
        let index: u64 = shard[..1].parse().unwrap();
        assert!(seeds.iter().all(|s| (s - 500) % 2 == index - 1), "shard {shard}: {seeds:?}");
        assert!(out.join("summary.md").is_file());
        covered.push(seeds);
        let _ = std::fs::remove_dir_all(&out);
    }
    assert!(covered[0].iter().all(|s| !covered[1].contains(s)), "shards overlap");
}

#[test]
fn a_failing_design_in_a_soak_leaves_a_shrunk_scenario_and_a_repro() {
    let out = scratch("soak-erase");
    let junit = out.join("junit.xml");
    let reports = out.join("reports");
    let args = ["soak", "--minutes", "0.02", "--seed-base", "0", "--design", "erase", "--max-shrink", "1"];
    let paths =
        ["--out", out.to_str().unwrap(), "--junit", junit.to_str().unwrap(), "--report", reports.to_str().unwrap()];
    let output = xtask(&[&args[..], &paths[..], &["--max-reports", "1"]].concat());
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stdout(&output);
    assert!(text.contains("repro: cargo xtask sim --seed "), "{text}");
    let scenarios: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .collect();
    assert_eq!(scenarios.len(), 1, "one shrunk scenario: {text}");
    let scenario = std::fs::read_to_string(scenarios[0].path()).unwrap();
    assert!(scenario.contains("design = \"erase\"") && scenario.contains("expect = \"fails\""), "{scenario}");
    let picture = std::fs::read_to_string(scenarios[0].path().with_extension("svg")).unwrap();
    let kind = scenario.lines().find_map(|l| l.strip_prefix("failure = ")).unwrap_or_default().trim_matches('"');
    assert!(picture.starts_with("<svg") && picture.contains(&format!("FAILED {kind}")), "its timeline beside it");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<failure") && xml.contains("repro: cargo xtask sim"), "{xml}");
    let reports: Vec<_> = std::fs::read_dir(out.join("reports")).unwrap().flatten().map(|e| e.path()).collect();
    let markdown: Vec<_> = reports.iter().filter(|p| p.extension().is_some_and(|x| x == "md")).collect();
    assert_eq!(markdown.len(), 1, "one report (--max-reports 1): {reports:?}");
    let report = std::fs::read_to_string(markdown[0]).unwrap();
    assert!(report.contains("## Shrunk scenario: ") && report.contains("```toml"), "{report}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `--require-coverage` fails a run that never reached a rare state of the
/// list, naming each; the same run without it passes.
#[test]
fn require_coverage_fails_a_run_that_misses_a_rare_state() {
    let args = ["sim", "--seeds", "3", "--faults", "none"];
    assert_eq!(xtask(&args).status.code(), Some(0));
    let output = xtask(&[&args[..], &["--require-coverage"]].concat());
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stdout(&output);
    assert!(text.contains("NOT COVERED fault-fsync-eio: a fsync-eio fault injected"), "{text}");
    assert!(text.contains("NOT COVERED crash-at-point-c: "), "{text}");
    assert!(line_starting(&text, "coverage: ").contains("rare states never reached in 3 seeds"), "{text}");
}

/// A bug report: the seed, its settings and flags, the commit, the repro
/// line, the shrunk scenario inline with its story, what differs decoded, and
/// both timelines beside it; `shrink --timeline` draws the scenario.
#[test]
fn shrink_writes_a_bug_report_and_a_timeline() {
    let out = scratch("report");
    let timeline = out.join("shrunk.svg");
    let args = ["shrink", "--seed", "239", "--design", "length-zero", "--max-runs", "60"];
    let paths =
        ["--out", out.to_str().unwrap(), "--report", out.to_str().unwrap(), "--timeline", timeline.to_str().unwrap()];
    let output = xtask(&[&args[..], &paths[..]].concat());
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report = std::fs::read_to_string(out.join("length-zero-seed-239.md")).unwrap();
    for part in [
        "# swingsim: seed 239 fails with design length-zero: transcript-mismatch",
        "| flags | `--design length-zero` |",
        "| commit | `",
        "| repro | `cargo xtask sim --seed 239 --design length-zero` |",
        "### What differs, decoded",
        "expected item 0 (",
        "![timeline of the shrunk scenario](length-zero-seed-239-shrunk.svg)",
        "```toml\ndescription = ",
        "![timeline of the seed](length-zero-seed-239.svg)",
    ] {
        assert!(report.contains(part), "no `{part}` in:\n{report}");
    }
    for svg in ["length-zero-seed-239.svg", "length-zero-seed-239-shrunk.svg", "shrunk.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(text.starts_with("<svg") && text.contains("FAILED transcript-mismatch"), "{svg}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn scenarios_run_by_name_and_bad_ones_are_usage_errors() {
    let timeline = scratch("scenario").with_extension("svg");
    let output = xtask(&["scenario", "seed-issue-start-position", "--timeline", timeline.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = stdout(&output);
    assert!(
        text.contains("crash at point-a #1 of block 3") && text.contains("ok    seed-issue-start-position"),
        "{text}"
    );
    let picture = std::fs::read_to_string(&timeline).unwrap();
    assert!(picture.contains("swingsim timeline: scenario seed-issue-start-position"), "{picture}");
    let _ = std::fs::remove_file(&timeline);
    assert_eq!(xtask(&["scenario", "no-such-scenario"]).status.code(), Some(2));
    let broken = scratch("broken").with_extension("toml");
    std::fs::write(&broken, "design = \"start-position\"\nexpect = \"sometimes\"\nvats = []\n").unwrap();
    let output = xtask(&["scenario", broken.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(broken.to_str().unwrap()) && stderr.contains("line 2"), "{stderr}");
    let _ = std::fs::remove_file(&broken);
}

/// A failure message names store files relative to the store's directory (no
/// scratch path, no process ID), so a failing seed's trace, and its hash, is
/// the same in every process.
#[test]
fn a_failing_seed_has_the_same_trace_hash_in_any_process() {
    for (args, names) in [
        (["sim", "--seed", "0", "--mutant", "sqlite-sync-off"], "swingstore.sqlite is corrupt"),
        (["sim", "--seed", "17", "--mutant", "fsync-retry"], "swingstore.sqlite is corrupt"),
    ] {
        let (first, again) = (stdout(&xtask(&args)), stdout(&xtask(&args)));
        let failed = line_starting(&first, "FAILED seed");
        assert!(failed.contains(names) && !failed.contains("swingsim-"), "{args:?}: {failed}");
        assert_eq!(line_starting(&first, "trace hash"), line_starting(&again, "trace hash"), "{args:?}");
    }
}

/// `durability-matrix` on two settings: the rollback journal at FULL loses
/// commits, as SQLite documents, and the store fails with it; WRITEMAP is
/// refused with why; bad settings are usage errors.
#[test]
fn the_durability_matrix_holds_settings_against_their_documentation() {
    let args = ["durability-matrix", "--seeds", "12", "--store-seeds", "12", "--jobs", "2"];
    let settings = ["--setting", "sqlite:delete:full", "--setting", "lmdb:writemap"];
    let output = xtask(&[&args[..], &settings[..]].concat());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let delete_full = line_starting(&text, "SQLite journal_mode=delete synchronous=full");
    assert!(delete_full.contains("| loses commits | loses commits | agree | fails:"), "{delete_full}");
    assert!(line_starting(&text, "LMDB writemap").contains("refused: LMDB writes its pages"), "{text}");
    assert!(text.contains("durability-matrix: 2 settings, 0 disagree, 1 refused"), "{text}");
    for bad in ["sqlite:delete:fast", "postgres", "lmdb:"] {
        assert_eq!(xtask(&["durability-matrix", "--setting", bad]).status.code(), Some(2), "{bad}");
    }
}
