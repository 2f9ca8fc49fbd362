//! Building packs: deterministic bytes, written atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use crate::error::FormatError;
use crate::header::{
    HEADER_SIZE, Header, READ_VERSION, SECTION_ENTRY_SIZE, SECTION_FLAG_REQUIRED, SectionEntry,
    SectionId, Target, WRITE_VERSION, rkyv_features,
};
use crate::image::{ModuleImage, build_sections};
use crate::reader::{INDEX_ENTRY_SIZE, ITEM_ALIGN, name_hash};
use crate::record::ModuleRecord;

/// One module to put in a pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInput {
    /// Fully qualified module name.
    pub name: String,
    /// Whether it is a package (`__init__.py`).
    pub is_package: bool,
    /// Source path relative to the packed directory, `/`-separated.
    pub source_path: String,
    /// Source size in bytes.
    pub source_size: u64,
    /// Source modification time in nanoseconds.
    pub source_mtime_ns: i64,
    /// BLAKE3 of the source bytes.
    pub source_blake3: [u8; 32],
    /// PEP 552 flags of the `.pyc` the code came from.
    pub pyc_flags: u32,
    /// The marshalled code object (a `.pyc` without its 16-byte header).
    pub payload: Vec<u8>,
    /// The module's image (image mode), if it has one; packs with images need
    /// [`PackWriter::set_layout`].
    pub image: Option<ModuleImage>,
}

/// Collects modules and produces the bytes of a pack.
///
/// The output depends only on the target, the metadata and the set of modules (not on the
/// order they were added in): modules are sorted by name, records and payloads laid out in
/// that order, and the lookup table sorted by (name hash, name).
#[derive(Debug)]
pub struct PackWriter {
    target: Target,
    meta: BTreeMap<String, String>,
    modules: BTreeMap<String, ModuleInput>,
    layout: Option<Vec<u8>>,
    dirs: Option<Vec<u8>>,
    base: Option<Vec<u8>>,
    extra: BTreeMap<SectionId, Vec<u8>>,
}

fn align_up(v: usize, align: usize) -> usize {
    v.div_ceil(align) * align
}

fn pad_to(buf: &mut Vec<u8>, align: usize) {
    buf.resize(align_up(buf.len(), align), 0);
}

pub(crate) fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| !part.is_empty())
        && !name.contains(['/', '\\', '\0', '\n'])
}

impl PackWriter {
    /// A writer for packs of `target`.
    pub fn new(target: Target) -> Result<Self, FormatError> {
        target.validate()?;
        Ok(Self {
            target,
            meta: BTreeMap::new(),
            modules: BTreeMap::new(),
            layout: None,
            dirs: None,
            base: None,
            extra: BTreeMap::new(),
        })
    }

    /// Makes this an image pack: `description` is the layout description (`ILAY`) of the
    /// interpreter the images were made by; its BLAKE3 becomes the header's
    /// `layout_fingerprint`. Modules may then carry images.
    pub fn set_layout(&mut self, description: Vec<u8>) {
        self.layout = Some(description);
    }

    /// Records the listings of the directories the pack covers (`DIRS`, §12).
    pub fn set_dirs(&mut self, dirs: Vec<crate::dirs::DirInput>) -> Result<(), FormatError> {
        self.dirs = Some(crate::dirs::build(dirs)?);
        Ok(())
    }

    /// Makes this pack a delta of the base `base` names (`spec/FORMAT.md` §13): a required
    /// `BASE` section.
    pub fn set_base(&mut self, base: &crate::BaseRef) -> Result<(), FormatError> {
        if let Some(bad) = base.deleted.iter().find(|n| !valid_module_name(n)) {
            return Err(FormatError::InvalidModuleName(bad.clone()));
        }
        self.base = Some(base.encode());
        Ok(())
    }

    /// Adds an optional section of a private extension (`spec/FORMAT.md` §4.1): any
    /// identifier this format does not define; readers that do not know it skip it.
    pub fn add_section(&mut self, id: SectionId, body: Vec<u8>) -> Result<(), FormatError> {
        if id.is_known() || self.extra.contains_key(&id) {
            return Err(FormatError::DuplicateSection(id));
        }
        self.extra.insert(id, body);
        Ok(())
    }

    /// Sets a `META` entry (keys and values must not contain `=` or newlines; such
    /// characters are replaced by `_`).
    pub fn set_meta(&mut self, key: &str, value: &str) {
        let clean = |s: &str| s.replace(['=', '\n', '\r'], "_");
        self.meta
            .insert(clean(key), value.replace(['\n', '\r'], "_"));
    }

    /// Adds a module; names must be unique.
    pub fn add(&mut self, module: ModuleInput) -> Result<(), FormatError> {
        if !valid_module_name(&module.name) {
            return Err(FormatError::InvalidModuleName(module.name));
        }
        if self.modules.contains_key(&module.name) {
            return Err(FormatError::DuplicateModule(module.name));
        }
        if module.image.is_some() && self.layout.is_none() {
            return Err(FormatError::ImageWithoutLayout(module.name));
        }
        self.modules.insert(module.name.clone(), module);
        Ok(())
    }

    /// Number of modules added so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Whether no module was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Produces the pack's bytes.
    pub fn finish(self) -> Result<Vec<u8>, FormatError> {
        let too_large = FormatError::TooLarge;
        // PAYL and RECS, in name order.
        let mut payl = Vec::new();
        let mut recs = Vec::new();
        let mut entries = Vec::with_capacity(self.modules.len());
        let modules: Vec<ModuleInput> = self.modules.into_values().collect();
        // Hashing dominates for large packs: digest the payloads on every core.
        let digests: Vec<[u8; 32]> = modules
            .par_iter()
            .map(|m| *blake3::hash(&m.payload).as_bytes())
            .collect();
        let total: usize = modules
            .iter()
            .map(|m| align_up(m.payload.len(), ITEM_ALIGN))
            .sum();
        payl.reserve(total);
        let mut images = Vec::with_capacity(modules.len());
        for (m, payload_blake3) in modules.into_iter().zip(digests) {
            pad_to(&mut payl, ITEM_ALIGN);
            let record = ModuleRecord {
                source_blake3: m.source_blake3,
                payload_blake3,
                payload_offset: payl.len() as u64,
                payload_len: m.payload.len() as u64,
                source_size: m.source_size,
                source_mtime_ns: m.source_mtime_ns,
                name: m.name,
                source_path: m.source_path,
                pyc_flags: m.pyc_flags,
                is_package: m.is_package,
            };
            payl.extend_from_slice(&m.payload);
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&record)
                .map_err(|e| FormatError::Serialize(e.to_string()))?;
            pad_to(&mut recs, ITEM_ALIGN);
            let offset = u32::try_from(recs.len()).map_err(|_| too_large("RECS over 4 GiB"))?;
            let len = u32::try_from(bytes.len()).map_err(|_| too_large("record over 4 GiB"))?;
            recs.extend_from_slice(&bytes);
            entries.push((
                name_hash(record.name.as_bytes()),
                record.name,
                offset,
                len,
                *blake3::hash(&bytes).as_bytes(),
                images.len(),
            ));
            images.push(m.image);
        }
        entries.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut indx = Vec::with_capacity(entries.len() * INDEX_ENTRY_SIZE);
        for (hash, _, offset, len, digest, _) in &entries {
            indx.extend_from_slice(&hash.to_le_bytes());
            indx.extend_from_slice(&offset.to_le_bytes());
            indx.extend_from_slice(&len.to_le_bytes());
            indx.extend_from_slice(digest);
        }
        let meta: Vec<u8> = self
            .meta
            .iter()
            .flat_map(|(k, v)| format!("{k}={v}\n").into_bytes())
            .collect();

        let mut bodies: Vec<(SectionId, u32, Vec<u8>)> = vec![
            (SectionId::INDX, SECTION_FLAG_REQUIRED, indx),
            (SectionId::RECS, SECTION_FLAG_REQUIRED, recs),
            (SectionId::PAYL, SECTION_FLAG_REQUIRED, payl),
        ];
        if !meta.is_empty() {
            bodies.push((SectionId::META, 0, meta));
        }
        if let Some(dirs) = self.dirs {
            bodies.push((SectionId::DIRS, 0, dirs));
        }
        if let Some(base) = self.base {
            bodies.push((SectionId::BASE, SECTION_FLAG_REQUIRED, base));
        }
        let mut layout_fingerprint = [0; 32];
        if let Some(layout) = self.layout {
            // Images in lookup-table order, as the IREL directory lists them.
            let ordered: Vec<Option<&ModuleImage>> =
                entries.iter().map(|e| images[e.5].as_ref()).collect();
            let record_digests: Vec<[u8; 32]> = entries.iter().map(|e| e.4).collect();
            let sections = build_sections(&ordered, &record_digests)?;
            layout_fingerprint = *blake3::hash(&layout).as_bytes();
            bodies.push((SectionId::IMGO, 0, sections.imgo));
            bodies.push((SectionId::IREL, 0, sections.irel));
            bodies.push((SectionId::INAM, 0, sections.inam));
            bodies.push((SectionId::ILAY, 0, layout));
        }
        for (id, body) in self.extra {
            bodies.push((id, 0, body));
        }
        let table_len = bodies.len() * SECTION_ENTRY_SIZE;
        let body_len: usize = bodies.iter().map(|(_, _, b)| b.len() + ITEM_ALIGN).sum();
        let mut out = Vec::with_capacity(HEADER_SIZE + table_len + body_len);
        out.resize(HEADER_SIZE + table_len, 0);
        let mut table = Vec::with_capacity(table_len);
        for (id, flags, body) in &bodies {
            pad_to(&mut out, ITEM_ALIGN);
            let entry = SectionEntry {
                id: *id,
                flags: *flags,
                offset: out.len() as u64,
                length: body.len() as u64,
                alignment: ITEM_ALIGN as u32,
                digest: *blake3::Hasher::new()
                    .update_rayon(body)
                    .finalize()
                    .as_bytes(),
            };
            table.extend_from_slice(&Header::section_entry_bytes(&entry));
            out.extend_from_slice(body);
        }
        let mut header = Header {
            read_version: READ_VERSION,
            write_version: WRITE_VERSION,
            flags: 0,
            rkyv_features: rkyv_features(),
            target: self.target,
            layout_fingerprint,
            section_count: bodies.len() as u32,
            file_size: out.len() as u64,
            module_count: entries.len() as u64,
            digest: [0; 32],
        };
        header.digest = Header::compute_digest(&header.to_bytes(), &table);
        out[..HEADER_SIZE].copy_from_slice(&header.to_bytes());
        out[HEADER_SIZE..HEADER_SIZE + table_len].copy_from_slice(&table);
        Ok(out)
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync,
/// rename over `path`, fsync of the directory. A pack is never rewritten in place (other
/// processes may have it mapped). Creates the parent directory if needed; the file is made
/// readable by everyone (mode 0644) like a `.pyc`. The temporary file is named
/// [`crate::temp_prefix`]`(path)` + random characters + `.tmp`, so that `ppyc clean` can
/// tell the leftovers of an interrupted write of `path` from other files.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| FormatError::write(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&crate::location::temp_prefix(path))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| FormatError::write(dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| FormatError::write(tmp.path(), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| FormatError::write(tmp.path(), e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| FormatError::write(tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| FormatError::write(path, e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Best effort: some filesystems refuse fsync on a directory.
        let _ = d.sync_all();
    }
    Ok(())
}
