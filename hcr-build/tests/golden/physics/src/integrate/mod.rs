//! Integration, in a directory module.

/// Advances the world by `dt` seconds; returns the number of steps so far.
#[unsafe(no_mangle)]
pub extern "C" fn step(dt: f32) -> u64 {
    let _ = dt;
    crate::STEPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

/// Copies positions into `out` (room for `cap` floats); returns how many.
///
/// # Safety
///
/// `out` must be valid for `cap` writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn positions(out: *mut f32, cap: usize) -> usize {
    let _ = (out, cap);
    0
}
