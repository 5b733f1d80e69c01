//! Module `math`: small functions the host keeps in a callback table and
//! that module `ops` calls through their stubs.

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// Doubles `x`. Edit me: `x * 2` -> `x * 10`, and save under
/// `cargo hcr run -p callbacks` (or run `cargo build -p callbacks-math`).
#[unsafe(no_mangle)]
pub extern "C" fn double(x: u64) -> u64 {
    x * 2
}

/// Squares `x`.
#[unsafe(no_mangle)]
pub extern "C" fn square(x: u64) -> u64 {
    x * x
}
