fn main() {
    hcr_build::Module::new().import("../physics").build();
}
