fn main() {
    hcr_build::Module::new().build();
}
