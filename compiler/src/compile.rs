//! Building the pack of one directory: walk, reuse, read `.pyc`, compile the rest, write.
//!
//! For every module, the cheapest source of correct code wins:
//! 1. the previous pack's record, when the source is unchanged (same size and mtime and not
//!    modified within the same second as the previous pack, or else the same BLAKE3);
//! 2. `__pycache__/<name>.<cache_tag>[.opt-N].pyc` (or its place under the interpreter's
//!    `sys.pycache_prefix`, [`pyc::cache_path_in`]), when CPython itself would accept it
//!    ([`crate::pyc`]) and its marshal stream is well formed ([`crate::marshal::validate`]);
//! 3. compiling the source in the target interpreter ([`crate::workers`]); with
//!    [`BuildOptions::write_pyc`] (`--write-pyc`) it also writes the `.pyc` as `compileall`
//!    does, and records it ([`crate::written`]) so that `ppyc clean` can remove it.
//!
//! By default no `.pyc` is written: the pack holds the code, and a file no package manager
//! knows of would outlive the package it belongs to.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ppyc_format::{FormatError, Generation, Layer, ModuleInput, Pack, PackWriter};
use rayon::prelude::*;

use crate::interpreter::Interpreter;
use crate::report::{Problem, Reporter};
use crate::walk::{SourceModule, WalkOptions, walk};
use crate::{marshal, pyc, workers};

/// The files CPython's own `make install` leaves out when it byte-compiles the standard
/// library (Makefile.pre.in, `COMPILEALL_OPTS`/`-x`, 3.10–3.13): test data with deliberate
/// syntax errors, and site-packages (packed on its own).
pub const STDLIB_EXCLUDES: &[&str] = &[
    "site-packages",
    "bad_coding",
    "badsyntax",
    "lib2to3/tests/data",
    "test_lib2to3/data",
];

/// How to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Optimisation level of the code (`sys.flags.optimize` of the runs that will use it).
    pub optimize: u8,
    /// Leave out paths containing one of these strings (see [`WalkOptions::excludes`]).
    pub excludes: Vec<String>,
    /// Worker processes for compiling.
    pub jobs: usize,
    /// Time limit for compiling one file (`None`: no limit).
    pub timeout: Option<Duration>,
    /// Reuse records of the previous pack whose source is unchanged.
    pub incremental: bool,
    /// Write the `.pyc` of compiled sources to `__pycache__` (as `compileall` does), and
    /// record them beside the pack ([`crate::written`]).
    pub write_pyc: bool,
    /// Make an image pack (image mode): every module gets an image where the target can
    /// make one. `None`: a marshal pack.
    pub images: Option<ImageOptions>,
    /// Pack the directory even when it is a package or lies in one of the interpreter's
    /// `sys.path` directories (it is itself a `sys.path` entry all the same).
    pub sys_path_entry: bool,
}

/// How to make images (`spec/FORMAT.md` §10).
#[derive(Clone, Debug)]
pub struct ImageOptions {
    /// The target's layout description (`ILAY`); the image workers must report its
    /// fingerprint.
    pub layout: Vec<u8>,
    /// ppyc's extension for the target interpreter, which the image workers load.
    pub native: PathBuf,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            optimize: 0,
            excludes: Vec::new(),
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
            timeout: Some(Duration::from_secs(60)),
            incremental: true,
            write_pyc: false,
            images: None,
            sys_path_entry: false,
        }
    }
}

/// What a build did.
#[derive(Clone, Debug, Default)]
pub struct BuildSummary {
    /// The packed directory.
    pub dir: PathBuf,
    /// Where the pack was written.
    pub pack_path: PathBuf,
    /// Why the pack went to the user cache instead of `dir/__pycache__` (`None` when it
    /// did not).
    pub cache_reason: Option<String>,
    /// Modules in the pack.
    pub modules: usize,
    /// Modules reused from the previous pack.
    pub reused: usize,
    /// Modules whose code came from a fresh `.pyc`.
    pub from_pyc: usize,
    /// Modules compiled.
    pub compiled: usize,
    /// Compiled modules whose `.pyc` was written to `__pycache__`.
    pub pyc_written: usize,
    /// Where the record of the `.pyc` files ppyc wrote for this pack is, when it wrote any
    /// (in this build or an earlier one still recorded).
    pub pyc_record: Option<PathBuf>,
    /// Modules left out (syntax errors, unreadable files), and directories that could not
    /// be read.
    pub problems: Vec<Problem>,
    /// Size of the pack file.
    pub bytes: u64,
    /// Wall time of the whole build.
    pub seconds: f64,
    /// Wall time of each phase: walk, classify (stat, reuse, read `.pyc`), compile, encode
    /// (the pack's bytes), write (temporary file, fsync, rename).
    pub phases: Vec<(&'static str, f64)>,
    /// Whether the pack on disk was already byte-identical (so it was not rewritten).
    pub unchanged: bool,
    /// Image packs: modules with an image (made now or reused).
    pub images: usize,
    /// Image packs: modules made an image of in this build.
    pub images_made: usize,
    /// Image packs: modules without an image (served with `marshal.loads`), with why; at
    /// most a few kept, with the total count.
    pub images_refused: Vec<String>,
    /// Image packs: how many modules have no image.
    pub images_refused_count: usize,
    /// Directories whose listing the pack records (`DIRS`).
    pub dirs_recorded: usize,
    /// Directories left out of `DIRS`: changed within 2 s before the build (racy).
    pub dirs_racy: usize,
    /// The delta written beside the base (`pack_path`) instead of a whole pack
    /// (`spec/FORMAT.md` §13); `bytes` and `pack_path` are then the base's.
    pub delta: Option<DeltaWritten>,
    /// Why a delta could not be written (a whole pack was written instead).
    pub delta_error: Option<String>,
    /// Whether a delta of the previous generation was folded into the new pack (or
    /// removed, as the base alone is up to date again).
    pub compacted: bool,
}

/// Why a build could not produce a pack.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no such directory: `{0}`")]
    Missing(PathBuf),
    #[error("not a directory: `{0}`")]
    NotADirectory(PathBuf),
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{dir}` is a package (it has `{init}`): its modules are imported as `{package}.…`, \
         so they are packed with the `sys.path` directory that holds the package: \
         `ppyc compile {parent}` (if `{dir}` itself is on `sys.path`, add `--sys-path-entry`)"
    )]
    IsPackage {
        dir: PathBuf,
        init: String,
        package: String,
        parent: PathBuf,
    },
    #[error(
        "`{dir}` is inside `{parent}`, a `sys.path` directory of this interpreter: its \
         modules are imported as `{package}.…`, so they are packed with it: \
         `ppyc compile {parent}` (if `{dir}` itself is on `sys.path`, add `--sys-path-entry`)"
    )]
    InsideSysPath {
        dir: PathBuf,
        package: String,
        parent: PathBuf,
    },
    #[error("CPython with pyc magic {0:?} is not supported")]
    UnsupportedMagic([u8; 4]),
    #[error("invalid optimisation level {0} (0, 1 or 2)")]
    InvalidOptimize(u8),
    #[error(
        "cannot write a pack for `{dir}`: `{in_tree}` is not writable ({in_tree_error}) and \
         neither is the user cache ({cache_error})"
    )]
    NoWritableLocation {
        dir: PathBuf,
        in_tree: PathBuf,
        in_tree_error: String,
        cache_error: String,
    },
    #[error(
        "cannot record the .pyc files written for `{dir}` (so they were removed again): {error}"
    )]
    PycRecord { dir: PathBuf, error: String },
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Workers(#[from] workers::WorkerError),
    #[error("the image workers report layout fingerprint {found}, the build expects {expected}")]
    LayoutMismatch { expected: String, found: String },
}

/// Where a module's code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Reused,
    Pyc,
}

struct Stat {
    size: u64,
    mtime_ns: i64,
    source: pyc::SourceStat,
}

/// A module whose source is unchanged since the previous generation packed it.
struct Kept {
    module: SourceModule,
    stat: Stat,
    blake3: [u8; 32],
    layer: Layer,
    /// Whether the record also has the source's present size and mtime (else it was
    /// touched: the code is reused, the record must be written anew).
    same_stat: bool,
}

enum Classified {
    /// A module whose code is known; the flag says whether its image is settled (reused
    /// from the previous pack, with or without an image).
    Ready((ModuleInput, bool), Origin),
    /// Unchanged since the previous generation; its code is still in that generation's
    /// pack of `layer`.
    Kept(Kept),
    Compile {
        module: SourceModule,
        stat: Stat,
        blake3: [u8; 32],
        cfile: PathBuf,
    },
    Failed(Problem),
}

fn problem(path: &Path, message: impl Into<String>) -> Problem {
    Problem {
        path: path.to_path_buf(),
        line: None,
        message: message.into(),
    }
}

fn stat_of(meta: &std::fs::Metadata) -> Stat {
    Stat {
        size: meta.size(),
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        source: pyc::SourceStat::from_metadata(meta),
    }
}

/// A compile failure as a reported problem: `path:line: SyntaxError: message`.
pub(crate) fn failure_problem(failure: &workers::CompileFailure) -> Problem {
    use workers::CompileFailure as F;
    let (line, message) = match failure {
        F::Syntax {
            line,
            exception,
            message,
            ..
        } => (line.map(u64::from), format!("{exception}: {message}")),
        F::Unreadable {
            exception, message, ..
        }
        | F::Compile {
            exception, message, ..
        } => (None, format!("{exception}: {message}")),
        F::Timeout { elapsed, .. } => (
            None,
            format!("compiling timed out after {:.1}s", elapsed.as_secs_f64()),
        ),
        F::WorkerCrashed { reason, .. } => (None, format!("the compiler process died: {reason}")),
        F::Internal { traceback, .. } => (
            None,
            format!(
                "internal compiler error: {}",
                traceback.lines().last().unwrap_or_default()
            ),
        ),
        F::NoWorker { error, .. } => (
            None,
            format!("no compiler process could be started: {error}"),
        ),
    };
    Problem {
        path: failure.path().to_path_buf(),
        line,
        message,
    }
}

fn input(
    module: &SourceModule,
    stat: &Stat,
    blake3: [u8; 32],
    pyc_flags: u32,
    payload: Vec<u8>,
) -> ModuleInput {
    ModuleInput {
        name: module.name.clone(),
        is_package: module.is_package,
        source_path: module.rel_path.clone(),
        source_size: stat.size,
        source_mtime_ns: stat.mtime_ns,
        source_blake3: blake3,
        pyc_flags,
        payload,
        image: None,
    }
}

/// Whether `dir` accepts new files (creating it if needed), tested by creating one.
fn probe_writable(dir: &Path) -> Result<(), std::io::Error> {
    std::fs::create_dir_all(dir)?;
    tempfile::Builder::new()
        .prefix(".__ppyc__probe")
        .tempfile_in(dir)
        .map(drop)
}

/// Whether the file at `path` holds exactly `bytes`.
fn same_contents(path: &Path, bytes: &[u8]) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == bytes.len() as u64)
        && std::fs::read(path).is_ok_and(|old| old == bytes)
}

/// The generation (`spec/FORMAT.md` §13) that serves `dir` now, for this target: its base
/// pack and the delta that completes it, if any.
struct Previous {
    /// The base pack's path.
    path: PathBuf,
    generation: Generation,
    /// When the base and the delta were written (mtime, nanoseconds; 0 without a delta).
    base_written_ns: i64,
    delta_written_ns: i64,
}

impl Previous {
    fn written_ns(&self, layer: Layer) -> i64 {
        match layer {
            Layer::Base => self.base_written_ns,
            Layer::Delta => self.delta_written_ns,
        }
    }
}

/// The previous generation of `dir` for this target, if any and usable.
fn previous_generation(candidates: &[&Path], target: &ppyc_format::Target) -> Option<Previous> {
    candidates.iter().find_map(|path| {
        let (generation, _) = Generation::open(path).ok()?;
        if generation.base.header().target != *target {
            return None;
        }
        let written = |pack: &Pack| {
            pack.file_metadata()
                .and_then(Result::ok)
                .map_or(0, |m| stat_of(&m).mtime_ns)
        };
        Some(Previous {
            path: path.to_path_buf(),
            base_written_ns: written(&generation.base),
            delta_written_ns: generation.delta.as_ref().map_or(0, written),
            generation,
        })
    })
}

struct Context<'a> {
    interp: &'a Interpreter,
    version: marshal::PyVersion,
    optimize: pyc::OptLevel,
    previous: Option<&'a Previous>,
    /// Whether the previous pack's images are usable for this build (same layout).
    reuse_images: bool,
}

impl Context<'_> {
    fn classify(&self, module: SourceModule) -> Classified {
        let meta = match std::fs::metadata(&module.source) {
            Ok(m) => m,
            Err(e) => {
                return Classified::Failed(problem(&module.source, format!("cannot read: {e}")));
            }
        };
        let stat = stat_of(&meta);
        let previous =
            self.previous.and_then(|p| {
                let (layer, m) = p.generation.get(&module.name).ok()??;
                (m.source_path() == module.rel_path && m.is_package() == module.is_package)
                    .then_some((layer, m, p.written_ns(layer)))
            });
        // 1a. Unchanged size and mtime, and not racily modified in the second the previous
        //     pack was written (git's "racy clean" rule): reuse without reading the source.
        //     Its code is copied out of the previous pack only if this build needs it
        //     ([`Context::materialize`]).
        if let Some((layer, m, written_ns)) = previous {
            if m.source_size() == stat.size
                && m.source_mtime_ns() == stat.mtime_ns
                && stat.mtime_ns < written_ns.saturating_sub(1_000_000_000)
            {
                let blake3 = *m.source_blake3();
                return Classified::Kept(Kept {
                    module,
                    stat,
                    blake3,
                    layer,
                    same_stat: true,
                });
            }
        }
        let source = match std::fs::read(&module.source) {
            Ok(s) => s,
            Err(e) => {
                return Classified::Failed(problem(&module.source, format!("cannot read: {e}")));
            }
        };
        let blake3 = *blake3::hash(&source).as_bytes();
        // 1b. Same content as when packed (touched, or copied with new times); after a
        //     delta's record, the base's (a change reverted: the module leaves the delta).
        if let Some((layer, m, _)) = previous {
            let same = |r: &ppyc_format::Module<'_>| {
                (r.source_size(), r.source_mtime_ns()) == (stat.size, stat.mtime_ns)
            };
            let base_record = || {
                let p = self.previous?;
                let b = p.generation.base.get(&module.name).ok()??;
                (b.source_path() == module.rel_path
                    && b.is_package() == module.is_package
                    && *b.source_blake3() == blake3)
                    .then(|| same(&b))
            };
            // The base's record when it is exactly current (the delta then drops the
            // module), else the record whose code matches.
            let in_base = if layer == Layer::Delta {
                base_record()
            } else {
                None
            };
            let found = if in_base == Some(true) {
                Some((Layer::Base, true))
            } else if *m.source_blake3() == blake3 {
                Some((layer, same(&m)))
            } else {
                in_base.map(|same_stat| (Layer::Base, same_stat))
            };
            if let Some((layer, same_stat)) = found {
                return Classified::Kept(Kept {
                    module,
                    stat,
                    blake3,
                    layer,
                    same_stat,
                });
            }
        }
        self.classify_read(module, stat, source, blake3)
    }

    /// Steps 2 and 3 for a source read now.
    fn classify_read(
        &self,
        module: SourceModule,
        stat: Stat,
        source: Vec<u8>,
        blake3: [u8; 32],
    ) -> Classified {
        // 2. A .pyc CPython would accept.
        let cfile = pyc::cache_path_in(
            &module.source,
            &self.interp.cache_tag,
            self.optimize,
            self.interp.pycache_prefix.as_deref(),
        );
        if let Some((flags, payload)) = self.fresh_pyc(&cfile, &stat, &source) {
            return Classified::Ready(
                (input(&module, &stat, blake3, flags, payload), false),
                Origin::Pyc,
            );
        }
        // 3. Compile.
        Classified::Compile {
            module,
            stat,
            blake3,
            cfile,
        }
    }

    /// The input of a module kept from the previous generation: its code copied out of
    /// the pack of its layer (payload digest checked); a payload that fails its check is
    /// classified again from its source.
    fn materialize(&self, kept: Kept) -> Classified {
        let found = self.previous.and_then(|p| {
            let m = p
                .generation
                .pack(kept.layer)
                .get(&kept.module.name)
                .ok()??;
            let payload = m.payload().ok()?.to_vec();
            Some(self.reused(
                input(
                    &kept.module,
                    &kept.stat,
                    kept.blake3,
                    m.pyc_flags(),
                    payload,
                ),
                &m,
            ))
        });
        if let Some(ready) = found {
            return Classified::Ready(ready, Origin::Reused);
        }
        match std::fs::read(&kept.module.source) {
            Ok(source) => {
                let blake3 = *blake3::hash(&source).as_bytes();
                self.classify_read(kept.module, kept.stat, source, blake3)
            }
            Err(e) => Classified::Failed(problem(&kept.module.source, format!("cannot read: {e}"))),
        }
    }

    /// A module reused from the previous pack, with its image when that pack's images
    /// were made for the same layout (`None` there means: no image, known already).
    fn reused(&self, mut input: ModuleInput, m: &ppyc_format::Module<'_>) -> (ModuleInput, bool) {
        if !self.reuse_images {
            return (input, false);
        }
        match m.checked_image() {
            Ok(image) => {
                input.image = image;
                (input, true)
            }
            Err(_) => (input, false),
        }
    }

    /// The flags and marshal payload of `cfile`, if CPython would use it for `source`.
    fn fresh_pyc(&self, cfile: &Path, stat: &Stat, source: &[u8]) -> Option<(u32, Vec<u8>)> {
        let data = std::fs::read(cfile).ok()?;
        let verdict = pyc::check_pyc(
            &data,
            &self.interp.pyc_magic,
            &stat.source,
            pyc::CheckHashBasedPycs::Default,
            || Ok::<_, std::convert::Infallible>(source),
        );
        let Ok(pyc::Verdict::Accepted(header)) = verdict else {
            return None;
        };
        // A timestamp pyc records the source's mtime in whole seconds: a same-size edit in
        // the second the pyc was written keeps it "fresh" for CPython. The pack records the
        // digest of the source read now, so it takes the pyc's code only when the pyc was
        // written in a later second than the source's mtime, which proves that no edit
        // since has kept that second (git's racy-clean rule); else it compiles these bytes.
        if matches!(header.kind(), pyc::PycKind::Timestamp { .. }) {
            let written = stat_of(&std::fs::metadata(cfile).ok()?).mtime_ns;
            let next_second = stat
                .mtime_ns
                .div_euclid(1_000_000_000)
                .saturating_add(1)
                .saturating_mul(1_000_000_000);
            if written < next_second {
                return None;
            }
        }
        let payload = data.get(pyc::HEADER_LEN..)?;
        marshal::validate(payload, self.version).ok()?;
        Some((header.flags(), payload.to_vec()))
    }
}

/// Adds the `.pyc` files written in this build to the record of the pack of `dir` (which
/// keeps those of earlier builds that still exist): beside the in-tree pack when its
/// directory is writable, else beside the user-cache pack; a record at the other place is
/// merged and removed. Where no record can be written, the `.pyc` files just written (and
/// the `__pycache__` directories this empties) are removed again and the build fails: ppyc leaves no file it could not remove later.
/// Returns where the record is (`None`: no `.pyc` written, none recorded before).
fn record_pycs(
    dir: &Path,
    pycache_prefix: Option<&Path>,
    in_tree: &Path,
    in_cache: Option<&Path>,
    written: Vec<(String, String)>,
) -> Result<Option<PathBuf>, BuildError> {
    let tree_record = ppyc_format::pyc_record_path(in_tree);
    let cache_record = in_cache.map(ppyc_format::pyc_record_path);
    if written.is_empty() {
        return Ok([Some(&tree_record), cache_record.as_ref()]
            .into_iter()
            .flatten()
            .find(|p| p.is_file())
            .cloned());
    }
    let mut record = crate::written::PycRecord::with_prefix(pycache_prefix);
    let root = record.root(dir);
    let mut found = Vec::new();
    for path in std::iter::once(&tree_record).chain(cache_record.as_ref()) {
        // An unreadable or foreign record is replaced: it never named files ppyc can
        // prove it wrote.
        if let Ok(Some(old)) = crate::written::PycRecord::read(path) {
            let old_root = old.root(dir);
            if old_root != root {
                // Left as it is: `ppyc clean` under that prefix still finds its files.
                continue;
            }
            record.pycs.extend(old.pycs);
            found.push(path.clone());
        }
    }
    // Entries whose file is gone (removed by a package manager) are dropped.
    record
        .pycs
        .retain(|rel, _| std::fs::symlink_metadata(root.join(rel)).is_ok());
    let new: Vec<String> = written.iter().map(|(rel, _)| rel.clone()).collect();
    record.pycs.extend(written);
    let pycache = in_tree.parent().unwrap_or(dir);
    let at_tree = probe_writable(pycache)
        .map_err(|e| format!("`{}`: {e}", pycache.display()))
        .and_then(|()| record.write(&tree_record).map_err(|e| e.to_string()));
    let result = match (at_tree, &cache_record) {
        (Ok(()), _) => Ok(tree_record),
        (Err(e), None) => Err(e),
        (Err(tree_error), Some(cache)) => create_private(cache)
            .map_err(crate::written::RecordError::from)
            .and_then(|()| record.write(cache))
            .map(|()| cache.clone())
            .map_err(|e| format!("{tree_error}; {e}")),
    };
    match result {
        Ok(at) => {
            for other in found.iter().filter(|p| **p != at) {
                let _ = std::fs::remove_file(other);
            }
            Ok(Some(at))
        }
        Err(error) => {
            for rel in new {
                let pyc = root.join(rel);
                let _ = std::fs::remove_file(&pyc);
                // An empty `__pycache__` left would make a package directory importable as
                // a namespace package once its package manager removed it.
                if let Some(pycache) = pyc.parent().filter(|p| p.ends_with("__pycache__")) {
                    let _ = std::fs::remove_dir(pycache); // only ever an empty directory
                }
            }
            Err(BuildError::PycRecord {
                dir: dir.to_path_buf(),
                error,
            })
        }
    }
}

/// Creates the user cache directory holding `cache_file`, private (mode 0700) as XDG asks,
/// whatever the umask: the runtime trusts a user-cache pack only in a directory nobody
/// else can write (spec/SECURITY.md).
fn create_private(cache_file: &Path) -> Result<(), FormatError> {
    cache_file.parent().map_or(Ok(()), |c| {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(c)
            .map_err(|e| FormatError::write(c, e))
    })
}

/// How many reasons for missing images a summary keeps.
const REFUSALS_KEPT: usize = 5;

/// Gives every module whose image is not settled an image, made by the image workers from
/// its payload (`spec/FORMAT.md` §10.7); a module the snapshot refuses keeps its payload
/// only.
fn make_images(
    interp: &Interpreter,
    options: &BuildOptions,
    images: &ImageOptions,
    inputs: &mut [(ModuleInput, bool)],
    summary: &mut BuildSummary,
    early: Option<EarlyPool>,
) -> Result<(), BuildError> {
    let pending: Vec<usize> = (0..inputs.len()).filter(|&i| !inputs[i].1).collect();
    if !pending.is_empty() {
        let pool = match early.and_then(|h| h.join().ok()) {
            Some(started) => started?,
            None => start_image_pool(interp, options, images, pending.len())?,
        };
        let expected = *blake3::hash(&images.layout).as_bytes();
        let found = pool.interpreter().image_fingerprint;
        if found != Some(expected) {
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            return Err(BuildError::LayoutMismatch {
                expected: hex(&expected),
                found: found.map_or_else(|| "none".into(), |f| hex(&f)),
            });
        }
        let jobs = pending
            .iter()
            .map(|&i| workers::ImageJob {
                module: inputs[i].0.name.clone(),
                payload: inputs[i].0.payload.clone(),
            })
            .collect();
        let results = pool.snapshot_all(jobs, |_, _| {});
        for (&i, (_, result)) in pending.iter().zip(results) {
            inputs[i].1 = true;
            match result {
                Ok(image) => {
                    inputs[i].0.image = Some(image);
                    summary.images_made += 1;
                }
                Err(failure) => {
                    if summary.images_refused.len() < REFUSALS_KEPT {
                        summary.images_refused.push(failure.to_string());
                    }
                }
            }
        }
    }
    summary.images = inputs.iter().filter(|(m, _)| m.image.is_some()).count();
    summary.images_refused_count = inputs.len() - summary.images;
    Ok(())
}

/// An image pool being started while the sources are compiled.
type EarlyPool = std::thread::JoinHandle<Result<workers::WorkerPool, workers::WorkerError>>;

/// Starts the image workers for `pending` modules.
fn start_image_pool(
    interp: &Interpreter,
    options: &BuildOptions,
    images: &ImageOptions,
    pending: usize,
) -> Result<workers::WorkerPool, workers::WorkerError> {
    workers::WorkerPool::start_images(
        &interp.executable,
        pool_size(options.jobs, pending, IMAGES_PER_WORKER),
        workers::Timeouts {
            startup: Some(Duration::from_secs(30)),
            per_file: options.timeout,
        },
        &images.native,
    )
}

/// How many modules a compile worker should have before another one is started: an
/// interpreter's start (about 10 ms) costs as much as compiling 10-20 modules, and the
/// cores are shared with the image workers starting at the same time. Measured on the
/// bench site-packages: a rebuild of `requests` (18 files) took 48 ms to compile and
/// 16 ms to snapshot with two workers each, 0.12 s in all (BENCHMARKS.md).
const COMPILES_PER_WORKER: usize = 32;
/// The same for image workers (a snapshot is faster than a compilation).
const IMAGES_PER_WORKER: usize = 64;

/// Workers for `pending` jobs: at most `jobs`, one per `per_worker` jobs, at least one.
fn pool_size(jobs: usize, pending: usize, per_worker: usize) -> usize {
    jobs.clamp(1, pending.div_ceil(per_worker).max(1))
}

/// Starts the image workers in the background when images will be made after compiling
/// (`pending` modules): their interpreters start while the compile workers run, instead
/// of after them.
fn start_image_pool_early(
    interp: &Interpreter,
    options: &BuildOptions,
    pending: usize,
    compiling: bool,
) -> Option<EarlyPool> {
    let images = options.images.clone()?;
    if pending == 0 || !compiling {
        return None;
    }
    let (interp, options) = (interp.clone(), options.clone());
    std::thread::Builder::new()
        .name("ppyc-image-pool".to_owned())
        .spawn(move || start_image_pool(&interp, &options, &images, pending))
        .ok()
}

/// The `__init__` file that makes `dir` a regular package for `interp`, if any.
fn package_init(dir: &Path, interp: &Interpreter) -> Option<String> {
    [".py".to_owned(), ".pyc".to_owned()]
        .iter()
        .chain(&interp.extension_suffixes)
        .map(|suffix| format!("__init__{suffix}"))
        .find(|init| dir.join(init).is_file())
}

/// Refuses a directory that is not a `sys.path` entry but a package, or a namespace portion
/// of one of the interpreter's `sys.path` directories: a pack of it would name its modules
/// as top-level modules (`a` for `mypkg/a.py`), which the import system never asks for.
fn check_not_a_package(dir: &Path, interp: &Interpreter) -> Result<(), BuildError> {
    let Ok(real) = std::fs::canonicalize(dir) else {
        return Ok(()); // reported by the build itself
    };
    let roots: Vec<PathBuf> = interp
        .site_packages
        .iter()
        .chain(interp.user_site.as_ref())
        .chain([&interp.stdlib, &interp.platstdlib])
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    if roots.contains(&real) {
        return Ok(());
    }
    // `dir`'s ancestor `n` levels up, as the user spelled `dir` where possible.
    let up_from = |n: usize, real_up: &Path| {
        let normal = dir
            .components()
            .rev()
            .take(n)
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .count();
        match dir.ancestors().nth(n) {
            Some(p) if normal == n && p.as_os_str().is_empty() => PathBuf::from("."),
            Some(p) if normal == n => p.to_path_buf(),
            _ => real_up.to_path_buf(),
        }
    };
    let name_of = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .filter(|n| crate::walk::is_identifier(n))
            .map(str::to_owned)
    };
    // Up from `dir` through identifier names: to one of the interpreter's `sys.path`
    // directories (then `dir` is a package or portion of it), else to the top of the
    // packages `dir` is in.
    let init = package_init(&real, interp);
    let (mut names, mut at, mut top) = (Vec::new(), real.as_path(), None);
    while let (Some(name), Some(up)) = (name_of(at), at.parent()) {
        names.push(name);
        if top.is_none() && init.is_some() && package_init(up, interp).is_none() {
            top = Some((names.len(), up));
        }
        if roots.iter().any(|r| r == up) {
            names.reverse();
            let package = names.join(".");
            let parent = up_from(names.len(), up);
            return Err(match init {
                Some(init) => BuildError::IsPackage {
                    dir: dir.to_path_buf(),
                    init,
                    package,
                    parent,
                },
                None => BuildError::InsideSysPath {
                    dir: dir.to_path_buf(),
                    package,
                    parent,
                },
            });
        }
        at = up;
    }
    match (init, top) {
        (Some(init), Some((n, up))) => {
            let mut package: Vec<String> = names[..n].to_vec();
            package.reverse();
            Err(BuildError::IsPackage {
                dir: dir.to_path_buf(),
                init,
                package: package.join("."),
                parent: up_from(n, up),
            })
        }
        _ => Ok(()),
    }
}

/// A rebuild written as a delta of the previous generation's base (`spec/FORMAT.md` §13).
struct DeltaPlan {
    /// Modules of the base the new generation no longer has.
    deleted: Vec<String>,
}

impl DeltaPlan {
    /// A delta is written when the previous base can take one (built for this directory,
    /// with this build's layout, or both without images) and the change is small: at most
    /// a quarter of the base's modules changed, new or deleted, holding at most a quarter
    /// of its source bytes. Anything larger is compacted into a whole pack.
    fn new(
        prev: &Previous,
        classified: &[Classified],
        real: &Path,
        layout_fingerprint: Option<[u8; 32]>,
    ) -> Option<Self> {
        let base = &prev.generation.base;
        let built_for = base
            .meta()
            .into_iter()
            .find_map(|(k, v)| (k == "root").then_some(v));
        if built_for.as_deref().map(Path::new) != Some(real)
            || base.header().layout_fingerprint != layout_fingerprint.unwrap_or([0; 32])
        {
            return None;
        }
        let mut present = std::collections::HashSet::with_capacity(classified.len());
        let (mut changed, mut changed_bytes) = (0usize, 0u64);
        for c in classified {
            let (name, size) = match c {
                Classified::Kept(k) if k.layer == Layer::Base && k.same_stat => {
                    present.insert(k.module.name.as_str());
                    continue;
                }
                Classified::Kept(k) => (k.module.name.as_str(), k.stat.size),
                Classified::Ready((m, _), _) => (m.name.as_str(), m.source_size),
                Classified::Compile { module, stat, .. } => (module.name.as_str(), stat.size),
                Classified::Failed(_) => continue,
            };
            present.insert(name);
            changed += 1;
            changed_bytes += size;
        }
        let (mut deleted, mut base_bytes) = (Vec::new(), 0u64);
        for m in base.modules() {
            let m = m.ok()?;
            base_bytes += m.source_size();
            if !present.contains(m.name()) {
                deleted.push(m.name().to_owned());
            }
        }
        let small = (changed + deleted.len()) * 4 <= base.len() && changed_bytes * 4 <= base_bytes;
        small.then_some(Self { deleted })
    }
}

/// Removes `path` if it exists.
fn remove_file(path: &Path) -> Result<(), BuildError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BuildError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Compiles sources in the target interpreter's worker processes.
struct Compiler<'a> {
    dir: &'a Path,
    interp: &'a Interpreter,
    options: &'a BuildOptions,
    version: marshal::PyVersion,
    opt_level: pyc::OptLevel,
    reporter: &'a dyn Reporter,
}

type ToCompile = (SourceModule, Stat, [u8; 32], PathBuf);

impl Compiler<'_> {
    /// Compiles `to_compile`, adding each module to `inputs` (or its problem to
    /// `summary`, and its name to `failed`), and each `.pyc` written to `written`.
    fn compile(
        &self,
        to_compile: Vec<ToCompile>,
        inputs: &mut Vec<(ModuleInput, bool)>,
        summary: &mut BuildSummary,
        written: &mut Vec<(String, String)>,
        failed: &mut Vec<String>,
    ) -> Result<(), BuildError> {
        let (dir, interp, options, version, reporter) = (
            self.dir,
            self.interp,
            self.options,
            self.version,
            self.reporter,
        );
        if to_compile.is_empty() {
            return Ok(());
        }
        // Only with `--write-pyc`; then, like compileall and unlike the import system,
        // `-B`/`PYTHONDONTWRITEBYTECODE` do not stop it. A `.pyc` whose path the record
        // cannot hold (not UTF-8) is not written.
        let root = crate::written::pyc_root(dir, interp.pycache_prefix.as_deref());
        let recordable = |cfile: &Path| {
            cfile
                .strip_prefix(&root)
                .ok()
                .and_then(Path::to_str)
                .map(str::to_owned)
        };
        let jobs: Vec<workers::CompileJob> = to_compile
            .iter()
            .map(|(m, _, _, cfile)| {
                let cfile =
                    (options.write_pyc && recordable(cfile).is_some()).then(|| cfile.clone());
                workers::CompileJob::new(m.source.clone(), cfile, self.opt_level)
            })
            .collect();
        let pool = workers::WorkerPool::start(
            &interp.executable,
            pool_size(options.jobs, to_compile.len(), COMPILES_PER_WORKER),
            workers::Timeouts {
                startup: Some(Duration::from_secs(30)),
                per_file: options.timeout,
            },
        )?;
        let results = pool.compile_all(jobs, |_, _| reporter.on_progress(1));
        let mut fail = |summary: &mut BuildSummary, module: &SourceModule, p: Problem| {
            reporter.on_problem(&p);
            summary.problems.push(p);
            failed.push(module.name.clone());
        };
        for ((module, stat, blake3, cfile), (_, result)) in to_compile.into_iter().zip(results) {
            match result {
                Ok(compiled) => {
                    if compiled.written {
                        if let Some(rel) = recordable(&cfile) {
                            written.push((rel, crate::written::digest_hex(&compiled.pyc)));
                        }
                    }
                    let Ok(header) = pyc::PycHeader::classify(&compiled.pyc, &interp.pyc_magic)
                    else {
                        let p = problem(&module.source, "the compiler returned a malformed .pyc");
                        fail(summary, &module, p);
                        continue;
                    };
                    let payload = &compiled.pyc[pyc::HEADER_LEN..];
                    if header.validate_timestamp(&stat.source).is_err()
                        || marshal::validate(payload, version).is_err()
                    {
                        let p = problem(
                            &module.source,
                            "the source changed while it was being compiled",
                        );
                        fail(summary, &module, p);
                        continue;
                    }
                    summary.compiled += 1;
                    summary.pyc_written += usize::from(compiled.written);
                    inputs.push((
                        input(&module, &stat, blake3, header.flags(), payload.to_vec()),
                        false,
                    ));
                }
                Err(failure) => {
                    let p = failure_problem(&failure);
                    fail(summary, &module, p);
                }
            }
        }
        Ok(())
    }
}

/// A delta written (or found identical) by a build.
#[derive(Clone, Debug)]
pub struct DeltaWritten {
    /// The delta file, beside its base.
    pub path: PathBuf,
    /// Modules it holds (changed or new since the base).
    pub modules: usize,
    /// Modules of the base it deletes.
    pub deleted: usize,
    /// Its size.
    pub bytes: u64,
}

/// Builds (or rebuilds) the pack of `dir` for `interp`.
pub fn build_pack(
    dir: &Path,
    interp: &Interpreter,
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<BuildSummary, BuildError> {
    let started = Instant::now();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BuildError::Missing(dir.to_path_buf()));
        }
        Err(source) => {
            return Err(BuildError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
        Ok(m) if !m.is_dir() => return Err(BuildError::NotADirectory(dir.to_path_buf())),
        Ok(_) => {}
    }
    if !options.sys_path_entry {
        check_not_a_package(dir, interp)?;
    }
    let version = marshal::PyVersion::from_magic(interp.pyc_magic)
        .ok_or(BuildError::UnsupportedMagic(interp.pyc_magic))?;
    let opt_level = pyc::OptLevel::try_from(options.optimize)
        .map_err(|_| BuildError::InvalidOptimize(options.optimize))?;
    let target = interp.target(options.optimize);
    let real = std::fs::canonicalize(dir).map_err(|source| BuildError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let candidates = ppyc_format::PackCandidates::of(
        dir,
        &target.cache_tag,
        options.optimize,
        interp.pycache_prefix.as_deref(),
    );
    let in_tree = candidates.local.clone();
    let in_cache = candidates.cache_pack().map(Path::to_path_buf);

    let previous = if options.incremental {
        // The generation that serves the directory (`spec/FORMAT.md` §2 "Precedence").
        let existing: Vec<PathBuf> = candidates.existing().into_iter().map(|(p, _)| p).collect();
        let candidates: Vec<&Path> = existing.iter().map(PathBuf::as_path).collect();
        previous_generation(&candidates, &target)
    } else {
        None
    };

    let walk_options = WalkOptions {
        extension_suffixes: interp.extension_suffixes.clone(),
        excludes: options.excludes.clone(),
    };
    let mut phase = Instant::now();
    let mut phases = Vec::new();
    let mut lap = |name: &'static str| {
        phases.push((name, phase.elapsed().as_secs_f64()));
        phase = Instant::now();
    };
    let (modules, issues) = walk(dir, &walk_options);
    lap("walk");
    reporter.on_start(dir, modules.len());
    let mut summary = BuildSummary {
        dir: dir.to_path_buf(),
        ..BuildSummary::default()
    };
    for issue in issues {
        let p = problem(&issue.path, issue.message);
        reporter.on_problem(&p);
        summary.problems.push(p);
    }

    let layout_fingerprint = options
        .images
        .as_ref()
        .map(|i| *blake3::hash(&i.layout).as_bytes());
    let context = Context {
        interp,
        version,
        optimize: opt_level,
        previous: previous.as_ref(),
        reuse_images: previous.as_ref().is_some_and(|p| {
            Some(p.generation.base.header().layout_fingerprint) == layout_fingerprint
        }),
    };
    let classified: Vec<Classified> = modules
        .into_par_iter()
        .map(|m| {
            let c = context.classify(m);
            if !matches!(c, Classified::Compile { .. }) {
                reporter.on_progress(1);
            }
            c
        })
        .collect();
    // A delta when the previous generation's base can take one and the change is small
    // (`spec/FORMAT.md` §13); else a whole pack (which also compacts a delta away).
    let mut delta = previous
        .as_ref()
        .and_then(|p| DeltaPlan::new(p, &classified, &real, layout_fingerprint));

    // Every module's input, and whether its image is settled; the modules the delta leaves
    // in the base.
    let mut inputs: Vec<(ModuleInput, bool)> = Vec::new();
    let mut in_base: Vec<Kept> = Vec::new();
    let mut to_compile = Vec::new();
    let mut failed_names: Vec<String> = Vec::new();
    let (kept, others): (Vec<Classified>, Vec<Classified>) = classified
        .into_iter()
        .partition(|c| matches!(c, Classified::Kept(_)));
    let mut to_materialize = Vec::new();
    for c in kept {
        if let Classified::Kept(k) = c {
            summary.reused += 1;
            if delta.is_some() && k.layer == Layer::Base && k.same_stat {
                in_base.push(k);
            } else {
                to_materialize.push(k);
            }
        }
    }
    let materialized: Vec<Classified> = to_materialize
        .into_par_iter()
        .map(|k| context.materialize(k))
        .collect();
    for c in others.into_iter().chain(materialized) {
        match c {
            Classified::Ready(input, origin) => {
                if origin == Origin::Pyc {
                    summary.from_pyc += 1;
                }
                inputs.push(input);
            }
            Classified::Kept(_) => unreachable!("kept modules are materialized above"),
            Classified::Failed(p) => {
                reporter.on_problem(&p);
                summary.problems.push(p);
            }
            Classified::Compile {
                module,
                stat,
                blake3,
                cfile,
            } => to_compile.push((module, stat, blake3, cfile)),
        }
    }
    lap("classify");
    // The `.pyc` files written in this build: path relative to `dir`, BLAKE3 of the bytes.
    let mut written: Vec<(String, String)> = Vec::new();
    let compiler = Compiler {
        dir,
        interp,
        options,
        version,
        opt_level,
        reporter,
    };
    let mut early = start_image_pool_early(
        interp,
        options,
        to_compile.len() + inputs.iter().filter(|(_, settled)| !settled).count(),
        !to_compile.is_empty(),
    );
    compiler.compile(
        to_compile,
        &mut inputs,
        &mut summary,
        &mut written,
        &mut failed_names,
    )?;
    lap("compile");
    summary.pyc_record = record_pycs(
        dir,
        interp.pycache_prefix.as_deref(),
        &in_tree,
        in_cache.as_deref(),
        written,
    )?;

    let meta_writer = || -> Result<PackWriter, BuildError> {
        let mut writer = PackWriter::new(target.clone())?;
        writer.set_meta("generator", concat!("ppyc ", env!("CARGO_PKG_VERSION")));
        writer.set_meta("root", &real.to_string_lossy());
        if !options.excludes.is_empty() {
            // For a rebuild with the same options (the runtime's background refresh): a
            // JSON array, so that any text survives (spec/FORMAT.md §4.2).
            writer.set_meta(
                "exclude",
                &serde_json::to_string(&options.excludes).unwrap_or_default(),
            );
        }
        if let Some(images) = &options.images {
            writer.set_layout(images.layout.clone());
        }
        Ok(writer)
    };
    // The directory listings, taken last: after every `.pyc` written (each `__pycache__`
    // created) and with the pack's own `__pycache__` in place, so that writing the pack
    // changes no directory it records.
    let listings = || {
        let pycache = in_tree.parent().unwrap_or(dir);
        if !pycache.is_dir() {
            let _ = probe_writable(pycache);
        }
        let recorded = previous
            .as_ref()
            .and_then(|p| p.generation.dirs().ok().flatten());
        crate::walk::listings(dir, recorded.as_ref())
    };

    if let (Some(plan), Some(prev)) = (delta.as_mut(), previous.as_ref()) {
        for name in failed_names.drain(..) {
            if prev.generation.base.get(&name).ok().flatten().is_some() {
                plan.deleted.push(name);
            }
        }
        plan.deleted.sort();
        plan.deleted.dedup();
        if let Some(images) = &options.images {
            make_images(
                interp,
                options,
                images,
                &mut inputs,
                &mut summary,
                early.take(),
            )?;
            let with_image = in_base
                .iter()
                .filter(|k| {
                    prev.generation
                        .base
                        .get(&k.module.name)
                        .ok()
                        .flatten()
                        .is_some_and(|m| m.image().ok().flatten().is_some())
                })
                .count();
            summary.images += with_image;
            summary.images_refused_count = inputs.len() + in_base.len() - summary.images;
            lap("images");
        }
        let dir_listings = listings();
        summary.dirs_recorded = dir_listings.dirs.len();
        summary.dirs_racy = dir_listings.racy;
        let dirs_body = ppyc_format::dirs::build(dir_listings.dirs.clone())?;
        lap("listings");
        let delta_file = ppyc_format::delta_path(&prev.path);
        let same_dirs = prev.generation.base.section(ppyc_format::SectionId::DIRS)
            == Some(dirs_body.as_slice());
        let finish = |mut summary: BuildSummary, phases| {
            summary.pack_path = prev.path.clone();
            summary.modules = in_base.len() + inputs.len();
            summary.bytes = prev.generation.base.file_size();
            summary.phases = phases;
            reporter.on_finish();
            summary.seconds = started.elapsed().as_secs_f64();
            summary
        };
        if inputs.is_empty() && plan.deleted.is_empty() && same_dirs {
            // The base alone is this generation: no delta (one left is removed).
            summary.unchanged = prev.generation.delta.is_none();
            lap("encode");
            if !summary.unchanged {
                remove_file(&delta_file)?;
                summary.compacted = true;
            }
            lap("write");
            return Ok(finish(summary, phases));
        }
        let mut writer = meta_writer()?;
        let header = prev.generation.base.header();
        writer.set_base(&ppyc_format::BaseRef {
            digest: header.digest,
            file_size: header.file_size,
            deleted: plan.deleted.clone(),
        })?;
        writer.set_dirs(dir_listings.dirs.clone())?;
        for (input, _) in &inputs {
            writer.add(input.clone())?;
        }
        let bytes = writer.finish()?;
        lap("encode");
        let outcome = if same_contents(&delta_file, &bytes) {
            summary.unchanged = true;
            Ok(())
        } else {
            ppyc_format::write_atomic(&delta_file, &bytes)
        };
        match outcome {
            Ok(()) => {
                summary.delta = Some(DeltaWritten {
                    path: delta_file,
                    modules: inputs.len(),
                    deleted: plan.deleted.len(),
                    bytes: bytes.len() as u64,
                });
                lap("write");
                return Ok(finish(summary, phases));
            }
            Err(e) => {
                // The base's directory no longer takes files: a whole pack, wherever one
                // can be written.
                summary.delta_error = Some(e.to_string());
                let rest: Vec<Classified> = std::mem::take(&mut in_base)
                    .into_par_iter()
                    .map(|k| context.materialize(k))
                    .collect();
                let mut again = Vec::new();
                for c in rest {
                    match c {
                        Classified::Ready(input, _) => inputs.push(input),
                        Classified::Failed(p) => {
                            reporter.on_problem(&p);
                            summary.problems.push(p);
                        }
                        Classified::Compile {
                            module,
                            stat,
                            blake3,
                            cfile,
                        } => again.push((module, stat, blake3, cfile)),
                        Classified::Kept(_) => unreachable!("materialized"),
                    }
                }
                compiler.compile(
                    again,
                    &mut inputs,
                    &mut summary,
                    &mut Vec::new(),
                    &mut Vec::new(),
                )?;
                summary.images = 0;
            }
        }
    }

    if let Some(images) = &options.images {
        make_images(
            interp,
            options,
            images,
            &mut inputs,
            &mut summary,
            early.take(),
        )?;
        lap("images");
    }
    let mut writer = meta_writer()?;
    for (input, _) in inputs {
        writer.add(input)?;
    }
    let dir_listings = listings();
    summary.dirs_recorded = dir_listings.dirs.len();
    summary.dirs_racy = dir_listings.racy;
    writer.set_dirs(dir_listings.dirs)?;
    lap("listings");
    summary.modules = writer.len();
    let bytes = writer.finish()?;
    lap("encode");
    summary.bytes = bytes.len() as u64;
    summary.compacted = previous
        .as_ref()
        .is_some_and(|p| p.generation.delta.is_some());
    drop(previous);
    // An identical pack is left alone: no rewrite, no new inode for running processes.
    // Only the one that serves the directory counts (`spec/FORMAT.md` §2 "Precedence"): an
    // identical pack that another, newer one hides is written again, and so comes first.
    // A delta beside the pack written (or left) is removed: the pack alone is the new
    // generation.
    if let Some((existing, _)) = candidates.existing().into_iter().next() {
        if same_contents(&existing, &bytes) {
            summary.unchanged = true;
            remove_file(&ppyc_format::delta_path(&existing))?;
            summary.pack_path = existing;
            lap("write");
            summary.phases = phases;
            reporter.on_finish();
            summary.seconds = started.elapsed().as_secs_f64();
            return Ok(summary);
        }
    }
    let pycache = in_tree.parent().unwrap_or(dir);
    let in_tree_result = probe_writable(pycache)
        .map_err(|e| format!("`{}`: {e}", pycache.display()))
        .and_then(|()| ppyc_format::write_atomic(&in_tree, &bytes).map_err(|e| e.to_string()));
    match in_tree_result {
        Ok(()) => summary.pack_path = in_tree,
        Err(in_tree_error) => {
            let Some(cache) = in_cache else {
                return Err(BuildError::NoWritableLocation {
                    dir: dir.to_path_buf(),
                    in_tree,
                    in_tree_error: in_tree_error.clone(),
                    cache_error: "no cache directory (neither XDG_CACHE_HOME nor HOME is set)"
                        .into(),
                });
            };
            if let Err(e) =
                create_private(&cache).and_then(|()| ppyc_format::write_atomic(&cache, &bytes))
            {
                return Err(BuildError::NoWritableLocation {
                    dir: dir.to_path_buf(),
                    in_tree,
                    in_tree_error: in_tree_error.clone(),
                    cache_error: e.to_string(),
                });
            }
            summary.cache_reason = Some(in_tree_error);
            summary.pack_path = cache;
        }
    }
    remove_file(&ppyc_format::delta_path(&summary.pack_path))?;
    lap("write");
    summary.phases = phases;
    reporter.on_finish();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interpreter(site: &Path) -> Interpreter {
        Interpreter {
            implementation: "cpython".into(),
            executable: PathBuf::from("/usr/bin/python3"),
            hexversion: 0x030c_00f0,
            cache_tag: "cpython-312".into(),
            pyc_magic: [0xcb, 0x0d, 0x0d, 0x0a],
            optimize: 0,
            extension_suffixes: vec![".abi3.so".into(), ".so".into()],
            site_packages: vec![site.to_path_buf()],
            pth_roots: Vec::new(),
            user_site: None,
            stdlib: PathBuf::from("/nonexistent/lib"),
            platstdlib: PathBuf::from("/nonexistent/lib"),
            prefix: PathBuf::from("/nonexistent"),
            base_prefix: PathBuf::from("/nonexistent"),
            dont_write_bytecode: false,
            pycache_prefix: None,
        }
    }

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }

    #[test]
    fn packages_and_portions_of_sys_path_directories_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let site = d.path().join("site-packages");
        for f in [
            "pkg/__init__.py",
            "pkg/sub/__init__.py",
            "pkg/data/x.py",
            "ns/inner/m.py",
            "extpkg/__init__.abi3.so",
            "elsewhere/pkg/__init__.py",
            "elsewhere/plain/m.py",
        ] {
            touch(&site, f);
        }
        touch(d.path(), "proj/src/m.py");
        let interp = interpreter(&site);
        let refused = |rel: &str| match check_not_a_package(&site.join(rel), &interp) {
            Err(BuildError::IsPackage {
                package, parent, ..
            }) => format!("package {package} in {}", parent.display()),
            Err(BuildError::InsideSysPath {
                package, parent, ..
            }) => format!("portion {package} in {}", parent.display()),
            Err(e) => format!("{e}"),
            Ok(()) => "ok".into(),
        };
        let s = site.display();
        assert_eq!(refused("pkg"), format!("package pkg in {s}"));
        assert_eq!(refused("pkg/sub"), format!("package pkg.sub in {s}"));
        assert_eq!(refused("extpkg"), format!("package extpkg in {s}"));
        assert_eq!(refused("pkg/data"), format!("portion pkg.data in {s}"));
        assert_eq!(refused("ns"), format!("portion ns in {s}"));
        assert_eq!(refused("ns/inner"), format!("portion ns.inner in {s}"));
        assert_eq!(
            refused("elsewhere/pkg"),
            format!("package elsewhere.pkg in {s}")
        );
        assert_eq!(
            refused("elsewhere/plain"),
            format!("portion elsewhere.plain in {s}")
        );
        assert_eq!(refused(""), "ok");
        // Not below a `sys.path` directory, no `__init__`: any directory may be packed.
        assert!(check_not_a_package(&d.path().join("proj/src"), &interp).is_ok());
        assert!(check_not_a_package(&d.path().join("proj"), &interp).is_ok());
        touch(d.path(), "proj/lib/__init__.py");
        touch(d.path(), "proj/lib/inner/__init__.py");
        let proj = d.path().join("proj");
        let refused_at = |p: &Path| match check_not_a_package(p, &interp) {
            Err(BuildError::IsPackage {
                package, parent, ..
            }) => format!("package {package} in {}", parent.display()),
            other => format!("{other:?}"),
        };
        assert_eq!(
            refused_at(&proj.join("lib/inner")),
            format!("package lib.inner in {}", proj.display())
        );
    }
}
