//! Every direct use of CPython's C API and object layouts lives below this module.
//!
//! Marshal mode (this release) needs nothing beyond PyO3's safe API; image mode adds one
//! layout table per CPython minor version here, checked against the running interpreter.

pub(crate) mod buffer;
