//! Just enough ELF64 (little endian) reading for the harness: whether a
//! program is statically linked, and the bytes of one named section.

const PT_INTERP: u32 = 3;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?)).ok()
}

fn is_elf64_le(b: &[u8]) -> bool {
    b.len() >= 64 && b.starts_with(b"\x7fELF") && b[4] == 2 && b[5] == 1
}

/// `Some(true)` for an ELF64 executable without a program interpreter,
/// `Some(false)` for a dynamically linked one, `None` if not ELF64 LE.
pub fn is_static(b: &[u8]) -> Option<bool> {
    if !is_elf64_le(b) {
        return None;
    }
    let phoff = u64_at(b, 0x20)?;
    let phentsize = usize::from(u16_at(b, 0x36)?);
    let phnum = usize::from(u16_at(b, 0x38)?);
    for i in 0..phnum {
        if u32_at(b, phoff + i * phentsize)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

/// The contents of the section called `name`, if present.
pub fn section<'a>(b: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if !is_elf64_le(b) {
        return None;
    }
    let shoff = u64_at(b, 0x28)?;
    let shentsize = usize::from(u16_at(b, 0x3a)?);
    let shnum = usize::from(u16_at(b, 0x3c)?);
    let shstrndx = usize::from(u16_at(b, 0x3e)?);
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(b, header(shstrndx) + 0x18)?;
    for i in 0..shnum {
        let h = header(i);
        let name_off = strtab + u32_at(b, h)? as usize;
        let rest = b.get(name_off..)?;
        let end = rest.iter().position(|&c| c == 0)?;
        if &rest[..end] == name.as_bytes() {
            let off = u64_at(b, h + 0x18)?;
            let size = u64_at(b, h + 0x20)?;
            return b.get(off..off.checked_add(size)?);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_test_binary() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(is_static(&me).is_some());
        assert!(section(&me, ".text").is_some());
        assert!(section(&me, ".no-such-section").is_none());
        assert_eq!(is_static(b"not an elf"), None);
    }
}
