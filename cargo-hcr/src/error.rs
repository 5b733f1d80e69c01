//! The one error type of cargo-hcr. Every message says what to do next.

use std::path::PathBuf;

/// Everything that can stop `cargo hcr`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line or the workspace does not say what to do; the
    /// message says why and what to add.
    #[error("{0}")]
    Usage(String),
    /// A program could not be started.
    #[error("cannot run {program}: is it installed and on PATH?")]
    Spawn {
        /// The program, as it was to be run.
        program: String,
        /// Why it could not be started.
        #[source]
        source: std::io::Error,
    },
    /// `cargo metadata` failed, or printed something that is not metadata.
    #[error("cannot read the workspace's metadata (run `cargo metadata` to see why, and fix the manifest)")]
    Metadata(#[source] cargo_metadata::Error),
    /// A package named on the command line is not in the workspace.
    #[error("no package `{name}` in this workspace: choose one of {known}")]
    UnknownPackage {
        /// The name given.
        name: String,
        /// The packages there are, comma-separated.
        known: String,
    },
    /// The host package has no binary to run.
    #[error("package `{0}` has no binary target: name the host package with -p")]
    NoBinary(String),
    /// The host package has several binaries and none was chosen.
    #[error("package `{package}` has several binaries ({names}): choose one with --bin")]
    SeveralBinaries {
        /// The host package.
        package: String,
        /// Its binaries, comma-separated.
        names: String,
    },
    /// No host was named, and the workspace does not have exactly one.
    #[error("{0}")]
    NoHost(String),
    /// A package named with `--module` cannot be loaded as a module.
    #[error(
        "package `{0}` is not a module: its library is not a local cdylib (add `crate-type = [\"cdylib\", \"rlib\"]` under [lib])"
    )]
    NotAModule(String),
    /// No module was named and none was found among the host's dependencies.
    #[error(
        "`{0}` has no module among its dependencies (a local package with a cdylib library that builds with hcr-build): add the module under [dependencies], or name it with --module"
    )]
    NoModules(String),
    /// The initial build failed (its errors were printed already).
    #[error("the build failed: fix the errors above and run again")]
    BuildFailed,
    /// The build succeeded but produced no executable for the host.
    #[error("the build of `{0}` produced no executable: check its [[bin]] targets, or choose one with --bin")]
    NoExecutable(String),
    /// The file watcher could not be set up.
    #[error("cannot watch {} (on Linux, raise fs.inotify.max_user_watches if it is the limit)", path.display())]
    Watch {
        /// What was to be watched.
        path: PathBuf,
        /// Why it could not be.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be created, read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A child process could not be waited for or signalled.
    #[error("cannot control {what}")]
    Process {
        /// Which process.
        what: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot handle signals")]
    Signals(#[source] std::io::Error),
    /// `cargo hcr new` was asked to write where something already is.
    #[error("{} already exists and is not empty: choose a new directory", .0.display())]
    Exists(PathBuf),
}

/// The result type of cargo-hcr.
pub type Result<T, E = Error> = std::result::Result<T, E>;
