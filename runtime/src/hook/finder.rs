//! The meta path finder: `FileFinder`'s search, natively, over the `FileFinder` objects of
//! `sys.path_importer_cache` (`spec/IMPORT.md`, "Finding").
//!
//! For each entry of the path it searches, the finder takes the entry's path-entry finder
//! exactly as `PathFinder` does (`sys.path_importer_cache`, else
//! `PathFinder._path_importer_cache`, which runs `sys.path_hooks`). A stock `FileFinder`
//! (exact type, the stock loaders) is searched here with the stock rules, on that very
//! `FileFinder`'s own directory cache (`_path_cache`, `_path_mtime`, filled as `_fill_cache`
//! fills it), so the answer is the one `FileFinder.find_spec` would give at that moment.
//! Anything else — another kind of finder, a bytes entry, `-vv` (which prints each file
//! tried) — and every miss or namespace portion is left to `PathFinder`, which runs next in
//! `sys.meta_path` and searches from the first entry again, as without ppyc.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Instant;

use pyo3::exceptions::PyFileNotFoundError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyString};

use super::packs::PackEntry;
use super::{Hook, Served};

/// A stock `FileFinder` seen before: its directory and loaders.
pub(crate) struct Directory {
    path: String,
    loaders: Vec<(String, Py<PyAny>, bool)>,
}

/// What searching one directory found.
enum Search {
    /// A module: its loader class, file, and the package directory for a package.
    Found {
        loader: Py<PyAny>,
        source: bool,
        path: String,
        package: Option<String>,
    },
    /// A possible namespace portion (left to `PathFinder`).
    Portion,
    Miss,
}

/// POSIX `_path_join` of `importlib._bootstrap_external` (3.10-3.13): non-empty parts with
/// trailing separators stripped, joined with `/`.
fn path_join(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_end_matches('/'))
        .collect::<Vec<_>>()
        .join("/")
}

fn is_file(path: &str) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_file())
}

fn is_dir(path: &str) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_dir())
}

/// A directory's `st_mtime` and `st_ctime`, as seconds and nanoseconds.
type Stamp = ((i64, u32), (i64, u32));

/// A directory's `st_mtime` as Python computes it (`sec + nsec * 1e-9`,
/// `Modules/posixmodule.c`), and its mtime and ctime as seconds and nanoseconds.
fn mtime(path: &str) -> Option<(f64, Stamp)> {
    std::fs::metadata(path).ok().map(|m| {
        (
            m.mtime() as f64 + m.mtime_nsec() as f64 * 1e-9,
            (
                (m.mtime(), m.mtime_nsec() as u32),
                (m.ctime(), m.ctime_nsec() as u32),
            ),
        )
    })
}

/// The directory whose pack can hold module `name` found in directory `dir`: `dir` for a
/// top-level name; for `a.b.c` found in `…/a/b`, the directory holding `a`, whose pack
/// names the module `a.b.c` (`spec/IMPORT.md`, "Which pack serves a directory"). So a pack
/// built for `…/a/b` itself (its modules named as if `…/a/b` were on `sys.path`) serves
/// only top-level names and never shadows the records of the tree's pack. When `dir` does
/// not end in the package's names (a `__path__` made by hand), `dir` itself.
fn package_root<'a>(dir: &'a str, name: &str) -> &'a str {
    let mut root = dir.trim_end_matches('/');
    let mut parents = name.rsplit('.').skip(1);
    for part in parents.by_ref() {
        match root.rsplit_once('/') {
            Some((up, last)) if last == part && !up.is_empty() => root = up,
            _ => return dir,
        }
    }
    root
}

impl Hook {
    /// The directory of a stock `FileFinder` (`None` for any other finder).
    fn directory(
        &self,
        py: Python<'_>,
        finder: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Arc<Directory>>> {
        let key = finder.as_ptr() as usize;
        if let Some((_, d)) = self.lock_dirs().get(&key) {
            return Ok(d.clone());
        }
        let o = &self.objects;
        let found = if finder.get_type().is(o.file_finder.bind(py))
            && finder.getattr("_loaders")?.eq(o.stock_loaders.bind(py))?
        {
            let path = finder.getattr("path")?;
            match path.extract::<String>() {
                // A path that is not UTF-8 (surrogate escapes): left to the stock finder.
                Err(_) => None,
                Ok(path) => {
                    let mut loaders = Vec::new();
                    for pair in finder.getattr("_loaders")?.try_iter()? {
                        let (suffix, loader): (String, Bound<'_, PyAny>) = pair?.extract()?;
                        let source = loader.is(o.source_loader.bind(py));
                        loaders.push((suffix, loader.unbind(), source));
                    }
                    Some(Arc::new(Directory { path, loaders }))
                }
            }
        } else {
            None
        };
        // The entry holds the finder, whatever its kind, so that its address is not reused
        // while the entry is here: `sys.path_importer_cache` is a plain dict, and a finder
        // taken out of it (replaced, or the dict cleared) may be freed and its memory given
        // to a new stock `FileFinder`, which `PathFinder._path_importer_cache` then returns
        // for the entry (3.10-3.13). Held by address only, a finder of another kind left
        // `None` here for the new `FileFinder` until `invalidate_caches()`. (A replaced
        // value is dropped after the lock is released: dropping a finder may run Python.)
        let _replaced = self
            .lock_dirs()
            .insert(key, (finder.clone().unbind(), found.clone()));
        Ok(found)
    }

    pub(super) fn lock_dirs(&self) -> std::sync::MutexGuard<'_, super::Directories> {
        self.directories
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `FileFinder.find_spec`'s search for `tail` in `dir`, on `finder`'s cache.
    fn search(
        &self,
        py: Python<'_>,
        finder: &Bound<'_, PyAny>,
        dir: &Directory,
        tail: &str,
    ) -> PyResult<Search> {
        let path = dir.path.as_str();
        let here = if path.is_empty() {
            self.objects.getcwd.bind(py).call0()?.extract::<String>()?
        } else {
            path.to_owned()
        };
        let now = mtime(&here);
        let cached: f64 = finder.getattr("_path_mtime")?.extract()?;
        if now.map_or(-1.0, |m| m.0) != cached {
            // The pack's listing of this directory when it was taken at this very mtime
            // and ctime, else a listing now, as `FileFinder._fill_cache` takes it.
            let recorded = match now {
                Some((_, exact)) if !path.is_empty() => self.recorded_listing(py, path, exact),
                _ => None,
            };
            match recorded {
                Some(names) => finder.setattr("_path_cache", names)?,
                None => self.fill_cache(py, finder, &here)?,
            }
            match now {
                Some((m, _)) => finder.setattr("_path_mtime", m)?,
                None => finder.setattr("_path_mtime", -1)?,
            }
        }
        let cache = finder.getattr("_path_cache")?;
        let cache = cache.cast::<PySet>()?;
        if tail.contains('\0') {
            return Ok(Search::Miss); // `_path_join` raises ValueError: FileFinder returns None
        }
        let mut is_namespace = false;
        if cache.contains(tail)? {
            let base = path_join(&[path, tail]);
            for (suffix, loader, source) in &dir.loaders {
                let init = path_join(&[&base, &format!("__init__{suffix}")]);
                if is_file(&init) {
                    return Ok(Search::Found {
                        loader: loader.clone_ref(py),
                        source: *source,
                        path: init,
                        package: Some(base),
                    });
                }
            }
            is_namespace = is_dir(&base);
        }
        for (suffix, loader, source) in &dir.loaders {
            let file = format!("{tail}{suffix}");
            if cache.contains(file.as_str())? {
                let full = path_join(&[path, &file]);
                if is_file(&full) {
                    return Ok(Search::Found {
                        loader: loader.clone_ref(py),
                        source: *source,
                        path: full,
                        package: None,
                    });
                }
            }
        }
        Ok(if is_namespace {
            Search::Portion
        } else {
            Search::Miss
        })
    }

    /// The names of directory `path` as its pack recorded them, when they were recorded at
    /// the mtime and ctime `exact` (`spec/FORMAT.md` §12: the listing is trusted only for
    /// the very stamp it was taken at, and the compiler records none within the file
    /// system's timestamp resolution of a change).
    fn recorded_listing<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        exact: Stamp,
    ) -> Option<Bound<'py, PySet>> {
        let entry = self.pack_for(py, path)?;
        let rel = if path == entry.root {
            ""
        } else {
            path.strip_prefix(entry.root.as_str())?.strip_prefix('/')?
        };
        let pack = entry.pack.bind(py).get();
        let listing = pack.dirs().ok()??.get(rel)?;
        if (listing.mtime, listing.ctime) != exact {
            return None;
        }
        let names = PySet::empty(py).ok()?;
        for name in listing.names() {
            names.add(crate::ffi::raw::decode_fs(py, name).ok()?).ok()?;
        }
        self.counters().listings_recorded += 1;
        Some(names)
    }

    /// `FileFinder._fill_cache` (POSIX): the directory's names, or none when it cannot be
    /// listed.
    fn fill_cache(&self, py: Python<'_>, finder: &Bound<'_, PyAny>, dir: &str) -> PyResult<()> {
        self.counters().listings_taken += 1;
        let names = PySet::empty(py)?;
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    // As os.listdir decodes names: the filesystem encoding with
                    // surrogateescape.
                    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
                    names.add(crate::ffi::raw::decode_fs(py, bytes)?)?;
                }
            }
            Err(e) => match e.kind() {
                std::io::ErrorKind::NotFound
                | std::io::ErrorKind::PermissionDenied
                | std::io::ErrorKind::NotADirectory => {}
                _ => return Err(e.into()),
            },
        }
        finder.setattr("_path_cache", names)
    }

    /// The loader and spec for a module found at `path` in `dir`.
    fn spec<'py>(
        &self,
        py: Python<'py>,
        fullname: &Bound<'py, PyString>,
        name: &str,
        dir: &Directory,
        found: Search,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Search::Found {
            loader,
            source,
            path,
            package,
        } = found
        else {
            unreachable!("spec() is called for a module found");
        };
        let o = &self.objects;
        let origin = PyString::new(py, &path);
        let mut note = None;
        let loader = if source {
            match self.served(py, name, dir, &path, &origin, package.is_some()) {
                Ok(served) => {
                    o.pack_loader
                        .bind(py)
                        .call1((fullname, &origin, Py::new(py, served)?))?
                }
                Err(reason) => {
                    note = reason;
                    loader.bind(py).call1((fullname, &origin))?
                }
            }
        } else {
            note = Some(format!(
                "not a source module ({})",
                loader.bind(py).getattr("__name__")?
            ));
            loader.bind(py).call1((fullname, &origin))?
        };
        if let Some(reason) = note {
            self.profile_reason(name, &reason);
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item("origin", &origin)?;
        let spec = o
            .module_spec
            .bind(py)
            .call((fullname, loader), Some(&kwargs))?;
        spec.setattr("_set_fileattr", true)?;
        if let Some(package) = package {
            spec.setattr("submodule_search_locations", PyList::new(py, [package])?)?;
        }
        if let Some(cached) = self.cached(py, &path)? {
            spec.setattr("_cached", cached)?;
        }
        Ok(spec)
    }

    /// What `ModuleSpec.cached` would compute for `path` (`_get_cached`): the `.pyc` path
    /// of a source, the path of a `.pyc`, nothing for an extension module.
    fn cached<'py>(&self, py: Python<'py>, path: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        if path.ends_with(".pyc") {
            return Ok(Some(PyString::new(py, path).into_any()));
        }
        if !path.ends_with(".py") {
            return Ok(None);
        }
        // `cache_from_source` reads `sys.pycache_prefix` at each call (3.10-3.13: `if
        // sys.pycache_prefix is not None:`), and `ModuleSpec.cached` calls it when first
        // read, so a prefix a program sets after start-up counts: read it now, not once at
        // install.
        if !self
            .objects
            .sys
            .bind(py)
            .getattr(intern!(py, "pycache_prefix"))?
            .is_none()
        {
            return Ok(Some(
                self.objects.cache_from_source.bind(py).call1((path,))?,
            ));
        }
        // `cache_from_source` (3.10-3.13): `head/__pycache__/base.TAG[.opt-N].pyc`.
        let (head, tail) = path.rsplit_once('/').unwrap_or(("", path));
        let base = tail.strip_suffix(".py").unwrap_or(tail);
        let base = if base.is_empty() { "py" } else { base };
        let opt = match self.config.target.optimize {
            0 => String::new(),
            n => format!(".opt-{n}"),
        };
        let file = format!("{base}.{}{opt}.pyc", self.config.target.cache_tag);
        Ok(Some(
            PyString::new(py, &path_join(&[head, "__pycache__", &file])).into_any(),
        ))
    }

    /// The pack that serves module `name` found at `path` in `dir`, and its record; else
    /// why not (counted as a fallback where a pack was involved).
    fn served(
        &self,
        py: Python<'_>,
        name: &str,
        dir: &Directory,
        path: &str,
        origin: &Bound<'_, PyString>,
        is_package: bool,
    ) -> Result<Served, Option<String>> {
        let Some(entry) = self.pack_for(py, package_root(&dir.path, name)) else {
            return Err(Some("no pack for its directory".into()));
        };
        let fallback = |reason: &str| {
            self.fallback(py, name, Some(&entry), reason);
            Err(Some(reason.to_owned()))
        };
        let Some(rel) = path
            .strip_prefix(entry.root.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return fallback("outside the packed directory");
        };
        let pack = entry.pack.bind(py).get();
        match pack.lookup(name) {
            Ok(Some((index, m))) if m.source_path() == rel && m.is_package() == is_package => {
                Ok(Served {
                    hook: Arc::clone(&self.me()),
                    entry: Arc::clone(&entry),
                    index,
                    name: name.to_owned(),
                    origin: origin.clone().unbind(),
                })
            }
            Ok(Some(_)) => {
                self.consider_refresh(py, &entry, Some(path));
                fallback("the pack holds another file for this name")
            }
            Ok(None) if !pack.index_intact() => {
                // A damaged lookup table hides modules: the pack is damaged, not the
                // module new (`spec/FORMAT.md` §8).
                self.damaged(py, &entry, name, "its lookup table (INDX) is damaged");
                fallback("damaged")
            }
            Ok(None) => {
                self.consider_refresh(py, &entry, Some(path));
                fallback("not in the pack")
            }
            Err(e) => {
                self.damaged(py, &entry, name, &e.to_string());
                fallback("damaged")
            }
        }
    }

    /// The pack serving directory `dir` (opened at most once per process).
    fn pack_for(&self, py: Python<'_>, dir: &str) -> Option<Arc<PackEntry>> {
        let t0 = self.profiling().then(Instant::now);
        let (entry, warnings, explanations) = {
            // Re-entered while the registry is busy (a collection running a finalizer that
            // imports, during the opening of a pack): no pack for this one import.
            let Ok(mut registry) = self.registry.try_lock() else {
                return None;
            };
            let entry = registry.entry_for(py, &self.config.target, self.config.verbose, dir);
            (
                entry,
                std::mem::take(&mut registry.pending_warnings),
                std::mem::take(&mut registry.pending_explanations),
            )
        };
        for w in warnings {
            self.write_stderr(py, &format!("ppyc: warning: {w}\n"));
        }
        for e in explanations {
            self.explain(py, &e);
        }
        if let Some(t0) = t0 {
            self.counters().open_ns += t0.elapsed().as_nanos() as u64;
        }
        entry
    }

    /// `find_spec` of the meta path finder.
    pub(crate) fn find_spec<'py>(
        &self,
        py: Python<'py>,
        fullname: &Bound<'py, PyString>,
        path: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        if !self.is_active() || self.config.verbosity >= 2 {
            return Ok(None);
        }
        // Under PPYC_PROFILE: the time opening packs is the `open` phase, not `find`.
        let t0 = self
            .profiling()
            .then(|| (Instant::now(), self.counters().open_ns));
        let Ok(name) = fullname.to_str() else {
            return Ok(None);
        };
        let tail = name.rsplit('.').next().unwrap_or(name);
        let entries = match path {
            Some(p) if !p.is_none() => p.clone(),
            _ => py.import("sys")?.getattr("path")?,
        };
        let cache = self.objects.path_importer_cache.bind(py);
        let mut result = None;
        for entry in entries.try_iter()? {
            let entry = entry?;
            if !entry.is_instance_of::<PyString>() {
                if entry.is_instance_of::<pyo3::types::PyBytes>() {
                    break; // 3.10/3.11 accept bytes entries: left to PathFinder
                }
                continue;
            }
            let finder = if entry.cast::<PyString>()?.to_str().is_ok_and(str::is_empty) {
                match self.objects.getcwd.bind(py).call0() {
                    Ok(cwd) => cache.get_item(&cwd)?,
                    Err(e) if e.is_instance_of::<PyFileNotFoundError>(py) => continue,
                    Err(e) => return Err(e),
                }
            } else {
                cache.get_item(&entry)?
            };
            let finder = match finder {
                Some(f) => f,
                None => self.objects.importer_for.bind(py).call1((&entry,))?,
            };
            if finder.is_none() {
                continue;
            }
            let Some(dir) = self.directory(py, &finder)? else {
                break; // another kind of finder: PathFinder searches, from the start
            };
            match self.search(py, &finder, &dir, tail)? {
                Search::Miss => {}
                Search::Portion => self.profile_reason(name, "not a source module (namespace)"),
                found @ Search::Found { .. } => {
                    result = Some(self.spec(py, fullname, name, &dir, found)?);
                    break;
                }
            }
        }
        if let Some((t0, open_before)) = t0 {
            let opening = self.counters().open_ns - open_before;
            let ns = (t0.elapsed().as_nanos() as u64).saturating_sub(opening);
            self.profile_phase(name, super::Phase::Find, ns);
        }
        Ok(result)
    }
}
