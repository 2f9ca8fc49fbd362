//! The import hook, natively (`spec/IMPORT.md`).
//!
//! [`install`] puts one meta path finder ([`Finder`]) into `sys.meta_path`, just before
//! the stock `PathFinder`. For a module that a stock `FileFinder` of the path would find,
//! it finds it itself ([`finder`]), with the same rules on the same directory cache, and
//! returns the spec that `FileFinder` would return; when the file is a source that the
//! pack of its directory holds ([`packs`]), the spec's loader is a `PackLoader`
//! (`python/ppyc/_loader.py`, a `SourceFileLoader`) whose `get_code` makes one call to
//! [`Served::code`]: freshness check and code from the image or the payload
//! (`crate::pack::Pack::load_module`). Everything else goes to `PathFinder`.
//!
//! Counters are kept here, for `ppyc.stats()`; per-module phase clocks only under
//! `PPYC_PROFILE`.

mod finder;
mod loader;
pub(crate) mod packs;
pub(crate) mod refresh;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyModule, PyString};

use crate::pack::{Check, HashPycs, Outcome};
use finder::Directory;
use packs::{PackEntry, Registry, Target};

/// The phases a module's import goes through in ppyc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Find,
    Check,
    Read,
    Unmarshal,
    Relocate,
    Bind,
    Exec,
}

impl Phase {
    const ALL: [Self; 7] = [
        Self::Find,
        Self::Check,
        Self::Read,
        Self::Unmarshal,
        Self::Relocate,
        Self::Bind,
        Self::Exec,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Find => "find",
            Self::Check => "check",
            Self::Read => "read",
            Self::Unmarshal => "unmarshal",
            Self::Relocate => "relocate",
            Self::Bind => "bind",
            Self::Exec => "exec",
        }
    }
}

/// What `PPYC_*` and the interpreter say, read once at install.
pub(crate) struct Config {
    pub(crate) check: Check,
    pub(crate) check_name: &'static str,
    pub(crate) hash_pycs: HashPycs,
    pub(crate) verbose: bool,
    /// `sys.flags.verbose`.
    pub(crate) verbosity: i64,
    pub(crate) target: Target,
    pub(crate) profile: bool,
    /// Background refreshes of stale packs (`refresh`).
    pub(crate) refresh: refresh::Settings,
}

/// Whether the `.pth` line asks for background refreshes (`ppyc enable
/// --no-auto-refresh` writes a line that says no).
static PTH_AUTO_REFRESH: AtomicBool = AtomicBool::new(true);

/// Python objects the hook uses on every import.
pub(crate) struct Objects {
    path_importer_cache: Py<PyDict>,
    /// `PathFinder._path_importer_cache`.
    importer_for: Py<PyAny>,
    file_finder: Py<PyAny>,
    source_loader: Py<PyAny>,
    /// `_get_supported_file_loaders()` as a `FileFinder` holds them in `_loaders`.
    stock_loaders: Py<PyAny>,
    module_spec: Py<PyAny>,
    pack_loader: Py<PyAny>,
    getcwd: Py<PyAny>,
    cache_from_source: Py<PyAny>,
    sys: Py<PyAny>,
}

/// One module's record under `PPYC_PROFILE`.
#[derive(Clone, Debug, Default)]
struct Record {
    served: bool,
    reason: Option<String>,
    mode: Option<&'static str>,
    phases: [u64; 7],
}

#[derive(Default)]
struct Counters {
    served: u64,
    served_image: u64,
    served_marshal: u64,
    bytes: u64,
    fallbacks: BTreeMap<String, u64>,
    time_ns: [u64; 7],
    /// Time spent deciding which pack serves a directory (opening packs).
    open_ns: u64,
    /// Directory caches filled from a pack's recorded listing.
    listings_recorded: u64,
    /// Directory caches filled by listing the directory.
    listings_taken: u64,
    /// Background refreshes started by this process.
    refreshes_started: u64,
}

/// The interpreter and the directory holding the `ppyc` package, for a refresh.
fn refresh_launcher(py: Python<'_>) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let sys = py.import("sys").map_err(|e| e.to_string())?;
    let python: String = sys
        .getattr("executable")
        .and_then(|e| e.extract())
        .unwrap_or_default();
    if python.is_empty() {
        return Err("sys.executable is empty".into());
    }
    let native: String = sys
        .getattr("modules")
        .and_then(|m| m.get_item("ppyc._native")?.getattr("__file__")?.extract())
        .map_err(|e| format!("where ppyc is installed is unknown ({e})"))?;
    let parent = std::path::Path::new(&native)
        .parent()
        .and_then(std::path::Path::parent)
        .ok_or("where ppyc is installed is unknown")?;
    Ok((python.into(), parent.to_path_buf()))
}

/// The finders the finder has seen, by address, each held (so that its address is not
/// reused while here) with its directory when it is a stock `FileFinder`.
pub(crate) type Directories = HashMap<usize, (Py<PyAny>, Option<Arc<Directory>>)>;

/// The hook of this process.
pub(crate) struct Hook {
    config: Config,
    objects: Objects,
    registry: Mutex<Registry>,
    directories: Mutex<Directories>,
    counters: Mutex<Counters>,
    profile: Option<Mutex<BTreeMap<String, Record>>>,
    active: AtomicBool,
    /// The `Arc` this hook lives in, for the `Served` objects it hands out.
    this: Weak<Hook>,
    /// The finder in `sys.meta_path`.
    finder: Mutex<Option<Py<Finder>>>,
}

static HOOK: Mutex<Option<Arc<Hook>>> = Mutex::new(None);

fn current() -> Option<Arc<Hook>> {
    HOOK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

impl Hook {
    fn me(&self) -> Arc<Hook> {
        self.this.upgrade().expect("the hook is alive while in use")
    }

    fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    fn profiling(&self) -> bool {
        self.profile.is_some()
    }

    fn write_stderr(&self, py: Python<'_>, text: &str) {
        // Never fails an import: a closed or broken stderr is ignored.
        let _ = py
            .import("sys")
            .and_then(|sys| sys.getattr("stderr")?.call_method1("write", (text,)));
    }

    fn explain(&self, py: Python<'_>, message: &str) {
        if self.config.verbose {
            self.write_stderr(py, &format!("ppyc: {message}\n"));
        }
    }

    fn record<R>(&self, name: &str, f: impl FnOnce(&mut Record) -> R) -> Option<R> {
        let profile = self.profile.as_ref()?;
        let mut records = profile
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(f(records.entry(name.to_owned()).or_default()))
    }

    fn profile_reason(&self, name: &str, reason: &str) {
        self.record(name, |r| {
            if !r.served {
                r.reason = Some(reason.to_owned());
            }
        });
    }

    fn profile_phase(&self, name: &str, phase: Phase, ns: u64) {
        if self.profiling() {
            self.counters().time_ns[phase as usize] += ns;
            self.record(name, |r| r.phases[phase as usize] += ns);
        }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A module left to the stock importer, with why.
    fn fallback(&self, py: Python<'_>, name: &str, entry: Option<&PackEntry>, reason: &str) {
        *self
            .counters()
            .fallbacks
            .entry(reason.to_owned())
            .or_insert(0) += 1;
        if let Some(entry) = entry {
            entry.count(|s| *s.fallbacks.entry(reason.to_owned()).or_insert(0) += 1);
        }
        self.profile_reason(name, reason);
        self.explain(py, &format!("{name}: stock import ({reason})"));
        if reason == "stale" {
            if let Some(entry) = entry {
                self.consider_refresh(py, entry, None);
            }
        }
    }

    /// A module of `entry`'s directory changed since the pack was built, or (`new_file`)
    /// the file found is not the pack's and may be new: at the first such module of a
    /// pack in this process, a background refresh of its directory is started if one is
    /// due (`refresh`, `spec/IMPORT.md` "Staying fresh"). Never fails an import.
    fn consider_refresh(&self, py: Python<'_>, entry: &PackEntry, new_file: Option<&str>) {
        let settings = &self.config.refresh;
        // Decided already in this process: no `stat` for the other modules of the pack.
        if !settings.enabled() || entry.refresh_considered.load(Ordering::Acquire) {
            return;
        }
        if let Some(path) = new_file {
            if !refresh::newer_than_pack(path, entry.written) {
                return;
            }
        }
        if entry.refresh_considered.swap(true, Ordering::AcqRel) {
            return;
        }
        let decision = match refresh_launcher(py) {
            Ok((python, package_parent)) => refresh::start(&refresh::Launch {
                python: &python,
                package_parent: &package_parent,
                root: std::path::Path::new(&entry.root),
                cache_tag: &self.config.target.cache_tag,
                optimize: self.config.target.optimize,
                pycache_prefix: self.config.target.pycache_prefix.as_deref(),
                interval: settings.interval,
            }),
            Err(why) => refresh::Decision::NotPossible(why),
        };
        let described = decision.describe();
        self.explain(
            py,
            &format!("background refresh of `{}`: {described}", entry.root),
        );
        if decision == refresh::Decision::Started {
            self.counters().refreshes_started += 1;
        }
        entry.count(|s| s.refresh = Some(described));
    }

    /// One damaged record or payload: that module falls back; the pack stays in use for
    /// the others (each is checked on its own), and the user hears about it once.
    fn damaged(&self, py: Python<'_>, entry: &PackEntry, name: &str, detail: &str) {
        self.damaged_then(
            py,
            entry,
            name,
            detail,
            "the stock importer is used instead",
        );
    }

    /// [`Hook::damaged`], saying what is done instead (`then`).
    fn damaged_then(
        &self,
        py: Python<'_>,
        entry: &PackEntry,
        name: &str,
        detail: &str,
        then: &str,
    ) {
        entry.count(|s| s.problems += 1);
        let first = {
            let mut registry = match self.registry.try_lock() {
                Ok(r) => r,
                Err(_) => return,
            };
            registry.first_warning(&entry.path)
        };
        if first {
            self.write_stderr(
                py,
                &format!(
                    "ppyc: warning: pack `{}` is damaged ({name}: {detail}); {then}\n",
                    entry.path
                ),
            );
        }
    }
}

/// The meta path finder in `sys.meta_path`.
#[pyclass(module = "ppyc._native", frozen)]
pub(crate) struct Finder {
    hook: Arc<Hook>,
}

#[pymethods]
impl Finder {
    /// The spec of a module that a stock `FileFinder` of the path would find (served from
    /// a pack where one holds it), or `None`: `PathFinder` then searches as without ppyc.
    #[pyo3(signature = (fullname, path=None, target=None))]
    fn find_spec<'py>(
        &self,
        py: Python<'py>,
        fullname: &Bound<'py, PyString>,
        path: Option<&Bound<'py, PyAny>>,
        target: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let _ = target; // FileFinder does not use it either
        self.hook.find_spec(py, fullname, path)
    }

    /// `importlib.invalidate_caches()`: which pack serves which directory is decided again
    /// (the `FileFinder` caches are `PathFinder.invalidate_caches`' to reset).
    fn invalidate_caches(&self) {
        self.hook
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .forget_directories();
        // Dropped after the lock is released: dropping a finder may run Python.
        let _forgotten = std::mem::take(&mut *self.hook.lock_dirs());
    }

    fn __repr__(&self) -> &'static str {
        "<ppyc import hook>"
    }
}

/// What a `PackLoader` holds: the pack and the record of its module.
#[pyclass(module = "ppyc._native", frozen)]
pub(crate) struct Served {
    hook: Arc<Hook>,
    entry: Arc<PackEntry>,
    index: usize,
    name: String,
    /// The file the record was matched with: the loader's `path` when the spec was made.
    origin: Py<PyString>,
}

/// What a served module's loader does.
pub(crate) enum Code<'py> {
    /// Returns this code.
    Loaded(Bound<'py, PyAny>),
    /// Runs the stock `get_code`.
    Stock,
    /// Compiles the source (only a digest saw that it changed, so its `.pyc` must not be
    /// trusted either).
    Recompile,
}

impl Served {
    /// The module's code (from `path`, the file the loader loads). Never fails: whatever
    /// goes wrong is a fallback to the stock loader, counted and explained.
    pub(crate) fn code_for<'py>(&self, py: Python<'py>, path: &Bound<'py, PyString>) -> Code<'py> {
        let hook = &self.hook;
        let name = self.name.as_str();
        // A loader whose `path` was changed since: the record was matched with another
        // file, so the stock loader loads this one.
        if !path.is(self.origin.bind(py))
            && path.to_str().ok() != self.origin.bind(py).to_str().ok()
        {
            hook.fallback(py, name, Some(&self.entry), "the loader's path was changed");
            return Code::Stock;
        }
        let pack = self.entry.pack.bind(py).get();
        let outcome = pack.load_module(
            py,
            self.index,
            name,
            path,
            hook.config.check,
            hook.config.hash_pycs,
        );
        match outcome {
            Ok(Outcome::Loaded(loaded, check_ns)) => {
                let mode = if loaded.image { "image" } else { "marshal" };
                {
                    let mut c = hook.counters();
                    c.served += 1;
                    c.bytes += loaded.bytes as u64;
                    if loaded.image {
                        c.served_image += 1;
                    } else {
                        c.served_marshal += 1;
                    }
                }
                self.entry.count(|s| {
                    s.served += 1;
                    if loaded.image {
                        s.served_image += 1;
                    } else {
                        s.served_marshal += 1;
                    }
                    if let Some(note) = &loaded.image_problem {
                        *s.images_not_used.entry(note.clone()).or_insert(0) += 1;
                    }
                });
                if loaded.image_damaged {
                    // Served correctly from its payload, but the pack is damaged: said once.
                    let detail = loaded.image_problem.as_deref().unwrap_or("its image");
                    hook.damaged_then(
                        py,
                        &self.entry,
                        name,
                        detail,
                        "its code is loaded from its marshalled payload instead",
                    );
                }
                if hook.profiling() {
                    let p = loaded.phases;
                    hook.profile_phase(name, Phase::Check, check_ns);
                    hook.profile_phase(name, Phase::Read, p.read);
                    if loaded.image {
                        hook.profile_phase(name, Phase::Relocate, p.load);
                        hook.profile_phase(name, Phase::Bind, p.bind);
                    } else {
                        hook.profile_phase(name, Phase::Unmarshal, p.load);
                    }
                    hook.record(name, |r| {
                        r.served = true;
                        r.reason = None;
                        r.mode = Some(mode);
                    });
                }
                if hook.config.verbosity > 0 {
                    hook.write_stderr(
                        py,
                        &format!(
                            "# code object from ppyc pack {:?} for {:?}\n",
                            self.entry.path,
                            path.to_string_lossy()
                        ),
                    );
                }
                hook.explain(
                    py,
                    &format!("{name}: served from `{}` ({mode})", self.entry.path),
                );
                Code::Loaded(loaded.code)
            }
            Ok(Outcome::Stale {
                recompile,
                check_ns,
            }) => {
                hook.profile_phase(name, Phase::Check, check_ns);
                hook.fallback(py, name, Some(&self.entry), "stale");
                if recompile {
                    Code::Recompile
                } else {
                    Code::Stock
                }
            }
            Ok(Outcome::Damaged(detail, _)) => {
                hook.damaged(py, &self.entry, name, &detail);
                hook.fallback(py, name, Some(&self.entry), "damaged");
                Code::Stock
            }
            Err(e) => {
                hook.fallback(py, name, Some(&self.entry), &format!("internal error: {e}"));
                Code::Stock
            }
        }
    }

    /// Adds a module's execution time (under `PPYC_PROFILE`).
    pub(crate) fn record_exec(&self, ns: u64) {
        self.hook.profile_phase(&self.name, Phase::Exec, ns);
    }
}

/// The environment variable `name`, unless Python ignores its environment (`-E`, `-I`):
/// ppyc's variables follow Python's rule for its own.
pub(crate) fn env_var(py: Python<'_>, name: &str) -> Option<String> {
    let ignore = py
        .import("sys")
        .and_then(|s| {
            s.getattr("flags")?
                .getattr("ignore_environment")?
                .is_truthy()
        })
        .unwrap_or(false);
    if ignore {
        return None;
    }
    std::env::var(name).ok()
}

/// Whether `PPYC_DISABLE` asks for the stock importer in this process.
pub(crate) fn disabled_by_environment(py: Python<'_>) -> bool {
    env_var(py, "PPYC_DISABLE").is_some_and(|v| !v.is_empty() && v != "0")
}

/// What this interpreter expects of a pack: its cache tag, `.pyc` magic and `-O` level.
pub(crate) fn target(py: Python<'_>) -> PyResult<Target> {
    let sys = py.import("sys")?;
    let magic: Vec<u8> = py
        .import("_frozen_importlib_external")?
        .getattr("MAGIC_NUMBER")?
        .extract()?;
    Ok(Target {
        cache_tag: sys
            .getattr("implementation")?
            .getattr("cache_tag")?
            .extract()
            .unwrap_or_default(),
        magic: magic.try_into().unwrap_or_default(),
        optimize: sys.getattr("flags")?.getattr("optimize")?.extract()?,
        pycache_prefix: sys.getattr("pycache_prefix")?.extract()?,
    })
}

/// What runs at optimisation level `optimize` of this interpreter expect of a pack
/// (`None`: this run's level); a level other than 0, 1 or 2 is a `ValueError`.
fn target_at(py: Python<'_>, optimize: Option<u8>) -> PyResult<Target> {
    let mut t = target(py)?;
    if let Some(level) = optimize {
        if level > 2 {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "invalid optimisation level {level} (0, 1 or 2)"
            )));
        }
        t.optimize = level;
    }
    Ok(t)
}

/// The packs that may serve `directory` itself for optimisation level `optimize`
/// (default: this process's): those that exist in the order they are tried (the one written
/// last first, `spec/FORMAT.md` §2 "Precedence"), then the others.
pub(crate) fn pack_candidates(
    py: Python<'_>,
    directory: &str,
    optimize: Option<u8>,
) -> PyResult<Vec<String>> {
    let t = target_at(py, optimize)?;
    let c = ppyc_format::PackCandidates::of(
        std::path::Path::new(directory),
        &t.cache_tag,
        t.optimize,
        t.pycache_prefix.as_deref(),
    );
    let mut out: Vec<std::path::PathBuf> = c.existing().into_iter().map(|(p, _)| p).collect();
    for p in std::iter::once(c.local.as_path()).chain(c.cache_pack()) {
        if !out.iter().any(|o| o == p) {
            out.push(p.to_path_buf());
        }
    }
    Ok(out
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect())
}

/// The modules `ppyc compile` would pack in `directory` (`excludes` as its `--exclude`), as
/// `(name, source path)`, for `ppyc status` to name those a pack lacks.
pub(crate) fn walk_modules(
    py: Python<'_>,
    directory: &str,
    excludes: Vec<String>,
) -> PyResult<Vec<(String, String)>> {
    let extension_suffixes: Vec<String> = py
        .import("importlib.machinery")?
        .getattr("EXTENSION_SUFFIXES")?
        .extract()?;
    let options = ppyc_compiler::walk::WalkOptions {
        extension_suffixes,
        excludes,
    };
    let dir = std::path::PathBuf::from(directory);
    let (modules, _) = py.detach(|| ppyc_compiler::walk::walk(&dir, &options));
    Ok(modules
        .into_iter()
        .map(|m| (m.name, m.source.to_string_lossy().into_owned()))
        .collect())
}

/// Where the state of the background refresh of `directory`'s pack at `optimize`
/// (default: this process's) is kept: a path to which `.json`, `.log`, `.lock` and
/// `.stamp` are appended (`spec/IMPORT.md` "Staying fresh").
pub(crate) fn refresh_state_base(
    py: Python<'_>,
    directory: &str,
    optimize: Option<u8>,
) -> PyResult<Option<String>> {
    let t = target_at(py, optimize)?;
    Ok(
        refresh::state_base(std::path::Path::new(directory), &t.cache_tag, t.optimize)
            .map(|p| p.to_string_lossy().into_owned()),
    )
}

/// `ppyc status`: the pack at `path` with the rules the hook applies, `(pack or None,
/// None)` when usable, else `(pack or None, why not)`.
pub(crate) fn check_pack_at(
    py: Python<'_>,
    path: &str,
    directory: Option<&str>,
    optimize: Option<u8>,
) -> PyResult<(Option<Py<crate::pack::Pack>>, Option<String>)> {
    let t = target_at(py, optimize)?;
    let st = match std::fs::metadata(path) {
        Ok(st) => st,
        Err(e) => return Ok((None, Some(format!("it cannot be read ({e})")))),
    };
    Ok(match packs::check_pack(py, &t, path, &st, directory) {
        Ok(pack) => (Some(pack), None),
        Err((pack, reason)) => (pack, Some(reason)),
    })
}

fn config(py: Python<'_>) -> PyResult<(Config, Option<String>)> {
    let sys = py.import("sys")?;
    let flags = sys.getattr("flags")?;
    let verbose = env_var(py, "PPYC_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0");
    let requested = env_var(py, "PPYC_CHECK").unwrap_or_default();
    let (check, check_name, warning) = match requested.as_str() {
        "" | "timestamp" => (Check::Timestamp, "timestamp", None),
        "hash" => (Check::Hash, "hash", None),
        "unchecked" => (Check::Unchecked, "unchecked", None),
        other => (
            Check::Timestamp,
            "timestamp",
            Some(format!(
                "ppyc: warning: PPYC_CHECK={other:?} is not one of timestamp, hash, unchecked; \
                 modules are checked by timestamp\n"
            )),
        ),
    };
    let hash_pycs = match py
        .import("_imp")?
        .getattr("check_hash_based_pycs")?
        .extract::<String>()?
        .as_str()
    {
        "always" => HashPycs::Always,
        "never" => HashPycs::Never,
        _ => HashPycs::Default,
    };
    let refresh_off = if !PTH_AUTO_REFRESH.load(Ordering::Relaxed) {
        Some("`ppyc enable --no-auto-refresh`".to_owned())
    } else {
        env_var(py, "PPYC_AUTO_REFRESH")
            .filter(|v| ["0", "off", "no", "false"].contains(&v.to_ascii_lowercase().as_str()))
            .map(|v| format!("PPYC_AUTO_REFRESH={v}"))
    };
    let interval = env_var(py, "PPYC_REFRESH_INTERVAL")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        .unwrap_or(refresh::DEFAULT_INTERVAL);
    let config = Config {
        refresh: refresh::Settings {
            off: refresh_off,
            interval,
        },
        check,
        check_name,
        hash_pycs,
        verbose,
        verbosity: flags.getattr("verbose")?.extract()?,
        target: target(py)?,
        profile: env_var(py, "PPYC_PROFILE").is_some_and(|p| !p.is_empty()),
    };
    Ok((config, warning))
}

/// Installs the hook in this process (idempotent). Returns whether it is active: `False`
/// under `PPYC_DISABLE`.
pub(crate) fn install(py: Python<'_>) -> PyResult<bool> {
    let mut slot = HOOK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if disabled_by_environment(py) {
        if env_var(py, "PPYC_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0") {
            let _ = py.import("sys").and_then(|sys| {
                sys.getattr("stderr")?
                    .call_method1("write", ("ppyc: disabled by PPYC_DISABLE\n",))
            });
        }
        return Ok(false);
    }
    if let Some(hook) = slot.as_ref() {
        if hook.is_active() {
            return Ok(true);
        }
    }
    let (config, warning) = config(py)?;
    let external = py.import("_frozen_importlib_external")?;
    let bootstrap = py.import("_frozen_importlib")?;
    let sys = py.import("sys")?;
    let path_finder = external.getattr("PathFinder")?;
    let file_finder = external.getattr("FileFinder")?;
    // What a stock FileFinder's `_loaders` holds (FileFinder.__init__: (suffix, loader)).
    let stock_loaders = PyList::empty(py);
    for details in external
        .call_method0("_get_supported_file_loaders")?
        .try_iter()?
    {
        let (loader, suffixes): (Bound<'_, PyAny>, Bound<'_, PyAny>) = details?.extract()?;
        for suffix in suffixes.try_iter()? {
            stock_loaders.append((suffix?, &loader))?;
        }
    }
    let objects = Objects {
        path_importer_cache: sys
            .getattr("path_importer_cache")?
            .cast_into::<PyDict>()?
            .unbind(),
        importer_for: path_finder.getattr("_path_importer_cache")?.unbind(),
        file_finder: file_finder.unbind(),
        source_loader: external.getattr("SourceFileLoader")?.unbind(),
        stock_loaders: stock_loaders.into_any().unbind(),
        module_spec: bootstrap.getattr("ModuleSpec")?.unbind(),
        pack_loader: {
            let classes = loader::classes(py, &external.getattr("SourceFileLoader")?)?;
            if config.profile {
                classes.profiling
            } else {
                classes.plain
            }
        },
        getcwd: py.import("posix")?.getattr("getcwd")?.unbind(),
        cache_from_source: external.getattr("cache_from_source")?.unbind(),
        sys: sys.clone().into_any().unbind(),
    };
    let profile = config.profile.then(|| {
        // Modules imported before the hook was installed are on record too, with why.
        let mut records = BTreeMap::new();
        if let Ok(modules) = sys.getattr("modules") {
            if let Ok(keys) = modules.call_method0("keys") {
                for key in keys.try_iter().into_iter().flatten().flatten() {
                    if let Ok(name) = key.extract::<String>() {
                        records.insert(
                            name,
                            Record {
                                reason: Some("imported before ppyc started".into()),
                                ..Record::default()
                            },
                        );
                    }
                }
            }
        }
        Mutex::new(records)
    });
    let hook = Arc::new_cyclic(|this| Hook {
        config,
        objects,
        registry: Mutex::new(Registry::default()),
        directories: Mutex::new(HashMap::new()),
        counters: Mutex::new(Counters::default()),
        profile,
        active: AtomicBool::new(true),
        this: this.clone(),
        finder: Mutex::new(None),
    });
    let finder = Py::new(
        py,
        Finder {
            hook: Arc::clone(&hook),
        },
    )?;
    let meta_path = sys.getattr("meta_path")?.cast_into::<PyList>()?;
    let position = meta_path
        .iter()
        .position(|f| f.is(&path_finder))
        .unwrap_or(meta_path.len());
    meta_path.insert(position, &finder)?;
    *hook
        .finder
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(finder);
    if let Some(w) = warning {
        hook.write_stderr(py, &w);
    }
    hook.explain(
        py,
        &format!(
            "hook installed (check={}, optimize={})",
            hook.config.check_name, hook.config.target.optimize
        ),
    );
    let profiling = hook.profiling();
    *slot = Some(hook);
    drop(slot);
    if profiling {
        register_profile_writer(py)?;
    }
    Ok(true)
}

/// Registers, once per process, the `atexit` function that writes the `PPYC_PROFILE`
/// records.
fn register_profile_writer(py: Python<'_>) -> PyResult<()> {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if !REGISTERED.swap(true, Ordering::Relaxed) {
        let writer = pyo3::wrap_pyfunction!(write_profile, py)?;
        py.import("atexit")?.call_method1("register", (writer,))?;
    }
    Ok(())
}

/// A JSON string literal.
fn json_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// At exit: one JSON line per module this process looked for through ppyc, appended to
/// the `PPYC_PROFILE` file (`ppyc importtime` reads it; `spec/IMPORTTIME.md`). Never fails
/// the program's exit: a file that cannot be written is reported on stderr.
#[pyfunction]
fn write_profile(py: Python<'_>) {
    let Some(path) = env_var(py, "PPYC_PROFILE").filter(|p| !p.is_empty()) else {
        return;
    };
    let Some(hook) = current() else {
        return;
    };
    let Some(profile) = &hook.profile else {
        return;
    };
    let records = profile
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if records.is_empty() {
        return;
    }
    let pid = std::process::id();
    let mut out = String::new();
    for (name, r) in &records {
        out.push_str(&format!("{{\"pid\": {pid}, \"module\": "));
        json_str(&mut out, name);
        out.push_str(&format!(", \"served\": {}", r.served));
        if let Some(reason) = &r.reason {
            out.push_str(", \"reason\": ");
            json_str(&mut out, reason);
        }
        if let Some(mode) = r.mode {
            out.push_str(&format!(", \"mode\": \"{mode}\""));
        }
        for p in Phase::ALL {
            let ns = r.phases[p as usize];
            if ns > 0 {
                out.push_str(&format!(", \"{}_ns\": {ns}", p.name()));
            }
        }
        out.push_str("}\n");
    }
    let written = py.detach(|| {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut f| f.write_all(out.as_bytes()))
    });
    if let Err(e) = written {
        hook.write_stderr(
            py,
            &format!("ppyc: warning: cannot write PPYC_PROFILE `{path}` ({e})\n"),
        );
    }
}

/// The `ppyc.pth` line's entry point: this module was loaded by path (`_imp.create_dynamic`)
/// without its package, the cheapest start-up there is; it is made a regular import here
/// (in `sys.modules` with its spec, so that `import ppyc._native` finds it) and the hook is
/// installed. Nothing here may break start-up: a failure is reported on stderr and the
/// stock importer runs.
pub(crate) fn activate(
    py: Python<'_>,
    module: &Bound<'_, PyModule>,
    path: &str,
    started: u64,
    auto_refresh: bool,
) {
    PTH_AUTO_REFRESH.store(auto_refresh, Ordering::Relaxed);
    let adopted = (|| -> PyResult<()> {
        let name = "ppyc._native";
        let sys = py.import("sys")?;
        let modules = sys.getattr("modules")?;
        if modules.get_item(name).is_err() {
            modules.set_item(name, module)?;
        }
        if module.getattr("__spec__").map_or(true, |s| s.is_none()) {
            let loader = py
                .import("_frozen_importlib_external")?
                .getattr("ExtensionFileLoader")?
                .call1((name, path))?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("origin", path)?;
            let spec = py
                .import("_frozen_importlib")?
                .getattr("ModuleSpec")?
                .call((name, &loader), Some(&kwargs))?;
            spec.setattr("has_location", true)
                .or_else(|_| spec.setattr("_set_fileattr", true))?;
            module.setattr("__spec__", spec)?;
            module.setattr("__loader__", loader)?;
            module.setattr("__package__", "ppyc")?;
            module.setattr("__file__", path)?;
        }
        Ok(())
    })();
    let result = adopted.and_then(|()| install(py));
    if started > 0 {
        // `-X importtime`'s own line (`Python/import.c`: "import time: %9ld | %10ld | %*s%s",
        // two spaces per nesting level): this runs inside the import of `site`, level 1.
        let now = py
            .import("time")
            .and_then(|t| t.call_method0("perf_counter_ns")?.extract::<u64>());
        if let Ok(now) = now {
            let us = now.saturating_sub(started) / 1000;
            let _ = py.import("sys").and_then(|sys| {
                sys.getattr("stderr")?.call_method1(
                    "write",
                    (format!(
                        "import time: {us:>9} | {us:>10} |   ppyc._native\n"
                    ),),
                )
            });
        }
    }
    if let Err(e) = result {
        let _ = py.import("sys").and_then(|sys| {
            sys.getattr("stderr")?.call_method1(
                "write",
                (format!(
                    "ppyc: warning: import hook not installed ({e}); the stock importer is used\n"
                ),),
            )
        });
    }
}

/// Removes the hook from this process; modules already imported stay as they are.
pub(crate) fn uninstall(py: Python<'_>) -> PyResult<()> {
    let hook = HOOK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some(hook) = hook else {
        return Ok(());
    };
    hook.active.store(false, Ordering::Relaxed);
    let finder = hook
        .finder
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(finder) = finder {
        let meta_path = py
            .import("sys")?
            .getattr("meta_path")?
            .cast_into::<PyList>()?;
        if let Some(i) = meta_path.iter().position(|f| f.is(finder.bind(py))) {
            meta_path.del_item(i)?;
        }
    }
    Ok(())
}

/// Whether the hook of this process measures phases (`PPYC_PROFILE`).
pub(crate) fn profiling() -> bool {
    current().is_some_and(|hook| hook.profiling())
}

/// Whether the hook is active in this process.
pub(crate) fn installed(py: Python<'_>) -> bool {
    current().is_some_and(|hook| {
        hook.is_active()
            && hook
                .finder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .is_some_and(|f| {
                    py.import("sys")
                        .and_then(|s| s.getattr("meta_path")?.contains(f.bind(py)))
                        .unwrap_or(false)
                })
    })
}

/// `ppyc.stats()`.
pub(crate) fn stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("installed", installed(py))?;
    let Some(hook) = current() else {
        d.set_item("mode", py.None())?;
        d.set_item("check", "timestamp")?;
        for (k, v) in [("served", 0u64), ("bytes", 0)] {
            d.set_item(k, v)?;
        }
        let by_mode = PyDict::new(py);
        by_mode.set_item("image", 0)?;
        by_mode.set_item("marshal", 0)?;
        d.set_item("served_by_mode", by_mode)?;
        d.set_item("fallbacks", PyDict::new(py))?;
        let listings = PyDict::new(py);
        listings.set_item("recorded", 0)?;
        listings.set_item("listed", 0)?;
        d.set_item("listings", listings)?;
        let refresh = PyDict::new(py);
        refresh.set_item("enabled", false)?;
        refresh.set_item("off", "the hook is not installed")?;
        refresh.set_item("interval", refresh::DEFAULT_INTERVAL.as_secs_f64())?;
        refresh.set_item("started", 0)?;
        d.set_item("auto_refresh", refresh)?;
        let times = PyDict::new(py);
        for p in Phase::ALL {
            times.set_item(p.name(), 0)?;
        }
        times.set_item("open", 0)?;
        d.set_item("time_ns", times)?;
        d.set_item("packs", PyList::empty(py))?;
        return Ok(d);
    };
    let (usable, refused) = {
        let r = hook
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (r.usable.clone(), r.refused.clone())
    };
    let modes: std::collections::BTreeSet<&str> = usable.iter().map(|e| e.mode).collect();
    match modes.len() {
        0 => d.set_item("mode", py.None())?,
        1 => d.set_item("mode", *modes.iter().next().unwrap_or(&"marshal"))?,
        _ => d.set_item("mode", "mixed")?,
    }
    d.set_item("check", hook.config.check_name)?;
    {
        let c = hook.counters();
        d.set_item("served", c.served)?;
        let by_mode = PyDict::new(py);
        by_mode.set_item("image", c.served_image)?;
        by_mode.set_item("marshal", c.served_marshal)?;
        d.set_item("served_by_mode", by_mode)?;
        d.set_item("bytes", c.bytes)?;
        d.set_item("fallbacks", c.fallbacks.clone())?;
        let listings = PyDict::new(py);
        listings.set_item("recorded", c.listings_recorded)?;
        listings.set_item("listed", c.listings_taken)?;
        d.set_item("listings", listings)?;
        let refresh = PyDict::new(py);
        let settings = &hook.config.refresh;
        refresh.set_item("enabled", settings.enabled())?;
        refresh.set_item("off", settings.off.as_deref())?;
        refresh.set_item("interval", settings.interval.as_secs_f64())?;
        refresh.set_item("started", c.refreshes_started)?;
        d.set_item("auto_refresh", refresh)?;
        let times = PyDict::new(py);
        for p in Phase::ALL {
            times.set_item(p.name(), c.time_ns[p as usize])?;
        }
        times.set_item("open", c.open_ns)?;
        d.set_item("time_ns", times)?;
        d.set_item("profiling", hook.profiling())?;
    }
    let packs = PyList::empty(py);
    for e in &usable {
        packs.append(packs::entry_stats(py, e)?)?;
    }
    for r in &refused {
        let p = PyDict::new(py);
        p.set_item("path", &r.path)?;
        p.set_item("root", &r.root)?;
        p.set_item("usable", false)?;
        p.set_item("reason", &r.reason)?;
        packs.append(p)?;
    }
    d.set_item("packs", packs)?;
    Ok(d)
}

/// The `PPYC_PROFILE` records of this process: one dict per module it looked for.
pub(crate) fn profile_records(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let out = PyList::empty(py);
    let Some(hook) = current() else {
        return Ok(out);
    };
    let Some(profile) = &hook.profile else {
        return Ok(out);
    };
    let records = profile
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for (name, r) in records {
        let d = PyDict::new(py);
        d.set_item("module", name)?;
        d.set_item("served", r.served)?;
        if let Some(reason) = &r.reason {
            d.set_item("reason", reason)?;
        }
        if let Some(mode) = r.mode {
            d.set_item("mode", mode)?;
        }
        for p in Phase::ALL {
            let ns = r.phases[p as usize];
            if ns > 0 || (p == Phase::Find && r.phases[p as usize] > 0) {
                d.set_item(format!("{}_ns", p.name()), ns)?;
            }
        }
        out.append(d)?;
    }
    Ok(out)
}

/// Measures a served module's execution (the profiling loader's `exec_module`).
pub(crate) fn now_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}
