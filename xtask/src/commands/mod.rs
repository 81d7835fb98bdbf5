//! One module per command. Each imports only the shared modules of the crate
//! (`args`, `unit`, `pool`, `report`, `bug_report`, `signals`), never another command.

pub mod bench;
pub mod durability_matrix;
pub mod lint_workflows;
pub mod mutants;
pub mod probe_worker;
pub mod scenario;
pub mod shrink;
pub mod sim;
pub mod soak;
pub mod truth_table;
pub mod worker;
