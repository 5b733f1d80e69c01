//! Generates bindings to both modules, with the static switch on feature
//! `static`.
fn main() {
    hcr_build::Host::new().module("math").module("ops").build();
}
