//! Validation of an ELF shared library before the system loader sees it.
//!
//! `dlopen` trusts the file: a corrupt program header, dynamic entry, hash
//! table or relocation makes glibc's `ld.so` fault or fail an assertion
//! (which exits the process), before any error can be returned. So every
//! structure the loader reads while it maps, links and relocates a library,
//! and while `dlsym`/`dladdr` search it later, is checked here first, from
//! the loader's point of view:
//!
//! * the ELF header and the program headers ([`headers`]), including the
//!   notes the loader parses ([`notes`]);
//! * the dynamic section ([`dynamic`]);
//! * the string and symbol tables and both hash tables ([`symbols`]);
//! * the symbol version tables ([`versions`]);
//! * every relocation, and the init and fini functions ([`relocs`]), which
//!   must be code, and not the middle of a function the unwinder's table
//!   knows ([`unwind`]).
//!
//! Section headers are never used: the loader does not read them either.
//! Every table is found through the dynamic section and translated from its
//! virtual address to file bytes through the `PT_LOAD` segments, exactly as
//! the loader finds it in memory.
//!
//! The checks cost time proportional to the tables the loader itself walks
//! (relocations, symbols, hash chains), never to the size of the file, and
//! allocate a few small vectors per library, nothing per relocation: hosts
//! run them in debug builds too.
//!
//! Also refused here, as a matter of policy rather than of loader safety:
//! memory that would be writable and executable (a `PT_LOAD` with both
//! flags, an executable stack, text relocations) and relocations that run
//! library code while the loader holds its lock (`IRELATIVE`, ifunc symbols).

mod dynamic;
mod headers;
mod machine;
mod notes;
mod relocs;
mod symbols;
mod unwind;
mod versions;

pub(crate) use headers::machine_name;
#[cfg(target_arch = "aarch64")]
pub(crate) use machine::AARCH64;
pub(crate) use machine::Machine;
#[cfg(target_arch = "x86_64")]
pub(crate) use machine::X86_64;
pub(crate) use notes::build_id_from_reader;

/// Why a library is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// Not an ELF file of this platform's class and byte order at all.
    NotElf(String),
    /// An ELF file for another machine (`e_machine`).
    WrongMachine(u16),
    /// A structure the loader would trust is out of bounds or inconsistent.
    Malformed(String),
    /// Loading it would create writable and executable memory.
    WritableCode(String),
    /// Loading it would run its code while the loader holds its lock
    /// (ifuncs).
    RunsCodeWhileLoading(String),
}

/// What is allowed beyond the defaults.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// Accept writable+executable segments, executable stacks and text
    /// relocations.
    pub(crate) allow_writable_code: bool,
    /// The system's page size (the loader maps whole pages).
    pub(crate) page_size: u64,
}

/// A loadable segment (`PT_LOAD`), as validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Index of its program header.
    pub(crate) index: usize,
    pub(crate) vaddr: u64,
    pub(crate) memsz: u64,
    pub(crate) offset: u64,
    pub(crate) filesz: u64,
    pub(crate) flags: u32,
}

pub(crate) const PF_X: u32 = 1;
pub(crate) const PF_W: u32 = 2;
pub(crate) const PF_R: u32 = 4;

impl Segment {
    /// One past its last byte in memory (cannot overflow: checked when the
    /// segment was read).
    pub(crate) fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }

    /// Whether `addr..addr+len` lies inside it in memory.
    pub(crate) fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.vaddr && addr.checked_add(len).is_some_and(|end| end <= self.end())
    }

    /// The file offset of `addr..addr+len` if that range is backed by file
    /// bytes (not in the zero-filled tail).
    fn file_offset(&self, addr: u64, len: u64) -> Option<u64> {
        let file_end = self.vaddr + self.filesz;
        (addr >= self.vaddr && addr.checked_add(len)? <= file_end).then(|| self.offset + (addr - self.vaddr))
    }

    pub(crate) fn writable(&self) -> bool {
        self.flags & PF_W != 0
    }

    pub(crate) fn executable(&self) -> bool {
        self.flags & PF_X != 0
    }
}

/// Where a module descriptor is, as the loader would find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DescriptorSite {
    /// The exported name.
    pub(crate) symbol: String,
    /// Its virtual address (relative to the load base).
    pub(crate) vaddr: u64,
    /// The symbol's size (`0` when the object did not record it).
    pub(crate) size: u64,
    /// Its bytes as they are in the file (never relocated: only the
    /// pointer-free fields mean anything): the 16-byte header (magic,
    /// versions, size), then as many of the bytes the header's `size`
    /// declares as the caller asked for and the file holds. Empty when not
    /// even the header is data in the file.
    pub(crate) bytes: Vec<u8>,
}

/// A library that passed every check.
#[derive(Clone, Debug)]
pub(crate) struct Image {
    /// The loadable segments, in address order.
    pub(crate) segments: Vec<Segment>,
    /// Every exported symbol whose name starts with the descriptor prefix
    /// and that `dlsym` would find, sorted by name.
    pub(crate) descriptors: Vec<DescriptorSite>,
}

impl Image {
    /// Whether `addr..addr+len` (relative to the load base) lies in one
    /// segment whose flags include `flags`.
    pub(crate) fn contains(&self, addr: u64, len: u64, flags: u32) -> bool {
        self.segments.iter().any(|s| s.flags & flags == flags && s.contains(addr, len))
    }
}

/// Validates `data`, the complete library file, for `machine`, and finds the
/// exports whose names start with `prefix` (the module descriptors), reading
/// at most `max_len` bytes of each.
pub(crate) fn validate(
    data: &[u8],
    machine: &Machine,
    policy: Policy,
    prefix: &str,
    max_len: u64,
) -> Result<Image, Problem> {
    let headers = headers::read(data, machine, policy)?;
    let file = File { data, loads: &headers.loads };
    let dynamic = dynamic::read(&file, &headers)?;
    if !policy.allow_writable_code
        && let Some(why) = dynamic.text_relocations()
    {
        return Err(Problem::WritableCode(format!(
            "it has text relocations ({why}): the loader would make its code writable while it relocates it"
        )));
    }
    let symbols = symbols::Symbols::read(&file, &dynamic, headers.tls)?;
    let versions = versions::read(&file, &dynamic, &symbols)?;
    relocs::check(&file, &headers, &dynamic, &symbols, machine, policy)?;
    let mut descriptors: Vec<DescriptorSite> = Vec::new();
    for index in 1..symbols.count {
        let name = symbols.string(u64::from(symbols.get(index).name));
        if !name.starts_with(prefix.as_bytes()) || descriptors.iter().any(|d| d.symbol.as_bytes() == name) {
            continue;
        }
        // Only what `dlsym` finds through the hash table counts.
        let (Ok(symbol), Some(sym)) = (std::str::from_utf8(name), symbols.lookup(name, versions.versym)) else {
            continue;
        };
        let bytes = match file.bytes(sym.value, 16) {
            None => Vec::new(),
            Some(header) => {
                let declared = u64::from(u32_at(header, 12).expect("16 bytes"));
                file.bytes(sym.value, declared.clamp(16, max_len.max(16))).unwrap_or(header).to_vec()
            }
        };
        descriptors.push(DescriptorSite { symbol: symbol.to_owned(), vaddr: sym.value, size: sym.size, bytes });
    }
    descriptors.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    Ok(Image { segments: headers.loads, descriptors })
}

/// The file and its loadable segments: translates virtual addresses into
/// file bytes the way the loader's mappings do.
pub(crate) struct File<'a> {
    data: &'a [u8],
    loads: &'a [Segment],
}

impl<'a> File<'a> {
    /// The file bytes the loader maps at `addr..addr+len`, if that range is
    /// inside the file-backed part of one readable segment.
    fn bytes(&self, addr: u64, len: u64) -> Option<&'a [u8]> {
        let offset = self.loads.iter().filter(|s| s.flags & PF_R != 0).find_map(|s| s.file_offset(addr, len))?;
        slice(self.data, offset, len)
    }

    /// The file bytes from `addr` to the end of the file-backed part of the
    /// readable segment holding it.
    fn tail(&self, addr: u64) -> Option<&'a [u8]> {
        let s = self.loads.iter().find(|s| s.flags & PF_R != 0 && addr >= s.vaddr && addr < s.vaddr + s.filesz)?;
        slice(self.data, s.offset + (addr - s.vaddr), s.vaddr + s.filesz - addr)
    }

    /// Like [`File::bytes`], with an error naming `what`, and an alignment
    /// requirement (the loader reads the table with aligned loads).
    fn table(&self, what: &str, addr: u64, len: u64, align: u64) -> Result<&'a [u8], Problem> {
        if !addr.is_multiple_of(align) {
            return Err(Problem::Malformed(format!("its {what} at {addr:#x} is not aligned to {align} bytes")));
        }
        self.bytes(addr, len).ok_or_else(|| {
            Problem::Malformed(format!(
                "its {what} ({len} bytes at {addr:#x}) is not inside the file contents of a loadable segment"
            ))
        })
    }
}

/// `len` bytes of `data` at `offset`, if all are there.
fn slice(data: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get(start..end)
}

/// Native-endian fixed-size reads. Files of the other byte order are refused
/// before anything is read with these.
fn u16_at(data: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(data.get(offset..offset.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(data: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(offset..offset.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(data: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(data.get(offset..offset.checked_add(8)?)?.try_into().ok()?))
}

fn malformed(message: impl Into<String>) -> Problem {
    Problem::Malformed(message.into())
}
