//! Live syscalls: a vat's requests answered from the kernel's state, and recorded.

use super::chain;
use super::keys;
use super::promises;
use super::run_queue::{self, read_u64, RunQueueEvent};
use crate::error::{Error, Result};
use crate::swing_store::SwingStore;
use crate::vat::{Syscall, SyscallHandler, SyscallRecord, SyscallResult};

pub(crate) struct LiveSyscalls<'a> {
    pub store: &'a mut SwingStore,
    pub vat: &'a str,
    pub records: Vec<SyscallRecord>,
}

impl LiveSyscalls<'_> {
    fn answer(&mut self, syscall: &Syscall) -> Result<SyscallResult> {
        let vatstore = keys::vatstore_prefix(self.vat);
        Ok(match syscall {
            Syscall::VatstoreGet { key } => SyscallResult::Value { value: self.store.kv_get(&(vatstore + key))? },
            Syscall::VatstoreSet { key, value } => {
                self.store.kv_set(&(vatstore + key), value)?;
                SyscallResult::Done
            }
            Syscall::VatstoreDelete { key } => {
                self.store.kv_delete(&(vatstore + key))?;
                SyscallResult::Done
            }
            Syscall::VatstoreScan { prefix } => {
                let found = self.store.kv_scan(&format!("{vatstore}{prefix}"))?;
                let entries = found.into_iter().map(|(k, v)| (k[vatstore.len()..].to_string(), v)).collect();
                SyscallResult::Entries { entries }
            }
            Syscall::Send { target, method, args } => {
                let promise = promises::allocate(self.store, target)?;
                let event = RunQueueEvent::Send {
                    target: target.clone(),
                    method: method.clone(),
                    args: args.clone(),
                    result: Some(promise.clone()),
                };
                run_queue::push(self.store, &event)?;
                SyscallResult::Promise { promise }
            }
            Syscall::Subscribe { promise } => {
                promises::subscribe(self.store, promise, self.vat)?;
                SyscallResult::Done
            }
            Syscall::Resolve { promise, resolution } => {
                if !promises::resolve(self.store, promise, self.vat, resolution.clone())? {
                    return Err(Error::Invariant(format!("vat {} may not resolve {promise}", self.vat)));
                }
                SyscallResult::Done
            }
            Syscall::Export { object } => {
                self.export(object)?;
                SyscallResult::Done
            }
            Syscall::DropExport { object } => {
                self.store.kv_delete(&keys::clist(self.vat, object))?;
                SyscallResult::Done
            }
            Syscall::ChainSend { body } => {
                chain::record(self.store, self.vat, body)?;
                SyscallResult::Done
            }
        })
    }

    /// Give `object` a kernel object (`koN`) in the vat's c-list, unless it
    /// has one: exporting an exported object changes nothing.
    fn export(&mut self, object: &str) -> Result<()> {
        let key = keys::clist(self.vat, object);
        if self.store.kv_get(&key)?.is_some() {
            return Ok(());
        }
        let next = read_u64(self.store, keys::OBJECT_NEXT_ID)?;
        self.store.kv_set(keys::OBJECT_NEXT_ID, &(next + 1).to_string())?;
        self.store.kv_set(&key, &format!("ko{next}"))
    }
}

impl SyscallHandler for LiveSyscalls<'_> {
    fn syscall(&mut self, syscall: Syscall) -> Result<SyscallResult> {
        let result = self.answer(&syscall)?;
        self.records.push(SyscallRecord { s: syscall, r: result.clone() });
        Ok(result)
    }
}
