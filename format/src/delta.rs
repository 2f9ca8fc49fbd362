//! Deltas (`spec/FORMAT.md` §13): a rebuild that changed a few modules writes them into a
//! second, small pack beside the unchanged base pack instead of rewriting the whole base.
//!
//! A delta is a pack of this same format whose required `BASE` section names the one base
//! pack it completes (that pack's header digest and file size) and the base's modules that
//! no longer exist. Readers see one generation: the base alone, or the base with the delta
//! that names it. A delta that names another base (left from an older generation) is not
//! used; its base alone is still correct, since every record is checked against its source.
//!
//! ```text
//! BASE section (required flag set):
//!   0  [32]u8  header digest of the base pack (§3 `header_digest`)
//!  32  u64     file size of the base pack
//!  40  u32     deleted count
//!  44  u32     reserved (0)
//!  48  deleted module names: each UTF-8, followed by one LF byte (0x0a); sorted bytewise,
//!      strictly increasing; the section ends right after the last one
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::bytes::{array_at, u32_at, u64_at};
use crate::error::FormatError;
use crate::{Module, Pack};

/// Fixed part of the `BASE` section.
pub const BASE_FIXED_SIZE: usize = 48;

/// What a delta's `BASE` section says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseRef {
    /// The base pack's `header_digest`.
    pub digest: [u8; 32],
    /// The base pack's `file_size`.
    pub file_size: u64,
    /// Modules of the base that the generation no longer has (sorted).
    pub deleted: Vec<String>,
}

impl BaseRef {
    /// The `BASE` section body; `deleted` is sorted and de-duplicated here.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut deleted = self.deleted.clone();
        deleted.sort();
        deleted.dedup();
        let mut out = Vec::with_capacity(BASE_FIXED_SIZE + deleted.len() * 16);
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(&self.file_size.to_le_bytes());
        out.extend_from_slice(
            &u32::try_from(deleted.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(&0u32.to_le_bytes());
        for name in &deleted {
            out.extend_from_slice(name.as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Parses a `BASE` section body, checking every rule of §13.
    pub fn parse(data: &[u8]) -> Result<Self, FormatError> {
        let bad = |what: &str| FormatError::BadBase(what.to_owned());
        if data.len() < BASE_FIXED_SIZE {
            return Err(bad("shorter than its fixed part"));
        }
        let digest: [u8; 32] = array_at(data, 0);
        let file_size = u64_at(data, 32);
        let count = u32_at(data, 40) as usize;
        if u32_at(data, 44) != 0 {
            return Err(bad("reserved bytes are not zero"));
        }
        let rest = &data[BASE_FIXED_SIZE..];
        if !rest.is_empty() && rest.last() != Some(&b'\n') {
            return Err(bad("the last deleted name is not terminated"));
        }
        let mut deleted: Vec<String> = Vec::with_capacity(count.min(rest.len()));
        if !rest.is_empty() {
            for raw in rest[..rest.len() - 1].split(|&b| b == b'\n') {
                let name = std::str::from_utf8(raw)
                    .ok()
                    .filter(|n| crate::writer::valid_module_name(n))
                    .ok_or_else(|| bad("a deleted name is not a module name"))?;
                if deleted.last().is_some_and(|last| last.as_str() >= name) {
                    return Err(bad("the deleted names are not sorted"));
                }
                deleted.push(name.to_owned());
            }
        }
        if deleted.len() != count {
            return Err(bad("the deleted count differs from the names"));
        }
        Ok(Self {
            digest,
            file_size,
            deleted,
        })
    }

    /// Whether this names the pack with `header` as its base.
    #[must_use]
    pub fn names(&self, header: &crate::Header) -> bool {
        self.digest == header.digest && self.file_size == header.file_size
    }
}

/// The delta of the pack at `pack_path` (§13): the same path with `.ppyd` for `.ppyc`.
#[must_use]
pub fn delta_path(pack_path: &Path) -> PathBuf {
    pack_path.with_extension("ppyd")
}

/// What is beside a base pack (§13).
#[derive(Debug)]
pub enum DeltaState {
    /// No delta file.
    Absent,
    /// A delta that names this base: the two are one generation.
    Paired(Box<Pack>),
    /// A delta of another base (an older generation, left when a compaction could not
    /// remove it): not used, and nothing is wrong.
    Unpaired,
    /// A delta file that cannot be used (why): damaged, not a delta, or for another
    /// target. The base alone serves.
    Unusable(String),
}

/// The delta beside `base` (opened from `base_path`), judged by the rules of §13: it must
/// be a delta (a `BASE` section) naming exactly this base (header digest and file size),
/// for the same target and layout.
#[must_use]
pub fn open_delta(base_path: &Path, base: &Pack) -> DeltaState {
    let path = delta_path(base_path);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DeltaState::Absent,
        Err(e) => return DeltaState::Unusable(format!("it cannot be read ({e})")),
        Ok(_) => {}
    }
    let delta = match Pack::open(&path) {
        Ok(d) => d,
        Err(e) => return DeltaState::Unusable(format!("it cannot be read ({e})")),
    };
    pair(base, delta)
}

/// Whether `delta` completes `base` (§13).
#[must_use]
pub fn pair(base: &Pack, delta: Pack) -> DeltaState {
    let named = match delta.base() {
        Ok(Some(b)) => b,
        Ok(None) => return DeltaState::Unusable("it is not a delta (no BASE section)".into()),
        Err(e) => return DeltaState::Unusable(e.to_string()),
    };
    if !named.names(base.header()) {
        return DeltaState::Unpaired;
    }
    let (b, d) = (base.header(), delta.header());
    if d.target != b.target || d.layout_fingerprint != b.layout_fingerprint {
        return DeltaState::Unusable(
            "it was built for another interpreter, level or layout than its base".into(),
        );
    }
    DeltaState::Paired(Box::new(delta))
}

/// One generation of a directory's code (§13): a base pack and, when one names it, its
/// delta. The delta's modules replace the base's of the same name, the delta's deleted
/// names hide the base's, and the delta's directory listings replace the base's.
#[derive(Debug)]
pub struct Generation {
    /// The base pack.
    pub base: Pack,
    /// The delta that completes it, if any.
    pub delta: Option<Pack>,
    /// Names of the base that the generation does not serve from the base: those the
    /// delta holds, and the deleted ones.
    hidden: HashSet<String>,
    /// Modules of the generation.
    count: usize,
}

/// Which pack of a generation a module comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// The base pack.
    Base,
    /// The delta.
    Delta,
}

impl Generation {
    /// The base alone.
    #[must_use]
    pub fn alone(base: Pack) -> Self {
        let count = base.len();
        Self {
            base,
            delta: None,
            hidden: HashSet::new(),
            count,
        }
    }

    /// `base` completed by `delta`, which must name it ([`pair`]); on an error (the delta's
    /// records or `BASE` cannot be read, or contradict each other) `base` is handed back.
    pub fn with_delta(base: Pack, delta: Pack) -> Result<Self, (Box<Pack>, FormatError)> {
        match Self::hidden(&base, &delta) {
            Ok((hidden, count)) => Ok(Self {
                base,
                delta: Some(delta),
                hidden,
                count,
            }),
            Err(e) => Err((Box::new(base), e)),
        }
    }

    /// The base names `delta` hides, and the generation's module count.
    fn hidden(base: &Pack, delta: &Pack) -> Result<(HashSet<String>, usize), FormatError> {
        let named = delta
            .base()?
            .ok_or_else(|| FormatError::BadBase("not a delta".into()))?;
        let mut hidden: HashSet<String> = HashSet::with_capacity(delta.len());
        for m in delta.modules() {
            hidden.insert(m?.name().to_owned());
        }
        let mut count = base.len() + delta.len();
        for name in hidden.iter().chain(&named.deleted) {
            if base.get(name).ok().flatten().is_some() {
                count -= 1;
            }
        }
        for name in named.deleted {
            if hidden.contains(&name) {
                return Err(FormatError::BadBase(format!(
                    "`{name}` is both deleted and in the delta"
                )));
            }
            hidden.insert(name);
        }
        Ok((hidden, count))
    }

    /// Opens the pack at `path` and its delta, if one names it: the generation, and why a
    /// delta beside it is not used when one is there and unusable.
    /// A delta at the pack's own path is refused: on its own it is not a generation.
    pub fn open(path: &Path) -> Result<(Self, Option<String>), FormatError> {
        let base = Pack::open(path)?;
        if base.is_delta() {
            return Err(FormatError::DeltaAtPackPath);
        }
        Ok(match open_delta(path, &base) {
            DeltaState::Paired(delta) => match Self::with_delta(base, *delta) {
                Ok(g) => (g, None),
                Err((base, e)) => (Self::alone(*base), Some(e.to_string())),
            },
            DeltaState::Unusable(why) => (Self::alone(base), Some(why)),
            DeltaState::Absent | DeltaState::Unpaired => (Self::alone(base), None),
        })
    }

    /// Modules of the generation.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the generation has no module.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The module `name` and the layer it comes from.
    pub fn get(&self, name: &str) -> Result<Option<(Layer, Module<'_>)>, FormatError> {
        if let Some(delta) = &self.delta {
            if let Some(m) = delta.get(name)? {
                return Ok(Some((Layer::Delta, m)));
            }
            if self.hidden.contains(name) {
                return Ok(None);
            }
        }
        Ok(self.base.get(name)?.map(|m| (Layer::Base, m)))
    }

    /// The pack of `layer`.
    #[must_use]
    pub fn pack(&self, layer: Layer) -> &Pack {
        match (layer, &self.delta) {
            (Layer::Delta, Some(d)) => d,
            _ => &self.base,
        }
    }

    /// Every module of the generation: the base's that it still serves (lookup-table
    /// order), then the delta's.
    pub fn modules(&self) -> impl Iterator<Item = Result<(Layer, Module<'_>), FormatError>> + '_ {
        let base = self.base.modules().filter_map(move |m| match m {
            Ok(m) if self.hidden.contains(m.name()) => None,
            Ok(m) => Some(Ok((Layer::Base, m))),
            Err(e) => Some(Err(e)),
        });
        let delta = self
            .delta
            .iter()
            .flat_map(Pack::modules)
            .map(|m| m.map(|m| (Layer::Delta, m)));
        base.chain(delta)
    }

    /// The directory listings in force: the delta's when it has them (it records every
    /// directory again), else the base's.
    pub fn dirs(&self) -> Result<Option<crate::dirs::Dirs<'_>>, FormatError> {
        if let Some(delta) = &self.delta {
            if let Some(dirs) = delta.dirs()? {
                return Ok(Some(dirs));
            }
        }
        self.base.dirs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_round_trips_and_refuses_bad_bodies() {
        let base = BaseRef {
            digest: [7; 32],
            file_size: 4096,
            deleted: vec!["pkg.b".into(), "a".into(), "pkg.b".into()],
        };
        let bytes = base.encode();
        assert_eq!(bytes.len(), BASE_FIXED_SIZE + "a\npkg.b\n".len());
        let parsed = BaseRef::parse(&bytes).unwrap();
        assert_eq!(parsed.deleted, vec!["a".to_owned(), "pkg.b".to_owned()]);
        assert_eq!((parsed.digest, parsed.file_size), ([7; 32], 4096));

        let empty = BaseRef {
            deleted: vec![],
            ..base.clone()
        };
        assert!(BaseRef::parse(&empty.encode()).unwrap().deleted.is_empty());

        let mut unterminated = bytes.clone();
        unterminated.pop();
        assert!(BaseRef::parse(&unterminated).is_err());
        let mut reserved = bytes.clone();
        reserved[44] = 1;
        assert!(BaseRef::parse(&reserved).is_err());
        let mut count = bytes.clone();
        count[40] = 3;
        assert!(BaseRef::parse(&count).is_err());
        let mut unsorted = bytes[..BASE_FIXED_SIZE].to_vec();
        unsorted.extend_from_slice(b"pkg.b\na\n");
        assert!(BaseRef::parse(&unsorted).is_err());
        let mut not_a_name = bytes[..BASE_FIXED_SIZE].to_vec();
        not_a_name[40] = 1;
        not_a_name.extend_from_slice(b"a..b\n");
        assert!(BaseRef::parse(&not_a_name).is_err());
        assert!(BaseRef::parse(&bytes[..40]).is_err());
    }

    #[test]
    fn delta_path_is_beside_the_pack() {
        assert_eq!(
            delta_path(Path::new("/d/__pycache__/__ppyc__.cpython-312.opt-1.ppyc")),
            Path::new("/d/__pycache__/__ppyc__.cpython-312.opt-1.ppyd")
        );
    }
}
