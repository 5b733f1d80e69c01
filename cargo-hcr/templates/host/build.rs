//! Generates the bindings to the module (`hcr.rs`).
fn main() {
    hcr_build::Host::new().module("../{{module}}").build();
}
