//! Where packs live (`spec/FORMAT.md` §2).
//!
//! A pack for directory `D` is `D/__pycache__/__ppyc__.<cache_tag>[.opt-N].ppyc`. Where `D`
//! is not writable, it is `<cache>/ppyc/<name>-<hash>.<cache_tag>[.opt-N].ppyc`, with
//! `<cache>` = `$XDG_CACHE_HOME` (when set and absolute) or `~/.cache`, `<name>` the last
//! component of `D`'s real path (characters outside `[A-Za-z0-9_.-]` replaced by `_`, at most
//! 32 bytes) and `<hash>` the first 16 hex digits of BLAKE3 of the real path's bytes.

use std::path::{Path, PathBuf};

/// `__ppyc__.<cache_tag>.ppyc`, or `__ppyc__.<cache_tag>.opt-N.ppyc` for optimize 1 or 2.
#[must_use]
pub fn pack_file_name(cache_tag: &str, optimize: u8) -> String {
    if optimize == 0 {
        format!("__ppyc__.{cache_tag}.ppyc")
    } else {
        format!("__ppyc__.{cache_tag}.opt-{optimize}.ppyc")
    }
}

/// The record of the `.pyc` files `ppyc compile --write-pyc` wrote for the pack named
/// `pack_path` (`spec/FORMAT.md` §2): the same path with `.pycs` for `.ppyc`.
#[must_use]
pub fn pyc_record_path(pack_path: &Path) -> PathBuf {
    pack_path.with_extension("pycs")
}

/// The prefix of the temporary files [`crate::write_atomic`] makes for `path` (in the same
/// directory): `.__ppyc__.<file name>.`, followed by random characters and `.tmp`.
#[must_use]
pub fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".__ppyc__.{name}.")
}

/// POSIX `_path_join(*parts)` of `importlib._bootstrap_external` (3.10-3.13):
/// `'/'.join(part.rstrip('/') for part in parts if part)`, on the raw bytes.
#[must_use]
pub fn path_join(parts: &[&[u8]]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    let mut first = true;
    for part in parts {
        if part.is_empty() {
            continue;
        }
        if !first {
            out.push(b'/');
        }
        first = false;
        let end = part.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
        out.extend_from_slice(&part[..end]);
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// Where `sys.pycache_prefix` `prefix` puts the bytecode of the sources in directory `head`,
/// as `cache_from_source` computes it (3.10-3.13 `_bootstrap_external.py`): `head` made
/// absolute against the current directory, its leading `/`s stripped, joined to `prefix`.
#[must_use]
pub fn prefixed_dir(prefix: &Path, head: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let abs;
    let head = if head.is_absolute() {
        head
    } else {
        // `_path_join(_os.getcwd(), head)` (3.10, 3.11); 3.12+ `_path_abspath` first drops
        // one leading `./`, which is followed here.
        let cwd = std::env::current_dir().unwrap_or_default();
        let bytes = head.as_os_str().as_bytes();
        let bytes = bytes.strip_prefix(b"./").unwrap_or(bytes);
        abs = path_join(&[cwd.as_os_str().as_bytes(), bytes]);
        &abs
    };
    let bytes = head.as_os_str().as_bytes();
    let start = bytes.iter().position(|&b| b != b'/').unwrap_or(bytes.len());
    path_join(&[prefix.as_os_str().as_bytes(), &bytes[start..]])
}

/// The directory that holds the bytecode of `dir`'s own modules and its pack: `D/__pycache__`,
/// or under `sys.pycache_prefix` `P` (when set) `P/D'` (`D`'s absolute path without its
/// leading `/`), where the stock importer then reads and writes their `.pyc` files.
#[must_use]
pub fn bytecode_dir(dir: &Path, pycache_prefix: Option<&Path>) -> PathBuf {
    match pycache_prefix {
        Some(prefix) => prefixed_dir(prefix, dir),
        None => dir.join("__pycache__"),
    }
}

/// The pack of `dir` beside its bytecode ([`bytecode_dir`]): in the directory itself, or
/// under `sys.pycache_prefix`.
#[must_use]
pub fn local_pack_path(
    dir: &Path,
    cache_tag: &str,
    optimize: u8,
    pycache_prefix: Option<&Path>,
) -> PathBuf {
    bytecode_dir(dir, pycache_prefix).join(pack_file_name(cache_tag, optimize))
}

/// The pack of `dir` inside the directory itself (no `sys.pycache_prefix`).
#[must_use]
pub fn in_tree_pack_path(dir: &Path, cache_tag: &str, optimize: u8) -> PathBuf {
    local_pack_path(dir, cache_tag, optimize, None)
}

/// The user's ppyc cache directory: `$XDG_CACHE_HOME/ppyc` or `~/.cache/ppyc`.
#[must_use]
pub fn cache_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|h| h.join(".cache"))
    })?;
    Some(base.join("ppyc"))
}

/// The pack of `real_dir` (already resolved with `realpath`) inside `cache_dir`.
#[must_use]
pub fn cache_pack_path(
    cache_dir: &Path,
    real_dir: &Path,
    cache_tag: &str,
    optimize: u8,
) -> PathBuf {
    #[cfg(unix)]
    let raw: &[u8] = std::os::unix::ffi::OsStrExt::as_bytes(real_dir.as_os_str());
    #[cfg(not(unix))]
    let raw_owned = real_dir.to_string_lossy().into_owned().into_bytes();
    #[cfg(not(unix))]
    let raw: &[u8] = &raw_owned;
    let hash = blake3::hash(raw).to_hex();
    let mut name: String = real_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".to_owned())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    name.truncate(32);
    let file = pack_file_name(cache_tag, optimize);
    let suffix = file.trim_start_matches("__ppyc__");
    cache_dir.join(format!("{name}-{}{suffix}", &hash.as_str()[..16]))
}

/// Where the state of the background refresh of `real_dir`'s pack is kept
/// (`spec/IMPORT.md`, "Staying fresh"): `<cache_dir>/refresh/<name>-<hash>.<tag>[.opt-N]`,
/// named as the user-cache pack is, to which `.json`, `.log`, `.lock` and `.stamp` are
/// appended.
#[must_use]
pub fn refresh_state_base(
    cache_dir: &Path,
    real_dir: &Path,
    cache_tag: &str,
    optimize: u8,
) -> PathBuf {
    cache_pack_path(&cache_dir.join("refresh"), real_dir, cache_tag, optimize).with_extension("")
}

/// The files of a refresh state (see [`refresh_state_base`]).
pub const REFRESH_STATE_SUFFIXES: [&str; 4] = [".json", ".log", ".lock", ".stamp"];

/// The two packs that may serve directory `D` itself (§2): the local one (in the tree, or
/// under `sys.pycache_prefix`), and the one in the user cache (when there is a cache
/// directory and `D` resolves to a real path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackCandidates {
    /// `D/__pycache__/__ppyc__.T[.opt-N].ppyc`, or with `sys.pycache_prefix` `P`
    /// `P/D'/__ppyc__.T[.opt-N].ppyc` ([`local_pack_path`]).
    pub local: PathBuf,
    /// The user cache directory and the pack of `D` in it.
    pub cache: Option<(PathBuf, PathBuf)>,
}

impl PackCandidates {
    /// The candidates of `dir` for `cache_tag` and `optimize`, with the interpreter's
    /// `sys.pycache_prefix`: under a prefix the stock importer never reads `D/__pycache__`,
    /// and neither does ppyc.
    #[must_use]
    pub fn of(dir: &Path, cache_tag: &str, optimize: u8, pycache_prefix: Option<&Path>) -> Self {
        let cache = cache_dir().and_then(|c| {
            let real = std::fs::canonicalize(dir).ok()?;
            let pack = cache_pack_path(&c, &real, cache_tag, optimize);
            Some((c, pack))
        });
        Self {
            local: local_pack_path(dir, cache_tag, optimize, pycache_prefix),
            cache,
        }
    }

    /// The user-cache pack, if there is a cache directory.
    #[must_use]
    pub fn cache_pack(&self) -> Option<&Path> {
        self.cache.as_ref().map(|(_, p)| p.as_path())
    }

    /// The candidates that exist, in the order they are tried (§2 "Precedence"): the one
    /// written last first. A pack is replaced by renaming a new file over it, so its
    /// modification time is when it was built: a fresh user-cache pack (built because
    /// `D/__pycache__` became read-only, or by a background refresh) is preferred over a
    /// stale in-tree one, and a newer in-tree pack over an old cached one. On a tie the
    /// in-tree pack comes first.
    #[must_use]
    pub fn existing(&self) -> Vec<(PathBuf, std::fs::Metadata)> {
        let mut found: Vec<(PathBuf, std::fs::Metadata)> = std::iter::once(self.local.clone())
            .chain(self.cache_pack().map(Path::to_path_buf))
            .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m)))
            .collect();
        if let [(_, a), (_, b)] = found.as_slice() {
            if written_after(b, a) {
                found.swap(0, 1);
            }
        }
        found
    }

    /// The pack that serves `D` if any exists (§2 "Precedence"), else the in-tree path.
    #[must_use]
    pub fn preferred(&self) -> PathBuf {
        self.existing()
            .into_iter()
            .next()
            .map_or_else(|| self.local.clone(), |(p, _)| p)
    }
}

/// Whether the file of `a` was modified after that of `b` (§2 "Precedence").
#[must_use]
pub fn written_after(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    match (a.modified(), b.modified()) {
        (Ok(a), Ok(b)) => a > b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_the_pack_written_last() {
        let tmp = std::env::temp_dir().join(format!("ppyc-precedence-{}", std::process::id()));
        let dir = tmp.join("site");
        let cache = tmp.join("cache");
        std::fs::create_dir_all(dir.join("__pycache__")).unwrap();
        std::fs::create_dir_all(&cache).unwrap();
        let real = std::fs::canonicalize(&dir).unwrap();
        let c = PackCandidates {
            local: in_tree_pack_path(&dir, "cpython-312", 0),
            cache: Some((
                cache.clone(),
                cache_pack_path(&cache, &real, "cpython-312", 0),
            )),
        };
        assert!(c.existing().is_empty());
        assert_eq!(c.preferred(), c.local);
        let set = |p: &Path, secs: u64| {
            let f = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(p)
                .unwrap();
            f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .unwrap();
        };
        let cached = c.cache_pack().unwrap().to_path_buf();
        set(&cached, 1_000);
        assert_eq!(c.preferred(), cached, "only the cached pack exists");
        set(&c.local, 2_000);
        let order: Vec<PathBuf> = c.existing().into_iter().map(|(p, _)| p).collect();
        assert_eq!(order, [c.local.clone(), cached.clone()], "in-tree is newer");
        set(&cached, 3_000);
        let order: Vec<PathBuf> = c.existing().into_iter().map(|(p, _)| p).collect();
        assert_eq!(order, [cached.clone(), c.local.clone()], "cached is newer");
        set(&c.local, 3_000);
        assert_eq!(c.preferred(), c.local, "a tie keeps the in-tree pack first");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn pycache_prefix_places_as_cache_from_source() {
        // `cache_from_source('/x/y/m.py')` with `sys.pycache_prefix = '/p/'` is
        // `/p/x/y/m.<tag>.pyc`: the pack of `/x/y` sits beside it.
        let p = Path::new("/p/");
        assert_eq!(prefixed_dir(p, Path::new("/x/y")), Path::new("/p/x/y"));
        assert_eq!(prefixed_dir(p, Path::new("//x//y/")), Path::new("/p/x//y"));
        assert_eq!(prefixed_dir(p, Path::new("/")), Path::new("/p"));
        assert_eq!(
            local_pack_path(Path::new("/x/y"), "cpython-312", 1, Some(p)),
            Path::new("/p/x/y/__ppyc__.cpython-312.opt-1.ppyc")
        );
        assert_eq!(
            local_pack_path(Path::new("/x/y"), "cpython-312", 0, None),
            in_tree_pack_path(Path::new("/x/y"), "cpython-312", 0)
        );
        let cwd = std::env::current_dir().unwrap();
        let rel = cwd.to_str().unwrap().trim_start_matches('/');
        assert_eq!(
            prefixed_dir(Path::new("/p"), Path::new("./sub")),
            Path::new("/p").join(rel).join("sub")
        );
        assert_eq!(path_join(&[b"a/", b"", b"b//", b"c"]), Path::new("a/b/c"));
        assert_eq!(path_join(&[b"/", b"x"]), Path::new("/x"));
    }

    #[test]
    fn names() {
        assert_eq!(
            pack_file_name("cpython-312", 0),
            "__ppyc__.cpython-312.ppyc"
        );
        assert_eq!(
            pack_file_name("cpython-312", 1),
            "__ppyc__.cpython-312.opt-1.ppyc"
        );
        assert_eq!(
            in_tree_pack_path(Path::new("/x/site-packages"), "cpython-313", 2),
            Path::new("/x/site-packages/__pycache__/__ppyc__.cpython-313.opt-2.ppyc")
        );
        let p = cache_pack_path(
            Path::new("/c"),
            Path::new("/usr/lib/python3/dist-packages"),
            "cpython-311",
            0,
        );
        let s = p.to_str().unwrap();
        assert!(s.starts_with("/c/dist-packages-"), "{s}");
        assert!(s.ends_with(".cpython-311.ppyc"), "{s}");
        assert_eq!(
            s.len(),
            "/c/dist-packages-".len() + 16 + ".cpython-311.ppyc".len()
        );
        assert_eq!(
            pyc_record_path(&p).to_str().unwrap(),
            s.replace(".ppyc", ".pycs")
        );
        assert_eq!(
            pyc_record_path(Path::new("/x/__pycache__/__ppyc__.cpython-313.opt-2.ppyc")),
            Path::new("/x/__pycache__/__ppyc__.cpython-313.opt-2.pycs")
        );
        assert_eq!(
            temp_prefix(Path::new("/x/__pycache__/__ppyc__.cpython-313.ppyc")),
            ".__ppyc__.__ppyc__.cpython-313.ppyc."
        );
    }
}
