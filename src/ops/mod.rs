//! Operating running sandboxes from the host: their records (`records.rs`), which `run`
//! writes and every command that looks at running sandboxes reads; what they use now
//! (`status.rs`) and its Prometheus exposition (`metrics.rs`); stopping one (`stop.rs`);
//! and named volumes (`volumes.rs`). Nothing here builds or enters a sandbox.

pub mod metrics;
pub mod records;
pub mod status;
pub mod stop;
pub mod volumes;
