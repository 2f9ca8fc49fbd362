#![allow(dead_code, unreachable_pub)]
pub mod hostile;

use ppyc_format::image::symbol;
use ppyc_format::{FrozenSetImage, ModuleImage, ModuleInput, PackWriter, Target, Word};

pub fn target() -> Target {
    Target {
        cache_tag: "cpython-312".into(),
        hexversion: 0x030c_01f0,
        pyc_magic: [0xcb, 0x0d, b'\r', b'\n'],
        optimize: 0,
    }
}

pub fn module(name: &str, payload: &[u8]) -> ModuleInput {
    ModuleInput {
        name: name.into(),
        is_package: name.ends_with("pkg"),
        source_path: format!("{}.py", name.replace('.', "/")),
        source_size: payload.len() as u64 * 3,
        source_mtime_ns: 1_700_000_000_123_456_789,
        source_blake3: *blake3::hash(name.as_bytes()).as_bytes(),
        pyc_flags: 0,
        payload: payload.to_vec(),
        image: None,
    }
}

pub fn small_modules() -> Vec<ModuleInput> {
    vec![
        module("alpha", b"\xe3payload of alpha"),
        module("pkg", b"\xe3package init"),
        module("pkg.sub", &[7u8; 40]),
        module("zeta_\u{e9}t\u{e9}", b""),
    ]
}

pub fn build(modules: Vec<ModuleInput>) -> Vec<u8> {
    let mut w = PackWriter::new(target()).unwrap();
    w.set_meta("generator", "ppyc test");
    for m in modules {
        w.add(m).unwrap();
    }
    w.finish().unwrap()
}

/// A synthetic image (the format crate does not interpret object bytes): `len` bytes of a
/// pattern, compressible (stored LZ4-compressed) or not, with name slots and a frozenset
/// that refers to them.
pub fn synthetic_image(seed: u8, len: usize, compressible: bool, names: &[&str]) -> ModuleImage {
    let objects = (0..len)
        .map(|i| {
            if compressible {
                if i % 16 < 2 { seed } else { 0 }
            } else {
                (i as u8).wrapping_mul(31) ^ seed
            }
        })
        .collect();
    let mut items = vec![
        Word::Symbol(symbol::TRUE).encode(),
        Word::Internal(8).encode(),
    ];
    if !names.is_empty() {
        items.push(Word::Name(0).encode());
    }
    ModuleImage {
        objects,
        root: 8,
        object_count: 2,
        code_count: 1,
        names: names.iter().map(|n| n.as_bytes().to_vec()).collect(),
        frozensets: vec![
            FrozenSetImage {
                items,
                rebuild: seed % 2 == 1,
            },
            FrozenSetImage {
                items: vec![Word::FrozenSet(0).encode()],
                rebuild: false,
            },
        ],
    }
}

/// A small image pack: four modules, three with images (one stored LZ4-compressed, one
/// without names), one without; `META` and all four image sections.
pub fn image_pack() -> Vec<u8> {
    let mut w = PackWriter::new(target()).unwrap();
    w.set_meta("generator", "ppyc test");
    w.set_layout(b"image_format=1\nlayout=test\n".to_vec());
    let images = [
        (
            "alpha",
            Some(synthetic_image(1, 48, false, &["os", "sys", "__name__"])),
        ),
        ("beta", None),
        (
            "gamma.pkg",
            Some(synthetic_image(2, 256, true, &["sys", "caf\u{e9}"])),
        ),
        ("zeta", Some(synthetic_image(3, 40, false, &[]))),
    ];
    for (name, image) in images {
        let mut m = module(name, format!("\u{e3}payload of {name}").as_bytes());
        m.image = image;
        w.add(m).unwrap();
    }
    w.finish().unwrap()
}
