//! The runtime's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A boxed cause from another library, kept out of the public signature.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the runtime.
///
/// No error leaves the program in a half-reloaded state: a failed load or
/// reload rolls back, and the code and globals that were current before it
/// stay current.
///
/// Every message says what to do next. `Debug` shows the message and the
/// chain of causes, so `fn main() -> Result<(), Box<dyn std::error::Error>>`
/// prints a readable error.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value (set in code or in an environment variable) is
    /// not acceptable.
    #[error("invalid configuration {name} = {value:?}: {reason}; fix the setting (or unset the variable)")]
    InvalidConfig {
        /// The setting or environment variable.
        name: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The address space for the stub table could not be reserved.
    #[error(
        "cannot reserve {size} bytes of address space for the stub table; lower HCR_STUB_CAPACITY, or set HCR_STUB_BASE=0"
    )]
    Reserve {
        /// Bytes requested.
        size: usize,
        /// The system's error.
        #[source]
        source: io::Error,
    },

    /// Pages of the stub table could not be committed or protected.
    #[error(
        "cannot change the protection of stub table pages; check the memory limits and that executable mappings are allowed"
    )]
    Protect {
        /// The system's error.
        #[source]
        source: io::Error,
    },

    /// Every stub of the table is in use.
    #[error("the stub table is full: all {capacity} stubs are in use; raise HCR_STUB_CAPACITY and restart")]
    CapacityExhausted {
        /// The configured capacity.
        capacity: usize,
    },

    /// The private directory for module copies could not be created.
    #[error("cannot create the private module directory {}; point Config::private_dir_parent (or TMPDIR) at a writable directory that allows executable mappings", path.display())]
    PrivateDir {
        /// The directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },

    /// A module file could not be read.
    #[error("cannot read module file {}; check that it exists and is readable", path.display())]
    ReadModule {
        /// The module file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },

    /// A module file could not be copied into the private directory.
    #[error("cannot copy module file {} to {}; check the space and permissions of the private directory", path.display(), copy.display())]
    CopyModule {
        /// The module file.
        path: PathBuf,
        /// The private copy being written.
        copy: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },

    /// The file is not a dynamic library this process can load: not an object
    /// file, truncated, corrupt, or refused by the system loader.
    #[error("{} is not a loadable library: {reason}; rebuild the module", path.display())]
    NotLoadable {
        /// The module file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The loader's or parser's error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// The file is a library for another CPU architecture.
    #[error("{} is built for {found}, but this process runs on {expected}; build the module for {expected}", path.display())]
    WrongArchitecture {
        /// The module file.
        path: PathBuf,
        /// The file's architecture.
        found: String,
        /// This process's architecture.
        expected: &'static str,
    },

    /// The library does not carry a valid hcr module descriptor.
    #[error("{} is not an hcr module: {reason}; build it with hcr-build's `Module` in its build script", path.display())]
    NotAModule {
        /// The module file.
        path: PathBuf,
        /// What is missing or malformed.
        reason: String,
    },

    /// The module was built against another major version of the hcr ABI.
    #[error(
        "{} was built for hcr ABI {found_major}.{found_minor}, but this runtime speaks ABI {}.x; rebuild the module against this runtime's hcr-abi",
        path.display(),
        hcr_abi::ABI_MAJOR
    )]
    AbiMismatch {
        /// The module file.
        path: PathBuf,
        /// The module's major version.
        found_major: u16,
        /// The module's minor version.
        found_minor: u16,
    },

    /// The module has reloadable Rust functions but was built by another
    /// toolchain (compiler, target, panic strategy, target features, layout
    /// flags or `hcr-abi` version) than the host: Rust types and calls
    /// would not agree. Refused before any of its code runs.
    #[error(
        "{} was built with `{found}`, but this host was built with `{expected}`; reloadable Rust functions need both built alike: rebuild the module with the host's toolchain and settings, or restart to rebuild the host with the module's",
        path.display()
    )]
    ToolchainMismatch {
        /// The module file.
        path: PathBuf,
        /// The module's toolchain fingerprint (`<no fingerprint>` or
        /// `<a corrupt fingerprint ...>` when it has none that can be read).
        found: String,
        /// The runtime's.
        expected: String,
    },

    /// The module's init entry reported failure (or panicked and caught it).
    #[error("init of module `{module}` ({}) failed: {message}; fix the module and rebuild it", path.display())]
    InitFailed {
        /// The module.
        module: String,
        /// The module file.
        path: PathBuf,
        /// What the module reported, or the status it returned.
        message: String,
        /// The first registration error, when one caused the failure.
        #[source]
        cause: Option<Box<Error>>,
    },

    /// A module registered the same proc name twice in one init.
    #[error("module `{module}` registered proc `{name}` twice; register each proc once")]
    DuplicateProc {
        /// The module.
        module: String,
        /// The proc.
        name: String,
    },

    /// A module registered the same global name twice in one init.
    #[error("module `{module}` registered global `{name}` twice; register each global once")]
    DuplicateGlobal {
        /// The module.
        module: String,
        /// The global.
        name: String,
    },

    /// A global was registered or requested with a layout that differs from
    /// the one it has.
    #[error(
        "global `{module}::{name}` has layout {existing}, but {requested} was asked for; add a `Migration` from the old layout, or restart"
    )]
    GlobalLayoutMismatch {
        /// The module that owns the global.
        module: String,
        /// The global.
        name: String,
        /// The layout the global has.
        existing: Box<GlobalLayout>,
        /// The layout in the new registration or request.
        requested: Box<GlobalLayout>,
    },

    /// A proc's signature is not the one a caller was bound with: a reload
    /// that changes the signature of a proc in use is refused.
    #[error(
        "proc `{module}::{name}` has signature `{found}`, but {caller} was bound to it as `{expected}`; change the caller in the same reload, or restart to rebuild the host"
    )]
    SignatureMismatch {
        /// The module that registers the proc.
        module: String,
        /// The proc.
        name: String,
        /// Who was bound to it: `the host` or `module `m``.
        caller: String,
        /// The signature the caller was compiled against.
        expected: String,
        /// The signature the proc has (or would have after the reload).
        found: String,
    },

    /// A module's migration of a global from an older layout failed.
    #[error(
        "migration of global `{module}::{name}` from layout {from} failed: {reason}; fix the migration, or restart"
    )]
    MigrationFailed {
        /// The module that owns the global.
        module: String,
        /// The global.
        name: String,
        /// The layout migrated from.
        from: Box<GlobalLayout>,
        /// How it failed: where it panicked and with which message, or the
        /// status it returned.
        reason: String,
    },

    /// A reload or unload was asked for while the calling thread is running
    /// code of a module that it would unload: returning there would crash.
    #[error(
        "refusing to unload module `{module}` while the calling thread is running its code (a frame at {address:#x}); call the runtime from host code"
    )]
    CalledFromModule {
        /// The module.
        module: String,
        /// An address on the stack inside it.
        address: usize,
    },

    /// A module passed an argument the runtime cannot accept.
    #[error("module `{module}` passed an invalid argument: {reason}; fix the registration or the call")]
    InvalidArgument {
        /// The module.
        module: String,
        /// What was wrong.
        reason: String,
    },

    /// A module imports a module whose file was not found.
    #[error(
        "module `{importer}` imports `{import}`, which was not found (looked at {}); build `{import}` into one of those places, or add its directory to Config::search_paths",
        paths(searched)
    )]
    ImportNotFound {
        /// The importing module.
        importer: String,
        /// The missing module.
        import: String,
        /// Every path that was tried.
        searched: Vec<PathBuf>,
    },

    /// Modules import each other in a cycle.
    #[error("import cycle: {}; remove one of these imports", cycle.join(" -> "))]
    ImportCycle {
        /// The modules on the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },

    /// A file that was loaded as one module now holds another.
    #[error("{} now holds module `{found}`, but it was loaded as `{expected}`; restore the name, or load the new module with Runtime::load", path.display())]
    ModuleNameMismatch {
        /// The module file.
        path: PathBuf,
        /// The name it had.
        expected: String,
        /// The name it has now.
        found: String,
    },

    /// A module of the same name is already loaded from another file.
    #[error("module `{name}` is already loaded from {}; refusing {}: load each module from one file", existing.display(), path.display())]
    DuplicateModule {
        /// The module.
        name: String,
        /// Where the loaded one came from.
        existing: PathBuf,
        /// The file that was refused.
        path: PathBuf,
    },

    /// No module of that name is loaded.
    #[error("no module named `{name}` is loaded; load it first (Runtime::modules lists what is loaded)")]
    UnknownModule {
        /// The name asked for.
        name: String,
    },

    /// No global of that name is registered.
    #[error(
        "no global `{module}::{name}` is registered; check the name, and that its module is loaded and registers it"
    )]
    UnknownGlobal {
        /// The module asked for.
        module: String,
        /// The global asked for.
        name: String,
    },

    /// A new build no longer registers a proc that a caller is bound to
    /// with its signature: the caller's next call would abort.
    #[error(
        "proc `{module}::{name}` would be gone after this reload, but {binder} is bound to it; restore the function, or restart to rebuild the host"
    )]
    BoundProcRemoved {
        /// The module that registered the proc.
        module: String,
        /// The proc.
        name: String,
        /// Who is bound to it: `the host` or `module `m``.
        binder: String,
    },

    /// [`Runtime::revert`](crate::Runtime::revert) was asked for a module
    /// whose previous build is not kept.
    #[error(
        "module `{module}` has no previous build to revert to: {}",
        if *keeping {
            "it was not reloaded since it was loaded or last reverted; rebuild it instead"
        } else {
            "previous builds are not kept; set Config::keep_previous_builds (or HCR_KEEP_PREVIOUS=1) before loading"
        }
    )]
    NoPreviousBuild {
        /// The module.
        module: String,
        /// Whether [`Config::keep_previous_builds`](crate::Config::keep_previous_builds) is on.
        keeping: bool,
    },

    /// A revert was refused: a global of the previous build is not as that
    /// build left it, so its code would read it wrongly.
    #[error(
        "cannot revert module `{module}` to its previous build: its global `{name}` {change} since; fix the code and rebuild instead (or restart)"
    )]
    RevertGlobalChanged {
        /// The module.
        module: String,
        /// The global.
        name: String,
        /// What happened to it: `changed layout from .. to ..`, `went away`,
        /// `moved to new storage`.
        change: String,
    },

    /// A revert was refused: the previous build imports a module that is no
    /// longer loaded.
    #[error(
        "cannot revert module `{module}` to its previous build: it imports `{import}`, which is no longer loaded; fix the code and rebuild instead"
    )]
    RevertImportGone {
        /// The module.
        module: String,
        /// The import.
        import: String,
    },

    /// A reload failed and was rolled back: the code and globals that were
    /// current before it are still current.
    #[error("reload failed and was rolled back, the old code keeps running: {}", summary(first, rest))]
    ReloadFailed {
        /// The first failure.
        #[source]
        first: Box<Error>,
        /// Further failures, one entry per cause.
        rest: Vec<Error>,
    },

    /// A load failed and was rolled back: nothing of it remains.
    #[error("load failed and was rolled back, nothing changed: {}", summary(first, rest))]
    LoadFailed {
        /// The first failure.
        #[source]
        first: Box<Error>,
        /// Further failures, one entry per cause.
        rest: Vec<Error>,
    },

    /// A runtime was already installed for this process.
    #[error("a runtime is already installed for this process; use Runtime::installed to reach it")]
    AlreadyInstalled,

    /// A load, unload or reload was started from inside a reload handler or a
    /// module's init, or a runtime method was called from a module's init.
    #[error(
        "the runtime was re-entered from a reload handler or module init, where this call is not allowed; make it from host code"
    )]
    Reentrant,

    /// The module path names a FIFO, socket, device or directory (or a
    /// symbolic link to one) instead of a regular file. It is refused
    /// without being opened for reading, so nothing blocks on it.
    #[error("{} is a {kind}, not a regular file: point the runtime at the library the build writes", path.display())]
    NotRegularFile {
        /// The module file.
        path: PathBuf,
        /// What it is: `FIFO`, `socket`, `character device`, `block device`,
        /// `directory` or `special file`.
        kind: &'static str,
    },

    /// The module file is larger than [`Config::max_module_size`](crate::Config::max_module_size),
    /// or grew past it while it was copied.
    #[error(
        "{} is larger than the module size limit ({size} bytes or more, limit {limit}): raise HCR_MAX_MODULE_SIZE or Config::max_module_size if the module really is that large",
        path.display()
    )]
    ModuleTooLarge {
        /// The module file.
        path: PathBuf,
        /// Its size, or how much of it was read before the limit stopped the
        /// copy.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// Loading the library would create memory that is writable and
    /// executable: a segment with both permissions, an executable stack, or
    /// text relocations. Refused before the system loader sees it, unless
    /// [`Config::allow_writable_code`](crate::Config::allow_writable_code) is set.
    #[error(
        "{} would break W^X: {reason}; rebuild it without that (linker flags such as -z execstack or -z notext) or set HCR_ALLOW_WRITABLE_CODE=1 / Config::allow_writable_code",
        path.display()
    )]
    WritableCode {
        /// The module file.
        path: PathBuf,
        /// The segment or flag at fault.
        reason: String,
    },
}

impl Error {
    /// The individual failures: those of a [`Error::ReloadFailed`] or an
    /// [`Error::LoadFailed`], or the error itself.
    pub fn failures(&self) -> Vec<&Error> {
        match self {
            Error::ReloadFailed { first, rest } | Error::LoadFailed { first, rest } => {
                std::iter::once(&**first).chain(rest).collect()
            }
            other => vec![other],
        }
    }

    /// Like [`Error::failures`], by value: the failures of a
    /// [`Error::ReloadFailed`] or an [`Error::LoadFailed`], or the error
    /// itself. Handy to `match` on the cause of a refused load:
    ///
    /// ```
    /// # use hcr_runtime::Error;
    /// fn is_damaged(err: Error) -> bool {
    ///     err.into_failures().iter().any(|e| matches!(e, Error::NotLoadable { .. }))
    /// }
    /// ```
    pub fn into_failures(self) -> Vec<Error> {
        match self {
            Error::ReloadFailed { first, mut rest } | Error::LoadFailed { first, mut rest } => {
                rest.insert(0, *first);
                rest
            }
            other => vec![other],
        }
    }

    /// The modules an error names as the owner of what was asked for (a
    /// global, an import, a proc): what a failure may have depended on.
    pub(crate) fn modules_named(&self) -> Vec<String> {
        match self {
            Error::UnknownGlobal { module, .. }
            | Error::GlobalLayoutMismatch { module, .. }
            | Error::SignatureMismatch { module, .. }
            | Error::BoundProcRemoved { module, .. } => vec![module.clone()],
            Error::ImportNotFound { import, .. } => vec![import.clone()],
            _ => Vec::new(),
        }
    }

    /// Wraps a non-empty list of a reload's failures; `None` when there are
    /// none.
    pub(crate) fn rolled_back(mut failures: Vec<Error>) -> Option<Error> {
        if failures.is_empty() {
            return None;
        }
        let first = Box::new(failures.remove(0));
        Some(Error::ReloadFailed { first, rest: failures })
    }

    /// Wraps a non-empty list of a load's failures; `None` when there are
    /// none.
    pub(crate) fn load_failed(mut failures: Vec<Error>) -> Option<Error> {
        if failures.is_empty() {
            return None;
        }
        let first = Box::new(failures.remove(0));
        Some(Error::LoadFailed { first, rest: failures })
    }
}

impl fmt::Debug for Error {
    /// The message, then every cause in the chain that the message does not
    /// already include.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.to_string();
        f.write_str(&message)?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                write!(f, "\n  caused by: {text}")?;
            }
            source = cause.source();
        }
        Ok(())
    }
}

/// Size, alignment and layout hash of a global, with the layout as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalLayout {
    /// Size in bytes.
    pub size: usize,
    /// Alignment in bytes.
    pub align: usize,
    /// Layout hash; `0` when unknown.
    pub hash: u64,
    /// The layout as text, when the module provided it.
    pub text: String,
}

impl fmt::Display for GlobalLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.text.is_empty() {
            write!(f, "`{}` ", self.text)?;
        }
        write!(f, "(size {}, align {}, hash {:#018x})", self.size, self.align, self.hash)
    }
}

fn paths(list: &[PathBuf]) -> String {
    let shown: Vec<String> = list.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

fn summary(first: &Error, rest: &[Error]) -> String {
    if rest.is_empty() {
        return first.to_string();
    }
    let items: Vec<String> = std::iter::once(first).chain(rest).map(|e| format!("({e})")).collect();
    format!("{} failures: {}", rest.len() + 1, items.join("; "))
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
