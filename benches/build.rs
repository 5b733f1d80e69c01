//! Generates two sets of bindings to the benchmark module: through stubs
//! (`hcr.rs`, with the game example's module for `game/frame`) and with the
//! static switch on (`hcr_static.rs`); and tells the benchmarks where to
//! build modules.
//!
//! The game example's module (`game-logic`) is not a dependency, and
//! hcr-build warns about that: it has only C procs, so its registration
//! exports the unsuffixed `HCR_MODULE_DESCRIPTOR`, as does the demo module
//! that `hcr-demo` links in, and the two cannot be linked into one binary.
//! The bindings need no type of it; `game/frame` loads the library the
//! benchmark builds optimised.
fn main() {
    hcr_build::Host::new().module("module").module("../examples/game/logic").static_feature(None).build();
    hcr_build::Host::new().module("module").static_feature(Some("static-calls")).file_name("hcr_static.rs").build();
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let target = out.ancestors().nth(4).expect("OUT_DIR is inside the target directory");
    println!("cargo:rustc-env=HCR_BENCH_DIR={}", target.join("hcr-bench").display());
}
