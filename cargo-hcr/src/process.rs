//! Child processes: tying their life to cargo-hcr's, signalling them, and
//! turning their exit status into cargo-hcr's.

use std::io;
use std::process::{Command, ExitStatus};

/// Makes the process `command` starts die (`SIGKILL`) when cargo-hcr dies,
/// however it dies, so that nothing is left running. Linux only; elsewhere
/// nothing changes.
///
/// The kernel sends the signal when the *thread* that spawned the child
/// exits: cargo-hcr spawns every child from its main thread.
pub fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;

        let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(libc::pid_t::MAX);
        let hook = move || {
            // SAFETY: `PR_SET_PDEATHSIG` with a valid signal number only sets
            // an attribute of this process; the argument is passed as the
            // `unsigned long` the kernel reads.
            if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } == -1 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `getppid` has no preconditions.
            if unsafe { libc::getppid() } != parent {
                // cargo-hcr died before `prctl`: nobody would kill this
                // child later, so it must not start.
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        };
        // SAFETY: the hook runs in the child between `fork` and `exec`, where
        // only async-signal-safe functions may be called. It makes two system
        // calls (`prctl`, `getppid`) and builds `io::Error`s from error
        // numbers, which does not allocate; it takes no lock and touches no
        // state shared with other threads.
        unsafe { command.pre_exec(hook) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Sends `signal` to the process `pid`. The caller must not have reaped it
/// (waited for it successfully), or the id could name another process.
///
/// # Errors
///
/// The system's error, e.g. `ESRCH` when there is no such process.
pub fn signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    kill(libc::pid_t::try_from(pid).map_err(io::Error::other)?, signal)
}

/// Sends `signal` to every process of the process group `group`, as
/// [`signal`] does to one process; the group's leader must not be reaped.
///
/// # Errors
///
/// As for [`signal`].
pub fn signal_group(group: u32, signal: libc::c_int) -> io::Result<()> {
    // A negative id names a process group.
    kill(-libc::pid_t::try_from(group).map_err(io::Error::other)?, signal)
}

/// Stops `child`, the leader of a process group of its own, and every
/// process of its group: `SIGTERM` to the group, then `SIGKILL` if the child
/// has not exited after `grace`; then reaps it.
pub fn stop_group(child: &mut std::process::Child, grace: std::time::Duration) {
    let group = child.id();
    // An error means the group is gone already: there is only the child to reap.
    if signal_group(group, libc::SIGTERM).is_ok() {
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                // Reaped, and the group got the signal. Its id must not be
                // signalled any more: it could be reused.
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Not reaped yet, so the group's id is still this group's. If this
        // fails, the group is gone anyway.
        let _ = signal_group(group, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Waits until process `pid`, a child of this process, has exited, without
/// reaping it: its id stays its own until it is waited for.
///
/// # Errors
///
/// The system's error, e.g. `ECHILD` when it is no child of this process.
pub fn wait_exited(pid: u32) -> io::Result<()> {
    let pid = libc::id_t::try_from(pid).map_err(io::Error::other)?;
    loop {
        // SAFETY: `info` is a valid, writable `siginfo_t`; `waitid` with
        // `WNOWAIT` only reads the child's state.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; the pointer is to a live local.
        let result = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if result == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

fn kill(target: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: `kill` has no memory-safety preconditions.
    if unsafe { libc::kill(target, signal) } == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The exit code that reports `status` the way a shell does: the process's
/// own code, or 128 plus the signal that killed it.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(signal)) => signal_exit_code(signal),
        (None, None) => 1,
    }
}

/// The exit code of a process stopped by `signal`: 128 plus its number.
pub fn signal_exit_code(signal: libc::c_int) -> u8 {
    u8::try_from(128 + signal).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn exit_codes_are_a_shells() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGINT)), 130);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
        assert_eq!(signal_exit_code(libc::SIGTERM), 143);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_child_that_dies_with_its_parent_still_runs() {
        let mut command = Command::new("sh");
        command.args(["-c", "exit 7"]);
        die_with_parent(&mut command);
        assert_eq!(command.status().unwrap().code(), Some(7));
    }

    #[test]
    fn signals_reach_the_process() {
        let mut child = Command::new("sleep").arg("600").spawn().unwrap();
        signal(child.id(), libc::SIGTERM).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
    }
}
