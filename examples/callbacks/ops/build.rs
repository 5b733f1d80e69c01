//! Generates the registration of module `ops` and its bindings to `math`.
fn main() {
    hcr_build::Module::new().import("../math").build();
}
