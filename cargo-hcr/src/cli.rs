//! The command line: `cargo hcr run -p <host> [--module <pkg>]... [--bin <name>] [--release] [-- <host args>...]`.

use std::ffi::OsString;

use crate::error::{Error, Result};

/// The help text.
pub const USAGE: &str = "\
Builds an hcr host and its modules, runs the host, and rebuilds the modules
whenever their sources change; the host reloads them while it runs.

Usage: cargo hcr run -p <HOST> [OPTIONS] [-- <HOST ARGS>...]

Options:
  -p, --package <HOST>   the package of the host binary (required)
      --module <PKG>     a module to build and watch (repeatable); by default,
                         every local cdylib among the host's dependencies
      --bin <NAME>       the host binary, when the package has several
  -r, --release          build with the release profile
  -h, --help             print this help
  -V, --version          print the version

Arguments after `--` are passed to the host.";

/// What `cargo hcr` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Build, run and watch.
    Run(RunArgs),
    /// Print the help text.
    Help,
    /// Print the version.
    Version,
}

/// The arguments of `cargo hcr run`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RunArgs {
    /// The host package.
    pub host: String,
    /// The module packages named with `--module`, in order; empty to find
    /// them from the host's dependencies.
    pub modules: Vec<String>,
    /// The host binary named with `--bin`.
    pub bin: Option<String>,
    /// Whether to build with the release profile.
    pub release: bool,
    /// What to pass to the host.
    pub host_args: Vec<OsString>,
}

/// Parses the arguments after the program name. A leading `hcr` (as cargo
/// passes when it runs `cargo hcr ...`) is skipped.
///
/// # Errors
///
/// [`Error::Usage`] for anything that is not understood.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "hcr") {
        args.next();
    }
    let Some(first) = args.next() else {
        return Err(Error::Usage("missing command: expected `run`".into()));
    };
    match utf8(first)?.as_str() {
        "run" => {}
        "-h" | "--help" | "help" => return Ok(Command::Help),
        "-V" | "--version" => return Ok(Command::Version),
        other => return Err(Error::Usage(format!("unknown command `{other}`: expected `run`"))),
    }

    let mut run = RunArgs::default();
    let mut host = None;
    while let Some(arg) = args.next() {
        if arg == "--" {
            run.host_args.extend(args.by_ref());
            break;
        }
        let arg = utf8(arg)?;
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => match arg.strip_prefix("-p") {
                Some(value) if !value.is_empty() && !arg.starts_with("--") => ("-p", Some(value.to_owned())),
                _ => (arg.as_str(), None),
            },
        };
        let mut value = |name: &str| match inline.clone() {
            Some(value) => nonempty(name, value),
            None => match args.next() {
                Some(value) => nonempty(name, utf8(value)?),
                None => Err(Error::Usage(format!("{name} needs a value"))),
            },
        };
        match flag {
            "-p" | "--package" => {
                let name = value(flag)?;
                if host.replace(name).is_some() {
                    return Err(Error::Usage("only one host package can be run (-p given twice)".into()));
                }
            }
            "--module" => run.modules.push(value(flag)?),
            "--bin" => run.bin = Some(value(flag)?),
            "-r" | "--release" if inline.is_none() => run.release = true,
            "-h" | "--help" if inline.is_none() => return Ok(Command::Help),
            _ if flag.starts_with('-') => return Err(Error::Usage(format!("unknown option `{arg}`"))),
            _ => {
                return Err(Error::Usage(format!("unexpected argument `{arg}`: arguments for the host go after `--`")));
            }
        }
    }
    run.host = host.ok_or_else(|| Error::Usage("missing the host package: -p <HOST>".into()))?;
    Ok(Command::Run(run))
}

fn utf8(arg: OsString) -> Result<String> {
    arg.into_string().map_err(|a| Error::Usage(format!("argument {a:?} is not valid UTF-8")))
}

fn nonempty(flag: &str, value: String) -> Result<String> {
    if value.is_empty() { Err(Error::Usage(format!("{flag} needs a value"))) } else { Ok(value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command> {
        parse(args.iter().map(OsString::from))
    }

    fn run(args: &[&str]) -> RunArgs {
        match parse_strs(args) {
            Ok(Command::Run(run)) => run,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    fn usage_error(args: &[&str]) -> String {
        match parse_strs(args) {
            Err(Error::Usage(message)) => message,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn the_cargo_form_and_the_direct_form_are_the_same() {
        let installed = run(&["hcr", "run", "-p", "game"]);
        let direct = run(&["run", "-p", "game"]);
        assert_eq!(installed, direct);
        assert_eq!(direct.host, "game");
        assert!(direct.modules.is_empty());
        assert!(!direct.release);
        assert!(direct.host_args.is_empty());
    }

    #[test]
    fn every_spelling_of_the_package_flag() {
        for args in
            [&["run", "-p", "host"][..], &["run", "-phost"], &["run", "--package", "host"], &["run", "--package=host"]]
        {
            assert_eq!(run(args).host, "host", "{args:?}");
        }
    }

    #[test]
    fn modules_release_bin_and_host_arguments() {
        let parsed = run(&[
            "hcr",
            "run",
            "--module",
            "physics",
            "-p",
            "game",
            "--module=render",
            "--release",
            "--bin",
            "client",
            "--",
            "--frames",
            "10",
            "-p",
            "--",
        ]);
        assert_eq!(parsed.host, "game");
        assert_eq!(parsed.modules, ["physics", "render"]);
        assert!(parsed.release);
        assert_eq!(parsed.bin.as_deref(), Some("client"));
        assert_eq!(parsed.host_args, ["--frames", "10", "-p", "--"].map(OsString::from));
        assert!(run(&["run", "-r", "-p", "x"]).release);
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_strs(&["hcr", "--help"]).unwrap(), Command::Help);
        assert_eq!(parse_strs(&["-h"]).unwrap(), Command::Help);
        assert_eq!(parse_strs(&["run", "-p", "x", "--help"]).unwrap(), Command::Help);
        assert_eq!(parse_strs(&["hcr", "-V"]).unwrap(), Command::Version);
        // After `--`, it belongs to the host.
        assert_eq!(run(&["run", "-p", "x", "--", "--help"]).host_args, [OsString::from("--help")]);
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert!(usage_error(&[]).contains("missing command"));
        assert!(usage_error(&["hcr"]).contains("missing command"));
        assert!(usage_error(&["build", "-p", "x"]).contains("unknown command `build`"));
        assert!(usage_error(&["run"]).contains("-p <HOST>"));
        assert!(usage_error(&["run", "--module", "m"]).contains("-p <HOST>"));
        assert!(usage_error(&["run", "-p"]).contains("-p needs a value"));
        assert!(usage_error(&["run", "--package="]).contains("--package needs a value"));
        assert!(usage_error(&["run", "-p", "a", "-p", "b"]).contains("given twice"));
        assert!(usage_error(&["run", "-p", "a", "--frobnicate"]).contains("unknown option `--frobnicate`"));
        assert!(usage_error(&["run", "-p", "a", "--release=yes"]).contains("unknown option"));
        assert!(usage_error(&["run", "-p", "a", "10"]).contains("after `--`"));
    }

    #[cfg(unix)]
    #[test]
    fn host_arguments_need_not_be_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![0x66, 0xff, 0x6f]);
        let parsed = parse([OsString::from("run"), "-p".into(), "x".into(), "--".into(), odd.clone()]).unwrap();
        assert_eq!(
            parsed,
            Command::Run(RunArgs { host: "x".into(), host_args: vec![odd.clone()], ..RunArgs::default() })
        );
        assert!(matches!(parse([OsString::from("run"), "-p".into(), odd]), Err(Error::Usage(_))));
    }
}
