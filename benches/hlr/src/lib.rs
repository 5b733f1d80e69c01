//! The trivial function as a hot-lib-reloader library exports it: a
//! `#[no_mangle] pub fn` (Rust ABI), which its `hot_module` wrapper looks up
//! by name on every call.

/// `x + 1`, never inlined.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn trivial(x: u64) -> u64 {
    x.wrapping_add(1)
}
