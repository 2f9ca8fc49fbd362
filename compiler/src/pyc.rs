//! CPython's `.pyc` header (PEP 552) and the rules importlib uses to accept a `.pyc`.
//!
//! A `.pyc` file is a 16-byte header followed by a `marshal`led code object:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic number: a `u16` (little-endian) followed by `b"\r\n"` |
//! | 4 | 4 | flags (`u32` LE): bit 0 = hash-based, bit 1 = check source; other bits invalid |
//! | 8 | 8 | timestamp pyc: source mtime (`u32` LE) then source size (`u32` LE) |
//! | 8 | 8 | hash-based pyc: [`source_hash`] of the source bytes |
//!
//! Everything here follows `Lib/importlib/_bootstrap_external.py` of CPython 3.10 to 3.13
//! (the functions named in each item's docs), so that ppyc accepts exactly the `.pyc` files
//! the stock `SourceLoader.get_code` would use and rejects exactly the ones it would
//! recompile:
//!
//! * [`PycHeader::classify`] is `_classify_pyc` (magic first, then length, then flags).
//! * [`PycHeader::validate_timestamp`] is `_validate_timestamp_pyc`, fed with
//!   [`SourceStat`], which reproduces `int(os.stat(path).st_mtime)` bit for bit (including the
//!   float rounding of `st_mtime`).
//! * [`PycHeader::validate_hash`] is `_validate_hash_pyc`, fed with [`source_hash`], a Rust
//!   reimplementation of `_imp.source_hash(_RAW_MAGIC_NUMBER, source)`.
//! * [`check_pyc`] is the decision part of `SourceLoader.get_code`, including
//!   `--check-hash-based-pycs` ([`CheckHashBasedPycs`]).
//! * [`cache_path`] is `importlib.util.cache_from_source` (without `sys.pycache_prefix`).
//!
//! Nothing in this module panics, whatever bytes it is given.

use std::ffi::OsStr;
use std::fmt;
use std::hash::Hasher;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use siphasher::sip::{SipHasher13, SipHasher24};

/// Length of a `.pyc` header (PEP 552).
pub const HEADER_LEN: usize = 16;

/// Flags bit 0: the pyc is hash-based (PEP 552).
pub const FLAG_HASH_BASED: u32 = 0b01;

/// Flags bit 1: a hash-based pyc whose source should be checked ("checked hash").
pub const FLAG_CHECK_SOURCE: u32 = 0b10;

/// The four magic bytes for a magic number: `n` as `u16` little-endian, then `b"\r\n"`
/// (`MAGIC_NUMBER = (n).to_bytes(2, 'little') + b'\r\n'` in `_bootstrap_external.py`).
#[must_use]
pub const fn magic_bytes(number: u16) -> [u8; 4] {
    let [lo, hi] = number.to_le_bytes();
    [lo, hi, b'\r', b'\n']
}

/// The `u16` magic number in four magic bytes, if they end with `b"\r\n"`.
#[must_use]
pub const fn magic_number(magic: [u8; 4]) -> Option<u16> {
    match magic {
        [lo, hi, b'\r', b'\n'] => Some(u16::from_le_bytes([lo, hi])),
        _ => None,
    }
}

/// How a pyc is invalidated (PEP 552; `py_compile.PycInvalidationMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InvalidationMode {
    /// Source mtime and size recorded in the header (the default).
    #[default]
    Timestamp,
    /// Source hash recorded; the importer checks it against the source.
    CheckedHash,
    /// Source hash recorded; the importer does not look at the source (unless
    /// `--check-hash-based-pycs always`).
    UncheckedHash,
}

impl InvalidationMode {
    /// The flags word a pyc of this mode carries (`_code_to_timestamp_pyc` /
    /// `_code_to_hash_pyc`).
    #[must_use]
    pub const fn flags(self) -> u32 {
        match self {
            Self::Timestamp => 0,
            Self::CheckedHash => FLAG_HASH_BASED | FLAG_CHECK_SOURCE,
            Self::UncheckedHash => FLAG_HASH_BASED,
        }
    }

    /// The name `compileall --invalidation-mode` uses: `timestamp`, `checked-hash` or
    /// `unchecked-hash`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timestamp => "timestamp",
            Self::CheckedHash => "checked-hash",
            Self::UncheckedHash => "unchecked-hash",
        }
    }
}

impl fmt::Display for InvalidationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not an [`InvalidationMode`] name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an invalidation mode (expected `timestamp`, `checked-hash` or `unchecked-hash`)"
)]
pub struct ParseInvalidationModeError(pub String);

impl FromStr for InvalidationMode {
    type Err = ParseInvalidationModeError;

    /// Accepts the `compileall --invalidation-mode` names and the
    /// `py_compile.PycInvalidationMode` member names (`TIMESTAMP`, `CHECKED_HASH`, ...).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "timestamp" | "TIMESTAMP" => Ok(Self::Timestamp),
            "checked-hash" | "CHECKED_HASH" => Ok(Self::CheckedHash),
            "unchecked-hash" | "UNCHECKED_HASH" => Ok(Self::UncheckedHash),
            _ => Err(ParseInvalidationModeError(s.to_owned())),
        }
    }
}

/// A compiler optimization level (`compile(..., optimize=n)`, `python -O`, `-OO`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OptLevel {
    /// `optimize=0`: nothing removed. Cached as `<stem>.<tag>.pyc`.
    #[default]
    Zero,
    /// `optimize=1` (`-O`): `assert` statements and `if __debug__:` blocks removed.
    /// Cached as `<stem>.<tag>.opt-1.pyc`.
    One,
    /// `optimize=2` (`-OO`): level 1 plus docstrings removed. Cached as
    /// `<stem>.<tag>.opt-2.pyc`.
    Two,
}

impl OptLevel {
    /// All levels, in order.
    pub const ALL: [Self; 3] = [Self::Zero, Self::One, Self::Two];

    /// The level as the integer `compile()` takes.
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Zero => 0,
            Self::One => 1,
            Self::Two => 2,
        }
    }
}

/// An integer that is not an optimization level (0, 1 or 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an optimization level (expected 0, 1 or 2)")]
pub struct InvalidOptLevel(pub u8);

impl TryFrom<u8> for OptLevel {
    type Error = InvalidOptLevel;

    fn try_from(level: u8) -> Result<Self, Self::Error> {
        match level {
            0 => Ok(Self::Zero),
            1 => Ok(Self::One),
            2 => Ok(Self::Two),
            other => Err(InvalidOptLevel(other)),
        }
    }
}

impl From<OptLevel> for u8 {
    fn from(level: OptLevel) -> Self {
        level.as_u8()
    }
}

/// `importlib.util.cache_from_source(source, optimization=...)` for a `cache_tag` such as
/// `cpython-312`: `<dir>/__pycache__/<stem>.<cache_tag>[.opt-N].pyc`.
///
/// Reproduces CPython's string manipulation exactly (3.10–3.13 `_bootstrap_external.py`,
/// `cache_from_source`, `_path_split`, POSIX `_path_join`), quirks included: the stem is the
/// file name up to its last `.` (or, when that is empty, the rest: `.hidden` gives
/// `hidden.<tag>`), a name without a dot is glued to the tag (`foo` gives `foo<tag>`), and
/// `/foo.py` gives the relative `__pycache__/foo.<tag>.pyc` because `_path_split` drops the
/// root. Works on the raw bytes of the path, which is what CPython's `str` operations do on
/// `os.fsdecode`d paths (`/` and `.` are ASCII and never part of an undecodable byte).
/// Without `sys.pycache_prefix` (see [`cache_path_in`]).
#[must_use]
pub fn cache_path(source: &Path, cache_tag: &str, optimize: OptLevel) -> PathBuf {
    cache_path_in(source, cache_tag, optimize, None)
}

/// [`cache_path`] with the interpreter's `sys.pycache_prefix`: when it is set,
/// `cache_from_source` puts the `.pyc` under the prefix instead of `__pycache__`
/// ([`ppyc_format::prefixed_dir`], 3.10-3.13), with the same file name.
#[must_use]
pub fn cache_path_in(
    source: &Path,
    cache_tag: &str,
    optimize: OptLevel,
    pycache_prefix: Option<&Path>,
) -> PathBuf {
    let path = source.as_os_str().as_bytes();
    // _path_split: split at the last separator, dropping it.
    let (head, tail) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    };
    // tail.rpartition('.'): (base, sep, rest), with ('', '', tail) when there is no dot.
    let (base, sep, rest): (&[u8], &[u8], &[u8]) = match tail.iter().rposition(|&b| b == b'.') {
        Some(i) => (&tail[..i], b".", &tail[i + 1..]),
        None => (b"", b"", tail),
    };
    let mut filename = Vec::with_capacity(tail.len() + cache_tag.len() + 12);
    filename.extend_from_slice(if base.is_empty() { rest } else { base });
    filename.extend_from_slice(sep);
    filename.extend_from_slice(cache_tag.as_bytes());
    match optimize {
        OptLevel::Zero => {}
        OptLevel::One => filename.extend_from_slice(b".opt-1"),
        OptLevel::Two => filename.extend_from_slice(b".opt-2"),
    }
    filename.extend_from_slice(b".pyc");
    match pycache_prefix {
        Some(prefix) => {
            let dir = ppyc_format::prefixed_dir(prefix, Path::new(OsStr::from_bytes(head)));
            ppyc_format::path_join(&[dir.as_os_str().as_bytes(), &filename])
        }
        // POSIX _path_join(head, '__pycache__', filename).
        None => ppyc_format::path_join(&[head, b"__pycache__", &filename]),
    }
}

/// The 16-byte header of a `.pyc` file.
///
/// Construct one with [`PycHeader::parse`] / [`PycHeader::classify`] (from bytes) or
/// [`PycHeader::timestamp`] / [`PycHeader::hash_based`] (to write one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PycHeader {
    magic: [u8; 4],
    flags: u32,
    kind: PycKind,
}

/// What the second half of a [`PycHeader`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PycKind {
    /// A timestamp pyc (flags bit 0 clear).
    Timestamp {
        /// `int(st_mtime) & 0xFFFFFFFF` of the source when the pyc was written.
        mtime: u32,
        /// `st_size & 0xFFFFFFFF` of the source when the pyc was written.
        source_size: u32,
    },
    /// A hash-based pyc (flags bit 0 set).
    Hash {
        /// Flags bit 1: whether the importer checks the hash against the source by default.
        check_source: bool,
        /// [`source_hash`] of the source the pyc was compiled from.
        source_hash: [u8; 8],
    },
}

/// Why a `.pyc` header is unusable (`_classify_pyc`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PycHeaderError {
    /// The first four bytes are not the expected magic number (CPython: `ImportError`,
    /// "bad magic number"). Also what a file shorter than four bytes gets, as in CPython.
    #[error("bad magic number `{}` (expected `{}`)", hex(found), hex(expected))]
    BadMagic {
        /// The first (up to) four bytes of the file.
        found: Vec<u8>,
        /// The magic number of the target interpreter.
        expected: [u8; 4],
    },
    /// Fewer than 16 bytes (CPython: `EOFError`, "reached EOF while reading pyc header").
    #[error("reached EOF while reading pyc header ({len} of {HEADER_LEN} bytes)")]
    Truncated {
        /// Length of the data.
        len: usize,
    },
    /// A flags bit other than bits 0 and 1 is set (CPython: `ImportError`, "invalid flags").
    #[error("invalid flags {flags:#x} in pyc header")]
    InvalidFlags {
        /// The flags word.
        flags: u32,
    },
}

/// Why importlib would not use a `.pyc` for its source (it would recompile the source).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The header itself is unusable.
    #[error(transparent)]
    Header(#[from] PycHeaderError),
    /// Timestamp pyc whose mtime field does not match the source (`bytecode is stale`).
    #[error("bytecode is stale: pyc records source mtime {recorded}, the source has {actual}")]
    Mtime {
        /// The pyc's mtime field.
        recorded: u32,
        /// `int(st_mtime) & 0xFFFFFFFF` of the source.
        actual: u32,
    },
    /// Timestamp pyc whose size field does not match the source (`bytecode is stale`).
    #[error("bytecode is stale: pyc records source size {recorded}, the source has {actual}")]
    Size {
        /// The pyc's size field.
        recorded: u32,
        /// `st_size & 0xFFFFFFFF` of the source.
        actual: u32,
    },
    /// Checked hash pyc whose hash does not match the source
    /// (`hash in bytecode doesn't match hash of source`).
    #[error(
        "hash in bytecode (`{}`) doesn't match hash of source (`{}`)",
        hex(recorded),
        hex(actual)
    )]
    Hash {
        /// The pyc's hash field.
        recorded: [u8; 8],
        /// [`source_hash`] of the current source.
        actual: [u8; 8],
    },
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn le_u32(data: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    if let Some(src) = data.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_le_bytes(word)
}

impl PycHeader {
    /// Parses the header at the start of `data` (the rest, the marshalled code, is
    /// ignored) without checking the magic number.
    ///
    /// Fails with [`PycHeaderError::Truncated`] below 16 bytes and
    /// [`PycHeaderError::InvalidFlags`] when a flags bit other than 0 and 1 is set.
    pub fn parse(data: &[u8]) -> Result<Self, PycHeaderError> {
        let Some(header) = data.get(..HEADER_LEN) else {
            return Err(PycHeaderError::Truncated { len: data.len() });
        };
        let mut magic = [0; 4];
        magic.copy_from_slice(&header[..4]);
        let flags = le_u32(header, 4);
        // "Only the first two flags are defined."
        if flags & !(FLAG_HASH_BASED | FLAG_CHECK_SOURCE) != 0 {
            return Err(PycHeaderError::InvalidFlags { flags });
        }
        let kind = if flags & FLAG_HASH_BASED != 0 {
            let mut source_hash = [0; 8];
            source_hash.copy_from_slice(&header[8..16]);
            PycKind::Hash {
                check_source: flags & FLAG_CHECK_SOURCE != 0,
                source_hash,
            }
        } else {
            // A timestamp pyc with the check-source bit set is valid: importlib ignores
            // the bit when bit 0 is clear. The raw flags are kept for `to_bytes`.
            PycKind::Timestamp {
                mtime: le_u32(header, 8),
                source_size: le_u32(header, 12),
            }
        };
        Ok(Self { magic, flags, kind })
    }

    /// `_classify_pyc(data, ...)`: checks the magic number against `expected_magic`
    /// **first** (so data shorter than four bytes is a [`PycHeaderError::BadMagic`]), then
    /// the length, then the flags.
    pub fn classify(data: &[u8], expected_magic: &[u8; 4]) -> Result<Self, PycHeaderError> {
        let found = data.get(..4).unwrap_or(data);
        if found != expected_magic {
            return Err(PycHeaderError::BadMagic {
                found: found.to_vec(),
                expected: *expected_magic,
            });
        }
        Self::parse(data)
    }

    /// The header `_code_to_timestamp_pyc(code, mtime, size)` writes.
    #[must_use]
    pub const fn timestamp(magic: [u8; 4], mtime: u32, source_size: u32) -> Self {
        Self {
            magic,
            flags: 0,
            kind: PycKind::Timestamp { mtime, source_size },
        }
    }

    /// The header `_code_to_hash_pyc(code, source_hash, checked)` writes.
    #[must_use]
    pub const fn hash_based(magic: [u8; 4], source_hash: [u8; 8], check_source: bool) -> Self {
        Self {
            magic,
            flags: if check_source {
                FLAG_HASH_BASED | FLAG_CHECK_SOURCE
            } else {
                FLAG_HASH_BASED
            },
            kind: PycKind::Hash {
                check_source,
                source_hash,
            },
        }
    }

    /// The header `py_compile` writes for a source with this stat and content in `mode`.
    #[must_use]
    pub fn for_source(
        magic: [u8; 4],
        mode: InvalidationMode,
        stat: &SourceStat,
        source: &[u8],
    ) -> Self {
        match mode {
            InvalidationMode::Timestamp => {
                Self::timestamp(magic, stat.pyc_mtime(), stat.pyc_size())
            }
            InvalidationMode::CheckedHash => {
                Self::hash_based(magic, source_hash(&magic, source), true)
            }
            InvalidationMode::UncheckedHash => {
                Self::hash_based(magic, source_hash(&magic, source), false)
            }
        }
    }

    /// The four magic bytes.
    #[must_use]
    pub const fn magic(&self) -> [u8; 4] {
        self.magic
    }

    /// The raw flags word (bits 0 and 1 only).
    #[must_use]
    pub const fn flags(&self) -> u32 {
        self.flags
    }

    /// What the header records about the source.
    #[must_use]
    pub const fn kind(&self) -> PycKind {
        self.kind
    }

    /// Whether flags bit 0 (hash-based) is set.
    #[must_use]
    pub const fn is_hash_based(&self) -> bool {
        matches!(self.kind, PycKind::Hash { .. })
    }

    /// The 16 header bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        out[..4].copy_from_slice(&self.magic);
        out[4..8].copy_from_slice(&self.flags.to_le_bytes());
        match self.kind {
            PycKind::Timestamp { mtime, source_size } => {
                out[8..12].copy_from_slice(&mtime.to_le_bytes());
                out[12..16].copy_from_slice(&source_size.to_le_bytes());
            }
            PycKind::Hash { source_hash, .. } => out[8..16].copy_from_slice(&source_hash),
        }
        out
    }

    /// `_validate_timestamp_pyc(data, int(st.st_mtime), st.st_size, ...)`: mtime field ==
    /// `int(st_mtime) & 0xFFFFFFFF` and size field == `st_size & 0xFFFFFFFF`.
    ///
    /// A hash-based header is compared the same way (its hash bytes read as the two
    /// fields), as the Python function would; callers decide by kind first (see
    /// [`check_pyc`]).
    pub fn validate_timestamp(&self, stat: &SourceStat) -> Result<(), Rejection> {
        let bytes = self.to_bytes();
        let recorded = le_u32(&bytes, 8);
        let actual = stat.pyc_mtime();
        if recorded != actual {
            return Err(Rejection::Mtime { recorded, actual });
        }
        let recorded = le_u32(&bytes, 12);
        let actual = stat.pyc_size();
        if recorded != actual {
            return Err(Rejection::Size { recorded, actual });
        }
        Ok(())
    }

    /// `_validate_hash_pyc(data, source_hash, ...)`: the header's bytes 8..16 equal
    /// `source_hash`.
    pub fn validate_hash(&self, source_hash: &[u8; 8]) -> Result<(), Rejection> {
        let bytes = self.to_bytes();
        let mut recorded = [0; 8];
        recorded.copy_from_slice(&bytes[8..16]);
        if &recorded == source_hash {
            Ok(())
        } else {
            Err(Rejection::Hash {
                recorded,
                actual: *source_hash,
            })
        }
    }
}

/// The parts of a source file's `os.stat()` result importlib uses (`path_stats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceStat {
    /// `st_mtime` seconds (`tv_sec`, may be negative).
    pub mtime_sec: i64,
    /// `st_mtime` nanoseconds (`tv_nsec`, 0 to 999 999 999).
    pub mtime_nsec: i64,
    /// `st_size`.
    pub size: u64,
}

impl SourceStat {
    /// From metadata of the source (as `os.stat`, i.e. following symlinks).
    #[must_use]
    pub fn from_metadata(meta: &std::fs::Metadata) -> Self {
        Self {
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            size: meta.size(),
        }
    }

    /// Stats `path`, following symlinks, as `SourceFileLoader.path_stats` does.
    pub fn of(path: &Path) -> io::Result<Self> {
        fs_err::metadata(path).map(|meta| Self::from_metadata(&meta))
    }

    /// `os.stat_result.st_mtime`: CPython computes the float as `sec + nsec * 1e-9` in
    /// double precision (Modules/posixmodule.c, `fill_time`), so e.g.
    /// `1700000000.999999999` rounds up to `1700000001.0`.
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // Deliberate: reproduces CPython's double arithmetic.
    pub fn st_mtime(&self) -> f64 {
        self.mtime_sec as f64 + self.mtime_nsec as f64 * 1e-9
    }

    /// The pyc mtime field: `int(st_mtime) & 0xFFFFFFFF` (`_pack_uint32` when writing,
    /// `source_mtime & 0xFFFFFFFF` when validating). `int()` truncates toward zero and `&`
    /// on a negative Python int keeps the two's-complement low bits.
    #[must_use]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // `& 0xFFFFFFFF`.
    pub fn pyc_mtime(&self) -> u32 {
        // `as i128` truncates toward zero; every finite `time_t` fits.
        (self.st_mtime() as i128) as u32
    }

    /// The pyc size field: `st_size & 0xFFFFFFFF`.
    #[must_use]
    #[allow(clippy::cast_possible_truncation)] // `& 0xFFFFFFFF`.
    pub const fn pyc_size(&self) -> u32 {
        self.size as u32
    }
}

/// The keyed hash behind `_imp.source_hash` (Python/pyhash.c, `_Py_KeyedHash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceHashAlgorithm {
    /// SipHash-2-4: CPython 3.7 to 3.10 (`_Py_KeyedHash` returns
    /// `siphash24(key, 0, src, src_sz)`).
    SipHash24,
    /// SipHash-1-3: CPython 3.11 and later (`_Py_KeyedHash` returns
    /// `siphash13(key, 0, src, src_sz)`, bpo-29410, when SipHash-1-3 became the default
    /// string hash).
    SipHash13,
}

impl SourceHashAlgorithm {
    /// The algorithm of the interpreter with this magic number: SipHash-2-4 below 3450
    /// (3450 is the first 3.11 alpha magic; every 3.10 magic is below it), SipHash-1-3
    /// from there on. Magic bytes not ending in `\r\n` are treated as a future version.
    #[must_use]
    pub fn for_magic(magic: &[u8; 4]) -> Self {
        match magic_number(*magic) {
            Some(n) if n < 3450 => Self::SipHash24,
            _ => Self::SipHash13,
        }
    }
}

/// `_imp.source_hash(importlib.util._RAW_MAGIC_NUMBER, source)` for the interpreter with this
/// magic number, as written in hash-based pycs (`importlib.util.source_hash`).
///
/// Python/import.c (`_imp_source_hash_impl`, 3.10–3.13) calls
/// `_Py_KeyedHash((uint64_t)key, source, len)` and returns the `uint64_t` little-endian;
/// the key is `_RAW_MAGIC_NUMBER = int.from_bytes(MAGIC_NUMBER, 'little')`, so
/// `k0 = u32::from_le_bytes(magic)` and `k1 = 0` (Python/pyhash.c). See
/// [`SourceHashAlgorithm`] for the SipHash variant.
#[must_use]
pub fn source_hash(magic: &[u8; 4], source: &[u8]) -> [u8; 8] {
    source_hash_with(SourceHashAlgorithm::for_magic(magic), magic, source)
}

/// [`source_hash`] with an explicit algorithm.
#[must_use]
pub fn source_hash_with(algorithm: SourceHashAlgorithm, magic: &[u8; 4], source: &[u8]) -> [u8; 8] {
    let key = u64::from(u32::from_le_bytes(*magic));
    let hash = match algorithm {
        SourceHashAlgorithm::SipHash24 => {
            let mut hasher = SipHasher24::new_with_keys(key, 0);
            hasher.write(source);
            hasher.finish()
        }
        SourceHashAlgorithm::SipHash13 => {
            let mut hasher = SipHasher13::new_with_keys(key, 0);
            hasher.write(source);
            hasher.finish()
        }
    };
    hash.to_le_bytes()
}

/// The `--check-hash-based-pycs` setting of the importing interpreter
/// (`_imp.check_hash_based_pycs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CheckHashBasedPycs {
    /// Checked hash pycs are checked, unchecked ones are not.
    #[default]
    Default,
    /// Every hash-based pyc is checked against its source.
    Always,
    /// No hash-based pyc is checked.
    Never,
}

impl CheckHashBasedPycs {
    /// Whether a hash-based pyc with this check-source bit gets its hash compared with
    /// the source (`get_code`: `check_hash_based_pycs != 'never' and (check_source or
    /// check_hash_based_pycs == 'always')`).
    #[must_use]
    pub const fn checks(self, check_source: bool) -> bool {
        match self {
            Self::Never => false,
            Self::Always => true,
            Self::Default => check_source,
        }
    }
}

/// What importlib would do with a `.pyc` for a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `get_code` would load the pyc ("`{bytecode_path}` matches `{source_path}`").
    Accepted(PycHeader),
    /// `get_code` would ignore the pyc and compile the source.
    Rejected(Rejection),
}

impl Verdict {
    /// Whether importlib would use the pyc.
    #[must_use]
    pub const fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted(_))
    }
}

/// The acceptance decision of `SourceLoader.get_code` (3.10–3.13) for the pyc bytes `pyc`
/// of a source with stat `stat`, for an interpreter with magic number `magic`.
///
/// `read_source` is called only when the source hash is needed (a hash-based pyc that
/// `check` says to check); its error is returned as is (in CPython an unreadable source
/// there makes the import fail).
pub fn check_pyc<S, E>(
    pyc: &[u8],
    magic: &[u8; 4],
    stat: &SourceStat,
    check: CheckHashBasedPycs,
    read_source: impl FnOnce() -> Result<S, E>,
) -> Result<Verdict, E>
where
    S: AsRef<[u8]>,
{
    let header = match PycHeader::classify(pyc, magic) {
        Ok(header) => header,
        Err(err) => return Ok(Verdict::Rejected(err.into())),
    };
    let outcome = match header.kind() {
        PycKind::Hash { check_source, .. } => {
            if check.checks(check_source) {
                let source = read_source()?;
                header.validate_hash(&source_hash(magic, source.as_ref()))
            } else {
                Ok(())
            }
        }
        PycKind::Timestamp { .. } => header.validate_timestamp(stat),
    };
    Ok(match outcome {
        Ok(()) => Verdict::Accepted(header),
        Err(rejection) => Verdict::Rejected(rejection),
    })
}

/// [`check_pyc`] against the source file at `source`: stats it (following symlinks) and
/// reads it only if needed.
///
/// Fails if the source cannot be stat'ed (CPython then ignores the pyc and tries to compile
/// the source) or cannot be read when its hash is needed.
pub fn check_pyc_file(
    pyc: &[u8],
    magic: &[u8; 4],
    source: &Path,
    check: CheckHashBasedPycs,
) -> io::Result<Verdict> {
    let stat = SourceStat::of(source)?;
    check_pyc(pyc, magic, &stat, check, || fs_err::read(source))
}
