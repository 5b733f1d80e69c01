//! Generates bindings to module `demo_module` (hot only: the demo is about reloading).
fn main() {
    hcr_build::Host::new().module("module").static_feature(None).build();
}
