//! Operating running sandboxes from the host: their records (`records.rs`), which `run`
//! writes and every command that looks at running sandboxes reads. Nothing here builds or
//! enters a sandbox.

pub mod records;
