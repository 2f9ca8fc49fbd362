//! Every direct use of CPython's C API and object layouts lives below this module.
//!
//! - [`buffer`]: the read-only buffer over a pack's mapping;
//! - [`process`]: starting a detached process (fork and exec);
//! - [`raw`]: reading fields by offset, and C API functions PyO3 does not declare;
//! - [`layout`]: one layout table per CPython minor version, checked against the running
//!   interpreter;
//! - [`image`]: image mode: snapshotting a module's code objects into an image (in the
//!   compile workers) and loading images back (in the import hook).

#![allow(unsafe_code)]

pub(crate) mod buffer;
pub(crate) mod image;
pub(crate) mod layout;
pub(crate) mod process;
pub(crate) mod raw;
