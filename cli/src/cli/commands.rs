//! The commands: `compile`, `inspect`, `verify`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use ppyc_compiler::compile::{BuildError, BuildOptions, ImageOptions, STDLIB_EXCLUDES, build_pack};
use ppyc_compiler::interpreter::Interpreter;
use ppyc_compiler::marshal;
use ppyc_compiler::verify::verify_pack;
use ppyc_format::Pack;
use pyo3::prelude::*;

use super::args::{CompileArgs, InspectArgs, PackMode, VerifyArgs};
use super::progress::BarReporter;
use super::{FAILURE, SUCCESS, human_bytes, out, pack_of_dir};

fn jobs(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// `texts` without repeats, in their first order (`--exclude` given twice, or given again
/// by a background refresh that read a pack's recorded excludes).
fn unique(texts: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in texts {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// One directory to pack.
struct Job {
    dir: PathBuf,
    excludes: Vec<String>,
    /// Named on the command line (a missing one is an error, not a note).
    explicit: bool,
    /// Known to be a `sys.path` entry (put there by a `.pth` file): never refused as a
    /// package directory.
    sys_path_entry: bool,
}

pub(crate) fn compile(py: Python<'_>, args: &CompileArgs) -> anyhow::Result<i32> {
    let timeout = args.timeout.0;
    let interp = crate::interp::current(py).context("cannot describe this interpreter")?;
    let optimize = args.optimize.unwrap_or(interp.optimize);
    let stdlib_real = std::fs::canonicalize(&interp.stdlib).ok();
    let stdlib_excludes = || STDLIB_EXCLUDES.iter().map(|s| (*s).to_owned());
    let mut plan: Vec<Job> = args
        .paths
        .iter()
        .map(|p| Job {
            dir: p.clone(),
            // The standard library named by its path is packed as `--stdlib` packs it (a
            // background refresh names it so).
            excludes: if stdlib_real.is_some() && std::fs::canonicalize(p).ok() == stdlib_real {
                unique(stdlib_excludes().chain(args.exclude.iter().cloned()))
            } else {
                unique(args.exclude.iter().cloned())
            },
            explicit: true,
            sys_path_entry: false,
        })
        .collect();
    if args.paths.is_empty() {
        plan.extend(interp.site_packages.iter().map(|p| Job {
            dir: p.clone(),
            excludes: args.exclude.clone(),
            explicit: false,
            sys_path_entry: false,
        }));
        // Path-based editable installs and `.egg` directories: `.pth` files put them on
        // sys.path, and they hold installed code.
        plan.extend(interp.pth_roots.iter().map(|p| Job {
            dir: p.clone(),
            excludes: args.exclude.clone(),
            explicit: false,
            sys_path_entry: true,
        }));
    }
    if args.stdlib {
        let excludes = unique(stdlib_excludes().chain(args.exclude.iter().cloned()));
        plan.push(Job {
            dir: interp.stdlib.clone(),
            excludes,
            explicit: false,
            sys_path_entry: false,
        });
    }
    let (images, marshal_reason) = match args.mode {
        PackMode::Marshal => (None, Some("--mode marshal".to_owned())),
        mode => match image_support(py)? {
            Ok((layout, native)) => (Some(ImageOptions { layout, native }), None),
            Err(reason) if mode == PackMode::Image => {
                eprintln!("error: image mode is not possible with this interpreter: {reason}");
                return Ok(FAILURE);
            }
            Err(reason) => (None, Some(reason)),
        },
    };
    let reporter = BarReporter::new(args.quiet);
    let quiet = args.quiet;
    let verbose = args.verbose;
    let strict = args.strict;
    let jobs = jobs(args.jobs);
    let incremental = !args.force;
    let write_pyc = args.write_pyc;
    let sys_path_entry = args.sys_path_entry;
    py.detach(move || {
        let started = Instant::now();
        let mut failed = false;
        let (mut packs, mut modules, mut skipped, mut bytes) = (0usize, 0usize, 0usize, 0u64);
        for job in &plan {
            if !job.explicit && !job.dir.is_dir() {
                if !quiet {
                    out!("note: skipping `{}`: no such directory", job.dir.display());
                }
                continue;
            }
            let options = BuildOptions {
                optimize,
                excludes: job.excludes.clone(),
                jobs,
                timeout,
                incremental,
                write_pyc,
                images: images.clone(),
                sys_path_entry: sys_path_entry || job.sys_path_entry,
            };
            match build_pack(&job.dir, &interp, &options, &reporter) {
                Ok(s) => {
                    packs += 1;
                    modules += s.modules;
                    skipped += s.problems.len();
                    bytes += s.bytes;
                    if let Some(reason) = &s.cache_reason {
                        eprintln!(
                            "note: cannot write to `{}/__pycache__` ({reason}); the pack is in the user cache",
                            job.dir.display()
                        );
                    }
                    if let Some(why) = &s.delta_error {
                        eprintln!(
                            "note: cannot write a delta beside `{}` ({why}); a whole pack was written instead",
                            s.pack_path.display()
                        );
                    }
                    if !quiet {
                        match &s.delta {
                            Some(d) => out!(
                                "Packed {} {} of `{}`: `{}` ({}) and its delta `{}` ({}: {} changed or new, {} deleted) in {:.2}s",
                                s.modules,
                                if s.modules == 1 { "module" } else { "modules" },
                                s.dir.display(),
                                s.pack_path.display(),
                                human_bytes(s.bytes),
                                d.path.display(),
                                human_bytes(d.bytes),
                                d.modules,
                                d.deleted,
                                s.seconds
                            ),
                            None => out!(
                                "Packed {} {} of `{}` into `{}` ({}) in {:.2}s",
                                s.modules,
                                if s.modules == 1 { "module" } else { "modules" },
                                s.dir.display(),
                                s.pack_path.display(),
                                human_bytes(s.bytes),
                                s.seconds
                            ),
                        }
                        if s.compacted {
                            out!("  the previous delta is gone: the pack alone holds every module (compacted)");
                        }
                        let pyc_written =
                            if write_pyc { format!(" ({} .pyc written)", s.pyc_written) } else { String::new() };
                        out!(
                            "  {} from .pyc, {} compiled{pyc_written}, {} reused from the previous pack, {} skipped",
                            s.from_pyc,
                            s.compiled,
                            s.reused,
                            s.problems.len()
                        );
                        if write_pyc {
                            if let Some(record) = &s.pyc_record {
                                out!("  .pyc files written by ppyc are recorded in `{}` (`ppyc clean` removes them)", record.display());
                            }
                        }
                        if images.is_some() {
                            let made = if s.images_made > 0 {
                                format!(" ({} made now)", s.images_made)
                            } else {
                                String::new()
                            };
                            out!("  image mode: {} of {} modules have an image{made}", s.images, s.modules);
                            if s.images_refused_count > 0 {
                                out!(
                                    "  {} without an image (served with marshal.loads): {}",
                                    s.images_refused_count,
                                    s.images_refused.join("; ")
                                );
                            }
                        } else if let Some(reason) = &marshal_reason {
                            out!("  marshal mode: {reason}");
                        }
                        if s.dirs_racy > 0 {
                            out!(
                                "  {} directory listings recorded; {} left out (changed too recently to be \
                                 trusted: they are listed at import time until the next build)",
                                s.dirs_recorded,
                                s.dirs_racy
                            );
                        } else if verbose {
                            out!("  {} directory listings recorded", s.dirs_recorded);
                        }
                        if s.unchanged && incremental {
                            out!("  the pack was already up to date: not rewritten");
                        } else if s.unchanged {
                            out!("  rebuilt from scratch (--force): identical to the pack on disk, which is left as it is");
                        }
                    }
                    if verbose {
                        let phases: Vec<String> =
                            s.phases.iter().map(|(name, t)| format!("{name} {:.1} ms", t * 1e3)).collect();
                        out!("  phases: {}", phases.join(", "));
                    }
                }
                Err(e) => {
                    failed = true;
                    match e {
                        BuildError::Missing(_)
                        | BuildError::NotADirectory(_)
                        | BuildError::IsPackage { .. }
                        | BuildError::InsideSysPath { .. }
                        | BuildError::NoWritableLocation { .. } => eprintln!("error: {e}"),
                        other => eprintln!("error: cannot pack `{}`: {other}", job.dir.display()),
                    }
                }
            }
        }
        if !quiet && packs > 1 {
            out!(
                "Total: {packs} packs, {modules} modules, {skipped} skipped, {} in {:.2}s",
                human_bytes(bytes),
                started.elapsed().as_secs_f64()
            );
        }
        if strict && skipped > 0 {
            eprintln!("error: {skipped} module(s) could not be packed (--strict)");
            failed = true;
        }
        Ok(if failed { FAILURE } else { SUCCESS })
    })
}

fn describe(h: &ppyc_format::Header) -> String {
    let v = h.target.hexversion;
    format!(
        "{} (Python {}.{}.{}, hexversion {v:#010x}), pyc magic {}, optimize {}",
        h.target.cache_tag,
        v >> 24,
        (v >> 16) & 0xff,
        (v >> 8) & 0xff,
        h.target
            .pyc_magic
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        h.target.optimize
    )
}

/// The pack a `PACK|DIR` argument names: the file, or the directory's pack for this
/// interpreter; else what to say (a missing file, a directory without a pack).
fn named_pack(
    arg: &std::path::Path,
    interp: &Interpreter,
    optimize: u8,
) -> Result<PathBuf, String> {
    if arg.is_dir() {
        let pack = pack_of_dir(arg, interp, optimize);
        if std::fs::symlink_metadata(&pack).is_err() {
            let (level, flag) = if optimize == 0 {
                (String::new(), String::new())
            } else {
                (format!(" at -O {optimize}"), format!("-O {optimize} "))
            };
            return Err(format!(
                "no pack here: `{}` has no pack for {}{level} (looked for `{}`); run `ppyc compile {flag}{}`",
                arg.display(),
                interp.cache_tag,
                pack.display(),
                arg.display()
            ));
        }
        return Ok(pack);
    }
    if std::fs::symlink_metadata(arg).is_err() && !arg.exists() {
        return Err(format!("no such file or directory: `{}`", arg.display()));
    }
    Ok(arg.to_path_buf())
}

pub(crate) fn inspect(py: Python<'_>, args: &InspectArgs) -> anyhow::Result<i32> {
    let interp = crate::interp::current(py).context("cannot describe this interpreter")?;
    let optimize = args.optimize.unwrap_or(interp.optimize);
    let path = match named_pack(&args.pack, &interp, optimize) {
        Ok(path) => path,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(FAILURE);
        }
    };
    let pack =
        Pack::open(&path).with_context(|| format!("cannot open pack `{}`", path.display()))?;
    let h = pack.header();
    let Some(name) = &args.module else {
        out!("Pack: {}", path.display());
        out!(
            "  format: read version {}, write version {}",
            h.read_version,
            h.write_version
        );
        out!("  target: {}", describe(h));
        out!(
            "  size: {} ({} bytes), {} modules",
            human_bytes(h.file_size),
            h.file_size,
            h.module_count
        );
        for (k, v) in pack.meta() {
            out!("  {k}: {v}");
        }
        match pack.base() {
            Ok(Some(base)) => out!(
                "  a delta (spec/FORMAT.md §13) of the pack of header digest {}…, {} bytes; deleted: {}",
                base.digest[..8]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
                base.file_size,
                if base.deleted.is_empty() {
                    "none".to_owned()
                } else {
                    base.deleted.join(", ")
                }
            ),
            Ok(None) => match ppyc_format::open_delta(&path, &pack) {
                ppyc_format::DeltaState::Paired(delta) => out!(
                    "  delta: `{}` ({}, {} modules changed or new since this pack was built, {} deleted)",
                    ppyc_format::delta_path(&path).display(),
                    human_bytes(delta.file_size()),
                    delta.len(),
                    delta.base().ok().flatten().map_or(0, |b| b.deleted.len())
                ),
                ppyc_format::DeltaState::Unusable(why) => out!(
                    "  delta: `{}` is not used: {why}",
                    ppyc_format::delta_path(&path).display()
                ),
                ppyc_format::DeltaState::Absent | ppyc_format::DeltaState::Unpaired => {}
            },
            Err(e) => out!("  BASE section damaged: {e}"),
        }
        describe_images(py, &pack);
        out!("Sections:");
        out!(
            "  {:<4}  {:>10}  {:>10}  {:<8}  BLAKE3",
            "ID",
            "OFFSET",
            "LENGTH",
            "FLAGS"
        );
        for s in pack.sections() {
            let digest: String = s.digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            let flags = if s.is_required() {
                "required"
            } else {
                "optional"
            };
            out!(
                "  {:<4}  {:>10}  {:>10}  {flags:<8}  {digest}…",
                s.id.to_string(),
                s.offset,
                s.length
            );
        }
        let mut rows = Vec::with_capacity(pack.len());
        let mut damaged = 0;
        for m in pack.modules() {
            match m {
                Ok(m) => rows.push((m.name(), m.is_package(), m.payload_len(), m.source_path())),
                Err(_) => damaged += 1,
            }
        }
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let width = rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        out!("Modules:");
        out!("  {:<width$}  {:<7}  {:>9}  SOURCE", "NAME", "KIND", "CODE");
        for (name, is_package, len, source) in rows {
            let kind = if is_package { "package" } else { "module" };
            out!(
                "  {name:<width$}  {kind:<7}  {:>9}  {source}",
                human_bytes(len)
            );
        }
        if damaged > 0 {
            out!("  ({damaged} damaged records; run `ppyc verify`)");
            return Ok(FAILURE);
        }
        return Ok(SUCCESS);
    };
    let Some(m) = pack
        .get(name)
        .with_context(|| format!("cannot read module `{name}`"))?
    else {
        eprintln!("error: `{name}` is not in `{}`", path.display());
        return Ok(FAILURE);
    };
    out!("Module: {}", m.name());
    out!(
        "  kind: {}",
        if m.is_package() { "package" } else { "module" }
    );
    out!(
        "  source: {} ({} bytes, mtime {} ns)",
        m.source_path(),
        m.source_size(),
        m.source_mtime_ns()
    );
    out!(
        "  source BLAKE3: {}",
        m.source_blake3()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    out!("  pyc flags: {:#x}", m.pyc_flags());
    match m.image() {
        Ok(Some(image)) => out!(
            "  image: {} of objects ({} stored{}), {} of relocation data",
            human_bytes(image.objects_len() as u64),
            human_bytes(image.objects.len() as u64),
            if image.compressed_from.is_some() {
                ", LZ4"
            } else {
                ""
            },
            human_bytes(image.aux.len() as u64)
        ),
        Ok(None) if h.layout_fingerprint != [0; 32] => {
            out!("  image: none (served with marshal.loads)");
        }
        Ok(None) => {}
        Err(e) => out!("  image: unusable ({e})"),
    }
    let payload = m
        .payload()
        .with_context(|| format!("cannot read the code of `{name}`"))?;
    out!("  code: {} bytes of marshal data", payload.len());
    let version = marshal::PyVersion::from_magic(h.target.pyc_magic)
        .with_context(|| format!("unknown pyc magic in `{}`", path.display()))?;
    let code = marshal::parse(payload, version)
        .with_context(|| format!("cannot decode the code of `{name}`"))?;
    for line in marshal::summary(&code).lines() {
        out!("  {line}");
    }
    Ok(SUCCESS)
}

/// `ppyc verify --deep`: every image of the pack at `path`, loaded in a fresh process of
/// `python` (ppyc's hook off), against `marshal.loads` of the same payload
/// (`python/ppyc/_deep.py`). Prints what that process prints; whether it found nothing.
fn verify_deep(python: &std::path::Path, path: &std::path::Path) -> bool {
    let Ok(pack) = Pack::open(path) else {
        return true; // `verify_pack` reports why
    };
    if pack.header().layout_fingerprint == [0; 32] {
        out!("{}: no images to compare (a marshal pack)", path.display());
        return true;
    }
    let root = ppyc_compiler::verify::pack_root(path, &pack);
    let mut command = std::process::Command::new(python);
    command.args(["-m", "ppyc._deep"]).arg(path);
    if let Some(root) = root {
        command.arg(root);
    }
    match command.env("PPYC_DISABLE", "1").output() {
        Ok(output) => {
            let _ = std::io::stdout().write_all(&output.stdout);
            let _ = std::io::stderr().write_all(&output.stderr);
            output.status.success()
        }
        Err(e) => {
            eprintln!("error: cannot run `{}`: {e}", python.display());
            false
        }
    }
}

/// The image lines of `ppyc inspect PACK`: what the pack holds and what this process
/// would do with it.
fn describe_images(py: Python<'_>, pack: &Pack) {
    let fingerprint = pack.header().layout_fingerprint;
    if fingerprint == [0; 32] {
        out!("  mode: marshal (the pack has no images)");
        return;
    }
    let with_image = pack
        .modules()
        .filter(|m| m.as_ref().is_ok_and(|m| matches!(m.image(), Ok(Some(_)))))
        .count();
    let hex: String = fingerprint[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    out!(
        "  images: {with_image} of {} modules, layout fingerprint {hex}…",
        pack.len()
    );
    if let Ok(Some(images)) = pack.images() {
        let layout = String::from_utf8_lossy(images.layout);
        let get = |key: &str| {
            layout
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or("?")
                .to_owned()
        };
        out!(
            "  made by: CPython {} ({}, {}), {} identifiers",
            get("version"),
            get("build"),
            get("platform"),
            images.names.len()
        );
    }
    match mode_here(py, pack) {
        Ok((mode, None)) => out!("  mode here: {mode}"),
        Ok((mode, Some(reason))) => out!("  mode here: {mode} ({reason})"),
        Err(e) => out!("  mode here: unknown ({e})"),
    }
}

/// Whether this interpreter can make and load images (`ppyc._native.image_support`): its
/// layout description and the path of `ppyc._native` (which image workers load), or why
/// not.
fn image_support(py: Python<'_>) -> anyhow::Result<Result<(Vec<u8>, PathBuf), String>> {
    let native = py
        .import("ppyc._native")
        .context("cannot load ppyc._native")?;
    let (ok, note, layout): (bool, String, Option<Vec<u8>>) = native
        .call_method0("image_support")
        .and_then(|r| r.extract())
        .context("cannot ask ppyc._native for image support")?;
    if !ok {
        return Ok(Err(note));
    }
    let path: PathBuf = native
        .getattr("__file__")
        .and_then(|f| f.extract())
        .context("cannot locate ppyc's extension")?;
    Ok(Ok((layout.unwrap_or_default(), path)))
}

/// `(mode, reason)` of the pack in this process, as the import hook would decide.
fn mode_here(py: Python<'_>, pack: &Pack) -> PyResult<(String, Option<String>)> {
    let Some(path) = pack.path() else {
        return Ok(("marshal".into(), Some("the pack is not a file".into())));
    };
    py.import("ppyc._native")?
        .getattr("Pack")?
        .call1((path.to_string_lossy().into_owned(),))?
        .call_method0("mode_info")?
        .extract()
}

fn verify_interp(py: Python<'_>) -> anyhow::Result<Interpreter> {
    crate::interp::current(py).context("cannot describe this interpreter")
}

pub(crate) fn verify(py: Python<'_>, args: &VerifyArgs) -> anyhow::Result<i32> {
    let timeout = args.timeout.0;
    let interp = verify_interp(py)?;
    let optimize = args.optimize.unwrap_or(interp.optimize);
    let packs: Vec<PathBuf> = if args.packs.is_empty() {
        interp
            .site_packages
            .iter()
            .chain(&interp.pth_roots)
            .map(|d| pack_of_dir(d, &interp, optimize))
            .filter(|p| p.exists())
            .collect()
    } else {
        let mut found = Vec::new();
        for arg in &args.packs {
            match named_pack(arg, &interp, optimize) {
                Ok(path) => found.push(path),
                Err(message) => {
                    eprintln!("error: {message}");
                    return Ok(FAILURE);
                }
            }
        }
        found
    };
    if packs.is_empty() {
        eprintln!("error: no pack to verify (run `ppyc compile` first, or name a pack)");
        return Ok(FAILURE);
    }
    let jobs = jobs(args.jobs);
    let reporter = BarReporter::new(false);
    let deep = args.deep;
    py.detach(move || {
        let mut failed = false;
        for path in &packs {
            if deep && !verify_deep(&interp.executable, path) {
                failed = true;
            }
            match verify_pack(path, &interp, jobs, timeout, &reporter) {
                Ok(outcome) => {
                    for problem in &outcome.integrity {
                        out!("{}: {problem}", path.display());
                    }
                    for (name, issue) in &outcome.issues {
                        out!("{name}: {issue}");
                    }
                    if outcome.is_ok() {
                        out!("{}: OK, {} modules match their sources", path.display(), outcome.modules);
                    } else {
                        failed = true;
                        out!(
                            "{}: {} integrity problems, {} of {} modules stale, missing or different",
                            path.display(),
                            outcome.integrity.len(),
                            outcome.issues.len(),
                            outcome.modules
                        );
                    }
                }
                Err(e) => {
                    failed = true;
                    eprintln!("error: `{}`: {e}", path.display());
                }
            }
        }
        Ok(if failed { FAILURE } else { SUCCESS })
    })
}
