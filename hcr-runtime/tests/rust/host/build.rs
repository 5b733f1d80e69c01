fn main() {
    hcr_build::Host::new().module("../alpha").module("../beta").build();
}
