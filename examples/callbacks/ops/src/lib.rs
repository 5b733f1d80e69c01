//! Module `ops`: imports `math` and calls it through its stubs, so reloading
//! `math` alone changes what `ops` computes.

use std::sync::atomic::{AtomicU64, Ordering};

use hcr_abi::Global;

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// How many times `ops` was called, across reloads of either module.
static CALLS: Global<AtomicU64> = Global::new(|| AtomicU64::new(0));

/// `double(x) + square(x)`, both from module `math`.
#[unsafe(no_mangle)]
pub extern "C" fn double_plus_square(x: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::Relaxed);
    math::double(x) + math::square(x)
}

/// Applies `math::double` twice, through the stub pointer `math` hands out.
#[unsafe(no_mangle)]
pub extern "C" fn quadruple(x: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let double = math::double_ptr();
    double(double(x))
}

/// How many times `ops` was called.
///
/// A C proc is a `#[no_mangle]` symbol of its own name, and hosts link the
/// module crates they depend on: its name must not be one that another
/// module linked into the same program uses (the demo module has a
/// `calls`), hence the prefix.
#[unsafe(no_mangle)]
pub extern "C" fn ops_calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}
