//! Shared helpers for the runtime's integration tests: real fixture modules
//! built by cargo, scratch directories, child processes.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hcr_runtime::{Config, Error, Proc, Runtime};

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
        let out = output(&mut cmd).expect("run cargo to build a fixture");
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

/// Starts `cmd`. Under the emulator a child now and then never gets from
/// `fork` to `exec` (qemu-user copies a multithreaded process while another
/// thread holds a lock the child then waits for, forever); such a child is
/// seen by its command line, still this program's, is killed after 30 s
/// and started again (at most five times, each said on stderr).
pub fn spawn(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    if !emulated() {
        return cmd.spawn();
    }
    // The emulator shows this process its own arguments; a child that has
    // not called exec yet shows the host `qemu-aarch64 <them>`.
    let mut own: Vec<u8> = Vec::new();
    for arg in std::env::args_os() {
        own.extend_from_slice(arg.as_encoded_bytes());
        own.push(0);
    }
    for attempt in 1..=5 {
        let mut child = cmd.spawn()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Gone, a zombie (no command line) or another program: started.
            match std::fs::read(format!("/proc/{}/cmdline", child.id())) {
                Ok(line) if !line.is_empty() && line.ends_with(&own) => {}
                _ => return Ok(child),
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        eprintln!(
            "(a child process never started its program under the emulator, attempt {attempt}: starting it again)"
        );
    }
    panic!("a child process never started its program under the emulator: {cmd:?}")
}

/// [`spawn`], then its output, as `Command::output` gives it.
pub fn output(cmd: &mut Command) -> std::io::Result<Output> {
    use std::process::Stdio;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    spawn(cmd)?.wait_with_output()
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

/// The target's cargo runner (e.g. `qemu-aarch64`), if one is configured:
/// programs built for [`TARGET`] run under it.
pub fn runner() -> Option<String> {
    let runner_var = format!("CARGO_TARGET_{}_RUNNER", TARGET.to_uppercase().replace(['-', '.'], "_"));
    std::env::var(runner_var).ok().filter(|r| !r.trim().is_empty())
}

/// A command that runs `exe`, built for [`TARGET`], through the target's
/// cargo runner if one is configured.
pub fn target_command(exe: &Path) -> Command {
    let runner = runner().unwrap_or_default();
    let mut parts = runner.split_whitespace();
    match parts.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(parts).arg(exe);
            cmd
        }
        None => Command::new(exe),
    }
}

/// Runs `cmd` with its output in files of `dir`, killing it if it has not
/// finished after `limit` (the output says so).
pub fn output_within(mut cmd: Command, dir: &Path, limit: Duration) -> Output {
    use std::process::Stdio;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let (out_path, err_path) = (dir.join(format!("stdout-{n}")), dir.join(format!("stderr-{n}")));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = spawn(&mut cmd).expect("spawn the program");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let status = child.wait().unwrap();
            let mut stderr = std::fs::read(&err_path).unwrap_or_default();
            stderr.extend_from_slice(format!("\n(killed after {limit:?})\n").as_bytes());
            std::fs::write(&err_path, stderr).unwrap();
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: std::fs::read(&out_path).unwrap(), stderr: std::fs::read(&err_path).unwrap() }
}

/// Runs the ignored test `name` of this test binary in a child process,
/// through the target's cargo runner if one is configured (e.g. qemu).
pub fn run_child(name: &str, envs: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = target_command(&exe);
    cmd.args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .env("HCR_TEST_CHILD", "1")
        .env_remove("HCR_STUB_BASE")
        .env_remove("HCR_STUB_CAPACITY");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    output(&mut cmd).expect("spawn the test binary")
}

/// Files in a directory, not counting hidden ones (such as the private
/// directory's lock file).
pub fn file_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map_or(0, |d| d.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count())
}

/// How many private copies under `dir` (a runtime's private directory) the
/// process has mapped: libraries loaded and not unmapped yet.
pub fn mapped_copies(dir: &Path) -> usize {
    let dir = dir.to_string_lossy().into_owned();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut paths: Vec<&str> =
        maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter(|p| p.starts_with(&dir)).collect();
    paths.sort_unstable();
    paths.dedup();
    paths.len()
}

/// A program header of a 64-bit ELF file of this machine's byte order, and
/// where it is in the file (for tests that patch them).
#[derive(Clone, Copy, Debug)]
pub struct Phdr {
    /// Its file offset.
    pub at: usize,
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_NOTE: u32 = 4;
pub const PT_GNU_STACK: u32 = 0x6474_e551;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;

fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn half(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(bytes[at..at + 2].try_into().unwrap())
}

/// The program headers of `bytes`.
pub fn phdrs(bytes: &[u8]) -> Vec<Phdr> {
    let (phoff, phnum) = (word(bytes, 32) as usize, half(bytes, 56) as usize);
    (0..phnum)
        .map(|i| {
            let at = phoff + i * 56;
            Phdr {
                at,
                p_type: u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()),
                flags: u32::from_ne_bytes(bytes[at + 4..at + 8].try_into().unwrap()),
                offset: word(bytes, at + 8),
                vaddr: word(bytes, at + 16),
                filesz: word(bytes, at + 32),
                memsz: word(bytes, at + 40),
            }
        })
        .collect()
}

/// The file offset holding virtual address `vaddr`.
pub fn file_offset(bytes: &[u8], vaddr: u64) -> Option<usize> {
    phdrs(bytes)
        .into_iter()
        .filter(|p| p.p_type == PT_LOAD)
        .find(|p| vaddr >= p.vaddr && vaddr < p.vaddr + p.filesz)
        .map(|p| (p.offset + (vaddr - p.vaddr)) as usize)
}

/// The dynamic entries of `bytes` up to `DT_NULL`: (file offset, tag, value).
pub fn dynamic_entries(bytes: &[u8]) -> Vec<(usize, u64, u64)> {
    let dynamic = phdrs(bytes).into_iter().find(|p| p.p_type == PT_DYNAMIC).unwrap();
    let start = file_offset(bytes, dynamic.vaddr).unwrap();
    let mut entries = Vec::new();
    for at in (start..start + dynamic.filesz as usize).step_by(16) {
        let tag = word(bytes, at);
        if tag == 0 {
            break;
        }
        entries.push((at, tag, word(bytes, at + 8)));
    }
    entries
}

/// Where the loadable segments of the ELF library `bytes` end in the file:
/// cutting the file before this point truncates a segment.
pub fn loaded_end(bytes: &[u8]) -> usize {
    phdrs(bytes).iter().filter(|p| p.p_type == PT_LOAD).map(|p| (p.offset + p.filesz) as usize).max().unwrap()
}

/// Writes `value` into `bytes` at `at`.
pub fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_ne_bytes());
}

/// Writes `value` into `bytes` at `at`.
pub fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_ne_bytes());
}

/// Spawns the ignored test `name` of this test binary as a child process
/// (through the target's runner, if any) with piped stdin and stdout.
pub fn spawn_child(name: &str, envs: &[(&str, &str)]) -> std::process::Child {
    use std::process::Stdio;
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
        .env_remove("HCR_STUB_CAPACITY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    spawn(&mut cmd).expect("spawn the test binary")
}

/// The one failure of a refused load: asserts the load was reported as
/// [`Error::LoadFailed`] with exactly one cause and returns that cause.
pub fn sole_failure(err: Error) -> Error {
    assert!(matches!(err, Error::LoadFailed { .. }), "a refused load is reported as LoadFailed: {err}");
    let mut failures = err.into_failures();
    assert_eq!(failures.len(), 1, "one failure: {failures:?}");
    failures.remove(0)
}

/// Where the descriptor exported as `symbol` starts in a library file's
/// bytes: its pointer-free fields (magic, versions, size, flags, the
/// fingerprint) can be patched there.
pub fn descriptor_offset(bytes: &[u8], symbol: &str) -> usize {
    use object::{Object, ObjectSection, ObjectSymbol};
    let file = object::File::parse(bytes).expect("a library");
    let found = file.dynamic_symbols().find(|s| s.name() == Ok(symbol)).unwrap_or_else(|| panic!("no {symbol}"));
    let address = found.address();
    // Sections without file bytes (`.tbss` on AArch64) can overlap others'
    // addresses: only those with data in the file count.
    let section = file
        .sections()
        .find(|s| s.address() <= address && address < s.address() + s.size() && s.file_range().is_some())
        .expect("the descriptor's section");
    let (start, _) = section.file_range().expect("data in the file");
    (start + (address - section.address())) as usize
}
