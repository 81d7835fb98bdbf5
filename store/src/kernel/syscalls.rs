//! Live syscalls: a vat's requests answered from the kernel's state, and recorded.

use super::keys;
use super::promises;
use super::run_queue::{self, RunQueueEvent};
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
        })
    }
}

impl SyscallHandler for LiveSyscalls<'_> {
    fn syscall(&mut self, syscall: Syscall) -> Result<SyscallResult> {
        let result = self.answer(&syscall)?;
        self.records.push(SyscallRecord { s: syscall, r: result.clone() });
        Ok(result)
    }
}
