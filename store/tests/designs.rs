//! Every design through one long, seeded, mixed workload (deliveries, forward
//! chains, explodes, upgrades that succeed and fail, evictions, reopens): after
//! each block, replay and reopen rebuild the same vats, and a model predicts
//! every vat's count, code and incarnation. `erase` fails as documented.

mod common;

use common::*;
use std::collections::BTreeMap;
use store::kernel::VatOutcome;
use store::{Design, Error, HostInput};

/// A small deterministic generator (Knuth's MMIX LCG, high bits).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &'a [String]) -> &'a String {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// What the model knows about one vat.
#[derive(Clone, Debug)]
struct ModelVat {
    version: i64,
    multiplier: i64,
    incarnation: u64,
    count: i64,
}

struct Block {
    inputs: Vec<HostInput>,
    outcomes: Vec<VatOutcome>,
    /// Vats with a failed upgrade in this block.
    failed_upgrades: Vec<String>,
}

const BLOCKS: u64 = 20;
/// The first block with a failed upgrade (earlier blocks have none).
const FIRST_FAILURE: u64 = 5;

/// The workload and, block by block, what the model expects.
fn workload(seed: u64) -> (Vec<Block>, Vec<BTreeMap<String, ModelVat>>) {
    let mut rng = Lcg(seed);
    let mut vats: BTreeMap<String, ModelVat> = BTreeMap::new();
    let mut blocks = Vec::new();
    let mut models = Vec::new();
    for height in 1..=BLOCKS {
        let mut block = Block { inputs: Vec::new(), outcomes: Vec::new(), failed_upgrades: Vec::new() };
        let mut creations = vec![];
        if height == 1 {
            creations = vec!["v1", "v2", "v3", "v4"];
        } else if height == 9 {
            creations = vec!["v5"];
        }
        for (i, vat) in creations.into_iter().enumerate() {
            let multiplier = 2 + i as i64;
            block.inputs.push(create(vat, "counter-v1", multiplier));
            block.outcomes.push(VatOutcome {
                vat: vat.into(),
                action: "create",
                bundle: "counter-v1".into(),
                result: Ok(0),
            });
            vats.insert(vat.into(), ModelVat { version: 1, multiplier, incarnation: 0, count: 0 });
        }
        let names: Vec<String> = vats.keys().cloned().collect();
        let n = 2 + rng.below(4);
        let mut forced_failure = height == FIRST_FAILURE;
        for _ in 0..n {
            let vat = rng.pick(&names).clone();
            let mut roll = rng.below(100);
            if forced_failure {
                roll = 90;
                forced_failure = false;
            }
            if height < FIRST_FAILURE && roll >= 85 {
                roll = 75;
            }
            match roll {
                0..=34 => {
                    let m = vats.get_mut(&vat).unwrap();
                    let amount = 1 + rng.below(9) as i64;
                    block.inputs.push(bump(&vat, amount));
                    m.count += amount * m.multiplier + m.version;
                }
                35..=59 => {
                    let amount = 1 + rng.below(20) as i64;
                    let hops = 1 + rng.below(4);
                    let path: Vec<String> = (0..hops).map(|_| rng.pick(&names).clone()).collect();
                    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                    block.inputs.push(forward(amount, &refs));
                    for (i, hop) in path.iter().enumerate() {
                        vats.get_mut(hop).unwrap().count += amount + i as i64;
                    }
                }
                60..=69 => block.inputs.push(explode(&vat)),
                70..=84 => {
                    let m = vats.get_mut(&vat).unwrap();
                    let version = (m.version + rng.below(2) as i64).min(3);
                    let bundle = format!("counter-v{version}");
                    let multiplier = 1 + rng.below(6) as i64;
                    block.inputs.push(upgrade(&vat, &bundle, multiplier));
                    m.version = version;
                    m.multiplier = multiplier;
                    m.incarnation += 1;
                    let result = Ok(m.incarnation);
                    block.outcomes.push(VatOutcome { vat: vat.clone(), action: "upgrade", bundle, result });
                }
                _ => {
                    let (bundle, reason) = match rng.below(4) {
                        3 if vats[&vat].version >= 2 => {
                            ("counter-v1", "defineDurableKind not called for tags [Ledger]")
                        }
                        i => DEFECTS[(i % 3) as usize],
                    };
                    block.inputs.push(upgrade(&vat, bundle, 9));
                    let result = Err(reason.to_string());
                    let bundle = bundle.to_string();
                    block.outcomes.push(VatOutcome { vat: vat.clone(), action: "upgrade", bundle, result });
                    block.failed_upgrades.push(vat.clone());
                }
            }
        }
        blocks.push(block);
        models.push(vats.clone());
    }
    (blocks, models)
}

/// A kernel error met during the workload, and the block it happened in.
#[derive(Debug)]
struct Failure {
    height: u64,
    error: Error,
}

/// Run the workload; assertion failures panic, kernel errors are returned.
fn run_workload(design: Design, seed: u64) -> Result<u64, Failure> {
    let (blocks, models) = workload(seed);
    let dir = tempdir();
    let mut k = kernel(dir.path(), design, 2);
    let mut evictions = 0;
    for (i, (block, model)) in blocks.iter().zip(&models).enumerate() {
        let height = i as u64 + 1;
        let fail = |error| Failure { height, error };
        let report = k.run_block(height, &block.inputs).map_err(fail)?;
        let ctx = format!("{design}, seed {seed}, block {height}");
        assert_eq!(report.outcomes, block.outcomes, "{ctx}");
        assert_eq!(report.run_queue_left, 0, "{ctx}");

        let vats = k.vat_ids().unwrap();
        assert_eq!(vats, model.keys().cloned().collect::<Vec<_>>(), "{ctx}");
        let mut before = Vec::new();
        for vat in &vats {
            let s = k.vat_status(vat).map_err(fail)?;
            let m = &model[vat];
            assert_eq!(count(&s), m.count, "{ctx}: {vat} count");
            assert_eq!(s.source, format!("counter-v{}", m.version), "{ctx}: {vat}");
            assert_eq!(s.options, format!(r#"{{"multiplier":{}}}"#, m.multiplier), "{ctx}: {vat}");
            assert_eq!(s.incarnation, m.incarnation, "{ctx}: {vat}");
            let expected = format!("{} counter={} ", s.source, m.count);
            assert!(s.heap_summary.starts_with(&expected), "{ctx}: {vat}: {}", s.heap_summary);
            assert!(s.heap_summary.contains(" awaiting=0 "), "{ctx}: {vat}: {}", s.heap_summary);
            assert!(!s.vatstore.contains_key("boom"), "{ctx}: {vat}");
            before.push(s);
        }

        // Replay rebuilds the same heaps.
        k.evict_all();
        for s in &before {
            let after = k.vat_status(&s.vat).map_err(fail)?;
            assert_eq!(&after, s, "{ctx}: {} after evict_all", s.vat);
        }

        // So does a fresh kernel reopened from disk.
        let (digest, activity) = (kv_digest(&k), k.activity_hash().unwrap());
        evictions += k.worker_stats().evictions;
        k.close();
        k = kernel(dir.path(), design, 2);
        assert_eq!(k.last_committed_height().unwrap(), Some(height), "{ctx}");
        assert_eq!((kv_digest(&k), k.activity_hash().unwrap()), (digest, activity), "{ctx}");
        for s in &before {
            let reopened = k.vat_status(&s.vat).map_err(fail)?;
            assert_eq!(&reopened, s, "{ctx}: {} after reopen", s.vat);
        }
    }
    Ok(evictions + k.worker_stats().evictions)
}

const SEEDS: [u64; 2] = [4232, 20220511];

#[test]
fn workload_has_what_it_claims() {
    for seed in SEEDS {
        let (blocks, _) = workload(seed);
        let inputs: Vec<&HostInput> = blocks.iter().flat_map(|b| &b.inputs).collect();
        let methods = |name: &str| {
            inputs.iter().filter(|i| matches!(i, HostInput::Send { method, .. } if method == name)).count()
        };
        assert!(methods("bump") >= 5 && methods("forward") >= 5 && methods("explode") >= 2, "seed {seed}");
        let outcomes: Vec<&VatOutcome> = blocks.iter().flat_map(|b| &b.outcomes).collect();
        let upgraded = outcomes.iter().filter(|o| o.action == "upgrade" && o.result.is_ok()).count();
        let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
        assert!(upgraded >= 3 && failed >= 3, "seed {seed}: {upgraded} upgrades, {failed} failed");
        assert!(outcomes.iter().any(|o| o.bundle == "counter-v3" && o.result.is_ok()), "seed {seed}");
        println!(
            "seed {seed}: {} inputs, {} bumps, {} forwards, {} explodes, {upgraded} upgrades, failed: {:?}",
            inputs.len(),
            methods("bump"),
            methods("forward"),
            methods("explode"),
            outcomes.iter().filter(|o| o.result.is_err()).map(|o| o.bundle.as_str()).collect::<Vec<_>>()
        );
        let first = blocks.iter().position(|b| !b.failed_upgrades.is_empty()).unwrap();
        assert_eq!(first as u64 + 1, FIRST_FAILURE, "seed {seed}");
    }
}

#[test]
fn every_sound_design_survives_the_long_workload() {
    for design in SOUND {
        for seed in SEEDS {
            match run_workload(design, seed) {
                Ok(evictions) => assert!(evictions > 0, "{design}, seed {seed}: no evictions"),
                Err(failure) => panic!("{design}, seed {seed}: {failure:?}"),
            }
        }
    }
}

/// The seed issue's bug: once a failed upgrade has erased a vat's transcript,
/// reloading that vat fails.
#[test]
fn erase_fails_once_a_failed_upgrade_is_reloaded() {
    for seed in SEEDS {
        let (blocks, _) = workload(seed);
        let failed = &blocks[FIRST_FAILURE as usize - 1].failed_upgrades;
        match run_workload(Design::Erase, seed) {
            Err(Failure { height, error: Error::TranscriptMissing { vat, position, start, end } }) => {
                assert_eq!(height, FIRST_FAILURE, "seed {seed}");
                assert!(failed.contains(&vat), "seed {seed}: {vat} not in {failed:?}");
                assert_eq!((position, start), (0, 0), "seed {seed}");
                assert!(end > 0, "seed {seed}");
            }
            other => panic!("seed {seed}: expected TranscriptMissing in block {FIRST_FAILURE}, got {other:?}"),
        }
    }
}
