//! The `DIRS` section (spec/FORMAT.md §12): encoding, lookups, damage.

use ppyc_format::dirs::{DIR_ENTRY_SIZE, DirInput, Dirs, build};

fn input(path: &str, names: &[&str]) -> DirInput {
    DirInput {
        path: path.to_owned(),
        mtime: (1_700_000_000, 123_456_789),
        ctime: (1_700_000_001, 5),
        names: names.iter().map(|n| n.as_bytes().to_vec()).collect(),
    }
}

fn sample() -> Vec<u8> {
    build(vec![
        input("pkg/sub", &["leaf.py", "__init__.py"]),
        input("", &["pkg", "a.py", "__pycache__", "b-c.dist-info"]),
        input("pkg", &["__init__.py", "sub"]),
        input("empty", &[]),
    ])
    .unwrap()
}

#[test]
fn listings_round_trip_sorted() {
    let body = sample();
    let dirs = Dirs::parse(&body).unwrap();
    assert_eq!(dirs.len(), 4);
    let root = dirs.get("").unwrap();
    assert_eq!(root.mtime, (1_700_000_000, 123_456_789));
    let names: Vec<&[u8]> = root.names().collect();
    assert_eq!(
        names,
        [&b"__pycache__"[..], b"a.py", b"b-c.dist-info", b"pkg"]
    );
    assert_eq!(dirs.get("pkg/sub").unwrap().len(), 2);
    assert!(dirs.get("empty").unwrap().is_empty());
    assert_eq!(dirs.get("empty").unwrap().names().count(), 0);
    assert!(dirs.get("pkg/none").is_none() && dirs.get("a").is_none());
    dirs.verify().unwrap();
    // Deterministic whatever the input order.
    let again = build(vec![
        input("empty", &[]),
        input("pkg", &["sub", "__init__.py"]),
        input("", &["a.py", "b-c.dist-info", "pkg", "__pycache__"]),
        input("pkg/sub", &["__init__.py", "leaf.py"]),
    ])
    .unwrap();
    assert_eq!(body, again);
}

#[test]
fn names_that_cannot_be_file_names_are_refused() {
    for bad in ["", "a/b", "nul\0"] {
        assert!(build(vec![input("", &[bad])]).is_err(), "{bad:?}");
    }
    assert!(build(vec![input("x", &[]), input("x", &[])]).is_err());
    let mut late = input("", &[]);
    late.mtime.1 = 1_000_000_000;
    assert!(build(vec![late]).is_err());
    let mut late = input("", &[]);
    late.ctime.1 = 1_000_000_000;
    assert!(build(vec![late]).is_err());
}

#[test]
fn every_damaged_byte_is_a_miss_or_a_verify_error_never_a_wrong_listing() {
    let body = sample();
    let good = Dirs::parse(&body).unwrap();
    let keys = ["", "empty", "pkg", "pkg/sub"];
    for i in 0..body.len() {
        let mut bad = body.clone();
        bad[i] ^= 0x01;
        let Ok(dirs) = Dirs::parse(&bad) else {
            continue;
        };
        for key in keys {
            if let Some(listing) = dirs.get(key) {
                let want = good.get(key).unwrap();
                assert_eq!(listing.mtime, want.mtime, "byte {i}, {key:?}");
                assert_eq!(listing.ctime, want.ctime, "byte {i}, {key:?}");
                assert!(listing.names().eq(want.names()), "byte {i}, {key:?}");
            }
        }
        // Flipping a byte of the header's reserved field or of any entry or string is
        // always reported by verify.
        if i >= 4 {
            assert!(dirs.verify().is_err(), "byte {i} not reported");
        }
    }
    // Truncations.
    for len in 0..body.len() {
        if let Ok(dirs) = Dirs::parse(&body[..len]) {
            assert!(dirs.verify().is_err(), "truncated to {len}");
            for key in keys {
                assert!(
                    dirs.get(key)
                        .is_none_or(|l| l.mtime == good.get(key).unwrap().mtime)
                );
            }
        }
    }
    assert!(body.len() > 8 + 4 * DIR_ENTRY_SIZE);
}

#[test]
fn the_spec_example_is_exact() {
    let body = build(vec![input("", &["pkg", "a.py"])]).unwrap();
    let mut expected = vec![1, 0, 0, 0, 0, 0, 0, 0];
    expected.extend([
        0x40, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0,
    ]);
    expected.extend([0x15, 0xcd, 0x5b, 0x07, 0x00, 0xf1, 0x53, 0x65, 0, 0, 0, 0]);
    expected.extend([0x01, 0xf1, 0x53, 0x65, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&body[..56], &expected[..]);
    let sum = xxhash_rust::xxh3::xxh3_64(&[&body[8..56], b"a.py\0pkg\0"].concat());
    assert_eq!(&body[56..64], &sum.to_le_bytes());
    assert_eq!(&body[64..], b"a.py\0pkg\0");
    assert_eq!(body.len(), 73);
}
