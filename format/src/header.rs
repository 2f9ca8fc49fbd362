//! The fixed 256-byte header and the section table (`spec/FORMAT.md` §3, §4).
//!
//! Everything here is parsed with safe, bounds-checked byte reads.

use std::fmt;

use crate::bytes::{array_at, u16_at, u32_at, u64_at};
use crate::error::FormatError;

/// The 8 magic bytes every pack starts with (PNG style: a non-ASCII first byte, then a
/// CR-LF and a ^Z so that text-mode transfers are detected).
pub const MAGIC: [u8; 8] = *b"\x89PPYC\r\n\x1a";
/// Size of the fixed header.
pub const HEADER_SIZE: usize = 256;
/// Size of one section table entry.
pub const SECTION_ENTRY_SIZE: usize = 64;
/// The highest read version this reader understands; packs with a higher one are refused.
pub const READ_VERSION: u32 = 1;
/// The write version of packs this crate produces (2: image sections, `spec/FORMAT.md` §10).
pub const WRITE_VERSION: u32 = 2;
/// Header flags in this mask are *required*: a reader refuses a pack that sets one it does
/// not know. Flags outside it are optional and ignored when unknown. Version 1 defines none.
pub const FLAG_REQUIRED_MASK: u32 = 0x0000_ffff;
/// Section flag: a reader that does not know this section must refuse the pack.
pub const SECTION_FLAG_REQUIRED: u32 = 1;
/// Most sections a pack may have (keeps the header check constant-time).
pub(crate) const MAX_SECTIONS: u32 = 64;

const ENDIAN_MARK: u16 = 0xFEFF;
const DIGEST_OFFSET: usize = 224;
const CACHE_TAG_LEN: usize = 24;

/// The rkyv encoding of module records, as recorded in the header: bit 0 little-endian,
/// bit 1 aligned primitives, bits 8..16 the relative-pointer width in bytes, bits 16..24
/// rkyv's major.minor (0.8 → 0x08).
#[must_use]
pub const fn rkyv_features() -> u32 {
    // Pinned in the workspace Cargo.toml: little_endian, aligned, pointer_width_32.
    1 | (1 << 1) | (4 << 8) | (0x08 << 16)
}

/// A four-byte section identifier such as `INDX`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SectionId(pub [u8; 4]);

impl SectionId {
    /// The module lookup table.
    pub const INDX: Self = Self(*b"INDX");
    /// The rkyv module records.
    pub const RECS: Self = Self(*b"RECS");
    /// The marshalled code payloads.
    pub const PAYL: Self = Self(*b"PAYL");
    /// Optional `key=value` metadata.
    pub const META: Self = Self(*b"META");
    /// Image mode: the object areas of the module images.
    pub const IMGO: Self = Self(*b"IMGO");
    /// Image mode: the per-module image directory and relocation data.
    pub const IREL: Self = Self(*b"IREL");
    /// Image mode: the pack-wide identifier table.
    pub const INAM: Self = Self(*b"INAM");
    /// Image mode: the layout description the images assume.
    pub const ILAY: Self = Self(*b"ILAY");
    /// The listings of the directories the pack covers (§12).
    pub const DIRS: Self = Self(*b"DIRS");
    /// A delta's base pack and the base's deleted modules (§13); required.
    pub const BASE: Self = Self(*b"BASE");

    /// The sections every pack has, defined with the required flag set (§4.1); the other
    /// known sections are defined with it clear.
    #[must_use]
    pub fn is_mandatory(self) -> bool {
        matches!(self, Self::INDX | Self::RECS | Self::PAYL)
    }

    /// Sections this version of the reader understands.
    #[must_use]
    pub fn is_known(self) -> bool {
        matches!(
            self,
            Self::INDX
                | Self::RECS
                | Self::PAYL
                | Self::META
                | Self::IMGO
                | Self::IREL
                | Self::INAM
                | Self::ILAY
                | Self::DIRS
                | Self::BASE
        )
    }

    /// Whether a known section is defined with the required flag set: the mandatory
    /// sections, and `BASE` (a reader that does not know deltas must not use a delta as a
    /// whole pack).
    #[must_use]
    pub fn is_defined_required(self) -> bool {
        self.is_mandatory() || self == Self::BASE
    }
}

impl fmt::Display for SectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for SectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SectionId({self})")
    }
}

/// The interpreter a pack was built for, and the optimisation level of its code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `sys.implementation.cache_tag`, e.g. `cpython-312` (ASCII, at most 24 bytes).
    pub cache_tag: String,
    /// `sys.hexversion` of the interpreter that built the pack.
    pub hexversion: u32,
    /// `importlib.util.MAGIC_NUMBER`, the first four bytes of every `.pyc`.
    pub pyc_magic: [u8; 4],
    /// `sys.flags.optimize` the code was compiled for: 0, 1 or 2.
    pub optimize: u8,
}

impl Target {
    pub(crate) fn validate(&self) -> Result<(), FormatError> {
        if self.cache_tag.is_empty()
            || self.cache_tag.len() > CACHE_TAG_LEN
            || !self.cache_tag.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(FormatError::InvalidTarget("cache_tag"));
        }
        if self.optimize > 2 {
            return Err(FormatError::InvalidTarget("optimize level"));
        }
        if self.pyc_magic[2..] != *b"\r\n" {
            return Err(FormatError::InvalidTarget("pyc magic"));
        }
        Ok(())
    }
}

/// The parsed fixed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Lowest reader version able to read the pack.
    pub read_version: u32,
    /// Version of the writer that produced the pack.
    pub write_version: u32,
    /// Header flags (none defined in version 1).
    pub flags: u32,
    /// rkyv encoding of the records, see [`rkyv_features`].
    pub rkyv_features: u32,
    /// Target interpreter and optimisation level.
    pub target: Target,
    /// Layout fingerprint of the target's object layouts (image mode); zero otherwise.
    pub layout_fingerprint: [u8; 32],
    /// Number of section table entries.
    pub section_count: u32,
    /// Total length of the file in bytes.
    pub file_size: u64,
    /// Number of modules in the pack.
    pub module_count: u64,
    /// BLAKE3 of header bytes 0..224 followed by the section table.
    pub digest: [u8; 32],
}

/// One entry of the section table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionEntry {
    /// Section identifier.
    pub id: SectionId,
    /// Section flags ([`SECTION_FLAG_REQUIRED`]).
    pub flags: u32,
    /// Offset from the start of the file.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// Alignment of `offset` (a power of two).
    pub alignment: u32,
    /// BLAKE3 of the section's bytes.
    pub digest: [u8; 32],
}

impl SectionEntry {
    /// Whether a reader must know this section to use the pack.
    #[must_use]
    pub fn is_required(&self) -> bool {
        self.flags & SECTION_FLAG_REQUIRED != 0
    }
}

impl Header {
    /// Serialises the header; the digest field is written as stored in `self`.
    pub(crate) fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&ENDIAN_MARK.to_le_bytes());
        b[10..12].copy_from_slice(&u16::try_from(HEADER_SIZE).unwrap_or(0).to_le_bytes());
        b[12..16].copy_from_slice(&self.read_version.to_le_bytes());
        b[16..20].copy_from_slice(&self.write_version.to_le_bytes());
        b[20..24].copy_from_slice(&self.flags.to_le_bytes());
        b[24..28].copy_from_slice(&self.rkyv_features.to_le_bytes());
        b[28..32].copy_from_slice(&self.target.hexversion.to_le_bytes());
        b[32..36].copy_from_slice(&self.target.pyc_magic);
        b[36] = self.target.optimize;
        let tag = self.target.cache_tag.as_bytes();
        b[40..40 + tag.len()].copy_from_slice(tag);
        b[64..96].copy_from_slice(&self.layout_fingerprint);
        b[96..100].copy_from_slice(&self.section_count.to_le_bytes());
        b[104..112].copy_from_slice(&self.file_size.to_le_bytes());
        b[112..120].copy_from_slice(&self.module_count.to_le_bytes());
        b[DIGEST_OFFSET..].copy_from_slice(&self.digest);
        b
    }

    /// Checks and parses the header and section table at the start of `bytes`, in the order
    /// of `spec/FORMAT.md` §8. Constant work: the header, its digest and the table only.
    pub(crate) fn parse(bytes: &[u8]) -> Result<(Self, Vec<SectionEntry>), FormatError> {
        let len = bytes.len() as u64;
        // A file that does not begin with the magic is not a pack, whatever its size; one
        // that does (or is empty) and is too short is a truncated pack.
        let start = &bytes[..bytes.len().min(MAGIC.len())];
        if start != &MAGIC[..start.len()] {
            return Err(FormatError::BadMagic);
        }
        if bytes.len() < HEADER_SIZE {
            return Err(FormatError::TooSmall {
                len,
                needed: HEADER_SIZE as u64,
            });
        }
        let h = &bytes[..HEADER_SIZE];
        if h[0..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        if u16_at(h, 8) != ENDIAN_MARK {
            return Err(FormatError::EndianMismatch);
        }
        let header_size = u16_at(h, 10);
        if usize::from(header_size) != HEADER_SIZE {
            return Err(FormatError::HeaderSize {
                found: header_size,
                expected: HEADER_SIZE as u16,
            });
        }
        let read_version = u32_at(h, 12);
        if read_version > READ_VERSION || read_version == 0 {
            return Err(FormatError::UnsupportedReadVersion {
                found: read_version,
                supported: READ_VERSION,
            });
        }
        let flags = u32_at(h, 20);
        if flags & FLAG_REQUIRED_MASK != 0 {
            return Err(FormatError::UnknownRequiredFlags(
                flags & FLAG_REQUIRED_MASK,
            ));
        }
        let section_count = u32_at(h, 96);
        if section_count > MAX_SECTIONS {
            return Err(FormatError::BadIndex("too many sections"));
        }
        let table_end = HEADER_SIZE + section_count as usize * SECTION_ENTRY_SIZE;
        if bytes.len() < table_end {
            return Err(FormatError::TooSmall {
                len,
                needed: table_end as u64,
            });
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&h[..DIGEST_OFFSET]);
        hasher.update(&bytes[HEADER_SIZE..table_end]);
        let digest: [u8; 32] = array_at(h, DIGEST_OFFSET);
        if *hasher.finalize().as_bytes() != digest {
            return Err(FormatError::HeaderDigestMismatch);
        }
        // From here on the header is exactly what a writer produced; the remaining checks
        // catch writers that produce nonsense (or hostile files with a recomputed digest).
        let rkyv = u32_at(h, 24);
        if rkyv != rkyv_features() {
            return Err(FormatError::RkyvFeatures {
                found: rkyv,
                expected: rkyv_features(),
            });
        }
        if h[37..40]
            .iter()
            .chain(&h[100..104])
            .chain(&h[120..DIGEST_OFFSET])
            .any(|&b| b != 0)
        {
            return Err(FormatError::ReservedNonZero);
        }
        let tag_bytes = &h[40..64];
        let tag_len = tag_bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(CACHE_TAG_LEN);
        if tag_bytes[tag_len..].iter().any(|&b| b != 0) {
            return Err(FormatError::InvalidTarget("cache_tag padding"));
        }
        let cache_tag = std::str::from_utf8(&tag_bytes[..tag_len])
            .map_err(|_| FormatError::InvalidTarget("cache_tag"))?
            .to_owned();
        let target = Target {
            cache_tag,
            hexversion: u32_at(h, 28),
            pyc_magic: array_at(h, 32),
            optimize: h[36],
        };
        target.validate()?;
        let header = Self {
            read_version,
            write_version: u32_at(h, 16),
            flags,
            rkyv_features: rkyv,
            target,
            layout_fingerprint: array_at(h, 64),
            section_count,
            file_size: u64_at(h, 104),
            module_count: u64_at(h, 112),
            digest,
        };
        if header.file_size != len {
            return Err(FormatError::SizeMismatch {
                header: header.file_size,
                actual: len,
            });
        }
        let mut sections = Vec::with_capacity(section_count as usize);
        for index in 0..section_count as usize {
            let e = &bytes[HEADER_SIZE + index * SECTION_ENTRY_SIZE..][..SECTION_ENTRY_SIZE];
            let entry = SectionEntry {
                id: SectionId(array_at(e, 0)),
                flags: u32_at(e, 4),
                offset: u64_at(e, 8),
                length: u64_at(e, 16),
                alignment: u32_at(e, 24),
                digest: array_at(e, 32),
            };
            let bad = |reason| FormatError::BadSection { index, reason };
            if u32_at(e, 28) != 0 {
                return Err(bad("reserved bytes are not zero"));
            }
            if !entry.alignment.is_power_of_two() || entry.alignment > 1 << 16 {
                return Err(bad("alignment is not a power of two up to 65536"));
            }
            if entry.offset % u64::from(entry.alignment) != 0 {
                return Err(bad("offset is not aligned"));
            }
            let end = entry
                .offset
                .checked_add(entry.length)
                .ok_or(bad("length overflows"))?;
            if entry.offset < table_end as u64 || end > len {
                return Err(bad("lies outside the file"));
            }
            if sections.iter().any(|s: &SectionEntry| s.id == entry.id) {
                return Err(FormatError::DuplicateSection(entry.id));
            }
            if sections.iter().any(|s: &SectionEntry| {
                entry.offset < s.offset + s.length
                    && s.offset < end
                    && entry.length > 0
                    && s.length > 0
            }) {
                return Err(bad("overlaps another section"));
            }
            if !entry.id.is_known() && entry.is_required() {
                return Err(FormatError::UnknownRequiredSection(entry.id));
            }
            if entry.flags & !SECTION_FLAG_REQUIRED != 0 {
                return Err(bad("reserved flag bits are set"));
            }
            if entry.id.is_known() && entry.is_required() != entry.id.is_defined_required() {
                return Err(bad(
                    "its required flag differs from the section's definition",
                ));
            }
            sections.push(entry);
        }
        Ok((header, sections))
    }

    pub(crate) fn section_entry_bytes(entry: &SectionEntry) -> [u8; SECTION_ENTRY_SIZE] {
        let mut e = [0u8; SECTION_ENTRY_SIZE];
        e[0..4].copy_from_slice(&entry.id.0);
        e[4..8].copy_from_slice(&entry.flags.to_le_bytes());
        e[8..16].copy_from_slice(&entry.offset.to_le_bytes());
        e[16..24].copy_from_slice(&entry.length.to_le_bytes());
        e[24..28].copy_from_slice(&entry.alignment.to_le_bytes());
        e[32..64].copy_from_slice(&entry.digest);
        e
    }

    /// The digest the header must carry, given its other bytes and the section table.
    pub(crate) fn compute_digest(header: &[u8; HEADER_SIZE], table: &[u8]) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&header[..DIGEST_OFFSET]);
        hasher.update(table);
        *hasher.finalize().as_bytes()
    }
}
