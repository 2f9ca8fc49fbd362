//! Memory of a process from `/proc/PID/smaps_rollup` and the pack mappings of
//! `/proc/PID/smaps` (Linux; `Documentation/filesystems/proc.rst`).

use std::path::PathBuf;

use crate::Error;
use crate::report::Memory;

/// One process's numbers, in bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub rss: u64,
    pub pss: u64,
    pub private: u64,
    pub shared: u64,
    pub pack_rss: u64,
    pub pack_pss: u64,
    pub pack_private: u64,
    pub pack_shared: u64,
}

/// Reads the numbers of a live process.
pub fn read(pid: u32) -> Result<Sample, Error> {
    let rollup_path = PathBuf::from(format!("/proc/{pid}/smaps_rollup"));
    let rollup = std::fs::read_to_string(&rollup_path).map_err(|source| Error::Io {
        path: rollup_path,
        source,
    })?;
    let smaps_path = PathBuf::from(format!("/proc/{pid}/smaps"));
    let smaps = std::fs::read_to_string(&smaps_path).map_err(|source| Error::Io {
        path: smaps_path,
        source,
    })?;
    Ok(parse(&rollup, &smaps))
}

/// `Field:   123 kB` lines of one block into totals.
#[derive(Default)]
struct Fields {
    rss: u64,
    pss: u64,
    private: u64,
    shared: u64,
}

impl Fields {
    fn line(&mut self, line: &str) {
        let Some((key, rest)) = line.split_once(':') else {
            return;
        };
        let kb: u64 = match rest.trim().strip_suffix("kB") {
            Some(n) => n.trim().parse().unwrap_or(0),
            None => return,
        };
        let bytes = kb * 1024;
        match key {
            "Rss" => self.rss += bytes,
            "Pss" => self.pss += bytes,
            "Private_Clean" | "Private_Dirty" => self.private += bytes,
            "Shared_Clean" | "Shared_Dirty" => self.shared += bytes,
            _ => {}
        }
    }
}

/// A mapping header line: `start-end perms offset dev inode [path]`.
fn mapping_path(line: &str) -> Option<&str> {
    let mut parts = line.splitn(6, ' ');
    let range = parts.next()?;
    if !range.contains('-') || !range.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return None;
    }
    for _ in 0..4 {
        parts.next()?;
    }
    Some(parts.next().unwrap_or("").trim_start())
}

/// The numbers from the texts of `smaps_rollup` and `smaps`; pack mappings are those of
/// files named `*.ppyc`.
pub fn parse(rollup: &str, smaps: &str) -> Sample {
    let mut all = Fields::default();
    for line in rollup.lines() {
        if mapping_path(line).is_none() {
            all.line(line);
        }
    }
    let mut packs = Fields::default();
    let mut in_pack = false;
    for line in smaps.lines() {
        if let Some(path) = mapping_path(line) {
            in_pack = path.ends_with(".ppyc") || path.ends_with(".ppyc (deleted)");
        } else if in_pack {
            packs.line(line);
        }
    }
    Sample {
        rss: all.rss,
        pss: all.pss,
        private: all.private,
        shared: all.shared,
        pack_rss: packs.rss,
        pack_pss: packs.pss,
        pack_private: packs.private,
        pack_shared: packs.shared,
    }
}

/// One side over rounds of K processes: the round with the median total Pss, and in it the
/// process with the median Pss.
pub fn summarise(rounds: &[Vec<Sample>]) -> Memory {
    let mut totals: Vec<(u64, usize)> = rounds
        .iter()
        .enumerate()
        .map(|(i, r)| (r.iter().map(|s| s.pss).sum(), i))
        .collect();
    totals.sort();
    let Some(&(pss_total, i)) = totals.get(totals.len() / 2) else {
        return Memory::default();
    };
    let mut round = rounds[i].clone();
    round.sort_by_key(|s| s.pss);
    let Some(s) = round.get(round.len() / 2) else {
        return Memory::default();
    };
    Memory {
        rss_bytes: s.rss,
        pss_bytes: s.pss,
        private_bytes: s.private,
        shared_bytes: s.shared,
        pss_total_bytes: pss_total,
        pack_rss_bytes: s.pack_rss,
        pack_pss_bytes: s.pack_pss,
        pack_private_bytes: s.pack_private,
        pack_shared_bytes: s.pack_shared,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLUP: &str = "55d4c8a1e000-7ffd1b5f6000 ---p 00000000 00:00 0                          [rollup]\n\
Rss:               10240 kB\nPss:                6000 kB\nPss_Anon:           3000 kB\n\
Shared_Clean:       5000 kB\nShared_Dirty:          0 kB\nPrivate_Clean:      1240 kB\n\
Private_Dirty:      4000 kB\nSwap:                  0 kB\n";

    const SMAPS: &str = "7f0000000000-7f0000100000 r--s 00000000 08:01 1234       /x/__pycache__/__ppyc__.cpython-312.ppyc\n\
Size:               1024 kB\nRss:                 100 kB\nPss:                  50 kB\n\
Shared_Clean:        100 kB\nPrivate_Clean:         0 kB\n\
7f0000100000-7f0000200000 r-xp 00000000 08:01 99         /usr/lib/libc.so.6\n\
Rss:                 900 kB\nPss:                 10 kB\nShared_Clean:        900 kB\n\
7f0000300000-7f0000400000 rw-p 00000000 00:00 0 \n\
Rss:                   4 kB\nPrivate_Dirty:         4 kB\n";

    #[test]
    fn parses_rollup_and_pack_mappings() {
        let s = parse(ROLLUP, SMAPS);
        assert_eq!(s.rss, 10240 * 1024);
        assert_eq!(s.pss, 6000 * 1024);
        assert_eq!(s.private, 5240 * 1024);
        assert_eq!(s.shared, 5000 * 1024);
        assert_eq!(s.pack_rss, 100 * 1024);
        assert_eq!(s.pack_pss, 50 * 1024);
        assert_eq!(s.pack_shared, 100 * 1024);
        assert_eq!(s.pack_private, 0);
    }

    #[test]
    fn medians() {
        let p = |pss| Sample {
            pss,
            ..Sample::default()
        };
        let m = summarise(&[vec![p(5), p(1)], vec![p(10), p(20)], vec![p(2), p(3)]]);
        assert_eq!(m.pss_total_bytes, 6);
        assert_eq!(m.pss_bytes, 5);
        assert_eq!(summarise(&[]), Memory::default());
    }

    #[test]
    fn reads_this_process() {
        let s = read(std::process::id()).unwrap();
        assert!(s.rss > 0 && s.pss > 0 && s.rss >= s.private);
    }
}
