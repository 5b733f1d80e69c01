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

/// Makes every thread of the process execute a full memory barrier before
/// this returns, so stores made before the call are visible to whatever any
/// thread does after it (needed on weakly ordered CPUs before a stub is
/// re-pointed at code that reads freshly written globals).
///
/// Linux: `membarrier(PRIVATE_EXPEDITED)`. Where that is unavailable, and on
/// other Unix systems, the page-protection round trip that forces a TLB
/// shoot-down on every CPU running the process, which implies a barrier there.
pub(crate) fn process_barrier() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if membarrier_ready() {
        // SAFETY: membarrier takes no pointers; the command was registered.
        let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
        if rc == 0 {
            return;
        }
    }
    protection_round_trip();
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
#[cfg(any(target_os = "linux", target_os = "android"))]
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

#[cfg(any(target_os = "linux", target_os = "android"))]
fn membarrier_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        // SAFETY: registration takes no pointers and only affects this process.
        let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) };
        if rc != 0 {
            tracing::debug!("membarrier unavailable, using the page-protection barrier");
        }
        rc == 0
    })
}

fn protection_round_trip() {
    struct Page(usize);
    static PAGE: OnceLock<Option<Page>> = OnceLock::new();
    let page = PAGE.get_or_init(|| {
        let len = super::page_size();
        reserve(0, len).ok().map(|p| Page(p as usize))
    });
    let Some(Page(addr)) = page else { return };
    let len = super::page_size();
    let ptr = *addr as *mut u8;
    // SAFETY: the page is our own private reservation, never handed out; it is
    // made writable, touched so that it is resident in every TLB that matters,
    // then made inaccessible again, which makes the kernel interrupt every CPU
    // running this process.
    unsafe {
        if make_read_write(ptr, len).is_ok() {
            ptr.write_volatile(1);
            let _ = region::protect(ptr, len, region::Protection::NONE);
        }
    }
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
