//! Generates bindings to module `game_logic`.
fn main() {
    hcr_build::Host::new().module("logic").build();
}
