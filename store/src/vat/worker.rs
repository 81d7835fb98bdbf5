//! A vat worker: the heap of one incarnation, driven by deliveries. The same code
//! runs live (syscalls answered by the kernel), in replay (answered from the
//! transcript), and in the simulator's oracle (answered by a model).

use super::bundles::{bundle, BundleDef, Defect};
use super::{Delivery, Resolution, Syscall, SyscallResult, VatParams};
use crate::error::Error;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Why a delivery did not complete.
#[derive(Debug)]
pub enum DeliverError {
    /// The vat's own failure: the crank is aborted (or the upgrade fails).
    Vat(String),
    /// The kernel could not answer a syscall (storage error, replay divergence).
    Kernel(Error),
}

impl From<Error> for DeliverError {
    fn from(error: Error) -> Self {
        DeliverError::Kernel(error)
    }
}

/// Answers a vat's syscalls.
pub trait SyscallHandler {
    fn syscall(&mut self, syscall: Syscall) -> Result<SyscallResult, Error>;

    /// The JSON text of the result the last `syscall` returned, when the
    /// handler has it at hand (replay: it was recorded); `None`: serialise it.
    fn described_result(&self) -> Option<&str> {
        None
    }
}

/// The heap: everything here depends on every delivery and syscall result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Heap {
    multiplier: i64,
    counter: i64,
    deliveries: u64,
    /// A running hash (FNV-1a) of every delivery and syscall result, in order.
    history: u64,
    /// Promises this vat awaits, and the ones it has seen settled.
    awaiting: BTreeSet<String>,
    settled: BTreeMap<String, String>,
    stopped: bool,
}

/// What a heap snapshot holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeapSnapshot {
    bundle: String,
    heap: Heap,
}

/// A live vat: a bundle's code and its heap.
#[derive(Clone, Debug)]
pub struct VatWorker {
    bundle: &'static BundleDef,
    heap: Heap,
}

impl VatWorker {
    /// Load a bundle's code. Fails for an unknown bundle or one that does not evaluate.
    pub fn evaluate(bundle_id: &str) -> Result<VatWorker, String> {
        let def = bundle(bundle_id).ok_or_else(|| format!("unknown bundle {bundle_id}"))?;
        if def.defect == Some(Defect::FailsToEvaluate) {
            return Err(format!("bundle {bundle_id} failed to evaluate: SyntaxError"));
        }
        Ok(VatWorker { bundle: def, heap: Heap::default() })
    }

    /// Run one delivery to completion.
    pub fn deliver(&mut self, delivery: &Delivery, sys: &mut dyn SyscallHandler) -> Result<(), DeliverError> {
        self.deliver_described(delivery, None, sys)
    }

    /// [`VatWorker::deliver`], given `describe(delivery)` when the caller has it.
    pub fn deliver_described(
        &mut self,
        delivery: &Delivery,
        described: Option<&str>,
        sys: &mut dyn SyscallHandler,
    ) -> Result<(), DeliverError> {
        self.heap.deliveries += 1;
        self.heap.history = match described {
            Some(text) => fnv1a(self.heap.history, text.as_bytes()),
            None => mix_described(self.heap.history, delivery),
        };
        let mut calls = Calls { sys, heap: &mut self.heap };
        match delivery {
            Delivery::StartVat { params } => start_vat(self.bundle, params, &mut calls),
            Delivery::StopVat => stop_vat(&mut calls),
            Delivery::Message { method, args, result } => {
                message(self.bundle, method, args, result.as_deref(), &mut calls)
            }
            Delivery::Notify { promise, resolution } => notify(promise, resolution, &mut calls),
        }
    }

    /// The heap as a snapshot's bytes (with the bundle it belongs to).
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        let snapshot = HeapSnapshot { bundle: self.bundle.id.to_string(), heap: self.heap.clone() };
        serde_json::to_vec(&snapshot).expect("a heap encodes")
    }

    /// A worker of bundle `bundle_id` with the heap of a snapshot's bytes.
    /// Fails when the bytes do not decode or belong to another bundle.
    pub fn restore(bundle_id: &str, bytes: &[u8]) -> Result<VatWorker, String> {
        let snapshot: HeapSnapshot = serde_json::from_slice(bytes).map_err(|e| format!("does not decode: {e}"))?;
        if snapshot.bundle != bundle_id {
            return Err(format!("is a heap of bundle {}, the vat runs {bundle_id}", snapshot.bundle));
        }
        let worker = VatWorker::evaluate(bundle_id)?;
        Ok(VatWorker { heap: snapshot.heap, ..worker })
    }

    /// A digest of the whole heap ([`VatWorker::heap_json`]).
    pub fn heap_digest(&self) -> String {
        hex16(&Sha256::digest(self.heap_json()))
    }

    /// The whole heap as JSON: what a person compares when two heaps differ.
    pub fn heap_json(&self) -> String {
        serde_json::to_string(&self.heap).expect("heap encodes")
    }

    /// A short readable summary of the heap (for traces and snapshots).
    pub fn heap_summary(&self) -> String {
        let h = &self.heap;
        format!(
            "{} counter={} deliveries={} awaiting={} settled={} stopped={}",
            self.bundle.id,
            h.counter,
            h.deliveries,
            h.awaiting.len(),
            h.settled.len(),
            h.stopped
        )
    }
}

/// The first 16 hex digits of a digest.
pub(crate) fn hex16(bytes: &[u8]) -> String {
    hex(&bytes[..bytes.len().min(8)])
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// `fnv1a(hash, describe(value))`, with the JSON text written into a reused
/// buffer instead of a new string: the same bytes, mixed the same way.
fn mix_described<T: Serialize>(hash: u64, value: &T) -> u64 {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            match serde_json::to_writer(&mut *buffer, value) {
                Ok(()) => fnv1a(hash, &buffer),
                Err(_) => fnv1a(hash, super::describe(value).as_bytes()),
            }
        }
        Err(_) => fnv1a(hash, super::describe(value).as_bytes()),
    })
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    if hash == 0 {
        hash = 0xcbf2_9ce4_8422_2325;
    }
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A delivery's view of the syscall handler: every result is mixed into the heap.
struct Calls<'a> {
    sys: &'a mut dyn SyscallHandler,
    heap: &'a mut Heap,
}

impl Calls<'_> {
    fn call(&mut self, syscall: Syscall) -> Result<SyscallResult, DeliverError> {
        let result = self.sys.syscall(syscall)?;
        self.heap.history = match self.sys.described_result() {
            Some(text) => fnv1a(self.heap.history, text.as_bytes()),
            None => mix_described(self.heap.history, &result),
        };
        Ok(result)
    }

    fn get(&mut self, key: &str) -> Result<Option<String>, DeliverError> {
        match self.call(Syscall::VatstoreGet { key: key.into() })? {
            SyscallResult::Value { value } => Ok(value),
            other => Err(unexpected("vatstoreGet", &other)),
        }
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), DeliverError> {
        self.call(Syscall::VatstoreSet { key: key.into(), value: value.into() })?;
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), DeliverError> {
        self.call(Syscall::VatstoreDelete { key: key.into() })?;
        Ok(())
    }

    fn chain_send(&mut self, body: String) -> Result<(), DeliverError> {
        self.call(Syscall::ChainSend { body })?;
        Ok(())
    }

    fn send(&mut self, target: &str, method: &str, args: Vec<String>) -> Result<String, DeliverError> {
        let syscall = Syscall::Send { target: target.into(), method: method.into(), args };
        match self.call(syscall)? {
            SyscallResult::Promise { promise } => Ok(promise),
            other => Err(unexpected("send", &other)),
        }
    }

    fn resolve(&mut self, promise: &str, value: String) -> Result<(), DeliverError> {
        let resolution = Resolution { rejected: false, value };
        self.call(Syscall::Resolve { promise: promise.into(), resolution })?;
        Ok(())
    }
}

fn unexpected(syscall: &str, result: &SyscallResult) -> DeliverError {
    DeliverError::Vat(format!("{syscall} returned {}", super::describe(result)))
}

fn start_vat(def: &BundleDef, params: &VatParams, calls: &mut Calls) -> Result<(), DeliverError> {
    let registered = match calls.call(Syscall::VatstoreScan { prefix: "kind.".into() })? {
        SyscallResult::Entries { entries } => entries,
        other => return Err(unexpected("vatstoreScan", &other)),
    };
    for kind in def.kinds {
        calls.set(&format!("kind.{kind}"), def.id)?;
    }
    let missing: Vec<&str> =
        registered.iter().map(|(key, _)| &key["kind.".len()..]).filter(|kind| !def.kinds.contains(kind)).collect();
    if !missing.is_empty() {
        let tags = missing.join(", ");
        return Err(DeliverError::Vat(format!("defineDurableKind not called for tags [{tags}]")));
    }
    if def.defect == Some(Defect::StartThrows) {
        return Err(DeliverError::Vat("buildRootObject threw: Error: start failed".into()));
    }
    calls.heap.multiplier = params.multiplier;
    calls.heap.counter = parse_count(calls.get("count")?);
    calls.heap.stopped = false;
    Ok(())
}

fn stop_vat(calls: &mut Calls) -> Result<(), DeliverError> {
    let deliveries = calls.heap.deliveries.to_string();
    calls.set("stoppedAfter", &deliveries)?;
    calls.heap.stopped = true;
    Ok(())
}

fn parse_count(value: Option<String>) -> i64 {
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn message(
    def: &BundleDef,
    method: &str,
    args: &[String],
    result: Option<&str>,
    calls: &mut Calls,
) -> Result<(), DeliverError> {
    let amount: i64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1);
    match method {
        // bump(n): add n * multiplier + version to the durable count.
        "bump" => {
            let count = parse_count(calls.get("count")?) + amount * calls.heap.multiplier + def.version;
            calls.set("count", &count.to_string())?;
            calls.heap.counter = count;
        }
        // forward(n, vat...): bump locally, then pass n+1 along the path and await it.
        "forward" => {
            let count = parse_count(calls.get("count")?) + amount;
            calls.set("count", &count.to_string())?;
            calls.heap.counter = count;
            if let Some((next, rest)) = args.get(1..).and_then(|path| path.split_first()) {
                let mut forwarded = vec![(amount + 1).to_string()];
                forwarded.extend(rest.iter().cloned());
                let promise = calls.send(next, "forward", forwarded)?;
                calls.call(Syscall::Subscribe { promise: promise.clone() })?;
                calls.heap.awaiting.insert(promise);
            }
        }
        "stash" => stash(amount, calls)?,
        "clear" => clear(amount, calls)?,
        // publish(n): ask the host chain to publish the counter.
        "publish" => calls.chain_send(format!("{} count={} n={amount}", def.id, calls.heap.counter))?,
        // explode(): write, delete, ask the chain, then fail: the crank is
        // aborted, and none of it may survive.
        "explode" => {
            calls.set("boom", "1")?;
            calls.delete("count")?;
            calls.chain_send(format!("{} explode", def.id))?;
            return Err(DeliverError::Vat("explode: vat threw".into()));
        }
        other => return Err(DeliverError::Vat(format!("unknown method {other}"))),
    }
    if let Some(result) = result {
        calls.resolve(result, calls.heap.counter.to_string())?;
    }
    Ok(())
}

/// The vatstore key and the exported object of stash slot `n mod 4`.
fn stash_slot(n: i64) -> (String, String) {
    let slot = n.rem_euclid(4);
    (format!("stash.{slot}"), format!("o+{slot}"))
}

/// stash(n): set (or overwrite) slot `n mod 4` and export its object.
fn stash(n: i64, calls: &mut Calls) -> Result<(), DeliverError> {
    let (key, object) = stash_slot(n);
    calls.set(&key, &format!("{n}@{}", calls.heap.counter))?;
    calls.call(Syscall::Export { object })?;
    Ok(())
}

/// clear(n): if slot `n mod 4` holds something, delete it and drop its export.
fn clear(n: i64, calls: &mut Calls) -> Result<(), DeliverError> {
    let (key, object) = stash_slot(n);
    if calls.get(&key)?.is_some() {
        calls.delete(&key)?;
        calls.call(Syscall::DropExport { object })?;
    }
    Ok(())
}

fn notify(promise: &str, resolution: &Resolution, calls: &mut Calls) -> Result<(), DeliverError> {
    calls.heap.awaiting.remove(promise);
    calls.heap.settled.insert(promise.to_string(), resolution.value.clone());
    calls.set("lastNotify", promise)?;
    Ok(())
}
