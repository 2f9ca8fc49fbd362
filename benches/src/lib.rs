//! Shared helpers for the ppyc benchmarks: synthetic packs of realistic shape.

use ppyc_format::{ModuleInput, PackWriter, Target};

/// A target like CPython 3.12's.
#[must_use]
pub fn target() -> Target {
    Target {
        cache_tag: "cpython-312".into(),
        hexversion: 0x030c_01f0,
        pyc_magic: [0xcb, 0x0d, b'\r', b'\n'],
        optimize: 0,
    }
}

/// Realistic dotted names: `pkgN.subM.modK`.
#[must_use]
pub fn module_name(i: usize) -> String {
    format!("package{}.sub{}.module_{i}", i % 97, i % 13)
}

/// The bytes of a pack of `count` modules whose payloads average `avg_payload` bytes.
#[must_use]
pub fn synthetic_pack(count: usize, avg_payload: usize) -> Vec<u8> {
    let mut w = PackWriter::new(target()).expect("valid target");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..count {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = avg_payload / 2 + (seed as usize % avg_payload.max(1));
        let payload: Vec<u8> = (0..len).map(|j| (j as u64 ^ seed) as u8).collect();
        w.add(ModuleInput {
            name: module_name(i),
            is_package: i % 10 == 0,
            source_path: format!("{}.py", module_name(i).replace('.', "/")),
            source_size: len as u64 * 3,
            source_mtime_ns: 1_700_000_000_000_000_000 + i as i64,
            source_blake3: *blake3::hash(&payload).as_bytes(),
            pyc_flags: 0,
            payload,
            image: None,
        })
        .expect("unique names");
    }
    w.finish().expect("pack fits")
}
