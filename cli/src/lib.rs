//! `ppyc._cli`: the `ppyc` command line (written in Rust with clap, [`cli`]), as a CPython
//! extension of its own. The console script and `python -m ppyc` hand it `sys.argv`.
//!
//! It is a separate extension from `ppyc._native` (the import hook and the pack reader)
//! so that start-up, which loads `_native`, never loads the command line's code (clap,
//! indicatif, the compiler, importtime and its HTML template). What the command line needs
//! of the running interpreter's layout (image mode) it asks `ppyc._native` for, through
//! Python.
//!
//! # Source layout
//! - `cli/`: argument parsing, the commands (`compile`, `inspect`, `verify`; `enable`,
//!   `disable`, `status` in `cli/hook.rs`; `importtime`), progress and summary output.
//!   Only this module prints.
//! - `interp.rs`: describing the running interpreter.

mod cli;
mod interp;

use pyo3::prelude::*;

/// The command-line module.
#[pymodule]
mod _cli {
    use super::*;

    /// Runs the `ppyc` command line with `argv` (`sys.argv`); returns the exit status.
    #[pyfunction]
    fn main(py: Python<'_>, argv: Vec<String>) -> i32 {
        crate::cli::main(py, argv)
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    }
}
