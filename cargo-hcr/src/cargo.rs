//! Running `cargo build` in the background, reading its JSON messages (with
//! `cargo_metadata`) and its verbose output (the commands it ran), and
//! stopping it, with every compiler it started, when asked to.

use std::ffi::OsString;
use std::io::{BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};

use cargo_metadata::Message;
use cargo_metadata::diagnostic::DiagnosticLevel;

use crate::error::{Error, Result};
use crate::process;
use crate::record;

/// How long a build that is asked to stop gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The status words cargo right-aligns in 12 columns, which cargo-hcr does
/// not repeat.
const STATUS_WORDS: &[&str] = &[
    "Compiling",
    "Fresh",
    "Dirty",
    "Running",
    "Finished",
    "Checking",
    "Building",
    "Locking",
    "Updating",
    "Downloading",
    "Downloaded",
    "Adding",
    "Blocking",
    "Removing",
    "Unpacking",
    "Waiting",
];

/// How cargo is run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cargo to run.
    pub cargo: OsString,
    /// Build with the release profile.
    pub release: bool,
    /// Render diagnostics with colours.
    pub color: bool,
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The packages, always the same ones in a session (the modules, then
    /// the host), so that cargo resolves the same features for every build
    /// and never rebuilds a dependency for a different set.
    pub packages: Vec<String>,
}

/// Compiler diagnostics of one build.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// Errors, rendered, in order.
    pub errors: Vec<String>,
    /// Warnings, rendered, in order, each once.
    pub warnings: Vec<String>,
}

impl Diagnostics {
    /// Adds a rendered diagnostic of level `level`; notes and help that come
    /// on their own are kept with the warnings.
    pub fn add(&mut self, level: &DiagnosticLevel, rendered: &str) {
        let list = match level {
            DiagnosticLevel::Error | DiagnosticLevel::Ice => &mut self.errors,
            _ => &mut self.warnings,
        };
        if !list.iter().any(|seen| seen == rendered) {
            list.push(rendered.to_owned());
        }
    }
}

/// Something cargo built (or found up to date).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Cargo's id of its package.
    pub package_id: String,
    /// The name of its target.
    pub target: String,
    /// Whether the target is a binary.
    pub bin: bool,
    /// The files it produced.
    pub filenames: Vec<PathBuf>,
    /// The executable, for a binary.
    pub executable: Option<PathBuf>,
    /// Whether cargo found it up to date and did not build it.
    pub fresh: bool,
}

/// What a build printed, once it is over.
#[derive(Debug, Default)]
pub struct Output {
    /// The compiler's diagnostics.
    pub diagnostics: Diagnostics,
    /// What it built or found up to date.
    pub artifacts: Vec<Artifact>,
    /// The commands it ran (from `-vv`).
    pub commands: Vec<record::Command>,
    /// What cargo printed itself (its errors and warnings, and those of
    /// build scripts), without its status lines and the commands; plus
    /// anything on its standard output that was not a message.
    pub other: String,
}

impl Output {
    /// The executable built for target `bin` of package `package_id`. A
    /// package's library may have the binary's name: only an artifact with
    /// an executable counts.
    pub fn executable(&self, package_id: &str, bin: &str) -> Option<PathBuf> {
        self.artifacts
            .iter()
            .filter(|a| a.package_id == package_id && a.target == bin)
            .find_map(|a| a.executable.clone())
    }

    /// Reads cargo's standard output (JSON messages) and standard error.
    pub fn read(stdout: impl Read, stderr: &str) -> Output {
        let mut output = Output::default();
        for message in Message::parse_stream(BufReader::new(stdout)) {
            let Ok(message) = message else { break };
            match message {
                // With `-vv`, cargo lets dependencies from registries and git
                // warn too: only the packages on this machine are shown, as
                // without it.
                Message::CompilerMessage(message) if message.package_id.repr.starts_with("path+") => {
                    if let Some(rendered) = &message.message.rendered {
                        output.diagnostics.add(&message.message.level, rendered);
                    }
                }
                Message::CompilerArtifact(artifact) => output.artifacts.push(Artifact {
                    package_id: artifact.package_id.repr,
                    target: artifact.target.name.clone(),
                    bin: artifact.target.is_bin(),
                    filenames: artifact.filenames.into_iter().map(|f| f.into_std_path_buf()).collect(),
                    executable: artifact.executable.map(|e| e.into_std_path_buf()),
                    fresh: artifact.fresh,
                }),
                Message::TextLine(line) if !is_status(&line) && !is_script_echo(&line) => {
                    output.other.push_str(&line);
                    output.other.push('\n');
                }
                _ => {}
            }
        }
        let (commands, rest) = record::split_verbose(stderr);
        output.commands = commands;
        output.other = shown(&rest) + &output.other;
        output
    }

    /// The text to show for a failed build: the compiler's errors, then
    /// what cargo said.
    pub fn error_text(&self) -> String {
        let mut text: String = self.diagnostics.errors.iter().map(|e| e.trim_end().to_owned() + "\n\n").collect();
        text.push_str(self.other.trim_end());
        text.trim_end().to_owned()
    }

    /// The text to show for a successful build: the warnings, as cargo
    /// shows them (each diagnostic, then cargo's own lines, such as its
    /// count of warnings per crate); empty if there are none.
    pub fn warning_text(&self) -> String {
        let mut text: String = self.diagnostics.warnings.iter().map(|w| w.trim_end().to_owned() + "\n\n").collect();
        text.push_str(self.other.trim_end());
        text.trim_end().to_owned()
    }

    /// The packages (by id) cargo compiled, not found up to date.
    pub fn compiled(&self) -> impl Iterator<Item = &str> {
        self.artifacts.iter().filter(|a| !a.fresh).map(|a| a.package_id.as_str())
    }
}

/// `text` without cargo's status lines and the output of build scripts it
/// echoes with `-vv` (`[package version] ...`).
fn shown(text: &str) -> String {
    text.lines().filter(|line| !is_status(line) && !is_script_echo(line)).map(|line| line.to_owned() + "\n").collect()
}

fn is_status(line: &str) -> bool {
    let trimmed = line.trim_start();
    let word = trimmed.split(' ').next().unwrap_or_default();
    STATUS_WORDS.contains(&word) && line.len() - trimmed.len() + word.len() == 12
}

fn is_script_echo(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        .is_some_and(|(inside, _)| inside.split(' ').count() == 2)
}

/// A `cargo build` running in a process group of its own.
#[derive(Debug)]
pub struct Build {
    child: Child,
    /// When it started.
    pub started: Instant,
}

impl Build {
    /// Starts `cargo build -vv -p <package>...`. When cargo is done, what it
    /// printed is sent through `done` (wrapped by `event`); then call
    /// [`Build::finish`].
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if cargo cannot be started.
    pub fn start<E: Send + 'static>(
        options: &Options,
        selection: &Selection,
        done: Sender<E>,
        event: fn(Output) -> E,
    ) -> Result<Build> {
        let mut command = Command::new(&options.cargo);
        command.arg("build");
        for package in &selection.packages {
            command.args(["-p", package]);
        }
        if options.release {
            command.arg("--release");
        }
        let (format, color) =
            if options.color { ("json-diagnostic-rendered-ansi", "always") } else { ("json", "never") };
        command
            // `-vv`: the commands it runs, with their environment, to run
            // them again without cargo.
            .args(["-vv", "--message-format", format, "--color", color])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that stopping it stops the compilers too.
            .process_group(0);
        process::die_with_parent(&mut command);
        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| Error::Spawn { program: "cargo build".into(), source })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        thread::spawn(move || {
            let stderr = thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut stderr) = stderr {
                    let _ = stderr.read_to_end(&mut bytes);
                }
                String::from_utf8_lossy(&bytes).into_owned()
            });
            let mut stdout_bytes = Vec::new();
            if let Some(mut stdout) = stdout {
                let _ = stdout.read_to_end(&mut stdout_bytes);
            }
            let stderr = stderr.join().unwrap_or_default();
            // The receiver is gone only when cargo-hcr is stopping.
            let _ = done.send(event(Output::read(stdout_bytes.as_slice(), &stderr)));
        });
        Ok(Build { child, started })
    }

    /// Waits for cargo to exit, once its output was sent: whether it
    /// succeeded.
    ///
    /// # Errors
    ///
    /// [`Error::Process`] if it cannot be waited for.
    pub fn finish(mut self) -> Result<ExitStatus> {
        self.child.wait().map_err(|source| Error::Process { what: "cargo build".into(), source })
    }

    /// Stops the build and every process it started: `SIGTERM` to its
    /// process group, then `SIGKILL` if it is still there after a short
    /// grace period.
    pub fn stop(mut self) {
        process::stop_group(&mut self.child, STOP_GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_is_found_when_the_library_has_the_binarys_name() {
        let stdout = [
            r#"{"reason":"compiler-artifact","package_id":"path+file:///g#0.1.0","manifest_path":"/g/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"g","src_path":"/g/src/lib.rs","edition":"2024","doctest":false,"test":false,"doc":false},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/t/debug/libg.rlib"],"executable":null,"fresh":false}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///g#0.1.0","manifest_path":"/g/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"g","src_path":"/g/src/main.rs","edition":"2024","doctest":false,"test":false,"doc":false},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/t/debug/g"],"executable":"/t/debug/g","fresh":false}"#,
        ]
        .join("\n");
        let output = Output::read(stdout.as_bytes(), "");
        assert_eq!(output.executable("path+file:///g#0.1.0", "g").as_deref(), Some(std::path::Path::new("/t/debug/g")));
        assert_eq!(output.executable("path+file:///g#0.1.0", "other"), None);
    }

    #[test]
    fn messages_give_diagnostics_and_artifacts() {
        let stdout = [
            r#"{"reason":"compiler-message","package_id":"path+file:///m#0.1.0","manifest_path":"/m/Cargo.toml","target":{"kind":["cdylib"],"crate_types":["cdylib"],"name":"m","src_path":"/m/src/lib.rs","edition":"2024","doctest":false,"test":false,"doc":false},"message":{"message":"unused","code":null,"level":"warning","spans":[],"children":[],"rendered":"warning: unused\n"}}"#,
            r#"{"reason":"compiler-message","package_id":"registry+https://example.invalid/index#dep@1.0.0","manifest_path":"/d/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"dep","src_path":"/d/src/lib.rs","edition":"2024","doctest":false,"test":false,"doc":false},"message":{"message":"theirs","code":null,"level":"warning","spans":[],"children":[],"rendered":"warning: theirs\n"}}"#,
            r#"{"reason":"compiler-message","package_id":"path+file:///m#0.1.0","manifest_path":"/m/Cargo.toml","target":{"kind":["cdylib"],"crate_types":["cdylib"],"name":"m","src_path":"/m/src/lib.rs","edition":"2024","doctest":false,"test":false,"doc":false},"message":{"message":"expected expression","code":null,"level":"error","spans":[],"children":[],"rendered":"error: expected expression\n --> src/lib.rs:3:5\n"}}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///h#0.1.0","manifest_path":"/h/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"h","src_path":"/h/src/main.rs","edition":"2024","doctest":false,"test":false,"doc":false},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/t/debug/h"],"executable":"/t/debug/h","fresh":false}"#,
            r#"{"reason":"build-finished","success":false}"#,
            "not json",
        ]
        .join("\n");
        let stderr = "   Compiling m v0.1.0 (/m)\n     Running `A=1 /r/rustc --crate-name m`\n[m 0.1.0] cargo:rerun-if-changed=src\nwarning: `m` (lib) generated 1 warning\nerror: could not compile `m`\n";
        let output = Output::read(stdout.as_bytes(), stderr);
        assert_eq!(output.diagnostics.errors, ["error: expected expression\n --> src/lib.rs:3:5\n"]);
        assert_eq!(output.diagnostics.warnings, ["warning: unused\n"]);
        assert_eq!(output.artifacts.len(), 1);
        assert_eq!(output.artifacts[0].executable.as_deref(), Some(std::path::Path::new("/t/debug/h")));
        assert!(output.artifacts[0].bin && !output.artifacts[0].fresh);
        assert_eq!(output.commands.len(), 1);
        assert_eq!(output.compiled().collect::<Vec<_>>(), ["path+file:///h#0.1.0"]);
        assert_eq!(
            output.error_text(),
            "error: expected expression\n --> src/lib.rs:3:5\n\nwarning: `m` (lib) generated 1 warning\nerror: could not compile `m`\nnot json"
        );
        assert!(output.warning_text().starts_with("warning: unused\n\nwarning: `m` (lib) generated 1 warning"));
    }

    #[test]
    fn status_lines_and_script_echoes_are_not_shown() {
        let text = "   Compiling a v1 (/a)\n       Fresh b v2\n    Finished `dev` profile\n[a 0.1.0] hello\n\
                    warning: output filename collision\n  Compiling is not aligned\n[not an echo]\n";
        assert_eq!(shown(text), "warning: output filename collision\n  Compiling is not aligned\n[not an echo]\n");
    }

    #[test]
    fn diagnostics_are_kept_once() {
        let mut diagnostics = Diagnostics::default();
        diagnostics.add(&DiagnosticLevel::Warning, "warning: a");
        diagnostics.add(&DiagnosticLevel::Warning, "warning: a");
        diagnostics.add(&DiagnosticLevel::Error, "error: b");
        assert_eq!(diagnostics, Diagnostics { errors: vec!["error: b".into()], warnings: vec!["warning: a".into()] });
    }
}
