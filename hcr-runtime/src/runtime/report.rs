//! What the runtime reports: loaded modules, reload reports and timings,
//! counters, the stub listing, and the events host callbacks receive.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

#[cfg(doc)]
use super::Runtime;
use crate::PanicEvent;
#[cfg(doc)]
use crate::config::{Config, UnloadPolicy};

/// A loaded module.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModuleInfo {
    /// The module's name.
    pub name: String,
    /// The file it is loaded from (and watched at).
    pub path: PathBuf,
    /// The build id from its descriptor: a label for diagnostics, which
    /// the module chose (`hcr-build` writes the package's name and version;
    /// C modules pass it to `HCR_MODULE`).
    pub build_id: String,
    /// The ABI minor version it was built against.
    pub abi_minor: u16,
    /// The modules it imports.
    pub imports: Vec<String>,
    /// Whether the host loaded it (rather than only another module).
    pub root: bool,
    /// Procs it has registered.
    pub procs: usize,
    /// Globals it has registered.
    pub globals: usize,
    /// The generation its current code was loaded in.
    pub generation: u64,
    /// The build id of its previous build, when that is kept for
    /// [`Runtime::revert`] ([`Config::keep_previous_builds`]).
    pub previous_build: Option<String>,
}

/// Where a reload is, as told to host callbacks ([`Runtime::on_reload`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadStage {
    /// Changed modules were found; nothing was loaded yet.
    Before,
    /// The new code is current.
    Committed,
    /// The reload failed; the old code and all state were kept.
    RolledBack,
}

/// What host callbacks receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReloadEvent {
    /// Where the reload is.
    pub stage: ReloadStage,
    /// The generation after the reload if it committed, the current one
    /// otherwise.
    pub generation: u64,
}

/// Time spent in each phase of a reload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReloadTimings {
    /// Checking files for changes.
    pub detect: Duration,
    /// Copying changed files into the private directory.
    pub copy: Duration,
    /// Checking and opening the copies.
    pub load: Duration,
    /// Running the new inits (registration).
    pub register: Duration,
    /// Committing: re-pointing stubs, swapping records.
    pub patch: Duration,
    /// Running before- and after-reload handlers.
    pub handlers: Duration,
    /// Closing replaced libraries.
    pub unload: Duration,
    /// The whole call.
    pub total: Duration,
}

impl fmt::Display for ReloadTimings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "total {:.2} ms (detect {:.2}, copy {:.2}, load {:.2}, register {:.2}, patch {:.2}, handlers {:.2}, unload {:.2})",
            ms(self.total),
            ms(self.detect),
            ms(self.copy),
            ms(self.load),
            ms(self.register),
            ms(self.patch),
            ms(self.handlers),
            ms(self.unload)
        )
    }
}

/// What a committed reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The generation after the reload.
    pub generation: u64,
    /// Modules whose new build is now current.
    pub reloaded: Vec<String>,
    /// Modules loaded for the first time (new imports).
    pub loaded: Vec<String>,
    /// Modules unloaded because nothing imports them any more.
    pub unloaded: Vec<String>,
    /// Modules sent back to their previous build ([`Runtime::revert`]).
    pub reverted: Vec<String>,
    /// Changed modules whose new builds were refused while the others
    /// committed: their old code keeps running, and their files are not
    /// tried again until they change.
    pub refused: Vec<Refusal>,
    /// Panics in module code during the reload, on the thread that ran it:
    /// in inits and migrations of builds that were refused, in reload
    /// hooks (which do not stop a reload), and in procs those hooks called.
    /// [`Runtime::take_panics`] returns them too.
    pub panics: Vec<PanicEvent>,
    /// Time per phase.
    pub timings: ReloadTimings,
}

/// A module's new build that a reload refused while other modules' new
/// builds committed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Refusal {
    /// The module (or modules, comma-separated) the failure is attributed to.
    pub module: String,
    /// Why it was refused.
    pub error: Arc<Error>,
}

impl PartialEq for Refusal {
    fn eq(&self, other: &Refusal) -> bool {
        self.module == other.module && self.error.to_string() == other.error.to_string()
    }
}

impl Eq for Refusal {}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "nothing changed");
        }
        if self.reverted.is_empty() || !self.reloaded.is_empty() {
            write!(f, "generation {}: reloaded [{}]", self.generation, self.reloaded.join(", "))?;
            if !self.reverted.is_empty() {
                write!(f, ", reverted [{}]", self.reverted.join(", "))?;
            }
        } else {
            write!(f, "generation {}: reverted [{}] to the previous build", self.generation, self.reverted.join(", "))?;
        }
        if !self.loaded.is_empty() {
            write!(f, ", loaded [{}]", self.loaded.join(", "))?;
        }
        if !self.unloaded.is_empty() {
            write!(f, ", unloaded [{}]", self.unloaded.join(", "))?;
        }
        if !self.refused.is_empty() {
            let refused: Vec<&str> = self.refused.iter().map(|r| r.module.as_str()).collect();
            write!(f, ", refused [{}]", refused.join(", "))?;
        }
        if !self.panics.is_empty() {
            write!(f, ", {} panic(s)", self.panics.len())?;
        }
        write!(f, " in {}", self.timings)
    }
}

impl ReloadReport {
    pub(super) fn unchanged(generation: u64, timings: ReloadTimings) -> ReloadReport {
        ReloadReport { generation, timings, ..ReloadReport::default() }
    }

    /// Whether nothing was reloaded, loaded, unloaded or reverted.
    pub fn is_empty(&self) -> bool {
        self.reloaded.is_empty() && self.loaded.is_empty() && self.unloaded.is_empty() && self.reverted.is_empty()
    }
}

/// Counters from [`Runtime::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Loaded modules.
    pub modules: usize,
    /// Stubs handed out (bound, pending or removed).
    pub stubs_in_use: usize,
    /// The table's capacity.
    pub stub_capacity: usize,
    /// Live globals.
    pub globals: usize,
    /// Replaced libraries kept loaded under [`UnloadPolicy::Never`].
    pub kept_libraries: usize,
    /// Storage of replaced or removed globals kept under
    /// [`UnloadPolicy::Never`].
    pub kept_globals: usize,
    /// Replaced libraries not closed yet under [`UnloadPolicy::Deferred`]:
    /// waiting for registered threads to pass a quiescent point, or for the
    /// other threads to be observed outside them.
    pub retired_pending: usize,
    /// Storage of globals that reloads migrated or removed, not freed yet
    /// under [`UnloadPolicy::Deferred`] (freed with the libraries of the
    /// same reload).
    pub retired_globals_pending: usize,
    /// Threads registered with [`Runtime::register_thread`].
    pub threads: usize,
    /// Libraries closed so far (replaced, unloaded or rolled back).
    pub unloads: u64,
    /// Storage of migrated or removed globals freed so far.
    pub globals_freed: u64,
    /// How long what reloads replaced waited, on average, between the
    /// commit and its release under [`UnloadPolicy::Deferred`] (zero
    /// before the first release).
    pub retired_wait_mean: Duration,
    /// The longest such wait so far.
    pub retired_wait_max: Duration,
}

/// How a stub is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StubState {
    /// Jumps to its module's current code.
    Bound,
    /// Asked for before its proc was registered; calls abort with a message.
    Pending,
    /// Its proc disappeared in a reload or unload; calls abort with a message.
    Removed,
}

/// One line of [`Runtime::inspect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StubInfo {
    /// Index in the table.
    pub index: u32,
    /// The stub's address.
    pub address: usize,
    /// The address of the 8-byte slot holding the stub's target.
    pub slot: usize,
    /// The module the proc belongs to.
    pub module: String,
    /// The proc's name.
    pub name: String,
    /// How it is bound.
    pub state: StubState,
    /// The signature it was last registered with, as text.
    pub signature: String,
    /// That signature's hash (0 when unknown).
    pub signature_hash: u64,
    /// The code it jumps to, when bound.
    pub target: Option<usize>,
    /// The stub's instruction(s), decoded.
    pub instruction: String,
}

/// The whole stub table, from [`Runtime::inspect`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    /// The reserved address range.
    pub region: std::ops::Range<usize>,
    /// Maximum number of stubs.
    pub capacity: usize,
    /// Stubs handed out.
    pub in_use: usize,
    /// One entry per stub, by index.
    pub stubs: Vec<StubInfo>,
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "stub table {:#x}..{:#x}: {} of {} stubs in use",
            self.region.start, self.region.end, self.in_use, self.capacity
        )?;
        for s in &self.stubs {
            let target = match (s.state, s.target) {
                (StubState::Bound, Some(t)) => format!("{t:#014x}"),
                (StubState::Pending, _) => "unbound (pending)".to_owned(),
                _ => "unbound (removed)".to_owned(),
            };
            writeln!(
                f,
                "{:>6}  {:#012x}  {:<32}  -> {:<18}  {}",
                s.index,
                s.address,
                format!("{}::{}", s.module, s.name),
                target,
                s.instruction
            )?;
        }
        Ok(())
    }
}
