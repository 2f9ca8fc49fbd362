//! `DIRS`: the recorded listings of the directories a pack covers (`spec/FORMAT.md` §12).
//!
//! The import hook finds modules with the stock `FileFinder` rules, which list a directory
//! (`os.listdir`) whenever its mtime differs from the one the listing was taken at. A pack
//! records, for every directory it covers, its listing and the mtime and ctime it was taken
//! at: a process whose `stat` of the directory gives that very mtime and ctime uses the
//! recorded names instead of listing the directory again. (The mtime alone is not enough
//! across processes: `tar`, `rsync -a` and `cp -a` give a changed directory its old mtime
//! back, and a new process of the stock importer lists it whatever its mtime. Any change
//! to a directory, `utime` included, sets its ctime to the present, and no call sets a
//! ctime back.)
//!
//! ```text
//! u32 count, u32 reserved (0)
//! count entries of 56 bytes, sorted by path (bytewise, strictly increasing):
//!   0  u32 path offset    4  u32 path length     (the directory relative to the pack's
//!                                                 root, `/`-separated; empty for the root)
//!   8  u32 names offset  12  u32 names length    (each name followed by one NUL byte)
//!  16  u32 name count    20  u32 mtime nanoseconds (0..10^9)
//!  24  i64 mtime seconds
//!  32  i64 ctime seconds 40  u32 ctime nanoseconds (0..10^9)   44  u32 reserved (0)
//!  48  u64 checksum: XXH3-64 of bytes 0..48 of the entry, the path and the names
//! strings: paths and name lists, each at its offset (from the start of the section)
//! ```
//!
//! Each entry is checked (bounds, checksum, name rules) when it is used; a damaged entry
//! is a miss (the directory is listed, as without a pack), never a wrong listing.

use crate::bytes::{i64_at, u32_at, u64_at};
use crate::error::FormatError;

/// Size of one entry.
pub const DIR_ENTRY_SIZE: usize = 56;
const HEAD: usize = 48;
const HEADER: usize = 8;

/// A listing is recorded only when the directory's mtime is older than the moment it was
/// listed by more than the file system's timestamp resolution (git's racy-clean rule): a
/// change made after the listing then always gives the directory another mtime. This is
/// the margin for file systems not known to have fine timestamps (2 s on FAT, 1 s on some
/// network file systems).
pub const RACY_NS: i64 = 2_000_000_000;
/// The margin on the local Linux file systems whose timestamps come from the kernel's
/// coarse clock, one tick (at most 10 ms) or finer: ext2/3/4, XFS, Btrfs, tmpfs,
/// overlayfs, ZFS, F2FS.
pub const RACY_LOCAL_NS: i64 = 100_000_000;

/// One directory's listing, as the compiler hands it to the writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirInput {
    /// Relative to the pack's root, `/`-separated; empty for the root.
    pub path: String,
    /// `st_mtime` of the directory when it was listed: seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// `st_ctime` of the directory when it was listed: seconds and nanoseconds.
    pub ctime: (i64, u32),
    /// Every name `os.listdir` gives (raw bytes), in any order.
    pub names: Vec<Vec<u8>>,
}

fn checksum(head: &[u8], path: &[u8], names: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(head);
    h.update(path);
    h.update(names);
    h.digest()
}

/// The `DIRS` section body for `dirs` (sorted here; names sorted too, for determinism).
pub fn build(mut dirs: Vec<DirInput>) -> Result<Vec<u8>, FormatError> {
    let bad = |what: String| FormatError::BadDirs(what);
    dirs.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    for w in dirs.windows(2) {
        if w[0].path == w[1].path {
            return Err(bad(format!("directory `{}` is listed twice", w[0].path)));
        }
    }
    let mut strings = Vec::new();
    let mut entries = Vec::with_capacity(dirs.len() * DIR_ENTRY_SIZE);
    let base = HEADER + dirs.len() * DIR_ENTRY_SIZE;
    let offset = |strings: &Vec<u8>| -> Result<u32, FormatError> {
        u32::try_from(base + strings.len()).map_err(|_| bad("the section is too large".into()))
    };
    let len32 = |n: usize| u32::try_from(n).map_err(|_| bad("a listing is too large".into()));
    for mut d in dirs {
        if d.mtime.1 >= 1_000_000_000 || d.ctime.1 >= 1_000_000_000 {
            return Err(bad(format!("`{}`: nanoseconds out of range", d.path)));
        }
        d.names.sort();
        d.names.dedup();
        let path_off = offset(&strings)?;
        strings.extend_from_slice(d.path.as_bytes());
        let names_off = offset(&strings)?;
        let names_start = strings.len();
        for name in &d.names {
            if name.is_empty() || name.contains(&0) || name.contains(&b'/') {
                return Err(bad(format!(
                    "`{}`: a name that cannot be a file name",
                    d.path
                )));
            }
            strings.extend_from_slice(name);
            strings.push(0);
        }
        let names = &strings[names_start..];
        let mut head = Vec::with_capacity(HEAD);
        head.extend_from_slice(&path_off.to_le_bytes());
        head.extend_from_slice(&len32(d.path.len())?.to_le_bytes());
        head.extend_from_slice(&names_off.to_le_bytes());
        head.extend_from_slice(&len32(names.len())?.to_le_bytes());
        head.extend_from_slice(&len32(d.names.len())?.to_le_bytes());
        head.extend_from_slice(&d.mtime.1.to_le_bytes());
        head.extend_from_slice(&d.mtime.0.to_le_bytes());
        head.extend_from_slice(&d.ctime.0.to_le_bytes());
        head.extend_from_slice(&d.ctime.1.to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        let sum = checksum(&head, d.path.as_bytes(), names);
        entries.extend_from_slice(&head);
        entries.extend_from_slice(&sum.to_le_bytes());
    }
    let mut out = Vec::with_capacity(base + strings.len());
    out.extend_from_slice(&len32(entries.len() / DIR_ENTRY_SIZE)?.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&entries);
    out.extend_from_slice(&strings);
    Ok(out)
}

/// The parsed `DIRS` section.
#[derive(Clone, Copy, Debug)]
pub struct Dirs<'a> {
    data: &'a [u8],
    count: usize,
}

/// One checked listing.
#[derive(Clone, Copy, Debug)]
pub struct Listing<'a> {
    /// `st_mtime` the listing was taken at: seconds, nanoseconds.
    pub mtime: (i64, u32),
    /// `st_ctime` the listing was taken at: seconds, nanoseconds.
    pub ctime: (i64, u32),
    names: &'a [u8],
    count: usize,
}

impl<'a> Listing<'a> {
    /// How many names.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the directory was empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The names (raw bytes, sorted).
    pub fn names(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let names = self.names;
        names
            .strip_suffix(&[0])
            .map(|n| n.split(|&b| b == 0))
            .into_iter()
            .flatten()
    }
}

impl<'a> Dirs<'a> {
    /// Parses the section's header; entries are checked when used.
    pub fn parse(data: &'a [u8]) -> Result<Self, FormatError> {
        let bad = |what: &str| FormatError::BadDirs(what.to_owned());
        if data.len() < HEADER || u32_at(data, 4) != 0 {
            return Err(bad("bad header"));
        }
        let count = u32_at(data, 0) as usize;
        count
            .checked_mul(DIR_ENTRY_SIZE)
            .and_then(|n| n.checked_add(HEADER))
            .filter(|&end| end <= data.len())
            .ok_or_else(|| bad("the table lies outside the section"))?;
        Ok(Self { data, count })
    }

    /// Number of directories.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no directory is recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn span(&self, off: u32, len: u32) -> Option<&'a [u8]> {
        let start = off as usize;
        let end = start.checked_add(len as usize)?;
        if start < HEADER + self.count * DIR_ENTRY_SIZE {
            return None;
        }
        self.data.get(start..end)
    }

    /// The path of entry `i` (unchecked beyond bounds: for the search).
    fn path_of(&self, i: usize) -> Option<&'a [u8]> {
        let e = HEADER + i * DIR_ENTRY_SIZE;
        self.span(u32_at(self.data, e), u32_at(self.data, e + 4))
    }

    /// Entry `i`, checked.
    pub fn entry(&self, i: usize) -> Result<(&'a [u8], Listing<'a>), FormatError> {
        let bad = |what: &str| FormatError::BadDirs(format!("entry {i}: {what}"));
        if i >= self.count {
            return Err(bad("no such entry"));
        }
        let e = HEADER + i * DIR_ENTRY_SIZE;
        let field = |k: usize| u32_at(self.data, e + 4 * k);
        let path = self
            .span(field(0), field(1))
            .ok_or_else(|| bad("its path lies outside the section"))?;
        let names = self
            .span(field(2), field(3))
            .ok_or_else(|| bad("its names lie outside the section"))?;
        let sum = checksum(&self.data[e..e + HEAD], path, names);
        if sum != u64_at(self.data, e + HEAD) {
            return Err(bad("checksum mismatch"));
        }
        let count = field(4) as usize;
        let nsec = field(5);
        let ctime_nsec = field(10);
        if nsec >= 1_000_000_000 || ctime_nsec >= 1_000_000_000 {
            return Err(bad("nanoseconds out of range"));
        }
        if field(11) != 0 {
            return Err(bad("its reserved field is not zero"));
        }
        let nuls = names.iter().filter(|&&b| b == 0).count();
        if nuls != count
            || (!names.is_empty() && names.last() != Some(&0))
            || names.windows(2).any(|w| w == [0, 0])
            || names.first() == Some(&0)
            || names.contains(&b'/')
        {
            return Err(bad("its names are malformed"));
        }
        Ok((
            path,
            Listing {
                mtime: (i64_at(self.data, e + 24), nsec),
                ctime: (i64_at(self.data, e + 32), ctime_nsec),
                names,
                count,
            },
        ))
    }

    /// The listing of directory `path` (relative to the root), when recorded and intact.
    #[must_use]
    pub fn get(&self, path: &str) -> Option<Listing<'a>> {
        let key = path.as_bytes();
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.path_of(mid)?.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return self.entry(mid).ok().map(|(_, listing)| listing);
                }
            }
        }
        None
    }

    /// Checks every entry, their order, and that the strings are packed in entry order
    /// with nothing left over (`ppyc verify`).
    pub fn verify(&self) -> Result<(), FormatError> {
        let mut expected = HEADER + self.count * DIR_ENTRY_SIZE;
        let mut previous: Option<&[u8]> = None;
        for i in 0..self.count {
            let (path, listing) = self.entry(i)?;
            let e = HEADER + i * DIR_ENTRY_SIZE;
            let bad = |what: &str| FormatError::BadDirs(format!("entry {i}: {what}"));
            if u32_at(self.data, e) as usize != expected
                || u32_at(self.data, e + 8) as usize != expected + path.len()
            {
                return Err(bad("its strings are not packed in order"));
            }
            expected += path.len() + listing.names.len();
            if previous.is_some_and(|p| p >= path) {
                return Err(bad("entries are not sorted by path"));
            }
            if std::str::from_utf8(path).is_err() {
                return Err(bad("its path is not UTF-8"));
            }
            let names: Vec<&[u8]> = listing.names().collect();
            if names.windows(2).any(|w| w[0] >= w[1]) {
                return Err(bad("its names are not sorted and unique"));
            }
            previous = Some(path);
        }
        if expected != self.data.len() {
            return Err(FormatError::BadDirs("bytes after the last listing".into()));
        }
        Ok(())
    }
}
