use sim::options::Flags;
use sim::run::{run_seed, scratch_root, SeedConfig};
use store::Design;

#[test]
fn first_seeds() {
    let (root, _) = scratch_root();
    for seed in 0..5 {
        let config = SeedConfig {
            seed,
            design: Design::StartPosition,
            flags: Flags {
                mode: None,
                torn: false,
            },
            verbose: true,
        };
        let report = run_seed(&config, &root);
        for line in report.trace.lines() {
            println!("{line}");
        }
        println!(
            "crashes {:?} recoveries {} cranks {}",
            report.crashes.len(),
            report.recoveries_checked,
            report.cranks
        );
    }
}
