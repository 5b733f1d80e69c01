//! A vector of plain values that moves into its own anonymous memory mapping
//! once it is large.
//!
//! The runtime's per-stub bookkeeping and the scratch arrays of a big
//! transaction can run to megabytes. Kept on the heap, whatever a
//! transaction frees stays with the allocator (glibc keeps freed chunks below
//! live ones, and raises its mmap threshold after each large free), so a
//! process that once registered a million procs would carry that peak for
//! good. In a mapping of its own, a large array costs exactly its pages, and
//! dropping or outgrowing it returns them to the OS at once.

use std::mem::{align_of, size_of};
use std::ops::{Deref, DerefMut};

use memmap2::MmapMut;

/// Arrays up to this many bytes stay on the heap.
const SPILL_BYTES: usize = 64 * 1024;

enum Store<T> {
    Heap(Vec<T>),
    /// `len` initialised values at the start of `map`, which has room for
    /// `capacity`.
    Mapped {
        map: MmapMut,
        len: usize,
        capacity: usize,
    },
}

/// A growable array of `Copy` values: on the heap while small, in an
/// anonymous mapping of its own beyond 64 KiB.
pub(crate) struct MappedVec<T: Copy> {
    store: Store<T>,
}

impl<T: Copy> Default for MappedVec<T> {
    fn default() -> MappedVec<T> {
        MappedVec::new()
    }
}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for MappedVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Copy> MappedVec<T> {
    const CHECKED: () = {
        assert!(size_of::<T>() > 0, "no zero-sized elements");
        // Mappings are page-aligned, and pages are at least 4 KiB.
        assert!(align_of::<T>() <= 4096, "elements fit a page's alignment");
    };

    /// An empty vector; allocates nothing.
    pub(crate) const fn new() -> MappedVec<T> {
        let () = Self::CHECKED;
        MappedVec { store: Store::Heap(Vec::new()) }
    }

    /// An empty vector with room for `capacity` values.
    pub(crate) fn with_capacity(capacity: usize) -> MappedVec<T> {
        let mut v = MappedVec::new();
        v.reserve(capacity);
        v
    }

    fn capacity(&self) -> usize {
        match &self.store {
            Store::Heap(v) => v.capacity(),
            Store::Mapped { capacity, .. } => *capacity,
        }
    }

    /// Makes room for `additional` more values.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = self.len().checked_add(additional).expect("capacity overflow");
        if needed <= self.capacity() {
            return;
        }
        let capacity = needed.max(self.capacity().saturating_mul(2)).max(4);
        match &mut self.store {
            Store::Heap(v) if capacity.saturating_mul(size_of::<T>()) <= SPILL_BYTES => {
                v.reserve_exact(capacity - v.len());
            }
            _ => self.remap(capacity),
        }
    }

    /// Moves the values into a new mapping with room for `capacity`.
    fn remap(&mut self, capacity: usize) {
        let bytes = capacity.checked_mul(size_of::<T>()).expect("capacity overflow");
        let mut map = match MmapMut::map_anon(bytes) {
            Ok(map) => map,
            // Like any collection, give up the way the allocator does.
            Err(_) => std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(bytes, align_of::<T>()).expect("valid layout"),
            ),
        };
        let values: &[T] = self;
        let len = values.len();
        // SAFETY: the new mapping is page-aligned (so aligned for `T`, see
        // `CHECKED`), writable, `bytes >= len * size_of::<T>()` long and
        // disjoint from `values`; copying `Copy` values bitwise is a copy.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), map.as_mut_ptr().cast::<T>(), len) };
        self.store = Store::Mapped { map, len, capacity };
    }

    /// Appends a value.
    pub(crate) fn push(&mut self, value: T) {
        if self.len() == self.capacity() {
            self.reserve(1);
        }
        match &mut self.store {
            Store::Heap(v) => v.push(value),
            Store::Mapped { map, len, capacity } => {
                debug_assert!(*len < *capacity);
                // SAFETY: `len < capacity`, so the slot is inside the
                // mapping, aligned for `T` and not aliased by any borrow
                // (`&mut self`).
                unsafe { map.as_mut_ptr().cast::<T>().add(*len).write(value) };
                *len += 1;
            }
        }
    }

    /// Appends every value of `values`.
    pub(crate) fn extend_from_slice(&mut self, values: &[T]) {
        self.reserve(values.len());
        for &v in values {
            self.push(v);
        }
    }

    /// Shortens the vector to `len` values (no-op if it is not longer).
    pub(crate) fn truncate(&mut self, new_len: usize) {
        match &mut self.store {
            Store::Heap(v) => v.truncate(new_len),
            Store::Mapped { len, .. } => *len = (*len).min(new_len),
        }
    }

    /// Grows (with copies of `value`) or shrinks the vector to `new_len`.
    pub(crate) fn resize(&mut self, new_len: usize, value: T) {
        if new_len <= self.len() {
            self.truncate(new_len);
            return;
        }
        self.reserve(new_len - self.len());
        while self.len() < new_len {
            self.push(value);
        }
    }
}

impl<T: Copy> Deref for MappedVec<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.store {
            Store::Heap(v) => v,
            // SAFETY: the first `len` values of the mapping were written as
            // `T` (by `push` or `remap`) and the mapping is aligned for `T`
            // and lives as long as `self`.
            Store::Mapped { map, len, .. } => unsafe { std::slice::from_raw_parts(map.as_ptr().cast::<T>(), *len) },
        }
    }
}

impl<T: Copy> DerefMut for MappedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.store {
            Store::Heap(v) => v,
            // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
            Store::Mapped { map, len, .. } => unsafe {
                std::slice::from_raw_parts_mut(map.as_mut_ptr().cast::<T>(), *len)
            },
        }
    }
}

impl<'a, T: Copy> IntoIterator for &'a MappedVec<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> std::slice::Iter<'a, T> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_vectors_stay_on_the_heap_and_large_ones_move_to_a_mapping() {
        let mut v: MappedVec<u64> = MappedVec::new();
        for i in 0..100 {
            v.push(i);
        }
        assert!(matches!(v.store, Store::Heap(_)));
        for i in 100..100_000 {
            v.push(i * 3);
        }
        assert!(matches!(v.store, Store::Mapped { .. }), "800 KB is mapped");
        assert_eq!(v.len(), 100_000);
        assert_eq!(v[99], 99);
        assert_eq!(v[99_999], 299_997);
        v.truncate(10);
        assert_eq!(&v[..], &(0..10).collect::<Vec<u64>>()[..]);
        v.resize(12, 7);
        assert_eq!(&v[10..], &[7, 7]);
        v.extend_from_slice(&[1, 2]);
        v.sort_unstable();
        assert_eq!(&v[..5], &[0, 1, 1, 2, 2]);
    }

    #[test]
    fn reserved_capacity_is_used_without_moving() {
        let mut v: MappedVec<(u32, u32)> = MappedVec::with_capacity(50_000);
        let Store::Mapped { ref map, .. } = v.store else { panic!("400 KB is mapped") };
        let base = map.as_ptr();
        for i in 0..50_000 {
            v.push((i, !i));
        }
        let Store::Mapped { ref map, .. } = v.store else { unreachable!() };
        assert_eq!(map.as_ptr(), base, "no remapping within the reserved capacity");
        assert_eq!(v[49_999], (49_999, !49_999));
    }
}
