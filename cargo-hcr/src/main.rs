//! `cargo hcr`: the live development loop of hcr.
//!
//! `cargo hcr run` builds the host and its modules, runs the host, watches
//! the sources, rebuilds a module on every save (running the compiler
//! directly, as cargo last ran it) and prints what the host's runtime made
//! of the new build. `cargo hcr new` writes a workspace ready for it. See
//! `docs/dev-loop.md` in the repository.

use std::process::ExitCode;

/// Prints one status line on standard error, prefixed with `[hcr] `. A
/// standard error that cannot be written to (a closed pipe) does not stop
/// cargo-hcr: it still has processes to stop.
macro_rules! status {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "[hcr] {}", format_args!($($arg)*));
    }};
}

#[cfg(unix)]
mod cargo;
mod cli;
mod error;
#[cfg(unix)]
mod host;
mod link;
mod metadata;
mod new;
#[cfg(unix)]
mod process;
#[cfg(unix)]
mod rebuild;
mod record;
mod report;
#[cfg(unix)]
mod session;
mod trace;
mod watch;

use cli::Command;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli) => cli,
        // Help and version are printed and exit with 0, mistakes with 2.
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::New(args) => new::new(&args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            status!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(unix)]
fn run(args: cli::RunArgs) -> error::Result<ExitCode> {
    session::run(args)
}

#[cfg(not(unix))]
fn run(_: cli::RunArgs) -> error::Result<ExitCode> {
    Err(error::Error::Usage("cargo hcr run needs a Unix system (it was written and tested on Linux)".into()))
}
