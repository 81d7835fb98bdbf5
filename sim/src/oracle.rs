//! The oracle: vat code run directly on the deliveries that committed cranks made,
//! with a vatstore modelled here, using none of the store's kv, stream, transcript
//! or replay code. A bug shared by the reference run and the faulty run (both use
//! the store) still shows up as a difference from the oracle. The chain sends
//! of a block are the ChainSend syscalls of its committed deliveries, in order.

use std::collections::BTreeMap;
use store::kernel::{BlockReport, ChainSend, CommittedDelivery};
use store::vat::{describe, DeliverError, Syscall, SyscallHandler, SyscallRecord, SyscallResult, VatWorker};

/// One vat as the oracle sees it.
struct OracleVat {
    worker: VatWorker,
    vatstore: BTreeMap<String, String>,
}

#[derive(Default)]
pub struct Oracle {
    vats: BTreeMap<String, OracleVat>,
}

impl Oracle {
    /// Apply a committed block: the chain sends it made. `Err` names the
    /// first disagreement with the kernel's deliveries.
    pub fn apply(&mut self, report: &BlockReport) -> Result<Vec<ChainSend>, String> {
        let mut sends = Vec::new();
        for delivery in &report.committed {
            let made = self.apply_delivery(delivery);
            let made = made.map_err(|e| format!("block {}: vat {}: {e}", report.height, delivery.vat))?;
            sends.extend(made.into_iter().map(|body| ChainSend { vat: delivery.vat.clone(), body }));
        }
        Ok(sends)
    }

    /// Run one delivery on the model: the bodies of its chain sends.
    fn apply_delivery(&mut self, delivery: &CommittedDelivery) -> Result<Vec<String>, String> {
        if let Some(bundle) = &delivery.new_worker {
            let worker = VatWorker::evaluate(bundle)?;
            let vatstore = self.vats.remove(&delivery.vat).map(|v| v.vatstore).unwrap_or_default();
            self.vats.insert(delivery.vat.clone(), OracleVat { worker, vatstore });
        }
        let vat = self.vats.get_mut(&delivery.vat).ok_or("delivery to a vat the oracle never saw start")?;
        let recorded = &delivery.entry.sc;
        let mut model = ModelSyscalls { vatstore: &mut vat.vatstore, recorded, next: 0, chain_sends: Vec::new() };
        let outcome = match vat.worker.deliver(&delivery.entry.d, &mut model) {
            Ok(()) => None,
            Err(DeliverError::Vat(message)) => Some(message),
            Err(DeliverError::Kernel(error)) => return Err(error.to_string()),
        };
        if model.next != delivery.entry.sc.len() {
            return Err(format!("kernel recorded {} syscalls, vat code made {}", delivery.entry.sc.len(), model.next));
        }
        if outcome != delivery.entry.r {
            return Err(format!("outcome {} but kernel recorded {}", describe(&outcome), describe(&delivery.entry.r)));
        }
        Ok(model.chain_sends)
    }

    /// Heap digest of every vat.
    pub fn heap_digests(&self) -> BTreeMap<String, String> {
        self.vats.iter().map(|(vat, v)| (vat.clone(), v.worker.heap_digest())).collect()
    }

    /// The heap of `vat` as JSON, if the oracle knows the vat.
    pub fn heap_json(&self, vat: &str) -> Option<String> {
        self.vats.get(vat).map(|v| v.worker.heap_json())
    }
}

/// Answers vatstore syscalls from the model; others from the kernel's record
/// (promise IDs are the kernel's to allocate), after checking the call matches.
struct ModelSyscalls<'a> {
    vatstore: &'a mut BTreeMap<String, String>,
    recorded: &'a [SyscallRecord],
    next: usize,
    /// The bodies of the delivery's chain sends, in order.
    chain_sends: Vec<String>,
}

impl ModelSyscalls<'_> {
    fn model_answer(&mut self, syscall: &Syscall) -> Option<SyscallResult> {
        Some(match syscall {
            Syscall::VatstoreGet { key } => SyscallResult::Value { value: self.vatstore.get(key).cloned() },
            Syscall::VatstoreSet { key, value } => {
                self.vatstore.insert(key.clone(), value.clone());
                SyscallResult::Done
            }
            Syscall::VatstoreDelete { key } => {
                self.vatstore.remove(key);
                SyscallResult::Done
            }
            Syscall::VatstoreScan { prefix } => {
                let entries = self.vatstore.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(prefix.as_str()));
                SyscallResult::Entries { entries: entries.map(|(k, v)| (k.clone(), v.clone())).collect() }
            }
            Syscall::ChainSend { body } => {
                self.chain_sends.push(body.clone());
                SyscallResult::Done
            }
            Syscall::Subscribe { .. }
            | Syscall::Resolve { .. }
            | Syscall::Export { .. }
            | Syscall::DropExport { .. } => SyscallResult::Done,
            Syscall::Send { .. } => return None,
        })
    }
}

impl SyscallHandler for ModelSyscalls<'_> {
    fn syscall(&mut self, syscall: Syscall) -> store::Result<SyscallResult> {
        let index = self.next;
        let mismatch = |expected: String, found: String| {
            store::Error::Invariant(format!("oracle: syscall {index} expected {expected}, found {found}"))
        };
        let Some(record) = self.recorded.get(self.next) else {
            return Err(mismatch("no further syscall".into(), describe(&syscall)));
        };
        if record.s != syscall {
            return Err(mismatch(describe(&record.s), describe(&syscall)));
        }
        let answer = self.model_answer(&syscall).unwrap_or_else(|| record.r.clone());
        if answer != record.r {
            let what = format!("result of {}: {}", describe(&syscall), describe(&answer));
            return Err(mismatch(what, describe(&record.r)));
        }
        self.next += 1;
        Ok(answer)
    }
}
