//! Every kvStore key the kernel writes, in one place.

pub const VATS: &str = "kernel.vats";
pub const ACTIVITY_HASH: &str = "kernel.activityhash";
pub const CRANK_NUMBER: &str = "kernel.crankNumber";
pub const HOST_HEIGHT: &str = "host.height";
/// The chain sends of the block being run, then of the last committed block.
pub const HOST_CHAIN_SENDS: &str = "host.chainSends";
pub const RUN_QUEUE_HEAD: &str = "runQueue.head";
pub const RUN_QUEUE_TAIL: &str = "runQueue.tail";
pub const PROMISE_NEXT_ID: &str = "kp.nextID";
pub const OBJECT_NEXT_ID: &str = "ko.nextID";

pub fn run_queue_entry(index: u64) -> String {
    format!("runQueue.{index:012}")
}

pub fn promise(id: &str) -> String {
    format!("{id}.state")
}

pub fn source(vat: &str) -> String {
    format!("{vat}.source")
}

pub fn options(vat: &str) -> String {
    format!("{vat}.options")
}

pub fn incarnation(vat: &str) -> String {
    format!("{vat}.incarnationNumber")
}

pub fn start_position(vat: &str) -> String {
    format!("{vat}.t.startPosition")
}

pub fn end_position(vat: &str) -> String {
    format!("{vat}.t.endPosition")
}

pub fn generation(vat: &str) -> String {
    format!("{vat}.t.generation")
}

pub fn vatstore_prefix(vat: &str) -> String {
    format!("{vat}.vs.")
}

/// The vat's current heap snapshot: `{"hash", "position"}` (the 2022
/// `vNN.lastSnapshot`).
pub fn last_snapshot(vat: &str) -> String {
    format!("{vat}.lastSnapshot")
}

/// A vat's c-list entry for one of its objects (`o+N`): the kernel object.
pub fn clist(vat: &str, object: &str) -> String {
    format!("{vat}.c.{object}")
}
