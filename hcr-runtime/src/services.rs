//! The [`Services`] table the runtime hands to modules (ABI 1.2): the host's
//! allocator, and a place to report panics. It lives as long as the runtime.

use std::alloc::Layout;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use hcr_abi::{PanicOrigin, PanicReport, Services, Str};

use crate::panics::{MAX_MESSAGE, MAX_NAME, PanicEvent, PanicKind, PanicLog, truncate};

/// A runtime's services table and what its entries need.
pub(crate) struct HostServices {
    table: Services,
    pub(crate) panics: PanicLog,
}

impl HostServices {
    /// A table whose `ctx` is the new value itself.
    pub(crate) fn new(report_file: Option<PathBuf>) -> Arc<HostServices> {
        Arc::new_cyclic(|me: &Weak<HostServices>| HostServices {
            table: Services {
                size: size_of::<Services>() as u32,
                reserved: 0,
                ctx: me.as_ptr().cast_mut().cast(),
                alloc,
                dealloc,
                realloc,
                alloc_zeroed,
                report_panic,
            },
            panics: PanicLog::new(report_file),
        })
    }

    /// The table, valid while `self` is.
    pub(crate) fn table(&self) -> *const Services {
        &self.table
    }
}

/// The layout of a block a module asks for: `None` for a size of zero (no
/// `GlobalAlloc` call has one) or an alignment that is not a power of two.
fn layout(size: usize, align: usize) -> Option<Layout> {
    Layout::from_size_align(size, align).ok().filter(|l| l.size() != 0)
}

// The allocator entries call the host's global allocator, which must not
// unwind (a `GlobalAlloc` contract); were it to, `extern "C"` aborts rather
// than unwind into the module.

unsafe extern "C" fn alloc(_ctx: *mut c_void, size: usize, align: usize) -> *mut u8 {
    match layout(size, align) {
        // SAFETY: a valid layout of non-zero size.
        Some(layout) => unsafe { std::alloc::alloc(layout) },
        None => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn alloc_zeroed(_ctx: *mut c_void, size: usize, align: usize) -> *mut u8 {
    match layout(size, align) {
        // SAFETY: a valid layout of non-zero size.
        Some(layout) => unsafe { std::alloc::alloc_zeroed(layout) },
        None => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn dealloc(_ctx: *mut c_void, ptr: *mut u8, size: usize, align: usize) {
    if let (false, Some(layout)) = (ptr.is_null(), layout(size, align)) {
        // SAFETY: by the entry's contract (`GlobalAlloc::dealloc`), `ptr` was
        // allocated by this allocator (these entries, or the host itself:
        // both are the host's global allocator) with this layout.
        unsafe { std::alloc::dealloc(ptr, layout) }
    }
}

unsafe extern "C" fn realloc(_ctx: *mut c_void, ptr: *mut u8, size: usize, align: usize, new_size: usize) -> *mut u8 {
    match (ptr.is_null(), layout(size, align), layout(new_size, align)) {
        // SAFETY: as in `dealloc`; the new layout is valid and non-zero.
        (false, Some(layout), Some(_)) => unsafe { std::alloc::realloc(ptr, layout, new_size) },
        _ => std::ptr::null_mut(),
    }
}

/// Copies a string of a report, cut at `max` bytes.
///
/// # Safety
///
/// `s` must point at `len` readable bytes (or be empty).
unsafe fn copy(s: Str, max: usize) -> String {
    if s.len == 0 || s.ptr.is_null() {
        return String::new();
    }
    // SAFETY: by the caller's contract; at most `max + 4` bytes are read, so
    // an absurd length costs nothing (the cut happens after).
    let bytes = unsafe { std::slice::from_raw_parts(s.ptr, s.len.min(max + 4)) };
    truncate(String::from_utf8_lossy(bytes).into_owned(), max)
}

unsafe extern "C" fn report_panic(ctx: *mut c_void, report: *const PanicReport) {
    let recorded = catch_unwind(AssertUnwindSafe(|| {
        if ctx.is_null() || report.is_null() || !report.is_aligned() {
            return;
        }
        // SAFETY: `ctx` is the `HostServices` whose table the module was
        // given, alive as long as the runtime, which outlives its modules.
        let services = unsafe { &*ctx.cast::<HostServices>() };
        // SAFETY: every version of the report starts with its size.
        let size = unsafe { report.cast::<u32>().read() } as usize;
        if size < size_of::<PanicReport>() {
            tracing::warn!(size, "a module reported a panic in a report too short to read");
            return;
        }
        // SAFETY: the report has at least our layout's bytes (checked above),
        // valid for the call by the entry's contract.
        let r = unsafe { report.read() };
        let kind = match r.origin {
            PanicOrigin::PROC => PanicKind::Proc,
            PanicOrigin::HOOK => PanicKind::Hook,
            PanicOrigin::MIGRATION => PanicKind::Migration,
            PanicOrigin::INIT => PanicKind::Init,
            _ => PanicKind::Uncaught,
        };
        // SAFETY: the strings are valid for the call (entry contract).
        let event = unsafe {
            PanicEvent {
                kind,
                module: copy(r.module, MAX_NAME),
                name: copy(r.proc_, MAX_NAME),
                message: copy(r.message, MAX_MESSAGE),
                file: copy(r.file, MAX_NAME),
                line: r.line,
                column: r.column,
            }
        };
        services.panics.record(event, std::thread::current().id());
    }));
    if recorded.is_err() {
        tracing::error!("recording a module's panic report failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_entries_are_the_hosts_and_refuse_bad_layouts() {
        let services = HostServices::new(None);
        // SAFETY: the table was just made and lives in `services`.
        let t = unsafe { &*services.table() };
        assert!(t.has_allocator() && t.has_report_panic());
        // SAFETY: valid layouts; every block goes back with its layout.
        unsafe {
            let p = (t.alloc)(t.ctx, 24, 8);
            assert!(!p.is_null() && (p as usize).is_multiple_of(8));
            p.write_bytes(7, 24);
            let p = (t.realloc)(t.ctx, p, 24, 8, 4096);
            assert_eq!(*p.add(23), 7);
            (t.dealloc)(t.ctx, p, 4096, 8);
            let z = (t.alloc_zeroed)(t.ctx, 64, 64);
            assert!((z as usize).is_multiple_of(64) && std::slice::from_raw_parts(z, 64).iter().all(|&b| b == 0));
            // A block of the host, freed through the entry.
            let host = std::alloc::alloc(Layout::from_size_align(32, 16).unwrap());
            (t.dealloc)(t.ctx, host, 32, 16);
            (t.dealloc)(t.ctx, z, 64, 64);
            assert!((t.alloc)(t.ctx, 0, 8).is_null());
            assert!((t.alloc)(t.ctx, 8, 3).is_null());
            assert!((t.alloc)(t.ctx, usize::MAX - 8, 8).is_null());
            assert!((t.realloc)(t.ctx, std::ptr::null_mut(), 8, 8, 16).is_null());
            (t.dealloc)(t.ctx, std::ptr::null_mut(), 8, 8);
        }
    }

    #[test]
    fn reports_are_copied_with_limits() {
        let services = HostServices::new(None);
        // SAFETY: as above.
        let t = unsafe { &*services.table() };
        let long = "é".repeat(MAX_MESSAGE);
        let report = PanicReport {
            size: size_of::<PanicReport>() as u32,
            origin: PanicOrigin::PROC,
            line: 3,
            column: 9,
            module: Str::new("game"),
            proc_: Str::new("update"),
            message: Str::new(&long),
            file: Str { ptr: b"src/\xfflib.rs".as_ptr(), len: 11 },
        };
        // SAFETY: a valid report and this runtime's context.
        unsafe { (t.report_panic)(t.ctx, &report) };
        let short = PanicReport { size: 8, ..report };
        // SAFETY: too short: refused before its fields are read.
        unsafe { (t.report_panic)(t.ctx, &short) };
        // SAFETY: null is refused.
        unsafe { (t.report_panic)(t.ctx, std::ptr::null()) };
        let (events, _) = services.panics.take();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            (e.kind, e.module.as_str(), e.name.as_str(), e.line, e.column),
            (PanicKind::Proc, "game", "update", 3, 9)
        );
        assert_eq!(e.file, "src/\u{fffd}lib.rs");
        assert!(e.message.len() <= MAX_MESSAGE + 3 && e.message.ends_with('…'), "{}", e.message.len());
    }
}
