//! `ppyc._native`: the CPython extension of ppyc.
//!
//! It hosts the `ppyc` command line (written in Rust with clap, [`cli`]): the console script
//! and `python -m ppyc` only hand it `sys.argv`. It also exposes the pack reader to Python
//! ([`pack::Pack`]).
//!
//! # Source layout
//! - `cli/`: argument parsing, the commands, progress and summary output. Only this module
//!   prints.
//! - `pack.rs`: the `Pack` class.
//! - `interp.rs`: describing the running interpreter.
//! - `ffi/`: every direct use of CPython's C API and object layouts (none yet beyond PyO3's
//!   safe API; image mode adds the per-version layout tables here).

mod cli;
mod ffi;
mod interp;
mod pack;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
mod _native {
    use super::*;

    #[pymodule_export]
    use crate::pack::Pack;

    /// Runs the `ppyc` command line with `argv` (`sys.argv`); returns the exit status.
    #[pyfunction]
    fn main(py: Python<'_>, argv: Vec<String>) -> i32 {
        crate::cli::main(py, argv)
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add(
            "build_profile",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        )?;
        m.add("FORMAT_READ_VERSION", ppyc_format::READ_VERSION)?;
        Ok(())
    }
}
