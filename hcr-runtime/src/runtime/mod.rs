//! The runtime: loaded modules, the load/reload transaction and the public
//! [`Runtime`] API.
//!
//! * this file: the [`Runtime`] facade;
//! * [`ops`]: loads, unloads and reloads around the transaction;
//! * [`txn`]: the transaction (stage, check, commit or roll back), and
//!   [`checks`]: what it checks;
//! * [`session`]: the context of a module's init;
//! * [`state`]: what the state lock protects; [`stubs`]: the procs and
//!   their stubs, under a lock of their own; [`snapshot`]: the committed
//!   state readers see;
//! * [`graph`]: the module graph;
//! * [`detect`]: whether module files changed;
//! * [`handlers`]: module reload handlers and host callbacks;
//! * [`reads`]: the read-side methods;
//! * [`lock`]: re-entrancy-aware locks;
//! * [`handles`] and [`report`]: the types handed out.

mod checks;
mod detect;
mod graph;
mod handlers;
mod handles;
mod lock;
mod ops;
mod reads;
mod report;
mod revert;
mod session;
mod snapshot;
mod state;
mod stubs;
mod txn;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};

use self::handlers::HostHandlers;
pub use self::handles::{GlobalRef, Proc, Stub};
use self::lock::{Held, hold};
pub(crate) use self::ops::append_line;
pub use self::report::{
    Inspection, ModuleInfo, Refusal, ReloadEvent, ReloadReport, ReloadStage, ReloadTimings, Stats, StubInfo, StubState,
};
use self::snapshot::Snapshot;
use self::state::State;
use self::stubs::Stubs;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::loader::{self, PrivateDir};
use crate::panics::PanicEvent;
use crate::reclaim::{Reclaimer, ThreadGuard};
use crate::services::HostServices;
use crate::table::StubTable;
use crate::watch::{FileWatcher, WatchSignal};

/// The hot code reloading runtime.
///
/// It owns the stub table, the globals and the loaded modules. Hosts usually
/// create one at start-up, [`load`](Runtime::load) their root modules, take
/// proc addresses with [`get_proc`](Runtime::get_proc), and call
/// [`perform_reload`](Runtime::perform_reload) at a point of their choosing
/// (typically once per frame or tick, when
/// [`reload_needed`](Runtime::reload_needed) says so).
///
/// # Thread-safety
///
/// All methods take `&self` and may be called from any thread; loads,
/// unloads and reloads are serialised. Calling through stubs never takes a
/// lock. [`reload_needed`](Runtime::reload_needed),
/// [`has_module_changed`](Runtime::has_module_changed),
/// [`generation`](Runtime::generation), [`modules`](Runtime::modules),
/// [`stats`](Runtime::stats), [`inspect`](Runtime::inspect),
/// [`stub_region`](Runtime::stub_region),
/// [`private_dir`](Runtime::private_dir) and
/// [`get_proc`](Runtime::get_proc) of a proc that has a stub answer from the
/// committed state and never wait behind a running reload, even one whose
/// module init never returns. The other methods may wait for it.
///
/// From a module's init or a reload handler, every method either works or
/// returns [`Error::Reentrant`]: loads, unloads and reloads are refused from
/// both; from an init, so is everything that needs the state a reload holds
/// ([`get_global`](Runtime::get_global), and
/// [`get_proc_with_signature`](Runtime::get_proc_with_signature) when it
/// creates a stub or binds a signature).
///
/// # Dropping
///
/// Dropping the runtime unloads every module, frees every global and unmaps
/// the stub table. Every stub address and global pointer handed out becomes
/// invalid: the borrow in [`Proc`], [`Stub`] and [`GlobalRef`] keeps safe
/// code from using them afterwards, but raw addresses taken from them are
/// the caller's to stop using. A thread still calling through a stub while
/// the runtime is dropped jumps into unmapped memory and crashes: stop every
/// thread that runs module code first (registered threads are not waited
/// for). An installed runtime ([`Runtime::install`]) is never dropped.
pub struct Runtime {
    exclusive: Mutex<()>,
    exclusive_holder: AtomicU64,
    state: Mutex<State>,
    state_holder: AtomicU64,
    /// The procs and their stubs; also reachable from the state.
    stubs: Arc<RwLock<Stubs>>,
    /// The committed state, for readers that must not wait.
    committed: ArcSwap<Snapshot>,
    /// The reserved address range of the stub table (never changes).
    region: std::ops::Range<usize>,
    /// The private directory (never changes).
    private_path: PathBuf,
    host_handlers: HostHandlers,
    generation: AtomicU64,
    reclaim: Arc<Reclaimer>,
    /// The file watcher's event count, if files are watched.
    watch: Option<Arc<WatchSignal>>,
    /// The event count at the last check that found no change.
    watch_checked: AtomicU64,
    report_file: Option<PathBuf>,
    /// [`Config::settle_time`].
    settle: Duration,
    /// The services table modules receive, and the panics they report.
    services: Arc<HostServices>,
    /// [`Config::max_module_size`].
    max_module_size: u64,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").field("generation", &self.generation()).finish_non_exhaustive()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Threads may still be registered and running module code, but the
        // runtime (and every stub) goes away now. This is the one place to
        // wait for them (or to refuse) before anything is unmapped; today
        // nothing waits. Then close what was retired; the state's drop
        // closes the loaded modules, and the table is unmapped last.
        self.reclaim.close_all();
    }
}

impl Runtime {
    /// Creates a runtime configured by [`Config::from_env`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a bad environment variable, and the errors
    /// of [`Runtime::with_config`].
    pub fn new() -> Result<Runtime> {
        Runtime::with_config(Config::from_env()?)
    }

    /// Creates a runtime: reserves the stub table and creates the private
    /// directory for module copies, after removing the private directories
    /// that runtimes of processes which are gone left under the same parent
    /// (see `docs/design.md`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`], [`Error::Reserve`] when the address space
    /// cannot be reserved, [`Error::PrivateDir`] when the directory cannot be
    /// created.
    ///
    /// # Platform-specific behaviour
    ///
    /// The table is reserved with no access rights, without `MAP_FIXED` on
    /// Unix (an existing mapping at the preferred address is never replaced)
    /// and with `MEM_RESERVE` on Windows.
    pub fn with_config(config: Config) -> Result<Runtime> {
        config.validate()?;
        let table = StubTable::new(config.stub_base, config.stub_capacity)?;
        let region = table.range();
        let parent = config.private_dir_parent.clone().unwrap_or_else(std::env::temp_dir);
        let limits =
            loader::Limits { max_size: config.max_module_size, allow_writable_code: config.allow_writable_code };
        let max_module_size = config.max_module_size;
        let private = PrivateDir::create(&parent, limits)?;
        let private_path = private.path().to_owned();
        let stubs = Arc::new(RwLock::new(Stubs { procs: Default::default(), table }));
        let watcher = if config.watch_files {
            FileWatcher::new()
                .inspect_err(|e| tracing::warn!(error = %e, "cannot watch module files; checking them instead"))
                .ok()
        } else {
            None
        };
        let watch = watcher.as_ref().map(FileWatcher::signal);
        let report_file = config.report_file.clone();
        let settle = config.settle_time;
        let services = HostServices::new(report_file.clone());
        Ok(Runtime {
            exclusive: Mutex::new(()),
            exclusive_holder: AtomicU64::new(0),
            state: Mutex::new(State::new(config, stubs.clone(), private, watcher, services.clone())),
            state_holder: AtomicU64::new(0),
            stubs,
            committed: ArcSwap::from_pointee(Snapshot::default()),
            region,
            private_path,
            host_handlers: HostHandlers::default(),
            generation: AtomicU64::new(0),
            reclaim: Arc::new(Reclaimer::default()),
            watch,
            watch_checked: AtomicU64::new(0),
            report_file,
            settle,
            services,
            max_module_size,
        })
    }

    fn exclusive(&self) -> Result<Held<'_, ()>> {
        hold(&self.exclusive, &self.exclusive_holder, &[&self.state_holder])
    }

    fn state(&self) -> Result<Held<'_, State>> {
        hold(&self.state, &self.state_holder, &[])
    }

    /// Loads a module (and, first, the modules it imports) from `path`.
    ///
    /// The file is copied into the runtime's private directory and the copy
    /// is loaded, so the build may overwrite `path` at any time. Loading a
    /// path that is already loaded just marks it as loaded by the host.
    ///
    /// # Errors
    ///
    /// [`Error::LoadFailed`] listing every failure ([`Error::ReadModule`],
    /// [`Error::NotRegularFile`], [`Error::ModuleTooLarge`],
    /// [`Error::NotLoadable`], [`Error::WritableCode`], [`Error::NotAModule`],
    /// [`Error::AbiMismatch`],
    /// [`Error::InitFailed`], [`Error::ImportNotFound`],
    /// [`Error::ImportCycle`], [`Error::DuplicateModule`], a registration or
    /// signature error...; [`Error::failures`] lists them). Nothing of the
    /// failed load remains but the stubs it created, pending, which the same
    /// procs get back later. [`Error::ReadModule`] alone when the path
    /// cannot be made absolute; [`Error::Reentrant`] from a handler or init.
    ///
    /// # Thread-safety
    ///
    /// Waits for a running load, unload or reload.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<ModuleInfo> {
        self.load_module(path.as_ref())
    }

    /// Registers the calling thread as one that runs module code, so that
    /// under [`UnloadPolicy::Deferred`] replaced libraries stay loaded until
    /// it passes a quiescent point ([`ThreadGuard::quiescent`]). Register a
    /// thread before it first calls module code.
    ///
    /// Threads that are not registered are not waited for: if one of them
    /// runs a module's code while a reload replaces that module, it may
    /// return into an unloaded library and crash.
    pub fn register_thread(&self) -> ThreadGuard {
        ThreadGuard::register(&self.reclaim)
    }

    /// Closes every replaced library that no registered thread can still be
    /// running; returns how many. Quiescent points and reloads do this too.
    pub fn collect_retired(&self) -> usize {
        self.reclaim.collect()
    }

    /// Stops treating module `name` as loaded by the host. It is unloaded,
    /// with every import nothing else needs, unless another module imports
    /// it. Returns the modules that were unloaded.
    ///
    /// The procs of unloaded modules keep their stubs, which then report a
    /// call and abort; their globals are freed.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownModule`]; [`Error::CalledFromModule`] when the calling
    /// thread runs code of a module it would unload; [`Error::Reentrant`]
    /// from a handler or init.
    pub fn unload(&self, name: &str) -> Result<Vec<String>> {
        self.unload_module(name)
    }

    /// Whether any loaded module's file changed since it was loaded (or since
    /// a failed attempt to reload it) and has gone [`Config::settle_time`]
    /// unmodified since. Costs one `stat` per module, and never reads a
    /// file: a file that was only touched (new timestamp, same content)
    /// counts as changed until [`Runtime::perform_reload`] hashes it, finds
    /// nothing to do and remembers the new timestamp. With
    /// [`Config::watch_files`], one atomic load until the system reports an
    /// event on one of the files.
    ///
    /// A file that was deleted is no change: the loaded code keeps running
    /// until a file is back (a build deletes its output before it writes the
    /// new one, and leaves nothing when it fails).
    ///
    /// # Thread-safety
    ///
    /// Answers from the committed state, without waiting for a running
    /// reload.
    pub fn reload_needed(&self) -> bool {
        self.files_changed()
    }

    /// Whether the file of module `name` differs from the code that is loaded
    /// (including a file still settling, or one that failed to load; not a
    /// file that is missing, nor one that was only touched: a file whose
    /// timestamp changed is hashed).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownModule`].
    ///
    /// # Thread-safety
    ///
    /// Answers from the committed state, without waiting for a running
    /// reload.
    pub fn has_module_changed(&self, name: &str) -> Result<bool> {
        self.module_changed(name)
    }

    /// The number of reloads that committed. Never waits.
    pub fn generation(&self) -> u64 {
        // Acquire: pairs with the release store after a commit.
        self.generation.load(Ordering::Acquire)
    }

    /// Reloads every module whose file changed, as one transaction.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hcr_runtime::Error> {
    /// # let runtime = hcr_runtime::Runtime::new()?;
    /// if runtime.reload_needed() {
    ///     match runtime.perform_reload() {
    ///         Ok(report) => println!("{report}"),
    ///         Err(e) => eprintln!("{e}"), // the old code keeps running
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// In order: detect changed files (`stat`, confirmed by the linker's
    /// build id, or by a content hash for files without one), copy them,
    /// run every module's before-reload handlers (imports first), check the
    /// new builds before any of their code runs (see `docs/safety.md`), load
    /// them (and any new imports) and run their inits. If all of that succeeded, commit: re-point the stubs,
    /// unbind procs that disappeared, free globals that disappeared, unload
    /// replaced libraries and modules nothing imports any more, then run the
    /// after-reload handlers of the new code.
    ///
    /// Returns an empty report when nothing changed.
    ///
    /// Files that failed to load before are not tried again until they
    /// change (or until a module their failure involved commits). When
    /// several files changed and some are refused, the others are retried
    /// without them: the report lists what committed, and the refused
    /// builds in [`ReloadReport::refused`]; each refused file is not tried
    /// again until it changes. A refused file is tried together with the
    /// changed ones when the failure involved both (a caller and its callee
    /// changing signature in two steps).
    ///
    /// # Errors
    ///
    /// [`Error::ReloadFailed`] listing every failure when nothing could
    /// commit. Then nothing was patched, no global was touched, everything
    /// the attempt allocated was released (stubs it created stay, pending),
    /// the after-reload handlers ran with [`ReloadStage::RolledBack`], and
    /// the refused files are not tried again until they change.
    /// [`Error::Reentrant`] when called from a handler or an init;
    /// [`Error::CalledFromModule`] when the calling thread runs code of a
    /// module the reload would unload (nothing is marked failed then).
    ///
    /// # Reports
    ///
    /// With [`Config::report_file`] set, every reload that did something
    /// appends lines to that file, tab-separated: one for what committed,
    /// one for what was refused ([`Runtime::revert`] writes a `reverted`
    /// line instead of `reloaded`); and every panic in module code, when it
    /// is reported (a reload's or not), appends a `panic` line:
    ///
    /// ```text
    /// reloaded<TAB><generation><TAB><milliseconds><TAB><module>,<module>...
    /// reverted<TAB><generation><TAB><milliseconds><TAB><module>
    /// failed<TAB><milliseconds><TAB><error, newlines replaced by " | ">
    /// panic<TAB><module><TAB><proc><TAB><file>:<line>:<column><TAB><message>
    /// ```
    ///
    /// A panic's proc is the proc or hook, `<init>`, `<migration NAME>`, or
    /// empty outside any reloadable function; its location is empty when
    /// unknown; in every field tabs become spaces and newlines ` | `.
    ///
    /// # Panics in module code
    ///
    /// A panic in a new build's init or migration fails that build (rolled
    /// back like any refusal); a panic in a reload hook is reported and the
    /// reload goes on (after-reload hooks run after the commit, which
    /// stands). Those reported on the reloading thread are in
    /// [`ReloadReport::panics`]; all are in [`Runtime::take_panics`].
    pub fn perform_reload(&self) -> Result<ReloadReport> {
        let started = Instant::now();
        let result = self.reload();
        self.report(&result, started);
        result
    }

    /// Appends the report file's lines for a reload or revert.
    fn report(&self, result: &Result<ReloadReport>, started: Instant) {
        let Some(path) = &self.report_file else { return };
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let mut lines = Vec::new();
        match result {
            Ok(report) => {
                if !report.reloaded.is_empty() || !report.loaded.is_empty() || !report.unloaded.is_empty() {
                    lines.push(format!("reloaded\t{}\t{ms:.1}\t{}", report.generation, report.reloaded.join(",")));
                }
                if !report.reverted.is_empty() {
                    lines.push(format!("reverted\t{}\t{ms:.1}\t{}", report.generation, report.reverted.join(",")));
                }
                if !report.refused.is_empty() {
                    let refused: Vec<String> = report.refused.iter().map(|r| r.error.to_string()).collect();
                    lines.push(format!("failed\t{ms:.1}\t{}", refused.join("; ")));
                }
            }
            Err(Error::Reentrant) => {}
            Err(e) => lines.push(format!("failed\t{ms:.1}\t{e}")),
        }
        for line in lines {
            ops::append_line(path, &line.replace('\n', " | "));
        }
    }

    /// The panics modules reported since the last call, oldest first: in
    /// reloadable functions (whose callers received them as `ProcPanic`s),
    /// in reload hooks, inits and migrations, and on threads the modules
    /// started. The runtime keeps the last 256 until they are taken.
    ///
    /// Each is also logged (`tracing`), and written to [`Config::report_file`]
    /// as a line `panic<TAB>module<TAB>proc<TAB>file:line:col<TAB>message`;
    /// those during a reload are also in its [`ReloadReport::panics`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hcr_runtime::Error> {
    /// # let runtime = hcr_runtime::Runtime::new()?;
    /// for panic in runtime.take_panics() {
    ///     eprintln!("{panic}"); // panic in game::update at src/lib.rs:42:5: ...
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Thread-safety
    ///
    /// Never waits for a running reload.
    pub fn take_panics(&self) -> Vec<PanicEvent> {
        let (panics, dropped) = self.services.panics.take();
        if dropped > 0 {
            tracing::warn!(dropped, "older panics were dropped: take them more often");
        }
        panics
    }

    /// Sends module `name` back to its previous build, which the runtime
    /// kept loaded ([`Config::keep_previous_builds`]), as one transaction
    /// with the checks of a reload: its procs' stubs point at the previous
    /// code again, procs only the newer build had are unbound, globals only
    /// the newer build had are freed, and the before- and after-reload
    /// handlers run as for a reload. The previous build's init does not run
    /// again: its globals are exactly those it had, which is why every one
    /// of them must still exist with the same storage and layout.
    ///
    /// The newer build's file is then treated as refused: it is not loaded
    /// again until it changes. The report lists the module in
    /// [`ReloadReport::reverted`]. Only one build back: there is no previous
    /// build after a revert, until the next reload.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hcr_runtime::Error> {
    /// let config = hcr_runtime::Config::from_env()?.with_keep_previous_builds(true);
    /// let runtime = hcr_runtime::Runtime::with_config(config)?;
    /// runtime.load("target/debug/libgame.so")?;
    /// // ... a reload, then the new code panics:
    /// if runtime.take_panics().iter().any(|p| p.module == "game") {
    ///     println!("{}", runtime.revert("game")?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::UnknownModule`]; [`Error::NoPreviousBuild`] when none is
    /// kept (the module was not reloaded since it was loaded or reverted, or
    /// [`Config::keep_previous_builds`] is off); [`Error::ReloadFailed`]
    /// when the revert is refused, listing why: a global of the previous
    /// build that changed layout or storage since, or went away
    /// ([`Error::RevertGlobalChanged`]), an import it needs that is no
    /// longer loaded ([`Error::RevertImportGone`]), a signature a caller is
    /// bound with ([`Error::SignatureMismatch`]), a proc a caller is bound
    /// to that the previous build lacks ([`Error::BoundProcRemoved`]).
    /// Nothing changed then, and the previous build stays available.
    /// [`Error::CalledFromModule`] when the calling thread runs the
    /// module's current code; [`Error::Reentrant`] from a handler or init.
    ///
    /// # Thread-safety
    ///
    /// Waits for a running load, unload or reload.
    pub fn revert(&self, name: &str) -> Result<ReloadReport> {
        let started = Instant::now();
        let result = self.revert_module(name);
        self.report(&result, started);
        result
    }

    /// The modules whose current build had a panic in a reloadable function
    /// since it was loaded (or reloaded, or reverted), in name order.
    ///
    /// # Thread-safety
    ///
    /// Never waits for a running reload.
    pub fn panicked_modules(&self) -> Vec<String> {
        self.services.panics.panicked_modules()
    }

    /// Reverts the first module (imports first) whose current build had a
    /// panic in a reloadable function and whose previous build is kept:
    /// what a development loop does after a panic, so that the next call
    /// runs the code that worked. `None` when there is no such module.
    ///
    /// A module whose revert is refused is not tried again until its build
    /// changes (its panics are forgotten); the error says why.
    ///
    /// # Errors
    ///
    /// As for [`Runtime::revert`].
    pub fn revert_panicked(&self) -> Option<Result<ReloadReport>> {
        let panicked = self.services.panics.panicked_modules();
        if panicked.is_empty() {
            return None;
        }
        let snapshot = self.committed.load();
        let candidate = snapshot.modules.iter().find(|m| panicked.contains(&m.name) && m.previous_build.is_some());
        let Some(module) = candidate.map(|m| m.name.clone()) else {
            // Nothing to go back to: forget them, until their next build.
            self.services.panics.forget(&panicked);
            return None;
        };
        let result = self.revert(&module);
        if result.is_err() {
            self.services.panics.forget([&module]);
        }
        Some(result)
    }

    /// Registers a host callback run before every reload attempt and after it
    /// committed or rolled back, after the modules' own handlers.
    pub fn on_reload(&self, handler: impl FnMut(&ReloadEvent) + Send + 'static) {
        self.host_handlers.add(handler);
    }

    /// The stable address of proc `name` of `module`: a stub that always jumps
    /// to the current code. If the proc is not registered (yet), the stub is
    /// created unbound and bound when the proc is registered; calling it
    /// before that prints `hcr: call to unbound function module::name` and
    /// aborts.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hcr_runtime::Error> {
    /// let runtime = hcr_runtime::Runtime::new()?;
    /// runtime.load("target/debug/libgame.so")?;
    /// // SAFETY: `game::score` is an `extern "C" fn() -> u64`.
    /// let score = unsafe { runtime.get_proc("game", "score")?.typed::<extern "C" fn() -> u64>() };
    /// println!("{}", score());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a name that breaks the name rules (an
    /// empty or overlong name, a module name that is not a file-name stem),
    /// [`Error::CapacityExhausted`], [`Error::Reentrant`] from a module init
    /// when the stub does not exist yet.
    ///
    /// # Thread-safety
    ///
    /// For a proc that already has a stub, answers without waiting for a
    /// running reload. Creating a stub waits for it.
    pub fn get_proc(&self, module: &str, name: &str) -> Result<Proc<'_>> {
        self.get_proc_with_signature(module, name, 0, "")
    }

    /// Like [`Runtime::get_proc`], for a caller compiled against a known
    /// signature (`signature_hash` as generated by `hcr-build`, `0` for
    /// unknown). The host stays bound with that signature: a reload that
    /// would change the proc's signature is refused.
    ///
    /// # Errors
    ///
    /// As for [`Runtime::get_proc`], and [`Error::SignatureMismatch`] if the
    /// proc is registered with another signature.
    ///
    /// # Thread-safety
    ///
    /// With a signature, waits for a running load or reload (which checks
    /// every binder before it commits, so a binder must not appear between
    /// its check and its commit), and returns [`Error::Reentrant`] from a
    /// module init.
    pub fn get_proc_with_signature(
        &self,
        module: &str,
        name: &str,
        signature_hash: u64,
        signature: &str,
    ) -> Result<Proc<'_>> {
        self.proc_with_signature(module, name, signature_hash, signature)
    }

    /// The storage of global `name` of `module`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownGlobal`], or [`Error::Reentrant`] from a module init.
    ///
    /// # Thread-safety
    ///
    /// Waits for a running load or reload.
    pub fn get_global(&self, module: &str, name: &str) -> Result<GlobalRef<'_>> {
        self.global(module, name)
    }

    /// The loaded modules, imports before their importers, as of the last
    /// commit. Never waits for a running reload.
    pub fn modules(&self) -> Vec<ModuleInfo> {
        self.module_infos()
    }

    /// A listing of every stub, for debugging: index, module, proc, target
    /// and (on x86-64) the decoded stub instruction. Works from inits and
    /// handlers, and never waits for a running reload (stubs a running
    /// transaction created show as pending).
    pub fn inspect(&self) -> Inspection {
        self.inspection()
    }

    /// Counters describing what the runtime holds, as of the last commit
    /// (the stubs as they are). Never waits for a running reload.
    pub fn stats(&self) -> Stats {
        self.counters()
    }

    /// The address range reserved for the stub table. Never waits.
    pub fn stub_region(&self) -> std::ops::Range<usize> {
        self.region.clone()
    }

    /// The private directory holding copies of the loaded modules. Never
    /// waits.
    pub fn private_dir(&self) -> PathBuf {
        self.private_path.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Runtime>();
        check::<Proc<'static>>();
        check::<GlobalRef<'static>>();
        check::<Stub<'static, extern "C" fn()>>();
        check::<Error>();
    }

    #[test]
    fn host_get_proc_before_load_hands_out_a_pending_stub() {
        let rt = Runtime::with_config(Config::new().with_stub_base(0).with_stub_capacity(100)).unwrap();
        let p = rt.get_proc("later", "f").unwrap();
        assert_eq!(rt.get_proc("later", "f").unwrap(), p, "same stub every time");
        let listing = rt.inspect();
        assert_eq!(listing.stubs.len(), 1);
        assert_eq!(listing.stubs[0].state, StubState::Pending);
        assert_eq!(listing.stubs[0].address, p.addr() as usize);
        assert!(listing.to_string().contains("later::f"));
        assert!(rt.get_proc("", "f").is_err());
    }
}
