//! What direct rebuilds ask of the linker to be done sooner, on Linux.
//!
//! Two things take most of the linker's time for a module built in the
//! debug profile: the debug information of the toolchain's own libraries
//! (`std` and its dependencies, which each module carries; 4 of the 5 MB of
//! the game example's module) and merging its strings. So rebuilds pass the
//! linker
//!
//! * `-O0`: no tail merging of strings (the library comes out a few
//!   percent larger, the same otherwise), and
//! * a linker script that only discards the `.debug_*` sections of the
//!   libraries in the toolchain's sysroot (`<sysroot>/lib/rustlib/*/lib`),
//!   inserted into the linker's default layout: the module's own debug
//!   information and that of every other crate stay, the loaded segments
//!   are the same.
//!
//! For the game example's module, LLD then links in 48 ms instead of 58
//! and writes 1.3 MB instead of 5.2. A debugger stepping into `std` from a
//! rebuilt module finds no source lines there; `CARGO_HCR_STD_DEBUGINFO=1`
//! keeps them. GNU ld (1.1 MB) and LLD take both; a linker that refuses
//! them (gold and mold take no such script) is called again without them,
//! and they are not passed again in the session.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::record;

/// Set to keep the debug information of the toolchain's libraries.
pub const STD_DEBUGINFO_VAR: &str = "CARGO_HCR_STD_DEBUGINFO";

/// The linker script's file name, in the staging directory.
const SCRIPT_NAME: &str = "hcr-link.ld";

/// Whether the linker took the arguments so far (cleared for the rest of
/// the session when a link with them failed).
static ACCEPTED: AtomicBool = AtomicBool::new(true);

/// The linker script, once written (`None` when it cannot be: no sysroot
/// found, a path the script cannot name, or asked not to).
static SCRIPT: OnceLock<Option<PathBuf>> = OnceLock::new();

/// The arguments to add to the recorded `rustc` command (`-C link-arg=...`
/// pairs), for a library built into a directory under `staging_root`; none
/// where they do not apply.
pub fn args(rustc: &record::Command, staging_root: &Path) -> Vec<String> {
    // Relaxed: a hint, read at each build; a stale value costs one retry.
    let linux = cfg!(target_os = "linux") && rustc.option("--target").is_none_or(|t| t.contains("-linux-"));
    if !linux || !ACCEPTED.load(Ordering::Relaxed) {
        return Vec::new();
    }
    let mut args = vec!["-C".to_owned(), "link-arg=-Wl,-O0".to_owned()];
    let script = SCRIPT.get_or_init(|| {
        let keep = std::env::var_os(STD_DEBUGINFO_VAR).is_some_and(|v| !v.is_empty() && v != "0");
        if keep {
            return None;
        }
        let text = script(&sysroot(rustc)?)?;
        let path = script_path(staging_root)?;
        write_atomically(&path, &text).ok()?;
        Some(path)
    });
    if let Some(script) = script.as_deref().and_then(Path::to_str) {
        args.extend(["-C".to_owned(), format!("link-arg=-Wl,-T,{script}")]);
    }
    args
}

/// Whether a failed rustc run failed in the linker, with the arguments of
/// [`args`] given: then they are not given again in this session, and the
/// build is to be run again without them.
pub fn refused(stderr: &str, given: &[String]) -> bool {
    let refused = !given.is_empty() && stderr.contains("linking with");
    if refused {
        // Relaxed: as in `args`.
        ACCEPTED.store(false, Ordering::Relaxed);
    }
    refused
}

/// The sysroot of the compiler that `rustc` runs, if it answers like rustc.
fn sysroot(rustc: &record::Command) -> Option<PathBuf> {
    let output = Command::new(&rustc.program)
        .args(["--print", "sysroot"])
        .envs(rustc.env.iter().map(|(k, v)| (k, v)))
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let sysroot = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    sysroot.join("lib/rustlib").is_dir().then_some(sysroot)
}

/// The linker script for `sysroot`, if its path can be written as a
/// pattern (no glob or script syntax in it).
fn script(sysroot: &Path) -> Option<String> {
    let path = sysroot.to_str()?;
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._+-~".contains(c);
    if !path.starts_with('/') || !path.chars().all(plain) {
        return None;
    }
    Some(format!(
        "/* Written by cargo-hcr for the modules it rebuilds: the debug\n   \
         information of the toolchain's libraries is left out. */\n\
         SECTIONS\n{{\n  /DISCARD/ : {{ {path}/lib/rustlib/*/lib/*.rlib:*(.debug_*) }}\n}}\n\
         INSERT AFTER .text;\n"
    ))
}

/// Where the linker script goes, if the linker can be given that path:
/// `-Wl,` splits its argument at commas.
fn script_path(staging_root: &Path) -> Option<PathBuf> {
    let path = staging_root.join(SCRIPT_NAME);
    path.to_str().is_some_and(|p| !p.contains(',')).then_some(path)
}

/// Writes `text` to `path` with one rename (another session may read it).
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension(format!("{}.partial", std::process::id()));
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_names_only_the_sysroots_libraries() {
        let text = script(Path::new("/home/me/.rustup/toolchains/stable-x86_64-unknown-linux-gnu")).unwrap();
        assert!(
            text.contains(
                "/DISCARD/ : { /home/me/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/lib/rustlib/*/lib/*.rlib:*(.debug_*) }"
            ),
            "{text}"
        );
        assert!(text.trim_end().ends_with("INSERT AFTER .text;"));
        for odd in ["relative/sysroot", "/with space", "/star*", "/brace}", "/quote\""] {
            assert_eq!(script(Path::new(odd)), None, "{odd}");
        }
    }

    #[test]
    fn a_script_path_with_a_comma_is_not_given_to_the_linker() {
        assert_eq!(
            script_path(Path::new("/w/target/debug/.hcr-staging")),
            Some("/w/target/debug/.hcr-staging/hcr-link.ld".into())
        );
        assert_eq!(script_path(Path::new("/w/a,b/target/debug/.hcr-staging")), None);
    }

    #[test]
    fn the_sysroot_is_asked_of_the_compiler() {
        let rustc = record::Command {
            env: Vec::new(),
            program: std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()).into(),
            args: Vec::new(),
        };
        let sysroot = sysroot(&rustc).expect("rustc answers");
        assert!(sysroot.join("lib/rustlib").is_dir());
        let not_rustc = record::Command { program: "true".into(), ..rustc };
        assert_eq!(super::sysroot(&not_rustc), None);
    }
}
