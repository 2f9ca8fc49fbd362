//! Building ppyc packs: find the modules of a directory as the stock importer would, take
//! their code from the previous pack, a fresh `.pyc` or the target interpreter's compiler,
//! and write one pack per directory.
//!
//! # Source layout
//! - [`walk`]: module discovery (`FileFinder` rules).
//! - [`pyc`]: `.pyc` headers and CPython's acceptance rules (PEP 552).
//! - [`marshal`]: a reader of CPython's marshal format (validation, structure, summaries).
//! - [`workers`]: long-lived interpreter processes that compile sources.
//! - [`compile`]: the build of one pack; [`verify`]: checking a pack against its sources.
//! - [`interpreter`]: describing the target interpreter; [`report`]: progress events.

pub mod compile;
pub mod interpreter;
pub mod marshal;
pub mod pyc;
pub mod report;
pub mod verify;
pub mod walk;
pub mod workers;
pub mod written;
