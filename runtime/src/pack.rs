//! The `ppyc.Pack` class: a pack opened from Python.

use std::ffi::c_int;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use ppyc_format::Layer;

use crate::ffi::image::{self, Mode};

/// What the import hook needs to know about one module: `(source_path, is_package,
/// source_size, source_mtime_ns, pyc_flags, source_blake3, index)`; `index` is its entry in
/// the lookup table, for [`Pack::load`].
type RecordTuple<'py> = (&'py str, bool, u64, i64, u32, Bound<'py, PyBytes>, usize);

/// An open pack (`ppyc.Pack(path)`), with the delta that completes it when there is one
/// (`spec/FORMAT.md` §13): one generation of a directory's code.
///
/// Module indices (`find`, `load`, the import hook's records) run over the generation:
/// the base's lookup-table entries first, then the delta's, from `len(base)` on.
#[pyclass(module = "ppyc._native", frozen)]
pub(crate) struct Pack {
    generation: ppyc_format::Generation,
    /// Image or marshal mode of the base and of the delta in this process, each decided at
    /// its first load.
    modes: [OnceLock<Mode>; 2],
    /// Why a delta beside the pack is not used, when there is one that cannot be.
    delta_problem: Option<String>,
}

// `PPYC_CHECK`, as the hook passes it to [`Pack::load`]: 0 timestamp (the default), 1
// hash, 2 unchecked.
const CHECK_HASH: u8 = 1;
const CHECK_UNCHECKED: u8 = 2;

fn elapsed_ns(t: Instant) -> u64 {
    t.elapsed().as_nanos() as u64
}

/// `PPYC_CHECK`: how a record's source is checked before its code is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// One `stat`: size and mtime (nanoseconds) equal to the record's.
    Timestamp,
    /// BLAKE3 of the source equal to the record's.
    Hash,
    /// Trust the pack.
    Unchecked,
}

/// `_imp.check_hash_based_pycs`: when records from hash-based pycs are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HashPycs {
    Default,
    Always,
    Never,
}

/// What loading one module gave.
pub(crate) enum Outcome<'py> {
    /// The code, and the time the freshness check took.
    Loaded(image::Loaded<'py>, u64),
    /// The source changed: the stock importer loads it; `recompile` when only a digest saw
    /// the change (then its `.pyc` must not be trusted either).
    Stale { recompile: bool, check_ns: u64 },
    /// The record, image and payload cannot be used (why), and the check time.
    Damaged(String, u64),
}

impl Pack {
    /// Opens and checks the header of the pack at `path`, without its delta.
    pub(crate) fn open(path: &str) -> Result<Self, ppyc_format::FormatError> {
        ppyc_format::Pack::open(std::path::Path::new(path)).map(|base| Self {
            generation: ppyc_format::Generation::alone(base),
            modes: [OnceLock::new(), OnceLock::new()],
            delta_problem: None,
        })
    }

    /// Completes this pack (opened from `path`) with its delta, if one beside it names it
    /// and `accept` (the rules the file must meet, given its path and metadata) takes it;
    /// a delta that is there and cannot be used is kept as [`Pack::delta_problem`].
    pub(crate) fn with_delta(
        self,
        path: &std::path::Path,
        accept: impl Fn(&std::fs::Metadata) -> Result<(), String>,
    ) -> Self {
        let base = self.generation.base;
        let (generation, delta_problem) = match Self::delta_of(&base, path, accept) {
            Ok(None) => (ppyc_format::Generation::alone(base), None),
            Ok(Some(delta)) => match ppyc_format::Generation::with_delta(base, delta) {
                Ok(g) => (g, None),
                Err((base, e)) => (ppyc_format::Generation::alone(*base), Some(e.to_string())),
            },
            Err(why) => (ppyc_format::Generation::alone(base), Some(why)),
        };
        Self {
            generation,
            modes: self.modes,
            delta_problem,
        }
    }

    /// The delta beside `base` (opened from `path`) that names it and that `accept` takes;
    /// `Ok(None)` when there is none or one of another base; why not, when it is there and
    /// cannot be used.
    fn delta_of(
        base: &ppyc_format::Pack,
        path: &std::path::Path,
        accept: impl Fn(&std::fs::Metadata) -> Result<(), String>,
    ) -> Result<Option<ppyc_format::Pack>, String> {
        let delta_path = ppyc_format::delta_path(path);
        let Ok(st) = std::fs::symlink_metadata(&delta_path) else {
            return Ok(None);
        };
        accept(&st)?;
        let delta =
            ppyc_format::Pack::open(&delta_path).map_err(|e| format!("it cannot be read ({e})"))?;
        // The same rules for the file opened (fstat), in case one was renamed over it.
        match delta.file_metadata() {
            Some(Ok(opened)) if opened.ino() == st.ino() && opened.dev() == st.dev() => {}
            Some(Ok(opened)) => accept(&opened)?,
            Some(Err(e)) => return Err(format!("it cannot be read ({e})")),
            None => {}
        }
        match ppyc_format::pair(base, delta) {
            ppyc_format::DeltaState::Paired(delta) => Ok(Some(*delta)),
            ppyc_format::DeltaState::Unusable(why) => Err(why),
            ppyc_format::DeltaState::Absent | ppyc_format::DeltaState::Unpaired => Ok(None),
        }
    }

    /// The mode of the base pack in this process (the pack's mode).
    pub(crate) fn mode(&self, py: Python<'_>) -> &Mode {
        self.layer_mode(py, Layer::Base)
    }

    fn layer_mode(&self, py: Python<'_>, layer: Layer) -> &Mode {
        let i = usize::from(layer == Layer::Delta);
        self.modes[i].get_or_init(|| image::pack_mode(py, self.generation.pack(layer)))
    }

    /// The base pack's reader.
    pub(crate) fn inner(&self) -> &ppyc_format::Pack {
        &self.generation.base
    }

    /// The delta in use, if any.
    pub(crate) fn delta(&self) -> Option<&ppyc_format::Pack> {
        self.generation.delta.as_ref()
    }

    /// Why a delta beside the pack is not used, when there is one.
    pub(crate) fn delta_problem(&self) -> Option<&str> {
        self.delta_problem.as_deref()
    }

    /// Modules of the generation.
    pub(crate) fn len(&self) -> usize {
        self.generation.len()
    }

    /// The module `name` of the generation and its generation index.
    pub(crate) fn lookup(
        &self,
        name: &str,
    ) -> Result<Option<(usize, ppyc_format::Module<'_>)>, ppyc_format::FormatError> {
        Ok(self
            .generation
            .get(name)?
            .map(|(layer, m)| (self.index_of(layer, &m), m)))
    }

    fn index_of(&self, layer: Layer, m: &ppyc_format::Module<'_>) -> usize {
        match layer {
            Layer::Base => m.index(),
            Layer::Delta => self.generation.base.len() + m.index(),
        }
    }

    /// The layer and lookup-table entry of generation index `index`.
    fn locate(&self, index: usize) -> (Layer, usize) {
        let base = self.generation.base.len();
        if index >= base && self.generation.delta.is_some() {
            (Layer::Delta, index - base)
        } else {
            (Layer::Base, index)
        }
    }

    /// Whether the lookup tables match their section digests (computed once per pack).
    pub(crate) fn index_intact(&self) -> bool {
        self.generation.base.index_intact()
            && self
                .generation
                .delta
                .as_ref()
                .is_none_or(ppyc_format::Pack::index_intact)
    }

    /// The directory listings in force (the delta's, else the base's).
    pub(crate) fn dirs(
        &self,
    ) -> Result<Option<ppyc_format::dirs::Dirs<'_>>, ppyc_format::FormatError> {
        self.generation.dirs()
    }

    /// Loads module `name` (lookup-table entry `index`) found at `path`: its record
    /// (checked again), the freshness of `path` by `check` (a record from a hash-based pyc
    /// is checked exactly when the stock importer would, by `hash_pycs`), then its code from
    /// the image or the payload with `co_filename` set to `path`.
    pub(crate) fn load_module<'py>(
        &self,
        py: Python<'py>,
        index: usize,
        name: &str,
        path: &Bound<'py, PyString>,
        check: Check,
        hash_pycs: HashPycs,
    ) -> PyResult<Outcome<'py>> {
        let (layer, local) = self.locate(index);
        let pack = self.generation.pack(layer);
        // One check that the file still covers its mapping, for every read below.
        let _checked = match pack.checked_scope() {
            Ok(scope) => scope,
            Err(e) => return Ok(Outcome::Damaged(e.to_string(), 0)),
        };
        let module = match pack.module_at(local) {
            Ok(m) if m.name() == name => m,
            Ok(_) => return Ok(Outcome::Damaged("the entry holds another module".into(), 0)),
            Err(e) => return Ok(Outcome::Damaged(e.to_string(), 0)),
        };
        let t0 = Instant::now();
        let path_str = path.to_str()?;
        let digest_ok = || {
            py.detach(|| std::fs::read(path_str))
                .is_ok_and(|b| blake3::hash(&b).as_bytes() == module.source_blake3())
        };
        let flags = module.pyc_flags();
        let (fresh, recompile) = if flags & 1 != 0 {
            // A hash-based pyc (PEP 552): checked exactly when the stock importer would,
            // and when the source changed, the stock loader sees it too (it checks the
            // `.pyc`'s hash just the same): no recompilation needed.
            let need =
                hash_pycs == HashPycs::Always || (hash_pycs == HashPycs::Default && flags & 2 != 0);
            (!need || digest_ok(), false)
        } else {
            match check {
                Check::Unchecked => (true, false),
                Check::Hash => (digest_ok(), true),
                Check::Timestamp => {
                    let fresh = std::fs::metadata(path_str).is_ok_and(|m| {
                        m.size() == module.source_size()
                            && m.mtime() * 1_000_000_000 + m.mtime_nsec()
                                == module.source_mtime_ns()
                    });
                    (fresh, false)
                }
            }
        };
        let check_ns = elapsed_ns(t0);
        if !fresh {
            return Ok(Outcome::Stale {
                recompile,
                check_ns,
            });
        }
        Ok(
            match image::load_code(py, pack, self.layer_mode(py, layer), &module, path) {
                Ok(l) => Outcome::Loaded(l, check_ns),
                Err(e) => Outcome::Damaged(e, check_ns),
            },
        )
    }
}

/// `Pack.listing()`'s answer: mtime seconds, nanoseconds, names.
type ListingTuple<'py> = (i64, u32, Vec<Bound<'py, PyBytes>>);

fn value_error(e: &ppyc_format::FormatError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

#[pymethods]
impl Pack {
    /// Opens and checks the header of the pack at `path` (raises `OSError` or `ValueError`).
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        match ppyc_format::Pack::open(&path) {
            Ok(base) => Ok(Self {
                generation: ppyc_format::Generation::alone(base),
                modes: [OnceLock::new(), OnceLock::new()],
                delta_problem: None,
            }
            .with_delta(&path, |st| {
                if st.is_file() {
                    Ok(())
                } else {
                    Err("it is not a regular file".into())
                }
            })),
            Err(ppyc_format::FormatError::Io { source, .. }) => Err(source.into()),
            Err(
                e @ ppyc_format::FormatError::NotAFile {
                    kind: "a directory",
                    ..
                },
            ) => Err(pyo3::exceptions::PyIsADirectoryError::new_err(format!(
                "`{}`: {e}",
                path.display()
            ))),
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
        // A file truncated in place: its mapping must no longer be handed out.
        slf.get()
            .inner()
            .check_mapped()
            .map_err(|e| pyo3::exceptions::PyBufferError::new_err(e.to_string()))?;
        let bytes = slf.get().inner().as_bytes();
        // SAFETY: `view` is CPython's request (our caller's contract). `bytes` is the pack's
        // mapping, owned by `slf` and never modified or unmapped while `slf` is alive
        // (`Pack` is frozen and packs are replaced by rename, never written in place), and
        // `fill_readonly` makes the view hold a reference to `slf`.
        unsafe { crate::ffi::buffer::fill_readonly(slf.as_any(), view, bytes, flags) }
    }

    /// `sys.implementation.cache_tag` of the target interpreter.
    #[getter]
    fn cache_tag(&self) -> &str {
        &self.inner().header().target.cache_tag
    }

    /// The pyc magic number of the target interpreter.
    #[getter]
    fn pyc_magic<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner().header().target.pyc_magic)
    }

    /// `sys.flags.optimize` the code was compiled for.
    #[getter]
    fn optimize(&self) -> u8 {
        self.inner().header().target.optimize
    }

    /// The path the pack was opened from (a `str`: returning `pathlib.Path` would import
    /// `pathlib`, which the import hook must not do in the middle of an import).
    #[getter]
    fn path(&self) -> Option<String> {
        self.inner()
            .path()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// The record of module `name` as a tuple `(source_path, is_package, source_size,
    /// source_mtime_ns, pyc_flags, source_blake3)`, or `None` when the pack does not hold
    /// it. Checks only that record (digest, then structure); raises `ValueError` when it is
    /// damaged.
    fn find<'py>(&'py self, py: Python<'py>, name: &str) -> PyResult<Option<RecordTuple<'py>>> {
        let Some((index, m)) = self.lookup(name).map_err(|e| value_error(&e))? else {
            return Ok(None);
        };
        Ok(Some((
            m.source_path(),
            m.is_package(),
            m.source_size(),
            m.source_mtime_ns(),
            m.pyc_flags(),
            PyBytes::new(py, m.source_blake3()),
            index,
        )))
    }

    /// Loads module `name` (lookup-table entry `index`, from [`Pack::find`]) as the import
    /// hook does ([`Pack::load_module`]), for tests and tools.
    ///
    /// Returns `(code, "image" | "marshal", bytes, check_ns, read_ns, load_ns, bind_ns,
    /// image_problem)`, or `(None, reason, recompile, check_ns, 0, 0, 0, detail)` when the
    /// stock importer must load the module (`recompile`: the source must be compiled, not
    /// its `.pyc` trusted, because only a digest saw the change).
    #[pyo3(signature = (index, name, path, check, hash_pycs))]
    fn load<'py>(
        &self,
        py: Python<'py>,
        index: usize,
        name: &str,
        path: &Bound<'py, PyString>,
        check: u8,
        hash_pycs: &str,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let hash_pycs = match hash_pycs {
            "always" => HashPycs::Always,
            "never" => HashPycs::Never,
            _ => HashPycs::Default,
        };
        let check = match check {
            CHECK_HASH => Check::Hash,
            CHECK_UNCHECKED => Check::Unchecked,
            _ => Check::Timestamp,
        };
        match self.load_module(py, index, name, path, check, hash_pycs)? {
            Outcome::Loaded(l, check_ns) => (
                Some(l.code),
                if l.image { "image" } else { "marshal" },
                l.bytes,
                check_ns,
                l.phases.read,
                l.phases.load,
                l.phases.bind,
                l.image_problem,
            )
                .into_pyobject(py),
            Outcome::Stale {
                recompile,
                check_ns,
            } => (
                None::<Bound<'py, PyAny>>,
                "stale",
                recompile,
                check_ns,
                0u64,
                0u64,
                0u64,
                None::<String>,
            )
                .into_pyobject(py),
            Outcome::Damaged(detail, check_ns) => (
                None::<Bound<'py, PyAny>>,
                "damaged",
                false,
                check_ns,
                0u64,
                0u64,
                0u64,
                Some(detail),
            )
                .into_pyobject(py),
        }
    }

    /// The recorded listing of directory `rel` (relative to the pack's root, `""` for the
    /// root): `(mtime_seconds, mtime_nanoseconds, names)` with the names as bytes, or `None`
    /// when the pack records none (or the entry is damaged).
    fn listing<'py>(&self, py: Python<'py>, rel: &str) -> PyResult<Option<ListingTuple<'py>>> {
        let dirs = self.dirs().map_err(|e| value_error(&e))?;
        Ok(dirs.and_then(|d| d.get(rel)).map(|l| {
            (
                l.mtime.0,
                l.mtime.1,
                l.names().map(|n| PyBytes::new(py, n)).collect(),
            )
        }))
    }

    /// `(mode, reason)`: `("image", None)` when this process loads the pack's images, else
    /// `("marshal", why not)`.
    fn mode_info(&self, py: Python<'_>) -> (&'static str, Option<String>) {
        let mode = self.mode(py);
        (mode.name(), mode.reason().map(str::to_owned))
    }

    /// The code object of module `name` from its image (`ValueError` when it has none or
    /// the image cannot be used here), with `co_filename` set to `filename`: for tests and
    /// `ppyc verify --deep`.
    fn load_image<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        filename: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (layer, m) = self
            .generation
            .get(name)
            .map_err(|e| value_error(&e))?
            .ok_or_else(|| PyKeyError::new_err(name.to_owned()))?;
        let mode = self.layer_mode(py, layer);
        if let Mode::Marshal(reason) = mode {
            return Err(PyValueError::new_err(format!("marshal mode: {reason}")));
        }
        let pack = self.generation.pack(layer);
        let loaded =
            image::load_code(py, pack, mode, &m, filename).map_err(PyValueError::new_err)?;
        match loaded.image_problem {
            None => Ok(loaded.code),
            Some(problem) => Err(PyValueError::new_err(problem)),
        }
    }

    /// `(start, end)` of module `name`'s payload in `memoryview(pack)`, after checking the
    /// payload's digest (`ValueError` when damaged, `KeyError` when absent).
    fn payload_span(&self, py: Python<'_>, name: &str) -> PyResult<(usize, usize)> {
        let (layer, m) = self
            .generation
            .get(name)
            .map_err(|e| value_error(&e))?
            .ok_or_else(|| PyKeyError::new_err(name.to_owned()))?;
        if layer == Layer::Delta {
            return Err(PyValueError::new_err(format!(
                "`{name}` is in the pack's delta: its payload is not in memoryview(pack)"
            )));
        }
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
        let mut names = Vec::with_capacity(self.len());
        for m in self.generation.modules() {
            names.push(m.map_err(|e| value_error(&e))?.1.name().to_owned());
        }
        names.sort_unstable();
        Ok(names)
    }

    fn __len__(&self) -> usize {
        self.len()
    }

    fn __contains__(&self, name: &str) -> PyResult<bool> {
        Ok(self.lookup(name).map_err(|e| value_error(&e))?.is_some())
    }

    /// The header and sections, as a dict.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let h = self.inner().header();
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
        let images = self.inner().images().ok().flatten();
        d.set_item(
            "layout_fingerprint",
            (h.layout_fingerprint != [0; 32]).then(|| {
                h.layout_fingerprint
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            }),
        )?;
        d.set_item(
            "layout",
            images.map(|i| String::from_utf8_lossy(i.layout).into_owned()),
        )?;
        let (mode, reason) = self.mode_info(py);
        d.set_item("mode", mode)?;
        d.set_item("mode_reason", reason)?;
        d.set_item(
            "directories",
            self.dirs().ok().flatten().map_or(0, |d| d.len()),
        )?;
        let sections = PyList::empty(py);
        for s in self.inner().sections() {
            let e = PyDict::new(py);
            e.set_item("id", s.id.to_string())?;
            e.set_item("offset", s.offset)?;
            e.set_item("length", s.length)?;
            e.set_item("required", s.is_required())?;
            sections.append(e)?;
        }
        d.set_item("sections", sections)?;
        // The generation's metadata: the delta's, written by the latest build, when there
        // is one.
        let meta = PyDict::new(py);
        for (k, v) in self.delta().unwrap_or(self.inner()).meta() {
            meta.set_item(k, v)?;
        }
        d.set_item("meta", meta)?;
        d.set_item("modules", self.len())?;
        let delta = match self.delta() {
            None => None,
            Some(delta) => {
                let e = PyDict::new(py);
                e.set_item(
                    "path",
                    delta.path().map(|p| p.to_string_lossy().into_owned()),
                )?;
                e.set_item("module_count", delta.len())?;
                e.set_item("file_size", delta.file_size())?;
                e.set_item(
                    "deleted",
                    delta.base().ok().flatten().map_or(0, |b| b.deleted.len()),
                )?;
                let written = delta
                    .file_metadata()
                    .and_then(Result::ok)
                    .map(|m| m.mtime() * 1_000_000_000 + m.mtime_nsec());
                e.set_item("mtime_ns", written)?;
                Some(e)
            }
        };
        d.set_item("delta", delta)?;
        d.set_item("delta_problem", self.delta_problem())?;
        Ok(d)
    }

    /// The record of module `name`, as a dict (raises `KeyError` when absent).
    fn record<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let (_, m) = self
            .lookup(name)
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
        let (_, m) = self
            .lookup(name)
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
            let mut problems: Vec<String> = self
                .inner()
                .verify()
                .problems
                .iter()
                .map(ToString::to_string)
                .collect();
            if let Some(delta) = self.delta() {
                problems.extend(
                    delta
                        .verify()
                        .problems
                        .iter()
                        .map(|e| format!("delta: {e}")),
                );
            }
            problems
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<ppyc.Pack {} modules for {}{}>",
            self.len(),
            self.inner().header().target.cache_tag,
            self.inner()
                .path()
                .map(|p| format!(" at {}", p.display()))
                .unwrap_or_default()
        )
    }
}
