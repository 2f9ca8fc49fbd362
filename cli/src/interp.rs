//! Describing the running interpreter, in-process.

use ppyc_compiler::interpreter::{INTERPRETER_QUERY, Interpreter};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Describes the interpreter this extension is loaded in (the same JSON the compiler gets
/// from `python interpreter_query.py`, computed without a subprocess).
pub(crate) fn current(py: Python<'_>) -> anyhow::Result<Interpreter> {
    let globals = PyDict::new(py);
    globals.set_item("__name__", "ppyc_interpreter_query")?;
    let code = std::ffi::CString::new(INTERPRETER_QUERY)?;
    py.run(&code, Some(&globals), None)?;
    let query = globals
        .get_item("query")?
        .ok_or_else(|| anyhow::anyhow!("the interpreter query defines no `query`"))?;
    let json: String = query.call0()?.extract()?;
    Ok(Interpreter::from_json(&json)?)
}
