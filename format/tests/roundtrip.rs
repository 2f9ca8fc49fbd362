mod common;

use common::{build, module, small_modules, target};
use ppyc_format::{FormatError, Pack, PackWriter, SectionId, name_hash};

#[test]
fn round_trip() {
    let bytes = build(small_modules());
    let pack = Pack::from_bytes(&bytes).unwrap();
    assert_eq!(pack.len(), 4);
    assert_eq!(pack.header().target, target());
    for m in small_modules() {
        let got = pack.get(&m.name).unwrap().expect("module present");
        assert_eq!(got.name(), m.name);
        assert_eq!(got.is_package(), m.is_package);
        assert_eq!(got.source_path(), m.source_path);
        assert_eq!(got.source_size(), m.source_size);
        assert_eq!(got.source_mtime_ns(), m.source_mtime_ns);
        assert_eq!(got.source_blake3(), &m.source_blake3);
        assert_eq!(got.payload().unwrap(), &m.payload[..]);
        assert_eq!(got.payload().unwrap().as_ptr() as usize % 16, 0);
    }
    assert!(pack.get("missing").unwrap().is_none());
    assert!(pack.get("").unwrap().is_none());
    assert_eq!(pack.meta(), vec![("generator".into(), "ppyc test".into())]);
    let report = pack.verify();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.modules_checked, 4);
}

#[test]
fn write_failures_say_write() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("__pycache__");
    std::fs::write(&blocker, b"a file where the directory should be").unwrap();
    // Creating the directory fails.
    let err = ppyc_format::write_atomic(&blocker.join("p.ppyc"), b"x").unwrap_err();
    assert!(matches!(err, FormatError::Write { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot write `{}`: File exists (os error 17)",
            blocker.display()
        )
    );
    // Renaming over a directory fails.
    let target = dir.path().join("taken");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("inside"), b"").unwrap();
    let err = ppyc_format::write_atomic(&target, b"x").unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot write `{}`: ", target.display())),
        "{err}"
    );
}

#[test]
fn opening_what_is_not_a_pack_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = Pack::open(dir.path()).unwrap_err();
    assert_eq!(err.to_string(), "it is a directory, not a pack file");
    let short = dir.path().join("short");
    std::fs::write(&short, b"hello\n").unwrap();
    assert!(matches!(Pack::open(&short), Err(FormatError::BadMagic)));
    std::fs::write(&short, b"\x89PP").unwrap(); // a prefix of the magic: truncated
    assert!(matches!(
        Pack::open(&short),
        Err(FormatError::TooSmall { len: 3, .. })
    ));
    let pack = build(small_modules());
    std::fs::write(&short, &pack[..100]).unwrap();
    assert!(matches!(
        Pack::open(&short),
        Err(FormatError::TooSmall { len: 100, .. })
    ));
    std::fs::write(&short, b"").unwrap();
    assert!(matches!(
        Pack::open(&short),
        Err(FormatError::TooSmall { len: 0, .. })
    ));
    assert!(matches!(
        Pack::from_bytes(b"hello"),
        Err(FormatError::BadMagic)
    ));
}

#[test]
fn deterministic_whatever_the_insertion_order() {
    let a = build(small_modules());
    let mut reversed = small_modules();
    reversed.reverse();
    assert_eq!(a, build(reversed));
}

#[test]
fn open_from_file_and_atomic_replace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("__pycache__")
        .join("__ppyc__.cpython-312.ppyc");
    ppyc_format::write_atomic(&path, &build(small_modules())).unwrap();
    let old = Pack::open(&path).unwrap();
    // Replace while the old one is mapped: the old mapping keeps its contents.
    ppyc_format::write_atomic(&path, &build(vec![module("other", b"x")])).unwrap();
    assert_eq!(
        old.get("alpha").unwrap().unwrap().payload().unwrap(),
        b"\xe3payload of alpha"
    );
    let new = Pack::open(&path).unwrap();
    assert!(new.get("alpha").unwrap().is_none());
    assert_eq!(new.len(), 1);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
}

#[test]
fn hash_collisions_are_resolved_by_name() {
    // Distinct names sharing an entry hash cannot be produced cheaply with FNV-1a 64, so
    // check the scan logic by looking up every module of a large pack.
    let modules: Vec<_> = (0..3000)
        .map(|i| module(&format!("m{i}.x{}", i % 7), &[i as u8; 3]))
        .collect();
    let pack = Pack::from_bytes(&build(modules.clone())).unwrap();
    for m in &modules {
        assert_eq!(
            pack.get(&m.name).unwrap().unwrap().payload().unwrap(),
            &m.payload[..]
        );
    }
    assert_ne!(name_hash(b"a"), name_hash(b"b"));
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = PackWriter::new(target()).unwrap();
    w.add(module("a", b"1")).unwrap();
    assert!(matches!(
        w.add(module("a", b"2")),
        Err(FormatError::DuplicateModule(_))
    ));
    assert!(matches!(
        w.add(module("a..b", b"2")),
        Err(FormatError::InvalidModuleName(_))
    ));
    let mut bad = target();
    bad.optimize = 3;
    assert!(PackWriter::new(bad).is_err());
    let mut bad = target();
    bad.cache_tag = "x".repeat(25);
    assert!(PackWriter::new(bad).is_err());
}

#[test]
fn empty_pack() {
    let pack = Pack::from_bytes(&build(vec![])).unwrap();
    assert!(pack.is_empty());
    assert!(pack.get("a").unwrap().is_none());
    assert!(pack.verify().is_ok());
}

#[test]
fn unknown_sections() {
    // Rebuild the section table with an extra section appended, recomputing the header
    // digest, to check the optional/required rules.
    fn with_extra(flags: u32) -> Result<Pack, FormatError> {
        let bytes = build(small_modules());
        let count = u32::from_le_bytes(bytes[96..100].try_into().unwrap()) as usize;
        let mut out = bytes[..256].to_vec();
        let table_end = 256 + count * 64;
        let shift = 64u64;
        for i in 0..count {
            let mut e = bytes[256 + i * 64..256 + (i + 1) * 64].to_vec();
            let off = u64::from_le_bytes(e[8..16].try_into().unwrap()) + shift;
            e[8..16].copy_from_slice(&off.to_le_bytes());
            out.extend_from_slice(&e);
        }
        let body = b"future data\0\0\0\0\0";
        let extra_off = (bytes.len() as u64 + shift).div_ceil(16) * 16;
        let mut e = vec![0u8; 64];
        e[0..4].copy_from_slice(b"ZZZZ");
        e[4..8].copy_from_slice(&flags.to_le_bytes());
        e[8..16].copy_from_slice(&extra_off.to_le_bytes());
        e[16..24].copy_from_slice(&(body.len() as u64).to_le_bytes());
        e[24..28].copy_from_slice(&16u32.to_le_bytes());
        e[32..64].copy_from_slice(blake3::hash(body).as_bytes());
        out.extend_from_slice(&e);
        out.extend_from_slice(&bytes[table_end..]);
        out.resize(extra_off as usize, 0);
        out.extend_from_slice(body);
        let len = out.len() as u64;
        out[96..100].copy_from_slice(&((count + 1) as u32).to_le_bytes());
        out[104..112].copy_from_slice(&len.to_le_bytes());
        let mut h = blake3::Hasher::new();
        h.update(&out[..224]);
        h.update(&out[256..256 + (count + 1) * 64]);
        let d = *h.finalize().as_bytes();
        out[224..256].copy_from_slice(&d);
        Pack::from_bytes(&out)
    }
    let optional = with_extra(0).unwrap();
    assert_eq!(
        optional.get("pkg.sub").unwrap().unwrap().payload().unwrap(),
        &[7u8; 40]
    );
    assert!(optional.section(SectionId(*b"ZZZZ")).is_some());
    assert!(optional.verify().is_ok());
    assert!(matches!(
        with_extra(1),
        Err(FormatError::UnknownRequiredSection(_))
    ));
}

#[test]
fn newer_read_version_is_refused() {
    let mut bytes = build(small_modules());
    bytes[12..16].copy_from_slice(&2u32.to_le_bytes());
    let table_end = 256 + 4 * 64;
    let mut h = blake3::Hasher::new();
    h.update(&bytes[..224]);
    h.update(&bytes[256..table_end]);
    let d = *h.finalize().as_bytes();
    bytes[224..256].copy_from_slice(&d);
    assert!(matches!(
        Pack::from_bytes(&bytes),
        Err(FormatError::UnsupportedReadVersion {
            found: 2,
            supported: 1
        })
    ));
}

/// A pack truncated in place while mapped: `checked_scope` spares the `fstat` of each access
/// only while it lives, and only for its own pack and thread; afterwards, and for another
/// pack inside it, the truncation is found again before the mapping is touched.
#[test]
fn a_checked_scope_ends_with_its_operation() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.ppyc"), dir.path().join("b.ppyc"));
    ppyc_format::write_atomic(&a, &build(small_modules())).unwrap();
    ppyc_format::write_atomic(&b, &build(small_modules())).unwrap();
    let (pa, pb) = (Pack::open(&a).unwrap(), Pack::open(&b).unwrap());
    let cut = |p: &std::path::Path| {
        let file = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len / 2).unwrap();
    };
    {
        let _scope = pa.checked_scope().unwrap();
        assert!(pa.get("alpha").unwrap().is_some());
        cut(&b);
        // Another pack, inside the scope of the first: checked as ever.
        assert!(matches!(
            pb.get("alpha"),
            Err(FormatError::CutWhileMapped { .. })
        ));
        // Another thread, with the same pack: its own checks.
        std::thread::scope(|s| {
            s.spawn(|| {
                cut(&a);
                assert!(matches!(
                    pa.get("alpha"),
                    Err(FormatError::CutWhileMapped { .. })
                ));
            });
        });
    }
    // The scope is over: the truncation of the first pack is found too.
    assert!(matches!(
        pa.get("alpha"),
        Err(FormatError::CutWhileMapped { .. })
    ));
    assert!(matches!(
        pa.checked_scope(),
        Err(FormatError::CutWhileMapped { .. })
    ));
}
