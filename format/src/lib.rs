//! The ppyc pack format (`spec/FORMAT.md` is the byte-exact definition).
//!
//! A pack holds the compiled code of every module below one `sys.path` directory, for one
//! target interpreter (`cache_tag`, `sys.hexversion`, pyc magic) and one optimisation level:
//!
//! ```text
//! +--------------------+ 0
//! | header (256 bytes) |  magic, versions, target, flags, header digest
//! +--------------------+ 256
//! | section table      |  64 bytes per section: id, flags, offset, length, alignment, BLAKE3
//! +--------------------+
//! | INDX               |  lookup table: 48-byte entries sorted by FNV-1a 64 of the module name
//! | RECS               |  one rkyv-archived `ModuleRecord` per module, each 16-byte aligned
//! | PAYL               |  marshalled code objects, each 16-byte aligned
//! | META (optional)    |  `key=value` lines (generator, root)
//! | DIRS (optional)    |  the listings of the directories the pack covers, with their mtimes
//! | BASE (deltas only) |  the base pack a delta completes, and the base's deleted modules
//! | IMGO IREL INAM ILAY|  image mode (optional): object areas, relocations, identifiers, layout
//! +--------------------+
//! ```
//!
//! # Cost follows use
//! Opening a pack checks only the header, its digest and the section table (constant work,
//! whatever the pack's size). Every record is checked (BLAKE3 digest from the lookup table,
//! then rkyv's bytecheck) when it is read, and every payload (its own BLAKE3) when it is
//! handed out, so a damaged pack can never hand out another module's code or corrupted code.
//! [`Pack::verify`] checks everything at once.
//!
//! # Safety model
//! The reader is the only module with `unsafe` (the memory map and rkyv's unchecked access
//! after a successful check). No input, however corrupt, can make it panic, read out of
//! bounds or loop forever: see `format/tests/corruption.rs`.

pub mod bytes;
pub mod delta;
pub mod dirs;
mod error;
mod header;
pub mod image;
mod location;
mod reader;
mod record;
mod writer;

pub use delta::{BaseRef, DeltaState, Generation, Layer, delta_path, open_delta, pair};
pub use error::FormatError;
pub use header::{
    FLAG_REQUIRED_MASK, HEADER_SIZE, Header, MAGIC, READ_VERSION, SECTION_ENTRY_SIZE,
    SECTION_FLAG_REQUIRED, SectionEntry, SectionId, Target, WRITE_VERSION, rkyv_features,
};
pub use image::{FrozenSetImage, ImageRef, ModuleImage, Word};
pub use location::{
    PackCandidates, REFRESH_STATE_SUFFIXES, bytecode_dir, cache_dir, cache_pack_path,
    in_tree_pack_path, local_pack_path, pack_file_name, path_join, prefixed_dir, pyc_record_path,
    refresh_state_base, temp_prefix, written_after,
};
pub use reader::{CheckedScope, INDEX_ENTRY_SIZE, Images, Module, Pack, VerifyReport, name_hash};
pub use record::{ArchivedModuleRecord, ModuleRecord};
pub use writer::{ModuleInput, PackWriter, write_atomic};
