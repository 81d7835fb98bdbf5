//! A seed's trace: readable lines when asked for, and always a hash of them, so
//! two runs of a seed can be compared cheaply.

use sha2::{Digest, Sha256};
use store::kernel::BlockReport;

#[derive(Clone, Debug)]
pub struct Trace {
    keep_lines: bool,
    lines: Vec<String>,
    hasher: Sha256,
}

impl Trace {
    pub fn new(keep_lines: bool) -> Trace {
        Trace { keep_lines, lines: Vec::new(), hasher: Sha256::new() }
    }

    pub fn line(&mut self, line: String) {
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        if self.keep_lines {
            self.lines.push(line);
        }
    }

    /// A line for the reader only: kept when lines are, not hashed (it repeats
    /// what a hashed line stands for, e.g. a sub-run's lines beside its hash).
    pub fn note(&mut self, line: String) {
        if self.keep_lines {
            self.lines.push(line);
        }
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The hash of every line so far (16 hex digits).
    pub fn hash(&self) -> String {
        self.hasher.clone().finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// How a block appears in a trace (and in a failure that compares two runs of it).
pub fn describe_block(report: &BlockReport) -> String {
    let outcomes: Vec<String> = report
        .outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(incarnation) => format!("{} {} {} -> incarnation {incarnation}", o.action, o.vat, o.bundle),
            Err(reason) => format!("{} {} {} failed: {reason}", o.action, o.vat, o.bundle),
        })
        .collect();
    format!(
        "block {}: {} cranks ({} aborted), {} left queued{}{}{}",
        report.height,
        report.cranks,
        report.aborted_cranks,
        report.run_queue_left,
        match report.chain_sends.len() {
            0 => String::new(),
            sends => format!(", {sends} chain sends"),
        },
        if outcomes.is_empty() { "" } else { "; " },
        outcomes.join("; ")
    )
}
