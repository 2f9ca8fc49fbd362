#![allow(unsafe_code)]
//! Opening packs and reading modules out of them.
//!
//! This is the only module of the crate with `unsafe`: mapping the file.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rkyv::util::AlignedVec;

use crate::error::FormatError;
use crate::header::{Header, SectionEntry, SectionId, array_at, u32_at, u64_at};
use crate::record::ArchivedModuleRecord;

/// Size of one lookup-table entry in the `INDX` section.
pub const INDEX_ENTRY_SIZE: usize = 48;
/// Alignment of each record inside `RECS` and each payload inside `PAYL`.
pub(crate) const ITEM_ALIGN: usize = 16;

/// FNV-1a 64 of a module name's UTF-8 bytes: the key of the lookup table.
#[must_use]
pub fn name_hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

enum Backing {
    Mmap(memmap2::Mmap),
    Owned(AlignedVec<16>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Mmap(m) => m,
            Self::Owned(v) => v,
        }
    }
}

/// An open, header-checked pack.
pub struct Pack {
    backing: Backing,
    path: Option<PathBuf>,
    header: Header,
    sections: Vec<SectionEntry>,
    indx: Range<usize>,
    recs: Range<usize>,
    payl: Range<usize>,
    count: usize,
}

impl std::fmt::Debug for Pack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pack")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("sections", &self.sections)
            .finish_non_exhaustive()
    }
}

/// One module of a pack: its record has been checked (digest, then bytecheck).
#[derive(Clone, Copy)]
pub struct Module<'a> {
    pack: &'a Pack,
    record: &'a ArchivedModuleRecord,
}

/// What [`Pack::verify`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Modules whose record and payload were checked.
    pub modules_checked: usize,
    /// Every problem found; empty when the pack is intact.
    pub problems: Vec<FormatError>,
}

impl VerifyReport {
    /// Whether the pack is intact.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Pack {
    /// Maps the pack at `path` and checks its header and section table.
    ///
    /// Constant work whatever the pack's size: records and payloads are checked when read.
    pub fn open(path: &Path) -> Result<Self, FormatError> {
        let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
        if len < crate::HEADER_SIZE as u64 {
            return Err(FormatError::TooSmall {
                len,
                needed: crate::HEADER_SIZE as u64,
            });
        }
        // SAFETY: the map is read-only and private to this process. ppyc never modifies a
        // pack in place (writers create a new file and rename it over the old one, see
        // `write_atomic`), so the bytes cannot change under the map. A third party truncating
        // the file in place could still raise SIGBUS; spec/FORMAT.md §9 documents that packs
        // must only be replaced by rename, as for shared libraries.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        let mut pack = Self::from_backing(Backing::Mmap(map))?;
        pack.path = Some(path.to_path_buf());
        Ok(pack)
    }

    /// Checks a pack held in memory (copied into an aligned buffer).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut v = AlignedVec::<16>::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        Self::from_backing(Backing::Owned(v))
    }

    fn from_backing(backing: Backing) -> Result<Self, FormatError> {
        let (header, sections) = Header::parse(backing.bytes())?;
        let find = |id: SectionId| -> Result<Range<usize>, FormatError> {
            let s = sections
                .iter()
                .find(|s| s.id == id)
                .ok_or(FormatError::MissingSection(id))?;
            // Bounds were checked against the file length by Header::parse.
            let start = usize::try_from(s.offset).map_err(|_| FormatError::MissingSection(id))?;
            let len = usize::try_from(s.length).map_err(|_| FormatError::MissingSection(id))?;
            Ok(start..start + len)
        };
        let indx = find(SectionId::INDX)?;
        let recs = find(SectionId::RECS)?;
        let payl = find(SectionId::PAYL)?;
        let count = usize::try_from(header.module_count)
            .map_err(|_| FormatError::BadIndex("module count too large"))?;
        if count.checked_mul(INDEX_ENTRY_SIZE) != Some(indx.len()) {
            return Err(FormatError::BadIndex(
                "INDX length is not module_count × 48 bytes",
            ));
        }
        if u32::try_from(count).is_err() {
            return Err(FormatError::BadIndex("more than 2^32-1 modules"));
        }
        if recs.start % ITEM_ALIGN != 0 || payl.start % ITEM_ALIGN != 0 || indx.start % 8 != 0 {
            return Err(FormatError::BadIndex("INDX, RECS or PAYL is misaligned"));
        }
        Ok(Self {
            backing,
            path: None,
            header,
            sections,
            indx,
            recs,
            payl,
            count,
        })
    }

    fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// The whole pack, as mapped (or held) in memory. Only the header and section table
    /// have been checked: use [`Pack::get`] and [`Module::payload_span`] for anything else.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes()
    }

    /// The path the pack was opened from, if any.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The checked header.
    #[must_use]
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The checked section table.
    #[must_use]
    pub fn sections(&self) -> &[SectionEntry] {
        &self.sections
    }

    /// The bytes of a section, if the pack has it.
    #[must_use]
    pub fn section(&self, id: SectionId) -> Option<&[u8]> {
        let s = self.sections.iter().find(|s| s.id == id)?;
        let start = usize::try_from(s.offset).ok()?;
        let len = usize::try_from(s.length).ok()?;
        self.bytes().get(start..start.checked_add(len)?)
    }

    /// `key=value` pairs of the optional `META` section (empty when absent).
    #[must_use]
    pub fn meta(&self) -> Vec<(String, String)> {
        let Some(meta) = self.section(SectionId::META) else {
            return Vec::new();
        };
        String::from_utf8_lossy(meta)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Number of modules.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the pack holds no module.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Total size of the file.
    #[must_use]
    pub fn file_size(&self) -> u64 {
        self.header.file_size
    }

    fn entry(&self, i: usize) -> (u64, usize, usize, [u8; 32]) {
        let e = &self.bytes()[self.indx.start + i * INDEX_ENTRY_SIZE..][..INDEX_ENTRY_SIZE];
        (
            u64_at(e, 0),
            u32_at(e, 8) as usize,
            u32_at(e, 12) as usize,
            array_at(e, 16),
        )
    }

    fn entry_hash(&self, i: usize) -> u64 {
        u64_at(self.bytes(), self.indx.start + i * INDEX_ENTRY_SIZE)
    }

    /// The record of lookup-table entry `i`, checked: bounds, digest, then bytecheck.
    fn record(&self, i: usize) -> Result<&ArchivedModuleRecord, FormatError> {
        let (_, off, len, digest) = self.entry(i);
        let invalid = |reason: &str| FormatError::RecordInvalid {
            entry: i,
            reason: reason.to_owned(),
        };
        if off % ITEM_ALIGN != 0 {
            return Err(invalid("record is misaligned"));
        }
        let start = self
            .recs
            .start
            .checked_add(off)
            .ok_or_else(|| invalid("offset overflows"))?;
        let end = start
            .checked_add(len)
            .ok_or_else(|| invalid("length overflows"))?;
        if end > self.recs.end {
            return Err(invalid("record lies outside RECS"));
        }
        let bytes = &self.bytes()[start..end];
        if *blake3::hash(bytes).as_bytes() != digest {
            return Err(FormatError::RecordDigestMismatch { entry: i });
        }
        rkyv::access::<ArchivedModuleRecord, rkyv::rancor::Error>(bytes)
            .map_err(|e| invalid(&e.to_string()))
    }

    /// Looks a module up by its fully qualified name.
    ///
    /// `Ok(None)` when the pack does not hold it; an error when the entry that would hold it
    /// is damaged (the caller then lets the stock importer handle the module).
    pub fn get(&self, name: &str) -> Result<Option<Module<'_>>, FormatError> {
        let h = name_hash(name.as_bytes());
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry_hash(mid) < h {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut i = lo;
        while i < self.count && self.entry_hash(i) == h {
            let record = self.record(i)?;
            if record.name.as_str() == name {
                return Ok(Some(Module { pack: self, record }));
            }
            i += 1;
        }
        Ok(None)
    }

    /// Every module, in lookup-table order (by name hash), each checked as it is read.
    pub fn modules(&self) -> impl Iterator<Item = Result<Module<'_>, FormatError>> + '_ {
        (0..self.count).map(move |i| self.record(i).map(|record| Module { pack: self, record }))
    }

    /// Checks every section digest, every record and every payload, and the order and
    /// uniqueness of the lookup table. Reads the whole pack.
    #[must_use]
    pub fn verify(&self) -> VerifyReport {
        let mut report = VerifyReport::default();
        for s in &self.sections {
            if let Some(bytes) = self.section(s.id) {
                if *blake3::hash(bytes).as_bytes() != s.digest {
                    report
                        .problems
                        .push(FormatError::SectionDigestMismatch(s.id));
                }
            }
        }
        let mut previous: Option<(u64, String)> = None;
        for i in 0..self.count {
            let module = match self.record(i) {
                Ok(record) => Module { pack: self, record },
                Err(e) => {
                    report.problems.push(e);
                    continue;
                }
            };
            let key = (self.entry_hash(i), module.name().to_owned());
            if name_hash(key.1.as_bytes()) != key.0 {
                report
                    .problems
                    .push(FormatError::BadIndex("an entry's hash is not its name's"));
            }
            if previous.as_ref().is_some_and(|p| *p >= key) {
                report
                    .problems
                    .push(FormatError::BadIndex("entries are not sorted and unique"));
            }
            if let Err(e) = module.payload() {
                report.problems.push(e);
            }
            report.modules_checked += 1;
            previous = Some(key);
        }
        report
    }
}

impl<'a> Module<'a> {
    /// Fully qualified name.
    #[must_use]
    pub fn name(&self) -> &'a str {
        self.record.name.as_str()
    }

    /// Whether the module is a package.
    #[must_use]
    pub fn is_package(&self) -> bool {
        self.record.is_package
    }

    /// Source path relative to the packed directory, `/`-separated.
    #[must_use]
    pub fn source_path(&self) -> &'a str {
        self.record.source_path.as_str()
    }

    /// Source size in bytes.
    #[must_use]
    pub fn source_size(&self) -> u64 {
        self.record.source_size.to_native()
    }

    /// Source modification time, nanoseconds since the epoch.
    #[must_use]
    pub fn source_mtime_ns(&self) -> i64 {
        self.record.source_mtime_ns.to_native()
    }

    /// BLAKE3 of the source.
    #[must_use]
    pub fn source_blake3(&self) -> &'a [u8; 32] {
        &self.record.source_blake3
    }

    /// PEP 552 flags of the originating `.pyc`.
    #[must_use]
    pub fn pyc_flags(&self) -> u32 {
        self.record.pyc_flags.to_native()
    }

    /// Length of the payload in bytes.
    #[must_use]
    pub fn payload_len(&self) -> u64 {
        self.record.payload_len.to_native()
    }

    /// The whole archived record.
    #[must_use]
    pub fn record(&self) -> &'a ArchivedModuleRecord {
        self.record
    }

    /// The marshalled code object, after checking its bounds and digest.
    pub fn payload(&self) -> Result<&'a [u8], FormatError> {
        let span = self.payload_span()?;
        Ok(&self.pack.bytes()[span])
    }

    /// Where the payload lies in the pack's bytes ([`Pack::as_bytes`]), after checking its
    /// bounds and digest: what a zero-copy view of the mapping needs.
    pub fn payload_span(&self) -> Result<Range<usize>, FormatError> {
        let name = || self.name().to_owned();
        let payl = &self.pack.payl;
        let off = usize::try_from(self.record.payload_offset.to_native())
            .map_err(|_| FormatError::PayloadOutOfBounds { module: name() })?;
        let len = usize::try_from(self.record.payload_len.to_native())
            .map_err(|_| FormatError::PayloadOutOfBounds { module: name() })?;
        let start = payl.start.checked_add(off);
        let end = start.and_then(|s| s.checked_add(len));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(FormatError::PayloadOutOfBounds { module: name() });
        };
        if end > payl.end {
            return Err(FormatError::PayloadOutOfBounds { module: name() });
        }
        let bytes = &self.pack.bytes()[start..end];
        if *blake3::hash(bytes).as_bytes() != self.record.payload_blake3 {
            return Err(FormatError::PayloadDigestMismatch { module: name() });
        }
        Ok(start..end)
    }
}

impl std::fmt::Debug for Module<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("record", self.record)
            .finish()
    }
}
