//! ELF notes: the loader parses GNU property notes (`PT_GNU_PROPERTY`) from
//! memory, trusting their sizes; the linker's build id (`NT_GNU_BUILD_ID`)
//! identifies a build for change detection.

use super::{u16_at, u32_at, u64_at};

/// `NT_GNU_BUILD_ID`.
const NT_GNU_BUILD_ID: u32 = 3;
/// `NT_GNU_PROPERTY_TYPE_0`.
const NT_GNU_PROPERTY_TYPE_0: u32 = 5;
/// The longest build id accepted (linkers write 8 to 20 bytes; a UUID is 16).
const MAX_BUILD_ID: usize = 64;
/// The most note bytes read to find a build id.
const MAX_NOTES: u64 = 64 << 10;
/// The most program headers read to find a build id.
const MAX_PHNUM: u64 = 128;

/// Walks the notes of one note segment, `bytes`, laid out with `align`
/// (4 or 8; 0 and 1 mean 4), calling `each(type, name, desc)`.
fn walk(bytes: &[u8], align: u64, mut each: impl FnMut(u32, &[u8], &[u8]) -> Result<(), String>) -> Result<(), String> {
    let align = match align {
        0 | 1 | 4 => 4,
        8 => 8,
        other => return Err(format!("has note alignment {other}, not 4 or 8")),
    };
    let mut at = 0usize;
    // The loader stops when less than a header is left.
    while bytes.len() - at >= 12 {
        let namesz = u32_at(bytes, at).expect("12 bytes") as usize;
        let descsz = u32_at(bytes, at + 4).expect("12 bytes") as usize;
        let n_type = u32_at(bytes, at + 8).expect("12 bytes");
        let name_start = at + 12;
        let desc_start = name_start.checked_add(namesz).and_then(|e| align_up(e, align));
        let desc_end = desc_start.and_then(|d| d.checked_add(descsz));
        let (Some(desc_start), Some(desc_end)) = (desc_start, desc_end) else {
            return Err(format!("has a note at byte {at} whose sizes overflow"));
        };
        if desc_end > bytes.len() {
            return Err(format!(
                "has a note at byte {at} ({namesz} name and {descsz} data bytes) that runs past its end ({} bytes)",
                bytes.len()
            ));
        }
        each(n_type, &bytes[name_start..name_start + namesz], &bytes[desc_start..desc_end])?;
        at = align_up(desc_end, align).map_or(bytes.len(), |next| next.min(bytes.len()));
    }
    Ok(())
}

fn align_up(value: usize, align: usize) -> Option<usize> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// Checks the notes of a `PT_NOTE` or `PT_GNU_PROPERTY` segment: every note
/// inside it, and every GNU property array well formed.
pub(super) fn check_segment(bytes: &[u8], align: u64, property: bool) -> Result<(), String> {
    let mut properties = 0;
    walk(bytes, align, |n_type, name, desc| {
        if n_type == NT_GNU_PROPERTY_TYPE_0 && name == b"GNU\0" {
            properties += 1;
            check_properties(desc)?;
        }
        Ok(())
    })?;
    if property && properties != 1 {
        return Err(format!("holds {properties} GNU property notes, not one"));
    }
    Ok(())
}

/// A GNU property array: `(type, size, data padded to 8)` items that fill
/// the note exactly.
fn check_properties(desc: &[u8]) -> Result<(), String> {
    if desc.len() < 8 || !desc.len().is_multiple_of(8) {
        return Err(format!("has a GNU property note of {} bytes, not a non-zero multiple of 8", desc.len()));
    }
    let mut at = 0usize;
    while at < desc.len() {
        let size = u32_at(desc, at + 4).ok_or("has a GNU property that is cut short")? as usize;
        let end = (at + 8).checked_add(size).filter(|&e| e <= desc.len());
        let Some(end) = end else {
            return Err(format!("has a GNU property of {size} bytes that runs past its note"));
        };
        at = align_up(end, 8).unwrap_or(usize::MAX);
    }
    Ok(())
}

/// The build id of an ELF file read through `read_at(offset, buf)` (which
/// fills `buf` from `offset` and says whether it could): bounded reads of
/// the ELF header, the program headers and the note segments, never the
/// rest of the file. `None` when the file is not a 64-bit ELF file of this
/// byte order or has no build id.
pub(crate) fn build_id_from_reader(mut read_at: impl FnMut(u64, &mut [u8]) -> bool) -> Option<Vec<u8>> {
    let mut ehdr = [0u8; 64];
    if !read_at(0, &mut ehdr) || ehdr[..4] != *b"\x7fELF" || ehdr[4] != 2 {
        return None;
    }
    let native_data = if cfg!(target_endian = "little") { 1 } else { 2 };
    if ehdr[5] != native_data || u16_at(&ehdr, 54)? != 56 {
        return None;
    }
    let phoff = u64_at(&ehdr, 32)?;
    let phnum = u64::from(u16_at(&ehdr, 56)?);
    if phnum > MAX_PHNUM {
        return None;
    }
    let mut phdrs = vec![0u8; (phnum * 56) as usize];
    if !read_at(phoff, &mut phdrs) {
        return None;
    }
    for i in 0..phnum as usize {
        let at = i * 56;
        if u32_at(&phdrs, at)? != super::headers::PT_NOTE {
            continue;
        }
        let (offset, size, align) = (u64_at(&phdrs, at + 8)?, u64_at(&phdrs, at + 32)?, u64_at(&phdrs, at + 48)?);
        if size > MAX_NOTES {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        if !read_at(offset, &mut notes) {
            continue;
        }
        let mut found = None;
        let _ = walk(&notes, align, |n_type, name, desc| {
            if found.is_none()
                && n_type == NT_GNU_BUILD_ID
                && name == b"GNU\0"
                && (1..=MAX_BUILD_ID).contains(&desc.len())
            {
                found = Some(desc.to_vec());
            }
            Ok(())
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(n_type: u32, name: &[u8], desc: &[u8], align: usize) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_ne_bytes());
        out.extend_from_slice(&n_type.to_ne_bytes());
        out.extend_from_slice(name);
        out.resize(align_up(out.len(), align).unwrap(), 0);
        out.extend_from_slice(desc);
        out.resize(align_up(out.len(), align).unwrap(), 0);
        out
    }

    fn property(p_type: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&p_type.to_ne_bytes());
        out.extend_from_slice(&(data.len() as u32).to_ne_bytes());
        out.extend_from_slice(data);
        out.resize(align_up(out.len(), 8).unwrap(), 0);
        out
    }

    #[test]
    fn well_formed_notes_pass() {
        let mut bytes = note(NT_GNU_BUILD_ID, b"GNU\0", &[0xab; 20], 4);
        bytes.extend(note(1, b"GNU\0", &[0, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0], 4));
        assert_eq!(check_segment(&bytes, 4, false), Ok(()));
        let props = [property(0xc000_0002, &3u32.to_ne_bytes()), property(0xc000_8002, &1u32.to_ne_bytes())].concat();
        assert_eq!(check_segment(&note(NT_GNU_PROPERTY_TYPE_0, b"GNU\0", &props, 8), 8, true), Ok(()));
    }

    #[test]
    fn a_note_running_past_its_segment_is_refused() {
        let mut bytes = note(NT_GNU_BUILD_ID, b"GNU\0", &[0xab; 20], 4);
        bytes[4] = 200; // descsz
        assert!(check_segment(&bytes, 4, false).unwrap_err().contains("runs past"));
        let mut bytes = note(NT_GNU_BUILD_ID, b"GNU\0", &[0xab; 20], 4);
        bytes[..4].copy_from_slice(&u32::MAX.to_ne_bytes()); // namesz
        assert!(check_segment(&bytes, 4, false).is_err());
        assert!(check_segment(&bytes, 3, false).unwrap_err().contains("alignment"));
    }

    #[test]
    fn a_property_running_past_its_note_is_refused() {
        let mut props = property(0xc000_0002, &3u32.to_ne_bytes());
        props[4] = 64; // pr_datasz
        let bytes = note(NT_GNU_PROPERTY_TYPE_0, b"GNU\0", &props, 8);
        assert!(check_segment(&bytes, 8, true).unwrap_err().contains("runs past"));
        let bytes = note(NT_GNU_PROPERTY_TYPE_0, b"GNU\0", &[1, 2, 3, 4], 8);
        assert!(check_segment(&bytes, 8, true).unwrap_err().contains("multiple of 8"));
        // A property segment without a property note.
        let bytes = note(NT_GNU_BUILD_ID, b"GNU\0", &[1; 8], 8);
        assert!(check_segment(&bytes, 8, true).unwrap_err().contains("0 GNU property notes"));
    }

    /// A minimal ELF header and one PT_NOTE, as `build_id_from_reader` sees
    /// them.
    fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
        let mut file = vec![0u8; 64 + 56];
        file[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, if cfg!(target_endian = "little") { 1 } else { 2 }, 1]);
        file[32..40].copy_from_slice(&64u64.to_ne_bytes());
        file[54..56].copy_from_slice(&56u16.to_ne_bytes());
        file[56..58].copy_from_slice(&1u16.to_ne_bytes());
        file[64..68].copy_from_slice(&4u32.to_ne_bytes());
        file[64 + 8..64 + 16].copy_from_slice(&120u64.to_ne_bytes());
        file[64 + 32..64 + 40].copy_from_slice(&(notes.len() as u64).to_ne_bytes());
        file[64 + 48..64 + 56].copy_from_slice(&4u64.to_ne_bytes());
        file.extend_from_slice(notes);
        file
    }

    fn reader(file: &[u8]) -> impl FnMut(u64, &mut [u8]) -> bool + '_ {
        |offset, buf| {
            let start = offset as usize;
            match file.get(start..start + buf.len()) {
                Some(bytes) => {
                    buf.copy_from_slice(bytes);
                    true
                }
                None => false,
            }
        }
    }

    #[test]
    fn the_build_id_is_read_from_the_notes() {
        let notes = [note(1, b"GNU\0", &[0; 16], 4), note(NT_GNU_BUILD_ID, b"GNU\0", &[7; 20], 4)].concat();
        assert_eq!(build_id_from_reader(reader(&elf_with_notes(&notes))), Some(vec![7; 20]));
        // Another owner's note of the same type is not a build id.
        let notes = note(NT_GNU_BUILD_ID, b"Go\0\0", &[7; 20], 4);
        assert_eq!(build_id_from_reader(reader(&elf_with_notes(&notes))), None);
        // Truncated files and other files have none.
        let file = elf_with_notes(&note(NT_GNU_BUILD_ID, b"GNU\0", &[7; 20], 4));
        assert_eq!(build_id_from_reader(reader(&file[..file.len() - 4])), None);
        assert_eq!(build_id_from_reader(reader(b"\x7fELF")), None);
        assert_eq!(build_id_from_reader(reader(&[0; 200])), None);
    }
}
