fn main() {
    hcr_build::Module::new().import("../alpha").build();
}
