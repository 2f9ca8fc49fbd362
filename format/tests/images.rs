//! Image sections (`spec/FORMAT.md` §10): written, found and checked per module, reused by
//! incremental builds byte for byte; damage is reported per module and never hides the
//! marshal payloads.

mod common;

use common::{module, target};
use ppyc_format::image::{Aux, symbol};
use ppyc_format::{FormatError, FrozenSetImage, ModuleImage, Pack, PackWriter, SectionId, Word};

fn image(seed: u8, names: &[&str]) -> ModuleImage {
    ModuleImage {
        objects: (0..48 + 8 * u32::from(seed))
            .map(|i| (i as u8) ^ seed)
            .collect(),
        root: 8,
        object_count: 2,
        code_count: 1,
        names: names.iter().map(|n| n.as_bytes().to_vec()).collect(),
        frozensets: vec![FrozenSetImage {
            // A name word only where the module has a name slot (an item must refer to
            // something that exists).
            items: if names.is_empty() {
                vec![
                    Word::Symbol(symbol::NONE).encode(),
                    Word::Symbol(symbol::TRUE).encode(),
                ]
            } else {
                vec![Word::Name(0).encode(), Word::Symbol(symbol::TRUE).encode()]
            },
            rebuild: seed % 2 == 1,
        }],
    }
}

fn image_pack() -> (Vec<u8>, Vec<(&'static str, Option<ModuleImage>)>) {
    let mut w = PackWriter::new(target()).unwrap();
    w.set_layout(b"layout=test\n".to_vec());
    let modules = vec![
        ("alpha", Some(image(1, &["os", "sys", "__name__"]))),
        ("beta", None),
        ("gamma", Some(image(2, &["sys", "caf\u{e9}"]))),
        ("delta.epsilon", Some(image(3, &[]))),
    ];
    for (name, img) in &modules {
        let mut m = module(name, format!("payload of {name}").as_bytes());
        m.image = img.clone();
        w.add(m).unwrap();
    }
    (w.finish().unwrap(), modules)
}

#[test]
fn images_round_trip_per_module() {
    let (bytes, modules) = image_pack();
    let pack = Pack::from_bytes(&bytes).unwrap();
    assert_eq!(
        pack.header().layout_fingerprint,
        *blake3::hash(b"layout=test\n").as_bytes()
    );
    let images = pack.images().unwrap().expect("image sections");
    assert_eq!(images.layout, b"layout=test\n");
    // One table for the whole pack: each name once, in the order of first use by the
    // modules in lookup-table order.
    let mut first_use: Vec<&[u8]> = Vec::new();
    for i in 0..pack.len() {
        let name = pack.module_at(i).unwrap().name().to_owned();
        let img = modules.iter().find(|(n, _)| *n == name).unwrap().1.as_ref();
        for n in img.map(|m| m.names.as_slice()).unwrap_or_default() {
            if !first_use.contains(&n.as_slice()) {
                first_use.push(n);
            }
        }
    }
    assert_eq!(first_use.len(), 4);
    let names: Vec<&[u8]> = (0..images.names.len())
        .map(|i| images.names.get(i).unwrap())
        .collect();
    assert_eq!(names, first_use, "unique, in the order of first use");
    for (name, expected) in &modules {
        let m = pack.get(name).unwrap().unwrap();
        assert_eq!(
            m.checked_image().unwrap().as_ref(),
            expected.as_ref(),
            "{name}"
        );
        let Some(r) = m.image().unwrap() else {
            assert!(expected.is_none());
            continue;
        };
        assert_eq!(r.objects.start % 16, 0);
        let aux = Aux::parse(&bytes[r.aux.clone()]).unwrap();
        let expected = expected.as_ref().unwrap();
        assert_eq!(aux.name_count(), expected.names.len());
        for (slot, n) in expected.names.iter().enumerate() {
            let global = aux.name_slot(slot).unwrap() as usize;
            assert_eq!(images.names.get(global).unwrap(), n.as_slice());
        }
        assert_eq!(aux.name_slot(expected.names.len()), None);
    }
    assert!(pack.verify().is_ok(), "{:?}", pack.verify().problems);
}

#[test]
fn reused_images_give_the_same_pack() {
    let (bytes, modules) = image_pack();
    let pack = Pack::from_bytes(&bytes).unwrap();
    let mut w = PackWriter::new(target()).unwrap();
    w.set_layout(pack.images().unwrap().unwrap().layout.to_vec());
    for (name, _) in modules.iter().rev() {
        let m = pack.get(name).unwrap().unwrap();
        let mut input = module(name, m.payload().unwrap());
        input.image = m.checked_image().unwrap();
        w.add(input).unwrap();
    }
    assert_eq!(
        w.finish().unwrap(),
        bytes,
        "deterministic, whatever the order"
    );
}

#[test]
fn damaged_images_are_reported_per_module() {
    let (bytes, _) = image_pack();
    let pack = Pack::from_bytes(&bytes).unwrap();
    let imgo = pack
        .sections()
        .iter()
        .find(|s| s.id == SectionId::IMGO)
        .copied()
        .unwrap();
    // Flip a byte of each module's object area in turn: that module's image is refused,
    // the others and every payload stay usable.
    for victim in ["alpha", "gamma", "delta.epsilon"] {
        let r = pack.get(victim).unwrap().unwrap().image().unwrap().unwrap();
        let mut damaged = bytes.clone();
        damaged[r.objects.start + 3] ^= 0x40;
        // The section digest changes too; the header does not cover section contents.
        let p = Pack::from_bytes(&damaged).unwrap();
        for name in ["alpha", "beta", "gamma", "delta.epsilon"] {
            let m = p.get(name).unwrap().unwrap();
            assert!(m.payload().is_ok());
            let result = m.checked_image();
            if name == victim {
                assert!(matches!(result, Err(FormatError::BadImage(_))), "{name}");
            } else {
                assert!(result.is_ok(), "{name}");
            }
        }
        let problems = p.verify().problems;
        assert!(
            problems.iter().any(|e| e.to_string().contains(victim)),
            "{problems:?}"
        );
        assert!(problems.contains_section_digest(SectionId::IMGO));
    }
    assert!(imgo.length > 0);
}

trait Problems {
    fn contains_section_digest(&self, id: SectionId) -> bool;
}

impl Problems for Vec<FormatError> {
    fn contains_section_digest(&self, id: SectionId) -> bool {
        self.iter()
            .any(|e| matches!(e, FormatError::SectionDigestMismatch(s) if *s == id))
    }
}

#[test]
fn a_pack_without_layout_cannot_hold_images() {
    let mut w = PackWriter::new(target()).unwrap();
    let mut m = module("alpha", b"x");
    m.image = Some(image(1, &["a"]));
    assert!(matches!(w.add(m), Err(FormatError::ImageWithoutLayout(_))));
    let plain = common::build(common::small_modules());
    let pack = Pack::from_bytes(&plain).unwrap();
    assert!(pack.images().unwrap().is_none());
    assert_eq!(pack.header().layout_fingerprint, [0; 32]);
}
