//! The development loop as a developer meets it: `cargo hcr run` on a small
//! workspace (a host and a module that use this repository's hcr crates),
//! an edit that reloads, an edit that does not compile, and Ctrl-C.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// Building the hcr crates the first time, in a target directory of their
/// own, takes a while on a small machine.
const FIRST_BUILD: Duration = Duration::from_secs(1200);
/// A rebuild of one tiny module, and anything shorter.
const REBUILD: Duration = Duration::from_secs(300);

/// The repository's root.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Where the tests build: one target directory shared by every test and
/// every run, so that the hcr crates are built once.
fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("cargo-hcr")
}

/// A workspace with a module crate and a host crate that calls the module's
/// `behaviour()` every 20 ms and prints `behaviour <n>`; given an argument,
/// it exits with that code after the first call.
struct Scratch {
    root: PathBuf,
    module: String,
}

impl Scratch {
    fn new(name: &str, module: &str, host: &str) -> Scratch {
        let root = tests_dir().join(name);
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        let repo = repository();
        let path = |krate: &str| format!("{{ path = {:?} }}", repo.join(krate).to_str().unwrap());
        let files = [
            ("Cargo.toml", format!("[workspace]\nresolver = \"3\"\nmembers = [\"{module}\", \"{host}\"]\n")),
            (
                &format!("{module}/Cargo.toml"),
                format!(
                    "[package]\nname = \"{module}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
                     [lib]\ncrate-type = [\"cdylib\"]\n\n\
                     [dependencies]\nhcr-abi = {}\n\n[build-dependencies]\nhcr-build = {}\n",
                    path("hcr-abi"),
                    path("hcr-build")
                ),
            ),
            (&format!("{module}/build.rs"), "fn main() {\n    hcr_build::Module::new().build();\n}\n".into()),
            (&format!("{module}/src/lib.rs"), module_source("1")),
            (
                &format!("{host}/Cargo.toml"),
                format!(
                    "[package]\nname = \"{host}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
                     [dependencies]\nhcr-runtime = {}\n\n\
                     [build-dependencies]\nhcr-build = {}\n{module} = {{ path = \"../{module}\" }}\n",
                    path("hcr-runtime"),
                    path("hcr-build")
                ),
            ),
            (
                &format!("{host}/build.rs"),
                format!("fn main() {{\n    hcr_build::Host::new().module(\"../{module}\").build();\n}}\n"),
            ),
            (&format!("{host}/src/main.rs"), host_source(&module.replace('-', "_"))),
        ];
        for (file, text) in files {
            let file = root.join(file);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        // The repository's lock file: the build needs no network.
        std::fs::copy(repo.join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
        Scratch { root, module: module.to_owned() }
    }

    /// Rewrites the module's `behaviour()` to return `body`.
    fn set_behaviour(&self, body: &str) {
        std::fs::write(self.root.join(&self.module).join("src/lib.rs"), module_source(body)).unwrap();
    }

    /// Rewrites the module's build script.
    fn set_build_script(&self, text: &str) {
        std::fs::write(self.root.join(&self.module).join("build.rs"), text).unwrap();
    }

    /// Starts `cargo-hcr` (as cargo runs it: `cargo-hcr hcr run ...`) in the
    /// workspace.
    fn cargo_hcr(&self, host: &str, host_args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cargo-hcr"))
            .args(["hcr", "run", "-p", host, "--"])
            .args(host_args)
            .current_dir(&self.root)
            .env("CARGO_TARGET_DIR", tests_dir().join("target"))
            .env("CARGO_NET_OFFLINE", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for (stream, pipe) in [
            (Stream::Out, Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>),
            (Stream::Err, Box::new(child.stderr.take().unwrap())),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((stream, line)).is_err() {
                        break;
                    }
                }
            });
        }
        Running { child, lines, seen: Vec::new() }
    }
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

fn host_source(module: &str) -> String {
    format!(
        "mod hcr {{\n    include!(concat!(env!(\"OUT_DIR\"), \"/hcr.rs\"));\n}}\n\n\
         fn main() {{\n\
         \x20   let hcr = hcr::Hcr::start().expect(\"the runtime starts\");\n\
         \x20   println!(\"host pid {{}}\", std::process::id());\n\
         \x20   for var in [\"HCR_WATCH\", \"HCR_REPORT_FILE\"] {{\n\
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// A running `cargo-hcr` and every line it (and the host) printed.
struct Running {
    child: Child,
    lines: Receiver<(Stream, String)>,
    seen: Vec<(Stream, String)>,
}

impl Running {
    /// The index of the first line at or after `from` on `stream` that
    /// satisfies `wanted`, waiting up to `timeout` for it.
    fn wait_for(&mut self, from: usize, stream: Stream, timeout: Duration, wanted: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + timeout;
        let mut next = from;
        loop {
            if let Some(found) = self.seen[next..].iter().position(|(s, line)| *s == stream && wanted(line)) {
                return next + found;
            }
            next = self.seen.len();
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("not seen in {timeout:?} on {stream:?}; everything:\n{}", self.transcript()),
            }
        }
    }

    /// Every line so far, marked by stream.
    fn transcript(&self) -> String {
        self.seen
            .iter()
            .map(|(s, line)| format!("{}| {line}\n", if *s == Stream::Out { "out" } else { "err" }))
            .collect()
    }

    /// The lines so far on `stream` from `from` on.
    fn lines_since(&self, from: usize, stream: Stream) -> Vec<&str> {
        self.seen[from..].iter().filter(|(s, _)| *s == stream).map(|(_, line)| line.as_str()).collect()
    }

    /// Waits for `cargo-hcr` to exit, reading the rest of its output.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipes close once the host is gone too.
                while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    self.seen.push(line);
                }
                return status;
            }
            assert!(Instant::now() < deadline, "cargo-hcr did not exit; everything:\n{}", self.transcript());
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // After a failure: the host dies with cargo-hcr.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
fn signal(hcr: &Running, signal: libc::c_int) {
    // SAFETY: `kill` has no memory-safety preconditions; the child is not
    // reaped, so its id is still its own.
    assert_eq!(unsafe { libc::kill(hcr.child.id() as libc::pid_t, signal) }, 0);
}

/// A build script that generates the registration, then takes its time.
const SLOW_BUILD_SCRIPT: &str = "fn main() {\n    hcr_build::Module::new().build();\n    \
                                 std::thread::sleep(std::time::Duration::from_secs(600));\n}\n";

#[test]
fn edit_reload_break_and_stop() {
    let scratch = Scratch::new("loop", "probe", "probe-host");
    let mut hcr = scratch.cargo_hcr("probe-host", &[]);
    let err = Stream::Err;
    let out = Stream::Out;

    hcr.wait_for(0, out, FIRST_BUILD, |l| l == "behaviour 1");
    let before = hcr.lines_since(0, err);
    assert_eq!(before.first().copied(), Some("[hcr] building probe, probe-host..."), "{}", hcr.transcript());
    assert!(before.iter().any(|l| l.starts_with("[hcr] built probe, probe-host in ")), "{}", hcr.transcript());
    assert!(before.iter().any(|l| l.ends_with(", watching probe")), "found from the host's dependencies");
    let pid_line = hcr.wait_for(0, out, REBUILD, |l| l.starts_with("host pid "));
    let host_pid: u32 = hcr.seen[pid_line].1["host pid ".len()..].parse().unwrap();
    hcr.wait_for(0, out, REBUILD, |l| l == "host env HCR_WATCH=1");
    let report_line = hcr.wait_for(0, out, REBUILD, |l| l.starts_with("host env HCR_REPORT_FILE=/"));
    let report_file = PathBuf::from(&hcr.seen[report_line].1["host env HCR_REPORT_FILE=".len()..]);
    let report_dir = report_file.parent().unwrap().to_owned();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&report_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the report directory is private");
    }

    // An edit: rebuilt, reloaded, and the host runs the new code.
    let edit = hcr.seen.len();
    scratch.set_behaviour("2");
    hcr.wait_for(edit, err, REBUILD, |l| l.starts_with("[hcr] built probe in ") && l.ends_with(" ms"));
    hcr.wait_for(edit, err, REBUILD, |l| l.starts_with("[hcr] reloaded 1 module(s) in "));
    hcr.wait_for(edit, out, REBUILD, |l| l == "behaviour 2");
    let rebuilds = hcr.lines_since(edit, err);
    assert!(!rebuilds.iter().any(|l| l.contains("probe-host")), "the host is never rebuilt: {rebuilds:?}");

    // An edit that does not compile: the errors, and the old code goes on.
    let broken = hcr.seen.len();
    scratch.set_behaviour("2 +");
    hcr.wait_for(broken, err, REBUILD, |l| l == "[hcr] build failed");
    hcr.wait_for(broken, err, REBUILD, |l| l.contains("expected expression"));
    hcr.wait_for(broken, err, REBUILD, |l| l == "[hcr] the host keeps running its old code");
    let after = hcr.seen.len();
    hcr.wait_for(after, out, REBUILD, |l| l == "behaviour 2");
    let outputs = hcr.lines_since(broken, out);
    assert!(outputs.iter().all(|l| *l == "behaviour 2"), "only the old code ran: {outputs:?}");
    assert!(alive(host_pid));

    // Fixed: the failed build left no module file behind, which was no
    // reason to refuse anything; the fix reloads.
    let fixed = hcr.seen.len();
    scratch.set_behaviour("3");
    hcr.wait_for(fixed, err, REBUILD, |l| l.starts_with("[hcr] built probe in "));
    hcr.wait_for(fixed, err, REBUILD, |l| l.starts_with("[hcr] reloaded 1 module(s) in "));
    hcr.wait_for(fixed, out, REBUILD, |l| l == "behaviour 3");
    let refused: Vec<&str> = hcr.lines_since(0, err).into_iter().filter(|l| l.contains("refused")).collect();
    assert!(refused.is_empty(), "no reload was refused: {refused:?}\n{}", hcr.transcript());

    // Ctrl-C in the middle of a build (its build script sleeps): cargo-hcr,
    // the build and the host stop, and clean up.
    let slow = hcr.seen.len();
    scratch.set_build_script(SLOW_BUILD_SCRIPT);
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
    signal(&hcr, libc::SIGINT);
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
fn a_killed_cargo_hcr_takes_the_host_with_it() {
    let scratch = Scratch::new("killed", "killed-probe", "killed-host");
    let mut hcr = scratch.cargo_hcr("killed-host", &[]);
    let pid_line = hcr.wait_for(0, Stream::Out, FIRST_BUILD, |l| l.starts_with("host pid "));
    let host_pid: u32 = hcr.seen[pid_line].1["host pid ".len()..].parse().unwrap();
    assert!(alive(host_pid));
    // No chance to clean up: the kernel stops the host (PR_SET_PDEATHSIG).
    signal(&hcr, libc::SIGKILL);
    let status = hcr.wait_exit(REBUILD);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(gone_within(host_pid, Duration::from_secs(5)), "the host outlived cargo-hcr");
}

#[test]
fn a_first_build_that_fails_runs_nothing() {
    let scratch = Scratch::new("broken", "broken-probe", "broken-host");
    scratch.set_behaviour("1 +");
    let mut hcr = scratch.cargo_hcr("broken-host", &[]);
    let status = hcr.wait_exit(FIRST_BUILD);
    assert!(!status.success(), "{}", hcr.transcript());
    let err = hcr.lines_since(0, Stream::Err);
    assert!(err.contains(&"[hcr] build failed"), "{}", hcr.transcript());
    assert!(err.iter().any(|l| l.contains("expected expression")), "{}", hcr.transcript());
    assert!(!err.iter().any(|l| l.starts_with("[hcr] running")), "{}", hcr.transcript());
    assert!(hcr.lines_since(0, Stream::Out).is_empty(), "no host ran: {}", hcr.transcript());
}

#[test]
fn the_host_gets_its_arguments_and_its_exit_status_is_passed_on() {
    let scratch = Scratch::new("exiting", "exiting-probe", "exiting-host");
    let mut hcr = scratch.cargo_hcr("exiting-host", &["7"]);
    let status = hcr.wait_exit(FIRST_BUILD);
    assert_eq!(status.code(), Some(7), "{}", hcr.transcript());
    assert_eq!(hcr.lines_since(0, Stream::Out).last().copied(), Some("behaviour 1"), "{}", hcr.transcript());
    let err = hcr.lines_since(0, Stream::Err);
    assert_eq!(err.last().copied(), Some("[hcr] the host exited (exit status: 7)"), "{}", hcr.transcript());
}
