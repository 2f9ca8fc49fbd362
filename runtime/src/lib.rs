//! `ppyc._native`: the CPython extension that imports load.
//!
//! It holds the import hook ([`hook`], `spec/IMPORT.md`: a native meta path finder and the
//! per-module load call) and the pack reader for Python ([`pack::Pack`]: lookups, digests,
//! a read-only buffer over the mapping, image loads). `ppyc.pth` loads it at start-up, so it
//! holds nothing else: the command line is the separate extension `ppyc._cli` (crate
//! `ppyc-cli`), which `build.rs` builds next to it.
//!
//! # Source layout
//! - `hook/`: the meta path finder (`finder.rs`), which pack serves a directory
//!   (`packs.rs`), counters and `PPYC_PROFILE` records (`mod.rs`).
//! - `pack.rs`: the `Pack` class and the one load call per module.
//! - `ffi/`: every direct use of CPython's C API and object layouts: the per-version layout
//!   tables checked at run time (`ffi/layout/`), image snapshots and loads (`ffi/image/`).

mod ffi;
mod hook;
mod pack;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
mod _native {
    use super::*;

    #[pymodule_export]
    use crate::pack::Pack;

    #[pymodule_export]
    use crate::hook::{Finder, Served};

    /// Installs the import hook (`spec/IMPORT.md`); returns whether it is active (`False`
    /// under `PPYC_DISABLE`).
    #[pyfunction]
    fn install(py: Python<'_>) -> PyResult<bool> {
        crate::hook::install(py)
    }

    /// The `ppyc.pth` line's call: this module was loaded from `path` by
    /// `_imp.create_dynamic`; registers it and installs the hook (never raises). Under
    /// `-X importtime`, `started` is `time.perf_counter_ns()` from before the load, and a
    /// line in CPython's format reports the whole of it. `auto_refresh=False`: no
    /// background refreshes (`ppyc enable --no-auto-refresh`).
    #[pyfunction]
    #[pyo3(pass_module, signature = (path, started=0, auto_refresh=true))]
    fn activate(module: &Bound<'_, PyModule>, path: &str, started: u64, auto_refresh: bool) {
        crate::hook::activate(module.py(), module, path, started, auto_refresh);
    }

    /// Removes the import hook; modules already imported stay as they are.
    #[pyfunction]
    fn uninstall(py: Python<'_>) -> PyResult<()> {
        crate::hook::uninstall(py)
    }

    /// The anonymous mappings this process's images live in, `(start, length)` (for
    /// `/proc/PID/smaps` readers: benchmarks and diagnostics).
    #[pyfunction]
    fn image_mappings() -> Vec<(usize, usize)> {
        crate::ffi::image::mappings()
    }

    /// Whether the import hook is active in this process.
    #[pyfunction]
    fn installed(py: Python<'_>) -> bool {
        crate::hook::installed(py)
    }

    /// The hook's counters (`ppyc.stats()`).
    #[pyfunction]
    fn stats(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
        crate::hook::stats(py)
    }

    /// The `PPYC_PROFILE` records of this process, one dict per module.
    #[pyfunction]
    fn profile_records(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyList>> {
        crate::hook::profile_records(py)
    }

    /// Whether `PPYC_DISABLE` asks for the stock importer (ignored under `-E`, like
    /// Python's own variables).
    #[pyfunction]
    fn disabled_by_environment(py: Python<'_>) -> bool {
        crate::hook::disabled_by_environment(py)
    }

    /// Whether the hook measures phases in this process (`PPYC_PROFILE`).
    #[pyfunction]
    fn profiling() -> bool {
        crate::hook::profiling()
    }

    /// A monotonic clock in nanoseconds (the profiling loader's).
    #[pyfunction]
    fn now_ns() -> u64 {
        crate::hook::now_ns()
    }

    /// The packs that may serve `directory` itself at optimisation level `optimize`
    /// (default: this process's): those that exist in the order they are tried, then the
    /// others.
    #[pyfunction]
    #[pyo3(signature = (directory, optimize=None))]
    fn pack_candidates(
        py: Python<'_>,
        directory: &str,
        optimize: Option<u8>,
    ) -> PyResult<Vec<String>> {
        crate::hook::pack_candidates(py, directory, optimize)
    }

    /// The modules `ppyc compile` would pack in `directory`, as `(name, source path)`.
    #[pyfunction]
    #[pyo3(signature = (directory, excludes=Vec::new()))]
    fn walk_modules(
        py: Python<'_>,
        directory: &str,
        excludes: Vec<String>,
    ) -> PyResult<Vec<(String, String)>> {
        crate::hook::walk_modules(py, directory, excludes)
    }

    /// Where the state of the background refresh of `directory`'s pack is kept (append
    /// `.json`, `.log`, `.lock`, `.stamp`); `None` without a user cache directory.
    #[pyfunction]
    #[pyo3(signature = (directory, optimize=None))]
    fn refresh_state_base(
        py: Python<'_>,
        directory: &str,
        optimize: Option<u8>,
    ) -> PyResult<Option<String>> {
        crate::hook::refresh_state_base(py, directory, optimize)
    }

    /// The pack at `path` under the hook's rules, for runs at optimisation level
    /// `optimize` (default: this run's): `(pack, None)` when usable, else `(pack or None,
    /// why not)`. With `directory`, also that the pack was built for that directory.
    #[pyfunction]
    #[pyo3(signature = (path, directory=None, optimize=None))]
    fn check_pack(
        py: Python<'_>,
        path: &str,
        directory: Option<&str>,
        optimize: Option<u8>,
    ) -> PyResult<(Option<Py<Pack>>, Option<String>)> {
        crate::hook::check_pack_at(py, path, directory, optimize)
    }

    /// BLAKE3 of the file at `path` (raises `OSError`), for `PPYC_CHECK=hash`.
    #[pyfunction]
    fn file_digest<'py>(
        py: Python<'py>,
        path: std::path::PathBuf,
    ) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let digest = py.detach(|| std::fs::read(&path).map(|b| *blake3::hash(&b).as_bytes()))?;
        Ok(pyo3::types::PyBytes::new(py, &digest))
    }

    /// Where the user-cache pack of directory `real_dir` (already a real path) is, for
    /// `cache_tag` and `optimize` (`spec/FORMAT.md` §2); `None` without a cache directory.
    #[pyfunction]
    ///
    /// Takes and returns `str` (not `os.PathLike`/`pathlib.Path`): the import hook calls it
    /// while an import is in progress, when importing `pathlib` could recurse into the hook.
    fn cache_pack_path(real_dir: &str, cache_tag: &str, optimize: u8) -> Option<String> {
        ppyc_format::cache_dir().map(|c| {
            ppyc_format::cache_pack_path(&c, std::path::Path::new(real_dir), cache_tag, optimize)
                .to_string_lossy()
                .into_owned()
        })
    }

    /// `__ppyc__.<cache_tag>[.opt-N].ppyc`.
    #[pyfunction]
    fn pack_file_name(cache_tag: &str, optimize: u8) -> String {
        ppyc_format::pack_file_name(cache_tag, optimize)
    }

    /// Whether image mode is possible in this interpreter: `(True, fingerprint, layout
    /// description)` or `(False, reason, None)`.
    #[pyfunction]
    fn image_support(py: Python<'_>) -> (bool, String, Option<Bound<'_, pyo3::types::PyBytes>>) {
        match crate::ffi::layout::probe::current(py) {
            Ok(rt) => (
                true,
                rt.fingerprint.iter().map(|b| format!("{b:02x}")).collect(),
                Some(pyo3::types::PyBytes::new(py, &rt.description)),
            ),
            Err(reason) => (false, reason.to_owned(), None),
        }
    }

    /// The image of the code in `payload` (a marshalled code object, as a `.pyc` holds it
    /// after its header), in the wire encoding the compiler reads; `ValueError` with the
    /// reason when this module cannot have an image. Run by compile workers.
    #[pyfunction]
    fn snapshot<'py>(
        py: Python<'py>,
        payload: &[u8],
    ) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        crate::ffi::image::snapshot::snapshot(py, payload)
            .map(|image| pyo3::types::PyBytes::new(py, &image.to_wire()))
            .map_err(pyo3::exceptions::PyValueError::new_err)
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
