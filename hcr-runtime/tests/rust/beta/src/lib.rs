//! Module `beta`: calls module `alpha` through its bindings.

use hcr_abi::reload;

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// Calls `alpha::explode`, which panics: the panic passes through this
/// proc to its caller, with alpha's location.
#[reload]
pub fn relay(n: u32) -> u32 {
    alpha::explode(n) + 1
}

/// Ten times alpha's build.
#[reload]
pub fn version() -> u64 {
    alpha::version() * 10
}
