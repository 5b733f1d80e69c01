//! Generates the registration of module `demo_module`.
fn main() {
    hcr_build::Module::new().build();
}
