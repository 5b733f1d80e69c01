//! Generates this module's registration code.
fn main() {
    hcr_build::Module::new().build();
}
