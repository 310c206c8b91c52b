//! The "FATAL: kernel too old" trap: glibc refuses to start on a kernel older
//! than the one named in its `NT_GNU_ABI_TAG` note. Reading that note from the
//! tree's libc lets `check` warn before any user meets the message.
#![forbid(unsafe_code)]

/// The minimum kernel `(major, minor, patch)` from an ELF file's ABI-tag note,
/// `None` when the file is not ELF or has no Linux ABI tag.
pub fn abi_tag(data: &[u8]) -> Option<(u32, u32, u32)> {
    if data.get(..4)? != b"\x7fELF" {
        return None;
    }
    let is64 = match data.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match data.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u64> {
        let b: [u8; 2] = data.get(o..o + 2)?.try_into().ok()?;
        Some(if le { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) } as u64)
    };
    let u32_at = |o: usize| -> Option<u64> {
        let b: [u8; 4] = data.get(o..o + 4)?.try_into().ok()?;
        Some(if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) } as u64)
    };
    let u64_at = |o: usize| -> Option<u64> {
        let b: [u8; 8] = data.get(o..o + 8)?.try_into().ok()?;
        Some(if le { u64::from_le_bytes(b) } else { u64::from_be_bytes(b) })
    };
    let word = |o: usize| if is64 { u64_at(o) } else { u32_at(o) };
    let (phoff, phentsize, phnum) = if is64 {
        (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?)
    } else {
        (u32_at(0x1c)?, u16_at(0x2a)?, u16_at(0x2c)?)
    };
    for i in 0..phnum {
        let ph = usize::try_from(phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
        if u32_at(ph)? != 4 {
            continue; // not PT_NOTE
        }
        let (offset, size, align) = if is64 {
            (u64_at(ph + 8)?, u64_at(ph + 32)?, u64_at(ph + 48)?)
        } else {
            (word(ph + 4)?, word(ph + 16)?, word(ph + 28)?)
        };
        let align = if align == 8 { 8 } else { 4 };
        let pad = |n: u64| n.div_ceil(align) * align;
        let (mut at, end) = (usize::try_from(offset).ok()?, usize::try_from(offset.checked_add(size)?).ok()?);
        while at + 12 <= end {
            let (namesz, descsz, kind) = (u32_at(at)?, u32_at(at + 4)?, u32_at(at + 8)?);
            let name_at = at + 12;
            let desc_at = name_at + usize::try_from(pad(namesz)).ok()?;
            if kind == 1
                && namesz == 4
                && data.get(name_at..name_at + 4)? == b"GNU\0"
                && descsz >= 16
                && u32_at(desc_at)? == 0
            {
                return Some((u32_at(desc_at + 4)? as u32, u32_at(desc_at + 8)? as u32, u32_at(desc_at + 12)? as u32));
            }
            at = desc_at + usize::try_from(pad(descsz)).ok()?;
        }
    }
    None
}

/// `6.1.0-13-amd64` -> (6, 1, 0).
pub fn parse_release(release: &str) -> Option<(u32, u32, u32)> {
    let mut parts =
        release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = if release.split('.').count() > 2 { parts.next().flatten().unwrap_or(0) } else { 0 };
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_libc_has_an_abi_tag() {
        for path in ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6"] {
            if let Ok(data) = std::fs::read(path) {
                let (major, _, _) = abi_tag(&data).expect("libc has an ABI tag");
                assert!((2..=6).contains(&major), "{path}: {major}");
                return;
            }
        }
    }

    #[test]
    fn non_elf_is_none() {
        assert_eq!(abi_tag(b"#!/bin/sh\n"), None);
        assert_eq!(abi_tag(b"\x7fELF"), None);
    }

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18, 44)));
        assert_eq!(parse_release("3.10.0-1160.el7.x86_64"), Some((3, 10, 0)));
        assert_eq!(parse_release("5.4"), Some((5, 4, 0)));
        assert_eq!(parse_release("x"), None);
    }
}
