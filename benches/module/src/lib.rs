//! The function every call benchmark calls: as small as a function gets, so
//! that what is measured is the way it is called.

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// `x + 1`, never inlined into a caller.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn trivial(x: u64) -> u64 {
    x.wrapping_add(1)
}
