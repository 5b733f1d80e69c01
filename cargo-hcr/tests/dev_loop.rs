//! The development loop as a developer meets it: `cargo hcr run` on small
//! workspaces (a host and a module that use this repository's hcr crates,
//! built by cargo in a target directory the tests share), edits that reload,
//! edits that do not compile, warnings, saves that change nothing, the
//! host's own edits, Ctrl-C; `cargo hcr new`; and how cargo builds a module
//! that the host lists as an ordinary dependency.
#![cfg(target_os = "linux")]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

mod support;
use support::{Running, Stream};

/// The first build of a scratch workspace, when the hcr crates are not
/// built yet in the tests' target directory (the dependencies of
/// hcr-runtime and hcr-build): 170 to 220 s measured on two cores shared
/// with other builds (the tests wait for each other's builds too), three
/// times that.
const FIRST_BUILD: Duration = Duration::from_secs(600);
/// A build of one small crate (a module, a host) or less: under 2 s on two
/// busy cores, with a wide margin for a machine shared with other builds.
const REBUILD: Duration = Duration::from_secs(60);

/// The repository's root.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Where the tests build: one target directory shared by every test and
/// every run, so that the hcr crates are built once.
fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("cargo-hcr")
}

fn target_dir() -> PathBuf {
    tests_dir().join("target")
}

/// A dependency on one of this repository's crates.
fn hcr_dep(krate: &str) -> String {
    format!("{{ path = {:?} }}", repository().join(krate).to_str().unwrap())
}

/// A module crate and a host crate that calls the module's `behaviour()`
/// every 20 ms and prints `behaviour <n>` (and its own `host <version>`);
/// given an argument, the host exits with that code after the first call.
/// With `workspace`, a workspace root lists both; without, the host is a
/// package of its own and the module a path dependency outside it.
struct Scratch {
    root: PathBuf,
    module: String,
    host: String,
}

impl Scratch {
    fn new(name: &str, module: &str, host: &str) -> Scratch {
        Scratch::create(name, module, host, true)
    }

    fn create(name: &str, module: &str, host: &str, workspace: bool) -> Scratch {
        let root = tests_dir().join(name);
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        let host_manifest = format!(
            "[package]\nname = \"{host}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\nhcr-runtime = {}\n{module} = {{ path = \"../{module}\" }}\n\n\
             [build-dependencies]\nhcr-build = {}\n{}",
            hcr_dep("hcr-runtime"),
            hcr_dep("hcr-build"),
            if workspace { "" } else { "\n[workspace]\n" }
        );
        let mut files = vec![
            (
                format!("{module}/Cargo.toml"),
                format!(
                    "[package]\nname = \"{module}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
                     [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n\
                     [dependencies]\nhcr-abi = {}\n\n[build-dependencies]\nhcr-build = {}\n",
                    hcr_dep("hcr-abi"),
                    hcr_dep("hcr-build")
                ),
            ),
            (format!("{module}/build.rs"), "fn main() {\n    hcr_build::Module::new().build();\n}\n".into()),
            (format!("{module}/src/lib.rs"), module_source("1")),
            (format!("{host}/Cargo.toml"), host_manifest),
            (
                format!("{host}/build.rs"),
                format!(
                    "fn main() {{\n    hcr_build::Host::new().module(\"../{module}\").static_feature(None).build();\n}}\n"
                ),
            ),
            (format!("{host}/src/main.rs"), host_source(&module.replace('-', "_"), 1)),
        ];
        if workspace {
            files.push((
                "Cargo.toml".into(),
                format!("[workspace]\nresolver = \"3\"\nmembers = [\"{module}\", \"{host}\"]\n"),
            ));
        }
        for (file, text) in files {
            let file = root.join(file);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        // The repository's lock file: the same versions as the repository.
        let lock = if workspace { root.join("Cargo.lock") } else { root.join(host).join("Cargo.lock") };
        std::fs::copy(repository().join("Cargo.lock"), lock).unwrap();
        Scratch { root, module: module.to_owned(), host: host.to_owned() }
    }

    fn module_file(&self, file: &str) -> PathBuf {
        self.root.join(&self.module).join(file)
    }

    /// Rewrites the module's `behaviour()` to return `body`.
    fn set_behaviour(&self, body: &str) {
        std::fs::write(self.module_file("src/lib.rs"), module_source(body)).unwrap();
    }

    /// Starts `cargo-hcr` (as cargo runs it: `cargo-hcr hcr run ...`) in
    /// `dir`, with `args` after `run`.
    fn cargo_hcr_in(&self, dir: &Path, args: &[&str]) -> Running {
        cargo_hcr(dir, &[&["hcr", "run"], args].concat())
    }

    /// `cargo hcr run -p <host> -- <host_args>` in the workspace.
    fn cargo_hcr(&self, host_args: &[&str]) -> Running {
        let _ = std::fs::remove_file(self.trace());
        let args = [&["hcr", "run", "-p", &self.host, "--"], host_args].concat();
        cargo_hcr_traced(&self.root, &args, Some(&self.trace()))
    }

    /// The trace file (`CARGO_HCR_TRACE`) of the workspace's sessions.
    fn trace(&self) -> PathBuf {
        self.root.join("trace.tsv")
    }

    /// Waits for a trace event `event` about `file`.
    fn wait_trace(&self, event: &str, file: &Path, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let wanted = format!("\t{event}\t{}", file.display());
        while !std::fs::read_to_string(self.trace()).unwrap_or_default().lines().any(|l| l.ends_with(&wanted)) {
            assert!(Instant::now() < deadline, "no {event} of {} traced", file.display());
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Starts `cargo-hcr` with `args` in `dir`.
fn cargo_hcr(dir: &Path, args: &[&str]) -> Running {
    cargo_hcr_traced(dir, args, None)
}

/// Starts `cargo-hcr` with `args` in `dir`, tracing to `trace`.
fn cargo_hcr_traced(dir: &Path, args: &[&str], trace: Option<&Path>) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-hcr"));
    match trace {
        Some(trace) => command.env("CARGO_HCR_TRACE", trace),
        None => command.env_remove("CARGO_HCR_TRACE"),
    };
    command.args(args).current_dir(dir).env("CARGO_TARGET_DIR", target_dir());
    Running::spawn(command)
}

fn module_source(body: &str) -> String {
    format!(
        "//! The module under test.\n\n\
         include!(concat!(env!(\"OUT_DIR\"), \"/hcr_module.rs\"));\n\n\
         /// What the host prints.\n\
         #[unsafe(no_mangle)]\n\
         pub extern \"C\" fn behaviour() -> u64 {{\n    {body}\n}}\n"
    )
}

fn host_source(module: &str, version: u32) -> String {
    format!(
        "mod hcr {{\n    include!(concat!(env!(\"OUT_DIR\"), \"/hcr.rs\"));\n}}\n\n\
         fn main() {{\n\
         \x20   let hcr = hcr::Hcr::start().expect(\"the runtime starts\");\n\
         \x20   println!(\"host pid {{}}\", std::process::id());\n\
         \x20   println!(\"host {version}\");\n\
         \x20   for var in [\"HCR_WATCH\", \"HCR_REPORT_FILE\", \"HCR_SETTLE_MS\"] {{\n\
         \x20       println!(\"host env {{var}}={{}}\", std::env::var(var).unwrap_or_default());\n\
         \x20   }}\n\
         \x20   loop {{\n\
         \x20       if let Some(Err(e)) = hcr.update() {{\n\
         \x20           eprintln!(\"host: {{e}}\");\n\
         \x20       }}\n\
         \x20       println!(\"behaviour {{}}\", hcr::{module}::behaviour());\n\
         \x20       if let Some(code) = std::env::args().nth(1) {{\n\
         \x20           std::process::exit(code.parse().unwrap());\n\
         \x20       }}\n\
         \x20       std::thread::sleep(std::time::Duration::from_millis(20));\n\
         \x20   }}\n\
         }}\n"
    )
}

/// Whether process `pid` exists and has not exited (a zombie has exited).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits up to `timeout` for process `pid` to be gone; whether it is.
fn gone_within(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The running processes whose command line contains every one of `parts`.
fn processes_with(parts: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if parts.iter().all(|p| cmdline.contains(p)) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Sends `signal` to the running `cargo-hcr`.
/// A library's debug information: its strings (as text) and the size of
/// all its `.debug_*` sections.
fn debug_info(library: &Path) -> (String, u64) {
    use object::{Object as _, ObjectSection as _};
    let bytes = std::fs::read(library).unwrap();
    let file = object::File::parse(bytes.as_slice()).unwrap();
    let mut text = String::new();
    let mut size = 0;
    for section in file.sections() {
        let name = section.name().unwrap_or_default();
        if name.starts_with(".debug_") {
            size += section.size();
        }
        if name == ".debug_str" || name == ".debug_line_str" {
            text.push_str(&String::from_utf8_lossy(section.data().unwrap_or_default()));
        }
    }
    (text, size)
}

/// A build script that generates the registration, then takes its time.
const SLOW_BUILD_SCRIPT: &str = "fn main() {\n    hcr_build::Module::new().build();\n    \
                                 std::thread::sleep(std::time::Duration::from_secs(600));\n}\n";

#[test]
fn edit_reload_break_and_stop() {
    let scratch = Scratch::new("loop", "probe", "probe-host");
    let mut hcr = scratch.cargo_hcr(&[]);
    let (err, out) = (Stream::Err, Stream::Out);

    hcr.wait_for(0, out, FIRST_BUILD, |l| l == "behaviour 1");
    let before = hcr.status_since(0);
    assert_eq!(before.first().copied(), Some("[hcr] building probe, probe-host..."), "{}", hcr.transcript());
    assert!(before.iter().any(|l| l.starts_with("[hcr] built probe, probe-host in ")), "{}", hcr.transcript());
    assert!(before.iter().any(|l| l.ends_with(", watching probe")), "found from the host's dependencies");
    let host_pid = hcr.host_pid(0, REBUILD);
    hcr.wait_for(0, out, REBUILD, |l| l == "host env HCR_WATCH=1");
    if cfg!(target_arch = "x86_64") {
        // rustc links with LLD there, which replaces its output with a rename.
        hcr.wait_for(0, out, REBUILD, |l| l == "host env HCR_SETTLE_MS=0");
    }
    let report_line = hcr.wait_for(0, out, REBUILD, |l| l.starts_with("host env HCR_REPORT_FILE=/"));
    let report_file = PathBuf::from(&hcr.seen[report_line].1["host env HCR_REPORT_FILE=".len()..]);
    let report_dir = report_file.parent().unwrap().to_owned();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&report_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the report directory is private");
    }

    // The first edit: the module alone is compiled, by rustc directly (its
    // build script first), and the host runs the new code.
    let library = target_dir().join("debug/deps/libprobe.so");
    let cargo_built = debug_info(&library);
    let edit = hcr.seen.len();
    scratch.set_behaviour("2");
    let built = hcr.wait_for(edit, err, REBUILD, |l| l.starts_with("[hcr] built probe in "));
    assert!(hcr.seen[built].1.contains("(build script "), "{}", hcr.transcript());
    assert!(hcr.seen[built].1.ends_with(" ms)"), "{}", hcr.transcript());
    hcr.wait_for(edit, err, REBUILD, |l| l.starts_with("[hcr] reloaded 1 module(s) in "));
    hcr.wait_for(edit, out, REBUILD, |l| l == "behaviour 2");
    let statuses = hcr.status_since(edit);
    assert!(!statuses.iter().any(|l| l.contains("cargo")), "no cargo, nothing else compiled: {statuses:?}");
    if cfg!(target_arch = "x86_64") {
        // The module's own debug information is there; that of the
        // toolchain's libraries, most of what cargo's build carried, is not.
        let (own, size) = debug_info(&library);
        assert!(own.contains("probe/src/lib.rs"), "the module's own lines");
        assert!(size * 2 < cargo_built.1, "debug information: {size} bytes, {} from cargo", cargo_built.1);
    }

    // An edit that does not compile: the errors, and the old code goes on.
    let broken = hcr.seen.len();
    scratch.set_behaviour("2 +");
    hcr.wait_for(broken, err, REBUILD, |l| l == "[hcr] build failed");
    hcr.wait_for(broken, err, REBUILD, |l| l.contains("expected expression"));
    hcr.wait_for(broken, err, REBUILD, |l| l.contains("could not compile `probe` (lib) due to 1 previous error"));
    hcr.wait_for(broken, err, REBUILD, |l| {
        l == "[hcr] the host keeps running its old code, with its state: fix the errors and save again"
    });
    let after = hcr.seen.len();
    hcr.wait_for(after, out, REBUILD, |l| l == "behaviour 2");
    let outputs = hcr.lines_since(broken, out);
    assert!(outputs.iter().all(|l| *l == "behaviour 2"), "only the old code ran: {outputs:?}");
    assert!(alive(host_pid));

    // Fixed, with a warning: shown once, as rustc renders it, and the fix
    // reloads.
    let fixed = hcr.seen.len();
    scratch.set_behaviour("let unused = 0;\n    3");
    hcr.wait_for(fixed, err, REBUILD, |l| l.starts_with("[hcr] built probe in "));
    hcr.wait_for(fixed, err, REBUILD, |l| l.starts_with("[hcr] reloaded 1 module(s) in "));
    hcr.wait_for(fixed, out, REBUILD, |l| l == "behaviour 3");
    let warnings = hcr.lines_since(fixed, err);
    assert_eq!(warnings.iter().filter(|l| l.contains("unused variable: `unused`")).count(), 1, "{warnings:?}");
    assert_eq!(warnings.iter().filter(|l| **l == "warning: `probe` (lib) generated 1 warning").count(), 1);

    // A write that changes nothing (the same bytes over the same bytes)
    // builds nothing; then an edit builds once.
    let same = hcr.seen.len();
    let lib = scratch.module_file("src/lib.rs");
    {
        use std::io::Write;
        let bytes = std::fs::read(&lib).unwrap();
        std::fs::OpenOptions::new().write(true).open(&lib).unwrap().write_all(&bytes).unwrap();
    }
    scratch.wait_trace("unchanged", &lib, REBUILD);
    scratch.set_behaviour("4");
    hcr.wait_for(same, out, REBUILD, |l| l == "behaviour 4");
    let builds: Vec<&str> = hcr.status_since(same).into_iter().filter(|l| l.starts_with("[hcr] building")).collect();
    assert_eq!(builds, ["[hcr] building probe..."], "{}", hcr.transcript());

    // A change that leaves the library as it was: a file the compiler
    // does not read (any change of a module's code changes its build id).
    let comment = hcr.seen.len();
    std::fs::write(scratch.module_file("src/notes.md"), "Notes.\n").unwrap();
    hcr.wait_for(comment, err, REBUILD, |l| l == "[hcr] built probe: the library is unchanged");
    let refused: Vec<&str> = hcr.lines_since(0, err).into_iter().filter(|l| l.contains("refused")).collect();
    assert!(refused.is_empty(), "no reload was refused: {refused:?}\n{}", hcr.transcript());

    // Ctrl-C in the middle of a build (its new build script sleeps): cargo-hcr,
    // the build and the host stop, and clean up.
    let slow = hcr.seen.len();
    std::fs::write(scratch.module_file("build.rs"), SLOW_BUILD_SCRIPT).unwrap();
    hcr.wait_for(slow, err, REBUILD, |l| l == "[hcr] building probe...");
    let script = ["/build/probe-", "build-script-build"];
    let deadline = Instant::now() + REBUILD;
    let script_pids = loop {
        let pids = processes_with(&script);
        if !pids.is_empty() {
            break pids;
        }
        assert!(Instant::now() < deadline, "the build script never ran:\n{}", hcr.transcript());
        thread::sleep(Duration::from_millis(50));
    };
    hcr.signal(libc::SIGINT);
    let status = hcr.wait_exit(REBUILD);
    assert_eq!(status.code(), Some(130), "{}", hcr.transcript());
    assert_eq!(hcr.lines_since(0, err).last().copied(), Some("[hcr] stopped"), "{}", hcr.transcript());
    assert!(!alive(host_pid), "the host was left running");
    for pid in script_pids {
        assert!(gone_within(pid, Duration::from_secs(5)), "the build's process {pid} was left running");
    }
    assert!(!report_dir.exists(), "the report directory is removed");
}

#[test]
fn the_hosts_own_edits_restart_it_unless_told_not_to() {
    let scratch = Scratch::new("restart", "restart-probe", "restart-host");
    let main = scratch.root.join("restart-host/src/main.rs");
    let mut hcr = scratch.cargo_hcr(&[]);
    let first = hcr.host_pid(0, FIRST_BUILD);
    hcr.wait_for(0, Stream::Out, REBUILD, |l| l == "host 1");

    let edit = hcr.seen.len();
    std::fs::write(&main, host_source("restart_probe", 2)).unwrap();
    hcr.wait_for(edit, Stream::Err, REBUILD, |l| {
        l == "[hcr] restart-host's own code changed: restarting it, its state is not kept (--no-restart keeps the running host)"
    });
    let second = hcr.host_pid(edit, REBUILD);
    hcr.wait_for(edit, Stream::Out, REBUILD, |l| l == "host 2");
    assert_ne!(first, second);
    assert!(gone_within(first, REBUILD), "the old host was stopped");
    hcr.signal(libc::SIGINT);
    assert_eq!(hcr.wait_exit(REBUILD).code(), Some(130), "{}", hcr.transcript());

    // With --no-restart, the host keeps running, and says why.
    let mut hcr = scratch.cargo_hcr_in(&scratch.root, &["-p", "restart-host", "--no-restart"]);
    let pid = hcr.host_pid(0, REBUILD);
    let edit = hcr.seen.len();
    std::fs::write(&main, host_source("restart_probe", 3)).unwrap();
    hcr.wait_for(edit, Stream::Err, REBUILD, |l| {
        l.contains("restart-host's own sources changed: it keeps running its old code (--no-restart)")
    });
    // The module still reloads.
    std::fs::write(scratch.module_file("src/lib.rs"), module_source("5")).unwrap();
    hcr.wait_for(edit, Stream::Out, REBUILD, |l| l == "behaviour 5");
    assert!(alive(pid));
    assert!(!hcr.lines_since(edit, Stream::Out).contains(&"host 3"), "{}", hcr.transcript());
    hcr.signal(libc::SIGINT);
    assert_eq!(hcr.wait_exit(REBUILD).code(), Some(130), "{}", hcr.transcript());
}

#[test]
fn a_host_without_a_workspace_root() {
    let scratch = Scratch::create("standalone", "lone-probe", "lone-host", false);
    // In the host's directory, without -p: the host is found.
    let mut hcr = scratch.cargo_hcr_in(&scratch.root.join("lone-host"), &[]);
    hcr.wait_for(0, Stream::Out, FIRST_BUILD, |l| l == "behaviour 1");
    let edit = hcr.seen.len();
    scratch.set_behaviour("7");
    hcr.wait_for(edit, Stream::Out, REBUILD, |l| l == "behaviour 7");
    hcr.signal(libc::SIGINT);
    assert_eq!(hcr.wait_exit(REBUILD).code(), Some(130), "{}", hcr.transcript());
}

#[test]
fn a_killed_cargo_hcr_takes_the_host_with_it() {
    let scratch = Scratch::new("killed", "killed-probe", "killed-host");
    let mut hcr = scratch.cargo_hcr(&[]);
    let host_pid = hcr.host_pid(0, FIRST_BUILD);
    assert!(alive(host_pid));
    // No chance to clean up: the kernel stops the host (PR_SET_PDEATHSIG).
    hcr.signal(libc::SIGKILL);
    let status = hcr.wait_exit(REBUILD);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(gone_within(host_pid, Duration::from_secs(5)), "the host outlived cargo-hcr");
}

#[test]
fn a_first_build_that_fails_runs_nothing() {
    let scratch = Scratch::new("broken", "broken-probe", "broken-host");
    scratch.set_behaviour("1 +");
    let mut hcr = scratch.cargo_hcr(&[]);
    let status = hcr.wait_exit(FIRST_BUILD);
    assert!(!status.success(), "{}", hcr.transcript());
    let err = hcr.lines_since(0, Stream::Err);
    assert!(err.contains(&"[hcr] build failed"), "{}", hcr.transcript());
    assert!(err.iter().any(|l| l.contains("expected expression")), "{}", hcr.transcript());
    assert!(!err.iter().any(|l| l.starts_with("[hcr] running")), "{}", hcr.transcript());
    assert_eq!(
        err.last().copied(),
        Some("[hcr] error: the build failed: fix the errors above and run again"),
        "{}",
        hcr.transcript()
    );
    assert!(hcr.lines_since(0, Stream::Out).is_empty(), "no host ran: {}", hcr.transcript());
}

#[test]
fn the_host_gets_its_arguments_and_its_exit_status_is_passed_on() {
    let scratch = Scratch::new("exiting", "exiting-probe", "exiting-host");
    let mut hcr = scratch.cargo_hcr(&["7"]);
    let status = hcr.wait_exit(FIRST_BUILD);
    assert_eq!(status.code(), Some(7), "{}", hcr.transcript());
    assert_eq!(hcr.lines_since(0, Stream::Out).last().copied(), Some("behaviour 1"), "{}", hcr.transcript());
    let err = hcr.lines_since(0, Stream::Err);
    assert_eq!(err.last().copied(), Some("[hcr] the host exited (exit status: 7)"), "{}", hcr.transcript());
}

#[test]
fn mistakes_stop_with_the_next_step() {
    let scratch = Scratch::new("mistakes", "mistake-probe", "mistake-host");
    let mut hcr = scratch.cargo_hcr_in(&scratch.root, &["-p", "nothing"]);
    assert_eq!(hcr.wait_exit(FIRST_BUILD).code(), Some(1));
    assert_eq!(
        hcr.lines_since(0, Stream::Err),
        ["[hcr] error: no package `nothing` in this workspace: choose one of mistake-host, mistake-probe"]
    );
    let mut hcr = scratch.cargo_hcr_in(&scratch.root, &["-p", "mistake-probe"]);
    assert_eq!(hcr.wait_exit(FIRST_BUILD).code(), Some(1));
    assert_eq!(
        hcr.lines_since(0, Stream::Err),
        ["[hcr] error: package `mistake-probe` has no binary target: name the host package with -p"]
    );
}

#[test]
fn new_then_run_then_edit() {
    let dir = tests_dir().join("new");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    let mut new = cargo_hcr(&dir, &["hcr", "new", "orbit", "--hcr-path", repository().to_str().unwrap()]);
    assert!(new.wait_exit(REBUILD).success(), "{}", new.transcript());
    assert_eq!(
        new.lines_since(0, Stream::Err).last().copied(),
        Some("[hcr] next: cd orbit && cargo hcr run, then edit orbit-logic/src/lib.rs and save")
    );
    let root = dir.join("orbit");
    std::fs::copy(repository().join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
    let mut hcr = cargo_hcr(&root, &["hcr", "run"]);
    hcr.wait_for(0, Stream::Out, FIRST_BUILD, |l| l == "tick 2");
    let lib = root.join("orbit-logic/src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let edit = hcr.seen.len();
    let times = |n: u64| source.replace("state.ticks)", &format!("state.ticks * {n})"));
    assert_ne!(times(1000), source, "the template returns `state.ticks`");
    std::fs::write(&lib, times(1000)).unwrap();
    hcr.wait_for(edit, Stream::Err, REBUILD, |l| l.starts_with("[hcr] reloaded 1 module(s)"));
    // The host's state carried on; the new code multiplies it.
    let multiple = |of: u64| {
        move |l: &str| {
            l.strip_prefix("tick ").and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 3 * of && n % of == 0)
        }
    };
    hcr.wait_for(edit, Stream::Out, REBUILD, multiple(1000));

    // A panic in the module: reported with its location, by the host
    // (`try_tick`) and by cargo-hcr; the host goes on, and the fix reloads.
    let panic = hcr.seen.len();
    let panicking = times(1000).replace(
        "    state.ticks += 1;\n",
        "    state.ticks += 1;\n    assert!(state.ticks < 3, \"too many ticks\");\n",
    );
    std::fs::write(&lib, panicking).unwrap();
    let location = "panic in orbit_logic::tick at orbit-logic/src/lib.rs:21:5: too many ticks";
    hcr.wait_for(panic, Stream::Err, REBUILD, |l| l.starts_with(location));
    hcr.wait_for(panic, Stream::Err, REBUILD, |l| l.starts_with(&format!("[hcr] {location}")));
    let fixed = hcr.seen.len();
    std::fs::write(&lib, times(7000)).unwrap();
    hcr.wait_for(fixed, Stream::Out, REBUILD, multiple(7000));
    hcr.signal(libc::SIGINT);
    assert_eq!(hcr.wait_exit(REBUILD).code(), Some(130), "{}", hcr.transcript());

    // The static build of the same workspace links the module in.
    let output = Command::new(env!("CARGO"))
        .args(["build", "--no-default-features", "--features", "static"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// The module of a host that lists it under `[dependencies]` is compiled
/// once, by one rustc for both its crate types, in the host's profile, and
/// leaves one library behind, in debug and release builds.
#[test]
fn cargo_builds_a_module_once() {
    let scratch = Scratch::new("once", "once-probe", "once-host");
    for profile in [&[][..], &["--release"]] {
        // A new source, so that the module is compiled.
        std::fs::write(scratch.module_file("src/lib.rs"), module_source(&format!("{}", profile.len() + 10))).unwrap();
        let output = Command::new(env!("CARGO"))
            .args(["build", "-v", "-p", "once-host"])
            .args(profile)
            .current_dir(&scratch.root)
            .env("CARGO_TARGET_DIR", target_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let compiles: Vec<&str> = stderr.lines().filter(|l| l.contains("--crate-name once_probe ")).collect();
        assert_eq!(compiles.len(), 1, "{profile:?}: {compiles:#?}");
        assert!(compiles[0].contains("--crate-type cdylib --crate-type rlib"), "{}", compiles[0]);
        assert!(!stderr.contains("collision"), "{stderr}");
        let deps = target_dir().join(if profile.is_empty() { "debug" } else { "release" }).join("deps");
        let copies: Vec<String> = std::fs::read_dir(&deps)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("libonce_probe"))
            .collect();
        assert_eq!(copies.len(), 2, "one cdylib and one rlib: {copies:?}");
    }
}
