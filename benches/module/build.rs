//! Generates the registration of module `bench_module`.
fn main() {
    hcr_build::Module::new().build();
}
