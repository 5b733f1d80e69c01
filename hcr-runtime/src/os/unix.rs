//! Unix (Linux, tested; macOS, untested) implementation of [`crate::os`].

use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::OnceLock;

/// Reserves `len` bytes of address space with no access rights, preferably at
/// `hint`. The hint is only a hint (no `MAP_FIXED`): an existing mapping there
/// is never replaced, the kernel picks another address instead.
pub(crate) fn reserve(hint: usize, len: usize) -> io::Result<*mut u8> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = libc::MAP_PRIVATE | libc::MAP_ANON;
    // SAFETY: an anonymous PROT_NONE mapping without MAP_FIXED cannot alias or
    // replace any existing mapping; the kernel chooses a free range.
    let ptr = unsafe { libc::mmap(hint as *mut libc::c_void, len, libc::PROT_NONE, flags, -1, 0) };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast())
}

/// Returns a reservation made by [`reserve`] to the system.
///
/// # Safety
///
/// `ptr..ptr+len` must be exactly a live reservation from [`reserve`], and
/// nothing may use memory in it afterwards.
pub(crate) unsafe fn release(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is our own mapping and unused.
    if unsafe { libc::munmap(ptr.cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Commits pages of a reservation as read+write.
///
/// # Safety
///
/// The range must lie inside a live reservation and be page-aligned, and no
/// code may be executing from it.
pub(crate) unsafe fn make_read_write(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: forwarded from the caller.
    unsafe { region::protect(ptr, len, region::Protection::READ_WRITE) }.map_err(io::Error::other)
}

/// Makes committed pages read+execute (and no longer writable).
///
/// # Safety
///
/// The range must lie inside a live reservation, be page-aligned and hold the
/// finished code.
pub(crate) unsafe fn make_read_execute(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: forwarded from the caller.
    unsafe { region::protect(ptr, len, region::Protection::READ_EXECUTE) }.map_err(io::Error::other)
}

/// How [`process_barrier`] made every thread execute a barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Barrier {
    /// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`: an interrupt to every
    /// CPU running a thread of this process.
    PrivateExpedited,
    /// `membarrier(MEMBARRIER_CMD_GLOBAL)`: waits until every CPU has passed
    /// through the scheduler (milliseconds).
    Global,
}

/// Makes every thread of the process execute a full memory barrier before
/// this returns, so stores made before the call are visible to whatever any
/// thread does after it (needed on weakly ordered CPUs before a stub is
/// re-pointed at code that reads freshly written globals). `fallback`
/// skips the expedited barrier, to test the fallback.
///
/// Linux: `membarrier(PRIVATE_EXPEDITED)`, else `membarrier(GLOBAL)`. There
/// is no other mechanism: changing page protections does not interrupt
/// other CPUs where the hardware broadcasts TLB invalidations (AArch64).
///
/// # Errors
///
/// When neither is available (an old kernel, membarrier disabled, or a
/// system other than Linux).
pub(crate) fn process_barrier(fallback: bool) -> io::Result<Barrier> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let commands = membarrier_commands();
        let choice = choose_barrier(commands, !fallback && private_expedited_registered())?;
        let command = match choice {
            Barrier::PrivateExpedited => MEMBARRIER_CMD_PRIVATE_EXPEDITED,
            Barrier::Global => MEMBARRIER_CMD_GLOBAL,
        };
        // SAFETY: membarrier takes no pointers; the command is supported
        // (and registered, for the private one).
        if unsafe { libc::syscall(libc::SYS_membarrier, command, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(choice)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = fallback;
        Err(io::Error::new(io::ErrorKind::Unsupported, "no process-wide memory barrier on this system"))
    }
}

/// Which barrier to use, from the commands the kernel supports (the
/// bit set `MEMBARRIER_CMD_QUERY` returns; negative on failure).
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
fn choose_barrier(commands: libc::c_long, expedited: bool) -> io::Result<Barrier> {
    if expedited {
        return Ok(Barrier::PrivateExpedited);
    }
    if commands >= 0 && commands & MEMBARRIER_CMD_GLOBAL != 0 {
        return Ok(Barrier::Global);
    }
    Err(io::Error::new(io::ErrorKind::Unsupported, format!("membarrier offers no usable command (query: {commands})")))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
#[cfg(any(target_os = "linux", target_os = "android"))]
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
#[cfg(any(target_os = "linux", target_os = "android"))]
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// The supported membarrier commands (negative if there is no membarrier).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn membarrier_commands() -> libc::c_long {
    static COMMANDS: OnceLock<libc::c_long> = OnceLock::new();
    *COMMANDS.get_or_init(|| {
        // SAFETY: the query takes no pointers and changes nothing.
        unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) }
    })
}

/// Registers this process for the expedited barrier, once; whether that
/// worked.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn private_expedited_registered() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let commands = membarrier_commands();
        if commands < 0 || commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED == 0 {
            tracing::warn!("membarrier(PRIVATE_EXPEDITED) is unavailable; commits use the slower membarrier(GLOBAL)");
            return false;
        }
        // SAFETY: registration takes no pointers and only affects this process.
        let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) };
        if rc != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "cannot register for membarrier(PRIVATE_EXPEDITED); commits use the slower membarrier(GLOBAL)");
        }
        rc == 0
    })
}

/// Creates `path` as a directory only the current user can use (mode 0700).
/// Fails if anything already exists at `path`, including a symlink.
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(0o700).create(path)?;
    // The umask can only remove bits; set the mode exactly anyway.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Creates a new file for writing. Fails if anything exists at `path`; a
/// planted symlink is never followed.
pub(crate) fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// A number that changes when a file is replaced rather than rewritten.
pub(crate) fn file_id(meta: &Metadata) -> u64 {
    meta.ino() ^ meta.dev().rotate_left(32)
}

/// Opens a dynamic library with every symbol resolved now (so a missing
/// symbol is a load error inside the transaction, not a crash later) and
/// without adding its symbols to the global namespace.
pub(crate) fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading runs the library's initialisers. The runtime only gets
    // here after checking the file's format and its hcr descriptor; running
    // the module's own code is the point of loading it.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(Into::into)
}

/// The return addresses on the calling thread's stack, each with the path of
/// the shared object (as it was loaded) that contains it.
pub(crate) fn stack_objects() -> Vec<(usize, std::path::PathBuf)> {
    use std::ffi::{CStr, c_int, c_void};
    use std::os::unix::ffi::OsStrExt;

    // The unwinder's interface (libgcc_s or libunwind, which std links).
    type TraceFn = extern "C" fn(ctx: *mut c_void, arg: *mut c_void) -> c_int;
    unsafe extern "C" {
        fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> c_int;
        fn _Unwind_GetIP(ctx: *mut c_void) -> usize;
    }
    const NO_REASON: c_int = 0;
    const NORMAL_STOP: c_int = 4;

    extern "C" fn record(ctx: *mut c_void, arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the `Vec` passed below, alive for the walk.
        let ips = unsafe { &mut *arg.cast::<Vec<usize>>() };
        // SAFETY: `ctx` is the unwinder's context for the current frame.
        ips.push(unsafe { _Unwind_GetIP(ctx) });
        if ips.len() >= 4096 { NORMAL_STOP } else { NO_REASON }
    }

    let mut ips: Vec<usize> = Vec::new();
    // SAFETY: `record` only touches the vector it is given and the context.
    unsafe { _Unwind_Backtrace(record, (&mut ips as *mut Vec<usize>).cast()) };
    ips.into_iter()
        .filter(|&ip| ip > 1)
        .filter_map(|ip| {
            // SAFETY: `Dl_info` is plain data; zeroes are a valid start.
            let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
            // The return address can point just past the call; look up the
            // byte before it, which is inside the calling function.
            // SAFETY: dladdr only inspects the loader's tables.
            let found = unsafe { libc::dladdr((ip - 1) as *const c_void, &mut info) };
            if found == 0 || info.dli_fname.is_null() {
                return None;
            }
            // SAFETY: dladdr returned a NUL-terminated path owned by the loader.
            let name = unsafe { CStr::from_ptr(info.dli_fname) };
            Some((ip, std::path::PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()))))
        })
        .collect()
}

#[cfg(test)]
mod barrier_tests {
    use super::*;

    #[test]
    fn the_barrier_is_chosen_from_what_the_kernel_offers() {
        assert_eq!(choose_barrier(0x3ff, true).unwrap(), Barrier::PrivateExpedited);
        assert_eq!(choose_barrier(0x3ff, false).unwrap(), Barrier::Global);
        assert_eq!(choose_barrier(MEMBARRIER_CMD_GLOBAL, false).unwrap(), Barrier::Global);
        // Nothing usable: an error, never a silent no-op.
        let err = choose_barrier(0x18, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert!(choose_barrier(-38, false).is_err(), "no membarrier at all (ENOSYS)");
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn both_barriers_run_here() {
        assert_eq!(process_barrier(true).unwrap(), Barrier::Global);
        assert!(process_barrier(false).is_ok());
    }
}
