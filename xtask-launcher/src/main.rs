//! `cargo xtask` runs this first (see the alias in `.cargo/config.toml`). It
//! builds xtask in release mode and then becomes it (exec), arguments and all.
//!
//! The alias runs cargo with `--quiet` so that a run with nothing to build
//! prints nothing but xtask's own output. The first run, though, compiles
//! for minutes, and a silent command looks hung: so this launcher runs the
//! build itself and shows cargo's messages (its progress) as soon as cargo
//! says anything but that it has finished, and hides them otherwise.

use std::io::{IsTerminal, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

fn main() -> ExitCode {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let color = if std::io::stderr().is_terminal() { "always" } else { "never" };
    let build = Command::new(cargo)
        .args(["build", "--release", "--package", "xtask", "--message-format=json-render-diagnostics"])
        .arg(format!("--color={color}"))
        .arg("--manifest-path")
        .arg(&workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut build = match build {
        Ok(build) => build,
        Err(error) => return fail(&format!("cannot run cargo: {error}")),
    };
    let stderr = build.stderr.take().expect("piped stderr");
    let relay = std::thread::spawn(move || relay_unless_fresh(stderr));
    let mut messages = String::new();
    let read = build.stdout.take().expect("piped stdout").read_to_string(&mut messages);
    let status = build.wait();
    let _ = relay.join();
    match (read, status) {
        (Ok(_), Ok(status)) if status.success() => {}
        (_, Ok(status)) => return ExitCode::from(status.code().unwrap_or(1) as u8),
        (Err(error), _) | (_, Err(error)) => return fail(&format!("cargo build: {error}")),
    }
    let Some(xtask) = messages.lines().find_map(executable) else {
        return fail("cargo built no xtask executable");
    };
    let error = Command::new(&xtask).args(std::env::args_os().skip(1)).exec();
    fail(&format!("cannot run {xtask}: {error}"))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Copy cargo's messages to stderr once one of them says more than that the
/// build finished (something compiles, a lock is awaited, a warning, an
/// error); until then, hold them, and drop them if that is all there is.
fn relay_unless_fresh(mut from: impl Read) {
    let (mut held, mut relaying) = (Vec::new(), false);
    let mut chunk = [0u8; 4096];
    while let Ok(read @ 1..) = from.read(&mut chunk) {
        let mut out = std::io::stderr().lock();
        if relaying {
            let _ = out.write_all(&chunk[..read]);
            continue;
        }
        held.extend_from_slice(&chunk[..read]);
        if !only_finished(&String::from_utf8_lossy(&held)) {
            relaying = true;
            let _ = out.write_all(&held);
        }
    }
}

/// Whether cargo's messages so far say nothing but that the build finished.
fn only_finished(messages: &str) -> bool {
    let mut lines = messages.split_inclusive('\n').map(|line| line.trim_start_matches(|c: char| c.is_whitespace()));
    // A line not yet complete could still become anything: hold it.
    lines.all(|line| !line.ends_with('\n') || line.starts_with("Finished") || strip_color(line).starts_with("Finished"))
}

/// `line` without its leading ANSI color codes.
fn strip_color(line: &str) -> &str {
    let mut rest = line;
    while let Some(after) = rest.strip_prefix("\u{1b}[") {
        rest = after.split_once('m').map_or(after, |(_, tail)| tail).trim_start();
    }
    rest
}

/// The path of the xtask binary, from cargo's JSON message about it.
fn executable(message: &str) -> Option<String> {
    if !message.contains(r#""reason":"compiler-artifact""#) || !message.contains(r#""name":"xtask""#) {
        return None;
    }
    let (_, rest) = message.split_once(r#""executable":""#)?;
    let mut path = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(path),
            '\\' => path.push(chars.next()?),
            c => path.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_build_is_hidden_and_any_other_message_shown() {
        assert!(only_finished(""));
        assert!(only_finished("    Finished `release` profile [optimized] target(s) in 0.21s\n"));
        assert!(only_finished("    \u{1b}[1m\u{1b}[92mFinished\u{1b}[0m `release` profile target(s) in 0.2s\n"));
        assert!(only_finished("   Compil"), "a line in the making is held");
        assert!(!only_finished("   Compiling store v0.1.0 (/work/store)\n"));
        assert!(!only_finished("    Blocking waiting for file lock on build directory\n"));
        assert!(!only_finished("    Finished `release` profile\nwarning: something\n"));
    }

    #[test]
    fn the_executable_comes_from_xtask_s_artifact_message() {
        let xtask = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"xtask"},"executable":"/w/target/release/xtask","fresh":true}"#;
        assert_eq!(executable(xtask).as_deref(), Some("/w/target/release/xtask"));
        let escaped = r#"{"reason":"compiler-artifact","target":{"name":"xtask"},"executable":"/w/a \"b\"/xtask"}"#;
        assert_eq!(executable(escaped).as_deref(), Some(r#"/w/a "b"/xtask"#));
        let library = r#"{"reason":"compiler-artifact","target":{"name":"sim"},"executable":null}"#;
        assert_eq!(executable(library), None);
        assert_eq!(executable(r#"{"reason":"build-finished","success":true}"#), None);
    }
}
