//! The toolchain fingerprint as a build script computes it: what must be
//! equal between a host and a module for Rust-ABI calls and Rust types to
//! cross between them. Module build scripts use it through `hcr-build`,
//! `hcr-runtime`'s build script directly.

use std::borrow::ToOwned;
use std::format;
use std::process::Command;
use std::string::String;
use std::vec::Vec;

/// FNV-1a, 64 bits: stable across builds and hosts.
fn hash_str(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in text.as_bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// `-Z` options that change type layouts or the Rust calling convention.
const LAYOUT_FLAGS: &[&str] = &["randomize-layout", "layout-seed", "reg-struct-return", "regparm", "fixed-x18"];

/// The parts of a fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Toolchain {
    release: String,
    commit: String,
    target: String,
    panic: String,
    /// Sorted, without duplicates.
    features: Vec<String>,
    /// The layout-changing flags, as `-Zname[=value]`, sorted.
    layout_flags: Vec<String>,
}

impl Toolchain {
    /// The text: `rustc <release> (<commit>); <target>; panic=<strategy>;
    /// target-features=<list>[; <flags>]`. When that is longer than the
    /// descriptor can hold, the features and flags are replaced by their
    /// hash: the compiler, target and panic strategy stay readable.
    fn text(&self) -> String {
        let readable = format!("rustc {} ({}); {}; panic={}", self.release, self.commit, self.target, self.panic);
        let mut rest = format!("target-features={}", self.features.join(","));
        for flag in &self.layout_flags {
            rest.push_str("; ");
            rest.push_str(flag);
        }
        let full = format!("{readable}; {rest}");
        let capacity = crate::TOOLCHAIN_TEXT_CAPACITY;
        if full.len() <= capacity {
            return full;
        }
        let mut short = format!(
            "{readable}; target-features and flags hashed {:016x} ({} features, {} flags)",
            hash_str(&rest),
            self.features.len(),
            self.layout_flags.len()
        );
        while short.len() > capacity {
            short.pop();
        }
        short
    }
}

/// Layout-changing `-Z` flags among rustc's arguments, as `-Zname[=value]`.
fn layout_flags(args: &[String]) -> Vec<String> {
    let mut flags = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let option = if arg == "-Z" {
            match iter.next() {
                Some(next) => next.as_str(),
                None => break,
            }
        } else if let Some(rest) = arg.strip_prefix("-Z") {
            rest
        } else {
            continue;
        };
        let name = option.split('=').next().unwrap_or(option);
        if LAYOUT_FLAGS.contains(&name) {
            flags.push(format!("-Z{option}"));
        }
    }
    flags.sort();
    flags.dedup();
    flags
}

/// `release` and `commit-hash` (and `host`) from `rustc -vV`.
fn parse_version(output: &str) -> (Option<String>, Option<String>, Option<String>) {
    let field = |name: &str| {
        output.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned())).filter(|v| !v.is_empty())
    };
    (field("release:"), field("commit-hash:"), field("host:"))
}

/// The toolchain text of the build that runs this build script:
///
/// `rustc <release> (<commit-hash>); <target triple>; panic=<strategy>;
/// target-features=<list>[; <layout flags>]`
///
/// from `rustc -vV` (`RUSTC`, as cargo sets it), `TARGET`, `CARGO_CFG_PANIC`,
/// `CARGO_CFG_TARGET_FEATURE` and the rustflags (`-Zrandomize-layout`,
/// `-Zlayout-seed`, `-Zreg-struct-return`, `-Zregparm`, `-Zfixed-x18`). The
/// generated registration of a module stores it (followed by
/// `; hcr-abi <version>`, see [`Fingerprint`](crate::Fingerprint)) in its
/// descriptor; the runtime's build script computes its own with this
/// function, for the runtime to refuse a module with Rust-ABI procs whose
/// fingerprint differs. It is never longer than
/// [`TOOLCHAIN_TEXT_CAPACITY`](crate::TOOLCHAIN_TEXT_CAPACITY).
///
/// Outside a build script the missing parts fall back to the host's
/// (`rustc -vV`), `unwind` and no features.
///
/// # Panics
///
/// Never: a `rustc` that cannot be run gives `rustc unknown (unknown)`.
pub fn toolchain_text() -> String {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc).arg("-vV").output().ok().filter(|o| o.status.success());
    let text = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    toolchain_text_for(&text)
}

/// [`toolchain_text`] with the compiler's `rustc -vV` output given instead
/// of asked for: for a build script that knows it already (`hcr-build`
/// records it when it is compiled, by the same compiler).
///
/// # Panics
///
/// Never: a text without `release:` or `commit-hash:` gives
/// `rustc unknown (unknown)`.
pub fn toolchain_text_for(rustc_version: &str) -> String {
    let (release, commit, host) = parse_version(rustc_version);
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut features: Vec<String> = env("CARGO_CFG_TARGET_FEATURE")
        .map(|f| f.split(',').map(str::to_owned).filter(|f| !f.is_empty()).collect())
        .unwrap_or_default();
    features.sort();
    features.dedup();
    let rustflags: Vec<String> = match env("CARGO_ENCODED_RUSTFLAGS") {
        Some(encoded) => encoded.split('\u{1f}').map(str::to_owned).collect(),
        None => env("RUSTFLAGS").map(|f| f.split_whitespace().map(str::to_owned).collect()).unwrap_or_default(),
    };
    Toolchain {
        release: release.unwrap_or_else(|| "unknown".into()),
        commit: commit.unwrap_or_else(|| "unknown".into()),
        target: env("TARGET").or(host).unwrap_or_else(|| "unknown".into()),
        panic: env("CARGO_CFG_PANIC").unwrap_or_else(|| "unwind".into()),
        features,
        layout_flags: layout_flags(&rustflags),
    }
    .text()
}

/// Tells cargo (from a build script) to run the build script again when the
/// inputs of [`toolchain_text`] change.
pub fn rerun_if_toolchain_changes() {
    for name in ["RUSTC", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS"] {
        std::println!("cargo:rerun-if-env-changed={name}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toolchain(features: &[&str], flags: &[&str]) -> Toolchain {
        Toolchain {
            release: "1.95.0".into(),
            commit: "59807616e1fa2540724bfbac14d7976d7e4a3860".into(),
            target: "x86_64-unknown-linux-gnu".into(),
            panic: "unwind".into(),
            features: features.iter().map(|f| (*f).to_owned()).collect(),
            layout_flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn the_text_names_compiler_target_panic_and_features() {
        assert_eq!(
            toolchain(&["fxsr", "sse", "sse2"], &[]).text(),
            "rustc 1.95.0 (59807616e1fa2540724bfbac14d7976d7e4a3860); x86_64-unknown-linux-gnu; panic=unwind; target-features=fxsr,sse,sse2"
        );
        assert_eq!(
            toolchain(&["sse2"], &["-Zrandomize-layout"]).text(),
            "rustc 1.95.0 (59807616e1fa2540724bfbac14d7976d7e4a3860); x86_64-unknown-linux-gnu; panic=unwind; target-features=sse2; -Zrandomize-layout"
        );
    }

    #[test]
    fn long_feature_lists_are_hashed_and_the_rest_stays_readable() {
        let many: Vec<String> = (0..60).map(|i| format!("feature{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let text = toolchain(&many, &[]).text();
        assert!(text.len() <= crate::TOOLCHAIN_TEXT_CAPACITY, "{text}");
        assert!(text.starts_with("rustc 1.95.0 (59807616e1fa2540724bfbac14d7976d7e4a3860); x86_64-unknown-linux-gnu; panic=unwind; target-features and flags hashed "), "{text}");
        assert!(text.ends_with("(60 features, 0 flags)"), "{text}");
        let mut other = many.clone();
        other[59] = "feature-x";
        assert_ne!(text, toolchain(&other, &[]).text(), "another feature set, another hash");
    }

    #[test]
    fn layout_flags_are_picked_out_of_rustflags() {
        let args: Vec<String> = [
            "-C",
            "opt-level=3",
            "-Zrandomize-layout",
            "-Z",
            "layout-seed=7",
            "-Zshare-generics",
            "-Ctarget-cpu=native",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(layout_flags(&args), ["-Zlayout-seed=7", "-Zrandomize-layout"]);
    }

    #[test]
    fn rustc_version_output_is_parsed() {
        let out = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\ncommit-hash: 59807616e1fa\ncommit-date: 2026-04-14\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n";
        assert_eq!(
            parse_version(out),
            (Some("1.95.0".into()), Some("59807616e1fa".into()), Some("x86_64-unknown-linux-gnu".into()))
        );
    }

    #[test]
    fn the_real_fingerprint_fits_and_names_this_compiler() {
        let text = toolchain_text();
        assert!(text.starts_with("rustc ") && text.contains("; panic="), "{text}");
        assert!(text.len() <= crate::TOOLCHAIN_TEXT_CAPACITY);
    }
}
