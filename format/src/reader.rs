#![allow(unsafe_code)]
//! Opening packs and reading modules out of them.
//!
//! This is the only module of the crate with `unsafe`: mapping the file.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rkyv::util::AlignedVec;

use crate::bytes::{array_at, u32_at, u64_at};
use crate::error::FormatError;
use crate::header::{Header, SectionEntry, SectionId};
use crate::image::{DIRECTORY_ENTRY_SIZE, ImageRanges, ImageRef, Names, image_ref};
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
    /// The mapping, the file for reads that must not touch the mapping, and the file's
    /// size when it was found shorter than the mapping (`u64::MAX` until then).
    Mmap(memmap2::Mmap, File, AtomicU64),
    Owned(AlignedVec<16>),
}

/// [`Backing::Mmap`]'s size while the file still backs the whole mapping.
const NOT_CUT: u64 = u64::MAX;

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Mmap(m, _, _) => m,
            Self::Owned(v) => v,
        }
    }

    /// Whether the file still backs every byte of the mapping: a page of a mapping past
    /// the file's end raises `SIGBUS` when touched, so a file truncated in place (by
    /// someone else: ppyc replaces packs by rename) must no longer be read through the
    /// map. One `fstat`; once the file was found shorter, the pack stays refused.
    fn check_mapped(&self) -> Result<(), FormatError> {
        let Self::Mmap(map, file, cut) = self else {
            return Ok(());
        };
        if CHECKED.with(std::cell::Cell::get) == std::ptr::from_ref(self) as usize {
            // Checked at the start of this thread's operation under way ([`CheckedScope`]).
            return Ok(());
        }
        let mut actual = cut.load(Ordering::Relaxed);
        if actual == NOT_CUT {
            match file.metadata() {
                Ok(m) if m.len() >= map.len() as u64 => return Ok(()),
                Ok(m) => actual = m.len(),
                Err(_) => actual = 0,
            }
            cut.store(actual, Ordering::Relaxed);
        }
        Err(FormatError::CutWhileMapped {
            mapped: map.len() as u64,
            actual,
        })
    }
}

thread_local! {
    /// The backing (its address) whose mapping this thread checked at the start of the
    /// operation under way, if any ([`Pack::checked_scope`]).
    static CHECKED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// While alive, this thread's accesses to one pack's mapping rely on the check made when
/// it was created ([`Pack::checked_scope`]) instead of one `fstat` each. Not `Send`: it
/// restores the thread's previous scope when dropped.
pub struct CheckedScope<'a> {
    previous: usize,
    _pack: std::marker::PhantomData<(&'a Pack, *const ())>,
}

impl Drop for CheckedScope<'_> {
    fn drop(&mut self) {
        CHECKED.with(|c| c.set(self.previous));
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
    /// The image sections: `None` without them, an error when they are unusable (the
    /// marshal payloads stay usable).
    images: Option<Result<ImageRanges, String>>,
    /// Whether the lookup table matches its section digest, once computed.
    index_intact: std::sync::OnceLock<bool>,
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
    /// Its lookup-table entry.
    index: usize,
}

/// The image sections of a pack (`spec/FORMAT.md` §10), located and bounds checked.
#[derive(Clone, Copy, Debug)]
pub struct Images<'a> {
    /// The layout description (`ILAY`); its BLAKE3 is the header's fingerprint.
    pub layout: &'a [u8],
    /// The pack-wide identifier table (`INAM`).
    pub names: Names<'a>,
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
        // Only a regular file can be mapped (a directory would say `ENODEV`), and opening a
        // FIFO would block.
        let kind = std::fs::metadata(path)
            .map_err(|e| FormatError::io(path, e))?
            .file_type();
        if kind.is_dir() {
            return Err(FormatError::NotAFile {
                path: path.to_path_buf(),
                kind: "a directory",
            });
        }
        if !kind.is_file() {
            return Err(FormatError::NotAFile {
                path: path.to_path_buf(),
                kind: "not a regular file",
            });
        }
        let mut file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
        if len < crate::HEADER_SIZE as u64 {
            // Too short to map: its bytes say whether it is a truncated pack or no pack.
            let mut start = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut start)
                .map_err(|e| FormatError::io(path, e))?;
            return Err(Header::parse(&start)
                .err()
                .unwrap_or(FormatError::TooSmall {
                    len,
                    needed: crate::HEADER_SIZE as u64,
                }));
        }
        // SAFETY: the map is read-only and private to this process. ppyc never modifies a
        // pack in place (writers create a new file and rename it over the old one, see
        // `write_atomic`), so the bytes cannot change under the map. A third party changing
        // the file's bytes in place is caught by the digests of what is read (payloads and
        // images are read with `pread`, not through the map). One truncating it would make
        // pages past its new end raise SIGBUS when touched: every access to the map starts
        // with `check_mapped` (the file still covers the mapping), and payloads and images,
        // the bulk of what is read, never touch the map (spec/SECURITY.md).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        let mut pack = Self::from_backing(Backing::Mmap(map, file, AtomicU64::new(NOT_CUT)))?;
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
        let images = (header.layout_fingerprint != [0; 32]).then(|| {
            Self::image_ranges(backing.bytes(), &header, &sections, count)
                .map_err(|e| e.to_string())
        });
        Ok(Self {
            backing,
            path: None,
            header,
            sections,
            indx,
            recs,
            payl,
            count,
            images,
            index_intact: std::sync::OnceLock::new(),
        })
    }

    /// Whether a miss of [`Pack::get`] can be trusted: the lookup table (`INDX`) matches
    /// its section digest. Opening a pack checks no section digest (constant work), and a
    /// found module is covered by its record digest, but a damaged `name_hash` makes its
    /// module look absent; a reader that finds a module's source where the pack has no
    /// record asks this before treating the module as new (`spec/FORMAT.md` §8). Computed
    /// once per open pack (BLAKE3 of `48 × module_count` bytes).
    #[must_use]
    pub fn index_intact(&self) -> bool {
        *self.index_intact.get_or_init(|| {
            let digest = self
                .sections
                .iter()
                .find(|s| s.id == SectionId::INDX)
                .map(|s| s.digest);
            match (self.section(SectionId::INDX), digest) {
                (Some(bytes), Some(digest)) => *blake3::hash(bytes).as_bytes() == digest,
                _ => false,
            }
        })
    }

    /// Locates the image sections and checks what is cheap to check at open: all four
    /// present and aligned, the directory fits, the identifier table's header, and the
    /// layout description against the fingerprint.
    fn image_ranges(
        bytes: &[u8],
        header: &Header,
        sections: &[SectionEntry],
        count: usize,
    ) -> Result<ImageRanges, FormatError> {
        let find = |id: SectionId| -> Result<Range<usize>, FormatError> {
            let s = sections
                .iter()
                .find(|s| s.id == id)
                .ok_or_else(|| FormatError::BadImage(format!("no `{id}` section")))?;
            let start = usize::try_from(s.offset)
                .map_err(|_| FormatError::BadImage(format!("`{id}` is out of range")))?;
            let len = usize::try_from(s.length)
                .map_err(|_| FormatError::BadImage(format!("`{id}` is out of range")))?;
            if start % crate::image::OBJECTS_ALIGN != 0 {
                return Err(FormatError::BadImage(format!("`{id}` is misaligned")));
            }
            Ok(start..start + len)
        };
        let (imgo, irel, inam, ilay) = (
            find(SectionId::IMGO)?,
            find(SectionId::IREL)?,
            find(SectionId::INAM)?,
            find(SectionId::ILAY)?,
        );
        let directory_end = count
            .checked_mul(DIRECTORY_ENTRY_SIZE)
            .and_then(|n| n.checked_add(irel.start))
            .filter(|&end| end <= irel.end)
            .ok_or_else(|| FormatError::BadImage("the IREL directory is truncated".into()))?;
        if *blake3::hash(&bytes[ilay.clone()]).as_bytes() != header.layout_fingerprint {
            return Err(FormatError::BadImage(
                "the layout description does not match the fingerprint".into(),
            ));
        }
        Names::parse(&bytes[inam.clone()])?;
        Ok(ImageRanges {
            imgo,
            irel,
            inam,
            ilay,
            directory_end,
        })
    }

    /// The image sections, if the pack has them: `Ok(None)` for a marshal-only pack, an
    /// error when they are unusable (the marshal payloads can still be used).
    pub fn images(&self) -> Result<Option<Images<'_>>, FormatError> {
        self.backing.check_mapped()?;
        match &self.images {
            None => Ok(None),
            Some(Err(e)) => Err(FormatError::BadImage(e.clone())),
            Some(Ok(r)) => Ok(Some(Images {
                layout: &self.bytes()[r.ilay.clone()],
                names: Names::parse(&self.bytes()[r.inam.clone()])?,
            })),
        }
    }

    fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// The recorded directory listings (`DIRS`), if the pack has them; each entry is
    /// checked when it is read ([`crate::dirs::Dirs::get`]).
    pub fn dirs(&self) -> Result<Option<crate::dirs::Dirs<'_>>, FormatError> {
        self.backing.check_mapped()?;
        self.section(SectionId::DIRS)
            .map(crate::dirs::Dirs::parse)
            .transpose()
    }

    /// Whether this file is a delta (`spec/FORMAT.md` §13): its section table has a `BASE`
    /// entry. Only the section table is read.
    #[must_use]
    pub fn is_delta(&self) -> bool {
        self.sections.iter().any(|s| s.id == SectionId::BASE)
    }

    /// What the `BASE` section of a delta says (`spec/FORMAT.md` §13): `Ok(None)` for a
    /// pack that is not a delta. The section's digest is checked here.
    pub fn base(&self) -> Result<Option<crate::BaseRef>, FormatError> {
        self.backing.check_mapped()?;
        let Some(entry) = self.sections.iter().find(|s| s.id == SectionId::BASE) else {
            return Ok(None);
        };
        let body = self
            .section(SectionId::BASE)
            .ok_or(FormatError::MissingSection(SectionId::BASE))?;
        if *blake3::hash(body).as_bytes() != entry.digest {
            return Err(FormatError::SectionDigestMismatch(SectionId::BASE));
        }
        crate::BaseRef::parse(body).map(Some)
    }

    /// The whole pack, as mapped (or held) in memory. Only the header and section table
    /// have been checked: use [`Pack::get`] and [`Module::payload_span`] for anything else.
    /// Touching these bytes after the file was truncated in place raises `SIGBUS`: check
    /// [`Pack::check_mapped`] first, and prefer [`Pack::read_into`].
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes()
    }

    /// The metadata of the open file itself (`fstat`, so of the very file mapped, whatever
    /// was renamed over its path since); `None` for a pack held in memory.
    pub fn file_metadata(&self) -> Option<std::io::Result<std::fs::Metadata>> {
        match &self.backing {
            Backing::Mmap(_, file, _) => Some(file.metadata()),
            Backing::Owned(_) => None,
        }
    }

    /// Whether the file still covers the whole mapping (one `fstat`); an error, for good,
    /// once it was found truncated in place. Every reader method that touches the map
    /// checks it first.
    pub fn check_mapped(&self) -> Result<(), FormatError> {
        self.backing.check_mapped()
    }

    /// Checks, with one `fstat`, that the file still covers the mapping, and lets this
    /// thread's accesses to the mapping rely on that check while the returned scope lives
    /// (the lookup, record, image and identifier reads of one module load), instead of one
    /// `fstat` per access. A truncation after the check is the race any check has with the
    /// access after it; keep scopes as short as one operation.
    pub fn checked_scope(&self) -> Result<CheckedScope<'_>, FormatError> {
        self.backing.check_mapped()?;
        let key = std::ptr::from_ref(&self.backing) as usize;
        Ok(CheckedScope {
            previous: CHECKED.with(|c| c.replace(key)),
            _pack: std::marker::PhantomData,
        })
    }

    /// Copies the pack's bytes `range` into `out` (of the same length) with `pread(2)`,
    /// without touching the mapping: a file truncated under a running process then gives
    /// an error here, never a `SIGBUS`.
    pub fn read_into(&self, range: Range<usize>, out: &mut [u8]) -> Result<(), FormatError> {
        if range.len() != out.len() || range.end > self.bytes().len() {
            return Err(FormatError::BadImage("a read outside the pack".into()));
        }
        match &self.backing {
            Backing::Owned(v) => out.copy_from_slice(&v[range]),
            Backing::Mmap(_, file, _) => {
                use std::os::unix::fs::FileExt;
                let path = self.path.clone().unwrap_or_default();
                file.read_exact_at(out, range.start as u64)
                    .map_err(|e| FormatError::io(path, e))?;
            }
        }
        Ok(())
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
    /// `None` also when the file no longer covers its mapping.
    pub fn section(&self, id: SectionId) -> Option<&[u8]> {
        self.backing.check_mapped().ok()?;
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
        self.backing.check_mapped()?;
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
                return Ok(Some(Module {
                    pack: self,
                    record,
                    index: i,
                }));
            }
            i += 1;
        }
        Ok(None)
    }

    /// The module of lookup-table entry `index` (as [`Module::index`] gives it), its
    /// record checked again.
    pub fn module_at(&self, index: usize) -> Result<Module<'_>, FormatError> {
        if index >= self.count {
            return Err(FormatError::BadIndex("an entry index out of range"));
        }
        self.backing.check_mapped()?;
        let record = self.record(index)?;
        Ok(Module {
            pack: self,
            record,
            index,
        })
    }

    /// Every module, in lookup-table order (by name hash), each checked as it is read.
    pub fn modules(&self) -> impl Iterator<Item = Result<Module<'_>, FormatError>> + '_ {
        (0..self.count).map(move |i| {
            self.backing.check_mapped()?;
            self.record(i).map(|record| Module {
                pack: self,
                record,
                index: i,
            })
        })
    }

    /// Checks every section digest, every record and every payload, every image, the
    /// order and uniqueness of the lookup table, the syntax of `META` and `ILAY`, and the
    /// layout the format prescribes (records, payloads and images in order, not
    /// overlapping, zero padding; bytes outside every section zero; the identifier table
    /// sorted and packed). Reads the whole pack.
    #[must_use]
    pub fn verify(&self) -> VerifyReport {
        let mut report = VerifyReport::default();
        if let Err(e) = self.backing.check_mapped() {
            report.problems.push(e);
            return report;
        }
        for s in &self.sections {
            if let Some(bytes) = self.section(s.id) {
                if *blake3::hash(bytes).as_bytes() != s.digest {
                    report
                        .problems
                        .push(FormatError::SectionDigestMismatch(s.id));
                }
            }
        }
        self.verify_file_layout(&mut report.problems);
        for (index, s) in self.sections.iter().enumerate() {
            if s.id == SectionId::META || s.id == SectionId::ILAY {
                // META's writer sorts by key, ILAY's by line (spec/FORMAT.md §4.2, §10.1).
                let by_key = s.id == SectionId::META;
                let error = self
                    .section(s.id)
                    .and_then(|t| key_value_lines_error(t, by_key));
                if let Some(reason) = error {
                    report
                        .problems
                        .push(FormatError::BadSection { index, reason });
                }
            }
        }
        let mut placed: Vec<Placed> = Vec::new();
        let mut previous: Option<(u64, String)> = None;
        for i in 0..self.count {
            let module = match self.record(i) {
                Ok(record) => Module {
                    pack: self,
                    record,
                    index: i,
                },
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
            if let Err(e) = module.checked_image() {
                report.problems.push(e);
            }
            let (_, off, len, _) = self.entry(i);
            let record = self.recs.start + off..self.recs.start + off + len;
            // bytecheck accepts encodings the writer never produces (bytes after an inline
            // string's end, padding): the record must be exactly what its fields encode to.
            let canonical =
                rkyv::deserialize::<crate::ModuleRecord, rkyv::rancor::Error>(module.record)
                    .ok()
                    .and_then(|r| rkyv::to_bytes::<rkyv::rancor::Error>(&r).ok());
            if canonical.as_deref() != Some(&self.bytes()[record.clone()]) {
                report.problems.push(FormatError::RecordInvalid {
                    entry: i,
                    reason: "not the canonical encoding of its fields".into(),
                });
            }
            placed.push((
                module.name().to_owned(),
                record,
                module.payload_range().ok(),
                module.image().ok().flatten(),
            ));
            report.modules_checked += 1;
            previous = Some(key);
        }
        if placed.len() == self.count {
            self.verify_module_layout(&mut placed, &mut report.problems);
        }
        if let Ok(Some(images)) = self.images() {
            // Every module's name slots, in lookup-table order (an unreadable image is
            // reported above and contributes none).
            let bytes = self.bytes();
            let slots = (0..self.count).flat_map(|i| {
                let aux = self
                    .module_at(i)
                    .ok()
                    .and_then(|m| m.image().ok().flatten())
                    .and_then(|image| crate::image::Aux::parse(&bytes[image.aux.clone()]).ok());
                let n = aux.as_ref().map_or(0, crate::image::Aux::name_count);
                (0..n).filter_map(move |k| aux.as_ref()?.name_slot(k))
            });
            if let Err(e) = images.names.check_canonical(slots) {
                report.problems.push(e);
            }
        }
        match self.dirs() {
            Ok(Some(dirs)) => {
                if let Err(e) = dirs.verify() {
                    report.problems.push(e);
                }
            }
            Ok(None) => {}
            Err(e) => report.problems.push(e),
        }
        if let Err(e) = self.base() {
            report.problems.push(e);
        }
        report
    }

    /// Bytes outside the header, the section table and every section are zero padding.
    fn verify_file_layout(&self, problems: &mut Vec<FormatError>) {
        let mut ranges: Vec<Range<usize>> = self
            .sections
            .iter()
            .map(|s| s.offset as usize..(s.offset + s.length) as usize)
            .collect();
        ranges.push(0..crate::HEADER_SIZE + self.sections.len() * crate::SECTION_ENTRY_SIZE);
        if let Some(reason) = uncovered_non_zero(self.bytes(), 0..self.bytes().len(), ranges) {
            problems.push(FormatError::BadLayout(format!(
                "outside every section: {reason}"
            )));
        }
    }

    /// Records and payloads in name order, payloads 16-aligned, images in lookup-table
    /// order, none overlapping another, zero padding between them, the last one ending
    /// its section.
    fn verify_module_layout(&self, placed: &mut [Placed], problems: &mut Vec<FormatError>) {
        let mut layout = |what: &str, within: Range<usize>, ranges: Vec<Range<usize>>| {
            if let Some(reason) = in_order_with_zero_padding(self.bytes(), within, &ranges) {
                problems.push(FormatError::BadLayout(format!("{what}: {reason}")));
            }
        };
        // `placed` is in lookup-table order: the images' order.
        if let Some(Ok(r)) = &self.images {
            let objects = placed
                .iter()
                .filter_map(|p| Some(p.3.as_ref()?.objects.clone()));
            layout("IMGO", r.imgo.clone(), objects.collect());
            let aux = placed
                .iter()
                .filter_map(|p| Some(p.3.as_ref()?.aux.clone()));
            layout("IREL", r.directory_end..r.irel.end, aux.collect());
        }
        placed.sort_by(|a, b| a.0.cmp(&b.0));
        layout(
            "RECS",
            self.recs.clone(),
            placed.iter().map(|p| p.1.clone()).collect(),
        );
        let payloads: Option<Vec<Range<usize>>> = placed.iter().map(|p| p.2.clone()).collect();
        if let Some(payloads) = payloads {
            let misaligned = payloads
                .iter()
                .any(|p| (p.start - self.payl.start) % ITEM_ALIGN != 0);
            layout("PAYL", self.payl.clone(), payloads);
            if misaligned {
                problems.push(FormatError::BadLayout(
                    "PAYL: a payload is misaligned".into(),
                ));
            }
        }
    }
}

/// Where a module's parts lie, for the layout checks of [`Pack::verify`]: its name, its
/// record, its payload and its image (as far as they could be located).
type Placed = (String, Range<usize>, Option<Range<usize>>, Option<ImageRef>);

/// Why `ranges` (in the order they must appear) are not laid out one after another inside
/// `within`, with only zero bytes between them and the last one ending `within`; `None`
/// when they are.
fn in_order_with_zero_padding(
    bytes: &[u8],
    within: Range<usize>,
    ranges: &[Range<usize>],
) -> Option<String> {
    let mut at = within.start;
    for r in ranges {
        if r.start < at {
            return Some("items overlap or are out of order".into());
        }
        if r.end > within.end {
            return Some("an item lies outside the section".into());
        }
        if bytes[at..r.start].iter().any(|&b| b != 0) {
            return Some(format!("padding at {:#x} is not zero", at));
        }
        at = r.end;
    }
    // The writer pads before an item, never after the last one.
    (at != within.end).then(|| format!("bytes after the last item, at {at:#x}"))
}

/// Why the bytes of `within` not covered by any of `ranges` (which may overlap) are not
/// all zero; `None` when they are.
fn uncovered_non_zero(
    bytes: &[u8],
    within: Range<usize>,
    mut ranges: Vec<Range<usize>>,
) -> Option<String> {
    ranges.sort_by_key(|r| r.start);
    let mut at = within.start;
    for r in ranges {
        if r.start > at && bytes[at..r.start.min(within.end)].iter().any(|&b| b != 0) {
            return Some(format!("byte {at:#x} to {:#x} is not zero", r.start));
        }
        at = at.max(r.end);
    }
    (at < within.end && bytes[at..within.end].iter().any(|&b| b != 0))
        .then(|| format!("byte {at:#x} to the end is not zero"))
}

/// Why `text` is not `key=value` lines (UTF-8, each ending in `\n`, no CR, sorted bytewise
/// and unique: by key when `by_key`, else by line), as `META` and `ILAY` are; `None` when
/// it is.
fn key_value_lines_error(text: &[u8], by_key: bool) -> Option<&'static str> {
    let Ok(text) = std::str::from_utf8(text) else {
        return Some("its key=value lines are not UTF-8");
    };
    if !text.is_empty() && !text.ends_with('\n') {
        return Some("its last key=value line does not end in a newline");
    }
    if text.contains('\r') {
        return Some("its key=value lines hold a carriage return");
    }
    let mut previous: Option<&str> = None;
    for line in text.lines() {
        let Some((key, _)) = line.split_once('=') else {
            return Some("a line is not key=value");
        };
        let key = if by_key { key } else { line };
        if previous.is_some_and(|p| p >= key) {
            return Some("its keys are not sorted and unique");
        }
        previous = Some(key);
    }
    None
}

impl<'a> Module<'a> {
    /// The module's entry in the lookup table (the order of the `IREL` directory).
    #[must_use]
    pub fn index(&self) -> usize {
        self.index
    }

    /// Where the module's image is (image packs only): `Ok(None)` when the pack has no
    /// image sections or this module has no image; an error when its directory entry or the
    /// image sections are damaged. The image's digest is not checked here
    /// ([`ImageRef::check`] checks copies of the bytes).
    pub fn image(&self) -> Result<Option<ImageRef>, FormatError> {
        match &self.pack.images {
            None => Ok(None),
            Some(Err(e)) => Err(FormatError::BadImage(e.clone())),
            Some(Ok(ranges)) => {
                self.pack.backing.check_mapped()?;
                let (_, _, _, record_digest) = self.pack.entry(self.index);
                image_ref(self.pack.bytes(), ranges, self.index, record_digest)
            }
        }
    }

    /// The module's image, checked (digest and relocation-data structure) and decoded back
    /// into a [`crate::ModuleImage`] with its identifiers spelled out (for reuse by
    /// incremental builds and for `ppyc verify`).
    pub fn checked_image(&self) -> Result<Option<crate::ModuleImage>, FormatError> {
        // Every error names the module (`ppyc verify` lists them).
        self.checked_image_inner().map_err(|e| match e {
            FormatError::BadImage(what) if !what.contains('`') => {
                FormatError::BadImage(format!("module `{}`: {what}", self.name()))
            }
            other => other,
        })
    }

    fn checked_image_inner(&self) -> Result<Option<crate::ModuleImage>, FormatError> {
        let Some(image) = self.image()? else {
            return Ok(None);
        };
        self.pack.backing.check_mapped()?;
        let bytes = self.pack.bytes();
        let (stored, aux) = (&bytes[image.objects.clone()], &bytes[image.aux.clone()]);
        if !image.check(stored, aux) {
            return Err(FormatError::BadImage(format!(
                "the image of `{}` is damaged (digest mismatch)",
                self.name()
            )));
        }
        let mut objects = vec![0u8; image.objects_len()];
        image.decode_objects(stored, &mut objects)?;
        let parsed = crate::image::Aux::parse(aux)?;
        let names = self
            .pack
            .images()?
            .map(|i| i.names)
            .ok_or_else(|| FormatError::BadImage("no identifier table".into()))?;
        let mut slots = Vec::with_capacity(parsed.name_count());
        for slot in 0..parsed.name_count() {
            let index = parsed.name_slot(slot).unwrap_or(u32::MAX) as usize;
            slots.push(names.get(index)?.to_vec());
        }
        let frozensets: Vec<crate::image::FrozenSetImage> = parsed
            .frozensets()
            .map(|(rebuild, items)| crate::image::FrozenSetImage {
                items: items.collect(),
                rebuild,
            })
            .collect();
        // Items are words (§10.2) that refer only to what exists when the frozenset is
        // built: the module's objects and names, earlier frozensets, well-known objects.
        for (k, fs) in frozensets.iter().enumerate() {
            for &item in &fs.items {
                let ok = match crate::Word::decode(item) {
                    Some(crate::Word::Internal(o)) => o % 8 == 0 && o < objects.len() as u64,
                    Some(crate::Word::Symbol(n)) => {
                        use crate::image::symbol;
                        (symbol::NONE..symbol::COUNT).contains(&n) && !(24..=31).contains(&n)
                    }
                    Some(crate::Word::Name(n)) => (n as usize) < slots.len(),
                    Some(crate::Word::FrozenSet(n)) => (n as usize) < k,
                    Some(crate::Word::Filename) | None => false,
                };
                if !ok {
                    return Err(FormatError::BadImage(format!(
                        "frozenset {k} has an invalid item {item:#x}"
                    )));
                }
            }
        }
        Ok(Some(crate::ModuleImage {
            objects,
            root: parsed.root,
            object_count: parsed.object_count,
            code_count: parsed.code_count,
            names: slots,
            frozensets,
        }))
    }

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

    /// Where the payload lies in the pack's bytes, bounds checked but not digest checked
    /// (for reading a copy with [`Pack::read_into`], then [`Module::payload_matches`]).
    pub fn payload_range(&self) -> Result<Range<usize>, FormatError> {
        let name = || self.name().to_owned();
        let payl = &self.pack.payl;
        let off = usize::try_from(self.record.payload_offset.to_native())
            .map_err(|_| FormatError::PayloadOutOfBounds { module: name() })?;
        let len = usize::try_from(self.record.payload_len.to_native())
            .map_err(|_| FormatError::PayloadOutOfBounds { module: name() })?;
        let start = payl.start.checked_add(off);
        let end = start.and_then(|s| s.checked_add(len));
        match (start, end) {
            (Some(start), Some(end)) if end <= payl.end => Ok(start..end),
            _ => Err(FormatError::PayloadOutOfBounds { module: name() }),
        }
    }

    /// Whether `payload` (a copy of the payload's bytes) matches the record's digest.
    #[must_use]
    pub fn payload_matches(&self, payload: &[u8]) -> bool {
        *blake3::hash(payload).as_bytes() == self.record.payload_blake3
    }

    /// The marshalled code object, after checking its bounds and digest.
    pub fn payload(&self) -> Result<&'a [u8], FormatError> {
        let span = self.payload_span()?;
        Ok(&self.pack.bytes()[span])
    }

    /// Where the payload lies in the pack's bytes ([`Pack::as_bytes`]), after checking its
    /// bounds and digest: what a zero-copy view of the mapping needs.
    pub fn payload_span(&self) -> Result<Range<usize>, FormatError> {
        let span = self.payload_range()?;
        self.pack.backing.check_mapped()?;
        if !self.payload_matches(&self.pack.bytes()[span.clone()]) {
            return Err(FormatError::PayloadDigestMismatch {
                module: self.name().to_owned(),
            });
        }
        Ok(span)
    }
}

impl std::fmt::Debug for Module<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("record", self.record)
            .finish()
    }
}
