//! Rebuilding a module without cargo: its build script (when its inputs
//! changed) and its `rustc` command, as cargo last ran them, the two at the
//! same time when the script's output lets rustc's guess stand (see
//! [`rebuild`]); rustc builds the `cdylib` only. The library is written to
//! a staging directory and moved into place with one `rename` (or by a
//! linker that replaces its output with a rename), so that the host never
//! sees half a library, and said to be unchanged when it came out the same.
//!
//! Cargo is not told: its fingerprint of the module is stale afterwards, and
//! the next `cargo build` compiles the module once more (its `rlib` too),
//! which is correct.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cargo_metadata::diagnostic::Diagnostic;
use serde_json::Value;

use crate::cargo::Diagnostics;
use crate::link;
use crate::metadata::Package;
use crate::process;
use crate::record::{self, ScriptOutput};

/// How long a direct build that is asked to stop gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How often a rebuild looks for the library the linker wrote, while rustc
/// finishes.
const LIBRARY_POLL: Duration = Duration::from_millis(1);

/// How cargo last built a module, enough to do it again.
#[derive(Debug, Clone)]
pub struct ModuleRecord {
    /// The package's name.
    pub package: String,
    /// The package's directory.
    pub dir: PathBuf,
    /// `rustc` compiling its library.
    pub rustc: record::Command,
    /// The directory cargo ran `rustc` in.
    pub rustc_cwd: PathBuf,
    /// Running its build script, if it has one and cargo ran it.
    pub script: Option<record::Command>,
    /// What its build script printed when the recorded `rustc` command was
    /// made (`None` without a build script).
    pub script_output: Option<ScriptOutput>,
    /// How many rebuilds in a row started rustc alongside the build script
    /// for nothing (the script changed what rustc reads); from
    /// [`MAX_WASTED_GUESSES`] on, rustc waits for the script.
    pub wasted_guesses: u32,
}

/// After this many rebuilds in a row whose build script changed what rustc
/// reads (a script that rewrites its output every time), rustc is no longer
/// started alongside it: it would only compete with it for the processors.
pub const MAX_WASTED_GUESSES: u32 = 3;

/// What became of the build rustc started alongside the build script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guess {
    /// None was started: no script ran, or rustc waited for it.
    None,
    /// It was kept: the script left what rustc reads as it was.
    Kept,
    /// It was stopped, and rustc ran again after the script.
    Dropped,
}

impl ModuleRecord {
    /// The record of `package` from the commands of a cargo build, if that
    /// build compiled it; a build script cargo did not run again is taken
    /// from `previous` when it wrote to the same `OUT_DIR`.
    pub fn from_build(
        package: &Package,
        commands: &[record::Command],
        previous: Option<&ModuleRecord>,
    ) -> Option<ModuleRecord> {
        let lib = package.lib.as_deref()?;
        let rustc = commands.iter().rev().find(|c| c.compiles_cdylib(lib, &package.dir))?.clone();
        let rustc_cwd = rustc_cwd(&rustc, package.lib_src.as_deref()?)?;
        let out_dir = rustc.var("OUT_DIR").map(PathBuf::from);
        let script = commands
            .iter()
            .rev()
            .find(|c| c.runs_build_script_of(&package.dir))
            .or_else(|| previous.and_then(|p| p.script.as_ref()))
            .filter(|script| script.var("OUT_DIR").map(PathBuf::from) == out_dir)
            .cloned();
        // What the build script printed for this compilation, as cargo kept it.
        let script_output = match &out_dir {
            Some(out_dir) => {
                let text = std::fs::read_to_string(out_dir.parent()?.join("output")).ok()?;
                Some(ScriptOutput::parse(&text, &package.dir))
            }
            None => None,
        };
        Some(ModuleRecord {
            package: package.name.clone(),
            dir: package.dir.clone(),
            rustc,
            rustc_cwd,
            script,
            script_output,
            wasted_guesses: previous.map_or(0, |p| p.wasted_guesses),
        })
    }

    /// The directory the library is built into.
    pub fn out_dir(&self) -> Option<PathBuf> {
        self.rustc.option("--out-dir").map(PathBuf::from)
    }

    /// The name of a file rustc writes for this crate: `prefix`, the crate
    /// name, cargo's `-C extra-filename` (if any), `suffix`.
    fn output_name(&self, prefix: &str, suffix: &str) -> String {
        let krate = self.rustc.option("--crate-name").unwrap_or_default();
        let extra = self.rustc.options("-C").find_map(|c| c.strip_prefix("extra-filename=")).unwrap_or_default();
        format!("{prefix}{krate}{extra}{suffix}")
    }

    /// The file name of the dynamic library.
    pub fn dylib_name(&self) -> String {
        self.output_name(std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
    }

    /// Whether this module links the library that `other` builds (as a
    /// dependency): rebuilding `other` alone would leave it stale.
    pub fn links(&self, other: &ModuleRecord) -> bool {
        let Some(other_lib) = other.rustc.option("--crate-name") else { return false };
        self.rustc.options("--extern").any(|e| e.split_once('=').is_some_and(|(name, _)| name == other_lib))
    }
}

/// The directory cargo ran `rustc` in: the one that the relative path of the
/// crate root it passed is relative to.
fn rustc_cwd(rustc: &record::Command, lib_src: &Path) -> Option<PathBuf> {
    let root = rustc.args.iter().find(|a| a.ends_with(".rs") && !a.starts_with('-'))?;
    let root = Path::new(root);
    if root.is_absolute() {
        return lib_src.parent().map(Path::to_owned);
    }
    let mut dir = lib_src.to_owned();
    for _ in root.components() {
        dir = dir.parent()?.to_owned();
    }
    (dir.join(root) == lib_src).then_some(dir)
}

/// How a direct rebuild ended.
#[derive(Debug)]
pub enum Outcome {
    /// The library was built.
    Built {
        /// Whether it differs from the one in place (which it then replaced).
        changed: bool,
        /// The compiler's warnings, and cargo-style lines about them.
        warnings: String,
        /// The build script's new output, if it ran.
        script_output: Option<ScriptOutput>,
        /// How long the build script took, if it ran.
        script_time: Option<Duration>,
        /// How long `rustc` took.
        rustc_time: Duration,
        /// What became of rustc's build alongside the build script.
        guess: Guess,
    },
    /// The build failed; what to show.
    Failed(String),
    /// The recorded commands cannot be used any more; why.
    NeedsCargo(String),
    /// It was stopped.
    Stopped,
}

/// How a process run by a [`Stopper`] ended: its standard output and
/// error and whether it succeeded, `None` once stopped, or why it could not
/// start.
type RunResult = std::io::Result<Option<(String, String, bool)>>;

/// Stops a direct rebuild from another thread: the process it runs (in a
/// process group of its own) is signalled, and it starts no other.
#[derive(Debug, Clone, Default)]
pub struct Stopper(Arc<Mutex<StopState>>);

#[derive(Debug, Default)]
struct StopState {
    stopped: bool,
    /// The process running, not reaped yet.
    running: Option<u32>,
    /// Stoppers of work running alongside (a speculative rustc), stopped
    /// with this one.
    children: Vec<Stopper>,
}

impl Stopper {
    fn lock(&self) -> MutexGuard<'_, StopState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `command` in a process group of its own and waits for it: its
    /// standard output and error, and whether it succeeded; `None` once
    /// stopped.
    fn run(&self, command: &mut Command) -> RunResult {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        process::die_with_parent(command);
        let mut child: Child = {
            let mut state = self.lock();
            if state.stopped {
                return Ok(None);
            }
            let child = command.spawn()?;
            state.running = Some(child.id());
            child
        };
        let stdout = child.stdout.take();
        let stderr_reader = child.stderr.take().map(|mut stderr| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = stderr.read_to_end(&mut bytes);
                bytes
            })
        });
        let mut out = Vec::new();
        if let Some(mut stdout) = stdout {
            let _ = stdout.read_to_end(&mut out);
        }
        let err = stderr_reader.and_then(|r| r.join().ok()).unwrap_or_default();
        // Exited but not reaped: its id cannot be anyone else's while the
        // lock is taken to forget it.
        let exited = process::wait_exited(child.id());
        let stopped = {
            let mut state = self.lock();
            state.running = None;
            state.stopped
        };
        let status = child.wait()?;
        exited?;
        if stopped {
            return Ok(None);
        }
        Ok(Some((
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
            status.success(),
        )))
    }

    /// A stopper for work that runs alongside this one's (on another
    /// thread): stopped when this one is, and on its own.
    fn child(&self) -> Stopper {
        let child = Stopper::default();
        let mut state = self.lock();
        child.lock().stopped = state.stopped;
        state.children.push(child.clone());
        child
    }

    /// Stops the rebuild: `SIGTERM` to the processes it runs, `SIGKILL` if
    /// they are still there after a grace period.
    pub fn stop(&self) {
        let children = {
            let mut state = self.lock();
            state.stopped = true;
            std::mem::take(&mut state.children)
        };
        for child in children {
            child.stop();
        }
        let group = {
            let state = self.lock();
            let Some(group) = state.running else { return };
            // Not reaped (the lock is held), so the id is still its own.
            let _ = process::signal_group(group, libc::SIGTERM);
            group
        };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.lock().running != Some(group) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let state = self.lock();
        if state.running == Some(group) {
            let _ = process::signal_group(group, libc::SIGKILL);
        }
    }
}

/// How a direct rebuild is run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The compiler's messages in colour.
    pub color: bool,
    /// The linker replaces its output with a rename (LLD, mold): rustc can
    /// write where cargo does, and the host gets the library the moment the
    /// linker is done, while rustc still saves its incremental state.
    /// Otherwise rustc writes to a staging directory and the library is
    /// renamed into place once rustc exited.
    pub atomic_linker: bool,
}

/// Rebuilds the module of `record` after `changed` files changed.
///
/// When its build script must run again, rustc starts at the same time, on
/// what the script wrote last time (the files in `OUT_DIR`), into the
/// staging directory. That guess is kept only if the script then prints
/// the same directives for rustc and leaves every file in `OUT_DIR` as it
/// was (same size, modification time and inode: `hcr-build` does not touch
/// a file whose contents stay the same, and replaces one that changes with
/// a rename); otherwise the guess is stopped and rustc runs again after
/// the script. On a save that changes only function bodies, the script's
/// time is hidden behind rustc's.
pub fn rebuild(
    record: &ModuleRecord,
    changed: &[PathBuf],
    options: Options,
    stopper: &Stopper,
    linked: &dyn Fn(),
) -> Outcome {
    let Some(out_dir) = record.out_dir() else {
        return Outcome::NeedsCargo("the recorded rustc command has no --out-dir".into());
    };
    let staging = out_dir.parent().unwrap_or(&out_dir).join(".hcr-staging").join(&record.package);
    // The build script and what it printed last, if it must run again.
    let script = match (&record.script, &record.script_output) {
        (script, Some(baseline)) if baseline.reruns_for(changed) => match script {
            Some(script) => Some((script, baseline)),
            None => return Outcome::NeedsCargo("its build script must run and was not recorded".into()),
        },
        _ => None,
    };
    // What rustc can read from the build script's last run: only a guess
    // if there is a directory to compare before and after.
    let generated = record.script.as_ref().and_then(|s| s.var("OUT_DIR")).map(PathBuf::from);
    let guessing = script.is_some() && record.wasted_guesses < MAX_WASTED_GUESSES;
    let before = if guessing { generated.as_deref().and_then(snapshot) } else { None };
    // In place only when what rustc compiles is known to be final.
    let in_place = (options.atomic_linker && before.is_none()).then(|| out_dir.join(record.dylib_name()));
    if let Err(e) = fresh_dir(&staging) {
        return Outcome::Failed(format!("error: cannot prepare {}: {e}", staging.display()));
    }
    let previous = staging.join(".previous");
    let kept = in_place.as_ref().is_some_and(|library| std::fs::hard_link(library, &previous).is_ok());
    let out = in_place.is_none().then_some(staging.as_path());
    let staging_root = staging.parent().unwrap_or(&staging);
    let link_args = link::args(&record.rustc, staging_root);
    let rustc = rustc_command(record, options.color, out, &link_args);

    let mut warnings = String::new();
    let mut script_output = None;
    let mut script_time = None;
    let mut guess = None;
    let mut guessed = Guess::None;
    if let Some((script, baseline)) = script {
        if before.is_some() {
            guess = Some(Alongside::start(stopper, rustc_process(record, &rustc)));
        }
        let started = Instant::now();
        let mut command = command(script);
        command.current_dir(script.var("CARGO_MANIFEST_DIR").map_or(record.dir.as_path(), Path::new));
        let ran = stopper.run(&mut command);
        script_time = Some(started.elapsed());
        // (Returning drops `guess`, which stops that rustc.)
        let (stdout, stderr, success) = match ran {
            Ok(Some(result)) => result,
            Ok(None) => return Outcome::Stopped,
            Err(e) => return Outcome::NeedsCargo(format!("its build script could not run: {e}")),
        };
        let output = ScriptOutput::parse(&stdout, &record.dir);
        let version = record.rustc.var("CARGO_PKG_VERSION").unwrap_or_default();
        if !success || !output.errors.is_empty() {
            let mut text = String::new();
            for error in &output.errors {
                text.push_str(&format!("error: {error}\n"));
            }
            text.push_str(&format!(
                "error: failed to run custom build command for `{} v{version}`\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                record.package
            ));
            return Outcome::Failed(text.trim_end().to_owned());
        }
        for warning in &output.warnings {
            warnings.push_str(&format!("warning: {}@{version}: {warning}\n", record.package));
        }
        if output.compile != baseline.compile {
            return Outcome::NeedsCargo("its build script's output changed".into());
        }
        if guess.is_some() && generated.as_deref().and_then(snapshot) != before {
            // rustc may have read what the script was writing.
            guessed = Guess::Dropped;
            drop(guess.take());
        }
        script_output = Some(output);
    }

    // Moved into place as soon as the linker renamed it into the staging
    // directory (the build is known to be right by then), not once rustc
    // exits: that is what rustc does in place, with such a linker.
    let mut early: Option<std::io::Result<bool>> = None;
    let (ran, rustc_time) = match guess {
        Some(alongside) => {
            let library = staging.join(record.dylib_name());
            while options.atomic_linker && early.is_none() && !alongside.is_finished() {
                if library.exists() {
                    early = Some(install_library(&staging, &out_dir, &record.dylib_name(), linked));
                } else {
                    std::thread::sleep(LIBRARY_POLL);
                }
            }
            guessed = Guess::Kept;
            match alongside.join() {
                Some(result) => result,
                None => return Outcome::Failed("error: the thread running rustc panicked".into()),
            }
        }
        None => run_timed(stopper, rustc_process(record, &rustc)),
    };
    let (_, mut stderr, mut success) = match ran {
        Ok(Some(result)) => result,
        Ok(None) => return Outcome::Stopped,
        Err(e) => return Outcome::NeedsCargo(format!("rustc could not run: {e}")),
    };
    if !success && link::refused(&stderr, &link_args) {
        // A linker that does not take them: without, now and for the rest
        // of the session.
        let mut command = rustc_process(record, &rustc_command(record, options.color, out, &[]));
        (_, stderr, success) = match stopper.run(&mut command) {
            Ok(Some(result)) => result,
            Ok(None) => return Outcome::Stopped,
            Err(e) => return Outcome::NeedsCargo(format!("rustc could not run: {e}")),
        };
    }
    let (diagnostics, other) = read_rustc_output(&stderr);
    let kind = "lib";
    if !success {
        let mut text: String = diagnostics.errors.iter().map(|e| e.trim_end().to_owned() + "\n\n").collect();
        text.push_str(&other);
        let count = diagnostics.errors.len();
        text.push_str(&format!(
            "error: could not compile `{}` ({kind}) due to {count} previous error{}",
            record.package,
            if count == 1 { "" } else { "s" }
        ));
        let _ = std::fs::remove_dir_all(&staging);
        return Outcome::Failed(text.trim_end().to_owned());
    }
    for warning in &diagnostics.warnings {
        warnings.push_str(warning.trim_end());
        warnings.push_str("\n\n");
    }
    warnings.push_str(&other);
    let count = diagnostics.warnings.iter().filter(|w| w.starts_with("warning")).count();
    if count > 0 {
        warnings.push_str(&format!(
            "warning: `{}` ({kind}) generated {count} warning{}\n",
            record.package,
            if count == 1 { "" } else { "s" }
        ));
    }
    let installed = match (&in_place, early) {
        (Some(library), _) => refresh_uplifted(&out_dir, &record.dylib_name()).and_then(|()| {
            let changed = !kept || !same_contents(&previous, library)?;
            std::fs::remove_dir_all(&staging)?;
            Ok(changed)
        }),
        (None, Some(early)) => early.and_then(|changed| install(&staging, &out_dir).map(|_| changed)),
        (None, None) => install(&staging, &out_dir),
    };
    let changed = match installed {
        Ok(changed) => changed,
        Err(e) => {
            return Outcome::Failed(format!("error: cannot move the new library into {}: {e}", out_dir.display()));
        }
    };
    Outcome::Built {
        changed,
        warnings: warnings.trim_end().to_owned(),
        script_output,
        script_time,
        rustc_time,
        guess: guessed,
    }
}

/// A process run on a thread of its own, alongside the rebuild (rustc
/// while the build script runs): stopped if dropped before it was joined.
struct Alongside {
    stopper: Stopper,
    thread: Option<std::thread::JoinHandle<(RunResult, Duration)>>,
}

impl Alongside {
    /// Starts `command`, stopped along with `parent` too.
    fn start(parent: &Stopper, command: Command) -> Alongside {
        let stopper = parent.child();
        let worker = stopper.clone();
        Alongside { stopper, thread: Some(std::thread::spawn(move || run_timed(&worker, command))) }
    }

    fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(std::thread::JoinHandle::is_finished)
    }

    /// Waits for it: how it ended and how long it took (`None` if its
    /// thread panicked).
    fn join(mut self) -> Option<(RunResult, Duration)> {
        self.thread.take()?.join().ok()
    }
}

impl Drop for Alongside {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stopper.stop();
            let _ = thread.join();
        }
    }
}

/// `rustc` (as [`rustc_command`] made it) as a process, in the directory
/// cargo ran it in.
fn rustc_process(record: &ModuleRecord, rustc: &record::Command) -> Command {
    let mut command = command(rustc);
    command.current_dir(&record.rustc_cwd);
    command
}

/// Runs `command` with `stopper`, and how long that took.
fn run_timed(stopper: &Stopper, mut command: Command) -> (RunResult, Duration) {
    let started = Instant::now();
    (stopper.run(&mut command), started.elapsed())
}

/// The recorded `rustc` command as a rebuild runs it: the `cdylib` alone
/// (no module links another's library while they are rebuilt directly,
/// and the `rlib` a static build links is left to cargo, whose fingerprint
/// of the module is stale from now on), with `link_args` (see [`link`]),
/// into `staging` if given, without colours if they are off.
fn rustc_command(record: &ModuleRecord, color: bool, staging: Option<&Path>, link_args: &[String]) -> record::Command {
    let mut rustc = record.rustc.cdylib_only();
    if let Some(units) = codegen_units(&rustc, record.rustc_cwd.as_path()) {
        rustc.args.extend(["-C".to_owned(), format!("codegen-units={units}")]);
    }
    rustc.args.extend(link_args.iter().cloned());
    if let Some(staging) = staging {
        rustc = rustc.with_option("--out-dir", &staging.to_string_lossy());
    }
    if !color && let Some(json) = rustc.option("--json") {
        // Cargo always asks for colours and takes them out itself.
        let plain: Vec<&str> = json.split(',').filter(|k| *k != "diagnostic-rendered-ansi").collect();
        rustc = rustc.with_option("--json", &plain.join(","));
    }
    rustc
}

/// How many codegen units to ask of an incremental rebuild that the profile
/// leaves at rustc's default (up to 256): two per source file of the crate
/// plus eight, at least 16.
///
/// rustc makes one or two units per module of the crate, and one per module
/// of `std` (or another crate) whose generic code the crate instantiates. A
/// module crate is often mostly the second kind: the game example's module,
/// one source file, gets about 40 units of a few kilobytes, each of which
/// costs a thread and a file in rustc and an input to the linker on every
/// rebuild, changed or not. Merged down to 16 the rebuild is about 9 ms
/// faster; a crate of 56 files (256 units by default, 120 asked) rebuilds
/// in the same time. Units of the crate's own modules stay apart (rustc
/// merges the smallest first), so an edit still recompiles little.
fn codegen_units(rustc: &record::Command, cwd: &Path) -> Option<usize> {
    let incremental = rustc.options("-C").any(|o| o.starts_with("incremental="));
    if !incremental || rustc.options("-C").any(|o| o.starts_with("codegen-units=")) {
        return None;
    }
    let root = rustc.args.iter().find(|a| a.ends_with(".rs") && !a.starts_with('-'))?;
    let src = cwd.join(root);
    let files = count_sources(src.parent()?);
    Some((2 * files + 8).clamp(16, 256))
}

/// The `.rs` files under `dir` (at most a few thousand are looked at).
fn count_sources(dir: &Path) -> usize {
    let mut count = 0;
    let mut work = vec![dir.to_owned()];
    let mut seen = 0;
    while let Some(dir) = work.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > 4096 {
                return count;
            }
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => work.push(path),
                Ok(t) if t.is_file() && path.extension().is_some_and(|e| e == "rs") => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// A file as [`snapshot`] sees it: path, size, modification time (seconds
/// and nanoseconds), inode.
type FileState = (PathBuf, u64, i64, i64, u64);

/// Where `hcr-build` keeps what it scanned of a module's dependencies, in
/// its `OUT_DIR`: for its own next run, never read by rustc.
const HCR_BUILD_CACHE: &str = "hcr-types-cache";

/// Every file under `dir` with its size, modification time and inode, or
/// `None` if it cannot be read: what a build script's run may change for
/// rustc (`hcr-build`'s cache left out).
fn snapshot(dir: &Path) -> Option<Vec<FileState>> {
    use std::os::unix::fs::MetadataExt as _;
    let mut files = Vec::new();
    let mut work = vec![dir.to_owned()];
    let top = dir.to_owned();
    while let Some(dir) = work.pop() {
        for entry in std::fs::read_dir(&dir).ok()? {
            let entry = entry.ok()?;
            if dir == top && entry.file_name() == HCR_BUILD_CACHE {
                continue;
            }
            let meta = entry.path().symlink_metadata().ok()?;
            if meta.is_dir() {
                work.push(entry.path());
            }
            files.push((entry.path(), meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino()));
        }
    }
    files.sort();
    Some(files)
}

/// The recorded command, ready to run: its environment on top of
/// cargo-hcr's.
fn command(recorded: &record::Command) -> Command {
    let mut command = Command::new(&recorded.program);
    command.args(&recorded.args).envs(recorded.env.iter().map(|(k, v)| (k, v)));
    command
}

/// Empties `dir`, creating it if needed.
fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)
}

/// What `rustc --error-format=json` printed: its diagnostics, and any other
/// text.
fn read_rustc_output(stderr: &str) -> (Diagnostics, String) {
    let mut diagnostics = Diagnostics::default();
    let mut other = String::new();
    for line in stderr.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            other.push_str(line);
            other.push('\n');
            continue;
        };
        match value.get("$message_type").and_then(Value::as_str) {
            Some("diagnostic") | None => {
                if let Ok(diagnostic) = serde_json::from_value::<Diagnostic>(value)
                    && let Some(rendered) = &diagnostic.rendered
                    && !is_summary(&diagnostic.message)
                {
                    diagnostics.add(&diagnostic.level, rendered);
                }
            }
            // Artifact notifications and future-incompatibility reports.
            Some(_) => {}
        }
    }
    (diagnostics, other)
}

/// Whether a diagnostic is rustc's count of the others, which cargo does
/// not show either (it prints its own).
fn is_summary(message: &str) -> bool {
    message.starts_with("aborting due to")
        || message.ends_with(" warning emitted")
        || message.ends_with(" warnings emitted")
}

/// Moves what rustc wrote into `staging` to `out_dir`, each file with one
/// `rename`, the dynamic library first (the host is waiting for it), and
/// refreshes the copies cargo keeps one directory up (hard links, as cargo
/// makes them). Whether the dynamic library differs from the one it
/// replaced; one that does not is harmless to the host, whose runtime
/// compares contents before it reloads.
fn install(staging: &Path, out_dir: &Path) -> std::io::Result<bool> {
    // (The library may be in place already: see `install_library`.)
    let mut files: Vec<PathBuf> = std::fs::read_dir(staging)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    let is_dylib = |f: &Path| f.extension() == Some(OsStr::new(std::env::consts::DLL_EXTENSION));
    // The dynamic library first.
    files.sort_by_key(|f| !is_dylib(f));
    let mut changed = true;
    for file in &files {
        let name = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if is_dylib(file) {
            changed = install_library(staging, out_dir, &name, &|| ())?;
            continue;
        }
        let dep_info = file.extension() == Some(OsStr::new("d"));
        if dep_info {
            // The dependency file names its outputs: in their real place.
            let text = std::fs::read_to_string(file)?;
            let text = text.replace(&*staging.to_string_lossy(), &out_dir.to_string_lossy());
            std::fs::write(file, text)?;
        }
        std::fs::rename(file, out_dir.join(&name))?;
        if !dep_info {
            refresh_uplifted(out_dir, &name)?;
        }
    }
    let _ = std::fs::remove_dir(staging);
    Ok(changed)
}

/// Moves the dynamic library `name` from `staging` into `out_dir` with one
/// rename (while rustc may still run), and calls `moved`: whether it
/// differs from the one it replaced, which is kept (hard-linked) to compare
/// with until then.
fn install_library(staging: &Path, out_dir: &Path, name: &str, moved: &dyn Fn()) -> std::io::Result<bool> {
    let target = out_dir.join(name);
    let previous = staging.join(".previous");
    let kept = std::fs::hard_link(&target, &previous).is_ok();
    std::fs::rename(staging.join(name), &target)?;
    moved();
    let changed = !kept || !same_contents(&previous, &target)?;
    if kept {
        std::fs::remove_file(&previous)?;
    }
    refresh_uplifted(out_dir, name)?;
    Ok(changed)
}

/// Points the copy cargo keeps of `out_dir/name` one directory up (a hard
/// link, if cargo made one) at the new file, with one rename.
fn refresh_uplifted(out_dir: &Path, name: &str) -> std::io::Result<()> {
    let Some(uplift_dir) = out_dir.parent() else { return Ok(()) };
    let target = out_dir.join(name);
    let uplifted = uplift_dir.join(name);
    if !uplifted.exists() || !target.exists() {
        return Ok(());
    }
    let temporary = uplift_dir.join(format!(".{name}.hcr-new"));
    let _ = std::fs::remove_file(&temporary);
    std::fs::hard_link(&target, &temporary)?;
    std::fs::rename(&temporary, &uplifted)
}

/// Whether two files have the same contents: sizes first, then the
/// linker's build ids (a hash of the contents, read from the notes without
/// reading the rest), and only without them the bytes.
fn same_contents(a: &Path, b: &Path) -> std::io::Result<bool> {
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    if let (Some(x), Some(y)) = (build_id(a), build_id(b)) {
        return Ok(x == y);
    }
    Ok(std::fs::read(a)? == std::fs::read(b)?)
}

/// The build id the linker wrote into an object file's notes.
fn build_id(path: &Path) -> Option<Vec<u8>> {
    use object::Object as _;
    let file = std::fs::File::open(path).ok()?;
    let cache = object::ReadCache::new(file);
    let object = object::File::parse(&cache).ok()?;
    object.build_id().ok().flatten().filter(|id| !id.is_empty()).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rustc(args: &[&str]) -> record::Command {
        record::Command {
            env: vec![("CARGO_MANIFEST_DIR".into(), "/ws/game/logic".into())],
            program: "/r/rustc".into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn rustc_runs_where_its_relative_crate_root_is() {
        let lib = Path::new("/ws/game/logic/src/lib.rs");
        let relative = rustc(&["--crate-name", "game_logic", "--edition=2024", "game/logic/src/lib.rs"]);
        assert_eq!(rustc_cwd(&relative, lib), Some(PathBuf::from("/ws")));
        let absolute = rustc(&["--crate-name", "game_logic", "/ws/game/logic/src/lib.rs"]);
        assert_eq!(rustc_cwd(&absolute, lib), Some(PathBuf::from("/ws/game/logic/src")));
        let elsewhere = rustc(&["--crate-name", "game_logic", "other/src/lib.rs"]);
        assert_eq!(rustc_cwd(&elsewhere, lib), None);
    }

    #[test]
    fn output_names() {
        let record = |args: &[&str]| ModuleRecord {
            package: "game-logic".into(),
            dir: "/ws/game/logic".into(),
            rustc: rustc(args),
            rustc_cwd: "/ws".into(),
            script: None,
            script_output: None,
            wasted_guesses: 0,
        };
        let plain = record(&["--crate-name", "game_logic", "-C", "opt-level=0"]);
        assert_eq!(
            plain.dylib_name(),
            format!("{}game_logic{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
        );
        let hashed = record(&["--crate-name", "game_logic", "-C", "extra-filename=-0123abcd"]);
        assert_eq!(
            hashed.dylib_name(),
            format!("{}game_logic-0123abcd{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
        );
    }

    /// A package whose "build script" and "rustc" are shell scripts: the
    /// script writes `OUT_DIR/gen.rs` from `src/sig.txt` (only when that
    /// changes its contents, as hcr-build does) after `src/delay` seconds;
    /// "rustc" reads `gen.rs` and `src/body.txt` at once and writes them
    /// into the library.
    fn fake_package(dir: &Path) -> ModuleRecord {
        let (src, out, deps) = (dir.join("src"), dir.join("out"), dir.join("deps"));
        for d in [&src, &out, &deps] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(src.join("sig.txt"), "fn a()").unwrap();
        std::fs::write(src.join("body.txt"), "1").unwrap();
        std::fs::write(src.join("delay"), "0").unwrap();
        std::fs::write(out.join("gen.rs"), "fn a()").unwrap();
        let script = r#"sleep "$(cat src/delay)"
if ! cmp -s src/sig.txt "$OUT_DIR/gen.rs"; then cp src/sig.txt "$OUT_DIR/gen.new" && mv "$OUT_DIR/gen.new" "$OUT_DIR/gen.rs"; fi
echo cargo:rerun-if-changed=src"#;
        let rustc = r#"gen=$(cat "$OUT_DIR/gen.rs"); body=$(cat src/body.txt)
while [ "$1" != --out-dir ]; do shift; done
printf '%s|%s' "$gen" "$body" > "$2/libfake.so""#;
        let env = vec![
            ("CARGO_MANIFEST_DIR".to_owned(), dir.to_string_lossy().into_owned()),
            ("OUT_DIR".to_owned(), out.to_string_lossy().into_owned()),
        ];
        let sh = |text: &str, args: &[&str]| record::Command {
            env: env.clone(),
            program: "/bin/sh".into(),
            args: ["-c", text, "sh"].iter().chain(args).map(|a| (*a).to_owned()).collect(),
        };
        let out_dir = deps.to_string_lossy().into_owned();
        ModuleRecord {
            package: "fake".into(),
            dir: dir.to_owned(),
            rustc: sh(rustc, &["--crate-name", "fake", "--crate-type", "cdylib", "--out-dir", &out_dir]),
            rustc_cwd: dir.to_owned(),
            script: Some(sh(script, &[])),
            script_output: Some(ScriptOutput::parse("cargo:rerun-if-changed=src", dir)),
            wasted_guesses: 0,
        }
    }

    fn built(outcome: Outcome) -> bool {
        match outcome {
            Outcome::Built { guess, .. } => guess == Guess::Kept,
            other => panic!("not built: {other:?}"),
        }
    }

    #[test]
    fn rustc_runs_alongside_the_build_script_only_when_that_changes_nothing_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let record = fake_package(dir.path());
        let library = dir.path().join("deps/libfake.so");
        let options = Options { color: false, atomic_linker: false };
        let changed = [dir.path().join("src/body.txt")];
        let again = || rebuild(&record, &changed, options, &Stopper::default(), &|| ());
        // A body changed: the script leaves gen.rs alone, rustc's guess stands.
        std::fs::write(dir.path().join("src/body.txt"), "2").unwrap();
        assert!(built(again()), "rustc ran alongside");
        assert_eq!(std::fs::read_to_string(&library).unwrap(), "fn a()|2");
        // A signature changed, and the script writes gen.rs after rustc read
        // the old one: the guess is dropped and rustc runs again.
        std::fs::write(dir.path().join("src/sig.txt"), "fn b()").unwrap();
        std::fs::write(dir.path().join("src/delay"), "0.3").unwrap();
        assert!(!built(again()), "rustc ran again after the script");
        assert_eq!(std::fs::read_to_string(&library).unwrap(), "fn b()|2", "built from what the script wrote");
        // A script that rewrites its output every time: once rustc has been
        // started alongside it for nothing MAX_WASTED_GUESSES times in a row
        // (the session counts them), rustc waits for it.
        let mut rewriting = record.clone();
        rewriting.script = Some(record::Command {
            args: ["-c", "cp src/sig.txt \"$OUT_DIR/gen.new\" && mv \"$OUT_DIR/gen.new\" \"$OUT_DIR/gen.rs\"", "sh"]
                .map(str::to_owned)
                .to_vec(),
            ..record.script.clone().unwrap()
        });
        std::fs::write(dir.path().join("src/delay"), "0").unwrap();
        let guess = |record: &ModuleRecord| match rebuild(record, &changed, options, &Stopper::default(), &|| ()) {
            Outcome::Built { guess, .. } => guess,
            other => panic!("not built: {other:?}"),
        };
        assert_eq!(guess(&rewriting), Guess::Dropped);
        rewriting.wasted_guesses = MAX_WASTED_GUESSES;
        assert_eq!(guess(&rewriting), Guess::None, "rustc waited for the script");
        assert_eq!(std::fs::read_to_string(&library).unwrap(), "fn b()|2");

        // A directive for rustc changed: cargo's to handle.
        let mut other = record.clone();
        other.script_output = Some(ScriptOutput::parse("cargo:rerun-if-changed=src\ncargo:rustc-cfg=x", dir.path()));
        assert!(matches!(
            rebuild(&other, &changed, options, &Stopper::default(), &|| ()),
            Outcome::NeedsCargo(why) if why.contains("output changed")
        ));
    }

    #[test]
    fn a_linker_that_refuses_the_fast_link_argument_is_run_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = fake_package(dir.path());
        record.script = None;
        record.script_output = None;
        // A "rustc" whose linker refuses -O0, as rustc reports that.
        record.rustc.args[1] = r#"for a in "$@"; do case "$a" in *-O0) echo 'error: linking with `cc` failed: exit status: 1' >&2; exit 1;; esac; done
while [ "$1" != --out-dir ]; do shift; done
printf linked > "$2/libfake.so""#
            .to_owned();
        let options = Options { color: false, atomic_linker: false };
        let outcome = rebuild(&record, &[dir.path().join("src/body.txt")], options, &Stopper::default(), &|| ());
        assert!(matches!(outcome, Outcome::Built { .. }), "{outcome:?}");
        assert_eq!(std::fs::read_to_string(dir.path().join("deps/libfake.so")).unwrap(), "linked");
        assert!(link::args(&record.rustc, dir.path()).is_empty(), "not asked again in this session");
    }

    #[test]
    fn rebuilds_ask_for_two_codegen_units_per_source_file_unless_the_profile_chose() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("m/src/nested")).unwrap();
        for file in ["lib.rs", "a.rs", "nested/b.rs", "nested/notes.txt"] {
            std::fs::write(dir.path().join("m/src").join(file), "").unwrap();
        }
        let command = |extra: &[&str]| {
            let mut args = vec!["--crate-name", "m", "m/src/lib.rs", "-C", "incremental=/t/inc"];
            args.extend(extra);
            rustc(&args)
        };
        assert_eq!(codegen_units(&command(&[]), dir.path()), Some(16), "3 files: at least 16");
        for i in 0..30 {
            std::fs::write(dir.path().join(format!("m/src/f{i}.rs")), "").unwrap();
        }
        assert_eq!(codegen_units(&command(&[]), dir.path()), Some(2 * 33 + 8));
        assert_eq!(codegen_units(&command(&["-C", "codegen-units=1"]), dir.path()), None, "the profile's choice");
        let plain = rustc(&["--crate-name", "m", "m/src/lib.rs"]);
        assert_eq!(codegen_units(&plain, dir.path()), None, "not incremental");
    }

    #[test]
    fn what_rustc_may_read_from_out_dir_is_snapshotted() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        std::fs::write(out.join("hcr_module.rs"), "// generated").unwrap();
        std::fs::create_dir_all(out.join("nested")).unwrap();
        std::fs::write(out.join("nested/bindings.rs"), "// generated").unwrap();
        std::fs::create_dir_all(out.join(HCR_BUILD_CACHE)).unwrap();
        let before = snapshot(out).unwrap();
        assert_eq!(before.len(), 3, "{before:?}");
        // hcr-build's cache is its own.
        std::fs::write(out.join(HCR_BUILD_CACHE).join("types-0"), "kept").unwrap();
        assert_eq!(snapshot(out), Some(before.clone()));
        // Same contents, written again with a rename: another inode.
        std::fs::write(out.join("new"), "// generated").unwrap();
        std::fs::rename(out.join("new"), out.join("hcr_module.rs")).unwrap();
        let after = snapshot(out).unwrap();
        assert_ne!(after, before);
        // A new file anywhere.
        std::fs::write(out.join("nested/more.rs"), "").unwrap();
        assert_ne!(snapshot(out), Some(after));
        assert_eq!(snapshot(&out.join("missing")), None);
    }

    #[test]
    fn libraries_are_compared_by_build_id_and_other_files_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "same length").unwrap();
        std::fs::write(&b, "same length").unwrap();
        assert!(same_contents(&a, &b).unwrap());
        std::fs::write(&b, "same lengtH").unwrap();
        assert!(!same_contents(&a, &b).unwrap(), "no build id: the bytes decide");
        std::fs::write(&b, "longer contents").unwrap();
        assert!(!same_contents(&a, &b).unwrap());
        // This test program has the build id its linker gave it.
        let me = std::env::current_exe().unwrap();
        let copy = dir.path().join("copy");
        std::fs::copy(&me, &copy).unwrap();
        let id = build_id(&me).expect("linked with a build id");
        assert_eq!(build_id(&copy), Some(id));
        assert!(same_contents(&me, &copy).unwrap());
        assert_eq!(build_id(&a), None);
    }

    #[test]
    fn rustc_output_gives_diagnostics() {
        let stderr = concat!(
            r#"{"$message_type":"diagnostic","message":"unused","code":null,"level":"warning","spans":[],"children":[],"rendered":"warning: unused\n"}"#,
            "\n",
            r#"{"$message_type":"artifact","artifact":"/t/libm.so","emit":"link"}"#,
            "\n",
            r#"{"$message_type":"diagnostic","message":"1 warning emitted","code":null,"level":"warning","spans":[],"children":[],"rendered":"warning: 1 warning emitted\n"}"#,
            "\nerror: linker said no\n"
        );
        let (diagnostics, other) = read_rustc_output(stderr);
        assert_eq!(diagnostics.warnings, ["warning: unused\n"]);
        assert!(diagnostics.errors.is_empty());
        assert_eq!(other, "error: linker said no\n");
    }

    #[test]
    fn installing_replaces_by_rename_and_keeps_an_unchanged_library() {
        let root = tempfile::tempdir().unwrap();
        let profile = root.path().join("debug");
        let deps = profile.join("deps");
        let staging = profile.join(".hcr-staging/m");
        std::fs::create_dir_all(&deps).unwrap();
        let dylib = format!("libm.{}", std::env::consts::DLL_EXTENSION);
        std::fs::write(deps.join(&dylib), "old").unwrap();
        std::fs::hard_link(deps.join(&dylib), profile.join(&dylib)).unwrap();

        // The same library: it is said to be unchanged.
        fresh_dir(&staging).unwrap();
        std::fs::write(staging.join(&dylib), "old").unwrap();
        assert!(!install(&staging, &deps).unwrap());
        assert_eq!(std::fs::read_to_string(deps.join(&dylib)).unwrap(), "old");
        assert!(!staging.exists(), "nothing is left behind");

        // A new one: moved, its dependency file rewritten, the uplifted copy refreshed.
        fresh_dir(&staging).unwrap();
        std::fs::write(staging.join(&dylib), "new").unwrap();
        std::fs::write(staging.join("libm.rlib"), "rlib").unwrap();
        std::fs::write(staging.join("m.d"), format!("{}/{dylib}: src/lib.rs\n", staging.display())).unwrap();
        assert!(install(&staging, &deps).unwrap());
        assert!(!staging.exists());
        assert_eq!(std::fs::read_to_string(deps.join(&dylib)).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(profile.join(&dylib)).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(deps.join("libm.rlib")).unwrap(), "rlib");
        assert!(!profile.join("libm.rlib").exists(), "only copies cargo made are refreshed");
        assert_eq!(
            std::fs::read_to_string(deps.join("m.d")).unwrap(),
            format!("{}/{dylib}: src/lib.rs\n", deps.display())
        );
    }

    #[test]
    fn a_stopped_stopper_runs_nothing() {
        let stopper = Stopper::default();
        let mut echo = Command::new("sh");
        echo.args(["-c", "echo out; echo err >&2; exit 3"]);
        assert_eq!(stopper.run(&mut echo).unwrap(), Some(("out\n".into(), "err\n".into(), false)));
        stopper.stop();
        assert_eq!(stopper.run(&mut echo).unwrap(), None);
    }

    #[test]
    fn stopping_ends_the_running_process() {
        let stopper = Stopper::default();
        let running = stopper.clone();
        let worker = std::thread::spawn(move || running.run(Command::new("sleep").arg("600")).unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        while stopper.lock().running.is_none() {
            assert!(Instant::now() < deadline, "sleep never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        stopper.stop();
        assert_eq!(worker.join().unwrap(), None);
    }
}
