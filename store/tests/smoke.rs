use store::vat::VatParams;
use store::{Design, HostInput, Kernel, KernelConfig, StoreConfig};

fn params(m: i64) -> VatParams {
    VatParams { multiplier: m }
}

#[test]
fn smoke_all_designs() {
    for design in Design::ALL {
        let dir = tempfile::tempdir().unwrap();
        let mut k = Kernel::open(dir.path(), StoreConfig::new(design), KernelConfig::default()).unwrap();
        let inputs = vec![
            HostInput::CreateVat { vat: "v1".into(), bundle: "counter-v1".into(), params: params(2) },
            HostInput::CreateVat { vat: "v2".into(), bundle: "counter-v1".into(), params: params(3) },
            HostInput::CreateVat { vat: "v3".into(), bundle: "counter-v1".into(), params: params(5) },
        ];
        k.run_block(1, &inputs).unwrap();
        let inputs = vec![
            HostInput::Send { target: "v1".into(), method: "bump".into(), args: vec!["4".into()] },
            HostInput::Send {
                target: "v1".into(),
                method: "forward".into(),
                args: vec!["1".into(), "v2".into(), "v3".into()],
            },
            HostInput::UpgradeVat { vat: "v2".into(), bundle: "counter-v2".into(), params: params(7) },
            HostInput::Send { target: "v3".into(), method: "explode".into(), args: vec![] },
            HostInput::UpgradeVat { vat: "v1".into(), bundle: "forgets-kind".into(), params: params(7) },
        ];
        if design == Design::Erase {
            let err = k.run_block(2, &inputs).unwrap_err();
            assert!(matches!(err, store::Error::TranscriptMissing { .. }), "{err}");
            continue;
        }
        let r = k.run_block(2, &inputs).unwrap();
        println!("{design}: {r:?}");
        let before: Vec<_> = ["v1", "v2", "v3"].iter().map(|v| k.vat_status(v).unwrap()).collect();
        k.evict_all();
        let after = ["v1", "v2", "v3"].iter().map(|v| k.vat_status(v));
        let after: Vec<_> = after.collect();
        println!(
            "{design}: {:?}",
            after.iter().map(|a| a.as_ref().map(|s| s.heap_summary.clone())).collect::<Vec<_>>()
        );
        let kv = k.store().kv_scan("").unwrap();
        k.close();
        let k2 = Kernel::open(dir.path(), StoreConfig::new(design), KernelConfig::default()).unwrap();
        assert_eq!(k2.store().kv_scan("").unwrap(), kv);
        if design != Design::Erase {
            for (b, a) in before.iter().zip(after) {
                assert_eq!(b, &a.unwrap());
            }
        }
    }
}
