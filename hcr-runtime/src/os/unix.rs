//! Unix (Linux, tested; macOS, untested) implementation of [`crate::os`].

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// What `meta` describes when it is not a regular file: `FIFO`, `socket`,
/// `character device`, `block device`, `directory`, `symbolic link` or
/// `special file`. `None` for a regular file.
pub(crate) fn special_kind(meta: &Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    Some(if kind.is_file() {
        return None;
    } else if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    })
}

/// Opens `path` for reading in a way that cannot block: with `O_NONBLOCK`,
/// which makes opening a FIFO return at once (a regular file ignores it),
/// and without making a terminal the controlling one.
pub(crate) fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC).open(path)
}

/// Opens (creating it, mode `0644` before the umask) `path` for appending,
/// in a way that cannot block: a FIFO without a reader fails at once, one
/// with a reader opens but is then refused by the caller's type check.
pub(crate) fn open_append_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
}

/// Fills `buf` from `offset` of `file`.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

/// Makes `path` a directory only the current user can use (mode `0700`,
/// whatever the umask did).
pub(crate) fn make_private(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Copies the regular file `input` into the new, empty file `output`, at
/// most `limit` bytes. `Ok(None)` when `input` holds more than that (also
/// when it grew past it during the copy).
///
/// On Linux the data extents of `input` are found with `SEEK_DATA` and
/// `SEEK_HOLE` and copied with `copy_file_range` (a reflink or an in-kernel
/// copy), so holes stay holes: a sparse file is never written out in full.
/// Elsewhere, or where the file system refuses those calls, it is read and
/// written in chunks.
pub(crate) fn copy_bounded(input: &File, output: &File, limit: u64) -> io::Result<Option<u64>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return linux::copy_sparse(input, output, limit);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    return copy_chunks(input, output, 0, u64::MAX, limit).map(|end| (end <= limit).then_some(end));
}

/// Copies `input[from..to]` (or to its end) to the same offsets of
/// `output`, stopping once `limit + 1` bytes would be exceeded. Returns the
/// offset reached.
fn copy_chunks(input: &File, output: &File, from: u64, to: u64, limit: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = from;
    while at < to && at <= limit {
        let want = (to - at).min(limit + 1 - at).min(buf.len() as u64) as usize;
        let n = match input.read_at(&mut buf[..want], at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        output.write_all_at(&buf[..n], at)?;
        at += n as u64;
    }
    Ok(at)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    /// Where the next data extent at or after `from` starts, and where it
    /// ends: `None` past the last one. Without `SEEK_DATA` support, all of
    /// the rest is data.
    fn extent(input: &File, from: u64) -> io::Result<Option<(u64, u64)>> {
        let fd = input.as_raw_fd();
        let Ok(from_off) = libc::off_t::try_from(from) else { return Ok(None) };
        // SAFETY: lseek only moves this descriptor's file offset, which
        // nothing else uses (all reads and copies use explicit offsets).
        let data = unsafe { libc::lseek(fd, from_off, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENXIO) => Ok(None),
                Some(libc::EINVAL | libc::EOPNOTSUPP) => Ok(Some((from, u64::MAX))),
                _ => Err(e),
            };
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { u64::MAX } else { hole as u64 };
        Ok(Some((data as u64, end)))
    }

    pub(super) fn copy_sparse(input: &File, output: &File, limit: u64) -> io::Result<Option<u64>> {
        let mut pos = 0u64;
        let mut in_kernel = true;
        while let Some((start, end)) = extent(input, pos)? {
            if start > limit {
                return Ok(None);
            }
            let mut at = start;
            while at < end {
                if at > limit {
                    return Ok(None);
                }
                let want = (end - at).min(limit + 1 - at).min(1 << 30) as usize;
                let copied = if in_kernel { copy_range(input, output, at, want)? } else { None };
                let n = match copied {
                    Some(n) => n,
                    // Not supported here: copy through user space from now on.
                    None => {
                        in_kernel = false;
                        let reached = super::copy_chunks(input, output, at, at + want as u64, limit)?;
                        (reached - at) as usize
                    }
                };
                if n == 0 {
                    // End of file: it is shorter than the extent said.
                    break;
                }
                at += n as u64;
            }
            if end == u64::MAX || at < end {
                break;
            }
            pos = end;
        }
        // The size includes a trailing hole, and any growth during the copy.
        let len = input.metadata()?.len();
        if len > limit {
            return Ok(None);
        }
        output.set_len(len)?;
        Ok(Some(len))
    }

    /// One `copy_file_range` call at the same offset in both files; `None`
    /// when the file systems do not support it.
    fn copy_range(input: &File, output: &File, at: u64, len: usize) -> io::Result<Option<usize>> {
        loop {
            let mut off_in = at as libc::loff_t;
            let mut off_out = at as libc::loff_t;
            // SAFETY: both descriptors are open; the offsets are local
            // variables the kernel updates; no user memory is passed.
            let n = unsafe {
                libc::copy_file_range(input.as_raw_fd(), &mut off_in, output.as_raw_fd(), &mut off_out, len, 0)
            };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM) => return Ok(None),
                _ => return Err(e),
            }
        }
    }
}

/// If `path` is a private module directory (mode `0700`, owned by this user,
/// not a symbolic link) whose lock file `lock_name` nobody holds, returns
/// that lock file, locked: its owner is gone (the kernel releases a `flock`
/// when the process that held it dies). `None` when it is not such a
/// directory, has no lock file, or its owner is alive.
pub(crate) fn claim_abandoned_dir(path: &Path, lock_name: &str) -> io::Result<Option<File>> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_dir() || meta.uid() != me || meta.mode() & 0o777 != 0o700 {
        return Ok(None);
    }
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let opened = dir.metadata()?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Ok(None);
    }
    let name = std::ffi::CString::new(lock_name).map_err(io::Error::other)?;
    // SAFETY: `dir` is an open directory and `name` a NUL-terminated string;
    // the returned descriptor, if any, is owned by the `File` made below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::NotFound { Ok(None) } else { Err(e) };
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let lock = unsafe { File::from_raw_fd(fd) };
    let lock_meta = lock.metadata()?;
    if !lock_meta.is_file() || lock_meta.uid() != me {
        return Ok(None);
    }
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}
