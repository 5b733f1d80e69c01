//! Unix: walks the current thread's stack with the system unwinder
//! (`_Unwind_Backtrace`, as unwinding itself does) and maps each return
//! address to the start of its function with `_Unwind_FindEnclosingFunction`.
//! Nothing is symbolised, allocated or cached.

use core::ffi::{c_int, c_void};

#[repr(C)]
struct UnwindContext {
    _opaque: [u8; 0],
}

/// `_URC_NO_REASON`: go on walking.
const CONTINUE: c_int = 0;
/// `_URC_NORMAL_STOP`: stop walking.
const STOP: c_int = 4;

type Trace = extern "C" fn(ctx: *mut UnwindContext, data: *mut c_void) -> c_int;

unsafe extern "C" {
    fn _Unwind_Backtrace(trace: Trace, data: *mut c_void) -> c_int;
    fn _Unwind_GetIP(ctx: *mut UnwindContext) -> usize;
    fn _Unwind_FindEnclosingFunction(pc: *mut c_void) -> *mut c_void;
}

struct Search<'a> {
    is_wanted: &'a dyn Fn(usize) -> bool,
    found: bool,
}

extern "C" fn visit(ctx: *mut UnwindContext, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `Search` that `frame_in` passed, alive for the
    // whole walk; `ctx` is the unwinder's context for this frame.
    let search = unsafe { &mut *data.cast::<Search<'_>>() };
    // SAFETY: as above.
    let ip = unsafe { _Unwind_GetIP(ctx) };
    if ip == 0 {
        return STOP;
    }
    // SAFETY: the unwinder looks `ip` up in the loaded objects' unwind
    // tables; an address outside them gives null.
    let start = unsafe { _Unwind_FindEnclosingFunction(ip as *mut c_void) } as usize;
    if start != 0 && (search.is_wanted)(start) {
        search.found = true;
        return STOP;
    }
    CONTINUE
}

/// Whether a frame of the current thread's stack is in a function whose
/// start address `is_wanted` accepts.
pub(super) fn frame_in(is_wanted: &dyn Fn(usize) -> bool) -> Option<bool> {
    let mut search = Search { is_wanted, found: false };
    // SAFETY: `visit` matches the callback type and only touches `search`,
    // which outlives the call.
    unsafe { _Unwind_Backtrace(visit, core::ptr::from_mut(&mut search).cast()) };
    Some(search.found)
}
