#![allow(dead_code, unreachable_pub)]
use ppyc_format::{ModuleInput, PackWriter, Target};

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
