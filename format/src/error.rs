use std::path::PathBuf;

use crate::header::SectionId;

/// Everything that can be wrong with a pack, or with writing one.
///
/// Each check of the reader has its own variant, so that `ppyc status` and the runtime's
/// warning can say precisely why a pack was refused.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("it is {kind}, not a pack file")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("the pack is truncated: {len} bytes, the header alone needs {needed}")]
    TooSmall { len: u64, needed: u64 },
    #[error("not a ppyc pack (bad magic)")]
    BadMagic,
    #[error("the pack was written with another byte order")]
    EndianMismatch,
    #[error("header size {found} is not the {expected} bytes this reader knows")]
    HeaderSize { found: u16, expected: u16 },
    #[error("pack read version {found} is newer than this reader (supports up to {supported})")]
    UnsupportedReadVersion { found: u32, supported: u32 },
    #[error("the pack needs features this reader does not know (flags {0:#010x})")]
    UnknownRequiredFlags(u32),
    #[error("the pack's rkyv encoding {found:#010x} differs from this reader's {expected:#010x}")]
    RkyvFeatures { found: u32, expected: u32 },
    #[error("the header is damaged (digest mismatch)")]
    HeaderDigestMismatch,
    #[error("reserved header bytes are not zero")]
    ReservedNonZero,
    #[error("invalid target in header: {0}")]
    InvalidTarget(&'static str),
    #[error(
        "the pack was cut to {actual} bytes while in use (it was {mapped}): it must be replaced by rename, never truncated in place"
    )]
    CutWhileMapped { mapped: u64, actual: u64 },
    #[error("the file is {actual} bytes but its header says {header}: truncated or appended to")]
    SizeMismatch { header: u64, actual: u64 },
    #[error("section {index} is invalid: {reason}")]
    BadSection { index: usize, reason: &'static str },
    #[error("section `{0}` appears twice")]
    DuplicateSection(SectionId),
    #[error("the pack has a required section `{0}` that this reader does not know")]
    UnknownRequiredSection(SectionId),
    #[error("the pack has no `{0}` section")]
    MissingSection(SectionId),
    #[error("the module index is invalid: {0}")]
    BadIndex(&'static str),
    #[error("module record {entry} is damaged (digest mismatch)")]
    RecordDigestMismatch { entry: usize },
    #[error("module record {entry} is invalid: {reason}")]
    RecordInvalid { entry: usize, reason: String },
    #[error("the code of module `{module}` is damaged (digest mismatch)")]
    PayloadDigestMismatch { module: String },
    #[error("the code of module `{module}` lies outside the payload section")]
    PayloadOutOfBounds { module: String },
    #[error("the pack's layout is invalid: {0}")]
    BadLayout(String),
    #[error("section `{0}` is damaged (digest mismatch)")]
    SectionDigestMismatch(SectionId),
    #[error("module `{0}` is added twice")]
    DuplicateModule(String),
    #[error("invalid module name `{0}`")]
    InvalidModuleName(String),
    #[error("the pack would exceed a format limit: {0}")]
    TooLarge(&'static str),
    #[error("cannot serialise a module record: {0}")]
    Serialize(String),
    #[error("the image sections are unusable: {0}")]
    BadImage(String),
    #[error("the directory listings (DIRS) are damaged: {0}")]
    BadDirs(String),
    #[error("the delta's BASE section is invalid: {0}")]
    BadBase(String),
    #[error(
        "this file is a delta (spec/FORMAT.md §13), not a whole pack: a `.ppyd` copied to a pack's path?"
    )]
    DeltaAtPackPath,
    #[error("module `{0}` has an image but the pack has no layout description")]
    ImageWithoutLayout(String),
}

impl FormatError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A failure to write (or create) `path`.
    #[must_use]
    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Write {
            path: path.into(),
            source,
        }
    }
}
