//! The exact commands cargo ran for a module: its build script and its
//! `rustc`, read from what cargo prints with `-vv`, so that later rebuilds
//! can run them again directly, without cargo's start-up and fingerprinting.
//!
//! With `-vv`, cargo prints every process it starts as
//! ``Running `NAME=value ... program arg ...` `` with the environment it set
//! for it, each word quoted the way a POSIX shell reads it. Those lines are
//! the record; everything else cargo printed is passed on.

use std::path::{Path, PathBuf};

/// A command as cargo ran it: the environment it set (on top of the one it
/// inherited, which is cargo-hcr's own), the program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The variables cargo set, in order.
    pub env: Vec<(String, String)>,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

impl Command {
    /// The value cargo gave the variable `name`.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of option `flag` (given as `flag value` or `flag=value`).
    pub fn option(&self, flag: &str) -> Option<&str> {
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if arg == flag {
                return args.next().map(String::as_str);
            }
            if let Some(value) = arg.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')) {
                return Some(value);
            }
        }
        None
    }

    /// Every value of option `flag` (each given as `flag value` or
    /// `flag=value`).
    pub fn options<'a>(&'a self, flag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let mut values = Vec::new();
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if arg == flag {
                values.extend(args.next().map(String::as_str));
            } else if let Some(value) = arg.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')) {
                values.push(value);
            }
        }
        values.into_iter()
    }

    /// This command with the value of option `flag` replaced by `value`.
    pub fn with_option(&self, flag: &str, value: &str) -> Command {
        let mut command = self.clone();
        let mut replace_next = false;
        for arg in &mut command.args {
            if replace_next {
                *arg = value.to_owned();
                replace_next = false;
            } else if arg == flag {
                replace_next = true;
            } else if arg.strip_prefix(flag).is_some_and(|rest| rest.starts_with('=')) {
                *arg = format!("{flag}={value}");
            }
        }
        command
    }

    /// This command without the option `flag value` (or `flag=value`).
    pub fn without(&self, flag: &str, value: &str) -> Command {
        let mut command = self.clone();
        let mut args = Vec::with_capacity(self.args.len());
        let mut iter = std::mem::take(&mut command.args).into_iter().peekable();
        while let Some(arg) = iter.next() {
            if arg == flag && iter.peek().is_some_and(|next| next == value) {
                iter.next();
                continue;
            }
            if arg.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')) == Some(value) {
                continue;
            }
            args.push(arg);
        }
        command.args = args;
        command
    }

    /// `rustc` building only the `cdylib` of a command that builds it with
    /// other crate types (the `rlib` of a module that static builds link),
    /// and not the metadata only those need; the command as it is when it
    /// builds nothing else.
    pub fn cdylib_only(&self) -> Command {
        let mut command = self.clone();
        let others: Vec<String> = self.options("--crate-type").filter(|t| *t != "cdylib").map(str::to_owned).collect();
        if others.is_empty() || !self.options("--crate-type").any(|t| t == "cdylib") {
            return command;
        }
        for other in &others {
            command = command.without("--crate-type", other);
        }
        if let Some(emit) = command.option("--emit") {
            let kept: Vec<&str> = emit.split(',').filter(|kind| *kind != "metadata").collect();
            command = command.with_option("--emit", &kept.join(","));
        }
        command
    }

    /// Whether it is `rustc` compiling the library `crate_name` of the
    /// package in `dir` as a `cdylib` (with any other crate types).
    pub fn compiles_cdylib(&self, crate_name: &str, dir: &Path) -> bool {
        self.var("CARGO_MANIFEST_DIR").is_some_and(|d| Path::new(d) == dir)
            && self.option("--crate-name") == Some(crate_name)
            && self.options("--crate-type").any(|t| t == "cdylib")
    }

    /// Whether it runs the build script of the package in `dir`.
    pub fn runs_build_script_of(&self, dir: &Path) -> bool {
        self.var("CARGO_MANIFEST_DIR").is_some_and(|d| Path::new(d) == dir)
            && self.var("OUT_DIR").is_some()
            && self.option("--crate-name").is_none()
            && self.program.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("build-script-"))
    }
}

/// Splits what cargo printed on its standard error with `-vv` into the
/// commands it ran and everything else (in order, one line per line).
///
/// A command whose text was not valid UTF-8 (cargo replaced bytes with
/// U+FFFD) cannot be run again as it was and is left out.
pub fn split_verbose(stderr: &str) -> (Vec<Command>, String) {
    let mut commands = Vec::new();
    let mut rest = String::new();
    let mut text = stderr;
    while !text.is_empty() {
        let line_end = text.find('\n').map_or(text.len(), |i| i + 1);
        let line = &text[..line_end];
        let trimmed = line.trim_start();
        if trimmed.starts_with("Running `") {
            let offset = line.len() - trimmed.len() + "Running `".len();
            // Without its closing quote, it is not a command: it is kept.
            if let Some((words, used)) = words(&text[offset..]) {
                if let Some(command) = command_of(words) {
                    commands.push(command);
                }
                // Skip the rest of the line the command ended on.
                let after = offset + used;
                let end = text[after..].find('\n').map_or(text.len(), |i| after + i + 1);
                text = &text[end..];
                continue;
            }
        }
        rest.push_str(line);
        text = &text[line_end..];
    }
    (commands, rest)
}

/// Reads shell words up to an unquoted backquote: the words and how many
/// bytes were read (the backquote included); `None` if there is no such
/// backquote.
///
/// Written by hand: the end of the command is only known by reading its
/// quoting, which word-splitting crates do not report.
fn words(text: &str) -> Option<(Vec<String>, usize)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '`' => {
                if in_word {
                    words.push(word);
                }
                return Some((words, i + 1));
            }
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        (_, '\'') => break,
                        (_, c) => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        (_, '"') => break,
                        (_, '\\') => {
                            let (_, next) = chars.next()?;
                            if !matches!(next, '"' | '\\' | '$' | '`' | '\n') {
                                word.push('\\');
                            }
                            if next != '\n' {
                                word.push(next);
                            }
                        }
                        (_, c) => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                let (_, next) = chars.next()?;
                if next != '\n' {
                    word.push(next);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    None
}

/// The command in `words`: leading `NAME=value` words are its environment.
fn command_of(words: Vec<String>) -> Option<Command> {
    if words.iter().any(|w| w.contains('\u{FFFD}')) {
        return None;
    }
    let mut env = Vec::new();
    let mut words = words.into_iter();
    for word in words.by_ref() {
        match word.split_once('=') {
            Some((name, value)) if is_name(name) => env.push((name.to_owned(), value.to_owned())),
            _ => return Some(Command { env, program: PathBuf::from(word), args: words.collect() }),
        }
    }
    None
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What a build script told cargo, from its standard output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptOutput {
    /// The directives that change how the crate is compiled or linked
    /// (`rustc-cfg`, `rustc-env`, `rustc-link-*`, `rustc-flags`,
    /// `metadata`...), as written.
    pub compile: Vec<String>,
    /// The files and directories it depends on; empty if it named none,
    /// in which case any file of the package does.
    pub rerun_if_changed: Vec<PathBuf>,
    /// Its warnings.
    pub warnings: Vec<String>,
    /// Its errors.
    pub errors: Vec<String>,
}

impl ScriptOutput {
    /// Reads a build script's standard output; relative paths are relative
    /// to the package directory `dir`.
    pub fn parse(stdout: &str, dir: &Path) -> ScriptOutput {
        let mut output = ScriptOutput::default();
        for line in stdout.lines() {
            let Some(directive) = line.strip_prefix("cargo::").or_else(|| line.strip_prefix("cargo:")) else {
                continue;
            };
            let (key, value) = directive.split_once('=').unwrap_or((directive, ""));
            match key {
                "rerun-if-changed" => output.rerun_if_changed.push(dir.join(value)),
                "rerun-if-env-changed" => {}
                "warning" => output.warnings.push(value.to_owned()),
                "error" => output.errors.push(value.to_owned()),
                _ => output.compile.push(directive.to_owned()),
            }
        }
        output
    }

    /// Whether a change of the files `changed` means the build script must
    /// run again, as cargo decides it.
    pub fn reruns_for(&self, changed: &[PathBuf]) -> bool {
        self.rerun_if_changed.is_empty()
            || changed.iter().any(|file| self.rerun_if_changed.iter().any(|input| file.starts_with(input)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two commands as cargo 1.95 prints them with `-vv`, one with a value
    /// that spans two lines and has a quote in it.
    const VERBOSE: &str = "   Compiling probe v0.1.0 (/ws/probe)\n     Running `CARGO=/bin/cargo CARGO_MANIFEST_DIR=/ws/probe CARGO_PKG_AUTHORS='' CARGO_PKG_DESCRIPTION='two\nlines it'\\''s' CARGO_PKG_NAME=probe OUT_DIR=/t/debug/build/probe-1/out /t/debug/build/probe-2/build-script-build`\n[probe 0.1.0] cargo:rerun-if-changed=src/lib.rs\n     Running `CARGO_CRATE_NAME=probe CARGO_MANIFEST_DIR=/ws/probe CARGO_PKG_NAME=probe OUT_DIR=/t/debug/build/probe-1/out /r/bin/rustc --crate-name probe --edition=2024 probe/src/lib.rs --crate-type cdylib --crate-type rlib --check-cfg 'cfg(feature, values())' --cfg 'feature=\"static\"' --out-dir /t/debug/deps -C 'link-arg=-Wl,x y'`\nwarning: unused variable\n    Finished `dev` profile\n";

    #[test]
    fn commands_and_the_rest() {
        let (commands, rest) = split_verbose(VERBOSE);
        assert_eq!(
            rest,
            "   Compiling probe v0.1.0 (/ws/probe)\n[probe 0.1.0] cargo:rerun-if-changed=src/lib.rs\nwarning: unused variable\n    Finished `dev` profile\n"
        );
        let [script, rustc] = commands.as_slice() else { panic!("{commands:#?}") };
        assert_eq!(script.program, PathBuf::from("/t/debug/build/probe-2/build-script-build"));
        assert!(script.args.is_empty());
        assert_eq!(script.var("CARGO_PKG_AUTHORS"), Some(""));
        assert_eq!(script.var("CARGO_PKG_DESCRIPTION"), Some("two\nlines it's"));
        assert!(script.runs_build_script_of(Path::new("/ws/probe")));
        assert!(!script.runs_build_script_of(Path::new("/ws/other")));
        assert!(!script.compiles_cdylib("probe", Path::new("/ws/probe")));

        assert_eq!(rustc.program, PathBuf::from("/r/bin/rustc"));
        assert!(rustc.compiles_cdylib("probe", Path::new("/ws/probe")));
        assert!(!rustc.runs_build_script_of(Path::new("/ws/probe")));
        assert_eq!(rustc.option("--edition"), Some("2024"));
        assert_eq!(rustc.option("--out-dir"), Some("/t/debug/deps"));
        assert_eq!(rustc.options("--crate-type").collect::<Vec<_>>(), ["cdylib", "rlib"]);
        assert_eq!(rustc.option("--cfg"), Some("feature=\"static\""));
        assert_eq!(rustc.args.last().map(String::as_str), Some("link-arg=-Wl,x y"));
        let moved = rustc.with_option("--out-dir", "/stage").with_option("--edition", "2021");
        assert_eq!(moved.option("--out-dir"), Some("/stage"));
        assert_eq!(moved.option("--edition"), Some("2021"));
        assert_eq!(moved.args.len(), rustc.args.len());
    }

    #[test]
    fn a_cdylib_is_built_alone() {
        let (commands, _) = split_verbose(VERBOSE);
        let rustc = commands[1].cdylib_only();
        assert_eq!(rustc.options("--crate-type").collect::<Vec<_>>(), ["cdylib"]);
        assert_eq!(rustc.option("--crate-name"), Some("probe"));
        assert_eq!(rustc.args.len(), commands[1].args.len() - 2, "only `--crate-type rlib` left out");
        let pipelined = Command {
            env: Vec::new(),
            program: "rustc".into(),
            args: ["--crate-type=cdylib", "--crate-type=rlib", "--emit=dep-info,metadata,link", "lib.rs"]
                .map(str::to_owned)
                .to_vec(),
        };
        assert_eq!(pipelined.cdylib_only().args, ["--crate-type=cdylib", "--emit=dep-info,link", "lib.rs"]);
        let rlib = Command { args: ["--crate-type", "rlib", "lib.rs"].map(str::to_owned).to_vec(), ..pipelined };
        assert_eq!(rlib.cdylib_only(), rlib, "no cdylib: unchanged");
    }

    #[test]
    fn odd_text_is_no_command() {
        let (commands, rest) = split_verbose("     Running `no end\nnext\n");
        assert!(commands.is_empty());
        assert_eq!(rest, "     Running `no end\nnext\n");
        let (commands, _) = split_verbose("     Running `X=\u{FFFD} /bin/rustc`\n");
        assert!(commands.is_empty(), "lossy text is not run again");
        let (commands, rest) = split_verbose("     Running `A=1 B=\"x\\\"y\" prog a\\ b`\nafter\n");
        assert_eq!(rest, "after\n");
        assert_eq!(commands[0].env, [("A".to_owned(), "1".to_owned()), ("B".to_owned(), "x\"y".to_owned())]);
        assert_eq!(commands[0].args, ["a b"]);
    }

    #[test]
    fn build_script_output() {
        let output = ScriptOutput::parse(
            "cargo:rerun-if-changed=src/lib.rs\ncargo::rerun-if-changed=/abs/dir\ncargo:rustc-cfg=x\n\
             cargo:warning=careful\ncargo::error=broken\nnot a directive\ncargo:rerun-if-env-changed=X\n",
            Path::new("/ws/m"),
        );
        assert_eq!(output.compile, ["rustc-cfg=x"]);
        assert_eq!(output.rerun_if_changed, [PathBuf::from("/ws/m/src/lib.rs"), PathBuf::from("/abs/dir")]);
        assert_eq!(output.warnings, ["careful"]);
        assert_eq!(output.errors, ["broken"]);
        assert!(output.reruns_for(&[PathBuf::from("/ws/m/src/lib.rs")]));
        assert!(output.reruns_for(&[PathBuf::from("/abs/dir/deep/file.rs")]));
        assert!(!output.reruns_for(&[PathBuf::from("/ws/m/src/other.rs")]));
        assert!(ScriptOutput::default().reruns_for(&[PathBuf::from("/anything")]), "no list: every file");
    }
}
