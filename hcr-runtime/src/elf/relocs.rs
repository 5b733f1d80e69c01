//! Relocations and the code the loader calls: every relocation must write
//! inside a writable segment, be of a type this machine's loader applies to
//! shared libraries, and name a symbol that exists; every init and fini
//! function must be code of the library.

use super::dynamic::{Dynamic, RELA_SIZE};
use super::headers::Headers;
use super::machine::{Machine, Reloc};
use super::symbols::Symbols;
use super::unwind::FunctionStarts;
use super::{File, Policy, Problem, Segment, malformed, u64_at};

/// More init or fini functions than any library has.
const MAX_INIT_FUNCTIONS: u64 = 1 << 16;

/// An init or fini array, and which of its slots a relocation points at
/// code.
struct FunctionArray {
    name: &'static str,
    addr: u64,
    size: u64,
    covered: Vec<u64>,
}

impl FunctionArray {
    fn new(name: &'static str, (addr, size): (u64, u64), file: &File<'_>) -> Result<FunctionArray, Problem> {
        let slots = size / 8;
        let inside = file.loads.iter().any(|s| s.writable() && s.contains(addr, size));
        if !size.is_multiple_of(8) || slots > MAX_INIT_FUNCTIONS || !addr.is_multiple_of(8) || !inside {
            return Err(malformed(format!(
                "its {name} ({size} bytes at {addr:#x}) is not an aligned array of pointers inside a writable segment"
            )));
        }
        Ok(FunctionArray { name, addr, size, covered: vec![0; (slots as usize).div_ceil(64)] })
    }

    /// Notes a relocation of `target` (8 bytes) producing `value`, if it
    /// lands in this array.
    fn relocated(
        &mut self,
        target: u64,
        width: u64,
        value: Option<u64>,
        file: &File<'_>,
        starts: Option<&FunctionStarts<'_>>,
    ) -> Result<(), Problem> {
        if target.saturating_add(width) <= self.addr || target >= self.addr + self.size {
            return Ok(());
        }
        let slot = (target - self.addr) / 8;
        let code = (target - self.addr).is_multiple_of(8) && width == 8 && value.is_some_and(|v| executable(file, v));
        if !code {
            return Err(malformed(format!(
                "its {} entry {slot} is not relocated to an address in an executable segment",
                self.name
            )));
        }
        let value = value.expect("checked");
        if let Some(start) = starts.and_then(|s| s.inside_a_function(value)) {
            return Err(malformed(format!(
                "its {} entry {slot} points at {value:#x}, inside the function that starts at {start:#x}: the loader would run it from the middle",
                self.name
            )));
        }
        self.covered[slot as usize / 64] |= 1 << (slot % 64);
        Ok(())
    }

    fn check_complete(&self) -> Result<(), Problem> {
        for slot in 0..self.size / 8 {
            if self.covered[slot as usize / 64] & (1 << (slot % 64)) == 0 {
                return Err(malformed(format!(
                    "its {} entry {slot} is not relocated: the loader would call an unrelocated address",
                    self.name
                )));
            }
        }
        Ok(())
    }
}

fn executable(file: &File<'_>, addr: u64) -> bool {
    file.loads.iter().any(|s| s.executable() && s.contains(addr, 1))
}

/// Where relocations may write: writable segments, or with text
/// relocations allowed any segment (the loader unprotects them).
struct Targets<'a> {
    loads: &'a [Segment],
    any_segment: bool,
    last: Option<&'a Segment>,
}

impl<'a> Targets<'a> {
    fn allows(&mut self, addr: u64, width: u64) -> bool {
        if let Some(s) = self.last
            && s.contains(addr, width)
        {
            return true;
        }
        let any = self.any_segment;
        self.last = self.loads.iter().find(|s| (any || s.writable()) && s.contains(addr, width));
        self.last.is_some()
    }
}

/// Checks every relocation table, and the init and fini functions.
pub(super) fn check(
    file: &File<'_>,
    headers: &Headers,
    dynamic: &Dynamic,
    symbols: &Symbols<'_>,
    machine: &Machine,
    policy: Policy,
) -> Result<(), Problem> {
    let starts = headers.eh_frame_hdr.and_then(|hdr| FunctionStarts::read(file, hdr));
    for (name, addr) in [("DT_INIT", dynamic.init), ("DT_FINI", dynamic.fini)] {
        let Some(addr) = addr else { continue };
        if !executable(file, addr) {
            return Err(malformed(format!("its {name} function at {addr:#x} is not in an executable segment")));
        }
        if let Some(start) = starts.as_ref().and_then(|s| s.inside_a_function(addr)) {
            return Err(malformed(format!(
                "its {name} function at {addr:#x} is inside the function that starts at {start:#x}: the loader would run it from the middle"
            )));
        }
    }
    for &(name, addr) in &dynamic.code {
        if !executable(file, addr) {
            return Err(malformed(format!("its {name} at {addr:#x} is not in an executable segment")));
        }
    }
    for &(name, addr, len) in &dynamic.words {
        if !file.loads.iter().any(|s| s.writable() && s.contains(addr, len)) || !addr.is_multiple_of(8) {
            return Err(malformed(format!("its {name} at {addr:#x} is not aligned inside a writable segment")));
        }
    }
    let mut arrays = Vec::with_capacity(2);
    if let Some(range) = dynamic.init_array {
        arrays.push(FunctionArray::new("DT_INIT_ARRAY", range, file)?);
    }
    if let Some(range) = dynamic.fini_array {
        arrays.push(FunctionArray::new("DT_FINI_ARRAY", range, file)?);
    }

    let image_end = file.loads.last().map_or(0, |s| s.end());
    let allow_text = policy.allow_writable_code && dynamic.text_relocations().is_some();
    let mut walk = Walk {
        file,
        machine,
        symbols,
        has_tls: headers.tls,
        image_end,
        targets: Targets { loads: file.loads, any_segment: allow_text, last: None },
        arrays: &mut arrays,
        starts: starts.as_ref(),
    };

    let table = |what: &str, (addr, size): (u64, u64)| {
        if !size.is_multiple_of(RELA_SIZE) {
            return Err(malformed(format!("its {what} size {size} is not a multiple of {RELA_SIZE}")));
        }
        file.table(what, addr, size, 8)
    };
    // glibc takes DT_JMPREL out of DT_RELA when it ends it (GNU ld counts
    // it in), and applies DT_RELACOUNT to what is left.
    let mut rela_part = None;
    let mut jmprel_part = None;
    if let Some(rela) = dynamic.rela {
        let bytes = table("DT_RELA table", rela)?;
        let mut own = rela.1;
        if let Some(jmprel) = dynamic.jmprel {
            let (r_start, r_end) = (rela.0, rela.0 + rela.1);
            let (j_start, j_end) = (jmprel.0, jmprel.0 + jmprel.1);
            let disjoint = j_end <= r_start || j_start >= r_end;
            let suffix = j_end == r_end && j_start >= r_start;
            if !disjoint && !suffix {
                return Err(malformed("its DT_JMPREL table overlaps its DT_RELA table"));
            }
            if suffix {
                own = j_start - r_start;
            }
        }
        rela_part = Some(&bytes[..own as usize]);
    }
    if let Some(jmprel) = dynamic.jmprel {
        jmprel_part = Some(table("DT_JMPREL table", jmprel)?);
    }
    if let Some(bytes) = rela_part {
        let relative = dynamic.relacount.unwrap_or(0);
        if relative > bytes.len() as u64 / RELA_SIZE {
            return Err(malformed(format!(
                "its DT_RELACOUNT ({relative}) is more than its {} DT_RELA relocations",
                bytes.len() as u64 / RELA_SIZE
            )));
        }
        walk.rela("DT_RELA", bytes, relative)?;
    }
    if let Some(bytes) = jmprel_part {
        walk.rela("DT_JMPREL", bytes, 0)?;
    }
    if let Some((addr, size)) = dynamic.relr {
        if !size.is_multiple_of(8) {
            return Err(malformed(format!("its DT_RELR size {size} is not a multiple of 8")));
        }
        walk.relr(file.table("DT_RELR table", addr, size, 8)?)?;
    }
    for array in &arrays {
        array.check_complete()?;
    }
    Ok(())
}

struct Walk<'a, 'f> {
    file: &'a File<'f>,
    machine: &'a Machine,
    symbols: &'a Symbols<'f>,
    has_tls: bool,
    image_end: u64,
    targets: Targets<'a>,
    arrays: &'a mut Vec<FunctionArray>,
    starts: Option<&'a FunctionStarts<'f>>,
}

impl Walk<'_, '_> {
    /// Checks a table of `Elf64_Rela`; the first `relative` must be
    /// relative relocations (glibc applies them without looking).
    fn rela(&mut self, table: &str, bytes: &[u8], relative: u64) -> Result<(), Problem> {
        for (index, entry) in bytes.chunks_exact(RELA_SIZE as usize).enumerate() {
            let offset = u64_at(entry, 0).expect("24 bytes");
            let info = u64_at(entry, 8).expect("24 bytes");
            let addend = u64_at(entry, 16).expect("24 bytes");
            let (r_type, symbol) = (info as u32, info >> 32);
            let kind = (self.machine.classify)(r_type);
            let describe = || format!("its {table} relocation {index} ({})", self.machine.describe(r_type));
            if (index as u64) < relative && kind != Reloc::Relative {
                return Err(malformed(format!(
                    "{}: DT_RELACOUNT says the first {relative} are relative relocations",
                    describe()
                )));
            }
            let (width, value) = match kind {
                Reloc::None => continue,
                Reloc::Relative => {
                    if addend > self.image_end {
                        return Err(malformed(format!(
                            "{} points at {addend:#x}, outside the library's {:#x} bytes",
                            describe(),
                            self.image_end
                        )));
                    }
                    (8, Some(addend))
                }
                // A defined symbol (a C constructor's function, say) gives
                // its own address.
                Reloc::Symbol => {
                    let sym = (symbol < self.symbols.count).then(|| self.symbols.get(symbol));
                    (8, sym.filter(|s| symbol != 0 && s.defined()).map(|s| s.value.wrapping_add(addend)))
                }
                Reloc::Tls { width } => {
                    // Another library's thread-local needs no segment here,
                    // as long as the name cannot resolve to this library
                    // (whose missing TLS block would make the loader divide
                    // by its zero alignment).
                    let foreign = symbol != 0
                        && symbol < self.symbols.count
                        && !self.symbols.get(symbol).defined()
                        && !self.symbols.defines(self.symbols.get(symbol).name);
                    if !self.has_tls && !foreign {
                        return Err(malformed(format!("{} needs a thread-local segment it does not have", describe())));
                    }
                    (width, None)
                }
                Reloc::Irelative => {
                    return Err(Problem::RunsCodeWhileLoading(format!("{} calls an ifunc resolver that", describe())));
                }
                Reloc::Copy => {
                    return Err(malformed(format!("{} is a copy relocation, which only executables use", describe())));
                }
                Reloc::Unsupported => {
                    return Err(malformed(format!(
                        "{} is not a relocation type the system loader applies in libraries",
                        describe()
                    )));
                }
            };
            if symbol >= self.symbols.count {
                return Err(malformed(format!("{} names symbol {symbol} of {}", describe(), self.symbols.count)));
            }
            if !self.targets.allows(offset, width) {
                return Err(malformed(format!(
                    "{} writes {width} bytes at {offset:#x}, outside the library's writable segments",
                    describe()
                )));
            }
            for array in self.arrays.iter_mut() {
                array.relocated(offset, width, value, self.file, self.starts)?;
            }
        }
        Ok(())
    }

    /// Checks a `DT_RELR` table: addresses and bitmaps of words that get
    /// the load base added.
    fn relr(&mut self, bytes: &[u8]) -> Result<(), Problem> {
        let mut next: Option<u64> = None;
        for (index, entry) in bytes.chunks_exact(8).enumerate() {
            let word = u64_at(entry, 0).expect("8 bytes");
            if word & 1 == 0 {
                self.relr_target(index, word)?;
                next = Some(word + 8);
            } else {
                let Some(base) = next else {
                    return Err(malformed(format!(
                        "its DT_RELR entry {index} is a bitmap without an address before it"
                    )));
                };
                for bit in 1..64 {
                    if word >> bit & 1 != 0 {
                        self.relr_target(index, base + (bit - 1) * 8)?;
                    }
                }
                next = Some(base + 63 * 8);
            }
        }
        Ok(())
    }

    fn relr_target(&mut self, index: usize, target: u64) -> Result<(), Problem> {
        if !target.is_multiple_of(8) || target > self.image_end || !self.targets.allows(target, 8) {
            return Err(malformed(format!(
                "its DT_RELR entry {index} relocates {target:#x}, not an aligned word of a writable segment"
            )));
        }
        // What the word holds before the base is added (zero past the file).
        let value = self.file.bytes(target, 8).map_or(0, |b| u64_at(b, 0).expect("8 bytes"));
        if value > self.image_end {
            return Err(malformed(format!(
                "its DT_RELR entry {index} relocates {target:#x}, which holds {value:#x}, outside the library"
            )));
        }
        for array in self.arrays.iter_mut() {
            array.relocated(target, 8, Some(value), self.file, self.starts)?;
        }
        Ok(())
    }
}
