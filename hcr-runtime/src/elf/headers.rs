//! The ELF header and the program headers: what the loader reads first, to
//! decide what to map where.

use super::machine::Machine;
use super::notes;
use super::{PF_R, PF_W, PF_X, Policy, Problem, Segment, malformed, slice, u16_at, u32_at, u64_at};

pub(super) const PT_NULL: u32 = 0;
pub(super) const PT_LOAD: u32 = 1;
pub(super) const PT_DYNAMIC: u32 = 2;
pub(super) const PT_INTERP: u32 = 3;
pub(super) const PT_NOTE: u32 = 4;
pub(super) const PT_PHDR: u32 = 6;
pub(super) const PT_TLS: u32 = 7;
pub(super) const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
pub(super) const PT_GNU_STACK: u32 = 0x6474_e551;
pub(super) const PT_GNU_RELRO: u32 = 0x6474_e552;
pub(super) const PT_GNU_PROPERTY: u32 = 0x6474_e553;
pub(super) const PT_GNU_SFRAME: u32 = 0x6474_e554;

/// Size of an `Elf64_Ehdr`.
const EHDR_SIZE: usize = 64;
/// Size of an `Elf64_Phdr`.
const PHDR_SIZE: u64 = 56;
/// More program headers than any linker writes; glibc copies them to its
/// stack (`alloca`), so their number must stay small.
const MAX_PHNUM: u16 = 128;
/// The largest address range the loadable segments may span.
pub(super) const MAX_IMAGE: u64 = 1 << 32;
/// The largest thread-local block (per thread) accepted.
const MAX_TLS_SIZE: u64 = 64 << 20;
/// The largest thread-local alignment accepted.
const MAX_TLS_ALIGN: u64 = 1 << 16;

/// What the program headers say, validated.
#[derive(Debug)]
pub(super) struct Headers {
    /// `PT_LOAD` segments in address order.
    pub(super) loads: Vec<Segment>,
    /// `PT_DYNAMIC`: address and size.
    pub(super) dynamic: (u64, u64),
    /// Whether it has thread-locals (a non-empty `PT_TLS`).
    pub(super) tls: bool,
    /// `PT_GNU_EH_FRAME`: address and size.
    pub(super) eh_frame_hdr: Option<(u64, u64)>,
}

/// One program header.
#[derive(Clone, Copy, Debug)]
struct Phdr {
    index: usize,
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

impl Phdr {
    fn read(table: &[u8], index: usize) -> Phdr {
        let at = index * PHDR_SIZE as usize;
        let word = |o| u64_at(table, at + o).expect("inside the table");
        Phdr {
            index,
            p_type: u32_at(table, at).expect("inside the table"),
            flags: u32_at(table, at + 4).expect("inside the table"),
            offset: word(8),
            vaddr: word(16),
            filesz: word(32),
            memsz: word(40),
            align: word(48),
        }
    }

    fn name(&self) -> String {
        let kind = match self.p_type {
            PT_NULL => "PT_NULL",
            PT_LOAD => "PT_LOAD",
            PT_DYNAMIC => "PT_DYNAMIC",
            PT_INTERP => "PT_INTERP",
            PT_NOTE => "PT_NOTE",
            PT_PHDR => "PT_PHDR",
            PT_TLS => "PT_TLS",
            PT_GNU_EH_FRAME => "PT_GNU_EH_FRAME",
            PT_GNU_STACK => "PT_GNU_STACK",
            PT_GNU_RELRO => "PT_GNU_RELRO",
            PT_GNU_PROPERTY => "PT_GNU_PROPERTY",
            PT_GNU_SFRAME => "PT_GNU_SFRAME",
            other => return format!("program header {} (type {other:#x})", self.index),
        };
        format!("program header {} ({kind})", self.index)
    }

    fn problem(&self, what: impl std::fmt::Display) -> Problem {
        malformed(format!("{} {what}", self.name()))
    }
}

/// The name of an ELF machine, for messages.
pub(crate) fn machine_name(e_machine: u16) -> String {
    match e_machine {
        3 => "x86 (32-bit)".into(),
        8 => "MIPS".into(),
        20 => "PowerPC".into(),
        21 => "PowerPC64".into(),
        22 => "S/390".into(),
        40 => "ARM (32-bit)".into(),
        62 => "x86-64".into(),
        183 => "AArch64".into(),
        243 => "RISC-V".into(),
        258 => "LoongArch".into(),
        other => format!("ELF machine {other}"),
    }
}

/// Checks the ELF header and every program header.
pub(super) fn read(data: &[u8], machine: &Machine, policy: Policy) -> Result<Headers, Problem> {
    let ehdr = data.get(..EHDR_SIZE).ok_or_else(|| Problem::NotElf("it is too short to be an ELF file".into()))?;
    if ehdr[..4] != *b"\x7fELF" {
        return Err(Problem::NotElf("it is not an ELF file".into()));
    }
    let native_data = if cfg!(target_endian = "little") { 1 } else { 2 };
    let machine_field = u16_at(ehdr, 18).expect("in the header");
    if ehdr[4] != 2 || ehdr[5] != native_data {
        // `e_machine` is at the same place in 32-bit headers.
        let found = if ehdr[5] == native_data { machine_field } else { machine_field.swap_bytes() };
        if found != machine.e_machine {
            return Err(Problem::WrongMachine(found));
        }
        return Err(Problem::NotElf(format!(
            "it is an ELF file of class {} and byte order {}, not a 64-bit library of this machine's byte order",
            ehdr[4], ehdr[5]
        )));
    }
    if machine_field != machine.e_machine {
        return Err(Problem::WrongMachine(machine_field));
    }
    if ehdr[6] != 1 || u32_at(ehdr, 20) != Some(1) {
        return Err(malformed("its ELF version is not 1"));
    }
    // The loader accepts the System V and GNU ABIs, ABI version 0, and a
    // zero padding.
    if !matches!(ehdr[7], 0 | 3) || ehdr[8] != 0 {
        return Err(malformed(format!("its OS ABI {} version {} is not one this system loads", ehdr[7], ehdr[8])));
    }
    if ehdr[9..16].iter().any(|&b| b != 0) {
        return Err(malformed("its ELF identification has non-zero padding"));
    }
    let e_type = u16_at(ehdr, 16).expect("in the header");
    if e_type != 3 {
        let kind = match e_type {
            1 => "a relocatable object file (.o)",
            2 => "an executable",
            4 => "a core dump",
            _ => "an ELF file of unknown type",
        };
        return Err(Problem::NotElf(format!("it is {kind}, not a shared library")));
    }
    let phoff = u64_at(ehdr, 32).expect("in the header");
    let phentsize = u16_at(ehdr, 54).expect("in the header");
    let phnum = u16_at(ehdr, 56).expect("in the header");
    if u64::from(phentsize) != PHDR_SIZE {
        return Err(malformed(format!("its program header size is {phentsize}, not {PHDR_SIZE}")));
    }
    if phnum == 0 || phnum > MAX_PHNUM {
        return Err(malformed(format!("it has {phnum} program headers (1 to {MAX_PHNUM} are accepted)")));
    }
    let table_len = u64::from(phnum) * PHDR_SIZE;
    let table = slice(data, phoff, table_len).filter(|_| phoff.is_multiple_of(8)).ok_or_else(|| {
        malformed(format!(
            "its program headers ({table_len} bytes at offset {phoff:#x}) are not aligned inside the file"
        ))
    })?;
    let phdrs: Vec<Phdr> = (0..usize::from(phnum)).map(|i| Phdr::read(table, i)).collect();
    const KNOWN: [u32; 12] = [
        PT_NULL,
        PT_LOAD,
        PT_DYNAMIC,
        PT_INTERP,
        PT_NOTE,
        PT_PHDR,
        PT_TLS,
        PT_GNU_EH_FRAME,
        PT_GNU_STACK,
        PT_GNU_RELRO,
        PT_GNU_PROPERTY,
        PT_GNU_SFRAME,
    ];
    if let Some(ph) = phdrs.iter().find(|ph| !KNOWN.contains(&ph.p_type) && !machine.segment_types.contains(&ph.p_type))
    {
        return Err(ph.problem("has a type the system loader does not know"));
    }

    let page = policy.page_size;
    let mut loads: Vec<Segment> = Vec::with_capacity(phdrs.len());
    for ph in phdrs.iter().filter(|ph| ph.p_type == PT_LOAD) {
        if !ph.align.is_power_of_two() || ph.align < page {
            return Err(ph.problem(format_args!(
                "has alignment {:#x}; the loader needs a power of two of at least the page size ({page:#x})",
                ph.align
            )));
        }
        if ph.offset % ph.align != ph.vaddr % ph.align {
            return Err(ph.problem(format_args!(
                "has file offset {:#x} and address {:#x}, which differ modulo its alignment {:#x}",
                ph.offset, ph.vaddr, ph.align
            )));
        }
        if ph.memsz == 0 || ph.filesz > ph.memsz {
            return Err(ph.problem(format_args!(
                "has file size {:#x} and memory size {:#x}; the memory size must be at least the file size and not zero",
                ph.filesz, ph.memsz
            )));
        }
        if ph.offset.checked_add(ph.filesz).is_none_or(|end| end > data.len() as u64) {
            return Err(ph.problem(format_args!(
                "needs {:#x} bytes at file offset {:#x}, but the file has {:#x}: it is truncated",
                ph.filesz,
                ph.offset,
                data.len()
            )));
        }
        if ph.vaddr.checked_add(ph.memsz).is_none_or(|end| end > MAX_IMAGE) {
            return Err(ph.problem(format_args!(
                "spans {:#x}+{:#x}, beyond the {MAX_IMAGE:#x} bytes a library may occupy",
                ph.vaddr, ph.memsz
            )));
        }
        if ph.flags & (PF_W | PF_X) == PF_W | PF_X && !policy.allow_writable_code {
            return Err(Problem::WritableCode(format!("{} at {:#x} is writable and executable", ph.name(), ph.vaddr)));
        }
        let segment = Segment {
            index: ph.index,
            vaddr: ph.vaddr,
            memsz: ph.memsz,
            offset: ph.offset,
            filesz: ph.filesz,
            flags: ph.flags,
        };
        if let Some(previous) = loads.last() {
            // The loader maps whole pages and places segments by the first
            // and last one: they must be sorted and must not share a page.
            if align_up(previous.end(), page) > align_down(segment.vaddr, page) {
                return Err(ph.problem(format_args!(
                    "at {:#x} is not after program header {} (which ends at {:#x}) on a page of its own",
                    segment.vaddr,
                    previous.index,
                    previous.end()
                )));
            }
        }
        loads.push(segment);
    }
    if loads.is_empty() {
        return Err(malformed("it has no loadable segment"));
    }

    let mut dynamic = None;
    let mut tls = false;
    let mut eh_frame_hdr = None;
    let mut seen: Vec<u32> = Vec::new();
    let mut stack_flags = None;
    for ph in &phdrs {
        let singleton =
            matches!(ph.p_type, PT_DYNAMIC | PT_PHDR | PT_TLS | PT_GNU_EH_FRAME | PT_GNU_STACK | PT_GNU_RELRO)
                || ph.p_type == PT_GNU_PROPERTY
                || ph.p_type == PT_INTERP;
        if singleton {
            if seen.contains(&ph.p_type) {
                return Err(ph.problem("is the second of its type"));
            }
            seen.push(ph.p_type);
        }
        let in_memory = |writable: bool| {
            loads.iter().find(|s| {
                s.file_offset(ph.vaddr, ph.memsz).is_some()
                    && s.flags & PF_R != 0
                    && (!writable || s.flags & PF_W != 0)
                    && ph.filesz == ph.memsz
            })
        };
        match ph.p_type {
            PT_NULL | PT_LOAD | PT_GNU_SFRAME => {}
            PT_DYNAMIC => {
                if !ph.vaddr.is_multiple_of(8) || ph.memsz < 16 || in_memory(true).is_none() {
                    return Err(ph.problem(format_args!(
                        "({:#x} bytes at {:#x}) is not aligned inside the file contents of a writable loadable segment",
                        ph.memsz, ph.vaddr
                    )));
                }
                dynamic = Some((ph.vaddr, ph.memsz));
            }
            PT_INTERP if slice(data, ph.offset, ph.filesz).is_none() => {
                return Err(ph.problem("is not inside the file"));
            }
            PT_PHDR => {
                // The loader (and every `dl_iterate_phdr` user, such as the
                // unwinder) reads the program headers from this address.
                let at = loads.iter().find_map(|s| s.file_offset(ph.vaddr, table_len));
                if at != Some(phoff) {
                    return Err(ph.problem(format_args!(
                        "at {:#x} does not map the program headers at file offset {phoff:#x}",
                        ph.vaddr
                    )));
                }
            }
            PT_TLS => {
                if ph.memsz == 0 {
                    // The loader ignores an empty template.
                    continue;
                }
                let image = loads.iter().any(|s| s.file_offset(ph.vaddr, ph.filesz).is_some() && s.flags & PF_R != 0);
                if ph.filesz > ph.memsz || !image {
                    return Err(ph.problem(format_args!(
                        "({:#x} bytes initialised of {:#x} at {:#x}) is not inside the file contents of a loadable segment",
                        ph.filesz, ph.memsz, ph.vaddr
                    )));
                }
                if ph.memsz > MAX_TLS_SIZE || !ph.align.is_power_of_two() || ph.align > MAX_TLS_ALIGN {
                    return Err(ph.problem(format_args!(
                        "asks for {:#x} bytes per thread aligned to {:#x} (at most {MAX_TLS_SIZE:#x} bytes, and a power of two up to {MAX_TLS_ALIGN:#x})",
                        ph.memsz, ph.align
                    )));
                }
                tls = true;
            }
            PT_GNU_RELRO => {
                let inside = loads.iter().any(|s| s.writable() && s.contains(ph.vaddr, ph.memsz));
                if !inside {
                    return Err(ph.problem(format_args!(
                        "({:#x} bytes at {:#x}) is not inside one writable loadable segment",
                        ph.memsz, ph.vaddr
                    )));
                }
            }
            PT_NOTE | PT_GNU_PROPERTY => {
                let segment = in_memory(false).ok_or_else(|| {
                    ph.problem(format_args!(
                        "({:#x} bytes at {:#x}) is not inside the file contents of a loadable segment",
                        ph.memsz, ph.vaddr
                    ))
                })?;
                let at = segment.file_offset(ph.vaddr, ph.memsz).expect("checked");
                let bytes = slice(data, at, ph.memsz).expect("segments are inside the file");
                let property = ph.p_type == PT_GNU_PROPERTY;
                notes::check_segment(bytes, ph.align, property).map_err(|e| ph.problem(e))?;
            }
            PT_GNU_EH_FRAME => {
                let segment = in_memory(false).ok_or_else(|| {
                    ph.problem(format_args!(
                        "({:#x} bytes at {:#x}) is not inside the file contents of a loadable segment",
                        ph.memsz, ph.vaddr
                    ))
                })?;
                let at = segment.file_offset(ph.vaddr, ph.memsz).expect("checked");
                let bytes = slice(data, at, ph.memsz).expect("segments are inside the file");
                check_eh_frame_hdr(bytes).map_err(|e| ph.problem(e))?;
                eh_frame_hdr = Some((ph.vaddr, ph.memsz));
            }
            PT_GNU_STACK => stack_flags = Some(ph.flags),
            // Processor-specific types (checked above).
            _ => {}
        }
    }
    let Some(dynamic) = dynamic else {
        return Err(malformed("it has no dynamic segment (PT_DYNAMIC): it is not a shared library"));
    };
    if !policy.allow_writable_code {
        match stack_flags {
            Some(flags) if flags & PF_X != 0 => {
                return Err(Problem::WritableCode(
                    "it asks for an executable stack (PT_GNU_STACK has PF_X): the loader would make every thread's stack executable".into(),
                ));
            }
            None if machine.stack_executable_by_default => {
                return Err(Problem::WritableCode(
                    "it has no PT_GNU_STACK, which on this machine asks for an executable stack: the loader would make every thread's stack executable".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(Headers { loads, dynamic, tls, eh_frame_hdr })
}

/// The unwinder binary-searches `.eh_frame_hdr`'s table when it unwinds
/// through the library: its declared entry count must fit.
fn check_eh_frame_hdr(bytes: &[u8]) -> Result<(), String> {
    // version 1, eh_frame_ptr pcrel|sdata4, fde_count udata4, table
    // datarel|sdata4: the layout every linker writes. Others are read
    // linearly by the unwinder and bounded by the data itself.
    if bytes.len() < 12 || bytes[..4] != [1, 0x1b, 0x03, 0x3b] {
        return Ok(());
    }
    let count = u64::from(u32_at(bytes, 8).expect("12 bytes"));
    if 12 + count * 8 > bytes.len() as u64 {
        return Err(format!("declares {count} table entries, more than its {} bytes hold", bytes.len()));
    }
    Ok(())
}

fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

fn align_up(value: u64, align: u64) -> u64 {
    value.saturating_add(align - 1) & !(align - 1)
}
