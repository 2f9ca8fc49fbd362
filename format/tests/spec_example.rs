//! Keeps `spec/FORMAT.md` honest: the worked example in §11 is the exact output of the
//! writer for the inputs below, and the record layout in §6 is the exact layout rkyv uses.
//!
//! After an intentional format change, regenerate the example with
//! `PPYC_BLESS=1 cargo test -p ppyc-format --test spec_example` and review the diff.

use std::fmt::Write as _;
use std::mem::{offset_of, size_of};
use std::path::PathBuf;

use ppyc_format::{ArchivedModuleRecord, ModuleInput, Pack, PackWriter, Target};

const BEGIN: &str = "<!-- worked-example:begin -->";
const END: &str = "<!-- worked-example:end -->";

/// `marshal.dumps(compile("x = 1\n", "m.py", "exec"))` on CPython 3.12.1.
const PAYLOAD_HEX: &str = "e30000000000000000000000000100000000000000f308000000970064005a0079012902e90100\
00004e2901da0178a900f300000000fa046d2e7079fa083c6d6f64756c653e720700000001000000730a000000f00301\
0101d8040581017205000000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn example_pack() -> Vec<u8> {
    let source = b"x = 1\n";
    let mut w = PackWriter::new(Target {
        cache_tag: "cpython-312".into(),
        hexversion: 0x030c_01f0,
        pyc_magic: [0xcb, 0x0d, b'\r', b'\n'],
        optimize: 0,
    })
    .unwrap();
    w.add(ModuleInput {
        name: "m".into(),
        is_package: false,
        source_path: "m.py".into(),
        source_size: source.len() as u64,
        source_mtime_ns: 1_700_000_000_123_456_789,
        source_blake3: *blake3::hash(source).as_bytes(),
        pyc_flags: 0,
        payload: unhex(PAYLOAD_HEX),
        image: None,
    })
    .unwrap();
    w.finish().unwrap()
}

/// `hexdump -C` style: offset, 16 bytes, ASCII; runs of identical lines collapse to `*`.
fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut previous: Option<&[u8]> = None;
    let mut starred = false;
    for (i, line) in bytes.chunks(16).enumerate() {
        if previous == Some(line) && line.len() == 16 {
            if !starred {
                out.push_str("*\n");
                starred = true;
            }
            continue;
        }
        starred = false;
        previous = Some(line);
        write!(out, "{:08x} ", i * 16).unwrap();
        for (j, b) in line.iter().enumerate() {
            if j == 8 {
                out.push(' ');
            }
            write!(out, " {b:02x}").unwrap();
        }
        for j in line.len()..16 {
            out.push_str(if j == 8 { "    " } else { "   " });
        }
        out.push_str("  |");
        for &b in line {
            out.push(if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
    writeln!(out, "{:08x}", bytes.len()).unwrap();
    out
}

fn spec_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/FORMAT.md")
}

#[test]
fn worked_example_in_the_spec_is_what_the_writer_produces() {
    let pack = example_pack();
    // The example is a valid pack.
    let opened = Pack::from_bytes(&pack).unwrap();
    assert!(opened.verify().is_ok());
    assert_eq!(
        opened.get("m").unwrap().unwrap().payload().unwrap(),
        unhex(PAYLOAD_HEX)
    );

    let block = format!("{BEGIN}\n```text\n{}```\n{END}", hexdump(&pack));
    let path = spec_path();
    let spec = std::fs::read_to_string(&path).unwrap();
    let (Some(start), Some(end)) = (spec.find(BEGIN), spec.find(END)) else {
        panic!("{} has no worked-example markers", path.display());
    };
    let current = &spec[start..end + END.len()];
    if std::env::var_os("PPYC_BLESS").is_some() {
        let updated = format!("{}{block}{}", &spec[..start], &spec[end + END.len()..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        current, block,
        "spec/FORMAT.md §11 is out of date: rerun with PPYC_BLESS=1 and review the diff"
    );
}

#[test]
fn record_layout_is_the_one_the_spec_describes() {
    // spec/FORMAT.md §6, table "ModuleRecord".
    assert_eq!(offset_of!(ArchivedModuleRecord, source_blake3), 0);
    assert_eq!(offset_of!(ArchivedModuleRecord, payload_blake3), 32);
    assert_eq!(offset_of!(ArchivedModuleRecord, payload_offset), 64);
    assert_eq!(offset_of!(ArchivedModuleRecord, payload_len), 72);
    assert_eq!(offset_of!(ArchivedModuleRecord, source_size), 80);
    assert_eq!(offset_of!(ArchivedModuleRecord, source_mtime_ns), 88);
    assert_eq!(offset_of!(ArchivedModuleRecord, name), 96);
    assert_eq!(offset_of!(ArchivedModuleRecord, source_path), 104);
    assert_eq!(offset_of!(ArchivedModuleRecord, pyc_flags), 112);
    assert_eq!(offset_of!(ArchivedModuleRecord, is_package), 116);
    assert_eq!(size_of::<ArchivedModuleRecord>(), 120);
    assert_eq!(std::mem::align_of::<ArchivedModuleRecord>(), 8);
}
