//! The `ppyc.Pack` class: a pack opened from Python.

use std::ffi::c_int;
use std::path::PathBuf;

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

/// What the import hook needs to know about one module: `(source_path, is_package,
/// source_size, source_mtime_ns, pyc_flags, source_blake3)`.
type RecordTuple<'py> = (&'py str, bool, u64, i64, u32, Bound<'py, PyBytes>);

/// An open pack (`ppyc.Pack(path)`).
#[pyclass(module = "ppyc._native", frozen)]
pub(crate) struct Pack {
    inner: ppyc_format::Pack,
}

fn value_error(e: &ppyc_format::FormatError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

#[pymethods]
impl Pack {
    /// Opens and checks the header of the pack at `path` (raises `OSError` or `ValueError`).
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        match ppyc_format::Pack::open(&path) {
            Ok(inner) => Ok(Self { inner }),
            Err(ppyc_format::FormatError::Io { source, .. }) => Err(source.into()),
            Err(e) => Err(value_error(&e)),
        }
    }

    /// The pack's bytes, read-only, for `memoryview(pack)`: payload spans index into it.
    ///
    /// # Safety
    /// Called by CPython with the `Py_buffer` of a buffer request.
    #[allow(unsafe_code)]
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let bytes = slf.get().inner.as_bytes();
        // SAFETY: `view` is CPython's request (our caller's contract). `bytes` is the pack's
        // mapping, owned by `slf` and never modified or unmapped while `slf` is alive
        // (`Pack` is frozen and packs are replaced by rename, never written in place), and
        // `fill_readonly` makes the view hold a reference to `slf`.
        unsafe { crate::ffi::buffer::fill_readonly(slf.as_any(), view, bytes, flags) }
    }

    /// `sys.implementation.cache_tag` of the target interpreter.
    #[getter]
    fn cache_tag(&self) -> &str {
        &self.inner.header().target.cache_tag
    }

    /// The pyc magic number of the target interpreter.
    #[getter]
    fn pyc_magic<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.header().target.pyc_magic)
    }

    /// `sys.flags.optimize` the code was compiled for.
    #[getter]
    fn optimize(&self) -> u8 {
        self.inner.header().target.optimize
    }

    /// The path the pack was opened from (a `str`: returning `pathlib.Path` would import
    /// `pathlib`, which the import hook must not do in the middle of an import).
    #[getter]
    fn path(&self) -> Option<String> {
        self.inner.path().map(|p| p.to_string_lossy().into_owned())
    }

    /// The record of module `name` as a tuple `(source_path, is_package, source_size,
    /// source_mtime_ns, pyc_flags, source_blake3)`, or `None` when the pack does not hold
    /// it. Checks only that record (digest, then structure); raises `ValueError` when it is
    /// damaged.
    fn find<'py>(&'py self, py: Python<'py>, name: &str) -> PyResult<Option<RecordTuple<'py>>> {
        let Some(m) = self.inner.get(name).map_err(|e| value_error(&e))? else {
            return Ok(None);
        };
        Ok(Some((
            m.source_path(),
            m.is_package(),
            m.source_size(),
            m.source_mtime_ns(),
            m.pyc_flags(),
            PyBytes::new(py, m.source_blake3()),
        )))
    }

    /// `(start, end)` of module `name`'s payload in `memoryview(pack)`, after checking the
    /// payload's digest (`ValueError` when damaged, `KeyError` when absent).
    fn payload_span(&self, py: Python<'_>, name: &str) -> PyResult<(usize, usize)> {
        let m = self
            .inner
            .get(name)
            .map_err(|e| value_error(&e))?
            .ok_or_else(|| PyKeyError::new_err(name.to_owned()))?;
        let span = if m.payload_len() > 1 << 20 {
            // Hashing a large payload: let other threads run meanwhile.
            py.detach(|| m.payload_span())
        } else {
            m.payload_span()
        }
        .map_err(|e| value_error(&e))?;
        Ok((span.start, span.end))
    }

    /// The module names, sorted.
    fn modules(&self) -> PyResult<Vec<String>> {
        let mut names = Vec::with_capacity(self.inner.len());
        for m in self.inner.modules() {
            names.push(m.map_err(|e| value_error(&e))?.name().to_owned());
        }
        names.sort_unstable();
        Ok(names)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, name: &str) -> PyResult<bool> {
        Ok(self.inner.get(name).map_err(|e| value_error(&e))?.is_some())
    }

    /// The header and sections, as a dict.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let h = self.inner.header();
        let d = PyDict::new(py);
        d.set_item("path", self.path())?;
        d.set_item("read_version", h.read_version)?;
        d.set_item("write_version", h.write_version)?;
        d.set_item("cache_tag", &h.target.cache_tag)?;
        d.set_item("hexversion", h.target.hexversion)?;
        d.set_item("pyc_magic", PyBytes::new(py, &h.target.pyc_magic))?;
        d.set_item("optimize", h.target.optimize)?;
        d.set_item("flags", h.flags)?;
        d.set_item("module_count", h.module_count)?;
        d.set_item("file_size", h.file_size)?;
        let sections = PyList::empty(py);
        for s in self.inner.sections() {
            let e = PyDict::new(py);
            e.set_item("id", s.id.to_string())?;
            e.set_item("offset", s.offset)?;
            e.set_item("length", s.length)?;
            e.set_item("required", s.is_required())?;
            sections.append(e)?;
        }
        d.set_item("sections", sections)?;
        let meta = PyDict::new(py);
        for (k, v) in self.inner.meta() {
            meta.set_item(k, v)?;
        }
        d.set_item("meta", meta)?;
        Ok(d)
    }

    /// The record of module `name`, as a dict (raises `KeyError` when absent).
    fn record<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let m = self
            .inner
            .get(name)
            .map_err(|e| value_error(&e))?
            .ok_or_else(|| PyKeyError::new_err(name.to_owned()))?;
        let d = PyDict::new(py);
        d.set_item("name", m.name())?;
        d.set_item("is_package", m.is_package())?;
        d.set_item("source_path", m.source_path())?;
        d.set_item("source_size", m.source_size())?;
        d.set_item("source_mtime_ns", m.source_mtime_ns())?;
        d.set_item("source_blake3", PyBytes::new(py, m.source_blake3()))?;
        d.set_item("pyc_flags", m.pyc_flags())?;
        d.set_item("payload_len", m.payload_len())?;
        Ok(d)
    }

    /// The marshalled code of module `name` (checked against its digest), as bytes.
    fn payload<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyBytes>> {
        let m = self
            .inner
            .get(name)
            .map_err(|e| value_error(&e))?
            .ok_or_else(|| PyKeyError::new_err(name.to_owned()))?;
        Ok(PyBytes::new(py, m.payload().map_err(|e| value_error(&e))?))
    }

    /// The code object of module `name` (`marshal.loads` of its payload).
    fn get_code<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let payload = self.payload(py, name)?;
        py.import("marshal")?.call_method1("loads", (payload,))
    }

    /// Checks every digest; returns the list of problems (empty when intact).
    fn verify(&self, py: Python<'_>) -> Vec<String> {
        py.detach(|| {
            self.inner
                .verify()
                .problems
                .iter()
                .map(ToString::to_string)
                .collect()
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<ppyc.Pack {} modules for {}{}>",
            self.inner.len(),
            self.inner.header().target.cache_tag,
            self.inner
                .path()
                .map(|p| format!(" at {}", p.display()))
                .unwrap_or_default()
        )
    }
}
