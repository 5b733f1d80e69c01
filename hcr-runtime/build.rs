//! Tells the integration tests which target they are built for, so they can
//! build their fixture modules for the same one, and gives the runtime its
//! toolchain fingerprint (`HCR_TOOLCHAIN_FINGERPRINT`): modules with
//! Rust-ABI procs must have been built with the same one.
fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo:rustc-env=HCR_TEST_TARGET={target}");
    let host = std::env::var("HOST").expect("cargo sets HOST");
    println!("cargo:rustc-env=HCR_TEST_HOST={host}");
    println!("cargo:rustc-env=HCR_TOOLCHAIN_FINGERPRINT={}", hcr_abi::toolchain::toolchain_text());
    hcr_abi::toolchain::rerun_if_toolchain_changes();
    println!("cargo:rerun-if-changed=build.rs");
}
