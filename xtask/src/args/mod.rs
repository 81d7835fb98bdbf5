//! The arguments several commands share, and their parsers: the run
//! specification ([`RunSpec`], in `spec.rs`), seeds and shards.

mod spec;

pub use spec::{Designs, RunSpec};

use crate::pool::SeedSet;
use std::process::ExitCode;

/// A seed or a count: decimal, or hexadecimal with `0x`.
pub fn parse_number(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("`{text}` is not a number (decimal, or hex with 0x)"))
}

/// `--shard K/N`: this machine runs every N-th seed, from the K-th.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole run on one machine.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    pub fn parse(text: &str) -> Result<Shard, String> {
        let parsed = text.split_once('/').and_then(|(k, n)| Some((k.parse::<u64>().ok()?, n.parse::<u64>().ok()?)));
        match parsed {
            Some((index, count)) if index >= 1 && index <= count => Ok(Shard { index, count }),
            _ => Err(format!("`{text}` is not a shard K/N with 1 <= K <= N")),
        }
    }

    /// This shard's seeds among `count` seeds from `start` (`None`: no end).
    pub fn seeds(self, start: u64, count: Option<u64>) -> SeedSet {
        let Shard { index, count: shards } = self;
        let count = count.map(|c| (c + shards - index) / shards);
        SeedSet { start, count, stride: shards, offset: index - 1 }
    }
}

/// Bad usage: the message on stderr, exit status 2.
pub fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}
