//! The C API: its headers are generated from the source (and checked here),
//! a C host built with the system's C compiler loads and reloads a Rust
//! module, and a Rust host reloads a C module.
//!
//! `HCR_BLESS=1 cargo test -p hcr-runtime --test c_api` rewrites the headers.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{Scratch, TARGET, fixture, fn0, fn1, runtime};

const HOST: &str = env!("HCR_TEST_HOST");

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn include_dir() -> PathBuf {
    manifest_dir().join("include")
}

fn cbindgen_config(guard: &str, source: &str) -> cbindgen::Config {
    let mut config = cbindgen::Config {
        language: cbindgen::Language::C,
        cpp_compat: true,
        include_guard: Some(guard.into()),
        style: cbindgen::Style::Both,
        usize_is_size_t: true,
        documentation_style: cbindgen::DocumentationStyle::C99,
        header: Some(format!(
            "/* Generated from {source}; do not edit.\n * `HCR_BLESS=1 cargo test -p hcr-runtime --test c_api` regenerates it. */"
        )),
        ..cbindgen::Config::default()
    };
    config.enumeration.rename_variants = cbindgen::RenameRule::QualifiedScreamingSnakeCase;
    config
}

/// `hcr_abi.h`: the module contract, from `hcr-abi`.
fn abi_header() -> String {
    let mut config = cbindgen_config("HCR_ABI_H", "hcr-abi/src/lib.rs");
    config.export.include =
        ["ModuleDescriptor", "HostApi", "ReloadEvent", "GlobalMigration", "GlobalImport", "ProcImport"]
            .map(String::from)
            .to_vec();
    // The unwinder declarations of the module-side panic capture.
    config.export.exclude =
        ["UnwindContext", "Trace", "_Unwind_Backtrace", "_Unwind_GetIP", "_Unwind_FindEnclosingFunction"]
            .map(String::from)
            .to_vec();
    // C has one namespace: every name gets the project's prefix.
    for name in [
        "Str",
        "Status",
        "ProcDesc",
        "ProcImport",
        "GlobalDesc",
        "MigrateFn",
        "GlobalMigration",
        "GlobalSlot",
        "GlobalImport",
        "Phase",
        "Outcome",
        "ReloadEvent",
        "HandlerFn",
        "RegisterProcFn",
        "GetProcFn",
        "RegisterGlobalFn",
        "GetGlobalFn",
        "AddHandlerFn",
        "ReportErrorFn",
        "RegisterGlobalMigratingFn",
        "GetServicesFn",
        "Services",
        "AllocFn",
        "DeallocFn",
        "ReallocFn",
        "ReportPanicFn",
        "PanicReport",
        "PanicOrigin",
        "HostApi",
        "InitFn",
        "ModuleDescriptor",
    ] {
        config.export.rename.insert(name.into(), format!("Hcr{name}"));
    }
    for name in ["ABI_MAJOR", "ABI_MINOR", "FINGERPRINT_CAPACITY", "TOOLCHAIN_TEXT_CAPACITY"] {
        config.export.rename.insert(name.into(), format!("HCR_{name}"));
    }
    generate(config, &manifest_dir().join("../hcr-abi/src/lib.rs"))
}

/// `hcr.h`: the runtime's C API, from `src/capi.rs`.
fn host_header() -> String {
    let mut config = cbindgen_config("HCR_H", "hcr-runtime/src/capi.rs");
    config.includes = vec!["hcr_abi.h".into()];
    generate(config, &manifest_dir().join("src/capi.rs"))
}

fn generate(config: cbindgen::Config, source: &Path) -> String {
    let bindings = cbindgen::Builder::new().with_config(config).with_src(source).generate().expect("cbindgen");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn the_c_headers_are_generated_from_the_source() {
    let mut stale = Vec::new();
    for (file, text) in [("hcr_abi.h", abi_header()), ("hcr.h", host_header())] {
        let path = include_dir().join(file);
        if std::env::var_os("HCR_BLESS").is_some() {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(&text) {
            stale.push(file);
        }
    }
    assert!(stale.is_empty(), "{stale:?} differ from the source; regenerate with HCR_BLESS=1");
}

/// The C compiler for the target the tests run on (a cross compiler in the
/// AArch64 lane).
fn c_compiler() -> Command {
    let tool = cc::Build::new()
        .target(TARGET)
        .host(HOST)
        .opt_level(0)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .get_compiler();
    let mut cmd = tool.to_command();
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"]).arg("-I").arg(include_dir());
    cmd
}

fn compile(cmd: &mut Command, what: &str) {
    let out = support::output(cmd).unwrap_or_else(|e| panic!("cannot run the C compiler for {what}: {e}"));
    assert!(
        out.status.success(),
        "compiling {what} failed: {cmd:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn c_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-api");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds the C test module; `step` selects its version.
fn c_module(step: u32) -> PathBuf {
    let out = c_dir().join(format!("libcmod-v{step}{}", std::env::consts::DLL_SUFFIX));
    let mut cmd = c_compiler();
    cmd.args(["-shared", "-fPIC", &format!("-DSTEP={step}"), "-o"])
        .arg(&out)
        .arg(manifest_dir().join("tests/c/module.c"));
    compile(&mut cmd, "the C module");
    out
}

/// Where cargo put this package's cdylib: next to the test binary.
fn runtime_cdylib_dir() -> PathBuf {
    let dir = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let lib = dir.join(format!("{}hcr_runtime{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    assert!(lib.exists(), "the runtime's cdylib is not at {}", lib.display());
    dir
}

/// Runs a program built for the target, through the cargo runner (qemu) if
/// one is configured.
fn target_command(program: &Path) -> Command {
    let runner_var = format!("CARGO_TARGET_{}_RUNNER", TARGET.to_uppercase().replace(['-', '.'], "_"));
    let runner = std::env::var(runner_var).unwrap_or_default();
    let mut parts = runner.split_whitespace();
    match parts.next() {
        Some(runner) => {
            let mut cmd = Command::new(runner);
            cmd.args(parts).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

#[test]
#[cfg(unix)]
fn a_c_host_loads_and_reloads_a_rust_module() {
    let lib_dir = runtime_cdylib_dir();
    let host = c_dir().join("c-host");
    let mut cmd = c_compiler();
    cmd.arg("-o")
        .arg(&host)
        .arg(manifest_dir().join("tests/c/host.c"))
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lhcr_runtime")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    compile(&mut cmd, "the C host");

    let s = Scratch::new("c-host");
    let module = s.install(&fixture("counter", &[]), "counter");
    let v2 = fixture("counter", &["v2"]);
    // The runpath finds this build's runtime; cargo's LD_LIBRARY_PATH, which
    // comes first, also lists `target/<profile>`, where an older build may
    // have left another copy of the library.
    let mut command = target_command(&host);
    command
        .arg(&module)
        .env("HCR_TEST_V2", &v2)
        .env("LD_LIBRARY_PATH", &lib_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = support::spawn(&mut command).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the C host failed: {:?}\n{stdout}\n{stderr}", out.status);
    let lines: Vec<&str> = stdout.lines().collect();
    let expected = [
        "missing module refused: load failed and was rolled back, nothing changed: cannot read module file /nonexistent/libnothing.so",
        "v1: answer(40) = 41, count = 3, COUNT is 8 bytes and holds 3",
        "nothing changed: reloaded 0, generation 0",
        "v2: answer(40) = 42 through the same pointer, count = 3, COUNT at the same address holds 3",
        "reloaded 1 module, generation 1",
        "broken build refused, answer(40) = 42",
        "handlers: 2 before, 1 committed, 1 rolled back, last generation 1",
        "freed",
    ];
    assert_eq!(lines.len(), expected.len(), "{stdout}\n{stderr}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(line.starts_with(want), "expected {want:?}, got {line:?}\n{stdout}\n{stderr}");
    }
}

#[test]
fn a_rust_host_reloads_a_c_module() {
    let (v1, v2) = (c_module(1), c_module(2));
    let s = Scratch::new("c-module");
    let path = s.install(&v1, "cmod");
    let rt = runtime();
    let info = rt.load(&path).unwrap();
    assert_eq!((info.name.as_str(), info.build_id.as_str(), info.procs), ("cmod", "c-test", 4));

    let answer = fn1(&rt, "cmod", "answer");
    let calls = fn0(&rt, "cmod", "calls");
    let held = rt.get_proc("cmod", "answer").unwrap();
    assert_eq!(answer(4), 41);
    assert_eq!(answer(5), 51);
    let global = rt.get_global("cmod", "call_count").unwrap();
    assert_eq!(global.layout().size, 8);
    assert_eq!(global.layout().text, "uint64_t");
    // SAFETY: `call_count` is a `uint64_t` the module updates on this thread.
    let read = || unsafe { *global.as_ptr::<u64>() };
    assert_eq!((calls(), read()), (2, 2));
    assert_eq!(fn0(&rt, "cmod", "only_v1")(), 1);

    s.install(&v2, "cmod");
    let report = rt.perform_reload().unwrap();
    assert_eq!(report.reloaded, ["cmod"]);
    assert_eq!(rt.get_proc("cmod", "answer").unwrap(), held, "the same stub");
    assert_eq!(answer(4), 42, "the pointer taken before the reload runs v2");
    assert_eq!(calls(), 3, "the count survived the reload");
    assert_eq!(rt.get_global("cmod", "call_count").unwrap().as_ptr::<u64>(), global.as_ptr::<u64>());
    assert_eq!(read(), 3);
    let listing = rt.inspect();
    let only_v1 = listing.stubs.iter().find(|s| s.name == "only_v1").unwrap();
    assert_eq!(only_v1.state, hcr_runtime::StubState::Removed);
    let answer_stub = listing.stubs.iter().find(|s| s.name == "answer").unwrap();
    assert_eq!(answer_stub.signature, "uint64_t (uint64_t)");

    // A C module's init can fail with a message, and nothing changes.
    s.install(&c_module(3), "cmod");
    let err = rt.perform_reload().unwrap_err();
    assert!(err.to_string().contains("step 3 is not supported"), "{err}");
    assert_eq!(answer(4), 42);
    assert_eq!(calls(), 4);
}
