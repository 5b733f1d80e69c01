//! The reloadable module. While `cargo hcr run` runs, change `tick` and
//! save: the host calls the new code from its next tick on.

use std::sync::atomic::{AtomicU64, Ordering};

use hcr_abi::Global;

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// How many ticks there have been. It lives in the runtime, so it survives
/// reloads of this library.
static TICKS: Global<AtomicU64> = Global::new(|| AtomicU64::new(0));

/// Counts one tick and returns what the host prints: try `ticks * 10`.
#[unsafe(no_mangle)]
pub extern "C" fn tick() -> u64 {
    let ticks = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    ticks
}
