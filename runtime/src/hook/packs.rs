//! Which pack serves a directory, the rules a pack must pass before it is used
//! (`spec/IMPORT.md`, "Which pack serves a directory"), and each pack's counters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::pack::Pack;

/// What the running interpreter expects of a pack.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) cache_tag: String,
    pub(crate) magic: [u8; 4],
    pub(crate) optimize: u8,
    /// `sys.pycache_prefix` when the hook started: where the local packs are
    /// (`spec/FORMAT.md` §2).
    pub(crate) pycache_prefix: Option<std::path::PathBuf>,
}

/// Counters of one pack in this process.
#[derive(Debug, Default)]
pub(crate) struct PackStats {
    pub(crate) served: u64,
    pub(crate) served_image: u64,
    pub(crate) served_marshal: u64,
    pub(crate) fallbacks: BTreeMap<String, u64>,
    pub(crate) images_not_used: BTreeMap<String, u64>,
    pub(crate) problems: u64,
    /// What became of the background refresh this process considered.
    pub(crate) refresh: Option<String>,
}

/// A usable pack and the directory it packs.
pub(crate) struct PackEntry {
    pub(crate) pack: Py<Pack>,
    pub(crate) path: String,
    pub(crate) root: String,
    pub(crate) modules: usize,
    pub(crate) mode: &'static str,
    pub(crate) mode_reason: Option<String>,
    pub(crate) stats: Mutex<PackStats>,
    /// When the generation was written (the modification time of its delta, else of the
    /// pack file).
    pub(crate) written: Option<std::time::SystemTime>,
    /// The delta completing the pack, if any (`spec/FORMAT.md` §13).
    pub(crate) delta: Option<String>,
    /// Whether this process already considered a background refresh of it.
    pub(crate) refresh_considered: std::sync::atomic::AtomicBool,
}

impl PackEntry {
    pub(crate) fn count(&self, f: impl FnOnce(&mut PackStats)) {
        f(&mut self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }
}

/// A pack that was found and refused, for `stats()` and `ppyc status`.
#[derive(Clone, Debug)]
pub(crate) struct Refused {
    pub(crate) path: String,
    pub(crate) root: String,
    pub(crate) reason: String,
}

/// Every pack this process looked at, and which serves each directory.
#[derive(Default)]
pub(crate) struct Registry {
    /// Directory (as `FileFinder.path` holds it) -> the pack serving it.
    dirs: HashMap<String, Option<Arc<PackEntry>>>,
    /// Pack path -> the usable pack opened from it (`None`: refused or absent).
    by_path: HashMap<String, Option<Arc<PackEntry>>>,
    /// In the order they were opened.
    pub(crate) usable: Vec<Arc<PackEntry>>,
    pub(crate) refused: Vec<Refused>,
    /// Warnings not yet written (written by the caller once the lock is released).
    pub(crate) pending_warnings: Vec<String>,
    warned: HashSet<String>,
    /// Decisions to explain under `PPYC_VERBOSE`.
    pub(crate) pending_explanations: Vec<String>,
}

/// Whether `name` is a Python identifier as `str.isidentifier` decides for a directory
/// name (a package directory or a namespace portion).
fn identifier(name: &str) -> bool {
    ppyc_compiler::walk::is_identifier(name)
}

impl Registry {
    pub(crate) fn forget_directories(&mut self) {
        self.dirs.clear();
    }

    /// Whether this is the first warning about the pack at `path` in this process.
    pub(crate) fn first_warning(&mut self, path: &str) -> bool {
        self.warned.insert(path.to_owned())
    }

    fn warn_once(&mut self, key: &str, message: String) {
        if self.warned.insert(key.to_owned()) {
            self.pending_warnings.push(message);
        }
    }

    /// The pack that serves `directory` (`spec/IMPORT.md`): its own pack in the tree; else,
    /// when `directory` lies in a packed tree below a path of identifiers (a package
    /// directory or a namespace portion), that tree's pack; else its own pack in the user
    /// cache.
    pub(crate) fn entry_for(
        &mut self,
        py: Python<'_>,
        target: &Target,
        verbose: bool,
        directory: &str,
    ) -> Option<Arc<PackEntry>> {
        if let Some(found) = self.dirs.get(directory) {
            return found.clone();
        }
        let dir = Path::new(directory);
        let candidates = ppyc_format::PackCandidates::of(
            dir,
            &target.cache_tag,
            target.optimize,
            target.pycache_prefix.as_deref(),
        );
        let mut entry = None;
        // Its own packs, the one written last first (`spec/FORMAT.md` §2 "Precedence");
        // a user-cache pack here only beside an in-tree one, else after the walk up.
        let own = candidates.existing();
        let has_in_tree = own.iter().any(|(p, _)| *p == candidates.local);
        if has_in_tree {
            for (path, _) in &own {
                entry = self.open_candidate(py, target, verbose, &candidates, path, directory);
                if entry.is_some() {
                    break;
                }
            }
        }
        if entry.is_none() {
            let (mut child, mut parent) = (dir, dir.parent());
            while let Some(up) = parent {
                let name = child.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if !identifier(name) {
                    break;
                }
                if let Some(found) = self.entry_for(py, target, verbose, &up.to_string_lossy()) {
                    entry = Some(found);
                    break;
                }
                (child, parent) = (up, up.parent());
            }
        }
        if entry.is_none() && !has_in_tree {
            if let Some(cached) = candidates.cache_pack() {
                entry = self.open_candidate(py, target, verbose, &candidates, cached, directory);
            }
        }
        self.dirs.insert(directory.to_owned(), entry.clone());
        entry
    }

    /// One of the packs of `directory` itself: the in-tree pack, or the user-cache pack
    /// under the rules for it.
    fn open_candidate(
        &mut self,
        py: Python<'_>,
        target: &Target,
        verbose: bool,
        candidates: &ppyc_format::PackCandidates,
        path: &Path,
        directory: &str,
    ) -> Option<Arc<PackEntry>> {
        match &candidates.cache {
            Some((cache, cached)) if cached == path => self.open_cached(
                py,
                target,
                verbose,
                cache,
                &path.to_string_lossy(),
                directory,
            ),
            _ => self.open(py, target, verbose, &path.to_string_lossy(), directory),
        }
    }

    /// A pack in the user cache: used only when it and the cache directory belong to the
    /// running user and nobody else can write them (`spec/SECURITY.md`).
    fn open_cached(
        &mut self,
        py: Python<'_>,
        target: &Target,
        verbose: bool,
        cache: &Path,
        path: &str,
        root: &str,
    ) -> Option<Arc<PackEntry>> {
        let Ok(st) = std::fs::metadata(path) else {
            return None;
        };
        let me = crate::ffi::raw::effective_uid();
        let cache_ok =
            std::fs::metadata(cache).is_ok_and(|c| c.uid() == me && c.mode() & 0o022 == 0);
        if st.uid() != me || !cache_ok {
            self.refuse(
                path,
                root,
                "it is in a user cache that does not belong to this user, or that others can write"
                    .into(),
            );
            return None;
        }
        self.open(py, target, verbose, path, root)
    }

    fn refuse(&mut self, path: &str, root: &str, reason: String) {
        self.warn_once(
            path,
            format!("ignoring pack `{path}`: {reason}; the stock importer is used instead"),
        );
        self.refused.push(Refused {
            path: path.to_owned(),
            root: root.to_owned(),
            reason,
        });
        self.by_path.insert(path.to_owned(), None);
    }

    /// Opens the pack at `path` for directory `root`, or says why not (`None`).
    fn open(
        &mut self,
        py: Python<'_>,
        target: &Target,
        verbose: bool,
        path: &str,
        root: &str,
    ) -> Option<Arc<PackEntry>> {
        if let Some(known) = self.by_path.get(path) {
            return known.clone();
        }
        let Ok(st) = std::fs::metadata(path) else {
            return None; // no pack here: nothing to say
        };
        match check_pack(py, target, path, &st, Some(root)) {
            Ok(pack) => {
                let (mode, mode_reason) = {
                    let p = pack.bind(py).get();
                    let m = p.mode(py);
                    (m.name(), m.reason().map(str::to_owned))
                };
                let (modules, delta_path, delta_problem, delta_written) = {
                    let p = pack.bind(py).get();
                    let delta = p.delta();
                    (
                        p.len(),
                        delta.and_then(|d| d.path().map(|p| p.to_string_lossy().into_owned())),
                        p.delta_problem().map(str::to_owned),
                        delta
                            .and_then(|d| d.file_metadata())
                            .and_then(Result::ok)
                            .and_then(|m| m.modified().ok()),
                    )
                };
                if let Some(why) = delta_problem {
                    let delta = ppyc_format::delta_path(Path::new(path));
                    let delta = delta.to_string_lossy();
                    self.warn_once(
                        &delta,
                        format!(
                            "ignoring the delta `{delta}` of pack `{path}`: {why}; the modules \
                             changed since the pack was built use the stock importer"
                        ),
                    );
                }
                if verbose {
                    self.pending_explanations.push(format!(
                        "using pack `{path}` ({modules} modules) for `{root}` ({mode} mode)"
                    ));
                }
                let entry = Arc::new(PackEntry {
                    pack,
                    path: path.to_owned(),
                    root: root.to_owned(),
                    modules,
                    mode,
                    mode_reason,
                    stats: Mutex::new(PackStats::default()),
                    // The generation's: its delta's when it has one.
                    written: delta_written.or(st.modified().ok()),
                    delta: delta_path,
                    refresh_considered: std::sync::atomic::AtomicBool::new(false),
                });
                self.by_path
                    .insert(path.to_owned(), Some(Arc::clone(&entry)));
                self.usable.push(Arc::clone(&entry));
                Some(entry)
            }
            Err((_, reason)) => {
                self.refuse(path, root, reason);
                None
            }
        }
    }
}

/// Why a pack is not used: the open pack when it could be read, and the reason.
pub(crate) type Refusal = (Option<Py<Pack>>, String);

/// The rules of `spec/IMPORT.md` for the pack at `path` (whose metadata is `st`): the open
/// pack when usable, else why not (with the pack when it could be read).
///
/// `root`, when known, is the directory the pack would serve: a pack built for another
/// directory (its `META` `root`, a real path) is refused, so that a pack copied from
/// elsewhere never serves this one.
pub(crate) fn check_pack(
    py: Python<'_>,
    target: &Target,
    path: &str,
    st: &std::fs::Metadata,
    root: Option<&str>,
) -> Result<Py<Pack>, Refusal> {
    let refuse = |reason: String| Err((None, reason));
    if !st.is_file() {
        return refuse("it is not a regular file".into());
    }
    let parent = Path::new(path).parent().unwrap_or(Path::new("/"));
    let parent_uid = match std::fs::metadata(parent) {
        Ok(m) => m.uid(),
        Err(e) => return refuse(format!("its directory cannot be read ({e})")),
    };
    let owner_rules = |st: &std::fs::Metadata| {
        if !st.is_file() {
            Err("it is not a regular file")
        } else if st.uid() != parent_uid {
            Err("it is not owned by the owner of its directory")
        } else if st.mode() & 0o022 != 0 {
            Err("it is writable by others than its owner")
        } else {
            Ok(())
        }
    };
    if let Err(why) = owner_rules(st) {
        return refuse(why.into());
    }
    let pack = match Pack::open(path) {
        Ok(p) => p,
        Err(e) => return refuse(format!("it cannot be read ({e})")),
    };
    // The same rules for the file opened (fstat): a file renamed over the path since the
    // `stat` above is judged too.
    match pack.inner().file_metadata() {
        Some(Ok(opened)) if opened.ino() == st.ino() && opened.dev() == st.dev() => {}
        Some(Ok(opened)) => {
            if let Err(why) = owner_rules(&opened) {
                return refuse(why.into());
            }
        }
        Some(Err(e)) => return refuse(format!("it cannot be read ({e})")),
        None => {}
    }
    let header = pack.inner().header();
    let reason =
        if header.target.cache_tag != target.cache_tag || header.target.pyc_magic != target.magic {
            let hex = |m: &[u8; 4]| m.iter().map(|b| format!("{b:02x}")).collect::<String>();
            Some(format!(
                "it was built for another interpreter ({}, magic {}, this is {}, magic {})",
                header.target.cache_tag,
                hex(&header.target.pyc_magic),
                target.cache_tag,
                hex(&target.magic)
            ))
        } else if pack.inner().is_delta() {
            // A delta on its own is not a generation (spec/FORMAT.md §13).
            Some("it is a delta (spec/FORMAT.md §13), not a whole pack".to_owned())
        } else if header.target.optimize != target.optimize {
            Some(format!(
                "it holds code for -O level {}, not {}",
                header.target.optimize, target.optimize
            ))
        } else {
            root.and_then(|r| built_for_another(&pack, r)).map(|built| {
                format!("it was built for `{built}`, not for this directory (copied from there?)")
            })
        };
    // Its delta (`spec/FORMAT.md` §13), under the same rules as the pack file itself.
    let pack = if reason.is_none() {
        pack.with_delta(Path::new(path), |st| {
            owner_rules(st).map_err(|why| format!("{why} (the delta file)"))
        })
    } else {
        pack
    };
    let pack = Py::new(py, pack).map_err(|e| (None, e.to_string()))?;
    match reason {
        None => Ok(pack),
        Some(reason) => Err((Some(pack), reason)),
    }
}

/// The directory `pack` was built for (`META` `root`), when that is not `root`'s real path.
fn built_for_another(pack: &Pack, root: &str) -> Option<String> {
    let built = pack
        .inner()
        .meta()
        .into_iter()
        .find_map(|(k, v)| (k == "root").then_some(v))?;
    let real = std::fs::canonicalize(root).ok()?;
    (Path::new(&built) != real).then_some(built)
}

/// A pack's entry of `ppyc.stats()["packs"]`.
pub(crate) fn entry_stats<'py>(py: Python<'py>, e: &PackEntry) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let s = e
        .stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    d.set_item("path", &e.path)?;
    d.set_item("root", &e.root)?;
    d.set_item("usable", true)?;
    d.set_item("modules", e.modules)?;
    d.set_item("mode", e.mode)?;
    d.set_item("mode_reason", e.mode_reason.as_deref())?;
    d.set_item("delta", e.delta.as_deref())?;
    d.set_item("served", s.served)?;
    let by_mode = PyDict::new(py);
    by_mode.set_item("image", s.served_image)?;
    by_mode.set_item("marshal", s.served_marshal)?;
    d.set_item("served_by_mode", by_mode)?;
    d.set_item("fallbacks", s.fallbacks.clone())?;
    d.set_item("images_not_used", s.images_not_used.clone())?;
    d.set_item("problems", s.problems)?;
    d.set_item("refresh", s.refresh.as_deref())?;
    Ok(d)
}
