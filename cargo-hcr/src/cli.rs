//! The command line, parsed with `clap`:
//!
//! ```text
//! cargo hcr run [-p <host>] [--module <pkg>]... [--bin <name>] [--release] [--no-restart] [--revert-on-panic] [-- <host args>...]
//! cargo hcr new <path> [--name <name>] [--hcr-path <dir> | --hcr-git <url> | --hcr-version <req>]
//! ```

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `cargo hcr`: the development loop of hcr.
#[derive(Debug, Parser, PartialEq, Eq)]
#[command(
    name = "cargo-hcr",
    bin_name = "cargo hcr",
    version,
    about = "Builds an hcr host and its modules, runs the host, and rebuilds a module on every save; the host reloads it while it runs.",
    after_help = "See docs/dev-loop.md in the hcr repository."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
    /// Build the host and its modules, run the host, rebuild and reload on save.
    Run(RunArgs),
    /// Write a new workspace: a host, one module, ready for `cargo hcr run`.
    New(NewArgs),
}

/// The arguments of `cargo hcr run`.
#[derive(Debug, Default, Args, PartialEq, Eq)]
pub struct RunArgs {
    /// The package of the host binary; by default the only member of the
    /// workspace with a binary and a module among its dependencies.
    #[arg(short = 'p', long = "package", value_name = "HOST")]
    pub host: Option<String>,
    /// A module to build and watch (repeatable); by default every local
    /// cdylib among the host's dependencies that builds with hcr-build.
    #[arg(long = "module", value_name = "PKG")]
    pub modules: Vec<String>,
    /// The host binary, when the package has several.
    #[arg(long, value_name = "NAME")]
    pub bin: Option<String>,
    /// Build with the release profile.
    #[arg(short, long)]
    pub release: bool,
    /// When the host's own sources change, keep the running host (and its
    /// state) instead of rebuilding and restarting it.
    #[arg(long)]
    pub no_restart: bool,
    /// After a reloadable function of a module's new build panics, send the
    /// module back to its previous build at the host's next update
    /// (`HCR_REVERT_ON_PANIC=1`, which the generated `Hcr::update` honours;
    /// the runtime then keeps each module's previous build loaded).
    #[arg(long)]
    pub revert_on_panic: bool,
    /// Arguments for the host (after `--`).
    #[arg(last = true, value_name = "HOST ARGS")]
    pub host_args: Vec<OsString>,
}

/// The arguments of `cargo hcr new`.
#[derive(Debug, Default, Args, PartialEq, Eq)]
pub struct NewArgs {
    /// The directory to create (it must not exist, or be empty).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// The name of the host package (default: the directory's name); the
    /// module is `<name>-logic`.
    #[arg(long)]
    pub name: Option<String>,
    /// Depend on the hcr crates of the checkout in this directory (the
    /// default when cargo-hcr itself was built from a checkout that still
    /// exists).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["hcr_git", "hcr_version"])]
    pub hcr_path: Option<PathBuf>,
    /// Depend on the hcr crates of this git repository.
    #[arg(long, value_name = "URL", conflicts_with = "hcr_version")]
    pub hcr_git: Option<String>,
    /// Depend on the hcr crates of the registry, with this version
    /// requirement (the default outside a checkout: this cargo-hcr's version).
    #[arg(long, value_name = "REQ")]
    pub hcr_version: Option<String>,
}

/// Parses the arguments after the program name. A leading `hcr` (as cargo
/// passes when it runs `cargo hcr ...`) is skipped, so that `cargo hcr run`
/// and `cargo-hcr run` are the same.
///
/// # Errors
///
/// clap's error (help and version requests included), ready to print with
/// [`clap::Error::exit`].
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "hcr") {
        args.next();
    }
    Cli::try_parse_from(std::iter::once(OsString::from("cargo-hcr")).chain(args))
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Cli, clap::Error> {
        parse(args.iter().map(OsString::from))
    }

    fn run(args: &[&str]) -> RunArgs {
        match parse_strs(args) {
            Ok(Cli { command: Command::Run(run) }) => run,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    fn error(args: &[&str]) -> (ErrorKind, String) {
        match parse_strs(args) {
            Err(e) => (e.kind(), e.to_string()),
            Ok(other) => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn the_cargo_form_and_the_direct_form_are_the_same() {
        let installed = run(&["hcr", "run", "-p", "game"]);
        let direct = run(&["run", "-p", "game"]);
        assert_eq!(installed, direct);
        assert_eq!(direct.host.as_deref(), Some("game"));
        assert!(direct.modules.is_empty());
        assert!(!direct.release && !direct.no_restart && !direct.revert_on_panic);
        assert!(direct.host_args.is_empty());
        assert_eq!(run(&["run"]).host, None, "the host can be found");
    }

    #[test]
    fn every_spelling_of_the_package_flag() {
        for args in
            [&["run", "-p", "host"][..], &["run", "-phost"], &["run", "--package", "host"], &["run", "--package=host"]]
        {
            assert_eq!(run(args).host.as_deref(), Some("host"), "{args:?}");
        }
    }

    #[test]
    fn modules_release_bin_restart_and_host_arguments() {
        let parsed = run(&[
            "hcr",
            "run",
            "--module",
            "physics",
            "-p",
            "game",
            "--module=render",
            "--release",
            "--no-restart",
            "--revert-on-panic",
            "--bin",
            "client",
            "--",
            "--frames",
            "10",
            "-p",
            "--",
        ]);
        assert_eq!(parsed.host.as_deref(), Some("game"));
        assert_eq!(parsed.modules, ["physics", "render"]);
        assert!(parsed.release && parsed.no_restart && parsed.revert_on_panic);
        assert_eq!(parsed.bin.as_deref(), Some("client"));
        assert_eq!(parsed.host_args, ["--frames", "10", "-p", "--"].map(OsString::from));
        assert!(run(&["run", "-r", "-p", "x"]).release);
    }

    #[test]
    fn new_and_its_sources_of_hcr() {
        let Cli { command: Command::New(new) } = parse_strs(&["hcr", "new", "demo", "--hcr-path", "/src/hcr"]).unwrap()
        else {
            panic!("not new")
        };
        assert_eq!(new.path, PathBuf::from("demo"));
        assert_eq!(new.hcr_path, Some(PathBuf::from("/src/hcr")));
        let Cli { command: Command::New(new) } =
            parse_strs(&["new", "x", "--name", "y", "--hcr-git", "https://example.invalid/hcr.git"]).unwrap()
        else {
            panic!("not new")
        };
        assert_eq!(new.name.as_deref(), Some("y"));
        assert_eq!(new.hcr_git.as_deref(), Some("https://example.invalid/hcr.git"));
        assert_eq!(error(&["new", "x", "--hcr-path", "a", "--hcr-git", "b"]).0, ErrorKind::ArgumentConflict);
        assert_eq!(error(&["new"]).0, ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn help_and_version() {
        assert_eq!(error(&["hcr", "--help"]).0, ErrorKind::DisplayHelp);
        assert_eq!(error(&["run", "-p", "x", "--help"]).0, ErrorKind::DisplayHelp);
        assert_eq!(error(&["hcr", "-V"]).0, ErrorKind::DisplayVersion);
        // After `--`, it belongs to the host.
        assert_eq!(run(&["run", "-p", "x", "--", "--help"]).host_args, [OsString::from("--help")]);
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert_eq!(error(&[]).0, ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
        assert_eq!(error(&["build", "-p", "x"]).0, ErrorKind::InvalidSubcommand);
        assert_eq!(error(&["run", "-p"]).0, ErrorKind::InvalidValue);
        assert_eq!(error(&["run", "-p", "a", "-p", "b"]).0, ErrorKind::ArgumentConflict);
        assert_eq!(error(&["run", "-p", "a", "--frobnicate"]).0, ErrorKind::UnknownArgument);
        let (kind, message) = error(&["run", "-p", "a", "10"]);
        assert_eq!(kind, ErrorKind::UnknownArgument, "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn host_arguments_need_not_be_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![0x66, 0xff, 0x6f]);
        let parsed = parse([OsString::from("run"), "-p".into(), "x".into(), "--".into(), odd.clone()]).unwrap();
        assert_eq!(
            parsed.command,
            Command::Run(RunArgs { host: Some("x".into()), host_args: vec![odd.clone()], ..RunArgs::default() })
        );
        assert!(parse([OsString::from("run"), "-p".into(), odd]).is_err());
    }
}
