//! FNV-1a, 64 bits: a small, stable hash for signatures, layouts and build
//! ids. Stability across builds and hosts is what matters here.

/// An FNV-1a hasher.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash; never zero, since zero means "unknown" to the runtime.
    pub(crate) fn finish(self) -> u64 {
        self.0.max(1)
    }
}

/// The hash of one string.
pub(crate) fn hash_str(text: &str) -> u64 {
    let mut h = Fnv::new();
    h.write(text.as_bytes());
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_reference_vectors() {
        // From the FNV reference test suite.
        assert_eq!(super::hash_str(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::hash_str("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::hash_str("foobar"), 0x85944171f73967e8);
    }
}
