//! The module the demo edits and reloads. In interactive mode you edit a
//! copy of this file: change the greeting or the formula and save.

use std::sync::atomic::{AtomicU64, Ordering};

use hcr_abi::Global;

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// How many times `transform` ran: a global, kept across reloads.
static CALLS: Global<AtomicU64> = Global::new(|| AtomicU64::new(0));

/// Says hello.
#[hcr_abi::reload]
pub fn describe() -> String {
    "Hello from the first build!".to_string()
}

/// The number the demo watches change.
#[hcr_abi::reload]
pub fn transform(x: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::Relaxed);
    x * 2
}

/// How many times `transform` ran, across reloads.
#[hcr_abi::reload]
pub fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}
