//! Vat code: a small catalogue of deterministic bundles (several versions of one
//! counter program, and defective ones), the deliveries they take and the
//! syscalls they make. Heap state depends on the content and order of every
//! delivery and on every syscall result.

mod bundles;
mod worker;

pub use bundles::{bundle, BundleDef, Defect, BUNDLES};
pub use worker::hex;
pub(crate) use worker::hex16;
pub use worker::{DeliverError, SyscallHandler, VatWorker};

use serde::{Deserialize, Serialize};

/// Per-version parameters of a vat (its `vatParameters`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VatParams {
    pub multiplier: i64,
}

/// How a promise was settled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub rejected: bool,
    pub value: String,
}

/// What the kernel hands a vat in one crank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Delivery {
    StartVat { params: VatParams },
    StopVat,
    Message { method: String, args: Vec<String>, result: Option<String> },
    Notify { promise: String, resolution: Resolution },
}

/// What a vat asks of the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Syscall {
    VatstoreGet {
        key: String,
    },
    VatstoreSet {
        key: String,
        value: String,
    },
    VatstoreDelete {
        key: String,
    },
    /// Every vatstore entry whose key starts with `prefix`, in key order.
    VatstoreScan {
        prefix: String,
    },
    /// Send `method(args)` to vat `target`; the result is a new kernel promise.
    Send {
        target: String,
        method: String,
        args: Vec<String>,
    },
    Subscribe {
        promise: String,
    },
    Resolve {
        promise: String,
        resolution: Resolution,
    },
    /// Export one of the vat's objects (`o+N`): the kernel adds a c-list entry.
    Export {
        object: String,
    },
    /// The vat no longer exports `object`: its c-list entry goes.
    DropExport {
        object: String,
    },
    /// Ask the host chain to do something (a bridge or mailbox outbound in
    /// agoric-sdk); it happens only if the crank commits.
    ChainSend {
        body: String,
    },
}

/// What the kernel answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SyscallResult {
    Done,
    Value { value: Option<String> },
    Entries { entries: Vec<(String, String)> },
    Promise { promise: String },
}

/// One syscall and its result, as recorded in a transcript entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallRecord {
    pub s: Syscall,
    pub r: SyscallResult,
}

/// One transcript entry: `{d, sc: [{s, r}], r}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    pub d: Delivery,
    pub sc: Vec<SyscallRecord>,
    /// `None` on success, the vat's error otherwise.
    pub r: Option<String>,
}

impl TranscriptEntry {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("transcript entries always encode")
    }

    pub fn decode(item: &str) -> Result<TranscriptEntry, serde_json::Error> {
        serde_json::from_str(item)
    }
}

/// A short readable form of a value, for error messages.
pub fn describe<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "<unencodable>".into())
}
