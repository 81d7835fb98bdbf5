//! Every named scenario under `scenarios/` (regressions aside: they have their
//! own test) runs and is pinned by an insta snapshot in `snapshots/`: its story,
//! and per vat what a person would check. Accept a change with `cargo insta
//! review`; CI never accepts snapshots on its own.

use sha2::{Digest, Sha256};
use sim::run::{run_case, scratch_root, SeedReport};
use sim::scenario::{files_under, load, Scenario};
use std::fmt::Write;
use std::path::Path;

fn describe(scenario: &Scenario, report: &SeedReport) -> String {
    let mut text = String::new();
    let outcome = report.failure.as_ref().map_or("passed".to_string(), |f| format!("failed: {f}"));
    let _ = writeln!(
        text,
        "scenario: {}\ndesign: {}\nexpect: {:?}\noutcome: {outcome}",
        scenario.name, scenario.design, scenario.expect
    );
    let _ = writeln!(text, "story:");
    for line in report.trace.lines() {
        let _ = writeln!(text, "  {line}");
    }
    let Some(state) = &report.final_state else {
        let _ = writeln!(text, "final state: none (the run did not get there)");
        return text;
    };
    let kv: String = state.kv.iter().map(|(k, v)| format!("{k}\0{v}\n")).collect();
    let kv_digest: String = Sha256::digest(kv.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    let _ = writeln!(
        text,
        "final state:\n  height: {:?}\n  kv entries: {}\n  kv digest: {kv_digest}",
        state.height,
        state.kv.len()
    );
    let _ = writeln!(text, "  activity hash: {}", state.activity_hash);
    let sends = state.host.keys().filter(|k| k.starts_with("out.")).count();
    let _ = writeln!(text, "  host: height {}, {sends} chain send(s) recorded", state.host_height);
    for (vat, status) in &state.vats {
        let _ = writeln!(
            text,
            "  {vat}: source={} incarnation={} options={} span={}[{}..{}) vatstore={:?}\n    heap: {} ({})",
            status.source,
            status.incarnation,
            status.options,
            status.stream,
            status.start,
            status.end,
            status.vatstore,
            status.heap_summary,
            status.heap_digest,
        );
        if let Some(record) = state.kv.get(&format!("{vat}.lastSnapshot")) {
            let _ = writeln!(text, "    snapshot: {record}");
        }
    }
    text
}

#[test]
fn named_scenarios_match_their_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files: Vec<_> =
        files_under(&dir).into_iter().filter(|p| !p.components().any(|c| c.as_os_str() == "regressions")).collect();
    assert!(files.len() >= 15, "expected at least 15 named scenarios, found {}", files.len());
    let root = scratch_root().0;
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    for path in files {
        let scenario = load(&path).unwrap_or_else(|e| panic!("{e}"));
        let report = run_case(&scenario.case(None, true), &root);
        scenario.verdict(&report).unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
        settings.bind(|| insta::assert_snapshot!(scenario.name.clone(), describe(&scenario, &report)));
    }
}
