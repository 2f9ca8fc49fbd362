//! The record of the `.pyc` files `ppyc compile --write-pyc` wrote (`spec/FORMAT.md` §2),
//! so that `ppyc clean` removes exactly those and nothing else.
//!
//! It lives beside the pack, named as the pack with `.pycs` for `.ppyc`
//! ([`ppyc_format::pyc_record_path`]), and is a small JSON document:
//!
//! ```json
//! {"format": "ppyc-pycs", "version": 1,
//!  "pycs": {"pkg/__pycache__/mod.cpython-312.pyc": "<BLAKE3 of the bytes written, hex>"}}
//! ```
//!
//! Paths are relative to the packed directory. A `.pyc` is removed only while it still
//! holds the bytes ppyc wrote: one rewritten since (by the stock importer, `compileall`, a
//! package manager) is no longer ppyc's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The `format` value of a record.
pub const FORMAT: &str = "ppyc-pycs";
/// The version of the record this ppyc writes and reads.
pub const VERSION: u32 = 1;

/// The `.pyc` files written for one pack: path relative to the packed directory, and the
/// BLAKE3 of the bytes written (lowercase hex).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PycRecord {
    pub format: String,
    pub version: u32,
    /// The `sys.pycache_prefix` the `.pyc` files were written under: their paths are then
    /// relative to [`ppyc_format::prefixed_dir`] of the packed directory, and have no
    /// `__pycache__` component. Absent without a prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pycache_prefix: Option<PathBuf>,
    pub pycs: BTreeMap<String, String>,
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a ppyc .pyc record: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Write(#[from] ppyc_format::FormatError),
}

/// BLAKE3 of `bytes`, as a record holds it.
#[must_use]
pub fn digest_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

impl PycRecord {
    /// An empty record.
    #[must_use]
    pub fn new() -> Self {
        Self {
            format: FORMAT.to_owned(),
            version: VERSION,
            pycache_prefix: None,
            pycs: BTreeMap::new(),
        }
    }

    /// An empty record for `.pyc` files written under `pycache_prefix`.
    #[must_use]
    pub fn with_prefix(pycache_prefix: Option<&Path>) -> Self {
        Self {
            pycache_prefix: pycache_prefix.map(Path::to_path_buf),
            ..Self::new()
        }
    }

    /// The directory the paths of this record, for the packed directory `dir`, are
    /// relative to: `dir` itself, or its place under the record's `sys.pycache_prefix`.
    #[must_use]
    pub fn root(&self, dir: &Path) -> PathBuf {
        pyc_root(dir, self.pycache_prefix.as_deref())
    }

    /// The record at `path`; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<Self>, RecordError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RecordError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let invalid = |reason: String| RecordError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let record: Self = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if record.format != FORMAT || record.version != VERSION {
            return Err(invalid(format!(
                "format {:?} version {}, this ppyc reads {FORMAT:?} version {VERSION}",
                record.format, record.version
            )));
        }
        Ok(Some(record))
    }

    /// Writes the record to `path`, atomically (temporary file, rename).
    pub fn write(&self, path: &Path) -> Result<(), RecordError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| RecordError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        ppyc_format::write_atomic(path, text.as_bytes())?;
        Ok(())
    }

    /// Whether the file `rel` of the packed directory `dir` ([`PycRecord::root`]) still
    /// holds the bytes recorded for it. Only a path ppyc can have written qualifies:
    /// relative, without `..`, a `*.pyc` file in a `__pycache__` directory (below a
    /// `sys.pycache_prefix`: anywhere); a record is no licence to remove anything else.
    #[must_use]
    pub fn still_ours(&self, dir: &Path, rel: &str) -> bool {
        let Some(digest) = self.pycs.get(rel) else {
            return false;
        };
        if !is_pyc_path(rel, self.pycache_prefix.is_some()) {
            return false;
        }
        let path = self.root(dir).join(rel);
        // Never follow a symlink put in its place, nor read a non-regular file.
        std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file())
            && std::fs::read(&path).is_ok_and(|b| digest_hex(&b) == *digest)
    }
}

/// Where the `.pyc` files of the packed directory `dir` are, as paths relative to it: `dir`
/// itself (`pkg/__pycache__/m.T.pyc`), or under `sys.pycache_prefix`
/// [`ppyc_format::prefixed_dir`] (`pkg/m.T.pyc`), as `cache_from_source` places them.
#[must_use]
pub fn pyc_root(dir: &Path, pycache_prefix: Option<&Path>) -> PathBuf {
    match pycache_prefix {
        Some(prefix) => ppyc_format::prefixed_dir(prefix, dir),
        None => dir.to_path_buf(),
    }
}

/// Whether `rel` has the shape of a `.pyc` path below a packed directory:
/// `[DIR/...]__pycache__/NAME.pyc`, every component a plain name; below a
/// `sys.pycache_prefix` (`prefixed`), `[DIR/...]NAME.pyc`.
#[must_use]
pub fn is_pyc_path(rel: &str, prefixed: bool) -> bool {
    use std::path::Component;
    let path = Path::new(rel);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    plain
        && !rel.contains('\0')
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".pyc") && n.len() > ".pyc".len())
        && (prefixed
            || path
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|p| p == "__pycache__"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_ownership() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("__pycache__/__ppyc__.cpython-312.pycs");
        assert!(PycRecord::read(&path).unwrap().is_none());
        std::fs::create_dir_all(d.path().join("p/__pycache__")).unwrap();
        std::fs::write(d.path().join("p/__pycache__/m.pyc"), b"ours").unwrap();
        std::fs::write(d.path().join("p/__pycache__/n.pyc"), b"theirs").unwrap();
        let mut record = PycRecord::new();
        record
            .pycs
            .insert("p/__pycache__/m.pyc".into(), digest_hex(b"ours"));
        record
            .pycs
            .insert("p/__pycache__/n.pyc".into(), digest_hex(b"was ours"));
        record.write(&path).unwrap();
        let back = PycRecord::read(&path).unwrap().unwrap();
        assert_eq!(back, record);
        assert!(back.still_ours(d.path(), "p/__pycache__/m.pyc"));
        // Rewritten by someone else since: not ppyc's any more.
        assert!(!back.still_ours(d.path(), "p/__pycache__/n.pyc"));
        // Not recorded.
        assert!(!back.still_ours(d.path(), "p/__pycache__/x.pyc"));
        // Paths ppyc never writes are never removed, whatever the record says.
        for bad in [
            "../p/__pycache__/m.pyc",
            "/etc/__pycache__/m.pyc",
            "p/../p/__pycache__/m.pyc",
            "p/m.pyc",
            "p/__pycache__/m.py",
            "p/__pycache__/.pyc",
        ] {
            assert!(!is_pyc_path(bad, false), "{bad}");
        }
        assert!(is_pyc_path("__pycache__/m.cpython-312.opt-1.pyc", false));
        // Below a pycache prefix there is no `__pycache__`, but the rest holds.
        assert!(is_pyc_path("p/m.cpython-312.pyc", true));
        for bad in ["../m.pyc", "/etc/m.pyc", "p/../m.pyc", "p/m.py", "p/.pyc"] {
            assert!(!is_pyc_path(bad, true), "{bad}");
        }
        let mut odd = PycRecord::new();
        std::fs::write(d.path().join("p/m.pyc"), b"ours").unwrap();
        odd.pycs.insert("p/m.pyc".into(), digest_hex(b"ours"));
        assert!(!odd.still_ours(d.path(), "p/m.pyc"));
        // A record written under a pycache prefix names files below the prefix.
        let prefix = d.path().join("prefix");
        let root = pyc_root(d.path(), Some(&prefix));
        assert!(root.starts_with(&prefix) && root.ends_with(d.path().strip_prefix("/").unwrap()));
        std::fs::create_dir_all(root.join("p")).unwrap();
        std::fs::write(root.join("p/m.pyc"), b"ours").unwrap();
        let mut prefixed = PycRecord::with_prefix(Some(&prefix));
        prefixed.pycs.insert("p/m.pyc".into(), digest_hex(b"ours"));
        prefixed.write(&path).unwrap();
        let back = PycRecord::read(&path).unwrap().unwrap();
        assert_eq!(back.root(d.path()), root);
        assert!(back.still_ours(d.path(), "p/m.pyc"));
        std::fs::write(
            &path,
            b"{\"format\": \"other\", \"version\": 1, \"pycs\": {}}",
        )
        .unwrap();
        assert!(matches!(
            PycRecord::read(&path),
            Err(RecordError::Invalid { .. })
        ));
    }
}
