//! Generates typed bindings to the hello module.
fn main() {
    hcr_build::Host::new().module("module").build();
}
