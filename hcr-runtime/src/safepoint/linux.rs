//! Linux implementation of the safepoint services: the signal and its
//! handler, thread listing from `/proc/self/task`, mappings from
//! `/proc/self/maps`, futex waits, and library segment ranges.

use std::ffi::{CStr, c_int, c_void};
use std::io;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::ThreadInfo;

/// The calling thread's system id. Async-signal-safe.
pub(crate) fn current_tid() -> u64 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u64 }
}

/// The signal handler. Saves and restores `errno` around the system calls
/// the answer makes.
extern "C" fn handler(_signal: c_int, _info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: `__errno_location` returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes this handler (installed with SA_SIGINFO)
    // the interrupted thread's context.
    unsafe { super::on_request(context) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The safepoint signal, installed on first use: the highest real-time
/// signal (leaving the top two and the bottom two to others) that nobody
/// has a handler for. `None` if there is none, or if someone replaced our
/// handler since (then nothing is observed, and a warning says so).
pub(crate) fn signal() -> Option<c_int> {
    static SIGNAL: OnceLock<Option<c_int>> = OnceLock::new();
    let signal = (*SIGNAL.get_or_init(install))?;
    // SAFETY: `sigaction` with a null new action only reads the current one.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `current` is a valid out-pointer.
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) } != 0
        || current.sa_sigaction != handler as *const () as usize
    {
        static WARNED: OnceLock<()> = OnceLock::new();
        WARNED.get_or_init(|| {
            tracing::warn!(signal, "the safepoint signal's handler was replaced by someone else; threads that never registered can no longer be observed, and replaced modules stay loaded");
        });
        return None;
    }
    Some(signal)
}

fn install() -> Option<c_int> {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    for signal in (min + 2..=max - 2).rev() {
        // SAFETY: zeroed is a valid `sigaction` (empty mask, no flags).
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: reads the current action into a valid out-pointer.
        if unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) } != 0 || old.sa_sigaction != libc::SIG_DFL {
            continue;
        }
        // SAFETY: as above.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = handler as *const () as usize;
        // No SA_ONSTACK: the handler runs on the thread's own stack, where
        // the interrupted frames are. SA_RESTART: interrupted system calls
        // that can be restarted are.
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: `action.sa_mask` is a valid set to empty.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: installs an async-signal-safe handler for a signal nobody
        // handles; the old action is read back into a valid pointer.
        if unsafe { libc::sigaction(signal, &action, &mut old) } == 0 {
            tracing::debug!(signal, "safepoint signal installed");
            return Some(signal);
        }
    }
    tracing::warn!("no free real-time signal for the safepoint; threads that never registered cannot be observed");
    None
}

/// Sends the safepoint signal to thread `tid` of this process; `Ok(false)`
/// if the thread is gone.
pub(crate) fn send(tid: u64, signal: c_int) -> io::Result<bool> {
    // SAFETY: tgkill takes plain integers; it only targets this process.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid as libc::pid_t, signal) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) { Ok(false) } else { Err(e) }
}

/// Sleeps until `word` differs from `seen`, a wake, or `timeout`.
pub(crate) fn wait(word: &AtomicU32, seen: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: a private futex wait on a live, aligned 32-bit atomic with a
    // valid relative timeout; spurious returns are fine for the caller.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, seen, &ts);
    }
}

/// Wakes the waiters of `word`. Async-signal-safe.
pub(crate) fn wake(word: &AtomicU32) {
    // SAFETY: a private futex wake on a live, aligned 32-bit atomic.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, i32::MAX) };
}

/// Whether the calling thread runs on its alternate signal stack.
/// Async-signal-safe.
pub(crate) fn on_alternate_stack() -> bool {
    // SAFETY: zeroed is a valid `stack_t`.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only queries the current one.
    let rc = unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
    rc == 0 && current.ss_flags & libc::SS_ONSTACK != 0
}

/// Writable anonymous mappings (where thread stacks live), sorted, each
/// with whether it is the main thread's `[stack]`.
pub(crate) fn stack_mappings() -> io::Result<Vec<(usize, usize, bool)>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms), Some(_offset), Some(_dev), Some(inode)) =
            (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = fields.next().unwrap_or("");
        if !perms.starts_with("rw") || inode != "0" || !(path.is_empty() || path.starts_with("[stack")) {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        out.push((start, end, path == "[stack]"));
    }
    out.sort_unstable();
    Ok(out)
}

/// Signals that block every asynchronous signal a program could catch:
/// `SIGHUP`, `SIGINT`, `SIGQUIT`, `SIGUSR1`, `SIGUSR2`, `SIGPIPE`,
/// `SIGALRM`, `SIGTERM`, `SIGCHLD` and the real-time signals from 34 up.
const ALL_ASYNC: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 9)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 14)
    | (1 << 16)
    | (u64::MAX << 33);

/// Whether this program runs under an emulator (qemu-user): the emulator
/// shows the program's path as `/proc/self/exe`, but the main thread's
/// task entry, which it does not rewrite, names the emulator.
fn emulated() -> bool {
    static EMULATED: OnceLock<bool> = OnceLock::new();
    *EMULATED.get_or_init(|| {
        let own = std::fs::read_link("/proc/self/exe");
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let task = std::fs::read_link(format!("/proc/self/task/{pid}/exe"));
        let emulated = matches!((&own, &task), (Ok(a), Ok(b)) if a != b);
        if emulated {
            tracing::debug!(program = ?own, emulator = ?task, "running under an emulator");
        }
        emulated
    })
}

/// When thread `tid` of this process started (clock ticks since boot).
pub(crate) fn start_time(tid: u64) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok().and_then(|s| parse_start_time(&s))
}

/// A thread's start time (clock ticks since boot) from its `stat`.
fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses: fields resume
    // after the last ')'. Field 22 is the start time; after the name come
    // field 3 onwards.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

/// The blocked-signal mask from a thread's `status`.
fn blocked(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("SigBlk:"))?;
    u64::from_str_radix(line["SigBlk:".len()..].trim(), 16).ok()
}

/// Every thread of the process.
///
/// Under an emulator (qemu-user), the program's threads are the emulator's
/// threads running guest code, next to the emulator's own helper threads
/// (qemu's RCU thread), which never run the program's code and must never
/// be signalled. A thread's signal mask in `/proc` is then the emulator's,
/// not the program's (which the emulator keeps to itself): the program's
/// threads run with the emulator's signals open, and a thread that blocks
/// the signal in the program does not answer (it is not proven, after the
/// timeout). The helpers are told apart once, at the first listing: threads
/// other than the main one, started within a second of it (while the
/// emulator started up) and blocking every asynchronous signal.
pub(crate) fn list_threads(signal: c_int) -> io::Result<Vec<ThreadInfo>> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u64;
    let emulated = emulated();
    let mut threads = Vec::new();
    let mut masks = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else { continue };
        let dir = entry.path();
        // A thread that exits meanwhile has no files any more: skip it.
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else { continue };
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else { continue };
        let start = parse_start_time(&stat).unwrap_or(0);
        // An unreadable mask counts as blocking: never signal what we
        // cannot vouch for.
        let mask = blocked(&status);
        let blocks_signal = !emulated && mask.unwrap_or(u64::MAX) & (1 << (signal - 1)) != 0;
        threads.push(ThreadInfo { tid, start, blocks_signal, emulator: false });
        masks.push(mask);
    }
    if emulated {
        static HELPERS: OnceLock<Vec<(u64, u64)>> = OnceLock::new();
        let helpers = HELPERS.get_or_init(|| {
            let ticks = {
                // SAFETY: sysconf has no preconditions.
                let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
                if ticks > 0 { ticks as u64 } else { 100 }
            };
            let helpers = emulator_helpers(pid, ticks, &threads, &masks);
            tracing::debug!(?helpers, "the emulator's own threads");
            helpers
        });
        for thread in &mut threads {
            thread.emulator = helpers.contains(&(thread.tid, thread.start));
        }
    }
    Ok(threads)
}

/// Whether thread `tid` blocks `signal` now (the host's mask under an
/// emulator, which says nothing: false there). A thread that is gone blocks
/// nothing.
pub(crate) fn blocks(tid: u64, signal: c_int) -> bool {
    if emulated() {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else { return false };
    blocked(&status).unwrap_or(u64::MAX) & (1 << (signal - 1)) != 0
}

/// The emulator's helper threads among `threads` (`(tid, start)`): not the
/// main thread (`pid`), started within a second (`ticks` clock ticks) of it,
/// and blocking every asynchronous signal (`masks`, in the same order).
fn emulator_helpers(pid: u64, ticks: u64, threads: &[ThreadInfo], masks: &[Option<u64>]) -> Vec<(u64, u64)> {
    let Some(main) = threads.iter().find(|t| t.tid == pid) else { return Vec::new() };
    threads
        .iter()
        .zip(masks)
        .filter(|(t, mask)| {
            t.tid != pid
                && t.start >= main.start
                && t.start - main.start <= ticks
                && mask.is_some_and(|m| m & ALL_ASYNC == ALL_ASYNC)
        })
        .map(|(t, _)| (t.tid, t.start))
        .collect()
}

/// The address ranges of the loaded segments of the library that was
/// opened from `path` (empty if it is not loaded).
pub(crate) fn library_ranges(path: &Path) -> Vec<Range<usize>> {
    struct Search<'a> {
        path: &'a [u8],
        ranges: Vec<Range<usize>>,
    }
    unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut c_void) -> c_int {
        // SAFETY: `data` is the `Search` passed below, alive for the walk.
        let search = unsafe { &mut *data.cast::<Search<'_>>() };
        // SAFETY: the loader passes a valid entry for the duration of the
        // callback.
        let info = unsafe { &*info };
        if info.dlpi_name.is_null() {
            return 0;
        }
        // SAFETY: a non-null name is a NUL-terminated string of the loader.
        if unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes() != search.path {
            return 0;
        }
        let page = crate::os::page_size();
        for i in 0..usize::from(info.dlpi_phnum) {
            // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
            let header = unsafe { &*info.dlpi_phdr.add(i) };
            if header.p_type != libc::PT_LOAD || header.p_memsz == 0 {
                continue;
            }
            let start = (info.dlpi_addr as usize).wrapping_add(header.p_vaddr as usize);
            let end = start.saturating_add(header.p_memsz as usize);
            search.ranges.push((start & !(page - 1))..end.next_multiple_of(page));
        }
        1
    }
    let mut search = Search { path: path.as_os_str().as_bytes(), ranges: Vec::new() };
    // SAFETY: `visit` only reads the entries and writes to `search`, which
    // outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search<'_>).cast()) };
    search.ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status_fields_are_parsed() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 987654 1000 100 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert!(start_time(current_tid()).is_some());
        let status = "Name:\tx\nSigPnd:\t0000000000000000\nSigBlk:\tfffffffe7ffbfa77\nSigIgn:\t0\n";
        let mask = blocked(status).unwrap();
        assert_eq!(mask, 0xfffffffe7ffbfa77);
        assert_eq!(mask & ALL_ASYNC, ALL_ASYNC, "qemu's helper thread blocks every asynchronous signal");
        assert_eq!(blocked("Name:\tx\n"), None);
    }

    #[test]
    fn the_emulator_s_helpers_started_with_it_and_block_every_signal() {
        let thread = |tid, start| ThreadInfo { tid, start, blocks_signal: false, emulator: false };
        // As seen under qemu-aarch64: the main thread, qemu's RCU thread one
        // tick later (blocking every signal), then the program's threads: one
        // soon after with signals open, one that blocks every signal but
        // started more than a second after the main thread.
        let threads = [thread(100, 5000), thread(101, 5001), thread(102, 5006), thread(103, 5300)];
        let all = Some(0xfffffffe7ffbfa77);
        let masks = [Some(0), all, Some(0), all];
        assert_eq!(emulator_helpers(100, 100, &threads, &masks), [(101, 5001)]);
        assert!(emulator_helpers(100, 100, &threads, &[Some(0), None, Some(0), None]).is_empty());
        assert!(emulator_helpers(999, 100, &threads, &masks).is_empty(), "no main thread listed");
    }

    #[test]
    fn the_own_stack_is_a_known_mapping() {
        let local = 0u64;
        let sp = &local as *const u64 as usize;
        let maps = stack_mappings().unwrap();
        assert!(maps.iter().any(|&(start, end, _)| start <= sp && sp < end), "{maps:x?}");
    }

    #[test]
    fn a_loaded_library_has_ranges_and_an_unknown_path_has_none() {
        assert!(library_ranges(Path::new("/nonexistent/libnothing.so")).is_empty());
    }
}
