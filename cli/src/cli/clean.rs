//! `ppyc clean` (and `ppyc disable --clean`): removes what ppyc wrote for directories —
//! their packs for this interpreter's cache tag at every optimisation level, in the tree
//! and in the user cache (`spec/FORMAT.md` §2), the `.pyc` files recorded as written by
//! `ppyc compile --write-pyc` (only while they still hold the bytes ppyc wrote), the
//! records themselves, the temporary files of interrupted writes, and the `__pycache__`
//! directories this leaves empty.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ppyc_compiler::written::PycRecord;
use pyo3::prelude::*;

use super::args::CleanArgs;
use super::{FAILURE, SUCCESS, human_bytes, out};

/// What a clean removed, and what it could not.
#[derive(Default)]
pub(crate) struct Outcome {
    packs: usize,
    pack_bytes: u64,
    pycs: usize,
    temps: usize,
    records: usize,
    /// Files of background refreshes (state, log, lock, stamp).
    refresh_files: usize,
    errors: Vec<anyhow::Error>,
}

impl Outcome {
    /// Removes the file at `path` if there is one (a symlink itself, never its target);
    /// its size, or `None` when there was nothing to remove or it could not be removed
    /// (then the error is kept).
    fn remove(&mut self, path: &Path) -> Option<u64> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        match std::fs::remove_file(path) {
            Ok(()) => Some(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                self.errors.push(
                    anyhow::Error::new(e).context(format!("cannot remove `{}`", path.display())),
                );
                None
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.packs == 0
            && self.pycs == 0
            && self.temps == 0
            && self.records == 0
            && self.refresh_files == 0
    }
}

/// The names in `dir` (none when it cannot be listed).
fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the `.pyc` files the record at `record_path` names that still hold the bytes
/// ppyc wrote, then the record (kept when some file could not be removed, for a retry).
/// Adds the `__pycache__` directories it removed files from to `touched`.
fn clean_record(out: &mut Outcome, dir: &Path, record_path: &Path, touched: &mut Vec<PathBuf>) {
    let record = match PycRecord::read(record_path) {
        Ok(Some(record)) => record,
        Ok(None) => return,
        Err(e) => {
            out.errors.push(anyhow::Error::new(e).context(format!(
                "cannot tell which .pyc files ppyc wrote for `{}` (the record is kept)",
                dir.display()
            )));
            return;
        }
    };
    let before = out.errors.len();
    let root = record.root(dir);
    for rel in record.pycs.keys() {
        if !record.still_ours(dir, rel) {
            continue; // gone, or rewritten by someone else since: not ppyc's to remove
        }
        let path = root.join(rel);
        if out.remove(&path).is_some() {
            out.pycs += 1;
            if let Some(parent) = path.parent() {
                touched.push(parent.to_path_buf());
            }
        }
    }
    if out.errors.len() == before && out.remove(record_path).is_some() {
        out.records += 1;
    }
}

/// Cleans one directory for `cache_tag`. `explicit`: named by the user (a missing
/// directory is then an error, not a skip).
pub(crate) fn clean_dir(
    out: &mut Outcome,
    dir: &Path,
    cache_tag: &str,
    pycache_prefix: Option<&Path>,
    explicit: bool,
) {
    let real = match std::fs::canonicalize(dir) {
        Ok(real) if real.is_dir() => real,
        Ok(_) => {
            out.errors
                .push(anyhow::anyhow!("not a directory: `{}`", dir.display()));
            return;
        }
        Err(e) => {
            if explicit {
                out.errors.push(
                    anyhow::Error::new(e).context(format!("cannot clean `{}`", dir.display())),
                );
            }
            return;
        }
    };
    let cache = ppyc_format::cache_dir();
    // The local places of the packs: `DIR/__pycache__`, and under this interpreter's
    // `sys.pycache_prefix` where it has one (`spec/FORMAT.md` §2).
    let mut locals = vec![ppyc_format::bytecode_dir(dir, None)];
    if let Some(prefix) = pycache_prefix {
        locals.push(ppyc_format::bytecode_dir(dir, Some(prefix)));
    }
    let mut touched = Vec::new();
    let mut cache_prefixes = Vec::new();
    for optimize in 0..=2u8 {
        let name = ppyc_format::pack_file_name(cache_tag, optimize);
        let cached = cache
            .as_deref()
            .map(|c| ppyc_format::cache_pack_path(c, &real, cache_tag, optimize));
        let local_packs: Vec<(PathBuf, &PathBuf)> =
            locals.iter().map(|l| (l.join(&name), l)).collect();
        for (pack, local) in local_packs
            .iter()
            .map(|(p, l)| (p, Some(*l)))
            .chain(cached.as_ref().map(|c| (c, None)))
        {
            clean_record(out, dir, &ppyc_format::pyc_record_path(pack), &mut touched);
            // Its delta (`spec/FORMAT.md` §13).
            let delta = ppyc_format::delta_path(pack);
            if let Some(size) = out.remove(&delta) {
                out.pack_bytes += size;
                out!("Removed `{}`", delta.display());
                touched.extend(local.cloned());
            }
            if let Some(size) = out.remove(pack) {
                out.packs += 1;
                out.pack_bytes += size;
                out!("Removed `{}`", pack.display());
                touched.extend(local.cloned());
            }
        }
        if let Some(cached) = &cached {
            cache_prefixes.push(ppyc_format::temp_prefix(cached));
            cache_prefixes.push(ppyc_format::temp_prefix(&ppyc_format::delta_path(cached)));
            cache_prefixes.push(ppyc_format::temp_prefix(&ppyc_format::pyc_record_path(
                cached,
            )));
        }
        // The background refresh's state, log, lock and stamp (`spec/IMPORT.md`).
        if let Some(c) = cache.as_deref() {
            let base = ppyc_format::refresh_state_base(c, &real, cache_tag, optimize);
            for suffix in ppyc_format::REFRESH_STATE_SUFFIXES {
                let mut name = base.clone().into_os_string();
                name.push(suffix);
                if out.remove(Path::new(&name)).is_some() {
                    out.refresh_files += 1;
                }
            }
        }
    }
    // Leftovers of interrupted writes. In a local place every `.__ppyc__*.tmp` (packs,
    // records, also as older versions named them) and `.__ppyc__probe*` file is ppyc's; in
    // the user cache, shared by every directory, only those named after this directory's
    // files.
    for local in &locals {
        for name in names_in(local) {
            let ours = name.starts_with(".__ppyc__")
                && (name.ends_with(".tmp") || name.starts_with(".__ppyc__probe"));
            if ours && out.remove(&local.join(&name)).is_some() {
                out.temps += 1;
                touched.push(local.clone());
            }
        }
    }
    if let Some(cache) = &cache {
        for name in names_in(cache) {
            let ours = name.ends_with(".tmp") && cache_prefixes.iter().any(|p| name.starts_with(p));
            if ours && out.remove(&cache.join(&name)).is_some() {
                out.temps += 1;
            }
        }
    }
    // `__pycache__` directories emptied by this clean: left, they would make a package
    // directory its package manager removed importable as an empty namespace package.
    touched.sort();
    touched.dedup();
    for d in touched {
        if d.file_name().is_some_and(|n| n == "__pycache__") && names_in(&d).is_empty() {
            let _ = std::fs::remove_dir(&d); // only ever an empty directory
        }
    }
}

/// Prints what `out` removed and its errors; the exit status.
pub(crate) fn report(out: Outcome) -> i32 {
    if out.is_empty() && out.errors.is_empty() {
        out!("nothing to clean");
    } else if !out.is_empty() {
        let mut line = format!(
            "Removed {} {} ({}) and {} .pyc {}",
            out.packs,
            if out.packs == 1 { "pack" } else { "packs" },
            human_bytes(out.pack_bytes),
            out.pycs,
            if out.pycs == 1 { "file" } else { "files" },
        );
        if out.temps > 0 {
            line += &format!(
                ", {} leftover temporary {}",
                out.temps,
                if out.temps == 1 { "file" } else { "files" }
            );
        }
        if out.refresh_files > 0 {
            line += &format!(
                ", {} background refresh {}",
                out.refresh_files,
                if out.refresh_files == 1 {
                    "file"
                } else {
                    "files"
                }
            );
        }
        out!("{line}");
    }
    for e in &out.errors {
        eprintln!("error: {e:#}");
    }
    let _ = std::io::stdout().flush();
    if out.errors.is_empty() {
        SUCCESS
    } else {
        FAILURE
    }
}

/// Removes the user-cache packs of directories that no longer exist, with their deltas,
/// `.pyc` records and background-refresh state. A user-cache pack is named by a hash of
/// its directory's real path (`spec/FORMAT.md` §2), so only the pack's own `META` `root`
/// says whose it is; a file is removed only when it opens as a pack, its name is exactly
/// the one ppyc gives the pack (or delta) of that root for its cache tag and level, and
/// that root does not exist. Anything else in the cache is left alone.
pub(crate) fn clean_orphans(out: &mut Outcome) {
    let Some(cache) = ppyc_format::cache_dir() else {
        return;
    };
    let mut names = names_in(&cache);
    names.sort();
    for name in names {
        let is_delta = name.ends_with(".ppyd");
        if !is_delta && !name.ends_with(".ppyc") {
            continue;
        }
        let path = cache.join(&name);
        let Ok(pack) = ppyc_format::Pack::open(&path) else {
            continue; // not a pack, or damaged: not provably ppyc's of a gone directory
        };
        let Some(root) = pack
            .meta()
            .into_iter()
            .find_map(|(k, v)| (k == "root").then_some(v))
        else {
            continue;
        };
        let root = PathBuf::from(root);
        let (tag, optimize) = (
            pack.header().target.cache_tag.clone(),
            pack.header().target.optimize,
        );
        drop(pack);
        let pack_path = ppyc_format::cache_pack_path(&cache, &root, &tag, optimize);
        let own = if is_delta {
            ppyc_format::delta_path(&pack_path)
        } else {
            pack_path.clone()
        };
        let gone = matches!(
            std::fs::symlink_metadata(&root),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound
        );
        if own != path || !gone {
            continue;
        }
        if let Some(size) = out.remove(&path) {
            if !is_delta {
                out.packs += 1;
            }
            out.pack_bytes += size;
            out!(
                "Removed `{}` (the pack of `{}`, which no longer exists)",
                path.display(),
                root.display()
            );
        }
        if is_delta {
            continue;
        }
        // Its `.pyc` record: the files it names went with their directory.
        if out
            .remove(&ppyc_format::pyc_record_path(&pack_path))
            .is_some()
        {
            out.records += 1;
        }
        let base = ppyc_format::refresh_state_base(&cache, &root, &tag, optimize);
        for suffix in ppyc_format::REFRESH_STATE_SUFFIXES {
            let mut state = base.clone().into_os_string();
            state.push(suffix);
            if out.remove(Path::new(&state)).is_some() {
                out.refresh_files += 1;
            }
        }
    }
}

/// Cleans `dirs` for `cache_tag` (and, with `orphans`, [`clean_orphans`]); the exit status.
pub(crate) fn clean_dirs(
    dirs: &[(PathBuf, bool)],
    cache_tag: &str,
    pycache_prefix: Option<&Path>,
    orphans: bool,
) -> i32 {
    let mut out = Outcome::default();
    let mut seen = Vec::new();
    for (dir, explicit) in dirs {
        if seen.contains(dir) {
            continue;
        }
        seen.push(dir.clone());
        clean_dir(&mut out, dir, cache_tag, pycache_prefix, *explicit);
    }
    if orphans {
        clean_orphans(&mut out);
    }
    report(out)
}

pub(crate) fn clean(py: Python<'_>, args: &CleanArgs) -> anyhow::Result<i32> {
    let interp = crate::interp::current(py).context("cannot describe this interpreter")?;
    let mut dirs: Vec<(PathBuf, bool)> = args.paths.iter().map(|p| (p.clone(), true)).collect();
    // `--orphans` alone cleans only the orphans.
    let only_orphans = args.orphans && args.paths.is_empty() && !args.stdlib;
    if args.paths.is_empty() && !only_orphans {
        dirs.extend(
            interp
                .site_packages
                .iter()
                .chain(&interp.pth_roots)
                .map(|p| (p.clone(), false)),
        );
    }
    if args.stdlib {
        dirs.push((interp.stdlib.clone(), false));
    }
    let tag = interp.cache_tag.clone();
    let orphans = args.orphans;
    let prefix = interp.pycache_prefix.clone();
    Ok(py.detach(move || clean_dirs(&dirs, &tag, prefix.as_deref(), orphans)))
}
