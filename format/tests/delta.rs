//! Deltas (`spec/FORMAT.md` §13) through files on disk: a base pack, a delta beside it
//! that names it, and the one generation a reader sees.

mod common;

use std::path::Path;

use common::hostile::{Fix, Pieces, fix_digests};
use common::{build, module, small_modules, target};
use ppyc_format::{
    BaseRef, DeltaState, FormatError, Generation, Layer, Pack, PackWriter, SectionId, delta_path,
    open_delta, write_atomic,
};

/// A delta of `base` holding `modules` and deleting `deleted`.
fn delta_of(base: &Pack, modules: Vec<ppyc_format::ModuleInput>, deleted: &[&str]) -> Vec<u8> {
    let mut w = PackWriter::new(target()).unwrap();
    w.set_meta("generator", "ppyc test");
    w.set_base(&BaseRef {
        digest: base.header().digest,
        file_size: base.header().file_size,
        deleted: deleted.iter().map(|s| (*s).to_owned()).collect(),
    })
    .unwrap();
    for m in modules {
        w.add(m).unwrap();
    }
    w.finish().unwrap()
}

fn base_on_disk(dir: &Path) -> (std::path::PathBuf, Pack) {
    let path = dir.join("__ppyc__.cpython-312.ppyc");
    write_atomic(&path, &build(small_modules())).unwrap();
    let pack = Pack::open(&path).unwrap();
    (path, pack)
}

fn names(g: &Generation) -> Vec<(String, Layer)> {
    let mut v: Vec<_> = g
        .modules()
        .map(|m| {
            let (layer, m) = m.unwrap();
            (m.name().to_owned(), layer)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn a_delta_completes_its_base_into_one_generation() {
    let dir = tempfile::tempdir().unwrap();
    let (path, base) = base_on_disk(dir.path());
    assert_eq!(
        delta_path(&path),
        dir.path().join("__ppyc__.cpython-312.ppyd")
    );
    // `pkg.sub` changed, `beta` is new, `alpha` was deleted.
    let bytes = delta_of(
        &base,
        vec![
            module("pkg.sub", b"\xe3the new pkg.sub"),
            module("beta", b"\xe3new"),
        ],
        &["alpha"],
    );
    write_atomic(&delta_path(&path), &bytes).unwrap();
    drop(base);

    let (g, problem) = Generation::open(&path).unwrap();
    assert_eq!(problem, None);
    assert!(g.delta.is_some());
    assert_eq!(g.len(), 4);
    assert_eq!(
        names(&g),
        vec![
            ("beta".to_owned(), Layer::Delta),
            ("pkg".to_owned(), Layer::Base),
            ("pkg.sub".to_owned(), Layer::Delta),
            ("zeta_\u{e9}t\u{e9}".to_owned(), Layer::Base),
        ]
    );
    assert!(
        g.get("alpha").unwrap().is_none(),
        "deleted names are hidden"
    );
    let (layer, sub) = g.get("pkg.sub").unwrap().unwrap();
    assert_eq!(layer, Layer::Delta);
    assert_eq!(sub.payload().unwrap(), b"\xe3the new pkg.sub");
    let (layer, pkg) = g.get("pkg").unwrap().unwrap();
    assert_eq!(layer, Layer::Base);
    assert_eq!(pkg.payload().unwrap(), b"\xe3package init");
    assert!(g.get("missing").unwrap().is_none());

    // Both packs verify on their own, and the delta says what it deletes.
    for layer in [Layer::Base, Layer::Delta] {
        let report = g.pack(layer).verify();
        assert!(report.is_ok(), "{layer:?}: {:?}", report.problems);
    }
    let named = g.pack(Layer::Delta).base().unwrap().unwrap();
    assert_eq!(named.deleted, vec!["alpha".to_owned()]);
    assert!(named.names(g.base.header()));
    assert!(g.base.base().unwrap().is_none(), "a base is no delta");
}

#[test]
fn a_delta_of_another_base_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let (path, base) = base_on_disk(dir.path());
    // A delta written for the previous generation: the base was replaced since.
    let mut older = small_modules();
    older[0].payload = b"\xe3an older alpha".to_vec();
    let older = Pack::from_bytes(&build(older)).unwrap();
    let stale = delta_of(&older, vec![module("alpha", b"\xe3stale")], &[]);
    write_atomic(&delta_path(&path), &stale).unwrap();

    assert!(matches!(open_delta(&path, &base), DeltaState::Unpaired));
    let (g, problem) = Generation::open(&path).unwrap();
    assert_eq!(
        problem, None,
        "an older generation's delta is not a problem"
    );
    assert!(g.delta.is_none());
    let (layer, alpha) = g.get("alpha").unwrap().unwrap();
    assert_eq!(layer, Layer::Base);
    assert_eq!(alpha.payload().unwrap(), b"\xe3payload of alpha");
    assert_eq!(g.len(), 4);
}

#[test]
fn an_unusable_delta_leaves_the_base_serving_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (path, base) = base_on_disk(dir.path());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not a delta", build(vec![module("alpha", b"\xe3x")])),
        ("truncated", {
            let b = delta_of(&base, vec![module("alpha", b"\xe3x")], &[]);
            b[..b.len() / 2].to_vec()
        }),
        ("deleted and present", {
            delta_of(&base, vec![module("alpha", b"\xe3x")], &["alpha"])
        }),
        ("another target", {
            let mut w = PackWriter::new(ppyc_format::Target {
                optimize: 2,
                ..target()
            })
            .unwrap();
            w.set_base(&BaseRef {
                digest: base.header().digest,
                file_size: base.header().file_size,
                deleted: vec![],
            })
            .unwrap();
            w.add(module("alpha", b"\xe3x")).unwrap();
            w.finish().unwrap()
        }),
    ];
    for (what, bytes) in cases {
        write_atomic(&delta_path(&path), &bytes).unwrap();
        let (g, problem) = Generation::open(&path).unwrap();
        assert!(problem.is_some(), "{what}: no problem reported");
        assert!(g.delta.is_none(), "{what}: the delta is used");
        let (layer, alpha) = g.get("alpha").unwrap().unwrap();
        assert_eq!(layer, Layer::Base, "{what}");
        assert_eq!(alpha.payload().unwrap(), b"\xe3payload of alpha", "{what}");
    }
}

#[test]
fn a_delta_at_a_packs_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, base) = base_on_disk(dir.path());
    let bytes = delta_of(&base, vec![module("beta", b"\xe3b")], &[]);
    drop(base);
    write_atomic(&path, &bytes).unwrap();
    assert!(Pack::open(&path).unwrap().is_delta());
    assert!(matches!(
        Generation::open(&path),
        Err(FormatError::DeltaAtPackPath)
    ));
}

#[test]
fn base_is_a_required_section_with_a_checked_body() {
    let base = Pack::from_bytes(&build(small_modules())).unwrap();
    let bytes = delta_of(&base, vec![module("beta", b"\xe3b")], &["alpha"]);
    let delta = Pack::from_bytes(&bytes).unwrap();
    let entry = *delta
        .sections()
        .iter()
        .find(|s| s.id == SectionId::BASE)
        .expect("a BASE section");
    assert!(
        entry.is_required(),
        "a reader that does not know deltas must refuse one"
    );
    assert!(SectionId::BASE.is_defined_required());

    // Written without the required flag (digests recomputed): refused.
    let mut pieces = Pieces::parse(&bytes).unwrap();
    let i = pieces.find(b"BASE").unwrap();
    let flags = u32::from_le_bytes(pieces.sections[i].0[4..8].try_into().unwrap()) & !1;
    pieces.sections[i].0[4..8].copy_from_slice(&flags.to_le_bytes());
    let mut unflagged = pieces.assemble();
    fix_digests(&mut unflagged, Fix::ALL);
    assert!(Pack::from_bytes(&unflagged).is_err());

    // Unsorted deleted names (digests recomputed): the pack opens, its BASE does not parse,
    // and verify says so.
    let mut pieces = Pieces::parse(&bytes).unwrap();
    let body = pieces.body_mut(b"BASE").unwrap();
    body.truncate(48);
    body[40..44].copy_from_slice(&2u32.to_le_bytes());
    body.extend_from_slice(b"zeta\nalpha\n");
    let mut unsorted = pieces.assemble();
    fix_digests(&mut unsorted, Fix::ALL);
    let pack = Pack::from_bytes(&unsorted).unwrap();
    assert!(matches!(pack.base(), Err(FormatError::BadBase(_))));
    let report = pack.verify();
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, FormatError::BadBase(_))),
        "{:?}",
        report.problems
    );
    let pair = Generation::with_delta(Pack::from_bytes(&build(small_modules())).unwrap(), pack);
    assert!(pair.is_err());

    // A deleted name that is no module name cannot be written.
    let mut w = PackWriter::new(target()).unwrap();
    let refused = w.set_base(&BaseRef {
        digest: [0; 32],
        file_size: 0,
        deleted: vec!["a\nb".into()],
    });
    assert!(matches!(refused, Err(FormatError::InvalidModuleName(_))));
}

#[test]
fn deltas_are_deterministic() {
    let base = Pack::from_bytes(&build(small_modules())).unwrap();
    let one = delta_of(&base, vec![module("beta", b"\xe3b")], &["pkg.sub", "alpha"]);
    let two = delta_of(&base, vec![module("beta", b"\xe3b")], &["alpha", "pkg.sub"]);
    assert_eq!(one, two);
}

/// The `BASE` example of `spec/FORMAT.md` §13.1, byte for byte.
#[test]
fn the_spec_base_example() {
    let digest: [u8; 32] = std::array::from_fn(|i| 0xd0 + i as u8);
    let body = BaseRef {
        digest,
        file_size: 65_536,
        deleted: vec!["pkg.old".to_owned(), "alpha".to_owned()],
    }
    .encode();
    let mut expected: Vec<u8> = (0xd0..=0xef).collect();
    expected.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(b"alpha\npkg.old\n");
    assert_eq!(body, expected);
    assert_eq!(body.len(), 62);
    assert_eq!(BaseRef::parse(&body).unwrap().deleted, ["alpha", "pkg.old"]);
}
