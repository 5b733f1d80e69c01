//! Shared helpers for the runtime's integration tests: real fixture modules
//! built by cargo, scratch directories, child processes.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hcr_runtime::{Config, Proc, Runtime};

/// The target these tests (and so the fixtures) are built for.
pub const TARGET: &str = env!("HCR_TEST_TARGET");

/// Builds fixture crate `hcr-fixture-<package>` with `features` for
/// [`TARGET`] and returns a copy of its library that stays as it is.
///
/// All variants share one target directory (so build dependencies are
/// compiled once); each variant's library is copied out under an exclusive
/// lock, so concurrent test processes never copy another variant's build.
/// A copy is reused while no fixture, `hcr-abi` or `hcr-build` source is
/// newer than it.
pub fn fixture(package: &str, features: &[&str]) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let key =
        if features.is_empty() { format!("{package}-default") } else { format!("{package}-{}", features.join("-")) };
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(&key) {
        return path.clone();
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hcr-fixtures");
    std::fs::create_dir_all(root.join("artifacts")).unwrap();
    let file = format!("{}{package}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let artifact = root.join("artifacts").join(&key).join(&file);
    let lock = std::fs::File::create(root.join(".lock")).unwrap();
    lock.lock().unwrap();
    let fresh = modified(&artifact).is_some_and(|built| built >= newest_source());
    if !fresh {
        let target_dir = root.join("shared");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace)
            .args(["build", "--quiet", "-p", &format!("hcr-fixture-{package}"), "--target", TARGET])
            .arg("--target-dir")
            .arg(&target_dir);
        if !features.is_empty() {
            cmd.arg("--features").arg(features.join(","));
        }
        let out = cmd.output().expect("run cargo to build a fixture");
        assert!(out.status.success(), "building fixture {key} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let built_lib = target_dir.join(TARGET).join("debug").join(&file);
        std::fs::create_dir_all(artifact.parent().unwrap()).unwrap();
        let partial = artifact.with_extension("partial");
        std::fs::copy(&built_lib, &partial).unwrap();
        std::fs::rename(&partial, &artifact).unwrap();
    }
    drop(lock);
    built.get_or_insert_with(HashMap::new).insert(key, artifact.clone());
    artifact
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time among the sources fixtures are built from.
fn newest_source() -> std::time::SystemTime {
    fn walk(dir: &Path, newest: &mut std::time::SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Some(time) = modified(&path) {
                *newest = (*newest).max(time);
            }
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for dir in ["hcr-runtime/tests/fixtures", "hcr-abi", "hcr-build/src"] {
        walk(&workspace.join(dir), &mut newest);
    }
    for file in ["Cargo.lock", "Cargo.toml"] {
        if let Some(time) = modified(&workspace.join(file)) {
            newest = newest.max(time);
        }
    }
    newest
}

/// A directory for one test, removed when dropped.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("scratch").join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    /// Where module `name`'s library lives in this directory.
    pub fn module_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
    }

    /// Puts `artifact` in place as module `name`, the way a linker replaces
    /// its output (a new file renamed over the old one).
    pub fn install(&self, artifact: &Path, name: &str) -> PathBuf {
        self.install_bytes(&std::fs::read(artifact).unwrap(), name)
    }

    /// Puts arbitrary bytes in place as module `name`.
    pub fn install_bytes(&self, bytes: &[u8], name: &str) -> PathBuf {
        let dest = self.module_path(name);
        let tmp = self.dir.join(format!(".{name}.partial"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &dest).unwrap();
        dest
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A runtime that does not compete for the default base address (tests run
/// in parallel threads of one process).
pub fn runtime() -> Runtime {
    Runtime::with_config(Config::new().with_stub_base(0).with_stub_capacity(4096)).unwrap()
}

/// Asks `reload_needed` until it says yes, as a host loop does: a new file
/// is only reported once it has settled, and file events arrive on another
/// thread, a little later. `false` if it never does (within 10 s).
pub fn wait_for_reload_needed(rt: &Runtime) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if rt.reload_needed() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Sets the flag when dropped, also while a panic unwinds: stops worker
/// threads that a scope would otherwise wait for forever.
pub struct SetOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Whether the tests run under an emulator (the target's cargo runner is
/// qemu), where every new library is translated again: tests scale their
/// counts down there, and say so.
pub fn emulated() -> bool {
    let var = format!("CARGO_TARGET_{}_RUNNER", TARGET.to_uppercase().replace(['-', '.'], "_"));
    std::env::var(var).is_ok_and(|r| r.contains("qemu"))
}

/// Waits until everything reloads replaced was freed (deferred reclamation
/// runs on the runtime's collector thread, after the reload returned), with
/// a deadline: every thread of this process, other tests included, must be
/// seen outside the old code first.
pub fn wait_until_reclaimed(rt: &Runtime) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = rt.stats();
        if stats.retired_pending == 0 && stats.retired_globals_pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "replaced code was never freed: {stats:?}");
        rt.collect_retired();
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A proc as an `extern "C" fn() -> u64`.
pub fn fn0(rt: &Runtime, module: &str, name: &str) -> extern "C" fn() -> u64 {
    let proc: Proc = rt.get_proc(module, name).unwrap();
    // SAFETY: the fixtures register these names with this signature.
    unsafe { proc.cast() }
}

/// A proc as an `extern "C" fn(u64) -> u64`.
pub fn fn1(rt: &Runtime, module: &str, name: &str) -> extern "C" fn(u64) -> u64 {
    let proc: Proc = rt.get_proc(module, name).unwrap();
    // SAFETY: the fixtures register these names with this signature.
    unsafe { proc.cast() }
}

/// Whether this process is a child started by [`run_child`].
pub fn is_child() -> bool {
    std::env::var_os("HCR_TEST_CHILD").is_some()
}

/// Runs the ignored test `name` of this test binary in a child process,
/// through the target's cargo runner if one is configured (e.g. qemu).
pub fn run_child(name: &str, envs: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let runner_var = format!("CARGO_TARGET_{}_RUNNER", TARGET.to_uppercase().replace(['-', '.'], "_"));
    let runner = std::env::var(runner_var).unwrap_or_default();
    let mut parts = runner.split_whitespace();
    let mut cmd = match parts.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(parts).arg(&exe);
            cmd
        }
        None => Command::new(&exe),
    };
    cmd.args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .env("HCR_TEST_CHILD", "1")
        .env_remove("HCR_STUB_BASE")
        .env_remove("HCR_STUB_CAPACITY");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn the test binary")
}

/// Files in a directory.
pub fn file_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}
