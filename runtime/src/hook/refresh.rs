//! Packs that stay fresh on their own (`spec/IMPORT.md`, "Staying fresh").
//!
//! When the hook leaves a module to the stock importer because it changed since the pack
//! was built, or is new beside it, it starts (at most once per pack and process, and at
//! most once per pack and interval across processes) a detached, low-priority
//! `ppyc compile` of the pack's directory: `python/ppyc/_refresh.py`, which takes a lock so
//! that only one runs, and writes its state and log in the user cache. The process that
//! started it does not wait for it; the next processes use the new pack (the one written
//! last serves, `spec/FORMAT.md` §2).
//!
//! What it costs the importing process: nothing while every module is served; on the first
//! qualifying fallback of a pack, a `stat` of the pack's stamp file, and when a refresh is
//! due, writing the stamp and one `fork` of a tiny intermediate child (which detaches the
//! refresh and exits at once; the importing process reaps it, so no child of its own is
//! left for its `wait()` calls to see).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The default interval between two refreshes of one pack.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Whether and how often packs are refreshed, read once at install.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// `None`: on; else why it is off.
    pub(crate) off: Option<String>,
    pub(crate) interval: Duration,
}

impl Settings {
    pub(crate) fn enabled(&self) -> bool {
        self.off.is_none()
    }
}

/// Where the state of the refresh of `root`'s pack for `cache_tag` and `optimize` lives:
/// `<cache>/refresh/<name>-<hash>.<tag>[.opt-N]`, to which `.stamp`, `.lock`, `.json` and
/// `.log` are appended (`spec/IMPORT.md`). `None` without a cache directory or when `root`
/// does not resolve.
pub(crate) fn state_base(root: &Path, cache_tag: &str, optimize: u8) -> Option<PathBuf> {
    let cache = ppyc_format::cache_dir()?;
    let real = std::fs::canonicalize(root).ok()?;
    Some(ppyc_format::refresh_state_base(
        &cache, &real, cache_tag, optimize,
    ))
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// What became of the decision to refresh a pack, for `ppyc.stats()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Started,
    NotDue,
    NotPossible(String),
}

impl Decision {
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Started => "started".to_owned(),
            Self::NotDue => "not due: refreshed less than an interval ago".to_owned(),
            Self::NotPossible(why) => format!("not possible: {why}"),
        }
    }
}

/// What the child needs: the interpreter, and where the `ppyc` package is.
pub(crate) struct Launch<'a> {
    pub(crate) python: &'a Path,
    /// The directory holding the `ppyc` package (appended to the child's `sys.path` when
    /// missing, so that a `ppyc` found through `PYTHONPATH` is found again).
    pub(crate) package_parent: &'a Path,
    pub(crate) root: &'a Path,
    pub(crate) cache_tag: &'a str,
    pub(crate) optimize: u8,
    /// This process's `sys.pycache_prefix`, passed on (`-X pycache_prefix`) so that the
    /// child writes the pack where this process looks for it.
    pub(crate) pycache_prefix: Option<&'a Path>,
    pub(crate) interval: Duration,
}

/// Starts the refresh of `launch.root`'s pack unless one ran less than an interval ago.
pub(crate) fn start(launch: &Launch<'_>) -> Decision {
    let Some(base) = state_base(launch.root, launch.cache_tag, launch.optimize) else {
        return Decision::NotPossible("no user cache directory".into());
    };
    let Some(dir) = base.parent() else {
        return Decision::NotPossible("no user cache directory".into());
    };
    let stamp = with_suffix(&base, ".stamp");
    if let Ok(m) = std::fs::metadata(&stamp) {
        let recent = m
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_none_or(|age| age < launch.interval);
        if recent {
            return Decision::NotDue;
        }
    }
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        return Decision::NotPossible(format!("cannot create `{}`: {e}", dir.display()));
    }
    // The same rule as for user-cache packs (spec/SECURITY.md): only a directory of this
    // user's that nobody else can write.
    let me = crate::ffi::raw::effective_uid();
    let private = std::fs::metadata(dir).is_ok_and(|m| m.uid() == me && m.mode() & 0o022 == 0);
    if !private {
        return Decision::NotPossible(format!(
            "`{}` does not belong to this user, or others can write it",
            dir.display()
        ));
    }
    // The stamp first: processes starting meanwhile see it and do not start another.
    if let Err(e) = std::fs::write(&stamp, b"") {
        return Decision::NotPossible(format!("cannot write `{}`: {e}", stamp.display()));
    }
    let code = format!(
        "import sys; p = {}; p in sys.path or sys.path.append(p); \
         from ppyc._refresh import main; sys.exit(main(sys.argv[1:]))",
        python_str(launch.package_parent.as_os_str())
    );
    let prefix_option = launch.pycache_prefix.map(|p| {
        let mut option = std::ffi::OsString::from("pycache_prefix=");
        option.push(p.as_os_str());
        option
    });
    let mut args: Vec<&OsStr> = vec![launch.python.as_os_str()];
    if let Some(option) = &prefix_option {
        args.extend([OsStr::new("-X"), option.as_os_str()]);
    }
    args.extend([
        OsStr::new("-c"),
        OsStr::new(&code),
        launch.root.as_os_str(),
        OsStr::new(if launch.optimize == 0 {
            "0"
        } else if launch.optimize == 1 {
            "1"
        } else {
            "2"
        }),
        base.as_os_str(),
    ]);
    match crate::ffi::process::spawn_detached(&args) {
        Ok(()) => Decision::Started,
        Err(e) => Decision::NotPossible(format!("cannot start `{}`: {e}", launch.python.display())),
    }
}

/// `s` as a Python string literal (bytes that are not UTF-8 as surrogate escapes).
fn python_str(s: &OsStr) -> String {
    let mut out = String::from("__import__('os').fsdecode(b'");
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-+ ".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push_str("')");
    out
}

/// Whether `path` (a file found where the pack has no record for it) was modified after
/// the pack at `pack` was written: new since the build, so a rebuild would pack it. A file
/// that is older was there when the pack was built and left out on purpose (it does not
/// compile, or an `--exclude`), and no rebuild would change that.
pub(crate) fn newer_than_pack(path: &str, pack_written: Option<SystemTime>) -> bool {
    let Some(written) = pack_written else {
        return false;
    };
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t > written)
}
