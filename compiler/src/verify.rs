//! `ppyc verify`: is a pack intact, and does every module still hold what its source
//! compiles to?

use std::path::{Path, PathBuf};
use std::time::Duration;

use ppyc_format::{Generation, Pack, delta_path};

use crate::interpreter::Interpreter;
use crate::report::Reporter;
use crate::{marshal, workers};

/// What is wrong with one module of a pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleIssue {
    /// Its record or payload is damaged.
    Damaged(String),
    /// Its source file is gone.
    MissingSource(PathBuf),
    /// Its source changed since it was packed.
    Stale(PathBuf),
    /// Its source now fails to compile.
    CompileFailed(String),
    /// The stored code differs from what the source compiles to.
    Differs(PathBuf),
}

impl std::fmt::Display for ModuleIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Damaged(e) => write!(f, "damaged: {e}"),
            Self::MissingSource(p) => write!(f, "source missing: `{}`", p.display()),
            Self::Stale(p) => write!(f, "stale: `{}` changed since it was packed", p.display()),
            Self::CompileFailed(e) => write!(f, "source no longer compiles: {e}"),
            Self::Differs(p) => write!(
                f,
                "stored code differs from what `{}` compiles to",
                p.display()
            ),
        }
    }
}

/// The result of verifying one pack.
#[derive(Debug, Default)]
pub struct VerifyOutcome {
    /// Modules checked.
    pub modules: usize,
    /// Integrity problems of the pack as a whole (section digests, index order).
    pub integrity: Vec<String>,
    /// Problems of single modules, by module name (sorted).
    pub issues: Vec<(String, ModuleIssue)>,
}

impl VerifyOutcome {
    /// Whether nothing is wrong.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.integrity.is_empty() && self.issues.is_empty()
    }
}

/// Why a pack could not be verified at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Format(#[from] ppyc_format::FormatError),
    #[error(
        "the pack was built for {pack} (pyc magic {pack_magic:02x?}) but this interpreter is \
         {this} (pyc magic {this_magic:02x?}); verify it with that interpreter (`--python`)"
    )]
    ForeignPack {
        pack: String,
        pack_magic: [u8; 4],
        this: String,
        this_magic: [u8; 4],
    },
    #[error("cannot tell which directory `{0}` belongs to (no `root` in its META section)")]
    UnknownRoot(PathBuf),
    #[error(
        "`{pack}` was built for `{built}`, not for `{dir}` (copied from there?): the import \
         hook does not use it; `ppyc compile {dir}` builds this directory's own"
    )]
    AnotherDirectory {
        pack: PathBuf,
        built: PathBuf,
        dir: PathBuf,
    },
    #[error(transparent)]
    Workers(#[from] workers::WorkerError),
}

/// The directory a pack was built from: `D` for `D/__pycache__/__ppyc__.*.ppyc`, else the
/// `root` recorded in its `META` section.
#[must_use]
pub fn pack_root(pack_path: &Path, pack: &Pack) -> Option<PathBuf> {
    let parent = pack_path.parent()?;
    if parent.file_name().is_some_and(|n| n == "__pycache__") {
        return parent.parent().map(Path::to_path_buf);
    }
    pack.meta()
        .into_iter()
        .find(|(k, _)| k == "root")
        .map(|(_, v)| PathBuf::from(v))
}

/// Verifies the pack at `pack_path` with `interp` (which must be its target).
pub fn verify_pack(
    pack_path: &Path,
    interp: &Interpreter,
    jobs: usize,
    timeout: Option<Duration>,
    reporter: &dyn Reporter,
) -> Result<VerifyOutcome, VerifyError> {
    // The generation (`spec/FORMAT.md` §13): the pack and the delta that completes it.
    let (generation, delta_problem) = Generation::open(pack_path)?;
    let pack = &generation.base;
    let target = &pack.header().target;
    if target.pyc_magic != interp.pyc_magic {
        return Err(VerifyError::ForeignPack {
            pack: target.cache_tag.clone(),
            pack_magic: target.pyc_magic,
            this: interp.cache_tag.clone(),
            this_magic: interp.pyc_magic,
        });
    }
    let version = marshal::PyVersion::from_magic(interp.pyc_magic).ok_or_else(|| {
        VerifyError::ForeignPack {
            pack: target.cache_tag.clone(),
            pack_magic: target.pyc_magic,
            this: interp.cache_tag.clone(),
            this_magic: interp.pyc_magic,
        }
    })?;
    let root = pack_root(pack_path, pack)
        .ok_or_else(|| VerifyError::UnknownRoot(pack_path.to_path_buf()))?;
    // The rule the hook applies (`spec/IMPORT.md`): a pack serves only the directory it
    // was built for.
    let built = pack
        .meta()
        .into_iter()
        .find_map(|(k, v)| (k == "root").then(|| PathBuf::from(v)));
    if let (Some(built), Ok(real)) = (built, std::fs::canonicalize(&root)) {
        if built != real {
            return Err(VerifyError::AnotherDirectory {
                pack: pack_path.to_path_buf(),
                built,
                dir: root,
            });
        }
    }
    let optimize = crate::pyc::OptLevel::try_from(target.optimize).map_err(|_| {
        VerifyError::Format(ppyc_format::FormatError::InvalidTarget("optimize level"))
    })?;
    reporter.on_start(&root, generation.len());

    let report = pack.verify();
    let mut outcome = VerifyOutcome {
        modules: report.modules_checked,
        integrity: report.problems.iter().map(ToString::to_string).collect(),
        issues: Vec::new(),
    };
    if let Some(delta) = &generation.delta {
        let report = delta.verify();
        outcome.modules += report.modules_checked;
        outcome.integrity.extend(
            report
                .problems
                .iter()
                .map(|e| format!("its delta `{}`: {e}", delta_path(pack_path).display())),
        );
    }
    if let Some(why) = delta_problem {
        outcome.integrity.push(format!(
            "its delta `{}` is not used: {why}",
            delta_path(pack_path).display()
        ));
    }
    // Sources still matching their record get compiled and compared.
    let mut to_compare = Vec::new();
    for module in generation.modules() {
        let Ok((_, module)) = module else {
            reporter.on_progress(1);
            continue; // already in `integrity`
        };
        let name = module.name().to_owned();
        let source = root.join(module.source_path());
        let issue = match (module.payload(), std::fs::read(&source)) {
            (Err(e), _) => Some(ModuleIssue::Damaged(e.to_string())),
            (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Some(ModuleIssue::MissingSource(source.clone()))
            }
            (_, Err(e)) => Some(ModuleIssue::CompileFailed(format!(
                "{}: cannot read: {e}",
                source.display()
            ))),
            (Ok(_), Ok(bytes)) if *blake3::hash(&bytes).as_bytes() != *module.source_blake3() => {
                Some(ModuleIssue::Stale(source.clone()))
            }
            (Ok(payload), Ok(_)) => {
                to_compare.push((name.clone(), source, payload));
                None
            }
        };
        if let Some(issue) = issue {
            reporter.on_progress(1);
            outcome.issues.push((name, issue));
        }
    }
    if !to_compare.is_empty() {
        let pool = workers::WorkerPool::start(
            &interp.executable,
            jobs.clamp(1, to_compare.len()),
            workers::Timeouts {
                startup: Some(Duration::from_secs(30)),
                per_file: timeout,
            },
        )?;
        let jobs = to_compare
            .iter()
            .map(|(_, source, _)| workers::CompileJob::new(source.clone(), None, optimize))
            .collect();
        let results = pool.compile_all(jobs, |_, _| reporter.on_progress(1));
        for ((name, source, stored), (_, result)) in to_compare.into_iter().zip(results) {
            match result {
                Err(failure) => outcome.issues.push((
                    name,
                    ModuleIssue::CompileFailed(
                        crate::compile::failure_problem(&failure).to_string(),
                    ),
                )),
                Ok(compiled) => {
                    let fresh = compiled
                        .pyc
                        .get(crate::pyc::HEADER_LEN..)
                        .unwrap_or_default();
                    if !marshal::same_code(stored, fresh, version) {
                        outcome.issues.push((name, ModuleIssue::Differs(source)));
                    }
                }
            }
        }
    }
    outcome.issues.sort_by(|a, b| a.0.cmp(&b.0));
    reporter.on_finish();
    Ok(outcome)
}
