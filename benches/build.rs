//! Generates two sets of bindings to the benchmark module: through stubs
//! (`hcr.rs`, with the game example's module for `game/frame`) and with the
//! static switch on (`hcr_static.rs`); and tells the benchmarks where to
//! build modules.
//!
//! The game example's module (`game-logic`) and its shared types
//! (`game-types`) are ordinary dependencies; `game/frame` loads the module's
//! library as the benchmark builds it, optimised.
fn main() {
    hcr_build::Host::new().module("module").module("../examples/game/logic").static_feature(None).build();
    hcr_build::Host::new().module("module").static_feature(Some("static-calls")).file_name("hcr_static.rs").build();
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let target = out.ancestors().nth(4).expect("OUT_DIR is inside the target directory");
    println!("cargo:rustc-env=HCR_BENCH_DIR={}", target.join("hcr-bench").display());
}
