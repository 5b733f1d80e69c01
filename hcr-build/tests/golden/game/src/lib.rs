//! A module that imports `physics` and calls it through its stubs.

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// One frame: steps the physics and returns the step count.
#[unsafe(no_mangle)]
pub extern "C" fn frame(dt: f32) -> u64 {
    physics::step(dt)
}
