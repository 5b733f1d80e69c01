//! Where functions start, from the unwinder's table (`.eh_frame_hdr`, found
//! through `PT_GNU_EH_FRAME`): the loader calls init and fini functions by
//! address, and an address inside a function, not at its start, would run
//! its code from the middle, with a stack frame it never set up.
//!
//! Only the layout every linker writes is read (version 1, a sorted table of
//! 4-byte offsets from the header, FDEs whose CIE gives a plain 2-, 4- or
//! 8-byte address encoding). Anything else leaves the check out rather than
//! refusing: it is an addition to the checks of [`super::relocs`], not a
//! structure the loader itself trusts. Functions without unwind information
//! (some C runtime start files have none) are not in the table and are not
//! checked either.

use super::{File, u32_at, u64_at};

/// The unwinder's table of function starts.
pub(super) struct FunctionStarts<'a> {
    file: &'a File<'a>,
    /// The address of `.eh_frame_hdr`, which the table's offsets are
    /// relative to.
    base: u64,
    /// (initial location, FDE address) pairs of 4-byte offsets.
    table: &'a [u8],
}

impl<'a> FunctionStarts<'a> {
    /// The table of the `.eh_frame_hdr` at `addr` (`size` bytes), if it has
    /// the usual layout.
    pub(super) fn read(file: &'a File<'a>, (addr, size): (u64, u64)) -> Option<FunctionStarts<'a>> {
        let header = file.bytes(addr, size)?;
        if header.len() < 12 || header[..4] != [1, 0x1b, 0x03, 0x3b] {
            return None;
        }
        let count = u64::from(u32_at(header, 8)?);
        let table = header.get(12..usize::try_from(12 + count * 8).ok()?)?;
        Some(FunctionStarts { file, base: addr, table })
    }

    /// If `addr` lies inside a function the table describes but not at its
    /// start, that function's start.
    pub(super) fn inside_a_function(&self, addr: u64) -> Option<u64> {
        let count = self.table.len() / 8;
        let location = |i: usize| {
            let offset = u32_at(self.table, i * 8).expect("inside the table") as i32;
            self.base.wrapping_add_signed(i64::from(offset))
        };
        // The last entry that starts at or before `addr`.
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if location(mid) <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let index = lo.checked_sub(1)?;
        let start = location(index);
        if start == addr {
            return None;
        }
        let fde_offset = u32_at(self.table, index * 8 + 4).expect("inside the table") as i32;
        let range = self.pc_range(self.base.wrapping_add_signed(i64::from(fde_offset)))?;
        (addr < start.saturating_add(range)).then_some(start)
    }

    /// The length of the code an FDE describes.
    fn pc_range(&self, fde: u64) -> Option<u64> {
        let head = self.file.bytes(fde, 8)?;
        if u32_at(head, 0)? == u32::MAX {
            return None;
        }
        let cie = (fde + 4).checked_sub(u64::from(u32_at(head, 4)?))?;
        let width = address_width(self.pointer_encoding(cie)?)?;
        let bytes = self.file.bytes(fde + 8 + width, width)?;
        Some(match width {
            2 => u64::from(u16::from_ne_bytes([bytes[0], bytes[1]])),
            4 => u64::from(u32_at(bytes, 0)?),
            _ => u64_at(bytes, 0)?,
        })
    }

    /// The `R` (FDE address) encoding a CIE declares.
    fn pointer_encoding(&self, cie: u64) -> Option<u8> {
        // Enough for the header, a short augmentation string and its data.
        let bytes = (16..=64).rev().step_by(16).find_map(|len| self.file.bytes(cie, len))?;
        if u32_at(bytes, 0)? == u32::MAX || u32_at(bytes, 4)? != 0 {
            return None;
        }
        let version = *bytes.get(8)?;
        let augmentation_end = 9 + bytes.get(9..)?.iter().position(|&b| b == 0)?;
        let augmentation = &bytes[9..augmentation_end];
        let mut at = augmentation_end + 1;
        uleb(bytes, &mut at)?; // code alignment
        uleb(bytes, &mut at)?; // data alignment (signed: same length)
        if version == 1 {
            at += 1; // return address register
        } else {
            uleb(bytes, &mut at)?;
        }
        let Some(rest) = augmentation.strip_prefix(b"z") else { return Some(0) };
        uleb(bytes, &mut at)?; // augmentation data length
        for &c in rest {
            match c {
                b'R' => return bytes.get(at).copied(),
                b'P' => {
                    let encoding = *bytes.get(at)?;
                    at += 1 + usize::try_from(address_width(encoding)?).ok()?;
                }
                b'L' => at += 1,
                b'S' | b'B' | b'G' => {}
                _ => return None,
            }
        }
        Some(0)
    }
}

/// The size of a value in DWARF pointer encoding `encoding`.
fn address_width(encoding: u8) -> Option<u64> {
    match encoding & 0x0f {
        0x00 | 0x04 | 0x0c => Some(8),
        0x03 | 0x0b => Some(4),
        0x02 | 0x0a => Some(2),
        _ => None,
    }
}

/// Skips one LEB128 number at `*at`.
fn uleb(bytes: &[u8], at: &mut usize) -> Option<()> {
    for _ in 0..10 {
        let byte = *bytes.get(*at)?;
        *at += 1;
        if byte & 0x80 == 0 {
            return Some(());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_encoding_format() {
        assert_eq!(address_width(0x1b), Some(4)); // pcrel | sdata4
        assert_eq!(address_width(0x9b), Some(4)); // indirect | pcrel | sdata4
        assert_eq!(address_width(0x00), Some(8)); // absptr
        assert_eq!(address_width(0x0c), Some(8)); // sdata8
        assert_eq!(address_width(0x01), None); // uleb128
    }

    #[test]
    fn leb128_numbers_are_skipped() {
        let bytes = [0x7f, 0x80, 0x01, 0xff];
        let mut at = 0;
        uleb(&bytes, &mut at).unwrap();
        assert_eq!(at, 1);
        uleb(&bytes, &mut at).unwrap();
        assert_eq!(at, 3);
        assert_eq!(uleb(&bytes, &mut at), None, "runs off the end");
    }
}
