//! `PackLoader`, the loader of served modules: a subclass of the stock `SourceFileLoader`
//! (so every tool that looks at loaders sees what it sees without ppyc) made at install
//! time with native methods, so that start-up imports no Python module of ppyc's.
//!
//! Only `get_code` differs from the stock loader's (and `__init__`, `__eq__`, `__hash__`,
//! which keep the stock meaning: two loaders are equal when they load the same name from
//! the same path). `get_code` makes one native call for the freshness check and the code
//! ([`Served::code_for`]); when ppyc cannot serve the module it runs the stock
//! `SourceLoader.get_code`. Under `PPYC_PROFILE` the class is `ProfilingPackLoader`, whose
//! `exec_module` also times the module's execution.

use std::sync::OnceLock;
use std::time::Instant;

use pyo3::exceptions::{PyNotImplementedError, PyOSError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use pyo3::{intern, wrap_pyfunction};

use super::{Code, Served};

/// The loader classes, made once per process.
pub(crate) struct Classes {
    pub(crate) plain: Py<PyAny>,
    pub(crate) profiling: Py<PyAny>,
}

/// What the loader methods call of the stock machinery.
pub(crate) struct Stock {
    /// `SourceLoader.get_code` (as `SourceFileLoader.get_code` resolves).
    get_code: Py<PyAny>,
    /// `_LoaderBasics.exec_module`.
    exec_module: Py<PyAny>,
    cache_from_source: Py<PyAny>,
    code_to_timestamp_pyc: Py<PyAny>,
    sys: Py<PyAny>,
}

/// Set once, by the first [`classes`] call of the process.
static STOCK: OnceLock<Stock> = OnceLock::new();

fn stock() -> PyResult<&'static Stock> {
    STOCK
        .get()
        .ok_or_else(|| PyNotImplementedError::new_err("ppyc's loader classes are not made"))
}

impl Stock {
    fn new(py: Python<'_>, source_loader: &Bound<'_, PyAny>) -> PyResult<Self> {
        let external = py.import("_frozen_importlib_external")?;
        Ok(Self {
            get_code: source_loader.getattr("get_code")?.unbind(),
            exec_module: source_loader.getattr("exec_module")?.unbind(),
            cache_from_source: external.getattr("cache_from_source")?.unbind(),
            code_to_timestamp_pyc: external.getattr("_code_to_timestamp_pyc")?.unbind(),
            sys: py.import("sys")?.into_any().unbind(),
        })
    }
}

/// The `Served` object of a loader, when it is one of ppyc's loaders whose `_ppyc`
/// attribute was left alone.
fn served<'py>(slf: &Bound<'py, PyAny>) -> Option<Bound<'py, Served>> {
    slf.getattr(intern!(slf.py(), "_ppyc"))
        .ok()?
        .cast_into::<Served>()
        .ok()
}

/// `PackLoader.__init__(fullname, path, served)`.
#[pyfunction]
fn pack_loader_init(
    slf: &Bound<'_, PyAny>,
    fullname: &Bound<'_, PyAny>,
    path: &Bound<'_, PyAny>,
    served: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = slf.py();
    slf.setattr(intern!(py, "name"), fullname)?;
    slf.setattr(intern!(py, "path"), path)?;
    slf.setattr(intern!(py, "_ppyc"), served)
}

/// `PackLoader.get_code(fullname)`: the code from the pack while the source is unchanged,
/// else the stock loader's.
#[pyfunction]
fn pack_loader_get_code<'py>(
    slf: &Bound<'py, PyAny>,
    fullname: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let stock = stock()?;
    if let Some(served) = served(slf) {
        if fullname.eq(slf.getattr(intern!(py, "name"))?)? {
            if let Ok(path) = slf.getattr(intern!(py, "path"))?.cast_into::<PyString>() {
                match served.get().code_for(py, &path) {
                    Code::Loaded(code) => return Ok(code),
                    Code::Recompile => return recompile(slf, &path, stock),
                    Code::Stock => {}
                }
            }
        }
    }
    stock.get_code.bind(py).call1((slf, fullname))
}

/// Compiles the source at `path` and writes its `.pyc` as `SourceLoader.get_code` does
/// after compiling (3.10-3.13: unless `sys.dont_write_bytecode`; a `.pyc` that cannot be
/// written is skipped). Used when only a digest saw that the source changed: size and
/// mtime may then hide the change from the `.pyc` the stock loader would read.
fn recompile<'py>(
    slf: &Bound<'py, PyAny>,
    path: &Bound<'py, PyString>,
    stock: &Stock,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let data = slf.call_method1(intern!(py, "get_data"), (path,))?;
    let code = slf.call_method1(intern!(py, "source_to_code"), (&data, path))?;
    if stock
        .sys
        .bind(py)
        .getattr(intern!(py, "dont_write_bytecode"))?
        .is_truthy()?
    {
        return Ok(code);
    }
    let bytecode_path = match stock.cache_from_source.bind(py).call1((path,)) {
        Ok(p) => p,
        Err(e) if e.is_instance_of::<PyNotImplementedError>(py) => return Ok(code),
        Err(e) => return Err(e),
    };
    let mtime = match slf.call_method1(intern!(py, "path_stats"), (path,)) {
        Ok(st) => st.get_item("mtime")?,
        Err(e) if e.is_instance_of::<PyOSError>(py) => return Ok(code),
        Err(e) => return Err(e),
    };
    let mtime = py.import("builtins")?.getattr("int")?.call1((mtime,))?;
    let pyc = stock
        .code_to_timestamp_pyc
        .bind(py)
        .call1((&code, mtime, data.len()?))?;
    match slf.call_method1(intern!(py, "_cache_bytecode"), (path, bytecode_path, pyc)) {
        Err(e) if !e.is_instance_of::<PyNotImplementedError>(py) => Err(e),
        _ => Ok(code),
    }
}

/// `FileLoader.__eq__`: the same class, name and path.
#[pyfunction]
fn pack_loader_eq(slf: &Bound<'_, PyAny>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = slf.py();
    if !slf.get_type().is(other.get_type()) {
        return Ok(false);
    }
    let (name, path) = (intern!(py, "name"), intern!(py, "path"));
    Ok(slf.getattr(name)?.eq(other.getattr(name)?)?
        && slf.getattr(path)?.eq(other.getattr(path)?)?)
}

/// `FileLoader.__hash__`: `hash(name) ^ hash(path)`.
#[pyfunction]
fn pack_loader_hash(slf: &Bound<'_, PyAny>) -> PyResult<isize> {
    let py = slf.py();
    Ok(slf.getattr(intern!(py, "name"))?.hash()? ^ slf.getattr(intern!(py, "path"))?.hash()?)
}

/// `ProfilingPackLoader.exec_module(module)`: the stock one, timed.
#[pyfunction]
fn profiling_exec_module(slf: &Bound<'_, PyAny>, module: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = slf.py();
    let t0 = Instant::now();
    let result = stock()?.exec_module.bind(py).call1((slf, module));
    if let Some(served) = served(slf) {
        served.get().record_exec(t0.elapsed().as_nanos() as u64);
    }
    result.map(drop)
}

/// Makes `PackLoader(SourceFileLoader)` and `ProfilingPackLoader(PackLoader)`.
pub(crate) fn classes(py: Python<'_>, source_loader: &Bound<'_, PyAny>) -> PyResult<Classes> {
    if STOCK.get().is_none() {
        let _ = STOCK.set(Stock::new(py, source_loader)?);
    }
    fn method<'py>(f: Bound<'py, pyo3::types::PyCFunction>) -> PyResult<Bound<'py, PyAny>> {
        crate::ffi::raw::instance_method(&f)
    }
    let ns = PyDict::new(py);
    ns.set_item("__module__", "ppyc._native")?;
    ns.set_item("__qualname__", "PackLoader")?;
    ns.set_item(
        "__doc__",
        "A SourceFileLoader whose code comes from a ppyc pack while the source is unchanged.",
    )?;
    ns.set_item("__init__", method(wrap_pyfunction!(pack_loader_init, py)?)?)?;
    ns.set_item(
        "get_code",
        method(wrap_pyfunction!(pack_loader_get_code, py)?)?,
    )?;
    ns.set_item("__eq__", method(wrap_pyfunction!(pack_loader_eq, py)?)?)?;
    ns.set_item("__hash__", method(wrap_pyfunction!(pack_loader_hash, py)?)?)?;
    let meta = py.get_type::<PyType>();
    let plain = meta.call1(("PackLoader", PyTuple::new(py, [source_loader])?, ns))?;
    let ns = PyDict::new(py);
    ns.set_item("__module__", "ppyc._native")?;
    ns.set_item("__qualname__", "ProfilingPackLoader")?;
    ns.set_item(
        "__doc__",
        "PackLoader under PPYC_PROFILE: also times exec_module.",
    )?;
    ns.set_item(
        "exec_module",
        method(wrap_pyfunction!(profiling_exec_module, py)?)?,
    )?;
    let profiling = meta.call1(("ProfilingPackLoader", PyTuple::new(py, [&plain])?, ns))?;
    Ok(Classes {
        plain: plain.unbind(),
        profiling: profiling.unbind(),
    })
}
