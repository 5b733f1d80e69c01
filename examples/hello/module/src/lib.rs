//! The reloadable half of the hello example.
//!
//! While `cargo run -p hello` is running, change the text below and run
//! `cargo build -p hello-module`: the host picks up the new code at its next
//! frame, and the greeting count carries on from where it was.

use std::sync::atomic::{AtomicU64, Ordering};

use hcr_abi::Global;

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// How many times `greet` ran. It lives in the runtime, so it survives
/// reloads of this library.
static GREETINGS: Global<AtomicU64> = Global::new(|| AtomicU64::new(0));

/// Greets once for `frame` and returns how many greetings there have been.
#[unsafe(no_mangle)]
pub extern "C" fn greet(frame: u64) -> u64 {
    let count = GREETINGS.fetch_add(1, Ordering::Relaxed) + 1;
    println!("Hello from the module! frame {frame}, greeting number {count}");
    count
}

/// How many greetings there have been.
#[unsafe(no_mangle)]
pub extern "C" fn greetings() -> u64 {
    GREETINGS.load(Ordering::Relaxed)
}
