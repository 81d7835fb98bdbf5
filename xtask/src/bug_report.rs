//! `--report DIR` (`sim`, `soak`, `shrink`): one Markdown file per failure,
//! ready to paste into an issue, with the timelines beside it as SVG files:
//! the seed, its design, settings and flags, the project's commit, the repro
//! line, the shrunk scenario inline with its story and timeline, what
//! differs decoded, and the full seed's story and timeline. A person can act
//! on it without running anything.
//!
//! Everything in it but the commit is a function of the seed, the design and
//! the flags (no clock, no path, no process ID).

use crate::args::RunSpec;
use crate::repo_root;
use crate::unit;
use sim::run::scratch_root;
use sim::shrink::Shrunk;
use sim::summary::FailureRecord;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use store::Design;

/// What a report is about: a failure of `seed` with `design` under `spec`,
/// and its shrunk scenario (or why there is none).
pub struct Failed<'a> {
    pub failure: &'a FailureRecord,
    pub spec: &'a RunSpec,
    pub design: Design,
    pub shrunk: Result<&'a Shrunk, String>,
}

/// The project's commit, as `git rev-parse HEAD` says it now ("unknown"
/// without git), marked when the working tree has changes.
pub fn commit() -> String {
    let git = |args: &[&str]| {
        let output = std::process::Command::new("git").args(args).current_dir(repo_root()).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    match (git(&["rev-parse", "HEAD"]), git(&["status", "--porcelain", "--untracked-files=no"])) {
        (Some(head), Some(changes)) if !changes.is_empty() => format!("{head} (with uncommitted changes)"),
        (Some(head), _) => head,
        (None, _) => "unknown".into(),
    }
}

/// Write the report of `failed` into `dir` (created), with its timelines;
/// the path of the Markdown file.
pub fn write(dir: &Path, failed: &Failed, commit: &str) -> Result<PathBuf, String> {
    let (root, _) = scratch_root();
    let name = format!("{}-seed-{}", failed.design, failed.failure.seed);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut text = heading(failed, commit);
    if !rerunnable(failed.failure) {
        text += "\nThe seed is not run again here: its run panicked, hung or killed its worker process (the \
                 message says which). The repro line runs it alone.\n";
        return save(dir, &format!("{name}.md"), &text).map(|file| dir.join(file));
    }
    let seed = unit::run_pictured(&failed.spec.with_design(failed.design), failed.failure.seed, failed.design, &root);
    let seed_svg = match &seed.timeline {
        Some(timeline) => Some(save(dir, &format!("{name}.svg"), &timeline.svg())?),
        None => None,
    };
    let shrunk = match &failed.shrunk {
        Ok(shrunk) => {
            let (report, timeline) = shrunk.scenario.run_pictured(&root);
            let svg = save(dir, &format!("{name}-shrunk.svg"), &timeline.svg())?;
            Ok(ShrunkRun { shrunk, trace: report.trace.lines().to_vec(), svg, story: timeline.story() })
        }
        Err(why) => Err(why.clone()),
    };
    shrunk_section(&mut text, &shrunk);
    seed_section(&mut text, &seed.lines, seed_svg.as_deref(), &seed.timeline.map(|t| t.story()));
    save(dir, &format!("{name}.md"), &text).map(|file| dir.join(file))
}

/// Whether the failure's seed can run again in this process: not one that
/// panicked, hung, or killed its worker (it could take this process with it).
pub fn rerunnable(failure: &FailureRecord) -> bool {
    failure.kind != sim::check::FailureKind::Panic.name()
}

/// Write `text` to `dir/file`; the file's name (what the Markdown links).
fn save(dir: &Path, file: &str, text: &str) -> Result<String, String> {
    let path = dir.join(file);
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(file.to_string())
}

/// The title, the table of what ran, the failure and what differs.
fn heading(failed: &Failed, commit: &str) -> String {
    let f = failed.failure;
    let mut text =
        format!("# swingsim: seed {} fails with design {}: {} at block {}\n\n", f.seed, f.design, f.kind, f.height);
    let spec = failed.spec.with_design(failed.design);
    let flags = spec.to_args().join(" ");
    let options = sim::options::SeedOptions::derive(f.seed, &spec.flags());
    let rows = [
        ("seed", f.seed.to_string()),
        ("design", f.design.clone()),
        ("settings", options.settings.to_string()),
        ("seed's options", options.to_string()),
        ("flags", format!("`{flags}`")),
        ("commit", format!("`{commit}`")),
        ("repro", format!("`{}`", f.repro)),
    ];
    text += "| | |\n|---|---|\n";
    for (key, value) in rows {
        let _ = writeln!(text, "| {key} | {} |", value.replace('|', "\\|"));
    }
    let _ = writeln!(text, "\n## Failure\n\n`{}` at block {}: {}\n", f.kind, f.height, f.message);
    for (label, place) in [("after crash at", &f.point), ("after I/O fault", &f.fault)] {
        if let Some(place) = place {
            let _ = writeln!(text, "- {label} {place}");
        }
    }
    if !f.detail.is_empty() {
        text += "\n### What differs, decoded\n\n```\n";
        f.detail.iter().for_each(|line| text += &format!("{line}\n"));
        text += "```\n";
    }
    text
}

/// A run of the shrunk scenario, as a report shows it.
struct ShrunkRun<'a> {
    shrunk: &'a Shrunk,
    /// Its trace, line by line.
    trace: Vec<String>,
    /// The file of its timeline.
    svg: String,
    /// Its timeline's story.
    story: Vec<String>,
}

/// The shrunk scenario inline, its story and its timeline (or why there is none).
fn shrunk_section(text: &mut String, shrunk: &Result<ShrunkRun, String>) {
    let ShrunkRun { shrunk, trace: lines, svg, story } = match shrunk {
        Ok(run) => run,
        Err(why) => {
            let _ = writeln!(text, "\n## Shrunk scenario\n\nNot shrunk: {why}");
            return;
        }
    };
    let name = &shrunk.scenario.name;
    let _ = writeln!(
        text,
        "\n## Shrunk scenario: {} events (from {})\n\nIt fails with `{}`: {}\n",
        shrunk.events_after, shrunk.events_before, shrunk.kind, shrunk.message
    );
    let _ = writeln!(text, "![timeline of the shrunk scenario]({svg})\n");
    story_list(text, story);
    let _ =
        write!(text, "\nSave as `scenarios/regressions/{name}.toml`, replay with `cargo xtask scenario {name}`:\n\n");
    let _ = writeln!(text, "```toml\n{}```\n", shrunk.scenario.to_toml());
    let _ = writeln!(text, "Its story (the simulator's trace):\n\n```\n{}\n```", lines.join("\n"));
}

/// The full seed's timeline and story.
fn seed_section(text: &mut String, lines: &[String], svg: Option<&str>, story: &Option<Vec<String>>) {
    text.push_str("\n## The full seed\n\n");
    if let Some(svg) = svg {
        let _ = writeln!(text, "![timeline of the seed]({svg})\n");
    }
    if let Some(story) = story {
        story_list(text, story);
    }
    let _ = writeln!(
        text,
        "\n<details><summary>Its story (the simulator's trace)</summary>\n\n```\n{}\n```\n</details>",
        lines.join("\n")
    );
}

/// A timeline's story, as a list.
fn story_list(text: &mut String, story: &[String]) {
    text.push_str("```\n");
    story.iter().for_each(|line| text.push_str(&format!("{line}\n")));
    text.push_str("```\n");
}
