//! Generates the registration of module `math`.
fn main() {
    hcr_build::Module::new().build();
}
