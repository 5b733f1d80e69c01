//! The dynamic section: the loader walks it to its `DT_NULL`, then follows
//! the table addresses it finds there without further checks.

use super::headers::Headers;
use super::{File, Problem, malformed, u64_at};

pub(super) const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_PLTRELSZ: u64 = 2;
const DT_PLTGOT: u64 = 3;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_STRSZ: u64 = 10;
const DT_SYMENT: u64 = 11;
const DT_INIT: u64 = 12;
const DT_FINI: u64 = 13;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_REL: u64 = 17;
const DT_RELSZ: u64 = 18;
const DT_RELENT: u64 = 19;
const DT_PLTREL: u64 = 20;
const DT_TEXTREL: u64 = 22;
const DT_JMPREL: u64 = 23;
const DT_INIT_ARRAY: u64 = 25;
const DT_FINI_ARRAY: u64 = 26;
const DT_INIT_ARRAYSZ: u64 = 27;
const DT_FINI_ARRAYSZ: u64 = 28;
const DT_RUNPATH: u64 = 29;
const DT_FLAGS: u64 = 30;
const DT_PREINIT_ARRAY: u64 = 32;
const DT_PREINIT_ARRAYSZ: u64 = 33;
const DT_RELRSZ: u64 = 35;
const DT_RELR: u64 = 36;
const DT_RELRENT: u64 = 37;
const DT_GNU_HASH: u64 = 0x6fff_fef5;
const DT_TLSDESC_PLT: u64 = 0x6fff_fef6;
const DT_TLSDESC_GOT: u64 = 0x6fff_fef7;
const DT_VERSYM: u64 = 0x6fff_fff0;
const DT_RELACOUNT: u64 = 0x6fff_fff9;
const DT_RELCOUNT: u64 = 0x6fff_fffa;
const DT_VERDEF: u64 = 0x6fff_fffc;
const DT_VERDEFNUM: u64 = 0x6fff_fffd;
const DT_VERNEED: u64 = 0x6fff_fffe;
const DT_VERNEEDNUM: u64 = 0x6fff_ffff;
const DT_AUXILIARY: u64 = 0x7fff_fffd;
const DT_FILTER: u64 = 0x7fff_ffff;

/// `DF_TEXTREL` in `DT_FLAGS`.
const DF_TEXTREL: u64 = 4;

/// Size of an `Elf64_Rela`.
pub(super) const RELA_SIZE: u64 = 24;
/// Size of an `Elf64_Sym`.
pub(super) const SYM_SIZE: u64 = 24;

/// The entries the validator (and the loader) act on.
#[derive(Debug, Default)]
pub(super) struct Dynamic {
    /// String offsets of `DT_NEEDED` entries, in order.
    pub(super) needed: Vec<u64>,
    pub(super) strtab: u64,
    pub(super) strsz: u64,
    pub(super) symtab: u64,
    pub(super) hash: Option<u64>,
    pub(super) gnu_hash: Option<u64>,
    /// `DT_RELA`, `DT_RELASZ`.
    pub(super) rela: Option<(u64, u64)>,
    pub(super) relacount: Option<u64>,
    /// `DT_JMPREL`, `DT_PLTRELSZ`.
    pub(super) jmprel: Option<(u64, u64)>,
    /// `DT_RELR`, `DT_RELRSZ`.
    pub(super) relr: Option<(u64, u64)>,
    pub(super) init: Option<u64>,
    pub(super) fini: Option<u64>,
    /// `DT_INIT_ARRAY`, `DT_INIT_ARRAYSZ`.
    pub(super) init_array: Option<(u64, u64)>,
    /// `DT_FINI_ARRAY`, `DT_FINI_ARRAYSZ`.
    pub(super) fini_array: Option<(u64, u64)>,
    pub(super) versym: Option<u64>,
    /// `DT_VERNEED`, `DT_VERNEEDNUM`.
    pub(super) verneed: Option<(u64, u64)>,
    /// `DT_VERDEF`, `DT_VERDEFNUM`.
    pub(super) verdef: Option<(u64, u64)>,
    /// Other string offsets: `DT_SONAME`, `DT_RPATH`, `DT_RUNPATH`.
    pub(super) strings: Vec<(&'static str, u64)>,
    /// Addresses of code the loader may call: `DT_TLSDESC_PLT`.
    pub(super) code: Vec<(&'static str, u64)>,
    /// Writable words the loader may write: `DT_PLTGOT` (3 words),
    /// `DT_TLSDESC_GOT` (1 word).
    pub(super) words: Vec<(&'static str, u64, u64)>,
    textrel: Option<&'static str>,
}

impl Dynamic {
    /// Why the loader would write to the library's code, if it would.
    pub(super) fn text_relocations(&self) -> Option<&'static str> {
        self.textrel
    }
}

/// Reads the dynamic section of a library whose headers passed.
pub(super) fn read(file: &File<'_>, headers: &Headers) -> Result<Dynamic, Problem> {
    let (addr, size) = headers.dynamic;
    let bytes = file.table("dynamic section", addr, size, 8)?;
    let mut d = Dynamic::default();
    let mut seen: Vec<u64> = Vec::with_capacity(32);
    let mut terminated = false;
    let mut values = [None::<u64>; 40];
    let mut extra: Vec<(u64, u64)> = Vec::new();
    for entry in bytes.chunks_exact(16) {
        let tag = u64_at(entry, 0).expect("16 bytes");
        let value = u64_at(entry, 8).expect("16 bytes");
        if tag == DT_NULL {
            terminated = true;
            break;
        }
        if tag == DT_NEEDED {
            d.needed.push(value);
            continue;
        }
        let name = tag_name(tag);
        let Some(name) = name else {
            // The loader ignores tags it does not know.
            continue;
        };
        if seen.contains(&tag) {
            return Err(malformed(format!("its dynamic section has {name} twice")));
        }
        seen.push(tag);
        match tag {
            DT_REL | DT_RELSZ | DT_RELENT | DT_RELCOUNT => {
                return Err(malformed(format!(
                    "its dynamic section has {name}: this machine's loader only applies RELA relocations"
                )));
            }
            DT_PREINIT_ARRAY | DT_PREINIT_ARRAYSZ => {
                return Err(malformed(format!("its dynamic section has {name}, which only executables may have")));
            }
            DT_AUXILIARY | DT_FILTER => {
                return Err(malformed(format!(
                    "it is a filter library ({name}), whose symbols come from another library: it cannot be a module"
                )));
            }
            DT_TEXTREL => d.textrel = Some("DT_TEXTREL"),
            DT_FLAGS if value & DF_TEXTREL != 0 => d.textrel = Some("DF_TEXTREL in DT_FLAGS"),
            _ => {}
        }
        match usize::try_from(tag).ok().filter(|&t| t < values.len()) {
            Some(index) => values[index] = Some(value),
            None => extra.push((tag, value)),
        }
    }
    if !terminated {
        return Err(malformed("its dynamic section has no DT_NULL entry inside its segment"));
    }
    let get = |tag: u64| match usize::try_from(tag).ok().filter(|&t| t < values.len()) {
        Some(index) => values[index],
        None => extra.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v),
    };
    let both = |a: u64, b: u64| -> Result<Option<(u64, u64)>, Problem> {
        match (get(a), get(b)) {
            (Some(x), Some(y)) => Ok(Some((x, y))),
            (None, None) => Ok(None),
            _ => Err(malformed(format!(
                "its dynamic section has one of {} and {} without the other",
                tag_name(a).unwrap_or("?"),
                tag_name(b).unwrap_or("?")
            ))),
        }
    };
    let required = |tag: u64| {
        get(tag).ok_or_else(|| malformed(format!("its dynamic section has no {}", tag_name(tag).unwrap_or("?"))))
    };
    d.strtab = required(DT_STRTAB)?;
    d.strsz = required(DT_STRSZ)?;
    d.symtab = required(DT_SYMTAB)?;
    if let Some(entsize) = get(DT_SYMENT).filter(|&e| e != SYM_SIZE) {
        return Err(malformed(format!("its DT_SYMENT is {entsize}, not {SYM_SIZE}")));
    }
    d.hash = get(DT_HASH);
    d.gnu_hash = get(DT_GNU_HASH);
    if d.hash.is_none() && d.gnu_hash.is_none() {
        return Err(malformed("it has no symbol hash table (DT_GNU_HASH or DT_HASH)"));
    }
    d.rela = both(DT_RELA, DT_RELASZ)?;
    match (d.rela, get(DT_RELAENT)) {
        (_, Some(entsize)) if entsize != RELA_SIZE => {
            return Err(malformed(format!("its DT_RELAENT is {entsize}, not {RELA_SIZE}")));
        }
        (Some(_), None) => return Err(malformed("its dynamic section has DT_RELA without DT_RELAENT")),
        _ => {}
    }
    d.relacount = get(DT_RELACOUNT);
    if d.relacount.is_some() && d.rela.is_none() {
        return Err(malformed("its dynamic section has DT_RELACOUNT without DT_RELA"));
    }
    d.jmprel = both(DT_JMPREL, DT_PLTRELSZ)?;
    match (d.jmprel, get(DT_PLTREL)) {
        (Some(_), Some(kind)) if kind == DT_RELA => {}
        (Some(_), Some(kind)) => {
            return Err(malformed(format!("its DT_PLTREL is {kind}, but this machine only has RELA relocations")));
        }
        (None, None) => {}
        _ => return Err(malformed("its dynamic section has one of DT_JMPREL and DT_PLTREL without the other")),
    }
    d.relr = both(DT_RELR, DT_RELRSZ)?;
    match (d.relr, get(DT_RELRENT)) {
        (_, Some(entsize)) if entsize != 8 => return Err(malformed(format!("its DT_RELRENT is {entsize}, not 8"))),
        (Some(_), None) => return Err(malformed("its dynamic section has DT_RELR without DT_RELRENT")),
        _ => {}
    }
    d.init = get(DT_INIT);
    d.fini = get(DT_FINI);
    d.init_array = both(DT_INIT_ARRAY, DT_INIT_ARRAYSZ)?;
    d.fini_array = both(DT_FINI_ARRAY, DT_FINI_ARRAYSZ)?;
    d.versym = get(DT_VERSYM);
    d.verneed = both(DT_VERNEED, DT_VERNEEDNUM)?;
    d.verdef = both(DT_VERDEF, DT_VERDEFNUM)?;
    // The loader dereferences DT_VERSYM whenever it has version
    // definitions or needs, and version records whenever it has DT_VERSYM.
    if d.versym.is_some() != (d.verneed.is_some() || d.verdef.is_some()) {
        return Err(malformed(
            "its dynamic section has DT_VERSYM without version records (DT_VERNEED, DT_VERDEF) or the reverse",
        ));
    }
    for tag in [DT_SONAME, DT_RPATH, DT_RUNPATH] {
        if let Some(offset) = get(tag) {
            d.strings.push((tag_name(tag).expect("known"), offset));
        }
    }
    if let Some(addr) = get(DT_TLSDESC_PLT) {
        d.code.push(("DT_TLSDESC_PLT", addr));
    }
    if let Some(addr) = get(DT_PLTGOT) {
        d.words.push(("DT_PLTGOT", addr, 24));
    }
    if let Some(addr) = get(DT_TLSDESC_GOT) {
        d.words.push(("DT_TLSDESC_GOT", addr, 8));
    }
    Ok(d)
}

/// Names of the tags the loader acts on; `None` for tags it ignores.
fn tag_name(tag: u64) -> Option<&'static str> {
    Some(match tag {
        DT_NEEDED => "DT_NEEDED",
        DT_PLTRELSZ => "DT_PLTRELSZ",
        DT_PLTGOT => "DT_PLTGOT",
        DT_HASH => "DT_HASH",
        DT_STRTAB => "DT_STRTAB",
        DT_SYMTAB => "DT_SYMTAB",
        DT_RELA => "DT_RELA",
        DT_RELASZ => "DT_RELASZ",
        DT_RELAENT => "DT_RELAENT",
        DT_STRSZ => "DT_STRSZ",
        DT_SYMENT => "DT_SYMENT",
        DT_INIT => "DT_INIT",
        DT_FINI => "DT_FINI",
        DT_SONAME => "DT_SONAME",
        DT_RPATH => "DT_RPATH",
        DT_REL => "DT_REL",
        DT_RELSZ => "DT_RELSZ",
        DT_RELENT => "DT_RELENT",
        DT_PLTREL => "DT_PLTREL",
        DT_TEXTREL => "DT_TEXTREL",
        DT_JMPREL => "DT_JMPREL",
        DT_INIT_ARRAY => "DT_INIT_ARRAY",
        DT_FINI_ARRAY => "DT_FINI_ARRAY",
        DT_INIT_ARRAYSZ => "DT_INIT_ARRAYSZ",
        DT_FINI_ARRAYSZ => "DT_FINI_ARRAYSZ",
        DT_RUNPATH => "DT_RUNPATH",
        DT_FLAGS => "DT_FLAGS",
        DT_PREINIT_ARRAY => "DT_PREINIT_ARRAY",
        DT_PREINIT_ARRAYSZ => "DT_PREINIT_ARRAYSZ",
        DT_RELRSZ => "DT_RELRSZ",
        DT_RELR => "DT_RELR",
        DT_RELRENT => "DT_RELRENT",
        DT_GNU_HASH => "DT_GNU_HASH",
        DT_TLSDESC_PLT => "DT_TLSDESC_PLT",
        DT_TLSDESC_GOT => "DT_TLSDESC_GOT",
        DT_VERSYM => "DT_VERSYM",
        DT_RELACOUNT => "DT_RELACOUNT",
        DT_RELCOUNT => "DT_RELCOUNT",
        DT_VERDEF => "DT_VERDEF",
        DT_VERDEFNUM => "DT_VERDEFNUM",
        DT_VERNEED => "DT_VERNEED",
        DT_VERNEEDNUM => "DT_VERNEEDNUM",
        DT_AUXILIARY => "DT_AUXILIARY",
        DT_FILTER => "DT_FILTER",
        _ => return None,
    })
}
