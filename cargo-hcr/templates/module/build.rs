//! Generates the module's registration (`hcr_module.rs`) from its sources.
fn main() {
    hcr_build::Module::new().build();
}
