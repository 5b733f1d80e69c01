fn main() {
    hcr_build::Host::new().module("../game").module("../physics").build();
}
