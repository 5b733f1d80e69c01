//! Proc names: one arena in stub order, and a transient hash index of the
//! names a running transaction added.

use std::hash::{BuildHasher, RandomState};

use crate::mapped_vec::MappedVec;

/// How many names share one checkpoint.
const CHECKPOINT: u32 = 16;

/// Reads a varint-prefixed record at `offset`: (bytes, offset of the next).
fn record(bytes: &[u8], offset: u32) -> (&[u8], u32) {
    let mut at = offset as usize;
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let b = bytes[at];
        at += 1;
        len |= usize::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    (&bytes[at..at + len], (at + len) as u32)
}

fn push_record(bytes: &mut MappedVec<u8>, name: &[u8]) {
    let mut len = name.len();
    loop {
        let b = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            bytes.push(b);
            break;
        }
        bytes.push(b | 0x80);
    }
    bytes.extend_from_slice(name);
}

/// Names in index order, each as `[varint length][bytes]`, with the offset
/// of every 16th name kept as a checkpoint: a name costs its bytes plus
/// about one byte.
#[derive(Debug, Default)]
pub(super) struct NameArena {
    bytes: MappedVec<u8>,
    checkpoints: MappedVec<u32>,
    len: u32,
}

impl NameArena {
    /// Names stored.
    pub(super) fn len(&self) -> u32 {
        self.len
    }

    /// Appends the name of index [`NameArena::len`]; returns its offset.
    pub(super) fn push(&mut self, name: &[u8]) -> u32 {
        if self.len.is_multiple_of(CHECKPOINT) {
            self.checkpoints.push(self.bytes.len() as u32);
        }
        let offset = self.bytes.len() as u32;
        push_record(&mut self.bytes, name);
        self.len += 1;
        offset
    }

    /// The name at `offset`.
    pub(super) fn get(&self, offset: u32) -> &[u8] {
        record(&self.bytes, offset).0
    }

    /// The offset of the name after the one at `offset`.
    pub(super) fn next(&self, offset: u32) -> u32 {
        record(&self.bytes, offset).1
    }

    /// The offset of name `index`.
    pub(super) fn offset(&self, index: u32) -> u32 {
        let mut at = self.checkpoints[(index / CHECKPOINT) as usize];
        for _ in 0..index % CHECKPOINT {
            at = self.next(at);
        }
        at
    }

    /// The index of the name at `offset`.
    pub(super) fn index_at(&self, offset: u32) -> u32 {
        let block = self.checkpoints.partition_point(|&c| c <= offset) - 1;
        let mut index = block as u32 * CHECKPOINT;
        let mut at = self.checkpoints[block];
        while at != offset {
            at = self.next(at);
            index += 1;
        }
        index
    }
}

/// Marks a free slot of [`FreshIndex`].
const VACANT: u32 = u32::MAX;

/// An open-addressing hash index of names not merged into their module's
/// sorted list yet: slots hold `(arena offset, module id)`. Dropped (and its
/// mapping returned) at every merge.
#[derive(Debug, Default)]
pub(super) struct FreshIndex {
    slots: MappedVec<(u32, u32)>,
    len: usize,
}

impl FreshIndex {
    /// The hash of `(module, name)` under `hasher`.
    pub(super) fn hash(hasher: &RandomState, module: u32, name: &[u8]) -> u64 {
        hasher.hash_one((module, name))
    }

    fn slot_of(&self, hash: u64) -> usize {
        (hash as usize) & (self.slots.len() - 1)
    }

    /// The offset of `(module, name)`, if indexed.
    pub(super) fn find(&self, hash: u64, module: u32, name: &[u8], arena: &NameArena) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let mut at = self.slot_of(hash);
        loop {
            let (offset, m) = self.slots[at];
            if offset == VACANT {
                return None;
            }
            if m == module && arena.get(offset) == name {
                return Some(offset);
            }
            at = (at + 1) & (self.slots.len() - 1);
        }
    }

    /// Indexes `(offset, module)`, known not to be there.
    pub(super) fn insert(&mut self, hasher: &RandomState, arena: &NameArena, offset: u32, module: u32) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let old = std::mem::take(&mut self.slots);
            let size = (old.len() * 2).max(16);
            self.slots = MappedVec::with_capacity(size);
            self.slots.resize(size, (VACANT, 0));
            for &(o, m) in old.iter().filter(|e| e.0 != VACANT) {
                self.place(Self::hash(hasher, m, arena.get(o)), (o, m));
            }
        }
        self.place(Self::hash(hasher, module, arena.get(offset)), (offset, module));
        self.len += 1;
    }

    fn place(&mut self, hash: u64, entry: (u32, u32)) {
        let mut at = self.slot_of(hash);
        while self.slots[at].0 != VACANT {
            at = (at + 1) & (self.slots.len() - 1);
        }
        self.slots[at] = entry;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_by_index_and_offset() {
        let mut arena = NameArena::default();
        let names: Vec<String> = (0..40).map(|i| "n".repeat(i * 7)).collect();
        let offsets: Vec<u32> = names.iter().map(|n| arena.push(n.as_bytes())).collect();
        for (i, (name, &offset)) in names.iter().zip(&offsets).enumerate() {
            assert_eq!(arena.offset(i as u32), offset);
            assert_eq!(arena.index_at(offset), i as u32);
            assert_eq!(arena.get(offset), name.as_bytes(), "lengths above 127 take two bytes");
        }
        assert_eq!(arena.len(), 40);
    }
}
