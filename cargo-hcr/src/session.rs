//! `cargo hcr run`: the initial build, the host, and the loop that rebuilds
//! changed modules and shows what the host's runtime made of them.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{IsTerminal, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::builder::{Build, BuildOptions, BuildOutput};
use crate::cli::RunArgs;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::metadata::{self, Metadata, Package};
use crate::process;
use crate::report::{Follower, Report};
use crate::watch::Watcher;

/// How long changes are collected after the first one before a build
/// starts (an editor's save can be several events).
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often the loop looks whether the host exited.
const TICK: Duration = Duration::from_millis(50);
/// How long the host gets to exit after it was asked to stop.
const HOST_GRACE: Duration = Duration::from_secs(2);
/// The report file's name in the private directory.
const REPORT_FILE: &str = "reloads.tsv";

/// What the loop reacts to.
#[derive(Debug)]
enum Event {
    /// SIGINT, SIGTERM or SIGHUP.
    Signal(libc::c_int),
    /// A file system event.
    Files(notify::Result<notify::Event>),
    /// The running build is over.
    Built(BuildOutput),
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
    let host = metadata.member(&args.host)?.clone();
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

    // Watching starts before the first build, so that no edit is missed.
    let dirs: Vec<PathBuf> = modules.iter().map(|m| m.dir.clone()).collect();
    let watcher = Watcher::start(&dirs, report_dir.path(), tx.clone(), Event::Files)?;

    let mut session = Session {
        rx,
        tx,
        options: BuildOptions { cargo, release: args.release, color: std::io::stderr().is_terminal() },
        modules,
        watcher,
        follower: Follower::new(&report_path),
        build: None,
        pending: BTreeSet::new(),
        settle_until: None,
    };
    let code = session.start(&host, &bin, &args.host_args)?;
    drop(session);
    drop(report_dir);
    Ok(code)
}

/// The modules to build and watch: those named, or those found among the
/// host's dependencies; each once.
fn modules(metadata: &Metadata, host: &Package, named: &[String]) -> Result<Vec<Package>> {
    let mut modules: Vec<Package> = if named.is_empty() {
        metadata.modules_of(host).into_iter().cloned().collect()
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

/// The state of a running session.
struct Session {
    rx: Receiver<Event>,
    tx: Sender<Event>,
    options: BuildOptions,
    modules: Vec<Package>,
    watcher: Watcher,
    follower: Follower,
    /// The build in progress, if any.
    build: Option<Build>,
    /// Modules whose sources changed since their last build started.
    pending: BTreeSet<usize>,
    /// When to build the pending modules (the end of the debounce window).
    settle_until: Option<Instant>,
}

/// How the initial build ended.
enum Initial {
    Built(PathBuf),
    Stopped(ExitCode),
}

impl Session {
    /// Builds everything, starts the host and runs the loop.
    fn start(&mut self, host: &Package, bin: &str, host_args: &[OsString]) -> Result<ExitCode> {
        let executable = match self.initial_build(host, bin)? {
            Initial::Built(executable) => executable,
            Initial::Stopped(code) => return Ok(code),
        };
        let mut process = Host::spawn(&executable, host_args, self.follower.path())?;
        let names: Vec<&str> = self.modules.iter().map(|m| m.name.as_str()).collect();
        status!("running {}, watching {}", shown(&executable).display(), names.join(", "));
        let result = self.event_loop(&mut process);
        if result.is_err() {
            // cargo-hcr cannot go on: leave nothing behind.
            self.stop_build();
            let _ = process.stop(libc::SIGTERM, HOST_GRACE, || false);
        }
        result
    }

    /// Builds the modules and the host; the host's executable.
    fn initial_build(&mut self, host: &Package, bin: &str) -> Result<Initial> {
        let mut packages: Vec<String> = self.modules.iter().map(|m| m.name.clone()).collect();
        packages.push(host.name.clone());
        self.start_build(packages)?;
        loop {
            match self.rx.recv() {
                Ok(Event::Signal(signal)) => {
                    self.stop_build();
                    status!("stopped");
                    return Ok(Initial::Stopped(ExitCode::from(process::signal_exit_code(signal))));
                }
                Ok(Event::Files(event)) => self.files_changed(&event),
                Ok(Event::Built(output)) => {
                    let Some(build) = self.build.take() else { continue };
                    if !self.finish_build(build, &output)? {
                        return Err(Error::BuildFailed);
                    }
                    return output
                        .executables
                        .iter()
                        .find(|e| e.package_id == host.id && e.target == bin)
                        .map(|e| Initial::Built(e.path.clone()))
                        .ok_or_else(|| Error::NoExecutable(host.name.clone()));
                }
                Err(_) => unreachable!("the session holds a sender"),
            }
        }
    }

    /// Until the host exits or a signal comes: rebuilds changed modules and
    /// shows the host's reports.
    fn event_loop(&mut self, host: &mut Host) -> Result<ExitCode> {
        loop {
            let timeout = match self.settle_until {
                Some(t) if self.build.is_none() => t.saturating_duration_since(Instant::now()).min(TICK),
                _ => TICK,
            };
            match self.rx.recv_timeout(timeout) {
                Ok(Event::Signal(signal)) => return self.shutdown(host, signal),
                Ok(Event::Files(event)) => self.files_changed(&event),
                Ok(Event::Built(output)) => {
                    if let Some(build) = self.build.take() {
                        if !self.finish_build(build, &output)? {
                            status!("the host keeps running its old code");
                        }
                        self.show_reports();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("the session holds a sender"),
            }
            if let Some(exit) = host.try_wait()? {
                self.stop_build();
                self.show_reports();
                status!("the host exited ({exit})");
                return Ok(ExitCode::from(process::exit_code(exit)));
            }
            if self.build.is_none() && self.settle_until.is_some_and(|t| t <= Instant::now()) {
                self.settle_until = None;
                let packages = std::mem::take(&mut self.pending).into_iter().map(|i| self.modules[i].name.clone());
                self.start_build(packages.collect())?;
            }
        }
    }

    /// Notes what a file system event changed.
    fn files_changed(&mut self, event: &notify::Result<notify::Event>) {
        if let Err(e) = event {
            status!("file watching: {e}; rebuilding to be sure");
        }
        let change = self.watcher.change(event);
        if change.report {
            self.show_reports();
        }
        if !change.modules.is_empty() {
            self.pending.extend(change.modules);
            self.settle_until.get_or_insert_with(|| Instant::now() + DEBOUNCE);
        }
    }

    fn start_build(&mut self, packages: Vec<String>) -> Result<()> {
        status!("building {}...", packages.join(", "));
        self.build = Some(Build::start(&self.options, &packages, self.tx.clone(), Event::Built)?);
        Ok(())
    }

    /// Waits for the build to exit and says how it went; whether it
    /// succeeded.
    fn finish_build(&mut self, build: Build, output: &BuildOutput) -> Result<bool> {
        let names = build.packages.join(", ");
        let elapsed = build.started.elapsed();
        let success = build.finish()?.success();
        if success {
            status!("built {names} in {} ms", elapsed.as_millis());
        } else {
            status!("build failed");
            let _ = writeln!(std::io::stderr(), "{}", output.error_text());
        }
        Ok(success)
    }

    /// Stops the build in progress, if any.
    fn stop_build(&mut self) {
        if let Some(build) = self.build.take() {
            build.stop();
        }
    }

    /// Prints the reports the host wrote since the last look, unless a
    /// build is in progress: they wait for its result to be printed first.
    fn show_reports(&mut self) {
        if self.build.is_some() {
            return;
        }
        match self.follower.read_new_lines() {
            Ok(lines) => {
                for report in lines.iter().filter_map(|line| Report::parse(line)) {
                    status!("{report}");
                }
            }
            Err(e) => status!("cannot read {}: {e}", self.follower.path().display()),
        }
    }

    /// Stops everything after `signal`: the build, then the host (which got
    /// the same signal, from the terminal or from here), gently then firmly.
    fn shutdown(&mut self, host: &mut Host, signal: libc::c_int) -> Result<ExitCode> {
        self.stop_build();
        let rx = &self.rx;
        // A second signal means: now.
        host.stop(signal, HOST_GRACE, || rx.try_iter().any(|e| matches!(e, Event::Signal(_))))?;
        self.show_reports();
        status!("stopped");
        Ok(ExitCode::from(process::signal_exit_code(signal)))
    }
}

/// `path` relative to the current directory when it is below it.
fn shown(path: &Path) -> &Path {
    std::env::current_dir().ok().and_then(|dir| path.strip_prefix(dir).ok()).unwrap_or(path)
}
