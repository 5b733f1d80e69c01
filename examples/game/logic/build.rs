//! Generates the registration of module `game_logic`.
fn main() {
    hcr_build::Module::new().build();
}
