//! Finding the modules below one `sys.path` directory, named exactly as the stock
//! `FileFinder` would find them (Lib/importlib/_bootstrap_external.py, `FileFinder.find_spec`,
//! 3.10–3.13): in each directory, a package directory with an `__init__` wins, then an
//! extension module, then a `.py` module, then a namespace package portion.
//!
//! What ppyc packs: `.py` modules and regular packages (`__init__.py`), including those
//! inside namespace packages. A module's file name need not be an identifier: the stock
//! `FileFinder` finds `NAME.py` for any requested `NAME` without a dot, and real code asks for
//! such names (`sysconfig` imports `_sysconfigdata__linux_x86_64-linux-gnu`, `importlib.
//! import_module("unicode17-0-0")`); directories are entered only through identifiers.
//! What it leaves to the stock importer: namespace packages themselves, extension modules
//! (and `.py` files they shadow), sourceless `.pyc` modules, packages whose `__init__` is an
//! extension or sourceless, and every name no import can ask for (`*.dist-info`, dotted
//! file names, `.py`, non-UTF-8 names), and packages whose directory name is not an
//! identifier (with the `.py` module of the same name they shadow).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

/// One module found by [`walk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceModule {
    /// Fully qualified name, e.g. `pkg.sub.mod`.
    pub name: String,
    /// Whether the source is a package's `__init__.py`.
    pub is_package: bool,
    /// Path of the source file (below the walked directory, symlinks not resolved).
    pub source: PathBuf,
    /// Path of the source relative to the walked directory, `/`-separated.
    pub rel_path: String,
}

/// A file or directory the walk could not read (reported; the walk goes on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkIssue {
    /// Where.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// What to leave out of a walk.
#[derive(Clone, Debug, Default)]
pub struct WalkOptions {
    /// `importlib.machinery.EXTENSION_SUFFIXES` of the target interpreter.
    pub extension_suffixes: Vec<String>,
    /// Leave out every file or directory whose path relative to the walked directory
    /// contains one of these strings.
    pub excludes: Vec<String>,
}

/// Whether `name` is a Python identifier (what `str.isidentifier` checks; Python's NFKC
/// normalisation of identifiers does not apply to file names, which are looked up as is).
#[must_use]
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c == '_' || unicode_ident::is_xid_start(c) => {}
        _ => return false,
    }
    chars.all(unicode_ident::is_xid_continue)
}

#[derive(Default, Debug)]
struct Listing {
    files: BTreeSet<String>,
    dirs: BTreeSet<String>,
}

/// Finds the modules below `root` (a `sys.path` entry). Results are sorted by name.
#[must_use]
pub fn walk(root: &Path, options: &WalkOptions) -> (Vec<SourceModule>, Vec<WalkIssue>) {
    use rayon::prelude::*;
    let excluded = |rel: &str| {
        options
            .excludes
            .iter()
            .any(|x| !x.is_empty() && rel.contains(x.as_str()))
    };
    // The root's own entries first, then the directories below it, each subtree walked on
    // its own thread (rayon): they are independent, and a site-packages holds hundreds.
    let root_id = std::fs::metadata(root).ok().map(|m| file_id(&m));
    let (mut found, mut issues) = walk_entries(root, root, Some(1), None);
    let subtrees: Vec<PathBuf> = found
        .iter()
        .filter(|(rel, is_dir)| *is_dir && !rel.contains('/') && enters(rel))
        .map(|(rel, _)| root.join(rel))
        .collect();
    let below: Vec<Entries> = subtrees
        .par_iter()
        .map(|dir| walk_entries(root, dir, None, root_id))
        .collect();
    for (f, i) in below {
        found.extend(f);
        issues.extend(i);
    }
    let mut listings: BTreeMap<String, Listing> = BTreeMap::new();
    listings.insert(String::new(), Listing::default());
    for (rel, is_dir) in found {
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p.to_owned(), n.to_owned()),
            None => (String::new(), rel.clone()),
        };
        let listing = listings.entry(parent).or_default();
        if is_dir {
            listing.dirs.insert(name);
            listings.entry(rel).or_default();
        } else {
            listing.files.insert(name);
        }
    }
    let mut modules = Vec::new();
    visit(root, "", "", &listings, options, &excluded, &mut modules);
    modules.sort_by(|a, b| a.name.cmp(&b.name));
    (modules, issues)
}

/// Whether the walk enters a directory named `name`: only directories that could be
/// packages; `__pycache__` holds byte code, never a module a pack serves (its listing is
/// not recorded either, spec/FORMAT.md §12).
fn enters(name: &str) -> bool {
    name != "__pycache__" && is_identifier(name)
}

/// What [`walk_entries`] found: entries (relative path, is a directory) and issues.
type Entries = (Vec<(String, bool)>, Vec<WalkIssue>);

/// A file's device and inode.
fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Every entry below `dir` (to `max_depth`, `dir` itself excluded) as its path relative to
/// `root` (`/`-separated, UTF-8 only) and whether it is a directory, in walk order, with
/// what could not be read. Directories are entered only through [`enters`]. Symbolic links
/// are followed; one that leads back to `root_id` (the walked root, an ancestor that a walk
/// started below it cannot see) is a file system loop, reported as walkdir reports the
/// others.
fn walk_entries(
    root: &Path,
    dir: &Path,
    max_depth: Option<usize>,
    root_id: Option<(u64, u64)>,
) -> Entries {
    let mut found = Vec::new();
    let mut issues = Vec::new();
    let loops = std::cell::RefCell::new(Vec::new());
    let mut walker = WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .min_depth(1);
    if let Some(depth) = max_depth {
        walker = walker.max_depth(depth);
    }
    let walker = walker.into_iter().filter_entry(|e| {
        if !e.file_type().is_dir() {
            return true;
        }
        if !e.file_name().to_str().is_some_and(enters) {
            return false;
        }
        if e.path_is_symlink()
            && root_id.is_some()
            && std::fs::metadata(e.path()).ok().map(|m| file_id(&m)) == root_id
        {
            loops.borrow_mut().push(WalkIssue {
                path: e.path().to_path_buf(),
                message: format!(
                    "File system loop found: {} points to an ancestor {}",
                    e.path().display(),
                    root.display()
                ),
            });
            return false;
        }
        true
    });
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(err) => {
                // A directory we cannot list, a broken symlink, a symlink loop, or a file
                // deleted during the walk.
                let path = err
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dir.to_path_buf());
                let gone = err
                    .io_error()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound);
                if !gone {
                    issues.push(WalkIssue {
                        path,
                        message: err.to_string(),
                    });
                }
                continue;
            }
        };
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let Some(rel) = rel.to_str() else {
            // Non-UTF-8 names cannot be module names.
            continue;
        };
        found.push((
            rel.replace(std::path::MAIN_SEPARATOR, "/"),
            entry.file_type().is_dir(),
        ));
    }
    issues.extend(loops.into_inner());
    (found, issues)
}

fn visit(
    root: &Path,
    rel_dir: &str,
    prefix: &str,
    listings: &BTreeMap<String, Listing>,
    options: &WalkOptions,
    excluded: &dyn Fn(&str) -> bool,
    out: &mut Vec<SourceModule>,
) {
    let Some(listing) = listings.get(rel_dir) else {
        return;
    };
    let join = |name: &str| {
        if rel_dir.is_empty() {
            name.to_owned()
        } else {
            format!("{rel_dir}/{name}")
        }
    };
    let is_extension = |files: &BTreeSet<String>, stem: &str| {
        options
            .extension_suffixes
            .iter()
            .any(|s| files.contains(&format!("{stem}{s}")))
    };
    let mut names: BTreeSet<&str> = listing.dirs.iter().map(String::as_str).collect();
    names.extend(listing.files.iter().filter_map(|f| f.strip_suffix(".py")));
    for name in names {
        if name.is_empty() || name.contains('.') || name == "__init__" {
            continue; // no import asks for these names
        }
        if !is_identifier(name) {
            // A module file whose name is not an identifier (the walk does not enter such
            // directories): found by the stock finder unless a package directory of that
            // name comes first (its `__init__` with any loader suffix) or an extension
            // module shadows it.
            let file = format!("{name}.py");
            let dir = root.join(join(name));
            let package_first = std::iter::once(".py")
                .chain(std::iter::once(".pyc"))
                .chain(options.extension_suffixes.iter().map(String::as_str))
                .any(|suffix| dir.join(format!("__init__{suffix}")).is_file());
            let rel = join(&file);
            if listing.files.contains(&file)
                && !package_first
                && !is_extension(&listing.files, name)
                && !excluded(&rel)
            {
                out.push(SourceModule {
                    name: format!("{prefix}{name}"),
                    is_package: false,
                    source: root.join(&rel),
                    rel_path: rel,
                });
            }
            continue;
        }
        let qualified = format!("{prefix}{name}");
        let sub = join(name);
        if listing.dirs.contains(name) && !excluded(&sub) {
            let inner = listings.get(&sub);
            let has = |f: &str| inner.is_some_and(|l| l.files.contains(f));
            if inner.is_some_and(|l| is_extension(&l.files, "__init__")) {
                continue; // an extension package: the stock importer's
            }
            if has("__init__.py") {
                let init = format!("{sub}/__init__.py");
                if !excluded(&init) {
                    out.push(SourceModule {
                        name: qualified.clone(),
                        is_package: true,
                        source: root.join(&init),
                        rel_path: init,
                    });
                    visit(
                        root,
                        &sub,
                        &format!("{qualified}."),
                        listings,
                        options,
                        excluded,
                        out,
                    );
                }
                continue;
            }
            if has("__init__.pyc") {
                continue; // a sourceless package
            }
        }
        if is_extension(&listing.files, name) {
            continue; // an extension module shadows both `name.py` and a namespace `name/`
        }
        let file = format!("{name}.py");
        if listing.files.contains(&file) {
            let rel = join(&file);
            if !excluded(&rel) {
                out.push(SourceModule {
                    name: qualified,
                    is_package: false,
                    source: root.join(&rel),
                    rel_path: rel,
                });
            }
            continue;
        }
        if listing.dirs.contains(name) && !excluded(&sub) {
            // A namespace package portion: the package is the stock importer's, but the
            // regular modules and packages inside it are packed under their full names.
            visit(
                root,
                &sub,
                &format!("{qualified}."),
                listings,
                options,
                excluded,
                out,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"").unwrap();
    }

    fn names(root: &Path, options: &WalkOptions) -> Vec<(String, bool, String)> {
        let (modules, issues) = walk(root, options);
        assert!(issues.is_empty(), "{issues:?}");
        modules
            .into_iter()
            .map(|m| (m.name, m.is_package, m.rel_path))
            .collect()
    }

    #[test]
    fn follows_the_file_finder_rules() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in [
            "top.py",
            "pkg/__init__.py",
            "pkg/mod.py",
            "pkg/sub/__init__.py",
            "pkg/sub/deep.py",
            "pkg/data/readme.txt",
            "pkg/nsdir/inner.py",
            "both/__init__.py",
            "both.py",
            "fast.py",
            "fast.cpython-312-x86_64-linux-gnu.so",
            "extpkg/__init__.abi3.so",
            "extpkg/helper.py",
            "nopy/__init__.pyc",
            "nopy/x.py",
            "ns/portion.py",
            "ns/regular/__init__.py",
            "foo-1.0.dist-info/METADATA",
            "bad-name/mod.py",
            "bad-name.py",
            "dashed-pkg/__init__.py",
            "dashed-pkg.py",
            "dashed-ext.py",
            "dashed-ext.abi3.so",
            "pkg/unicode17-0-0.py",
            "_sysconfigdata__linux_x86_64-linux-gnu.py",
            "dotted.name.py",
            ".py",
            "__pycache__/top.cpython-312.pyc",
            "caf\u{e9}.py",
            "\u{65e5}\u{672c}/__init__.py",
            "1digit.py",
        ] {
            touch(r, f);
        }
        let options = WalkOptions {
            extension_suffixes: vec![
                ".cpython-312-x86_64-linux-gnu.so".into(),
                ".abi3.so".into(),
                ".so".into(),
            ],
            excludes: vec![],
        };
        let got = names(r, &options);
        let want: Vec<(String, bool, String)> = [
            ("1digit", false, "1digit.py"),
            (
                "_sysconfigdata__linux_x86_64-linux-gnu",
                false,
                "_sysconfigdata__linux_x86_64-linux-gnu.py",
            ),
            ("bad-name", false, "bad-name.py"),
            ("both", true, "both/__init__.py"),
            ("caf\u{e9}", false, "caf\u{e9}.py"),
            ("ns.portion", false, "ns/portion.py"),
            ("ns.regular", true, "ns/regular/__init__.py"),
            ("pkg", true, "pkg/__init__.py"),
            ("pkg.mod", false, "pkg/mod.py"),
            ("pkg.nsdir.inner", false, "pkg/nsdir/inner.py"),
            ("pkg.sub", true, "pkg/sub/__init__.py"),
            ("pkg.sub.deep", false, "pkg/sub/deep.py"),
            ("pkg.unicode17-0-0", false, "pkg/unicode17-0-0.py"),
            ("top", false, "top.py"),
            ("\u{65e5}\u{672c}", true, "\u{65e5}\u{672c}/__init__.py"),
        ]
        .into_iter()
        .map(|(a, b, c)| (a.to_owned(), b, c.to_owned()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn excludes_and_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        touch(r, "a.py");
        touch(r, "test/badsyntax_x.py");
        touch(r, "test/__init__.py");
        touch(r, "test/good.py");
        touch(r, "site-packages/other.py");
        let outside = tempfile::tempdir().unwrap();
        touch(outside.path(), "__init__.py");
        touch(outside.path(), "m.py");
        std::os::unix::fs::symlink(outside.path(), r.join("linked")).unwrap();
        // A loop back to the root is reported once and does not hang.
        std::os::unix::fs::symlink(r, r.join("linked_loop")).ok();
        // ... also from below the root (a subtree walked on its own thread).
        std::os::unix::fs::symlink(r, r.join("test/up")).unwrap();
        // `__pycache__` is not entered.
        touch(r, "__pycache__/cached.py");
        touch(r, "test/__pycache__/cached.py");
        let options = WalkOptions {
            extension_suffixes: vec![],
            excludes: vec!["badsyntax".into(), "site-packages".into()],
        };
        let (modules, issues) = walk(r, &options);
        let got: Vec<_> = modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(got, ["a", "linked", "linked.m", "test", "test.good"]);
        assert!(
            issues.iter().all(|i| i.message.contains("loop")),
            "{issues:?}"
        );
        assert!(
            issues.iter().any(|i| i.path.ends_with("test/up")),
            "{issues:?}"
        );
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("_x1"));
        assert!(is_identifier("\u{e9}t\u{e9}"));
        assert!(!is_identifier("1x"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier("a.b"));
        assert!(!is_identifier(""));
    }
}

/// How much older than the moment of listing a directory's mtime must be for the listing
/// to be trusted (`ppyc_format::dirs::RACY_NS`), by the type of the file system `path` is
/// on (`statfs(2)`'s `f_type`, `linux/magic.h`).
#[allow(unsafe_code)]
fn racy_margin_ns(path: &Path) -> i64 {
    use std::os::unix::ffi::OsStrExt;
    const FINE: [i64; 8] = [
        0xEF53,      // EXT2/3/4_SUPER_MAGIC
        0x5846_5342, // XFS_SUPER_MAGIC
        0x9123_683E, // BTRFS_SUPER_MAGIC
        0x0102_1994, // TMPFS_MAGIC
        0x794C_7630, // OVERLAYFS_SUPER_MAGIC
        0x2FC1_2FC1, // ZFS
        0xF2F5_2010, // F2FS_SUPER_MAGIC
        0x6165_6673, // BCACHEFS (not in older headers)
    ];
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return ppyc_format::dirs::RACY_NS;
    };
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` points to writable memory the size of
    // `struct statfs`; `statfs` writes it fully on success (returns 0) and we read it only
    // then.
    let ok = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) } == 0;
    if !ok {
        return ppyc_format::dirs::RACY_NS;
    }
    // SAFETY: initialised by the successful `statfs` above.
    // (`f_type`'s C type differs between platforms: `i64` here, 32 bits on some.)
    #[allow(clippy::unnecessary_cast)]
    let f_type = unsafe { st.assume_init() }.f_type as i64;
    if FINE.contains(&f_type) {
        ppyc_format::dirs::RACY_LOCAL_NS
    } else {
        ppyc_format::dirs::RACY_NS
    }
}

/// What [`listings`] recorded.
#[derive(Clone, Debug, Default)]
pub struct Listings {
    /// One entry per directory recorded.
    pub dirs: Vec<ppyc_format::dirs::DirInput>,
    /// Directories left out because they changed less than the file system's timestamp
    /// resolution before they were listed, or while they were listed.
    pub racy: usize,
}

/// A directory's `st_mtime` and `st_ctime`: seconds and nanoseconds.
type Stamp = ((i64, u32), (i64, u32));

fn stamp_of(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    // `stat` follows symbolic links, as `FileFinder` does (`_path_stat`).
    let m = std::fs::metadata(path).ok()?;
    m.is_dir().then(|| {
        (
            (m.mtime(), m.mtime_nsec() as u32),
            (m.ctime(), m.ctime_nsec() as u32),
        )
    })
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The listings of `root` and of every directory below it that the stock `FileFinder`
/// may search through a pack of `root`: those reached through names that are identifiers
/// (packages and namespace-package portions), not `__pycache__`. Each listing is every name
/// `os.listdir` gives, with the directory's mtime and ctime. Git's racy-clean rule: a
/// listing taken within the file system's timestamp resolution of the directory's last
/// change (its ctime, never older than its mtime) is not trusted, since a change right
/// after it could leave both as they are. On file systems
/// with fine timestamps (a margin of 0.1 s) such a directory is listed again once the
/// margin has passed (the build waits at most that long); elsewhere (2 s) it is left out.
/// A directory that changed while it was listed is left out too.
///
/// `recorded` are the listings a previous build recorded (`DIRS`): a directory whose
/// mtime and ctime are still those of its recorded listing has exactly those names (the
/// rule the import hook relies on, `spec/FORMAT.md` §12), so it is not listed again.
#[must_use]
pub fn listings(root: &Path, recorded: Option<&ppyc_format::dirs::Dirs<'_>>) -> Listings {
    let margin = racy_margin_ns(root);
    let mut out = take_listings(root, margin, now_ns(), recorded);
    if out.racy > 0 && margin <= ppyc_format::dirs::RACY_LOCAL_NS {
        std::thread::sleep(std::time::Duration::from_nanos(margin as u64 + 1_000_000));
        out = take_listings(root, margin, now_ns(), recorded);
    }
    out
}

fn take_listings(
    root: &Path,
    margin: i64,
    now_ns: i64,
    recorded: Option<&ppyc_format::dirs::Dirs<'_>>,
) -> Listings {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut out = Listings::default();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        // A directory reached twice through symbolic links is listed once.
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if !seen.insert((meta.dev(), meta.ino(), rel.clone())) || seen.len() > 100_000 {
            continue;
        }
        let Some(before) = stamp_of(&dir) else {
            continue;
        };
        let descend = |name: &[u8], stack: &mut Vec<(PathBuf, String)>| {
            let Ok(text) = std::str::from_utf8(name) else {
                return;
            };
            if text != "__pycache__" && is_identifier(text) && rel.matches('/').count() < 64 {
                let child = dir.join(text);
                if std::fs::metadata(&child).is_ok_and(|m| m.is_dir()) {
                    let child_rel = if rel.is_empty() {
                        text.to_owned()
                    } else {
                        format!("{rel}/{text}")
                    };
                    stack.push((child, child_rel));
                }
            }
        };
        // Unchanged since a previous build recorded it: the same names.
        if let Some(listing) = recorded
            .and_then(|r| r.get(&rel))
            .filter(|l| (l.mtime, l.ctime) == before)
        {
            let names: Vec<Vec<u8>> = listing.names().map(<[u8]>::to_vec).collect();
            for name in &names {
                descend(name, &mut stack);
            }
            out.dirs.push(ppyc_format::dirs::DirInput {
                path: rel,
                mtime: before.0,
                ctime: before.1,
                names,
            });
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names = Vec::new();
        let mut complete = true;
        for entry in entries {
            let Ok(entry) = entry else {
                complete = false;
                break;
            };
            let name = entry.file_name();
            descend(name.as_bytes(), &mut stack);
            names.push(name.as_bytes().to_vec());
        }
        let after = stamp_of(&dir);
        let changed = before.1.max(before.0);
        let old_enough = changed
            .0
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(i64::from(changed.1)))
            .is_some_and(|m| now_ns.saturating_sub(m) > margin);
        if !complete || after != Some(before) || !old_enough {
            out.racy += 1;
            continue;
        }
        out.dirs.push(ppyc_format::dirs::DirInput {
            path: rel,
            mtime: before.0,
            ctime: before.1,
            names,
        });
    }
    out.dirs.sort_by(|a, b| a.path.cmp(&b.path));
    out
}
