//! `ppyc_compiler::pyc` against every installed CPython: source hashes, cache paths,
//! header classification and the acceptance decision of `SourceLoader.get_code`.

mod common;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use ppyc_compiler::pyc::{
    CheckHashBasedPycs, InvalidationMode, OptLevel, PycHeader, PycHeaderError, PycKind, Rejection,
    SourceHashAlgorithm, SourceStat, cache_path, cache_path_in, check_pyc, check_pyc_file,
    magic_bytes, magic_number, source_hash, source_hash_with,
};
use proptest::prelude::*;

/// Runs `python -I -c script args...` and returns its stdout; panics (test failure) with
/// stderr when it fails.
fn run_py(python: &Path, script: &str, args: &[&OsStr]) -> String {
    let out = Command::new(python)
        .args(["-I", "-c", script])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{} failed: {}\n{}",
        python.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python printed UTF-8")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The target's `importlib.util.MAGIC_NUMBER` and `sys.implementation.cache_tag`.
fn magic_and_tag(python: &Path) -> ([u8; 4], String) {
    let out = run_py(
        python,
        "import importlib.util, sys; print(importlib.util.MAGIC_NUMBER.hex(), sys.implementation.cache_tag)",
        &[],
    );
    let mut parts = out.split_whitespace();
    let magic: [u8; 4] = unhex(parts.next().expect("magic"))
        .try_into()
        .expect("4 bytes");
    (magic, parts.next().expect("cache tag").to_owned())
}

/// A small deterministic PRNG (xorshift64*), so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

fn varied_sources() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut sources: Vec<Vec<u8>> = (0..=70).map(|len| rng.bytes(len)).collect();
    for len in [127, 128, 255, 256, 1000, 4095, 4096, 4097, 65_537] {
        sources.push(rng.bytes(len));
    }
    sources.push(b"print('hello')\n".to_vec());
    sources.push(
        "# -*- coding: latin-1 -*-\nx = '\u{e9}'\n"
            .as_bytes()
            .to_vec(),
    );
    sources.push(vec![0; 33]);
    sources.push(vec![0xff; 64]);
    sources
}

#[test]
fn source_hash_matches_imp_source_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sources = varied_sources();
    let mut args = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let path = dir.path().join(format!("s{i}"));
        std::fs::write(&path, source).expect("write source");
        args.push(path.into_os_string());
    }
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let script = "import sys, _imp, importlib.util as u\n\
                  print(u.MAGIC_NUMBER.hex())\n\
                  for p in sys.argv[1:]:\n\
                  \x20   print(_imp.source_hash(u._RAW_MAGIC_NUMBER, open(p, 'rb').read()).hex())\n";
    for python in common::pythons() {
        let out = run_py(&python, script, &args);
        let mut lines = out.lines();
        let magic: [u8; 4] = unhex(lines.next().expect("magic"))
            .try_into()
            .expect("4 bytes");
        let expected_algorithm = if magic_number(magic).expect("magic ends in \\r\\n") < 3450 {
            SourceHashAlgorithm::SipHash24
        } else {
            SourceHashAlgorithm::SipHash13
        };
        assert_eq!(SourceHashAlgorithm::for_magic(&magic), expected_algorithm);
        let other = match expected_algorithm {
            SourceHashAlgorithm::SipHash24 => SourceHashAlgorithm::SipHash13,
            SourceHashAlgorithm::SipHash13 => SourceHashAlgorithm::SipHash24,
        };
        for (source, line) in sources.iter().zip(lines) {
            assert_eq!(
                hex(&source_hash(&magic, source)),
                line,
                "{}: source of {} bytes",
                python.display(),
                source.len()
            );
            // The other SipHash variant must not match: the version split is real.
            assert_ne!(hex(&source_hash_with(other, &magic, source)), line);
        }
    }
}

fn tricky_paths() -> Vec<Vec<u8>> {
    let mut paths: Vec<Vec<u8>> = [
        "foo.py",
        "pkg/mod.py",
        "/abs/pkg/__init__.py",
        "/foo.py",
        "//x.py",
        "a//b.py",
        "a/b/",
        "a.b.py",
        "foo",
        ".hidden",
        "x/.py",
        "a/..py",
        "a/b.",
        "a/b\\c.py",
        "dir.d/noext",
        "/site-packages/caf\u{e9}/\u{65e5}\u{672c}.py",
        "a/new\nline.py",
        "",
        "/",
        "sp ace/m o d.py",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    paths.push(b"bad/\xff\xfe.py".to_vec());
    paths.push(b"/bad\x80dir/m.py".to_vec());
    paths
}

#[test]
fn cache_path_matches_cache_from_source() {
    let paths = tricky_paths();
    let hexes: Vec<String> = paths.iter().map(|p| hex(p)).collect();
    let args: Vec<&OsStr> = hexes.iter().map(OsStr::new).collect();
    let script = "import sys, os, importlib.util as u\n\
                  print(sys.implementation.cache_tag)\n\
                  for h in sys.argv[1:]:\n\
                  \x20   p = os.fsdecode(bytes.fromhex(h))\n\
                  \x20   print(' '.join(os.fsencode(u.cache_from_source(p, optimization=o)).hex() for o in ('', 1, 2)))\n";
    for python in common::pythons() {
        let out = run_py(&python, script, &args);
        let mut lines = out.lines();
        let tag = lines.next().expect("cache tag");
        for (path, line) in paths.iter().zip(lines) {
            let expected: Vec<Vec<u8>> = line.split(' ').map(unhex).collect();
            for (level, expected) in OptLevel::ALL.iter().zip(&expected) {
                let ours = cache_path(Path::new(OsStr::from_bytes(path)), tag, *level);
                assert_eq!(
                    ours.as_os_str().as_bytes(),
                    expected.as_slice(),
                    "{}: cache_from_source({:?}, optimization={level:?})",
                    python.display(),
                    String::from_utf8_lossy(path)
                );
            }
        }
    }
}

#[test]
fn cache_path_in_matches_cache_from_source_with_a_pycache_prefix() {
    // Relative paths are made absolute against the current directory (the same for both
    // sides); a leading `./` is left out: 3.12 drops it, 3.10 and 3.11 keep it.
    let paths: Vec<Vec<u8>> = tricky_paths()
        .into_iter()
        .filter(|p| !p.starts_with(b"./"))
        .collect();
    let prefixes: [&[u8]; 4] = [b"/pre", b"/pre//", b"rel/pre", b"/"];
    let hexes: Vec<String> = paths.iter().map(|p| hex(p)).collect();
    let mut args: Vec<String> = prefixes.iter().map(|p| hex(p)).collect();
    args.insert(0, prefixes.len().to_string());
    args.extend(hexes);
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let script = "import sys, os, importlib.util as u\n\
                  print(sys.implementation.cache_tag)\n\
                  n = int(sys.argv[1])\n\
                  prefixes, paths = sys.argv[2:2 + n], sys.argv[2 + n:]\n\
                  for q in prefixes:\n\
                  \x20   sys.pycache_prefix = os.fsdecode(bytes.fromhex(q))\n\
                  \x20   for h in paths:\n\
                  \x20       p = os.fsdecode(bytes.fromhex(h))\n\
                  \x20       try:\n\
                  \x20           print(' '.join(os.fsencode(u.cache_from_source(p, optimization=o)).hex() for o in ('', 1, 2)))\n\
                  \x20       except IndexError:\n\
                  \x20           print('-')\n";
    for python in common::pythons() {
        let out = run_py(&python, script, &args);
        let mut lines = out.lines();
        let tag = lines.next().expect("cache tag").to_owned();
        for prefix in prefixes {
            for path in &paths {
                let line = lines.next().expect("a line per prefix and path");
                if line == "-" {
                    // 3.10 and 3.11 index `head[1]` of a one-character head (`//x.py`).
                    continue;
                }
                let expected: Vec<Vec<u8>> = line.split(' ').map(unhex).collect();
                for (level, expected) in OptLevel::ALL.iter().zip(&expected) {
                    let ours = cache_path_in(
                        Path::new(OsStr::from_bytes(path)),
                        &tag,
                        *level,
                        Some(Path::new(OsStr::from_bytes(prefix))),
                    );
                    assert_eq!(
                        ours.as_os_str().as_bytes(),
                        expected.as_slice(),
                        "{}: cache_from_source({:?}) with pycache_prefix {:?}",
                        python.display(),
                        String::from_utf8_lossy(path),
                        String::from_utf8_lossy(prefix),
                    );
                }
            }
        }
    }
}

/// Crafted headers and what `_classify_pyc` says about them.
#[test]
fn classify_matches_classify_pyc() {
    let good = magic_bytes(3531);
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        good[..2].to_vec(),
        good.to_vec(),
        [good.as_slice(), &[0; 11]].concat(),
        [good.as_slice(), &[0; 12]].concat(),
        [good.as_slice(), &[0; 100]].concat(),
        [&[0, 0, 0, 0], [0; 12].as_slice()].concat(),
        b"\x42\x0d\r\n\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(),
    ];
    for flags in [0_u32, 1, 2, 3, 4, 5, 8, 0x8000_0000, 0xFFFF_FFFF] {
        let mut data = good.to_vec();
        data.extend_from_slice(&flags.to_le_bytes());
        data.extend_from_slice(&[7; 8]);
        cases.push(data);
    }
    let hexes: Vec<String> = cases.iter().map(|c| hex(c)).collect();
    let args: Vec<&OsStr> = hexes.iter().map(OsStr::new).collect();
    // Every interpreter classifies against its own MAGIC_NUMBER: substitute it.
    let script = "import sys, importlib._bootstrap_external as be\n\
                  good = bytes.fromhex(sys.argv[1])\n\
                  print(be.MAGIC_NUMBER.hex())\n\
                  for h in sys.argv[2:]:\n\
                  \x20   d = bytes.fromhex(h)\n\
                  \x20   d = be.MAGIC_NUMBER + d[4:] if d[:4] == good else d\n\
                  \x20   try:\n\
                  \x20       print('ok', be._classify_pyc(d, 'm', {}))\n\
                  \x20   except ImportError:\n\
                  \x20       print('ImportError')\n\
                  \x20   except EOFError:\n\
                  \x20       print('EOFError')\n";
    let good_hex = hex(&good);
    let mut all_args = vec![OsStr::new(&good_hex)];
    all_args.extend(args);
    for python in common::pythons() {
        let out = run_py(&python, script, &all_args);
        let mut lines = out.lines();
        let magic: [u8; 4] = unhex(lines.next().expect("magic"))
            .try_into()
            .expect("4 bytes");
        for (case, line) in cases.iter().zip(lines) {
            let mut data = case.clone();
            if data.get(..4) == Some(good.as_slice()) {
                data[..4].copy_from_slice(&magic);
            }
            let ours = match PycHeader::classify(&data, &magic) {
                Ok(header) => format!("ok {}", header.flags()),
                Err(PycHeaderError::BadMagic { .. } | PycHeaderError::InvalidFlags { .. }) => {
                    "ImportError".to_owned()
                }
                Err(PycHeaderError::Truncated { .. }) => "EOFError".to_owned(),
            };
            assert_eq!(ours, line, "{}: {}", python.display(), hex(&data));
        }
    }
}

fn set_mtime_ns(path: &Path, ns: i128) {
    let time = if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).expect("fits"))
    } else {
        UNIX_EPOCH - Duration::from_nanos(u64::try_from(-ns).expect("fits"))
    };
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open to set mtime");
    file.set_modified(time).expect("set mtime");
}

fn mtime_ns(path: &Path) -> i128 {
    let stat = SourceStat::of(path).expect("stat");
    i128::from(stat.mtime_sec) * 1_000_000_000 + i128::from(stat.mtime_nsec)
}

#[test]
fn pyc_mtime_matches_int_st_mtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("f.py");
    std::fs::write(&file, b"").expect("write");
    let cases: [i128; 10] = [
        0,
        1_700_000_000_999_999_999,
        1_700_000_000_999_999_881,
        1_700_000_000_999_999_800,
        1_700_000_000_500_000_000,
        -1_500_000_000,
        -1_999_999_999,
        -86_400_000_000_001,
        8_589_934_592_000_000_005,
        4_294_967_295_999_999_999,
    ];
    let python = common::pythons().remove(0);
    for ns in cases {
        set_mtime_ns(&file, ns);
        let ours = SourceStat::of(&file).expect("stat");
        let theirs = run_py(
            &python,
            "import os, sys; st = os.stat(sys.argv[1]); print(int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF)",
            &[file.as_os_str()],
        );
        assert_eq!(
            format!("{} {}", ours.pyc_mtime(), ours.pyc_size()),
            theirs.trim(),
            "mtime {ns} ns"
        );
    }
}

/// How a scenario changes things after `py_compile` wrote the pyc.
#[derive(Clone, Copy, Debug)]
enum Change {
    Nothing,
    /// Same size, same mtime, different bytes.
    SameSizeContent,
    /// One more byte, mtime restored.
    Size,
    /// `+1 s`, same bytes.
    MtimeSecond,
    /// Sub-second mtime change within the same second.
    MtimeSubsecond,
    /// Size changed by exactly 2**32 is impossible to arrange cheaply; instead change the
    /// mtime by exactly 2**32 s, which the 32-bit field cannot see.
    MtimeWrap,
    /// The pyc's magic number is corrupted.
    BadMagic,
    /// The pyc's flags get bit 2.
    BadFlags,
    /// The pyc is cut to 15 bytes.
    Truncated,
    /// The pyc's flags are flipped between checked and unchecked hash (or, for a
    /// timestamp pyc, bit 1 is set: still a timestamp pyc).
    FlipCheckBit,
}

const CHANGES: [Change; 10] = [
    Change::Nothing,
    Change::SameSizeContent,
    Change::Size,
    Change::MtimeSecond,
    Change::MtimeSubsecond,
    Change::MtimeWrap,
    Change::BadMagic,
    Change::BadFlags,
    Change::Truncated,
    Change::FlipCheckBit,
];

const MODES: [InvalidationMode; 3] = [
    InvalidationMode::Timestamp,
    InvalidationMode::CheckedHash,
    InvalidationMode::UncheckedHash,
];

const SOURCE: &[u8] = b"x = 1\ny = 'abc'\n";

/// `SourceLoader.get_code` itself decides: the loader's `source_to_code` is patched to
/// record whether it was called (it is only when the pyc is not used); `-B` keeps it from
/// rewriting the pyc.
const GET_CODE_SCRIPT: &str = "\
import sys, importlib.machinery as m
calls = []
orig = m.SourceFileLoader.source_to_code
def patched(self, *args, **kwargs):
    calls.append(1)
    return orig(self, *args, **kwargs)
m.SourceFileLoader.source_to_code = patched
for path in sys.argv[1:]:
    del calls[:]
    m.SourceFileLoader('m', path).get_code('m')
    print('rejected' if calls else 'accepted')
";

#[test]
fn acceptance_matches_source_loader_get_code() {
    for python in common::pythons() {
        let (magic, tag) = magic_and_tag(&python);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut scenarios = Vec::new();
        for mode in MODES {
            for change in CHANGES {
                // Two start times: an ordinary one and one whose st_mtime float rounds up
                // to the next second.
                for start_ns in [1_600_000_000_250_000_000_i128, 1_700_000_000_999_999_999] {
                    let sdir = dir.path().join(format!("s{}", scenarios.len()));
                    std::fs::create_dir(&sdir).expect("mkdir");
                    let source = sdir.join("m.py");
                    std::fs::write(&source, SOURCE).expect("write");
                    set_mtime_ns(&source, start_ns);
                    scenarios.push((mode, change, source));
                }
            }
        }
        // py_compile writes every pyc, as the interpreter itself would.
        let mut args = Vec::new();
        for (mode, _, source) in &scenarios {
            args.push(OsStr::new(match mode {
                InvalidationMode::Timestamp => "TIMESTAMP",
                InvalidationMode::CheckedHash => "CHECKED_HASH",
                InvalidationMode::UncheckedHash => "UNCHECKED_HASH",
            }));
            args.push(source.as_os_str());
        }
        run_py(
            &python,
            "import sys, py_compile\n\
             a = sys.argv[1:]\n\
             for mode, path in zip(a[::2], a[1::2]):\n\
             \x20   py_compile.compile(path, doraise=True, invalidation_mode=py_compile.PycInvalidationMode[mode])\n",
            &args,
        );
        for (mode, change, source) in &scenarios {
            let cfile = cache_path(source, &tag, OptLevel::Zero);
            let pyc = std::fs::read(&cfile).expect("py_compile wrote the pyc");
            // What py_compile wrote is what PycHeader::for_source describes.
            let stat = SourceStat::of(source).expect("stat");
            assert_eq!(
                pyc[..16],
                PycHeader::for_source(magic, *mode, &stat, SOURCE).to_bytes(),
                "{}: header py_compile wrote for {mode}",
                python.display()
            );
            apply_change(*change, source, &cfile, &pyc);
        }
        let sources: Vec<&OsStr> = scenarios.iter().map(|s| s.2.as_os_str()).collect();
        for check in [
            CheckHashBasedPycs::Default,
            CheckHashBasedPycs::Always,
            CheckHashBasedPycs::Never,
        ] {
            let flag = match check {
                CheckHashBasedPycs::Default => "default",
                CheckHashBasedPycs::Always => "always",
                CheckHashBasedPycs::Never => "never",
            };
            let out = Command::new(&python)
                .args(["-I", "-B", "--check-hash-based-pycs", flag, "-c"])
                .arg(GET_CODE_SCRIPT)
                .args(&sources)
                .output()
                .expect("run python");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = String::from_utf8(out.stdout).expect("utf-8");
            let verdicts: Vec<&str> = out.lines().collect();
            assert_eq!(verdicts.len(), scenarios.len());
            let mut accepted = 0;
            for ((mode, change, source), theirs) in scenarios.iter().zip(verdicts) {
                let cfile = cache_path(source, &tag, OptLevel::Zero);
                let pyc = std::fs::read(&cfile).expect("read pyc");
                let ours = check_pyc_file(&pyc, &magic, source, check).expect("check");
                let ours_str = if ours.is_accepted() {
                    "accepted"
                } else {
                    "rejected"
                };
                assert_eq!(
                    ours_str,
                    theirs,
                    "{}: --check-hash-based-pycs {flag}, {mode}, {change:?}: ours {ours:?}",
                    python.display()
                );
                accepted += usize::from(ours.is_accepted());
            }
            // Both outcomes occur, so the comparison means something.
            assert!(accepted > 0 && accepted < scenarios.len());
        }
    }
}

fn apply_change(change: Change, source: &Path, cfile: &PathBuf, pyc: &[u8]) {
    let start = mtime_ns(source);
    let mut pyc = pyc.to_vec();
    match change {
        Change::Nothing => {}
        Change::SameSizeContent => {
            std::fs::write(source, b"x = 2\ny = 'abd'\n").expect("write");
            set_mtime_ns(source, start);
        }
        Change::Size => {
            std::fs::write(source, [SOURCE, b"\n"].concat()).expect("write");
            set_mtime_ns(source, start);
        }
        Change::MtimeSecond => set_mtime_ns(source, start + 1_000_000_000),
        Change::MtimeSubsecond => {
            // Stay within the same integral st_mtime.
            let within = start.rem_euclid(1_000_000_000);
            let delta = if within < 500_000_000 { 1 } else { -1 };
            set_mtime_ns(source, start + delta);
        }
        Change::MtimeWrap => set_mtime_ns(source, start + (1_i128 << 32) * 1_000_000_000),
        Change::BadMagic => pyc[0] ^= 0xff,
        Change::BadFlags => pyc[4] |= 0b100,
        Change::Truncated => pyc.truncate(15),
        Change::FlipCheckBit => pyc[4] ^= 0b10,
    }
    std::fs::write(cfile, pyc).expect("write pyc");
}

#[test]
fn pure_decisions() {
    let magic = magic_bytes(3571);
    let stat = SourceStat {
        mtime_sec: 1_700_000_000,
        mtime_nsec: 999_999_999,
        size: (1 << 32) + 5,
    };
    let header = PycHeader::timestamp(magic, 1_700_000_001, 5);
    let pyc = [header.to_bytes().as_slice(), b"code"].concat();
    let never_read = || -> Result<Vec<u8>, ()> { panic!("source read for a timestamp pyc") };
    let verdict = check_pyc(&pyc, &magic, &stat, CheckHashBasedPycs::Always, never_read);
    assert_eq!(verdict, Ok(ppyc_compiler::pyc::Verdict::Accepted(header)));

    // Unchecked hash pycs do not read the source by default, and do with `always`.
    let h = PycHeader::hash_based(magic, source_hash(&magic, b"abc"), false);
    let pyc = h.to_bytes();
    let never_read = || -> Result<Vec<u8>, ()> { panic!("source read for an unchecked pyc") };
    assert!(
        check_pyc(&pyc, &magic, &stat, CheckHashBasedPycs::Default, never_read)
            .expect("no read")
            .is_accepted()
    );
    let verdict = check_pyc(&pyc, &magic, &stat, CheckHashBasedPycs::Always, || {
        Ok::<_, ()>(b"abd".to_vec())
    })
    .expect("read");
    assert!(matches!(
        verdict,
        ppyc_compiler::pyc::Verdict::Rejected(Rejection::Hash { .. })
    ));
    // A read error is the caller's error.
    assert_eq!(
        check_pyc(
            &PycHeader::hash_based(magic, [0; 8], true).to_bytes(),
            &magic,
            &stat,
            CheckHashBasedPycs::Default,
            || Err::<Vec<u8>, _>("unreadable")
        ),
        Err("unreadable")
    );
    // A timestamp pyc with the check-source bit is still a timestamp pyc.
    let mut bytes = header.to_bytes();
    bytes[4] = 2;
    let parsed = PycHeader::parse(&bytes).expect("valid");
    assert_eq!(parsed.flags(), 2);
    assert!(matches!(parsed.kind(), PycKind::Timestamp { .. }));
    assert_eq!(parsed.to_bytes(), bytes);
    assert_eq!(magic_number(magic), Some(3571));
    assert_eq!(magic_number(*b"abcd"), None);
    assert_eq!(
        "checked-hash".parse::<InvalidationMode>(),
        Ok(InvalidationMode::CheckedHash)
    );
    assert!("CHECKED".parse::<InvalidationMode>().is_err());
    assert_eq!(OptLevel::try_from(2), Ok(OptLevel::Two));
    assert!(OptLevel::try_from(3).is_err());
}

proptest! {
    #[test]
    fn never_panics_and_round_trips(data in proptest::collection::vec(any::<u8>(), 0..40),
                                    magic in any::<[u8; 4]>(),
                                    sec in any::<i64>(), nsec in 0_i64..1_000_000_000,
                                    size in any::<u64>()) {
        let stat = SourceStat { mtime_sec: sec, mtime_nsec: nsec, size };
        let _ = stat.pyc_mtime();
        if let Ok(header) = PycHeader::parse(&data) {
            prop_assert_eq!(&header.to_bytes()[..], &data[..16]);
        }
        let _ = PycHeader::classify(&data, &magic);
        for check in [CheckHashBasedPycs::Default, CheckHashBasedPycs::Always, CheckHashBasedPycs::Never] {
            let _ = check_pyc(&data, &magic, &stat, check, || Ok::<_, ()>(data.clone()));
            let mut with_magic = magic.to_vec();
            with_magic.extend_from_slice(&data);
            let _ = check_pyc(&with_magic, &magic, &stat, check, || Ok::<_, ()>(data.clone()));
        }
    }
}
