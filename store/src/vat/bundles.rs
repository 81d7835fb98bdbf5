//! The bundle catalogue: the vat programs the kernel can run, by bundle ID.

/// A deliberate defect of a bundle: each makes an upgrade to it fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    /// The code does not evaluate (a syntax error in the real system).
    FailsToEvaluate,
    /// buildRootObject does not re-define a durable Kind of its predecessor.
    ForgetsKind,
    /// startVat throws after defining its Kinds.
    StartThrows,
}

/// One bundle: a version of the counter program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleDef {
    pub id: &'static str,
    pub version: i64,
    /// Durable Kinds its startVat defines.
    pub kinds: &'static [&'static str],
    pub defect: Option<Defect>,
}

pub const BUNDLES: &[BundleDef] = &[
    BundleDef { id: "counter-v1", version: 1, kinds: &["Counter"], defect: None },
    BundleDef { id: "counter-v2", version: 2, kinds: &["Counter", "Ledger"], defect: None },
    BundleDef { id: "counter-v3", version: 3, kinds: &["Counter", "Ledger"], defect: None },
    BundleDef { id: "bad-eval", version: 9, kinds: &["Counter", "Ledger"], defect: Some(Defect::FailsToEvaluate) },
    BundleDef { id: "forgets-kind", version: 9, kinds: &["Ledger"], defect: Some(Defect::ForgetsKind) },
    BundleDef { id: "start-throws", version: 9, kinds: &["Counter", "Ledger"], defect: Some(Defect::StartThrows) },
];

/// The bundle with this ID.
pub fn bundle(id: &str) -> Option<&'static BundleDef> {
    BUNDLES.iter().find(|b| b.id == id)
}
