//! Operating-system services: address-space reservation, page protection,
//! process-wide memory barriers, private files and library loading.
//!
//! One file per OS behind a private `imp` selection. Only Linux is tested;
//! the Windows file is written against the same crates and is untested.

#[cfg(unix)]
#[path = "unix.rs"]
mod imp;

#[cfg(windows)]
#[path = "windows.rs"]
mod imp;

#[cfg(not(any(unix, windows)))]
compile_error!("hcr-runtime supports Unix-like systems and Windows");

pub(crate) use imp::{
    claim_abandoned_dir, copy_bounded, create_exclusive, file_id, make_private, make_read_execute, make_read_write,
    open_append_nonblocking, open_library, open_nonblocking, process_barrier, read_exact_at, release, reserve,
    special_kind, stack_objects,
};

/// The size of a virtual-memory page.
pub(crate) fn page_size() -> usize {
    region::page::size()
}
