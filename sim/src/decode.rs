//! Transcript items and heaps as a person reads them, for the checks that
//! find two of them different: a delivery, its syscalls with their results,
//! and its outcome (`bump(3) -> kp12 | get count = "4", set count = "7" |
//! ok`); two heaps field by field.

use serde_json::Value;
use store::vat::{Delivery, Resolution, Syscall, SyscallRecord, SyscallResult, TranscriptEntry, VatParams};

/// Decoded items longer than this are cut (their digest names them whole).
const MAX_ITEM_CHARS: usize = 240;

/// A transcript item's text decoded, cut to `MAX_ITEM_CHARS`; the text
/// itself when it is not a transcript entry.
pub fn item(text: &str) -> String {
    let decoded = match TranscriptEntry::decode(text) {
        Ok(entry) => entry_text(&entry),
        Err(_) => format!("not a transcript entry: {text}"),
    };
    cut(&decoded, MAX_ITEM_CHARS)
}

/// Just the delivery of a transcript item (the short form, for one-line messages).
pub fn delivery_of(text: &str) -> Option<String> {
    TranscriptEntry::decode(text).ok().map(|entry| delivery(&entry.d))
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

fn entry_text(entry: &TranscriptEntry) -> String {
    let calls: Vec<String> = entry.sc.iter().map(syscall_record).collect();
    let calls = if calls.is_empty() { "no syscalls".to_string() } else { calls.join(", ") };
    let outcome = entry.r.as_ref().map_or("ok".to_string(), |reason| format!("failed: {reason}"));
    format!("{} | {calls} | {outcome}", delivery(&entry.d))
}

fn params(params: &VatParams) -> String {
    format!("multiplier={}", params.multiplier)
}

fn resolution(resolution: &Resolution) -> String {
    let how = if resolution.rejected { "rejected" } else { "fulfilled" };
    format!("{how} {:?}", resolution.value)
}

fn delivery(delivery: &Delivery) -> String {
    match delivery {
        Delivery::StartVat { params: p } => format!("startVat({})", params(p)),
        Delivery::StopVat => "stopVat()".into(),
        Delivery::Message { method, args, result } => {
            let result = result.as_ref().map_or(String::new(), |promise| format!(" -> {promise}"));
            format!("{method}({}){result}", args.join(", "))
        }
        Delivery::Notify { promise, resolution: r } => format!("notify({promise} {})", resolution(r)),
    }
}

fn syscall_record(record: &SyscallRecord) -> String {
    let call = match &record.s {
        Syscall::VatstoreGet { key } => format!("get {key}"),
        Syscall::VatstoreSet { key, value } => format!("set {key} = {value:?}"),
        Syscall::VatstoreScan { prefix } => format!("scan {prefix}*"),
        Syscall::Send { target, method, args } => format!("send {target}.{method}({})", args.join(", ")),
        Syscall::Subscribe { promise } => format!("subscribe {promise}"),
        Syscall::Resolve { promise, resolution: r } => format!("resolve {promise} {}", resolution(r)),
        Syscall::VatstoreDelete { key } => format!("delete {key}"),
        Syscall::Export { object } => format!("export {object}"),
        Syscall::DropExport { object } => format!("drop export {object}"),
        Syscall::ChainSend { body } => format!("chain send {body:?}"),
    };
    match &record.r {
        SyscallResult::Done => call,
        SyscallResult::Value { value: Some(value) } => format!("{call} = {value:?}"),
        SyscallResult::Value { value: None } => format!("{call} = none"),
        SyscallResult::Promise { promise } => format!("{call} = {promise}"),
        SyscallResult::Entries { entries } => {
            let entries: Vec<String> = entries.iter().map(|(k, v)| format!("{k}: {v:?}")).collect();
            format!("{call} = {{{}}}", entries.join(", "))
        }
    }
}

/// The fields in which two heaps (as JSON) differ, e.g. `counter: expected
/// 12, found 15`; the whole texts when either is not a JSON object.
pub fn heap_fields(expected: &str, found: &str) -> Vec<String> {
    let (Ok(Value::Object(expected)), Ok(Value::Object(found))) =
        (serde_json::from_str::<Value>(expected), serde_json::from_str::<Value>(found))
    else {
        return vec![format!("expected {expected}"), format!("found {found}")];
    };
    let mut keys: Vec<&String> = expected.keys().chain(found.keys()).collect();
    keys.sort();
    keys.dedup();
    let shown = |value: Option<&Value>| value.map_or("absent".to_string(), |v| cut(&v.to_string(), 120));
    keys.into_iter()
        .filter(|key| expected.get(*key) != found.get(*key))
        .map(|key| format!("{key}: expected {}, found {}", shown(expected.get(key)), shown(found.get(key))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_reads_as_its_delivery_syscalls_and_outcome() {
        let entry = TranscriptEntry {
            d: Delivery::Message { method: "bump".into(), args: vec!["3".into()], result: Some("kp12".into()) },
            sc: vec![
                SyscallRecord {
                    s: Syscall::VatstoreGet { key: "count".into() },
                    r: SyscallResult::Value { value: Some("4".into()) },
                },
                SyscallRecord {
                    s: Syscall::VatstoreSet { key: "count".into(), value: "7".into() },
                    r: SyscallResult::Done,
                },
            ],
            r: None,
        };
        assert_eq!(item(&entry.encode()), r#"bump(3) -> kp12 | get count = "4", set count = "7" | ok"#);
        assert_eq!(delivery_of(&entry.encode()).as_deref(), Some("bump(3) -> kp12"));
        assert_eq!(item("[1]"), "not a transcript entry: [1]");
    }

    #[test]
    fn a_long_item_is_cut() {
        let set = |i: usize| SyscallRecord {
            s: Syscall::VatstoreSet { key: format!("key{i}"), value: "x".repeat(20) },
            r: SyscallResult::Done,
        };
        let entry = TranscriptEntry { d: Delivery::StopVat, sc: (0..40).map(set).collect(), r: Some("boom".into()) };
        let text = item(&entry.encode());
        assert_eq!(text.chars().count(), MAX_ITEM_CHARS + 1);
        assert!(text.starts_with("stopVat() | set key0 = ") && text.ends_with('…'), "{text}");
    }

    #[test]
    fn heaps_differ_field_by_field() {
        let lines = heap_fields(r#"{"counter":12,"stopped":false,"x":1}"#, r#"{"counter":15,"stopped":false}"#);
        assert_eq!(lines, ["counter: expected 12, found 15", "x: expected 1, found absent"]);
        assert_eq!(heap_fields("1", "2"), ["expected 1", "found 2"]);
    }
}
