//! The callbacks example: a host that keeps stub pointers of two modules in
//! a callback table. `ops` imports `math`. Reloading either module changes
//! what the table's entries do, and never invalidates an entry.

/// Generated bindings to modules `math` and `ops`.
pub mod hcr {
    include!(concat!(env!("OUT_DIR"), "/hcr.rs"));
}

use hcr::{math, ops};

/// A callback: what the host stores and calls later.
pub type Callback = extern "C" fn(u64) -> u64;

/// The host's callback table: stub addresses, taken once.
pub fn callback_table() -> [(&'static str, Callback); 4] {
    [
        ("math::double", math::double_ptr()),
        ("math::square", math::square_ptr()),
        ("ops::double_plus_square", ops::double_plus_square_ptr()),
        ("ops::quadruple", ops::quadruple_ptr()),
    ]
}

/// Calls every entry with `x`.
pub fn run_table(table: &[(&'static str, Callback)], x: u64) -> Vec<(&'static str, u64)> {
    table.iter().map(|(name, f)| (*name, f(x))).collect()
}
