//! The per-module record, stored as one rkyv archive per module (`spec/FORMAT.md` §6).

use rkyv::{Archive, Deserialize, Serialize};

/// What the pack knows about one module.
///
/// Field order is part of the format (rkyv lays fields out in declaration order); changing
/// it needs a new read version.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ModuleRecord {
    /// BLAKE3 of the source file's bytes.
    pub source_blake3: [u8; 32],
    /// BLAKE3 of the payload (the marshalled code object).
    pub payload_blake3: [u8; 32],
    /// Offset of the payload from the start of the `PAYL` section.
    pub payload_offset: u64,
    /// Length of the payload in bytes.
    pub payload_len: u64,
    /// Source size in bytes (`st_size`).
    pub source_size: u64,
    /// Source modification time in nanoseconds since the epoch (`st_mtime_ns`).
    pub source_mtime_ns: i64,
    /// Fully qualified module name, e.g. `email.mime.text`.
    pub name: String,
    /// Source path relative to the packed directory, `/`-separated, e.g.
    /// `email/mime/text.py` or `email/__init__.py`.
    pub source_path: String,
    /// The PEP 552 flags of the `.pyc` the payload came from (0: timestamp based).
    pub pyc_flags: u32,
    /// Whether the module is a package (its source is an `__init__.py`).
    pub is_package: bool,
}
