//! Module images (image mode, `spec/FORMAT.md` §10): the pure-data side.
//!
//! An image is the memory of the objects a module's code consists of (code objects,
//! tuples, strings, bytes, numbers), laid out exactly as the target interpreter holds them,
//! with every pointer field holding a tagged [`Word`] instead of an address. The runtime
//! (`ppyc-runtime`, the only crate that knows CPython's layouts) produces images in the
//! compile workers and loads them; this module only encodes, stores and finds them:
//!
//! - [`ModuleImage`]: one module's image as a worker produces it, and its wire encoding;
//! - the sections `IMGO` (object areas), `IREL` (per-module directory and relocation data),
//!   `INAM` (the pack-wide identifier table) and `ILAY` (the layout description whose
//!   BLAKE3 is the header's `layout_fingerprint`), written by [`crate::PackWriter`] and read
//!   through [`crate::Pack::images`] and [`crate::Module::image`].

use std::ops::Range;

use crate::bytes::{Cursor, put_blob, u32_at, u64_at};
use crate::error::FormatError;
use crate::reader::name_hash;

/// Version of the image encoding (the object areas, words and relocation data). Part of
/// the layout description, hence of the fingerprint.
pub const IMAGE_FORMAT_VERSION: u32 = 1;

/// Alignment of every object area inside `IMGO` (and of the memory the runtime reads it
/// into).
pub const OBJECTS_ALIGN: usize = 16;

/// Size of one `IREL` directory entry.
pub const DIRECTORY_ENTRY_SIZE: usize = 64;

/// Size of the fixed part of a module's relocation data.
pub const AUX_HEADER_SIZE: usize = 32;

/// Size of one `INAM` entry.
pub const NAME_ENTRY_SIZE: usize = 16;

/// The value of one pointer field (or frozenset item) of an image: the low three bits are
/// the tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Word {
    /// An object of the same image, by its offset in the object area (a multiple of 8).
    Internal(u64),
    /// A well-known object of the interpreter ([`symbol`]).
    Symbol(u32),
    /// An identifier: slot `n` of the module's name slots, bound to this process's interned
    /// string.
    Name(u32),
    /// Frozenset `n` of the module's frozenset table, built at load.
    FrozenSet(u32),
    /// The path the module was found at (what `co_filename` becomes).
    Filename,
}

impl Word {
    const TAG_MASK: u64 = 7;

    /// The 64-bit encoding.
    #[must_use]
    pub fn encode(self) -> u64 {
        match self {
            Self::Internal(offset) => offset,
            Self::Symbol(n) => u64::from(n) << 3 | 1,
            Self::Name(n) => u64::from(n) << 3 | 2,
            Self::FrozenSet(n) => u64::from(n) << 3 | 3,
            Self::Filename => 4,
        }
    }

    /// Decodes a word; `None` for a reserved tag or out-of-range value.
    #[must_use]
    pub fn decode(word: u64) -> Option<Self> {
        let value = word >> 3;
        let index = || u32::try_from(value).ok();
        match word & Self::TAG_MASK {
            0 => Some(Self::Internal(word)),
            1 => index().map(Self::Symbol),
            2 => index().map(Self::Name),
            3 => index().map(Self::FrozenSet),
            4 if value == 0 => Some(Self::Filename),
            _ => None,
        }
    }
}

/// The well-known objects an image may refer to ([`Word::Symbol`]). Types appear only as
/// the type of an image object; the others only as values.
pub mod symbol {
    /// `code`.
    pub const CODE_TYPE: u32 = 0;
    /// `tuple`.
    pub const TUPLE_TYPE: u32 = 1;
    /// `str`.
    pub const STR_TYPE: u32 = 2;
    /// `bytes`.
    pub const BYTES_TYPE: u32 = 3;
    /// `int`.
    pub const INT_TYPE: u32 = 4;
    /// `float`.
    pub const FLOAT_TYPE: u32 = 5;
    /// `complex`.
    pub const COMPLEX_TYPE: u32 = 6;
    /// Number of type symbols (0..TYPE_COUNT).
    pub const TYPE_COUNT: u32 = 7;
    /// `None`.
    pub const NONE: u32 = 16;
    /// `False`.
    pub const FALSE: u32 = 17;
    /// `True`.
    pub const TRUE: u32 = 18;
    /// `...`.
    pub const ELLIPSIS: u32 = 19;
    /// The class `StopIteration` (marshal's `S`).
    pub const STOP_ITERATION: u32 = 20;
    /// The empty tuple.
    pub const EMPTY_TUPLE: u32 = 21;
    /// The empty string.
    pub const EMPTY_STR: u32 = 22;
    /// The empty bytes.
    pub const EMPTY_BYTES: u32 = 23;
    /// The first of the cached small ints, `-5`.
    pub const SMALL_INT_FIRST: u32 = 32;
    /// The smallest cached int.
    pub const SMALL_INT_MIN: i64 = -5;
    /// The largest cached int.
    pub const SMALL_INT_MAX: i64 = 256;
    /// The first one-character string, `chr(0)`; `chr(c)` is `LATIN1_FIRST + c`.
    pub const LATIN1_FIRST: u32 = SMALL_INT_FIRST + (SMALL_INT_MAX - SMALL_INT_MIN + 1) as u32;
    /// Number of symbols.
    pub const COUNT: u32 = LATIN1_FIRST + 256;

    /// The symbol of the cached int `v`.
    #[must_use]
    pub fn small_int(v: i64) -> Option<u32> {
        (SMALL_INT_MIN..=SMALL_INT_MAX)
            .contains(&v)
            .then(|| SMALL_INT_FIRST + (v - SMALL_INT_MIN) as u32)
    }

    /// The symbol of the one-character string `chr(c)`.
    #[must_use]
    pub fn latin1(c: u8) -> u32 {
        LATIN1_FIRST + u32::from(c)
    }

    /// A short name, for messages and `ppyc inspect`.
    #[must_use]
    pub fn describe(n: u32) -> String {
        match n {
            CODE_TYPE => "type code".into(),
            TUPLE_TYPE => "type tuple".into(),
            STR_TYPE => "type str".into(),
            BYTES_TYPE => "type bytes".into(),
            INT_TYPE => "type int".into(),
            FLOAT_TYPE => "type float".into(),
            COMPLEX_TYPE => "type complex".into(),
            NONE => "None".into(),
            FALSE => "False".into(),
            TRUE => "True".into(),
            ELLIPSIS => "Ellipsis".into(),
            STOP_ITERATION => "StopIteration".into(),
            EMPTY_TUPLE => "()".into(),
            EMPTY_STR => "''".into(),
            EMPTY_BYTES => "b''".into(),
            n if (SMALL_INT_FIRST..LATIN1_FIRST).contains(&n) => {
                format!("int {}", i64::from(n - SMALL_INT_FIRST) + SMALL_INT_MIN)
            }
            n if (LATIN1_FIRST..COUNT).contains(&n) => format!("chr({})", n - LATIN1_FIRST),
            n => format!("reserved symbol {n}"),
        }
    }
}

/// One frozenset of an image, built at load time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrozenSetImage {
    /// The items' words, in the order `marshal.loads` inserts them (the stream order).
    pub items: Vec<u64>,
    /// Whether the set is built a second time from its own iteration order, as the code
    /// object constructor does when interning replaced an item (3.11-3.13
    /// `intern_string_constants`).
    pub rebuild: bool,
}

/// One module's image, as a compile worker produces it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ModuleImage {
    /// The object area.
    pub objects: Vec<u8>,
    /// Offset of the module's top-level code object in `objects`.
    pub root: u32,
    /// Number of objects in `objects`.
    pub object_count: u32,
    /// Number of code objects among them.
    pub code_count: u32,
    /// The identifiers of [`Word::Name`] slots, in slot order: each a string's UTF-8 (lone
    /// surrogates as `surrogatepass` encodes them).
    pub names: Vec<Vec<u8>>,
    /// The frozensets of [`Word::FrozenSet`] indices, in build order (an item may only
    /// refer to an earlier frozenset).
    pub frozensets: Vec<FrozenSetImage>,
}

const WIRE_MAGIC: &[u8; 4] = b"PPIM";

impl ModuleImage {
    /// The encoding a worker sends (little-endian): `PPIM`, version, root, object count,
    /// code count, then the names and frozensets (each a `u32` count and its items) and the
    /// object area (`u32` length, bytes).
    #[must_use]
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.objects.len() + 64);
        out.extend_from_slice(WIRE_MAGIC);
        for v in [
            IMAGE_FORMAT_VERSION,
            self.root,
            self.object_count,
            self.code_count,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.names.len() as u32).to_le_bytes());
        for name in &self.names {
            let _ = put_blob(&mut out, name);
        }
        out.extend_from_slice(&(self.frozensets.len() as u32).to_le_bytes());
        for fs in &self.frozensets {
            out.push(u8::from(fs.rebuild));
            out.extend_from_slice(&(fs.items.len() as u32).to_le_bytes());
            for item in &fs.items {
                out.extend_from_slice(&item.to_le_bytes());
            }
        }
        let _ = put_blob(&mut out, &self.objects);
        out
    }

    /// Decodes [`ModuleImage::to_wire`]'s encoding.
    pub fn from_wire(data: &[u8]) -> Result<Self, FormatError> {
        let bad = |what: &'static str| FormatError::BadImage(what.to_owned());
        let mut c = Cursor::new(data);
        if c.take(4) != Some(WIRE_MAGIC.as_slice()) {
            return Err(bad("not an image"));
        }
        if c.u32() != Some(IMAGE_FORMAT_VERSION) {
            return Err(bad("another image format version"));
        }
        let truncated = || bad("truncated image");
        let root = c.u32().ok_or_else(truncated)?;
        let object_count = c.u32().ok_or_else(truncated)?;
        let code_count = c.u32().ok_or_else(truncated)?;
        let name_count = c.u32().ok_or_else(truncated)? as usize;
        if name_count > c.remaining() / 4 {
            return Err(truncated());
        }
        let mut names = Vec::with_capacity(name_count);
        for _ in 0..name_count {
            names.push(c.blob().ok_or_else(truncated)?.to_vec());
        }
        let fs_count = c.u32().ok_or_else(truncated)? as usize;
        if fs_count > c.remaining() / 5 {
            return Err(truncated());
        }
        let mut frozensets = Vec::with_capacity(fs_count);
        for _ in 0..fs_count {
            let rebuild = match c.u8().ok_or_else(truncated)? {
                0 => false,
                1 => true,
                _ => return Err(bad("bad frozenset flag")),
            };
            let n = c.u32().ok_or_else(truncated)? as usize;
            if n > c.remaining() / 8 {
                return Err(truncated());
            }
            let items = (0..n).map(|_| c.u64().unwrap_or_default()).collect();
            frozensets.push(FrozenSetImage { items, rebuild });
        }
        let objects = c.blob().ok_or_else(truncated)?.to_vec();
        if !c.is_at_end() {
            return Err(bad("trailing bytes after the image"));
        }
        Ok(Self {
            objects,
            root,
            object_count,
            code_count,
            names,
            frozensets,
        })
    }
}

fn align_up(v: usize, align: usize) -> usize {
    v.div_ceil(align) * align
}

/// The image sections of a pack being written.
pub(crate) struct ImageSections {
    pub(crate) imgo: Vec<u8>,
    pub(crate) irel: Vec<u8>,
    pub(crate) inam: Vec<u8>,
}

/// Builds `IMGO`, `IREL` and `INAM` for modules given in lookup-table order: `images[i]`
/// is the image of `INDX` entry `i` (if it has one) and `record_digests[i]` that entry's
/// record digest.
pub(crate) fn build_sections(
    images: &[Option<&ModuleImage>],
    record_digests: &[[u8; 32]],
) -> Result<ImageSections, FormatError> {
    let too_large = FormatError::TooLarge;
    // The pack-wide identifier table: every name once, in the order of first use by the
    // modules in lookup-table order (§10.5), so that the names a module brings are
    // contiguous: the first module a process loads reads a few pages of the table, not a
    // page per name.
    let mut index: std::collections::HashMap<&[u8], u32> = std::collections::HashMap::new();
    let mut order: Vec<&[u8]> = Vec::new();
    for image in images.iter().flatten() {
        for name in &image.names {
            index.entry(name.as_slice()).or_insert_with(|| {
                order.push(name.as_slice());
                (order.len() - 1) as u32
            });
        }
    }
    let mut inam = Vec::new();
    let count = u32::try_from(order.len()).map_err(|_| too_large("over 2^32 names"))?;
    inam.extend_from_slice(&count.to_le_bytes());
    inam.extend_from_slice(&0u32.to_le_bytes());
    let mut strings = Vec::new();
    for name in &order {
        let offset = u32::try_from(strings.len()).map_err(|_| too_large("INAM over 4 GiB"))?;
        let len = u32::try_from(name.len()).map_err(|_| too_large("name over 4 GiB"))?;
        inam.extend_from_slice(&offset.to_le_bytes());
        inam.extend_from_slice(&len.to_le_bytes());
        inam.extend_from_slice(&name_hash(name).to_le_bytes());
        strings.extend_from_slice(name);
    }
    inam.extend_from_slice(&strings);

    // Object areas are stored LZ4-compressed where that saves at least an eighth (§10.3);
    // compressing is the expensive part of building the sections: on every core.
    let stored: Vec<Option<Vec<u8>>> = {
        use rayon::prelude::*;
        images
            .par_iter()
            .map(|image| {
                let image = (*image)?;
                let packed = lz4_flex::block::compress(&image.objects);
                (packed.len() < image.objects.len() - image.objects.len() / 8).then_some(packed)
            })
            .collect()
    };
    let mut imgo = Vec::new();
    let mut irel = vec![0u8; images.len() * DIRECTORY_ENTRY_SIZE];
    for (i, (image, record_digest)) in images.iter().zip(record_digests).enumerate() {
        let Some(image) = image else { continue };
        if image.objects.len() % 8 != 0 {
            return Err(FormatError::BadImage(
                "an object area is not a multiple of 8 bytes".into(),
            ));
        }
        imgo.resize(align_up(imgo.len(), OBJECTS_ALIGN), 0);
        irel.resize(align_up(irel.len(), 8), 0);
        let objects_offset = imgo.len() as u64;
        let (objects, raw_len) = match &stored[i] {
            Some(packed) => (packed.as_slice(), image.objects.len() as u64),
            None => (image.objects.as_slice(), 0),
        };
        imgo.extend_from_slice(objects);
        let aux_offset = irel.len();
        let items: usize = image.frozensets.iter().map(|f| f.items.len()).sum();
        let u32_of = |n: usize, what| u32::try_from(n).map_err(|_| too_large(what));
        for v in [
            image.root,
            image.object_count,
            image.code_count,
            u32_of(image.names.len(), "names in one module")?,
            u32_of(image.frozensets.len(), "frozensets in one module")?,
            u32_of(items, "frozenset items in one module")?,
        ] {
            irel.extend_from_slice(&v.to_le_bytes());
        }
        irel.extend_from_slice(&0u64.to_le_bytes());
        for name in &image.names {
            irel.extend_from_slice(&index[name.as_slice()].to_le_bytes());
        }
        for fs in &image.frozensets {
            let n = u32_of(fs.items.len(), "items in one frozenset")?;
            if n > u32::MAX >> 1 {
                return Err(too_large("items in one frozenset"));
            }
            irel.extend_from_slice(&(n << 1 | u32::from(fs.rebuild)).to_le_bytes());
        }
        irel.resize(align_up(irel.len(), 8), 0);
        for fs in &image.frozensets {
            for item in &fs.items {
                irel.extend_from_slice(&item.to_le_bytes());
            }
        }
        let digest = image_checksum(record_digest, objects, &irel[aux_offset..]);
        let aux_len = irel.len() - aux_offset;
        let entry = &mut irel[i * DIRECTORY_ENTRY_SIZE..][..DIRECTORY_ENTRY_SIZE];
        entry[0..8].copy_from_slice(&objects_offset.to_le_bytes());
        entry[8..16].copy_from_slice(&(objects.len() as u64).to_le_bytes());
        entry[16..24].copy_from_slice(&(aux_offset as u64).to_le_bytes());
        entry[24..32].copy_from_slice(&(aux_len as u64).to_le_bytes());
        entry[32..48].copy_from_slice(&digest);
        entry[48..56].copy_from_slice(&raw_len.to_le_bytes());
    }
    Ok(ImageSections { imgo, irel, inam })
}

/// The checksum of one module's image: XXH3-128 (little-endian) of its record's digest,
/// then its object area, then its relocation data. It detects damage, as every digest of
/// a pack does; it is a fast non-cryptographic hash because every image is checked at every
/// load (BLAKE3 is 4.5 GB/s here, XXH3 30 GB/s), and nothing of a pack is a defence against
/// someone who can write it (`spec/SECURITY.md`).
#[must_use]
pub fn image_checksum(record_digest: &[u8; 32], objects: &[u8], aux: &[u8]) -> [u8; 16] {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(record_digest);
    h.update(objects);
    h.update(aux);
    h.digest128().to_le_bytes()
}

/// The image sections of an open pack, located (not yet checked beyond their bounds).
#[derive(Clone, Debug)]
pub(crate) struct ImageRanges {
    pub(crate) imgo: Range<usize>,
    pub(crate) irel: Range<usize>,
    pub(crate) inam: Range<usize>,
    pub(crate) ilay: Range<usize>,
    /// Where the `IREL` directory ends (in the pack's bytes): relocation data follows it.
    pub(crate) directory_end: usize,
}

/// Where one module's image is, as its directory entry says (bounds checked against the
/// sections, digest not yet checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The object area as stored, as a range of the pack's bytes (16-aligned start).
    pub objects: Range<usize>,
    /// The object area's length once decoded: `Some` when it is stored LZ4-compressed
    /// ([`ImageRef::decode_objects`]), `None` when stored as is.
    pub compressed_from: Option<usize>,
    /// The relocation data, as a range of the pack's bytes (8-aligned start).
    pub aux: Range<usize>,
    /// [`image_checksum`] of the image.
    pub digest: [u8; 16],
    /// The digest of the module's record (from `INDX`), which the image digest covers.
    pub record_digest: [u8; 32],
}

impl ImageRef {
    /// Whether `objects` (the object area as stored) and `aux` (copies of this image's
    /// bytes) are intact.
    #[must_use]
    pub fn check(&self, objects: &[u8], aux: &[u8]) -> bool {
        image_checksum(&self.record_digest, objects, aux) == self.digest
    }

    /// The length of the decoded object area.
    #[must_use]
    pub fn objects_len(&self) -> usize {
        self.compressed_from.unwrap_or(self.objects.len())
    }

    /// Decodes the stored object area `stored` into `out` ([`ImageRef::objects_len`] bytes):
    /// LZ4 block decompression (bounds checked: damaged input is an error, never a write
    /// outside `out`), or a copy.
    pub fn decode_objects(&self, stored: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        if out.len() != self.objects_len() {
            return Err(FormatError::BadImage("the output has another size".into()));
        }
        match self.compressed_from {
            None if stored.len() == out.len() => out.copy_from_slice(stored),
            None => {
                return Err(FormatError::BadImage(
                    "the object area has another size".into(),
                ));
            }
            Some(_) => match lz4_flex::block::decompress_into(stored, out) {
                Ok(n) if n == out.len() => {}
                _ => {
                    return Err(FormatError::BadImage(
                        "the object area does not decompress".into(),
                    ));
                }
            },
        }
        Ok(())
    }
}

pub(crate) fn image_ref(
    bytes: &[u8],
    ranges: &ImageRanges,
    entry: usize,
    record_digest: [u8; 32],
) -> Result<Option<ImageRef>, FormatError> {
    let bad = |what: &str| FormatError::BadImage(format!("directory entry {entry}: {what}"));
    let at = entry
        .checked_mul(DIRECTORY_ENTRY_SIZE)
        .and_then(|o| o.checked_add(ranges.irel.start))
        .filter(|&o| o + DIRECTORY_ENTRY_SIZE <= ranges.irel.end)
        .ok_or_else(|| bad("outside IREL"))?;
    let e = &bytes[at..at + DIRECTORY_ENTRY_SIZE];
    let (objects_offset, objects_len) = (u64_at(e, 0), u64_at(e, 8));
    let (aux_offset, aux_len) = (u64_at(e, 16), u64_at(e, 24));
    if objects_len == 0 {
        if objects_offset != 0 || aux_offset != 0 || aux_len != 0 || e[32..].iter().any(|&b| b != 0)
        {
            return Err(bad("an empty entry is not all zero"));
        }
        return Ok(None);
    }
    let range = |section: &Range<usize>, offset: u64, len: u64, align: usize| {
        let offset = usize::try_from(offset).ok()?;
        let len = usize::try_from(len).ok()?;
        if offset % align != 0 {
            return None;
        }
        let start = section.start.checked_add(offset)?;
        let end = start.checked_add(len)?;
        (end <= section.end).then_some(start..end)
    };
    let objects = range(&ranges.imgo, objects_offset, objects_len, OBJECTS_ALIGN)
        .ok_or_else(|| bad("the object area lies outside IMGO or is misaligned"))?;
    let aux = range(&ranges.irel, aux_offset, aux_len, 8)
        .filter(|a| a.start >= ranges.directory_end && a.len() >= AUX_HEADER_SIZE)
        .ok_or_else(|| bad("the relocation data lies outside IREL or is misaligned"))?;
    if e[56..64].iter().any(|&b| b != 0) {
        return Err(bad("reserved bytes are not zero"));
    }
    let raw_len = u64_at(e, 48);
    let compressed_from = match raw_len {
        // Objects are 8-aligned and their sizes rounded up to 8 (§10.3).
        0 if objects_len % 8 != 0 => return Err(bad("an object area not a multiple of 8")),
        0 => None,
        // A decoded area may be at most 255 times its stored size (LZ4's limit) and, as
        // any object area, 4 GiB.
        n if n <= u64::from(u32::MAX) && n <= 255 * objects_len && n % 8 == 0 => Some(n as usize),
        _ => return Err(bad("an impossible decoded size")),
    };
    let mut digest = [0; 16];
    digest.copy_from_slice(&e[32..48]);
    Ok(Some(ImageRef {
        compressed_from,
        objects,
        aux,
        digest,
        record_digest,
    }))
}

/// One module's relocation data, parsed (after its digest was checked).
#[derive(Clone, Debug)]
pub struct Aux<'a> {
    /// Offset of the top-level code object in the object area.
    pub root: u32,
    /// Number of objects in the object area.
    pub object_count: u32,
    /// Number of code objects.
    pub code_count: u32,
    slots: &'a [u8],
    counts: &'a [u8],
    items: &'a [u8],
}

impl<'a> Aux<'a> {
    /// Parses relocation data (`IREL`, §10.4).
    pub fn parse(aux: &'a [u8]) -> Result<Self, FormatError> {
        let bad = |what: &str| FormatError::BadImage(format!("relocation data: {what}"));
        if aux.len() < AUX_HEADER_SIZE {
            return Err(bad("too short"));
        }
        let field = |i: usize| u32_at(aux, i * 4);
        let (name_count, fs_count, item_count) =
            (field(3) as usize, field(4) as usize, field(5) as usize);
        if u64_at(aux, 24) != 0 {
            return Err(bad("reserved bytes are not zero"));
        }
        let slots_end = name_count
            .checked_mul(4)
            .and_then(|n| n.checked_add(AUX_HEADER_SIZE));
        let counts_end = slots_end.and_then(|s| s.checked_add(fs_count.checked_mul(4)?));
        let items_start = counts_end.map(|c| align_up(c, 8));
        let items_end = items_start.and_then(|s| s.checked_add(item_count.checked_mul(8)?));
        let (Some(slots_end), Some(counts_end), Some(items_start), Some(items_end)) =
            (slots_end, counts_end, items_start, items_end)
        else {
            return Err(bad("counts overflow"));
        };
        if items_end != aux.len() {
            return Err(bad("its counts do not match its length"));
        }
        let aux_view = Self {
            root: field(0),
            object_count: field(1),
            code_count: field(2),
            slots: &aux[AUX_HEADER_SIZE..slots_end],
            counts: &aux[slots_end..counts_end],
            items: &aux[items_start..items_end],
        };
        let total: u64 = (0..fs_count)
            .map(|i| u64::from(u32_at(aux_view.counts, i * 4) >> 1))
            .sum();
        if total != item_count as u64 || aux[counts_end..items_start].iter().any(|&b| b != 0) {
            return Err(bad("frozenset counts do not add up"));
        }
        Ok(aux_view)
    }

    /// Number of name slots.
    #[must_use]
    pub fn name_count(&self) -> usize {
        self.slots.len() / 4
    }

    /// The `INAM` index of name slot `slot` (`None` out of range).
    #[must_use]
    pub fn name_slot(&self, slot: usize) -> Option<u32> {
        (slot < self.name_count()).then(|| u32_at(self.slots, slot * 4))
    }

    /// Number of frozensets.
    #[must_use]
    pub fn frozenset_count(&self) -> usize {
        self.counts.len() / 4
    }

    /// The frozensets in build order: `(rebuild, items' words)`.
    pub fn frozensets(&self) -> impl Iterator<Item = (bool, impl Iterator<Item = u64> + 'a)> + 'a {
        let counts = self.counts;
        let items = self.items;
        let mut at = 0usize;
        (0..counts.len() / 4).map(move |i| {
            let c = u32_at(counts, i * 4);
            let n = (c >> 1) as usize;
            let start = at;
            at += n;
            (
                c & 1 == 1,
                (start..start + n).map(move |j| u64_at(items, j * 8)),
            )
        })
    }
}

/// The pack-wide identifier table (`INAM`).
#[derive(Clone, Copy, Debug)]
pub struct Names<'a> {
    table: &'a [u8],
    strings: &'a [u8],
}

impl<'a> Names<'a> {
    pub(crate) fn parse(inam: &'a [u8]) -> Result<Self, FormatError> {
        let bad = |what: &str| FormatError::BadImage(format!("INAM: {what}"));
        if inam.len() < 8 || u32_at(inam, 4) != 0 {
            return Err(bad("bad header"));
        }
        let count = u32_at(inam, 0) as usize;
        let table_end = count
            .checked_mul(NAME_ENTRY_SIZE)
            .and_then(|n| n.checked_add(8))
            .filter(|&end| end <= inam.len())
            .ok_or_else(|| bad("the table lies outside the section"))?;
        Ok(Self {
            table: &inam[8..table_end],
            strings: &inam[table_end..],
        })
    }

    /// Number of names.
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.len() / NAME_ENTRY_SIZE
    }

    /// Whether the table is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Checks what only a whole-table pass can see (`ppyc verify`): every entry readable,
    /// names unique, in the order of first use (`first_uses`: every module's name slots,
    /// modules in lookup-table order), and strings packed one after another in table order
    /// filling the string area exactly.
    pub fn check_canonical(
        &self,
        first_uses: impl Iterator<Item = u32>,
    ) -> Result<(), FormatError> {
        let bad = |what: &str| FormatError::BadImage(format!("INAM: {what}"));
        let mut packed_end = 0usize;
        let mut seen = std::collections::HashSet::new();
        for i in 0..self.len() {
            let name = self.get(i)?;
            if u32_at(self.table, i * NAME_ENTRY_SIZE) as usize != packed_end {
                return Err(bad("the strings are not packed in table order"));
            }
            packed_end += name.len();
            if !seen.insert(name) {
                return Err(bad("a name is there twice"));
            }
        }
        if packed_end != self.strings.len() {
            return Err(bad("the string area holds bytes no entry uses"));
        }
        let mut next = 0usize;
        for slot in first_uses {
            match (slot as usize).cmp(&next) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => next += 1,
                std::cmp::Ordering::Greater => {
                    return Err(bad("the names are not in the order of their first use"));
                }
            }
        }
        if next != self.len() {
            return Err(bad("a name no module uses"));
        }
        Ok(())
    }

    /// Name `i`, after checking its bounds and its FNV-1a check value.
    pub fn get(&self, i: usize) -> Result<&'a [u8], FormatError> {
        let bad = || FormatError::BadImage(format!("INAM entry {i} is damaged"));
        if i >= self.len() {
            return Err(bad());
        }
        let e = &self.table[i * NAME_ENTRY_SIZE..][..NAME_ENTRY_SIZE];
        let (offset, len) = (u32_at(e, 0) as usize, u32_at(e, 4) as usize);
        let name = offset
            .checked_add(len)
            .and_then(|end| self.strings.get(offset..end))
            .ok_or_else(bad)?;
        if name_hash(name) != u64_at(e, 8) {
            return Err(bad());
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inam_of(names: &[&[u8]]) -> Vec<u8> {
        let mut table = Vec::new();
        let mut strings = Vec::new();
        for n in names {
            table.extend_from_slice(&(strings.len() as u32).to_le_bytes());
            table.extend_from_slice(&(n.len() as u32).to_le_bytes());
            table.extend_from_slice(&name_hash(n).to_le_bytes());
            strings.extend_from_slice(n);
        }
        let mut out = (names.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&table);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn inam_must_be_in_the_order_of_first_use() {
        let inam = inam_of(&[b"b", b"a"]);
        let names = Names::parse(&inam).unwrap();
        // Slots of two modules: [0, 1] then [1, 0].
        assert!(names.check_canonical([0, 1, 1, 0].into_iter()).is_ok());
        assert!(
            names.check_canonical([1, 0].into_iter()).is_err(),
            "out of order"
        );
        assert!(
            names.check_canonical([0].into_iter()).is_err(),
            "a name unused"
        );
        let twice = inam_of(&[b"a", b"a"]);
        let names = Names::parse(&twice).unwrap();
        assert!(
            names.check_canonical([0, 1].into_iter()).is_err(),
            "a name twice"
        );
    }

    #[test]
    fn words_round_trip_and_reserved_tags_are_refused() {
        for w in [
            Word::Internal(0),
            Word::Internal(4096),
            Word::Symbol(symbol::NONE),
            Word::Name(7),
            Word::FrozenSet(0),
            Word::Filename,
        ] {
            assert_eq!(Word::decode(w.encode()), Some(w));
        }
        for bad in [5, 6, 7, 12, 1 << 63 | 1] {
            assert_eq!(Word::decode(bad), None, "{bad:#x}");
        }
        assert_eq!(symbol::small_int(-5), Some(symbol::SMALL_INT_FIRST));
        assert_eq!(symbol::small_int(257), None);
        assert_eq!(symbol::describe(symbol::small_int(256).unwrap()), "int 256");
        assert_eq!(symbol::describe(symbol::latin1(b'a')), "chr(97)");
    }

    #[test]
    fn wire_round_trip_and_truncations_are_errors() {
        let image = ModuleImage {
            objects: (0..64).collect(),
            root: 16,
            object_count: 3,
            code_count: 1,
            names: vec![b"a".to_vec(), b"\xed\xa0\x80".to_vec()],
            frozensets: vec![FrozenSetImage {
                items: vec![Word::Name(0).encode(), Word::Symbol(symbol::NONE).encode()],
                rebuild: true,
            }],
        };
        let wire = image.to_wire();
        assert_eq!(ModuleImage::from_wire(&wire).unwrap(), image);
        for len in 0..wire.len() {
            assert!(ModuleImage::from_wire(&wire[..len]).is_err(), "{len}");
        }
    }
}
