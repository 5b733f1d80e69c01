//! Windows implementation of [`crate::os`]. Written against the same crates as
//! the Unix one and not tested: no Windows machine is available to the
//! project yet.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::path::Path;

use windows_sys::Win32::System::Memory::{
    MEM_COMMIT, MEM_RELEASE, MEM_RESERVE, PAGE_NOACCESS, PAGE_READWRITE, VirtualAlloc, VirtualFree,
};
use windows_sys::Win32::System::Threading::FlushProcessWriteBuffers;

/// Reserves `len` bytes of address space, preferably at `hint`.
pub(crate) fn reserve(hint: usize, len: usize) -> io::Result<*mut u8> {
    // SAFETY: MEM_RESERVE only claims free address space; it never replaces an
    // existing allocation (it fails instead, and we retry anywhere).
    let mut ptr = unsafe { VirtualAlloc(hint as *const _, len, MEM_RESERVE, PAGE_NOACCESS) };
    if ptr.is_null() && hint != 0 {
        // SAFETY: as above, with the system choosing the address.
        ptr = unsafe { VirtualAlloc(std::ptr::null(), len, MEM_RESERVE, PAGE_NOACCESS) };
    }
    if ptr.is_null() {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast())
}

/// Returns a reservation made by [`reserve`] to the system.
///
/// # Safety
///
/// `ptr` must be the base of a live reservation from [`reserve`], and nothing
/// may use memory in it afterwards.
pub(crate) unsafe fn release(ptr: *mut u8, _len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the reservation is ours and unused.
    if unsafe { VirtualFree(ptr.cast(), 0, MEM_RELEASE) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Commits pages of a reservation as read+write.
///
/// # Safety
///
/// The range must lie inside a live reservation and be page-aligned.
pub(crate) unsafe fn make_read_write(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: committing pages of our own reservation.
    if unsafe { VirtualAlloc(ptr.cast(), len, MEM_COMMIT, PAGE_READWRITE) }.is_null() {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes committed pages read+execute (and no longer writable).
///
/// # Safety
///
/// The range must lie inside a live reservation, be committed and hold the
/// finished code.
pub(crate) unsafe fn make_read_execute(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: forwarded from the caller.
    unsafe { region::protect(ptr, len, region::Protection::READ_EXECUTE) }.map_err(io::Error::other)
}

/// Makes every thread of the process execute a full memory barrier.
pub(crate) fn process_barrier() {
    // SAFETY: takes no arguments.
    unsafe { FlushProcessWriteBuffers() }
}

/// Nothing to do: the private directory lives in the user's temporary
/// directory, whose access list already limits it to the user.
pub(crate) fn make_private(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// What `meta` describes when it is not a regular file.
pub(crate) fn special_kind(meta: &Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("directory")
    } else if kind.is_symlink() {
        Some("symbolic link")
    } else {
        Some("special file")
    }
}

/// Opens `path` for reading. (Named pipes are refused by the caller's type
/// check before this is called.)
pub(crate) fn open_nonblocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Opens (creating it) `path` for appending.
pub(crate) fn open_append_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

/// Fills `buf` from `offset` of `file`.
pub(crate) fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies `input` into the new, empty file `output`, at most `limit` bytes;
/// `Ok(None)` when `input` holds more.
pub(crate) fn copy_bounded(input: &File, output: &File, limit: u64) -> io::Result<Option<u64>> {
    use std::io::Read;
    let copied = io::copy(&mut input.take(limit + 1), &mut &*output)?;
    Ok((copied <= limit).then_some(copied))
}

/// Private directories of processes that are gone are not found on Windows
/// (a process's files cannot be deleted while it runs anyway): never claims
/// one.
pub(crate) fn claim_abandoned_dir(_path: &Path, _lock_name: &str) -> io::Result<Option<File>> {
    Ok(None)
}

/// Creates a new file for writing; fails if anything exists at `path`.
pub(crate) fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Windows has no inode in `std`'s metadata; the other stamp fields and the
/// content hash decide.
pub(crate) fn file_id(_meta: &Metadata) -> u64 {
    0
}

/// Opens a dynamic library.
pub(crate) fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    // SAFETY: loading runs the library's initialisers; see the Unix version.
    unsafe { libloading::Library::new(path) }
}

/// The return addresses on the calling thread's stack, each with the path of
/// the module that contains it.
pub(crate) fn stack_objects() -> Vec<(usize, std::path::PathBuf)> {
    use std::os::windows::ffi::OsStringExt;
    use windows_sys::Win32::Foundation::HMODULE;
    use windows_sys::Win32::System::Diagnostics::Debug::RtlCaptureStackBackTrace;
    use windows_sys::Win32::System::LibraryLoader::{
        GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT, GetModuleFileNameW,
        GetModuleHandleExW,
    };

    let mut frames = vec![std::ptr::null_mut(); 1024];
    // SAFETY: the buffer has room for the frame count passed.
    let count = unsafe { RtlCaptureStackBackTrace(0, frames.len() as u32, frames.as_mut_ptr(), std::ptr::null_mut()) };
    frames.truncate(count as usize);
    frames
        .into_iter()
        .filter_map(|ip| {
            let mut module: HMODULE = std::ptr::null_mut();
            let flags = GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT;
            // SAFETY: looks up the module containing `ip` without taking a reference.
            if unsafe { GetModuleHandleExW(flags, ip.cast(), &mut module) } == 0 {
                return None;
            }
            let mut name = vec![0u16; 1024];
            // SAFETY: the buffer has room for the length passed.
            let len = unsafe { GetModuleFileNameW(module, name.as_mut_ptr(), name.len() as u32) } as usize;
            name.truncate(len);
            Some((ip as usize, std::path::PathBuf::from(std::ffi::OsString::from_wide(&name))))
        })
        .collect()
}
