//! Reloadable Rust functions with real libraries: the fixture workspace in
//! `tests/rust` (a shared types crate, modules `alpha` and `beta`, and a
//! host that depends on both as ordinary dependencies, with a counting
//! allocator) is built by cargo, with every build of `alpha` its features
//! make, and the host runs one scenario per test in a child process,
//! checking everything it does (see `tests/rust/host/src/main.rs`).
//!
//! * every kind of signature round-trips through a reload, and a module
//!   built against a changed shared type is refused with both definitions;
//! * panics in a proc, through another module, on a module's thread, in
//!   init, in hooks and in a migration: reported with their location, the
//!   host and its globals intact, the next build loads;
//! * 1,000 panics over 100 reloads leak nothing (`RUST_BACKTRACE=1` and
//!   `full`);
//! * revert after a panic, and its refusal after a layout change;
//! * the host's allocator (chosen with `global_allocator!`) serves the
//!   modules, and allocations balance;
//! * a module built by another toolchain is refused before any of its code
//!   runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use hcr_runtime::Error;
use hcr_runtime::abi::ModuleDescriptor;
use support::{Scratch, TARGET, descriptor_offset, is_child, output_within, run_child, runner, target_command};

/// The builds of `alpha` besides the default one (features of the crate).
const VARIANTS: [&str; 7] = ["v2", "init-panics", "hook-panics", "migrate", "migrate-panics", "extra", "marker"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rust")
}

/// The newest modification time of what the fixtures are built from.
fn newest_source() -> SystemTime {
    fn walk(path: &Path, newest: &mut SystemTime) {
        if path.file_name().is_some_and(|n| n == "target") {
            return;
        }
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                walk(&entry.path(), newest);
            }
        } else if let Ok(time) = std::fs::metadata(path).and_then(|m| m.modified()) {
            *newest = (*newest).max(time);
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut newest = SystemTime::UNIX_EPOCH;
    for part in ["hcr-runtime/src", "hcr-runtime/build.rs", "hcr-runtime/Cargo.toml", "hcr-runtime/tests/rust"] {
        walk(&root.join(part), &mut newest);
    }
    for part in ["hcr-abi", "hcr-macros", "hcr-build/src", "hcr-build/Cargo.toml"] {
        walk(&root.join(part), &mut newest);
    }
    newest
}

fn cargo(args: &[&str], target_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace())
        .args(args)
        .args(["--quiet", "--target", TARGET, "--target-dir"])
        .arg(target_dir)
        .env_remove("CARGO_TARGET_DIR");
    let out = support::output(&mut command).expect("run cargo");
    assert!(out.status.success(), "cargo {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("cargo {} took {:.1} s", args.join(" "), started.elapsed().as_secs_f64());
}

/// Builds the fixture workspace (once per source change) and returns the
/// directory of the artifacts: `<variant>/lib<module>.so`, and the host in
/// `default/`.
fn artifacts() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hcr-rust-fixtures");
        let artifacts = root.join("artifacts");
        std::fs::create_dir_all(&root).unwrap();
        let lock = std::fs::File::create(root.join(".lock")).unwrap();
        lock.lock().unwrap();
        let stamp = artifacts.join(".complete");
        let fresh = std::fs::metadata(&stamp).and_then(|m| m.modified()).is_ok_and(|t| t >= newest_source());
        if !fresh {
            let _ = std::fs::remove_dir_all(&artifacts);
            let target_dir = root.join("target");
            // Libraries of dependencies stay in `deps/`; the host is
            // uplifted to the profile's directory.
            let built = target_dir.join(TARGET).join("debug");
            let copy = |from: &Path, variant: &str, file: &str| {
                let dir = artifacts.join(variant);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::copy(from.join(file), dir.join(file)).unwrap_or_else(|e| panic!("copy {file}: {e}"));
            };
            cargo(&["build", "-p", "rt-host"], &target_dir);
            copy(&built, "default", &format!("rt-host{}", std::env::consts::EXE_SUFFIX));
            copy(&built, "default", &format!("twice{}", std::env::consts::EXE_SUFFIX));
            copy(&built.join("deps"), "default", &library("alpha"));
            copy(&built.join("deps"), "default", &library("beta"));
            for variant in VARIANTS {
                cargo(&["build", "-p", "alpha", "--features", variant], &target_dir);
                copy(&built.join("deps"), variant, &library("alpha"));
            }
            std::fs::write(&stamp, b"").unwrap();
        }
        artifacts
    })
}

fn library(module: &str) -> String {
    format!("{}{module}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

/// Runs the host's `scenario` with `alpha` as built by `start` in a fresh
/// module directory; returns its output and the directory (for its
/// report file).
fn host(scenario: &str, start: &str, envs: &[(&str, &str)]) -> (Output, Scratch) {
    let artifacts = artifacts();
    let scratch = Scratch::new(&format!("rust-{scenario}"));
    let modules = scratch.dir.join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::copy(artifacts.join(start).join(library("alpha")), modules.join(library("alpha"))).unwrap();
    std::fs::copy(artifacts.join("default").join(library("beta")), modules.join(library("beta"))).unwrap();
    let exe = artifacts.join("default").join(format!("rt-host{}", std::env::consts::EXE_SUFFIX));
    let mut cmd = target_command(&exe);
    cmd.arg(scenario)
        .env("HCR_MODULE_DIR", &modules)
        .env("RT_ARTIFACTS", artifacts)
        .env("HCR_SETTLE_MS", "0")
        .env("HCR_REPORT_FILE", scratch.dir.join("report"))
        .env_remove("HCR_WATCH")
        .env_remove("HCR_STUB_BASE")
        .env_remove("HCR_KEEP_PREVIOUS")
        .env_remove("HCR_REVERT_ON_PANIC")
        .env("RUST_BACKTRACE", "0");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = output_within(cmd, &scratch.dir, Duration::from_secs(900));
    eprintln!("host {scenario} took {:.2} s", started.elapsed().as_secs_f64());
    (out, scratch)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The host's output, after checking that the scenario passed.
fn passed(out: &Output, scenario: &str) -> String {
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("{scenario} ok")),
        "scenario {scenario} failed ({}):\n{stdout}\n{}",
        out.status,
        text(&out.stderr)
    );
    stdout
}

#[test]
fn every_signature_round_trips_through_a_reload_and_a_changed_shared_type_is_refused() {
    let (out, _scratch) = host("roundtrip", "default", &[]);
    let stdout = passed(&out, "roundtrip");
    assert!(stdout.contains("reloaded: generation 1: reloaded [alpha]"), "{stdout}");
}

#[test]
fn panics_are_contained_reported_and_located() {
    let (out, scratch) = host("panics", "hook-panics", &[]);
    let stdout = passed(&out, "panics");
    println!("{stdout}");
    // The report file has a line per panic, for `cargo hcr` to show.
    let report = std::fs::read_to_string(scratch.dir.join("report")).unwrap();
    let panics: Vec<Vec<&str>> =
        report.lines().filter(|l| l.starts_with("panic\t")).map(|l| l.splitn(5, '\t').collect()).collect();
    let find = |subject: &str, message: &str| {
        panics.iter().find(|f| f[1] == "alpha" && f[2] == subject && f[4] == message).unwrap_or_else(|| {
            panic!("no panic line for {subject} with {message:?} in\n{report}");
        })
    };
    let fail = find("fail", "alpha failed: on purpose");
    assert!(fail[3].contains("src/lib.rs:") && fail[3].split(':').count() == 3, "{fail:?}");
    find("explode", "exploded 5");
    find("<init>", "no initial value for BOOM");
    find("<migration SCORE_FROM_V1>", "migration refused 5 points");
    find("hello", "first-load hook refused");
    find("", "thread of alpha gave up");
    // The thread's panic, which nothing of hcr caught, was printed.
    assert!(
        text(&out.stderr).contains("hcr: panic in module `alpha` outside any reloadable function at "),
        "{}",
        text(&out.stderr)
    );
}

/// The leak check's samples: (round, RSS in KiB, mapped modules, live bytes).
fn samples(stdout: &str) -> Vec<(u64, u64, u64, i64)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("sample "))
        .map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                    .unwrap_or_else(|| panic!("{name} in {l}"))
                    .to_owned()
            };
            (
                field("round").parse().unwrap(),
                field("rss_kib").parse().unwrap(),
                field("modules").parse().unwrap(),
                field("live_bytes").parse().unwrap(),
            )
        })
        .collect()
}

fn leak_check(backtrace: &str) {
    // Under emulation (the AArch64 lane) every reload is far slower: fewer
    // rounds, the same checks.
    let rounds = if runner().is_some() { 20 } else { 100 };
    let rounds_text = rounds.to_string();
    let (out, _scratch) = host("leak", "default", &[("RUST_BACKTRACE", backtrace), ("RT_ROUNDS", &rounds_text)]);
    let stdout = passed(&out, "leak");
    let samples = samples(&stdout);
    println!("RUST_BACKTRACE={backtrace}, {} panics over {rounds} reloads:", rounds * 10);
    if runner().is_some() {
        println!("(under emulation: {rounds} rounds instead of 100)");
        // qemu-user's RSS includes its cache of translated code, which grows
        // with every newly mapped copy of a library until qemu flushes it;
        // the heap and the mapped libraries are what is checked exactly.
        println!("(RSS includes the emulator's cache of translated code: 16 MiB of slack)");
    }
    for (round, rss, modules, live) in &samples {
        println!("  round {round:>3}: rss {rss} KiB, {modules} module libraries mapped, {live} bytes live");
    }
    assert_eq!(samples.len(), 5, "{stdout}");
    // Samples come after every fifth of the rounds. What the first panics
    // and reloads create once (caches, the stub table's pages, the capacity
    // of the runtime's tables) is there by the second; from then on nothing
    // may grow. The host's allocator counts every live byte, the modules'
    // included, so the heap is measured exactly; RSS moves with the system
    // allocator's and the loader's bookkeeping: a constant slack, far below
    // what a leak per panic or per reload makes.
    assert!(samples.iter().all(|s| s.2 == 2), "alpha and beta, one library each: {samples:?}");
    let (_, base_rss, _, base_live) = samples[1];
    let (_, last_rss, _, last_live) = samples[samples.len() - 1];
    let (_, _, _, first_live) = samples[0];
    assert!(last_live - base_live <= 256, "the live heap grew by {} bytes: {samples:?}", last_live - base_live);
    assert!(last_live - first_live <= 4096, "the live heap grew by {} bytes: {samples:?}", last_live - first_live);
    let slack = if runner().is_some() { 16 * 1024 } else { 1024 };
    assert!(last_rss <= base_rss + slack, "RSS grew by {} KiB: {samples:?}", last_rss - base_rss);
}

#[test]
fn a_thousand_panics_leak_nothing_with_backtraces() {
    leak_check("1");
}

#[test]
fn a_thousand_panics_leak_nothing_with_full_backtraces() {
    leak_check("full");
}

#[test]
fn a_module_reverts_to_its_previous_build_after_a_panic_unless_a_layout_changed() {
    let (out, scratch) = host("revert", "default", &[("HCR_REVERT_ON_PANIC", "1")]);
    let stdout = passed(&out, "revert");
    println!("{stdout}");
    let report = std::fs::read_to_string(scratch.dir.join("report")).unwrap();
    assert!(report.lines().any(|l| l.starts_with("reverted\t") && l.ends_with("\talpha")), "{report}");
}

#[test]
fn modules_allocate_from_the_hosts_allocator() {
    let (out, _scratch) = host("allocator", "default", &[]);
    passed(&out, "allocator");
}

#[test]
fn a_host_that_chooses_its_allocator_twice_stops_before_main() {
    let exe = artifacts().join("default").join(format!("twice{}", std::env::consts::EXE_SUFFIX));
    let scratch = Scratch::new("twice");
    let out = output_within(target_command(&exe), &scratch.dir, Duration::from_secs(120));
    let stderr = text(&out.stderr);
    assert!(!out.status.success() && text(&out.stdout).is_empty(), "{}: {stderr}", out.status);
    #[cfg(unix)]
    if runner().is_none() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(6), "SIGABRT: {stderr}");
    }
    // Which of the two constructors runs second is the linker's choice.
    assert!(
        ["FIRST", "SECOND"].iter().any(|name| stderr
            .contains(&format!("hcr: global_allocator!({name}) cannot take over the process's allocations")))
            && stderr.contains("it is used more than once"),
        "{stderr}"
    );
}

/// `alpha`'s `marker` build with its fingerprint length set to `len` and
/// the byte at `flip` (in the fingerprint) changed.
fn with_fingerprint(len: Option<u32>, flip: Option<usize>) -> Vec<u8> {
    let mut bytes = std::fs::read(artifacts().join("marker").join(library("alpha"))).unwrap();
    let at = descriptor_offset(&bytes, "HCR_MODULE_DESCRIPTOR_alpha");
    let len_at = at + std::mem::offset_of!(ModuleDescriptor, fingerprint_len);
    let start = at + std::mem::offset_of!(ModuleDescriptor, fingerprint);
    let current = u32::from_ne_bytes(bytes[len_at..len_at + 4].try_into().unwrap()) as usize;
    assert!(bytes[start..start + current].starts_with(b"rustc "), "a fingerprint");
    if let Some(len) = len {
        bytes[len_at..len_at + 4].copy_from_slice(&len.to_ne_bytes());
    }
    if let Some(i) = flip {
        bytes[start + i] = b'X';
    }
    bytes
}

#[test]
fn a_module_of_another_toolchain_is_refused_before_any_of_its_code_runs() {
    artifacts();
    let scratch = Scratch::new("fingerprint");
    let marker = scratch.dir.join("constructed");
    let out = run_child("fingerprint_child", &[("RT_MARKER", marker.to_str().unwrap())]);
    let stdout = text(&out.stdout);
    assert!(out.status.success() && stdout.contains("fingerprint ok"), "{stdout}\n{}", text(&out.stderr));
    println!("{stdout}");
}

/// Loads patched builds of `alpha` into this process (a host of the same
/// toolchain): every one is refused and its constructor, which would create
/// `$RT_MARKER`, never runs; the unpatched build loads and its constructor
/// runs.
#[test]
#[ignore = "run by a_module_of_another_toolchain_is_refused_before_any_of_its_code_runs"]
fn fingerprint_child() {
    if !is_child() {
        return;
    }
    let marker = std::path::PathBuf::from(std::env::var_os("RT_MARKER").unwrap());
    let scratch = Scratch::new("fingerprint-child");
    let runtime = hcr_runtime::Runtime::with_config(hcr_runtime::Config::new().with_stub_base(0)).unwrap();
    let expected = format!("{}; hcr-abi {}", env!("HCR_TOOLCHAIN_FINGERPRINT"), hcr_runtime::abi::VERSION);
    for (len, flip, found) in [
        (None, Some(0), "Xustc "),
        (Some(0), None, "<no fingerprint>"),
        (Some(4000), None, "<a corrupt fingerprint (4000 bytes, at most 256)>"),
    ] {
        let path = scratch.install_bytes(&with_fingerprint(len, flip), "alpha");
        let err = runtime.load(&path).unwrap_err();
        let Error::ToolchainMismatch { found: module, expected: host, .. } = err.failures()[0] else { panic!("{err}") };
        assert!(module.starts_with(found), "{module}");
        assert_eq!(*host, expected);
        assert!(err.to_string().contains("rebuild the module with the host's toolchain"), "{err}");
        assert!(!marker.exists(), "the module's constructor ran");
        println!("refused: {err}");
    }
    assert!(runtime.modules().is_empty());
    // The same file, unpatched: it loads, and its constructor runs.
    let path = scratch.install_bytes(&with_fingerprint(None, None), "alpha");
    runtime.load(&path).unwrap();
    assert!(marker.exists(), "the constructor runs when the library is opened");
    println!("fingerprint ok");
}

#[test]
fn the_descriptor_is_found_under_the_modules_name_and_must_name_its_module() {
    artifacts();
    let out = run_child("descriptor_lookup_child", &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success() && stdout.contains("lookup ok"), "{stdout}\n{}", text(&out.stderr));
    println!("{stdout}");
}

/// `bytes` with every occurrence of `from` replaced by `to` (same length).
fn replace_all(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut found = 0;
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(from.len()).position(|w| w == from) {
        bytes[i + at..i + at + to.len()].copy_from_slice(to);
        i += at + to.len();
        found += 1;
    }
    assert!(found > 0, "{} not found", String::from_utf8_lossy(from));
    bytes
}

/// Loads `alpha` (which exports `HCR_MODULE_DESCRIPTOR_alpha`) from a file
/// of another name: the only suffixed descriptor is its. Then a build whose
/// descriptor is exported under another module's name (the dynamic string
/// changed so that the GNU hash stays the same, so the loader still finds
/// it): refused, naming both.
#[test]
#[ignore = "run by the_descriptor_is_found_under_the_modules_name_and_must_name_its_module"]
fn descriptor_lookup_child() {
    if !is_child() {
        return;
    }
    let bytes = std::fs::read(artifacts().join("default").join(library("alpha"))).unwrap();
    let scratch = Scratch::new("lookup-child");
    let runtime = hcr_runtime::Runtime::with_config(hcr_runtime::Config::new().with_stub_base(0)).unwrap();
    let renamed = scratch.install_bytes(&bytes, "renamed");
    let info = runtime.load(&renamed).unwrap();
    assert_eq!(info.name, "alpha");
    println!("libalpha.so renamed to {}: loaded as `{}`", renamed.display(), info.name);

    // "ha" -> "i@": h * 33 + a == i * 33 + @, so the GNU hash is unchanged.
    let other = replace_all(bytes, b"HCR_MODULE_DESCRIPTOR_alpha\0", b"HCR_MODULE_DESCRIPTOR_alpi@\0");
    let scratch = Scratch::new("lookup-child-other");
    let path = scratch.install_bytes(&other, "alpha");
    let err = support::sole_failure(runtime.load(&path).unwrap_err());
    let Error::NotAModule { reason, .. } = &err else { panic!("{err}") };
    assert!(reason.contains("`HCR_MODULE_DESCRIPTOR_alpi@`") && reason.contains("names module `alpha`"), "{reason}");
    println!("refused: {err}");
    assert_eq!(runtime.modules().len(), 1, "the loaded module is untouched");
    println!("lookup ok");
}
