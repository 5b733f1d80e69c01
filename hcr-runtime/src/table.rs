//! The stub table: executable jump stubs with their targets in separate data
//! slots. The page layout is described in [`crate::encode`].
//!
//! Invariants this module maintains (and every `unsafe` block relies on):
//!
//! * The reservation `base..base+len` belongs to the table until it is
//!   dropped. Blocks `0..committed_blocks` have their code page committed,
//!   filled with stubs and made read+execute, and their slot page committed
//!   read+write. A block's pad page is committed, filled and made
//!   read+execute before any slot in the block points into it.
//! * No page is ever writable and executable at the same time; code bytes are
//!   never written again after their page became executable.
//! * Slots are 8-byte aligned and only ever written with one atomic store.
//! * A slot holds `0` only while its stub's address has not been handed out;
//!   once handed out it holds a function address or the stub's pad.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::encode::{PAD_HEADER, STUB_SIZE};
use crate::error::{Error, Result};
use crate::{arch, os};

/// Where everything in the table is; pure arithmetic.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    base: usize,
    page: usize,
    per_block: usize,
    blocks: usize,
}

impl Geometry {
    fn block_bytes(&self) -> usize {
        3 * self.page
    }

    fn len(&self) -> usize {
        self.blocks * self.block_bytes()
    }

    fn split(&self, index: u32) -> (usize, usize) {
        let i = index as usize;
        (i / self.per_block, i % self.per_block)
    }

    fn code_page(&self, block: usize) -> usize {
        self.base + block * self.block_bytes()
    }

    fn pad_page(&self, block: usize) -> usize {
        self.code_page(block) + 2 * self.page
    }

    fn stub(&self, index: u32) -> usize {
        let (block, j) = self.split(index);
        self.code_page(block) + j * STUB_SIZE
    }

    fn slot(&self, index: u32) -> usize {
        self.stub(index) + self.page
    }

    fn pad(&self, index: u32) -> usize {
        let (block, j) = self.split(index);
        self.pad_page(block) + PAD_HEADER + j * arch::PAD_STRIDE
    }

    /// The stub whose pad leaves `ret` as its return address.
    fn index_from_pad_return(&self, ret: usize) -> Option<u32> {
        let offset = ret.checked_sub(self.base)?;
        if offset >= self.len() {
            return None;
        }
        let block = offset / self.block_bytes();
        let within = (offset % self.block_bytes()).checked_sub(2 * self.page + PAD_HEADER + arch::CALL_LEN)?;
        if !within.is_multiple_of(arch::PAD_STRIDE) || within / arch::PAD_STRIDE >= self.per_block {
            return None;
        }
        u32::try_from(block * self.per_block + within / arch::PAD_STRIDE).ok()
    }
}

/// What the unbound-call handler needs: the geometry and the names of stubs
/// that currently point at their pads. Shared with the handler through a raw
/// pointer baked into every pad page.
pub(crate) struct Unbound {
    geometry: Geometry,
    labels: Mutex<HashMap<u32, Box<str>>>,
}

impl Unbound {
    fn message(&self, ret: usize) -> String {
        let Some(index) = self.geometry.index_from_pad_return(ret) else {
            return format!("hcr: call to unbound function <unknown> (return address {ret:#x})\n");
        };
        // Never block forever here: the process is about to abort anyway.
        let label = self.labels.try_lock_for(Duration::from_millis(500)).and_then(|labels| labels.get(&index).cloned());
        match label {
            Some(label) => format!("hcr: call to unbound function {label}\n"),
            None => format!("hcr: call to unbound function <stub #{index}>\n"),
        }
    }
}

/// Where every unbound stub ends up (through its pad and the trampoline):
/// report the function and abort.
///
/// # Safety
///
/// Only called by pad trampolines, with the `Unbound` pointer of the table
/// that owns the pad; that table is alive while its pages are mapped.
unsafe extern "C" fn on_unbound_call(ctx: *const Unbound, ret: usize) -> ! {
    // SAFETY: see the function's contract: the pointer was baked into a pad
    // page of a live table, and the table owns the `Arc` it points into.
    let unbound = unsafe { &*ctx };
    let message = unbound.message(ret);
    let _ = std::io::stderr().write_all(message.as_bytes());
    std::process::abort()
}

/// The fallback for a stub whose pad page could not be committed.
extern "C" fn on_unbound_call_unnamed() -> ! {
    let _ = std::io::stderr().write_all(b"hcr: call to unbound function <unnamed: pad page unavailable>\n");
    std::process::abort()
}

/// The state of a stub's slot, for inspection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Not handed out yet; holds no target.
    Empty,
    /// Points at its pad.
    Unbound,
    /// Points at a function.
    Function(usize),
}

/// The jump table. See the module documentation for its invariants.
pub(crate) struct StubTable {
    geometry: Geometry,
    capacity: u32,
    next: u32,
    committed_blocks: usize,
    pad_pages: Vec<bool>,
    unbound: Arc<Unbound>,
}

impl StubTable {
    /// Reserves room for `capacity` stubs, at `hint` if that range is free.
    pub(crate) fn new(hint: usize, capacity: usize) -> Result<StubTable> {
        let page = os::page_size();
        if !hint.is_multiple_of(page) {
            return Err(Error::InvalidConfig {
                name: "stub_base",
                value: format!("{hint:#x}"),
                reason: "not a multiple of the page size",
            });
        }
        let capacity = u32::try_from(capacity).ok().filter(|&c| c > 0).ok_or_else(|| Error::InvalidConfig {
            name: "stub_capacity",
            value: capacity.to_string(),
            reason: "must be between 1 and 2^32 - 1",
        })?;
        let per_block = page / STUB_SIZE;
        let blocks = (capacity as usize).div_ceil(per_block);
        let len = blocks * 3 * page;
        let ptr = os::reserve(hint, len).map_err(|source| Error::Reserve { size: len, source })?;
        let base = ptr as usize;
        if hint != 0 && base != hint {
            tracing::warn!(
                hint = format_args!("{hint:#x}"),
                base = format_args!("{base:#x}"),
                "stub table hint is taken; reserved the table elsewhere"
            );
        } else {
            tracing::debug!(base = format_args!("{base:#x}"), len, capacity, "stub table reserved");
        }
        let geometry = Geometry { base, page, per_block, blocks };
        Ok(StubTable {
            geometry,
            capacity,
            next: 0,
            committed_blocks: 0,
            pad_pages: vec![false; blocks],
            unbound: Arc::new(Unbound { geometry, labels: Mutex::new(HashMap::new()) }),
        })
    }

    /// The reserved address range.
    pub(crate) fn range(&self) -> std::ops::Range<usize> {
        self.geometry.base..self.geometry.base + self.geometry.len()
    }

    /// Maximum number of stubs.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Stubs currently allocated: indices `0..in_use()`.
    pub(crate) fn in_use(&self) -> usize {
        self.next as usize
    }

    /// Takes the next stub out of the table, for good: indices are never
    /// given back or reused. Its slot holds no target yet: bind or unbind it
    /// before its address is handed to anyone.
    pub(crate) fn allocate(&mut self) -> Result<u32> {
        if self.next >= self.capacity {
            return Err(Error::CapacityExhausted { capacity: self.capacity() });
        }
        let index = self.next;
        let (block, _) = self.geometry.split(index);
        if block >= self.committed_blocks {
            self.commit_block(block)?;
        }
        self.next += 1;
        Ok(index)
    }

    /// Points a stub at `target` with one atomic store.
    pub(crate) fn bind(&self, index: u32, target: usize) {
        let slot = self.slot(index);
        if slot.load(Ordering::Relaxed) == self.geometry.pad(index) as u64 {
            self.unbound.labels.lock().remove(&index);
        }
        slot.store(target as u64, Ordering::Release);
    }

    /// Points a stub at its pad: calls report `label` and abort.
    ///
    /// Cannot fail: if the pad page cannot be committed (the system is out of
    /// memory), the stub is pointed at a handler that aborts without the name.
    pub(crate) fn unbind(&mut self, index: u32, label: &str) {
        let (block, _) = self.geometry.split(index);
        if !self.pad_pages[block]
            && let Err(e) = self.commit_pad_page(block)
        {
            tracing::error!(error = %e, label, "cannot commit a pad page; the stub reports without its name");
            self.slot(index).store(on_unbound_call_unnamed as *const () as u64, Ordering::Release);
            return;
        }
        self.unbound.labels.lock().insert(index, label.into());
        self.slot(index).store(self.geometry.pad(index) as u64, Ordering::Release);
    }

    /// The address callers use.
    pub(crate) fn stub_address(&self, index: u32) -> usize {
        self.assert_allocated(index);
        self.geometry.stub(index)
    }

    /// Where the stub's target is stored.
    pub(crate) fn slot_address(&self, index: u32) -> usize {
        self.assert_allocated(index);
        self.geometry.slot(index)
    }

    /// What the stub jumps to now.
    pub(crate) fn target(&self, index: u32) -> Target {
        match self.slot(index).load(Ordering::Acquire) as usize {
            0 => Target::Empty,
            t if t == self.geometry.pad(index) => Target::Unbound,
            t => Target::Function(t),
        }
    }

    /// The stub's code bytes.
    pub(crate) fn code(&self, index: u32) -> [u8; STUB_SIZE] {
        self.assert_allocated(index);
        let mut bytes = [0u8; STUB_SIZE];
        // SAFETY: the stub's code page is committed and readable (invariant:
        // allocated stubs lie in committed blocks), and is never written again.
        unsafe {
            std::ptr::copy_nonoverlapping(self.geometry.stub(index) as *const u8, bytes.as_mut_ptr(), STUB_SIZE);
        }
        bytes
    }

    fn assert_allocated(&self, index: u32) {
        assert!(index < self.next, "stub {index} was never allocated");
    }

    fn slot(&self, index: u32) -> &AtomicU64 {
        self.assert_allocated(index);
        let ptr = self.geometry.slot(index) as *mut u64;
        // SAFETY: the slot lies in a committed read+write slot page (the index
        // was allocated, so its block is committed), is 8-byte aligned (page
        // aligned base, 8-byte stride) and stays mapped for as long as `self`.
        // Every access to slots is atomic.
        unsafe { AtomicU64::from_ptr(ptr) }
    }

    fn commit_block(&mut self, block: usize) -> Result<()> {
        let page = self.geometry.page;
        let code = self.geometry.code_page(block) as *mut u8;
        let bytes = arch::stub_page(page);
        // SAFETY: `code` and the slot page after it lie inside our
        // reservation and have never been committed, so nothing can execute
        // from or point into them yet.
        unsafe { write_code_page(code, &bytes)? };
        // SAFETY: as above; the slot page becomes read+write (zero-filled).
        unsafe { os::make_read_write(code.add(page), page) }.map_err(|source| Error::Protect { source })?;
        self.committed_blocks = block + 1;
        Ok(())
    }

    fn commit_pad_page(&mut self, block: usize) -> Result<()> {
        let ctx = Arc::as_ptr(&self.unbound) as u64;
        let handler = on_unbound_call as *const () as u64;
        let bytes = arch::pad_page(self.geometry.page, ctx, handler);
        // SAFETY: the pad page lies inside our reservation and no slot points
        // into it yet (slots point at pads only after this succeeds).
        unsafe { write_code_page(self.geometry.pad_page(block) as *mut u8, &bytes)? };
        self.pad_pages[block] = true;
        Ok(())
    }
}

/// Commits one page read+write, fills it, then makes it read+execute and
/// synchronises the instruction cache.
///
/// # Safety
///
/// `page` must be a page-aligned address inside the table's reservation that
/// no thread executes or references.
unsafe fn write_code_page(page: *mut u8, bytes: &[u8]) -> Result<()> {
    let len = bytes.len();
    // SAFETY: the caller guarantees the page is ours and unused.
    unsafe { os::make_read_write(page, len) }.map_err(|source| Error::Protect { source })?;
    // SAFETY: the page is now committed read+write and `len` bytes long.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), page, len) };
    // SAFETY: the page holds the finished code; from now on it is read+execute.
    unsafe { os::make_read_execute(page, len) }.map_err(|source| Error::Protect { source })?;
    // SAFETY: the page is mapped and readable.
    unsafe { arch::flush_icache(page, len) };
    Ok(())
}

impl Drop for StubTable {
    fn drop(&mut self) {
        let range = self.range();
        // SAFETY: the reservation is ours; the runtime drops the table only
        // after unloading every module, and callers were told that stubs are
        // invalid once the runtime is gone.
        if let Err(e) = unsafe { os::release(range.start as *mut u8, range.len()) } {
            tracing::warn!(error = %e, "failed to release the stub table");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" fn add_one(x: u64) -> u64 {
        x + 1
    }
    extern "C" fn times_two(x: u64) -> u64 {
        x * 2
    }

    fn call(table: &StubTable, index: u32, x: u64) -> u64 {
        let addr = table.stub_address(index);
        // SAFETY: the stub is bound to one of the `extern "C" fn(u64) -> u64`
        // above, so calling it with that signature is sound.
        let f: extern "C" fn(u64) -> u64 = unsafe { std::mem::transmute(addr) };
        f(x)
    }

    #[test]
    fn a_stub_calls_its_target_and_follows_a_rebind() {
        let mut table = StubTable::new(0, 10_000).unwrap();
        let i = table.allocate().unwrap();
        table.bind(i, add_one as *const () as usize);
        assert_eq!(call(&table, i, 41), 42);
        table.bind(i, times_two as *const () as usize);
        assert_eq!(call(&table, i, 21), 42);
        assert_eq!(table.target(i), Target::Function(times_two as *const () as usize));
    }

    #[test]
    fn stubs_in_many_blocks_each_reach_their_own_slot() {
        let mut table = StubTable::new(0, 5_000).unwrap();
        let indices: Vec<u32> = (0..3_000).map(|_| table.allocate().unwrap()).collect();
        for &i in &indices {
            let f = if i % 2 == 0 { add_one } else { times_two };
            table.bind(i, f as *const () as usize);
        }
        for &i in &indices {
            let expect = if i % 2 == 0 { 11 } else { 20 };
            assert_eq!(call(&table, i, 10), expect, "stub {i}");
        }
        assert_eq!(table.in_use(), 3_000);
    }

    #[test]
    fn capacity_exhaustion_is_an_error() {
        let mut table = StubTable::new(0, 3).unwrap();
        for expected in 0..3 {
            assert_eq!(table.allocate().unwrap(), expected);
        }
        assert!(matches!(table.allocate(), Err(Error::CapacityExhausted { capacity: 3 })));
        assert_eq!(table.in_use(), 3);
    }

    #[test]
    fn pad_returns_map_back_to_their_stub() {
        let table = StubTable::new(0, 100_000).unwrap();
        let g = table.geometry;
        for index in [0u32, 1, 511, 512, 513, 99_999] {
            let ret = g.pad(index) + arch::CALL_LEN;
            assert_eq!(g.index_from_pad_return(ret), Some(index));
            assert_eq!(g.index_from_pad_return(ret + 1), None);
        }
        assert_eq!(g.index_from_pad_return(g.base), None);
        assert_eq!(g.index_from_pad_return(g.base + g.len()), None);
    }

    #[test]
    fn unbinding_points_at_the_pad_and_records_the_label() {
        let mut table = StubTable::new(0, 100).unwrap();
        let i = table.allocate().unwrap();
        assert_eq!(table.target(i), Target::Empty);
        table.unbind(i, "m::f");
        assert_eq!(table.target(i), Target::Unbound);
        let ret = table.geometry.pad(i) + arch::CALL_LEN;
        assert_eq!(table.unbound.message(ret), "hcr: call to unbound function m::f\n");
        table.bind(i, add_one as *const () as usize);
        assert!(table.unbound.labels.lock().is_empty());
    }

    #[test]
    fn a_taken_hint_falls_back_to_another_address() {
        let first = StubTable::new(0, 100).unwrap();
        let taken = first.range().start;
        let second = StubTable::new(taken, 100).unwrap();
        assert_ne!(second.range().start, taken);
        assert!(StubTable::new(taken + 1, 100).is_err(), "unaligned hints are refused");
    }
}
