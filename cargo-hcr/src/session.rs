//! `cargo hcr run`: the initial build, the host, and the loop that rebuilds
//! what changed and shows what the host's runtime made of it.
//!
//! The first build is `cargo build -vv` of the modules and the host; from
//! its verbose output each module's build-script and `rustc` commands are
//! recorded. A save of a module then runs those commands again directly
//! (see [`crate::rebuild`]); cargo builds again (always the same packages,
//! so that it resolves the same features) only when a record is missing or
//! cannot be used: a manifest changed, a build script printed different
//! directives, a module links another one.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{IsTerminal, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::cargo::{self, Build, Selection};
use crate::cli::RunArgs;
use crate::error::{Error, Result};
use crate::host::{self, Host};
use crate::metadata::{self, Listed, Metadata, Package};
use crate::process;
use crate::rebuild::{self, Guess, ModuleRecord, Outcome, Stopper};
use crate::report::{Follower, Report};
use crate::trace::Trace;
use crate::watch::{Contents, Watcher};

/// How long after the last event, while a file is still being written (no
/// event said the writing is over), before a build starts anyway.
const DEBOUNCE: Duration = Duration::from_millis(30);
/// How long after the last event when every write is over (a file closed
/// after writing, renamed into place): enough for the other files of a
/// multi-file save.
const QUIET: Duration = Duration::from_millis(2);
/// How often the loop looks whether the host exited.
const TICK: Duration = Duration::from_millis(50);
/// How long the host gets to exit after it was asked to stop.
const HOST_GRACE: Duration = Duration::from_secs(2);
/// The environment variable that, set to `0`, has every rebuild done by
/// cargo (to compare, or should a direct rebuild misbehave).
const DIRECT_VAR: &str = "CARGO_HCR_DIRECT";
/// The report file's name in the private directory.
const REPORT_FILE: &str = "reloads.tsv";

/// What the loop reacts to.
#[derive(Debug)]
enum Event {
    /// SIGINT, SIGTERM or SIGHUP.
    Signal(libc::c_int),
    /// A file system event.
    Files(notify::Result<notify::Event>),
    /// The running cargo build is over.
    Cargo(cargo::Output),
    /// The running direct rebuild is over: each module's outcome.
    Direct(Vec<(usize, Outcome)>),
}

/// Runs `cargo hcr run` until the host exits or a signal stops it; the
/// exit code to leave with.
///
/// # Errors
///
/// Anything that prevents starting: the metadata, the initial build, the
/// watcher, the host.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let (tx, rx) = mpsc::channel();
    forward_signals(tx.clone())?;

    let cargo = std::env::var_os("CARGO").filter(|c| !c.is_empty()).unwrap_or_else(|| "cargo".into());
    let metadata = Metadata::load(&cargo)?;
    let host = match &args.host {
        Some(name) => metadata.member(name)?.clone(),
        None => metadata.default_host()?.clone(),
    };
    let bin = metadata::host_binary(&host, args.bin.as_deref())?;
    let modules = modules(&metadata, &host, &args.modules)?;

    // The private directory the host reports to, removed on return.
    let report_dir = tempfile::Builder::new()
        .prefix("cargo-hcr-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .map_err(|source| Error::Io { path: std::env::temp_dir(), source })?;
    let report_path = report_dir.path().join(REPORT_FILE);
    std::fs::File::create(&report_path).map_err(|source| Error::Io { path: report_path.clone(), source })?;

    // Watching starts before the first build, so that no edit is missed:
    // the modules, then the host, then the local crates they depend on (a
    // crate of shared types, say), whose changes are the host's.
    let mut dirs: Vec<PathBuf> = modules.iter().map(|m| m.dir.clone()).collect();
    dirs.push(host.dir.clone());
    let roots: Vec<&Package> = modules.iter().chain([&host]).collect();
    dirs.extend(metadata.local_dependencies(&roots).into_iter().map(|p| p.dir.clone()));
    let watcher = Watcher::start(&dirs, report_dir.path(), tx.clone(), Event::Files)?;
    let contents = Contents::new(&watcher.inputs());

    let mut packages: Vec<String> = modules.iter().map(|m| m.name.clone()).collect();
    packages.push(host.name.clone());
    let mut session = Session {
        rx,
        tx,
        options: cargo::Options { cargo, release: args.release, color: std::io::stderr().is_terminal() },
        packages,
        records: vec![None; modules.len()],
        modules,
        host,
        bin,
        host_args: args.host_args,
        restart: !args.no_restart,
        revert_on_panic: args.revert_on_panic,
        watcher,
        contents,
        follower: Follower::new(&report_path),
        job: None,
        pending: Pending::default(),
        build_at: None,
        writing: BTreeSet::new(),
        atomic: false,
        direct: std::env::var_os(DIRECT_VAR).is_none_or(|v| v != "0"),
        trace: Arc::new(Trace::from_env()),
    };
    let code = session.start()?;
    drop(session);
    drop(report_dir);
    Ok(code)
}

/// The modules to build and watch: those named, or those the host depends
/// on. A module listed only under `[build-dependencies]` works, built twice;
/// cargo-hcr says how to build it once.
fn modules(metadata: &Metadata, host: &Package, named: &[String]) -> Result<Vec<Package>> {
    let mut modules: Vec<Package> = if named.is_empty() {
        let found = metadata.modules_of(host);
        for (module, listed) in &found {
            if *listed == Listed::BuildOnly {
                status!(
                    "warning: `{}` lists module `{}` only under [build-dependencies], so cargo builds it twice: move it to [dependencies]",
                    host.name,
                    module.name
                );
            }
        }
        found.into_iter().map(|(m, _)| m.clone()).collect()
    } else {
        named.iter().map(|name| metadata.module(name).cloned()).collect::<Result<_>>()?
    };
    if modules.is_empty() {
        return Err(Error::NoModules(host.name.clone()));
    }
    let mut seen = BTreeSet::new();
    modules.retain(|m| seen.insert(m.id.clone()));
    Ok(modules)
}

/// Sends SIGINT, SIGTERM and SIGHUP through `tx` instead of letting them
/// end cargo-hcr at once.
fn forward_signals(tx: Sender<Event>) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(Error::Signals)?;
    thread::spawn(move || {
        for signal in signals.forever() {
            if tx.send(Event::Signal(signal)).is_err() {
                break;
            }
        }
    });
    Ok(())
}

/// What changed since the last build started.
#[derive(Debug, Default)]
struct Pending {
    /// Each changed module's changed files.
    modules: BTreeMap<usize, BTreeSet<PathBuf>>,
    /// The host's own changed files.
    host: BTreeSet<PathBuf>,
}

impl Pending {
    /// Keeps only the files whose contents differ from those last built, and
    /// takes them as built: a save that is over without changing anything
    /// is dropped. The files dropped.
    fn settle(&mut self, contents: &mut Contents) -> Vec<PathBuf> {
        let mut dropped = Vec::new();
        let mut keep = |file: &PathBuf| {
            let differs = contents.accept(file);
            if !differs {
                dropped.push(file.clone());
            }
            differs
        };
        for files in self.modules.values_mut() {
            files.retain(&mut keep);
        }
        self.modules.retain(|_, files| !files.is_empty());
        self.host.retain(keep);
        dropped
    }
}

/// What a cargo build is for.
#[derive(Debug)]
enum Purpose {
    /// The first build: everything, then the host starts.
    Initial,
    /// These modules' libraries.
    Modules(Vec<usize>),
    /// The host (and whatever else changed), then the host restarts.
    Host,
}

/// The build in progress.
#[derive(Debug)]
enum Job {
    Cargo { build: Build, purpose: Purpose },
    Direct { stopper: Stopper, started: Instant },
}

/// The state of a running session.
struct Session {
    rx: Receiver<Event>,
    tx: Sender<Event>,
    options: cargo::Options,
    /// What every cargo build names: the modules, then the host.
    packages: Vec<String>,
    modules: Vec<Package>,
    /// How cargo last compiled each module.
    records: Vec<Option<ModuleRecord>>,
    host: Package,
    bin: String,
    host_args: Vec<OsString>,
    /// Whether a change of the host's sources rebuilds and restarts it.
    restart: bool,
    /// `--revert-on-panic`: the host reverts a module whose new build panicked.
    revert_on_panic: bool,
    watcher: Watcher,
    contents: Contents,
    follower: Follower,
    job: Option<Job>,
    pending: Pending,
    /// When to build what is pending.
    build_at: Option<Instant>,
    /// Files an event said are being written, not closed yet.
    writing: BTreeSet<PathBuf>,
    /// Whether every new module file appears with one rename.
    atomic: bool,
    /// Whether modules are rebuilt without cargo when they can be
    /// (`CARGO_HCR_DIRECT=0` turns it off).
    direct: bool,
    trace: Arc<Trace>,
}

/// How the initial build ended.
enum Initial {
    Built(PathBuf),
    Stopped(ExitCode),
}

impl Session {
    /// Builds everything, starts the host and runs the loop.
    fn start(&mut self) -> Result<ExitCode> {
        let executable = match self.initial_build()? {
            Initial::Built(executable) => executable,
            Initial::Stopped(code) => return Ok(code),
        };
        let mut process =
            Host::spawn(&executable, &self.host_args, self.follower.path(), self.atomic, self.revert_on_panic)?;
        let names: Vec<&str> = self.modules.iter().map(|m| m.name.as_str()).collect();
        status!("running {}, watching {}", shown(&executable).display(), names.join(", "));
        let result = self.event_loop(&mut process, executable);
        if result.is_err() {
            // cargo-hcr cannot go on: leave nothing behind.
            self.stop_job();
            let _ = process.stop(libc::SIGTERM, HOST_GRACE, || false);
        }
        result
    }

    /// Builds the modules and the host; the host's executable.
    fn initial_build(&mut self) -> Result<Initial> {
        self.start_cargo(Purpose::Initial)?;
        loop {
            match self.rx.recv() {
                Ok(Event::Signal(signal)) => {
                    self.stop_job();
                    status!("stopped");
                    return Ok(Initial::Stopped(ExitCode::from(process::signal_exit_code(signal))));
                }
                Ok(Event::Files(event)) => self.files_changed(&event),
                Ok(Event::Cargo(output)) => {
                    let Some(Job::Cargo { build, .. }) = self.job.take() else { continue };
                    if !self.finish_cargo(build, &output, None)? {
                        return Err(Error::BuildFailed);
                    }
                    // Changes during the first build are in it, or pending.
                    let executable =
                        self.executable(&output).ok_or_else(|| Error::NoExecutable(self.host.name.clone()))?;
                    let libraries: Vec<&PathBuf> = output
                        .artifacts
                        .iter()
                        .flat_map(|a| &a.filenames)
                        .filter(|f| f.extension().is_some_and(|e| e == std::env::consts::DLL_EXTENSION))
                        .collect();
                    self.atomic = !libraries.is_empty() && libraries.iter().all(|l| host::replaced_atomically(l));
                    return Ok(Initial::Built(executable));
                }
                Ok(Event::Direct(_)) => {}
                Err(_) => unreachable!("the session holds a sender"),
            }
        }
    }

    /// The host's executable among the artifacts of a build.
    fn executable(&self, output: &cargo::Output) -> Option<PathBuf> {
        output.executable(&self.host.id, &self.bin)
    }

    /// Until the host exits or a signal comes: rebuilds what changed and
    /// shows the host's reports.
    fn event_loop(&mut self, host: &mut Host, mut executable: PathBuf) -> Result<ExitCode> {
        loop {
            let timeout = match self.build_at {
                Some(t) if self.job.is_none() => t.saturating_duration_since(Instant::now()).min(TICK),
                _ => TICK,
            };
            match self.rx.recv_timeout(timeout) {
                Ok(Event::Signal(signal)) => return self.shutdown(host, signal),
                Ok(Event::Files(event)) => self.files_changed(&event),
                Ok(Event::Cargo(output)) => {
                    if let Some(Job::Cargo { build, purpose }) = self.job.take() {
                        let modules = match &purpose {
                            Purpose::Modules(modules) => Some(modules.as_slice()),
                            _ => None,
                        };
                        let success = self.finish_cargo(build, &output, modules)?;
                        if !success {
                            status!(
                                "the host keeps running its old code, with its state: fix the errors and save again"
                            );
                        } else if let Purpose::Host = purpose
                            && let Some(new) = self.executable(&output)
                        {
                            let fresh =
                                output.artifacts.iter().any(|a| a.package_id == self.host.id && a.bin && a.fresh);
                            if !fresh || new != executable {
                                executable = new;
                                self.restart_host(host, &executable)?;
                            } else {
                                status!(
                                    "built {}: the executable is unchanged, the host keeps running",
                                    self.host.name
                                );
                            }
                        }
                        self.show_reports();
                    }
                }
                Ok(Event::Direct(outcomes)) => {
                    if let Some(Job::Direct { started, .. }) = self.job.take() {
                        self.finish_direct(started, outcomes)?;
                        self.show_reports();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("the session holds a sender"),
            }
            if let Some(exit) = host.try_wait()? {
                self.stop_job();
                self.show_reports();
                status!("the host exited ({exit})");
                return Ok(ExitCode::from(process::exit_code(exit)));
            }
            if self.job.is_none() && self.build_at.is_some_and(|t| t <= Instant::now()) {
                self.build_at = None;
                // Whatever was still being written had its while.
                self.writing.clear();
                self.build_pending()?;
            }
        }
    }

    /// Notes what a file system event changed: files whose contents are new.
    fn files_changed(&mut self, event: &notify::Result<notify::Event>) {
        if let Err(e) = event {
            status!("file watching: {e}; rebuilding to be sure");
        }
        let change = self.watcher.change(event);
        if change.report {
            self.show_reports();
        }
        let mut any = false;
        let files = !change.files.is_empty();
        for (package, file) in change.files {
            // A file being written is waited for, until it is closed (or
            // nothing happened for a while).
            if change.complete {
                self.writing.remove(&file);
            } else {
                self.writing.insert(file.clone());
            }
            // An event whose file did not change (a save without edits, a
            // touch) starts no build; a watcher error rebuilds anyway.
            if event.is_ok() && !self.contents.differs(&file) {
                self.trace.event("unchanged", &file.display().to_string());
                continue;
            }
            self.trace.event("change", &file.display().to_string());
            any = true;
            // The host, or a local crate it or a module depends on: the
            // host is rebuilt (and the modules with it).
            if package >= self.modules.len() {
                self.pending.host.insert(file);
            } else {
                self.pending.modules.entry(package).or_default().insert(file);
            }
        }
        if any || (files && self.build_at.is_some()) {
            // Counted from the last event: soon if every write is over.
            let wait = if self.writing.is_empty() { QUIET } else { DEBOUNCE };
            self.build_at = Some(Instant::now() + wait);
        }
    }

    /// Builds what changed: the host (and everything) with cargo if its own
    /// sources changed, otherwise the changed modules, directly when their
    /// records allow it.
    fn build_pending(&mut self) -> Result<()> {
        for file in self.pending.settle(&mut self.contents) {
            self.trace.event("unchanged", &file.display().to_string());
        }
        if !self.pending.host.is_empty() {
            if self.restart {
                self.pending = Pending::default();
                return self.start_cargo(Purpose::Host);
            }
            self.pending.host.clear();
            status!(
                "{}'s own sources changed: it keeps running its old code (--no-restart); run cargo hcr run again to run the new code",
                self.host.name
            );
        }
        let pending = std::mem::take(&mut self.pending.modules);
        if pending.is_empty() {
            return Ok(());
        }
        let direct: Option<Vec<(usize, ModuleRecord, Vec<PathBuf>)>> = pending
            .iter()
            .map(|(&i, files)| self.direct_plan(i, files).map(|r| (i, r, files.iter().cloned().collect())))
            .collect();
        let names: Vec<&str> = pending.keys().map(|&i| self.modules[i].name.as_str()).collect();
        match direct {
            Some(plan) => {
                status!("building {}...", names.join(", "));
                self.trace.event("build-start", "rustc");
                let stopper = Stopper::default();
                let worker = stopper.clone();
                let tx = self.tx.clone();
                let options = rebuild::Options { color: self.options.color, atomic_linker: self.atomic };
                let trace = Arc::clone(&self.trace);
                thread::spawn(move || {
                    let outcomes = plan
                        .iter()
                        .map(|(i, record, files)| {
                            let linked = || trace.event("linked", &record.package);
                            (*i, rebuild::rebuild(record, files, options, &worker, &linked))
                        })
                        .collect();
                    // The receiver is gone only when cargo-hcr is stopping.
                    let _ = tx.send(Event::Direct(outcomes));
                });
                self.job = Some(Job::Direct { stopper, started: Instant::now() });
                Ok(())
            }
            None => self.start_cargo(Purpose::Modules(pending.keys().copied().collect())),
        }
    }

    /// The record to rebuild module `index` with after `files` changed, if
    /// it can be rebuilt without cargo.
    fn direct_plan(&self, index: usize, files: &BTreeSet<PathBuf>) -> Option<ModuleRecord> {
        if !self.direct {
            return None;
        }
        let record = self.records[index].as_ref()?;
        // A new manifest or build script is cargo's to read and compile.
        let dir = &self.modules[index].dir;
        if files.contains(&dir.join("Cargo.toml")) || files.contains(&dir.join("build.rs")) {
            return None;
        }
        let linked = self.records.iter().flatten().any(|other| other.package != record.package && other.links(record));
        (!linked).then(|| record.clone())
    }

    /// Starts cargo on the session's packages: always the same ones, so
    /// that cargo resolves the same features and finds everything but what
    /// changed up to date. (Leaving the host out, or asking for `--lib`
    /// only, changes the features of shared build dependencies, which cargo
    /// then compiles again.) The host's executable is relinked when a module
    /// changed, and keeps running until its own sources change.
    fn start_cargo(&mut self, purpose: Purpose) -> Result<()> {
        let names = match &purpose {
            Purpose::Modules(modules) => modules.iter().map(|&i| self.modules[i].name.as_str()).collect::<Vec<_>>(),
            _ => self.packages.iter().map(String::as_str).collect(),
        };
        status!("building {}...", names.join(", "));
        self.trace.event("build-start", "cargo");
        let selection = Selection { packages: self.packages.clone() };
        let build = Build::start(&self.options, &selection, self.tx.clone(), Event::Cargo)?;
        self.job = Some(Job::Cargo { build, purpose });
        Ok(())
    }

    /// Waits for cargo to exit, says how it went (errors, or warnings and
    /// which modules changed), and keeps the records of the modules it
    /// compiled; whether it succeeded. `modules` are the modules it was
    /// asked to rebuild, `None` for a build of everything.
    fn finish_cargo(&mut self, build: Build, output: &cargo::Output, modules: Option<&[usize]>) -> Result<bool> {
        let elapsed = build.started.elapsed();
        let success = build.finish()?.success();
        self.trace.event("build-end", &format!("cargo\t{}", elapsed.as_micros()));
        if !success {
            status!("build failed");
            let _ = writeln!(std::io::stderr(), "{}", output.error_text());
            return Ok(false);
        }
        let warnings = output.warning_text();
        if !warnings.is_empty() {
            let _ = writeln!(std::io::stderr(), "{warnings}");
        }
        for (index, module) in self.modules.iter().enumerate() {
            if let Some(record) = ModuleRecord::from_build(module, &output.commands, self.records[index].as_ref()) {
                self.records[index] = Some(record);
            }
        }
        let Some(modules) = modules else {
            status!("built {} in {} ms", self.packages.join(", "), elapsed.as_millis());
            return Ok(true);
        };
        let compiled: BTreeSet<&str> = output.compiled().collect();
        let (built, unchanged): (Vec<&Package>, Vec<&Package>) =
            modules.iter().map(|&i| &self.modules[i]).partition(|m| compiled.contains(m.id.as_str()));
        let names = |packages: &[&Package]| packages.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
        if !built.is_empty() {
            status!("built {} in {} ms (cargo)", names(&built), elapsed.as_millis());
        }
        if !unchanged.is_empty() {
            status!("built {}: the library is unchanged", names(&unchanged));
        }
        // Anything else compiled (the host aside, which depends on the
        // modules) is time the save did not need: say so.
        let others: BTreeSet<&str> = compiled
            .iter()
            .filter(|id| **id != self.host.id && !modules.iter().any(|&i| self.modules[i].id == **id))
            .map(|id| package_name(id))
            .collect();
        if !others.is_empty() {
            status!("cargo also compiled {}", others.into_iter().collect::<Vec<_>>().join(", "));
        }
        Ok(true)
    }

    /// Says how a direct rebuild went; rebuilds with cargo the modules whose
    /// records could not be used.
    fn finish_direct(&mut self, started: Instant, outcomes: Vec<(usize, Outcome)>) -> Result<()> {
        let elapsed = started.elapsed();
        self.trace.event("build-end", &format!("rustc\t{}", elapsed.as_micros()));
        let mut fallback = Vec::new();
        let mut failed = false;
        for (index, outcome) in outcomes {
            let name = self.modules[index].name.clone();
            match outcome {
                Outcome::Built { changed, warnings, script_output, script_time, rustc_time, guess } => {
                    if !warnings.is_empty() {
                        let _ = writeln!(std::io::stderr(), "{warnings}");
                    }
                    if let Some(record) = self.records[index].as_mut() {
                        if let Some(output) = script_output {
                            // The same directives; perhaps more inputs.
                            record.script_output = Some(output);
                        }
                        match guess {
                            Guess::Kept => record.wasted_guesses = 0,
                            Guess::Dropped => record.wasted_guesses += 1,
                            Guess::None => {}
                        }
                    }
                    let parallel = guess == Guess::Kept;
                    if changed {
                        self.trace.event("installed", &name);
                        let alongside = if parallel { " alongside" } else { "," };
                        let script = script_time
                            .map(|t| format!("build script {} ms{alongside} ", t.as_millis()))
                            .unwrap_or_default();
                        status!(
                            "built {name} in {} ms ({script}rustc {} ms)",
                            elapsed.as_millis(),
                            rustc_time.as_millis()
                        );
                    } else {
                        status!("built {name}: the library is unchanged");
                    }
                }
                Outcome::Failed(text) => {
                    failed = true;
                    status!("build failed");
                    let _ = writeln!(std::io::stderr(), "{text}");
                }
                Outcome::NeedsCargo(why) => {
                    status!("{name} is rebuilt with cargo: {why}");
                    self.records[index] = None;
                    fallback.push(index);
                }
                Outcome::Stopped => {}
            }
        }
        if failed {
            status!("the host keeps running its old code, with its state: fix the errors and save again");
        }
        if !fallback.is_empty() {
            self.start_cargo(Purpose::Modules(fallback))?;
        }
        Ok(())
    }

    /// Stops the host, says that its state is lost, and starts the new
    /// executable.
    fn restart_host(&mut self, host: &mut Host, executable: &Path) -> Result<()> {
        status!(
            "{}'s own code changed: restarting it, its state is not kept (--no-restart keeps the running host)",
            self.host.name
        );
        let rx = &self.rx;
        host.stop(libc::SIGTERM, HOST_GRACE, || rx.try_iter().any(|e| matches!(e, Event::Signal(_))))?;
        // The old host may have refused the modules this build rebuilt
        // against the host's new code (a changed shared type): the new host
        // loads them, so those refusals are not news.
        self.print_reports(false);
        *host = Host::spawn(executable, &self.host_args, self.follower.path(), self.atomic, self.revert_on_panic)?;
        status!("running {}", shown(executable).display());
        Ok(())
    }

    /// Stops the build in progress, if any.
    fn stop_job(&mut self) {
        match self.job.take() {
            Some(Job::Cargo { build, .. }) => build.stop(),
            Some(Job::Direct { stopper, .. }) => stopper.stop(),
            None => {}
        }
    }

    /// Prints the reports the host wrote since the last look, unless a
    /// build is in progress: they wait for its result to be printed first.
    fn show_reports(&mut self) {
        if self.job.is_some() {
            return;
        }
        self.print_reports(true);
    }

    /// Prints the reports the host wrote since the last look; refused
    /// reloads only if `refusals`.
    fn print_reports(&mut self, refusals: bool) {
        match self.follower.read_new_lines() {
            Ok(lines) => {
                let reports = lines.iter().filter_map(|line| Report::parse(line));
                for report in reports.filter(|r| refusals || !matches!(r, Report::Failed { .. })) {
                    if let Report::Reloaded { .. } = report {
                        self.trace.event("reloaded", &report.to_string());
                    }
                    status!("{report}");
                    match report {
                        Report::Failed { .. } => status!(
                            "the host keeps running its old code, with its state: fix the module and save again"
                        ),
                        Report::Panic { .. } => self.trace.event("panic", &report.to_string()),
                        _ => {}
                    }
                }
            }
            Err(e) => status!("cannot read {}: {e}", self.follower.path().display()),
        }
    }

    /// Stops everything after `signal`: the build, then the host (which got
    /// the same signal, from the terminal or from here), gently then firmly.
    fn shutdown(&mut self, host: &mut Host, signal: libc::c_int) -> Result<ExitCode> {
        self.stop_job();
        let rx = &self.rx;
        // A second signal means: now.
        host.stop(signal, HOST_GRACE, || rx.try_iter().any(|e| matches!(e, Event::Signal(_))))?;
        self.show_reports();
        status!("stopped");
        Ok(ExitCode::from(process::signal_exit_code(signal)))
    }
}

/// The name in a package id (`path+file:///ws/game#0.1.0`,
/// `registry+...#syn@2.0.1`), for messages. Read by hand: `cargo_metadata`
/// keeps package ids opaque, and the build messages carry no names.
fn package_name(id: &str) -> &str {
    match id.rsplit_once('#') {
        Some((_, fragment)) if fragment.contains('@') => fragment.split('@').next().unwrap_or(fragment),
        Some((path, _)) => path.rsplit('/').next().unwrap_or(path),
        None => id,
    }
}

/// `path` relative to the current directory when it is below it.
fn shown(path: &Path) -> &Path {
    std::env::current_dir().ok().and_then(|dir| path.strip_prefix(dir).ok()).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_package_ids() {
        assert_eq!(package_name("path+file:///ws/game#0.1.0"), "game");
        assert_eq!(package_name("path+file:///ws/logic#game-logic@0.1.0"), "game-logic");
        assert_eq!(package_name("registry+https://example.invalid/index#syn@2.0.1"), "syn");
        assert_eq!(package_name("odd"), "odd");
    }
}
