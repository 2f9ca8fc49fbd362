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

/// The pack of `dir` inside the directory itself.
#[must_use]
pub fn in_tree_pack_path(dir: &Path, cache_tag: &str, optimize: u8) -> PathBuf {
    dir.join("__pycache__")
        .join(pack_file_name(cache_tag, optimize))
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

#[cfg(test)]
mod tests {
    use super::*;

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
