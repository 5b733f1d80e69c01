//! Interned signatures, and the id of the signature each stub was last
//! registered with.

use std::collections::HashMap;
use std::sync::Arc;

use crate::mapped_vec::MappedVec;

/// Signature ids per stub: 16 bits while there are few distinct signatures.
#[derive(Debug)]
enum SigIds {
    Narrow(MappedVec<u16>),
    Wide(MappedVec<u32>),
}

/// Every distinct signature once; id 0 is "unknown".
#[derive(Debug)]
pub(super) struct Signatures {
    ids: SigIds,
    table: Vec<(u64, Arc<str>)>,
    by_hash: HashMap<u64, Vec<u32>>,
}

impl Default for Signatures {
    fn default() -> Signatures {
        Signatures { ids: SigIds::Narrow(MappedVec::new()), table: vec![(0, Arc::from(""))], by_hash: HashMap::new() }
    }
}

impl Signatures {
    /// Interns a signature; `0` for an unknown one.
    pub(super) fn intern(&mut self, hash: u64, text: &str) -> u32 {
        if hash == 0 && text.is_empty() {
            return 0;
        }
        if let Some(ids) = self.by_hash.get(&hash)
            && let Some(&id) = ids.iter().find(|&&id| &*self.table[id as usize].1 == text)
        {
            return id;
        }
        let id = self.table.len() as u32;
        self.table.push((hash, Arc::from(text)));
        self.by_hash.entry(hash).or_default().push(id);
        id
    }

    /// An interned signature: hash and text.
    pub(super) fn get(&self, id: u32) -> (u64, &str) {
        let (hash, text) = &self.table[id as usize];
        (*hash, text)
    }

    /// The id of `stub`'s signature.
    pub(super) fn id_of(&self, stub: u32) -> u32 {
        match &self.ids {
            SigIds::Narrow(v) => u32::from(v[stub as usize]),
            SigIds::Wide(v) => v[stub as usize],
        }
    }

    /// Sets `stub`'s signature id, widening the ids past 65,535 signatures.
    pub(super) fn set(&mut self, stub: u32, id: u32) {
        if let SigIds::Narrow(v) = &self.ids
            && id > u32::from(u16::MAX)
        {
            let mut wide = MappedVec::with_capacity(v.len());
            for &i in v.iter() {
                wide.push(u32::from(i));
            }
            self.ids = SigIds::Wide(wide);
        }
        match &mut self.ids {
            SigIds::Narrow(v) => v[stub as usize] = id as u16,
            SigIds::Wide(v) => v[stub as usize] = id,
        }
    }

    /// Adds the next stub, with the unknown signature.
    pub(super) fn push(&mut self) {
        match &mut self.ids {
            SigIds::Narrow(v) => v.push(0),
            SigIds::Wide(v) => v.push(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_interned_and_ids_widen() {
        let mut s = Signatures::default();
        s.push();
        let id = s.intern(1, "extern \"C\" fn()");
        assert_eq!(s.intern(1, "extern \"C\" fn()"), id);
        assert_ne!(s.intern(1, "extern \"C\" fn(u8)"), id, "same hash, other text");
        assert_eq!(s.intern(0, ""), 0, "unknown");
        for i in 0..70_000u64 {
            s.intern(i + 10, &i.to_string());
        }
        let wide = s.intern(99_999_999, "wide");
        s.set(0, wide);
        assert_eq!(s.get(s.id_of(0)), (99_999_999, "wide"));
    }
}
