//! Tells the integration tests which target they are built for, so they can
//! build their fixture modules for the same one.
fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo:rustc-env=HCR_TEST_TARGET={target}");
    let host = std::env::var("HOST").expect("cargo sets HOST");
    println!("cargo:rustc-env=HCR_TEST_HOST={host}");
    println!("cargo:rerun-if-changed=build.rs");
}
