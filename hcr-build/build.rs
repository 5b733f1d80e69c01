//! Records what `rustc -vV` says about the compiler building this crate.
//!
//! Cargo compiles a build script and the crate it builds with the same
//! compiler, and compiles this crate again (and runs this script again)
//! whenever that compiler changes, so the module build scripts that use
//! hcr-build read the compiler's version from here instead of running
//! `rustc -vV` on every build (about 20 ms of each save in a development
//! loop).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    // Nothing recorded when it cannot run: the fingerprint then asks rustc
    // itself, as it would without this file.
    let version = Command::new(rustc)
        .arg("-vV")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    std::fs::write(out.join("rustc-version.txt"), version).expect("OUT_DIR is writable");
}
