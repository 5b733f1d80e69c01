//! Symbol versioning: the loader walks the version needs and definitions to
//! their last `next` link, sizes an array by the highest version index it
//! finds there, and then indexes that array with every `DT_VERSYM` entry
//! of a symbol it resolves, without bounds.

use super::dynamic::Dynamic;
use super::symbols::Symbols;
use super::{File, Problem, malformed, u16_at, u32_at};

/// More version records than any library has.
const MAX_RECORDS: u64 = 1 << 16;

/// The validated version tables.
#[derive(Debug, Default)]
pub(super) struct Versions<'a> {
    /// `DT_VERSYM`: one `u16` per symbol.
    pub(super) versym: Option<&'a [u8]>,
}

/// Validates `DT_VERNEED`, `DT_VERDEF` and `DT_VERSYM`.
pub(super) fn read<'a>(file: &File<'a>, dynamic: &Dynamic, symbols: &Symbols<'a>) -> Result<Versions<'a>, Problem> {
    let mut highest = 0u16;
    let mut records = 0u64;
    let string = |what: &str, offset: u32| {
        if symbols.has_string(u64::from(offset)) {
            Ok(())
        } else {
            Err(malformed(format!("its {what} names string {offset}, outside the string table")))
        }
    };
    if let Some((addr, count)) = dynamic.verneed {
        let mut entry = addr;
        let mut entries = 0u64;
        loop {
            let bytes = file.table("version need record", entry, 16, 4)?;
            let (version, aux_count) = (u16_at(bytes, 0).expect("16"), u16_at(bytes, 2).expect("16"));
            let (file_name, aux, next) =
                (u32_at(bytes, 4).expect("16"), u32_at(bytes, 8).expect("16"), u32_at(bytes, 12).expect("16"));
            if version != 1 {
                return Err(malformed(format!("its version need record at {entry:#x} has version {version}, not 1")));
            }
            string("version need record", file_name)?;
            // The loader asserts that the named library is loaded: it must be
            // one of the libraries this one needs.
            let name = symbols.string(u64::from(file_name));
            if !dynamic.needed.iter().any(|&n| symbols.string(n) == name) {
                return Err(malformed(format!(
                    "its version need record at {entry:#x} names `{}`, which is not one of its DT_NEEDED libraries",
                    String::from_utf8_lossy(name)
                )));
            }
            let mut at = entry.checked_add(u64::from(aux)).ok_or_else(|| malformed("a version need overflows"))?;
            let mut auxes = 0u64;
            loop {
                let bytes = file.table("version need entry", at, 16, 4)?;
                let (other, name, next_aux) =
                    (u16_at(bytes, 6).expect("16"), u32_at(bytes, 8).expect("16"), u32_at(bytes, 12).expect("16"));
                string("version need entry", name)?;
                highest = highest.max(other & 0x7fff);
                auxes += 1;
                records += 1;
                if next_aux == 0 {
                    break;
                }
                at += u64::from(next_aux);
                if records > MAX_RECORDS {
                    return Err(malformed("its version needs do not end"));
                }
            }
            if auxes != u64::from(aux_count) {
                return Err(malformed(format!(
                    "its version need record at {entry:#x} says {aux_count} entries but links {auxes}"
                )));
            }
            entries += 1;
            if next == 0 {
                break;
            }
            entry += u64::from(next);
            if entries > MAX_RECORDS {
                return Err(malformed("its version need records do not end"));
            }
        }
        if entries != count {
            return Err(malformed(format!("its DT_VERNEEDNUM is {count}, but {entries} records are linked")));
        }
    }
    if let Some((addr, count)) = dynamic.verdef {
        let mut entry = addr;
        let mut entries = 0u64;
        loop {
            let bytes = file.table("version definition", entry, 20, 4)?;
            let (version, index, aux_count) =
                (u16_at(bytes, 0).expect("20"), u16_at(bytes, 4).expect("20"), u16_at(bytes, 6).expect("20"));
            let (aux, next) = (u32_at(bytes, 12).expect("20"), u32_at(bytes, 16).expect("20"));
            if version != 1 || aux_count == 0 {
                return Err(malformed(format!(
                    "its version definition at {entry:#x} has version {version} and {aux_count} names (version 1, and at least one name)"
                )));
            }
            highest = highest.max(index & 0x7fff);
            let mut at =
                entry.checked_add(u64::from(aux)).ok_or_else(|| malformed("a version definition overflows"))?;
            for i in 0..aux_count {
                let bytes = file.table("version definition name", at, 8, 4)?;
                let (name, next_aux) = (u32_at(bytes, 0).expect("8"), u32_at(bytes, 4).expect("8"));
                string("version definition", name)?;
                records += 1;
                if i + 1 < aux_count {
                    if next_aux == 0 {
                        return Err(malformed(format!(
                            "its version definition at {entry:#x} says {aux_count} names but links fewer"
                        )));
                    }
                    at += u64::from(next_aux);
                }
            }
            entries += 1;
            if next == 0 {
                break;
            }
            entry += u64::from(next);
            if entries > MAX_RECORDS || records > MAX_RECORDS {
                return Err(malformed("its version definitions do not end"));
            }
        }
        if entries != count {
            return Err(malformed(format!("its DT_VERDEFNUM is {count}, but {entries} definitions are linked")));
        }
    }
    let Some(addr) = dynamic.versym else { return Ok(Versions::default()) };
    if highest == 0 {
        return Err(malformed("its version records define no version index, but it has DT_VERSYM"));
    }
    let versym = file.table("version symbol table", addr, symbols.count * 2, 2)?;
    for index in 0..symbols.count as usize {
        let version = u16_at(versym, index * 2).expect("inside") & 0x7fff;
        if version > highest {
            return Err(malformed(format!(
                "its symbol {index} has version index {version}, but the highest defined is {highest}"
            )));
        }
    }
    Ok(Versions { versym: Some(versym) })
}
