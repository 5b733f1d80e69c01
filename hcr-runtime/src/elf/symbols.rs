//! The dynamic string and symbol tables and the hash tables that index
//! them. The loader walks hash chains for every symbol it looks up (its own
//! relocations, `dlsym`), `dladdr` walks them all, and both read symbol
//! names through `st_name` without bounds.

use super::dynamic::{Dynamic, SYM_SIZE};
use super::{File, Problem, malformed, u16_at, u32_at, u64_at};

/// More dynamic symbols than any library exports.
pub(super) const MAX_SYMBOLS: u64 = 1 << 22;
/// `SHN_UNDEF`.
pub(super) const SHN_UNDEF: u16 = 0;
/// `SHN_ABS`.
const SHN_ABS: u16 = 0xfff1;
/// `STT_TLS`.
pub(super) const STT_TLS: u8 = 6;
/// `STT_GNU_IFUNC`.
const STT_GNU_IFUNC: u8 = 10;
/// `STB_LOCAL`.
const STB_LOCAL: u8 = 0;

/// One symbol.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sym {
    pub(super) name: u32,
    pub(super) info: u8,
    pub(super) shndx: u16,
    pub(super) value: u64,
    pub(super) size: u64,
}

impl Sym {
    pub(super) fn kind(&self) -> u8 {
        self.info & 0xf
    }

    pub(super) fn defined(&self) -> bool {
        self.shndx != SHN_UNDEF
    }
}

/// The GNU hash table (`DT_GNU_HASH`).
#[derive(Debug)]
struct GnuHash<'a> {
    nbuckets: u32,
    symbias: u32,
    shift: u32,
    bloom: &'a [u8],
    buckets: &'a [u8],
    /// From the first hashed symbol (`symbias`) on.
    chains: &'a [u8],
}

/// The System V hash table (`DT_HASH`).
#[derive(Debug)]
struct SysvHash<'a> {
    nbucket: u32,
    buckets: &'a [u8],
    chains: &'a [u8],
}

/// The validated symbol tables.
#[derive(Debug)]
pub(super) struct Symbols<'a> {
    strtab: &'a [u8],
    symtab: &'a [u8],
    /// The number of symbols: what the hash tables cover.
    pub(super) count: u64,
    gnu: Option<GnuHash<'a>>,
    sysv: Option<SysvHash<'a>>,
}

impl<'a> Symbols<'a> {
    /// Validates the string table, both hash tables, the symbol table they
    /// cover, and the string offsets in the dynamic section.
    pub(super) fn read(file: &File<'a>, dynamic: &Dynamic, has_tls: bool) -> Result<Symbols<'a>, Problem> {
        if dynamic.strsz == 0 {
            return Err(malformed("its string table (DT_STRSZ) is empty"));
        }
        let strtab = file.table("string table", dynamic.strtab, dynamic.strsz, 1)?;
        // Every offset inside a table that ends with NUL names a string
        // that ends inside it.
        if strtab[strtab.len() - 1] != 0 {
            return Err(malformed("its string table does not end with a NUL byte"));
        }
        let string = |what: &str, offset: u64| {
            if offset < dynamic.strsz {
                Ok(())
            } else {
                Err(malformed(format!("its {what} names string {offset}, outside the string table")))
            }
        };
        for &offset in &dynamic.needed {
            string("DT_NEEDED", offset)?;
        }
        for &(what, offset) in &dynamic.strings {
            string(what, offset)?;
        }

        let gnu = dynamic.gnu_hash.map(|addr| read_gnu(file, addr)).transpose()?;
        let sysv = dynamic.hash.map(|addr| read_sysv(file, addr)).transpose()?;
        let gnu_count = gnu.as_ref().map(|(_, count)| *count).unwrap_or(0);
        let sysv_count = sysv.as_ref().map(|h| u64::from(h.chains.len() as u32 / 4)).unwrap_or(0);
        let count = gnu_count.max(sysv_count).max(1);
        let symtab = file.table("symbol table", dynamic.symtab, count * SYM_SIZE, 8)?;
        let symbols = Symbols { strtab, symtab, count, gnu: gnu.map(|(h, _)| h), sysv };

        let image_end = file.loads.last().map_or(0, |s| s.end());
        if symtab[..SYM_SIZE as usize].iter().any(|&b| b != 0) {
            return Err(malformed("its symbol 0 is not the null symbol"));
        }
        for index in 1..count {
            let sym = symbols.get(index);
            if u64::from(sym.name) >= dynamic.strsz {
                return Err(malformed(format!("its symbol {index} has a name outside the string table")));
            }
            let kind = sym.kind();
            if kind == STT_GNU_IFUNC {
                return Err(Problem::RunsCodeWhileLoading(format!(
                    "its symbol `{}` is an ifunc, whose resolver",
                    symbols.name_lossy(&sym)
                )));
            }
            if !sym.defined() || sym.shndx == SHN_ABS {
                continue;
            }
            if kind == STT_TLS {
                if !has_tls {
                    return Err(malformed(format!(
                        "its symbol `{}` is thread-local, but it has no thread-local segment",
                        symbols.name_lossy(&sym)
                    )));
                }
            } else if sym.value > image_end || sym.value.saturating_add(sym.size) > image_end {
                return Err(malformed(format!(
                    "its symbol `{}` ({} bytes at {:#x}) lies outside its segments",
                    symbols.name_lossy(&sym),
                    sym.size,
                    sym.value
                )));
            }
        }
        Ok(symbols)
    }

    /// Symbol `index` (below `count`).
    pub(super) fn get(&self, index: u64) -> Sym {
        let at = index as usize * SYM_SIZE as usize;
        let s = &self.symtab[at..at + SYM_SIZE as usize];
        Sym {
            name: u32_at(s, 0).expect("24 bytes"),
            info: s[4],
            shndx: u16_at(s, 6).expect("24 bytes"),
            value: u64_at(s, 8).expect("24 bytes"),
            size: u64_at(s, 16).expect("24 bytes"),
        }
    }

    /// The string at `offset` (validated to be inside the table).
    pub(super) fn string(&self, offset: u64) -> &'a [u8] {
        let rest = &self.strtab[offset as usize..];
        &rest[..rest.iter().position(|&b| b == 0).expect("the table ends with NUL")]
    }

    /// Whether `offset` is inside the string table.
    pub(super) fn has_string(&self, offset: u64) -> bool {
        offset < self.strtab.len() as u64
    }

    fn name_lossy(&self, sym: &Sym) -> String {
        String::from_utf8_lossy(self.string(u64::from(sym.name))).into_owned()
    }

    /// Whether a defined symbol named by string `name` is found in this
    /// library's hash table.
    pub(super) fn defines(&self, name: u32) -> bool {
        self.lookup(self.string(u64::from(name)), None).is_some()
    }

    /// Finds `name` the way `dlsym` does: through the GNU hash table if there
    /// is one, else the System V one; only global, defined symbols with a
    /// value, whose version (if any) is not hidden.
    pub(super) fn lookup(&self, name: &[u8], versym: Option<&[u8]>) -> Option<Sym> {
        let matches = |index: u64| {
            let sym = self.get(index);
            let hidden = versym.and_then(|v| u16_at(v, index as usize * 2)).is_some_and(|v| v & 0x8000 != 0);
            let bind = sym.info >> 4;
            let ok = sym.defined()
                && sym.value != 0
                && bind != STB_LOCAL
                && !hidden
                && self.string(u64::from(sym.name)) == name;
            ok.then_some(sym)
        };
        if let Some(gnu) = &self.gnu {
            let h = gnu_hash(name);
            let words = gnu.bloom.len() / 8;
            let word = u64_at(gnu.bloom, ((h as usize / 64) & (words - 1)) * 8)?;
            let mask = (1u64 << (h % 64)) | (1u64 << ((h >> gnu.shift) % 64));
            if word & mask != mask {
                return None;
            }
            let mut index = u32_at(gnu.buckets, (h % gnu.nbuckets) as usize * 4)?;
            if index == 0 {
                return None;
            }
            loop {
                let value = u32_at(gnu.chains, (index - gnu.symbias) as usize * 4)?;
                if (value ^ h) >> 1 == 0
                    && let Some(sym) = matches(u64::from(index))
                {
                    return Some(sym);
                }
                if value & 1 != 0 {
                    return None;
                }
                index += 1;
            }
        }
        let sysv = self.sysv.as_ref()?;
        let mut index = u32_at(sysv.buckets, (elf_hash(name) % sysv.nbucket) as usize * 4)?;
        let mut steps = 0;
        while index != 0 && steps < self.count {
            if let Some(sym) = matches(u64::from(index)) {
                return Some(sym);
            }
            index = u32_at(sysv.chains, index as usize * 4)?;
            steps += 1;
        }
        None
    }
}

/// Validates a GNU hash table; returns it with the number of symbols it
/// covers. Every chain must end (low bit set) inside the table, and the
/// chains of successive buckets must follow each other, as linkers lay them
/// out: then the loader's walks are bounded by the symbol count.
fn read_gnu<'a>(file: &File<'a>, addr: u64) -> Result<(GnuHash<'a>, u64), Problem> {
    let header = file.table("GNU hash table", addr, 16, 8)?;
    let nbuckets = u32_at(header, 0).expect("16 bytes");
    let symbias = u32_at(header, 4).expect("16 bytes");
    let nwords = u32_at(header, 8).expect("16 bytes");
    let shift = u32_at(header, 12).expect("16 bytes");
    if nbuckets == 0 || u64::from(nbuckets) > MAX_SYMBOLS || u64::from(symbias) > MAX_SYMBOLS {
        return Err(malformed(format!("its GNU hash table has {nbuckets} buckets and symbol offset {symbias}")));
    }
    // glibc asserts the power of two and indexes with `nwords - 1`.
    if !nwords.is_power_of_two() || u64::from(nwords) > MAX_SYMBOLS || shift >= 32 {
        return Err(malformed(format!(
            "its GNU hash table has a Bloom filter of {nwords} words shifted by {shift} (a power of two, and a shift below 32)"
        )));
    }
    let bloom_len = u64::from(nwords) * 8;
    let bloom = file.table("GNU hash Bloom filter", addr + 16, bloom_len, 8)?;
    let buckets_at = addr + 16 + bloom_len;
    let buckets = file.table("GNU hash buckets", buckets_at, u64::from(nbuckets) * 4, 4)?;
    let chains_at = buckets_at + u64::from(nbuckets) * 4;
    // The chains run to the last symbol; their length is found by walking.
    let available = file.tail(chains_at).unwrap_or(&[]);
    let mut next_free = u64::from(symbias);
    for bucket in 0..nbuckets as usize {
        let start = u64::from(u32_at(buckets, bucket * 4).expect("inside"));
        if start == 0 {
            continue;
        }
        if start < next_free {
            return Err(malformed(format!(
                "its GNU hash bucket {bucket} starts at symbol {start}, inside an earlier chain or before the first hashed symbol {symbias}"
            )));
        }
        let mut index = start;
        loop {
            let at = (index - u64::from(symbias)) * 4;
            let value = usize::try_from(at).ok().and_then(|at| u32_at(available, at)).ok_or_else(|| {
                malformed(format!("its GNU hash chain of bucket {bucket} runs past its segment at symbol {index}"))
            })?;
            if value & 1 != 0 {
                break;
            }
            index += 1;
            if index >= MAX_SYMBOLS {
                return Err(malformed(format!("its GNU hash chain of bucket {bucket} does not end")));
            }
        }
        next_free = index + 1;
    }
    let count = next_free;
    let chains = &available[..((count - u64::from(symbias)) * 4) as usize];
    Ok((GnuHash { nbuckets, symbias, shift, bloom, buckets, chains }, count))
}

/// Validates a System V hash table: every bucket and chain entry names a
/// symbol, and no chain loops (the loader would walk it forever).
fn read_sysv<'a>(file: &File<'a>, addr: u64) -> Result<SysvHash<'a>, Problem> {
    let header = file.table("hash table", addr, 8, 4)?;
    let nbucket = u32_at(header, 0).expect("8 bytes");
    let nchain = u32_at(header, 4).expect("8 bytes");
    if nbucket == 0 || u64::from(nbucket) > MAX_SYMBOLS || u64::from(nchain) > MAX_SYMBOLS {
        return Err(malformed(format!("its hash table has {nbucket} buckets and {nchain} chain entries")));
    }
    let buckets = file.table("hash buckets", addr + 8, u64::from(nbucket) * 4, 4)?;
    let chains = file.table("hash chains", addr + 8 + u64::from(nbucket) * 4, u64::from(nchain) * 4, 4)?;
    let mut visited = vec![0u64; (nchain as usize).div_ceil(64)];
    for bucket in 0..nbucket as usize {
        let mut index = u32_at(buckets, bucket * 4).expect("inside");
        while index != 0 {
            if index >= nchain {
                return Err(malformed(format!("its hash chain of bucket {bucket} names symbol {index} of {nchain}")));
            }
            let (word, bit) = (index as usize / 64, 1u64 << (index % 64));
            if visited[word] & bit != 0 {
                return Err(malformed(format!("its hash chains meet or loop at symbol {index}")));
            }
            visited[word] |= bit;
            index = u32_at(chains, index as usize * 4).expect("inside");
        }
    }
    Ok(SysvHash { nbucket, buckets, chains })
}

/// The GNU symbol hash.
fn gnu_hash(name: &[u8]) -> u32 {
    name.iter().fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(u32::from(c)))
}

/// The System V symbol hash.
fn elf_hash(name: &[u8]) -> u32 {
    let mut h = 0u32;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_the_reference_values() {
        // Values from the ELF and GNU specifications' reference functions.
        assert_eq!(gnu_hash(b""), 5381);
        assert_eq!(gnu_hash(b"printf"), 0x156b_2bb8);
        assert_eq!(gnu_hash(b"exit"), 0x7c96_7e3f);
        assert_eq!(elf_hash(b""), 0);
        assert_eq!(elf_hash(b"printf"), 0x0779_05a6);
        assert_eq!(elf_hash(b"exit"), 0x0006_cf04);
    }
}
