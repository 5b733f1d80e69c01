//! Reloadable Rust functions end to end, on the fixture workspace in
//! `tests/rust`: a shared types crate, two modules (`game` imports
//! `physics`) and a host that depends on both as ordinary dependencies.
//!
//! * The registration of `game` and the host's bindings match their golden
//!   files (`HCR_BLESS=1` rewrites them).
//! * Cargo builds the host with the modules linked in (no duplicate symbol,
//!   one global allocator), and the modules' libraries export their
//!   descriptors under their own names, with the toolchain fingerprint
//!   readable from the file.
//! * A static build runs every binding: values, references, slices, trait
//!   objects, local and shared types, panics passed through two modules,
//!   and a panic raised again in the host at the host's call site.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hcr_build::{Cfg, Host, Module};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rust")
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/rust").join(name)
}

/// The fixtures get a target directory of their own: their `hcr-abi` has
/// another feature set than the main workspace's.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("hcr-build-rust")
}

const TOOLCHAIN: &str = "rustc 1.0.0 (golden); x86_64-unknown-linux-gnu; panic=unwind; target-features=fxsr,sse,sse2";

fn cfg() -> Cfg {
    Cfg::empty().with_flag("unix").with_value("target_os", "linux")
}

fn check(path: &Path, actual: &str) {
    if std::env::var_os("HCR_BLESS").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(e, a)| e != a).unwrap_or(0);
        panic!(
            "{} differs from the golden file at line {}:\n  expected: {:?}\n  actual:   {:?}\n(run with HCR_BLESS=1 to accept)",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn registration_and_bindings_match_their_golden_files() {
    let module = Module::new()
        .crate_dir(fixtures().join("game"))
        .cfg(cfg())
        .toolchain(TOOLCHAIN)
        .import("../physics")
        .render()
        .unwrap();
    check(&golden("game.module.rs"), &module.source);
    // The shared types crate's files are inputs: a change there re-runs the
    // build script, so the hashes follow.
    assert!(module.inputs.iter().any(|p| p.ends_with("types/src/world.rs")), "{:?}", module.inputs);

    let host = Host::new()
        .crate_dir(fixtures().join("host"))
        .out_dir("/project/target/debug/build/sim-host-0123456789abcdef/out")
        .cfg(cfg())
        .module("../game")
        .module("../physics")
        .render()
        .unwrap();
    check(&golden("host.rs"), &host.source);
}

/// Copies the fixture crates (not their build output) to `to`, every file
/// dated an hour back, as files are that a build script last saw long ago.
fn copy_fixtures(to: &Path) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let mut work = vec![PathBuf::new()];
    while let Some(rel) = work.pop() {
        for entry in std::fs::read_dir(fixtures().join(&rel)).unwrap().flatten() {
            let name = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                if entry.file_name() != "target" {
                    std::fs::create_dir_all(to.join(&name)).unwrap();
                    work.push(name);
                }
            } else {
                std::fs::copy(entry.path(), to.join(&name)).unwrap();
                std::fs::File::options().write(true).open(to.join(&name)).unwrap().set_modified(old).unwrap();
            }
        }
    }
}

#[test]
fn what_build_scripts_keep_of_shared_types_is_used_until_the_types_change() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixtures(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let generate = || {
        let module = Module::new().crate_dir(dir.path().join("game")).out_dir(&out).cfg(cfg()).toolchain(TOOLCHAIN);
        let path = module.import("../physics").generate().unwrap();
        std::fs::read_to_string(path).unwrap()
    };
    let first = generate();
    assert_eq!(first, std::fs::read_to_string(golden("game.module.rs")).unwrap(), "the same as without a cache");
    // The shared types crate was kept. Changing what was kept (a field's
    // type, same length) shows that the next run reads it instead of the
    // sources.
    let entries: Vec<PathBuf> =
        std::fs::read_dir(out.join("hcr-types-cache")).unwrap().map(|e| e.unwrap().path()).collect();
    let kept = entries
        .iter()
        .find(|e| std::fs::read_to_string(e).unwrap().contains("tick: u64"))
        .expect("the types crate's entry");
    let text = std::fs::read_to_string(kept).unwrap();
    std::fs::write(kept, text.replace("tick: u64", "tick: u32")).unwrap();
    let poisoned = generate();
    assert_ne!(poisoned, first, "the kept types were used");
    // A change to the types crate's sources is seen, whatever was kept.
    let world = dir.path().join("types/src/world.rs");
    let source = std::fs::read_to_string(&world).unwrap();
    std::fs::write(&world, source.replace("pub tick: u64,", "pub tick: u64,\n    pub frame: u32,")).unwrap();
    let changed = generate();
    assert_ne!(changed, first, "a new field changes the hashes");
    assert_ne!(changed, poisoned);
    // Put back as it was: the first output again.
    std::fs::write(&world, source).unwrap();
    assert_eq!(generate(), first);
}

fn cargo(args: &[&str]) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The target directory comes first: what follows `--` is the program's.
    let (command, rest) = args.split_first().expect("a cargo command");
    Command::new(cargo)
        .current_dir(fixtures())
        .arg(command)
        .arg("--target-dir")
        .arg(target_dir())
        .args(rest)
        .env_remove("CARGO_TARGET_DIR")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run cargo")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The descriptor of `module`, read from its library file as the runtime
/// reads it before opening it: (flags, fingerprint).
fn descriptor_from_file(library: &Path, module: &str) -> (u32, String) {
    use object::{Object, ObjectSection, ObjectSymbol};
    let data = std::fs::read(library).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let symbol = format!("{}{module}", hcr_abi::DESCRIPTOR_SYMBOL_PREFIX);
    let exported: Vec<String> =
        file.dynamic_symbols().filter(|s| s.is_definition()).filter_map(|s| s.name().ok().map(str::to_owned)).collect();
    assert!(exported.contains(&symbol), "{symbol} is not exported");
    assert!(!exported.iter().any(|s| s == hcr_abi::DESCRIPTOR_SYMBOL), "the unsuffixed name would clash in a host");
    assert!(exported.iter().any(|s| s == &format!("__hcr_{module}__update") || s == &format!("__hcr_{module}__step")));
    let address = file.dynamic_symbols().find(|s| s.name() == Ok(symbol.as_str())).unwrap().address();
    let size = size_of::<hcr_abi::ModuleDescriptor>() as u64;
    let bytes =
        file.sections().find_map(|s| s.data_range(address, size).ok().flatten()).expect("descriptor in the file");
    assert_eq!(&bytes[..8], &hcr_abi::MAGIC);
    let at = |offset: usize| u32::from_ne_bytes(bytes[offset..offset + 4].try_into().unwrap());
    let flags = at(std::mem::offset_of!(hcr_abi::ModuleDescriptor, flags));
    let len = at(std::mem::offset_of!(hcr_abi::ModuleDescriptor, fingerprint_len)) as usize;
    let start = std::mem::offset_of!(hcr_abi::ModuleDescriptor, fingerprint);
    (flags, text(&bytes[start..start + len]))
}

#[test]
fn the_fixture_workspace_builds_hot_and_static_and_runs() {
    // Hot: the host links both module crates (to name their types) and
    // cargo builds their libraries.
    let hot = cargo(&["build", "-p", "sim-host"]);
    assert!(hot.status.success(), "hot build failed:\n{}", text(&hot.stderr));
    assert!(!text(&hot.stderr).contains("warning"), "{}", text(&hot.stderr));
    let deps = target_dir().join("debug/deps");
    for module in ["game", "physics"] {
        let library = deps.join(format!("{}{module}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
        let (flags, fingerprint) = descriptor_from_file(&library, module);
        assert_eq!(flags, hcr_abi::ModuleFlags::RUST_ABI.union(hcr_abi::ModuleFlags::HOST_ALLOCATOR).0);
        assert!(fingerprint.starts_with("rustc ") && fingerprint.contains("; panic="), "{fingerprint}");
        assert!(fingerprint.ends_with(&format!("; hcr-abi {}", hcr_abi::VERSION)), "{fingerprint}");
    }

    // Static: the same host source calls the modules directly.
    let run = cargo(&["run", "-q", "-p", "sim-host", "--no-default-features", "--features", "static"]);
    let stdout = text(&run.stdout);
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "static run failed:\n{stdout}\n{stderr}");
    let expected = [
        "hot: false",
        "update: [Spawned(1), Quit]",
        "pos: Vec2 { x: 0.5, y: 1.0 }",
        "try_update: Ok(2)",
        "update_ptr: Ok(2)",
        "tick: 5 Some(6)",
        "describe: tick 3 with 1 bodies",
        "first_key: Some(120)",
        "total: (6, 3)",
        "parse: Ok(Score(42)) true",
        "area: 3.142",
        "summarize: [\"a\"]",
        "log_to: [\"line 0\", \"line 1\"]",
        "peek: 7",
        "record: 1",
        "gravity_y: -9.81",
        "gravity: Vec2 { x: 0.0, y: -9.81 }",
        "step: 4",
        "try_crash: physics / explode / physics exploded at 3",
        "try_fail: game / fail / game failed: on purpose",
        "version: \"game 1\"",
        "done",
    ];
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "stderr:\n{stderr}");
    // The panic through two modules was reported once, where it happened
    // (a static build has one panic hook), and passed on as it was.
    assert_eq!(stderr.matches("physics exploded at 3").count(), 1, "{stderr}");
    assert!(!stderr.contains("Box<dyn Any>"), "{stderr}");

    // `<proc>()` raises a proc's panic again in the caller, located at the
    // caller's call site.
    let raise =
        cargo(&["run", "-q", "-p", "sim-host", "--no-default-features", "--features", "static", "--", "--raise"]);
    let stderr = text(&raise.stderr);
    assert_eq!(raise.status.code(), Some(101), "{stderr}");
    let call_line = std::fs::read_to_string(fixtures().join("host/src/main.rs"))
        .unwrap()
        .lines()
        .position(|l| l.contains("hcr::game::refuse(5)"))
        .unwrap()
        + 1;
    assert!(stderr.contains(&format!("panicked at host/src/main.rs:{call_line}:")), "{stderr}");
    assert!(stderr.contains("panic in game::refuse: refused 5"), "{stderr}");
}
