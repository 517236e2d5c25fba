//! Fault injection for the network setup's tests, and nothing else: the test tiers run
//! debug builds, and only there (`cfg(debug_assertions)`) does [`point`] read
//! `STOCKADE_TEST_FAULT` and `STOCKADE_TEST_PAUSE`; a release build compiles it to nothing.
//! Every setup step calls [`point`] with the step string its own errors carry, right
//! before it acts, so a test names a step by the words an admin reads in the error (a
//! prefix is enough: "create the bridge") and a renamed step cannot silently skip its test.
//!
//! `STOCKADE_TEST_FAULT=STEP` makes that step fail as a kernel refusal would (EPERM), so
//! what ran before it is undone on the error path. `STOCKADE_TEST_PAUSE=STEP` stops there:
//! one line on stderr, then a wait forever, so a test can SIGKILL stockade at that point
//! and check that `stockade cleanup` removes what was made.

use crate::sandbox::error::SetupError;

/// Fails or stops at `step` when a test asks for it (debug builds only).
pub fn point(step: &str) -> Result<(), SetupError> {
    #[cfg(debug_assertions)]
    {
        let asks = |var: &str| {
            std::env::var(var)
                .ok()
                .filter(|want| !want.is_empty() && step.starts_with(want.as_str()))
                .is_some()
        };
        if asks("STOCKADE_TEST_FAULT") {
            return Err(SetupError::sys(
                step,
                "a fault injected by STOCKADE_TEST_FAULT",
                nix::errno::Errno::EPERM,
            ));
        }
        if asks("STOCKADE_TEST_PAUSE") {
            eprintln!("stockade: paused at `{step}` (STOCKADE_TEST_PAUSE)");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    }
    let _ = step;
    Ok(())
}
