//! `cargo hcr`: a one-command live development loop for hcr.
//!
//! `cargo hcr run -p <host>` builds the host and its modules, runs the host,
//! watches the modules' sources, rebuilds a module when they change, and
//! prints what the host's runtime made of the new build. See
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
mod builder;
mod cli;
mod error;
#[cfg(unix)]
mod host;
mod metadata;
#[cfg(unix)]
mod process;
mod report;
#[cfg(unix)]
mod session;
mod watch;

use cli::Command;

fn main() -> ExitCode {
    match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            println!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("cargo-hcr {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Run(args)) => match run(args) {
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
        },
        Err(e) => {
            status!("error: {e}");
            eprintln!("\n{}", cli::USAGE);
            ExitCode::from(2)
        }
    }
}

#[cfg(unix)]
fn run(args: cli::RunArgs) -> error::Result<ExitCode> {
    session::run(args)
}

#[cfg(not(unix))]
fn run(_: cli::RunArgs) -> error::Result<ExitCode> {
    Err(error::Error::Usage("cargo hcr run needs a Unix system".into()))
}
