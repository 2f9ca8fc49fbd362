//! Hostile packs: damage a real pack, then recompute every digest so that the checks
//! *behind* the digests (section table, index, records, payload bounds, image directory,
//! relocation data, identifier table) are what the damage reaches.
//!
//! Shared by the format tests (`format/tests/hostile.rs`) and the fuzz targets
//! (`fuzz/fuzz_targets/*.rs` include this file with `#[path]`), so it depends on nothing
//! but `ppyc_format` and `blake3`, and never panics, whatever the bytes: every read is
//! bounds checked, and a structure that cannot be located is simply left alone.

use std::ops::Range;

use ppyc_format::image::{Aux, image_checksum};
use ppyc_format::{FormatError, Pack, SectionId, VerifyReport, name_hash};

const HEADER: usize = 256;
const ENTRY: usize = 64;
const INDEX_ENTRY: usize = 48;
const RECORD: usize = 120;
const DIRECTORY_ENTRY: usize = 64;
const MAX_SECTIONS: usize = 64;

/// Which digests [`fix_digests`] recomputes. Each is independent, so a test can leave
/// exactly one stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fix {
    /// `payload_blake3` in every record whose payload range lies inside `PAYL`.
    pub payloads: bool,
    /// `record_digest` of every `INDX` entry whose record lies inside `RECS`.
    pub records: bool,
    /// The FNV-1a check value of every `INAM` entry whose string can be located.
    pub names: bool,
    /// The XXH3 checksum of every `IREL` directory entry whose ranges can be located.
    pub images: bool,
    /// The header's `layout_fingerprint` (BLAKE3 of `ILAY`). Not a damage digest: a reader
    /// compares it with its own interpreter's, so most tests leave it alone.
    pub fingerprint: bool,
    /// Every section digest (sections that lie inside the file).
    pub sections: bool,
    /// The header's `file_size`, set to the file's length.
    pub file_size: bool,
    /// The header digest (over the header and the section table).
    pub header: bool,
}

impl Fix {
    /// Nothing recomputed: the damage is what a disk or a copy would do.
    pub const NONE: Self = Self {
        payloads: false,
        records: false,
        names: false,
        images: false,
        fingerprint: false,
        sections: false,
        file_size: false,
        header: false,
    };
    /// Only the header digest (and `file_size`): the pack opens, the deeper digests are
    /// stale.
    pub const HEADER: Self = Self {
        file_size: true,
        header: true,
        ..Self::NONE
    };
    /// Every damage digest, the layout fingerprint excepted.
    pub const ALL: Self = Self {
        payloads: true,
        records: true,
        names: true,
        images: true,
        fingerprint: false,
        sections: true,
        file_size: true,
        header: true,
    };
    /// Everything, the layout fingerprint included.
    pub const EVERYTHING: Self = Self {
        fingerprint: true,
        ..Self::ALL
    };
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn put(b: &mut [u8], at: usize, value: &[u8]) {
    if let Some(dst) = at
        .checked_add(value.len())
        .and_then(|end| b.get_mut(at..end))
    {
        dst.copy_from_slice(value);
    }
}

/// `start + offset .. + len`, if it lies inside `within`.
fn sub(within: &Range<usize>, offset: u64, len: u64) -> Option<Range<usize>> {
    let start = within.start.checked_add(usize::try_from(offset).ok()?)?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= within.end).then_some(start..end)
}

/// The section table as it stands, unchecked: `(entry offset in the file, id, body range
/// if it lies inside the file)`.
pub fn raw_sections(bytes: &[u8]) -> Vec<(usize, [u8; 4], Option<Range<usize>>)> {
    let Some(count) = u32_at(bytes, 96) else {
        return Vec::new();
    };
    let count = (count as usize).min(MAX_SECTIONS);
    let mut out = Vec::new();
    for i in 0..count {
        let at = HEADER + i * ENTRY;
        let (Some(id), Some(offset), Some(length)) = (
            bytes.get(at..at + 4),
            u64_at(bytes, at + 8),
            u64_at(bytes, at + 16),
        ) else {
            break;
        };
        let id: [u8; 4] = id.try_into().unwrap_or_default();
        out.push((at, id, sub(&(0..bytes.len()), offset, length)));
    }
    out
}

/// The body range of the first section `id` that lies inside the file.
pub fn section_range(bytes: &[u8], id: &[u8; 4]) -> Option<Range<usize>> {
    raw_sections(bytes)
        .into_iter()
        .find(|(_, i, _)| i == id)
        .and_then(|(_, _, r)| r)
}

/// The range of `INDX` entry `i`'s record in the file, if it lies inside `RECS`.
fn record_range(
    bytes: &[u8],
    indx: &Range<usize>,
    recs: &Range<usize>,
    i: usize,
) -> Option<Range<usize>> {
    let e = indx.start + i * INDEX_ENTRY;
    sub(
        recs,
        u64::from(u32_at(bytes, e + 8)?),
        u64::from(u32_at(bytes, e + 12)?),
    )
}

/// Recomputes the digests `fix` names, innermost first (payload → record → image → section
/// → header), so that each covers the bytes as they now are.
pub fn fix_digests(bytes: &mut [u8], fix: Fix) {
    if bytes.len() < HEADER {
        return;
    }
    if fix.file_size {
        let len = bytes.len() as u64;
        put(bytes, 104, &len.to_le_bytes());
    }
    let indx = section_range(bytes, b"INDX");
    let recs = section_range(bytes, b"RECS");
    let payl = section_range(bytes, b"PAYL");
    let entries = match (&indx, u64_at(bytes, 112)) {
        (Some(indx), Some(count)) => usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(indx.len() / INDEX_ENTRY),
        _ => 0,
    };
    if let (Some(indx), Some(recs)) = (&indx, &recs) {
        for i in 0..entries {
            let Some(record) = record_range(bytes, indx, recs, i) else {
                continue;
            };
            if fix.payloads && record.len() >= RECORD {
                let root = record.end - RECORD;
                let range = match (&payl, u64_at(bytes, root + 64), u64_at(bytes, root + 72)) {
                    (Some(payl), Some(off), Some(len)) => sub(payl, off, len),
                    _ => None,
                };
                if let Some(range) = range {
                    let digest = *blake3::hash(&bytes[range]).as_bytes();
                    put(bytes, root + 32, &digest);
                }
            }
            if fix.records {
                let digest = *blake3::hash(&bytes[record]).as_bytes();
                put(bytes, indx.start + i * INDEX_ENTRY + 16, &digest);
            }
        }
    }
    if fix.names {
        if let Some(inam) = section_range(bytes, b"INAM") {
            let count = u32_at(bytes, inam.start).unwrap_or(0) as usize;
            let strings_start = count
                .checked_mul(16)
                .and_then(|n| n.checked_add(inam.start + 8))
                .filter(|&s| s <= inam.end);
            if let Some(strings_start) = strings_start {
                let strings = strings_start..inam.end;
                for j in 0..count {
                    let e = inam.start + 8 + j * 16;
                    let (Some(off), Some(len)) = (u32_at(bytes, e), u32_at(bytes, e + 4)) else {
                        break;
                    };
                    if let Some(name) = sub(&strings, u64::from(off), u64::from(len)) {
                        let h = name_hash(&bytes[name]);
                        put(bytes, e + 8, &h.to_le_bytes());
                    }
                }
            }
        }
    }
    if fix.images {
        if let (Some(indx), Some(irel), Some(imgo)) = (
            &indx,
            section_range(bytes, b"IREL"),
            section_range(bytes, b"IMGO"),
        ) {
            for i in 0..entries.min(irel.len() / DIRECTORY_ENTRY) {
                let e = irel.start + i * DIRECTORY_ENTRY;
                let fields = (
                    u64_at(bytes, e),
                    u64_at(bytes, e + 8),
                    u64_at(bytes, e + 16),
                    u64_at(bytes, e + 24),
                );
                let (Some(oo), Some(ol), Some(ao), Some(al)) = fields else {
                    continue;
                };
                if ol == 0 {
                    continue;
                }
                let (Some(objects), Some(aux)) = (sub(&imgo, oo, ol), sub(&irel, ao, al)) else {
                    continue;
                };
                let Some(record_digest) = bytes
                    .get(indx.start + i * INDEX_ENTRY + 16..indx.start + i * INDEX_ENTRY + 48)
                    .and_then(|d| <[u8; 32]>::try_from(d).ok())
                else {
                    continue;
                };
                let sum = image_checksum(&record_digest, &bytes[objects], &bytes[aux]);
                put(bytes, e + 32, &sum);
            }
        }
    }
    if fix.fingerprint {
        if let Some(ilay) = section_range(bytes, b"ILAY") {
            let digest = *blake3::hash(&bytes[ilay]).as_bytes();
            put(bytes, 64, &digest);
        }
    }
    let sections = raw_sections(bytes);
    if fix.sections {
        for (at, _, range) in &sections {
            if let Some(range) = range {
                let digest = *blake3::hash(&bytes[range.clone()]).as_bytes();
                put(bytes, at + 32, &digest);
            }
        }
    }
    if fix.header {
        let table_end = HEADER + sections.len() * ENTRY;
        let mut h = blake3::Hasher::new();
        h.update(&bytes[..224]);
        h.update(&bytes[HEADER..table_end.min(bytes.len())]);
        let digest = *h.finalize().as_bytes();
        put(bytes, 224, &digest);
    }
}

/// A pack taken apart into its header and sections, to be changed section by section and
/// laid out again ([`Pieces::assemble`]) as the writer lays packs out.
#[derive(Clone, Debug)]
pub struct Pieces {
    /// The 256 header bytes.
    pub header: Vec<u8>,
    /// The sections in table order: the 64-byte table entry and the body.
    pub sections: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Pieces {
    /// Takes `bytes` apart; `None` if its header or section table cannot be located.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let header = bytes.get(..HEADER)?.to_vec();
        let mut sections = Vec::new();
        for (at, _, range) in raw_sections(bytes) {
            sections.push((bytes.get(at..at + ENTRY)?.to_vec(), bytes[range?].to_vec()));
        }
        Some(Self { header, sections })
    }

    /// The section `id`'s index in [`Pieces::sections`].
    pub fn find(&self, id: &[u8; 4]) -> Option<usize> {
        self.sections.iter().position(|(e, _)| e[..4] == id[..])
    }

    /// The body of section `id`.
    pub fn body_mut(&mut self, id: &[u8; 4]) -> Option<&mut Vec<u8>> {
        let i = self.find(id)?;
        Some(&mut self.sections[i].1)
    }

    /// The pack's bytes: header, table, then each body at the next 16-aligned offset with
    /// zero padding; offsets, lengths, `section_count` and `file_size` set to match. The
    /// digests are as they were: call [`fix_digests`] to recompute them.
    pub fn assemble(&self) -> Vec<u8> {
        let mut out = self.header.clone();
        out.resize(HEADER, 0);
        let count = self.sections.len() as u32;
        out[96..100].copy_from_slice(&count.to_le_bytes());
        let table = out.len();
        out.resize(HEADER + self.sections.len() * ENTRY, 0);
        for (i, (entry, body)) in self.sections.iter().enumerate() {
            out.resize(out.len().div_ceil(16) * 16, 0);
            let at = table + i * ENTRY;
            let n = entry.len().min(ENTRY);
            out[at..at + n].copy_from_slice(&entry[..n]);
            let offset = out.len() as u64;
            out[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
            out[at + 16..at + 24].copy_from_slice(&(body.len() as u64).to_le_bytes());
            out.extend_from_slice(body);
        }
        let len = out.len() as u64;
        out[104..112].copy_from_slice(&len.to_le_bytes());
        out
    }
}

/// One change to a pack, as the fuzz targets draw them.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// XOR the byte at `at` (modulo the pack's length) with `mask`.
    Flip { at: usize, mask: u8 },
    /// Write a little-endian value of `width` bytes (1, 2, 4 or 8) at `at`.
    Set { at: usize, width: u8, value: u64 },
    /// Truncate section `section` (modulo the count) to `len` (modulo its length + 1).
    TruncateSection { section: usize, len: usize },
    /// Insert `bytes` into section `section` at `at`.
    Insert {
        section: usize,
        at: usize,
        bytes: Vec<u8>,
    },
    /// Remove section `section` from the table.
    DropSection { section: usize },
    /// Swap the bodies of two sections.
    SwapBodies { a: usize, b: usize },
    /// Truncate the whole file to `len` (modulo its length).
    TruncateFile { len: usize },
}

/// Applies `m` to `bytes` (section-level changes re-lay the pack out).
pub fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let relayout = |bytes: &mut Vec<u8>, f: &dyn Fn(&mut Pieces)| {
        if let Some(mut p) = Pieces::parse(bytes) {
            if !p.sections.is_empty() {
                f(&mut p);
                *bytes = p.assemble();
            }
        }
    };
    match m {
        Mutation::Flip { at, mask } => {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] ^= mask;
            }
        }
        Mutation::Set { at, width, value } => {
            let width = match width % 4 {
                0 => 1,
                1 => 2,
                2 => 4,
                _ => 8,
            };
            if bytes.len() >= width {
                let i = at % (bytes.len() - width + 1);
                put(bytes, i, &value.to_le_bytes()[..width]);
            }
        }
        Mutation::TruncateSection { section, len } => relayout(bytes, &|p| {
            let n = p.sections.len();
            let body = &mut p.sections[section % n].1;
            let keep = len % (body.len() + 1);
            body.truncate(keep);
        }),
        Mutation::Insert {
            section,
            at,
            bytes: extra,
        } => relayout(bytes, &|p| {
            let n = p.sections.len();
            let body = &mut p.sections[section % n].1;
            let i = at % (body.len() + 1);
            body.splice(i..i, extra.iter().copied());
        }),
        Mutation::DropSection { section } => relayout(bytes, &|p| {
            let n = p.sections.len();
            p.sections.remove(section % n);
        }),
        Mutation::SwapBodies { a, b } => relayout(bytes, &|p| {
            let n = p.sections.len();
            let (a, b) = (a % n, b % n);
            let body = std::mem::take(&mut p.sections[a].1);
            p.sections[a].1 = std::mem::replace(&mut p.sections[b].1, body);
        }),
        Mutation::TruncateFile { len } => {
            if !bytes.is_empty() {
                let keep = len % bytes.len();
                bytes.truncate(keep);
            }
        }
    }
}

fn within(inner: &Range<usize>, outer: Option<&[u8]>, pack: &Pack) -> bool {
    let Some(outer) = outer else { return false };
    let base = pack.as_bytes().as_ptr() as usize;
    let start = outer.as_ptr() as usize - base;
    inner.start >= start && inner.end <= start + outer.len()
}

/// Opens `bytes` and takes every read path, looking up `lookups` besides the modules it
/// finds; panics only if the reader hands out something it must not (a range outside its
/// section, another module than the one asked for, a payload that does not match its
/// digest).
pub fn exercise(bytes: &[u8], lookups: &[String]) -> Result<VerifyReport, FormatError> {
    let pack = Pack::from_bytes(bytes)?;
    let _ = pack.meta();
    let names = pack.images().ok().flatten().map(|i| i.names);
    if let Some(names) = names {
        for i in 0..names.len() + 1 {
            let _ = names.get(i);
        }
    }
    let mut seen = Vec::new();
    for index in 0..pack.len() + 1 {
        let Ok(m) = pack.module_at(index) else {
            continue;
        };
        assert_eq!(m.index(), index);
        seen.push(m.name().to_owned());
        let _ = (m.source_path(), m.is_package(), m.source_size(), m.record());
        if let Ok(span) = m.payload_span() {
            assert!(
                within(&span, pack.section(SectionId::PAYL), &pack),
                "{span:?}"
            );
            assert!(m.payload_matches(&pack.as_bytes()[span]));
        }
        if let Ok(Some(image)) = m.image() {
            assert!(within(&image.objects, pack.section(SectionId::IMGO), &pack));
            assert!(within(&image.aux, pack.section(SectionId::IREL), &pack));
            let mut out = vec![0u8; image.objects_len()];
            let _ = image.decode_objects(&pack.as_bytes()[image.objects.clone()], &mut out);
            if let Ok(aux) = Aux::parse(&pack.as_bytes()[image.aux.clone()]) {
                for slot in 0..aux.name_count() + 1 {
                    if let (Some(s), Some(names)) = (aux.name_slot(slot), names) {
                        let _ = names.get(s as usize);
                    }
                }
                for (_, items) in aux.frozensets() {
                    let _ = items.count();
                }
            }
        }
        let _ = m.checked_image();
    }
    for m in pack.modules().flatten() {
        seen.push(m.name().to_owned());
    }
    seen.extend(lookups.iter().cloned());
    seen.push("not.there".into());
    for name in &seen {
        if let Ok(Some(m)) = pack.get(name) {
            assert_eq!(m.name(), name, "a lookup must return the module asked for");
        }
    }
    Ok(pack.verify())
}
