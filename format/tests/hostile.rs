//! Hostile packs: real packs (marshal and image, built by `PackWriter`) damaged byte by
//! byte, section by section and field by field, then with every digest recomputed
//! (`common::hostile::fix_digests`), so that the damage reaches the checks behind the
//! digests. Whatever the damage: opening and reading never panic (so never read out of
//! bounds: every access is a checked slice), every failure is a typed `FormatError`,
//! whatever is handed out lies inside its section, and `Pack::verify` reports the damage
//! unless the changed bytes are a field no reader can judge (a source size, a payload's
//! bytes, an identifier's spelling: the *free* fields listed in `free_fields`).
//!
//! The figures of `RELIABILITY.md` come from
//! `cargo test --release -p ppyc-format --test hostile -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::ops::Range;

use common::hostile::{Fix, Pieces, fix_digests, raw_sections, section_range};
use common::{build, image_pack, small_modules};
use ppyc_format::image::Aux;
use ppyc_format::{FormatError, Pack, SectionId, VerifyReport};

/// Every read path; the names of the small packs' modules are looked up too.
fn exercise(bytes: &[u8]) -> Result<VerifyReport, FormatError> {
    let names: Vec<String> = small_modules().into_iter().map(|m| m.name).collect();
    common::hostile::exercise(bytes, &names)
}

fn marshal_pack() -> Vec<u8> {
    build(small_modules())
}

fn packs() -> [(&'static str, Vec<u8>); 2] {
    [("marshal", marshal_pack()), ("image", image_pack())]
}

fn detected(outcome: &Result<VerifyReport, FormatError>) -> bool {
    match outcome {
        Err(_) => true,
        Ok(report) => !report.is_ok(),
    }
}

/// The bytes a hostile writer may change, digests recomputed, without making the pack
/// invalid: fields whose every value is well formed (or that only the runtime, the
/// interpreter or the user can judge). Everything else is structure, and a change to it
/// must be reported.
fn free_fields(bytes: &[u8]) -> Vec<(Range<usize>, &'static str)> {
    let pack = Pack::from_bytes(bytes).unwrap();
    let base = pack.as_bytes().as_ptr() as usize;
    let at = |s: &[u8]| s.as_ptr() as usize - base;
    let tag_len = pack.header().target.cache_tag.len();
    let mut free = vec![
        (16..20, "header write_version"),
        (22..24, "header optional flags"),
        (28..32, "header hexversion"),
        (32..34, "header pyc magic number"),
        (36..37, "header optimize"),
        (40..40 + tag_len, "header cache_tag"),
    ];
    for (i, s) in pack.sections().iter().enumerate() {
        if s.id == SectionId::META {
            let e = 256 + i * 64;
            free.push((e..e + 4, "META id (an unknown optional section is skipped)"));
            free.push((
                s.offset as usize..(s.offset + s.length) as usize,
                "META text",
            ));
        }
    }
    if let Some(p) = pack.section(SectionId::PAYL) {
        free.push((at(p)..at(p) + p.len(), "payload bytes"));
    }
    if let Some(p) = pack.section(SectionId::IMGO) {
        free.push((at(p)..at(p) + p.len(), "object areas"));
    }
    for m in pack.modules() {
        let m = m.unwrap();
        let root = at(m.source_blake3().as_slice());
        free.push((root..root + 32, "record source_blake3"));
        // A payload one byte longer over the zero padding after it is a payload ending
        // in a zero byte: as well formed as the original (marshal ignores trailing bytes).
        free.push((
            root + 72..root + 73,
            "record payload_len (over zero padding)",
        ));
        free.push((root + 80..root + 96, "record source size and mtime"));
        free.push((root + 112..root + 117, "record pyc_flags and is_package"));
        // The source path is any UTF-8 (the runtime serves a module only when the stock
        // finder finds that very file): its bytes, and its length over the zero padding
        // after an out-of-line text.
        let path = m.source_path();
        free.push((root + 104..root + 112, "record source_path"));
        if path.len() > 8 {
            free.push((
                at(path.as_bytes())..at(path.as_bytes()) + path.len(),
                "source_path text",
            ));
        }
        if let Ok(Some(image)) = m.image() {
            let a = image.aux.start;
            let aux = Aux::parse(&bytes[image.aux.clone()]).unwrap();
            // The runtime's walk judges these.
            free.push((a..a + 12, "aux root, object and code counts"));
            // One more frozenset can be read from the zero padding before the items: an
            // empty frozenset nothing refers to, a valid if useless encoding.
            free.push((
                a + 16..a + 17,
                "aux frozenset count (an empty set in the padding)",
            ));
            free.push((a + 32..a + 32 + 4 * aux.name_count(), "aux name slots"));
            let counts = a + 32 + 4 * aux.name_count();
            for k in 0..aux.frozenset_count() {
                free.push((
                    counts + 4 * k..counts + 4 * k + 1,
                    "aux frozenset rebuild bit",
                ));
            }
            let items = (counts + 4 * aux.frozenset_count()).next_multiple_of(8);
            free.push((items..image.aux.end, "aux frozenset items"));
        }
    }
    if let Some(images) = pack.images().unwrap() {
        for i in 0..images.names.len() {
            let n = images.names.get(i).unwrap();
            free.push((at(n)..at(n) + n.len(), "identifier text"));
        }
    }
    free
}

/// Where byte `at` is: a section and the offset in it.
fn describe(bytes: &[u8], at: usize) -> String {
    for (_, id, range) in raw_sections(bytes) {
        if let Some(r) = range.filter(|r| r.contains(&at)) {
            return format!("`{}` + {:#x}", SectionId(id), at - r.start);
        }
    }
    "outside every section".into()
}

fn role(free: &[(Range<usize>, &'static str)], at: usize) -> Option<&'static str> {
    free.iter().find(|(r, _)| r.contains(&at)).map(|(_, n)| *n)
}

#[test]
fn the_fixer_recomputes_exactly_what_the_writer_wrote() {
    for (kind, bytes) in packs() {
        let mut fixed = bytes.clone();
        fix_digests(&mut fixed, Fix::EVERYTHING);
        assert_eq!(fixed, bytes, "{kind}");
        let pieces = Pieces::parse(&bytes).unwrap();
        assert_eq!(pieces.assemble(), bytes, "{kind}: the writer's layout");
        // And a fixed damage is really fixed: the pack opens, only the damage is reported.
        let payl = section_range(&bytes, b"PAYL").unwrap();
        let mut damaged = bytes.clone();
        damaged[payl.start + 2] ^= 1;
        assert!(matches!(
            Pack::from_bytes(&damaged).unwrap().verify().problems[..],
            [
                FormatError::SectionDigestMismatch(_),
                FormatError::PayloadDigestMismatch { .. }
            ]
        ));
        fix_digests(&mut damaged, Fix::ALL);
        assert!(
            Pack::from_bytes(&damaged).unwrap().verify().is_ok(),
            "{kind}"
        );
    }
}

#[derive(Default)]
struct Tally {
    tried: usize,
    refused_at_open: usize,
    reported_by_verify: usize,
    accepted_free: usize,
    restored: usize,
}

/// Every byte of the file, three masks, three levels of digest recomputation.
#[test]
fn every_byte_flip_with_and_without_recomputed_digests() {
    for (kind, bytes) in packs() {
        let free = free_fields(&bytes);
        for (level, fix) in [
            ("none", Fix::NONE),
            ("header", Fix::HEADER),
            ("all", Fix::ALL),
        ] {
            let mut tally = Tally::default();
            let mut per_role: BTreeMap<&str, usize> = BTreeMap::new();
            for at in 0..bytes.len() {
                for mask in [0x01u8, 0x80, 0xff] {
                    let mut damaged = bytes.clone();
                    damaged[at] ^= mask;
                    fix_digests(&mut damaged, fix);
                    tally.tried += 1;
                    if damaged == bytes {
                        // A digest byte, recomputed over the intact bytes.
                        tally.restored += 1;
                        continue;
                    }
                    let outcome = exercise(&damaged);
                    match &outcome {
                        Err(_) => tally.refused_at_open += 1,
                        Ok(r) if !r.is_ok() => tally.reported_by_verify += 1,
                        Ok(_) => {
                            // With only the header digest recomputed, only the header's
                            // and the table's free fields may change unnoticed.
                            let role = role(&free, at);
                            let table_end = 256 + 64 * raw_sections(&bytes).len();
                            assert!(
                                role.is_some() && (fix == Fix::ALL || at < table_end),
                                "{kind} pack, digests fixed: {level}: flip {mask:#04x} at \
                                 {at:#x} ({}) went unnoticed",
                                describe(&bytes, at)
                            );
                            tally.accepted_free += 1;
                            *per_role.entry(role.unwrap_or("?")).or_default() += 1;
                        }
                    }
                }
            }
            eprintln!(
                "flips, {kind} pack ({} bytes), digests recomputed: {level}: {} tried, {} \
                 refused at open, {} reported by verify, {} accepted (free fields), {} \
                 restored by the recomputation",
                bytes.len(),
                tally.tried,
                tally.refused_at_open,
                tally.reported_by_verify,
                tally.accepted_free,
                tally.restored
            );
            for (role, n) in per_role {
                eprintln!("    accepted: {role}: {n}");
            }
        }
    }
}

/// Every truncation point of every section (the pack laid out again around it), with the
/// digests left stale, only the header's recomputed, or all recomputed.
#[test]
fn every_section_truncation_with_and_without_recomputed_digests() {
    for (kind, bytes) in packs() {
        let pieces = Pieces::parse(&bytes).unwrap();
        for s in 0..pieces.sections.len() {
            let id = SectionId(pieces.sections[s].0[..4].try_into().unwrap());
            let len = pieces.sections[s].1.len();
            let mut counts = [0usize; 3];
            for keep in 0..len {
                let mut p = pieces.clone();
                p.sections[s].1.truncate(keep);
                let assembled = p.assemble();
                for (n, fix) in [Fix::NONE, Fix::HEADER, Fix::ALL].into_iter().enumerate() {
                    let mut damaged = assembled.clone();
                    fix_digests(&mut damaged, fix);
                    let outcome = exercise(&damaged);
                    if fix == Fix::NONE {
                        assert!(
                            matches!(outcome, Err(FormatError::HeaderDigestMismatch)),
                            "{kind} {id} {keep}"
                        );
                    }
                    if detected(&outcome) {
                        counts[n] += 1;
                        continue;
                    }
                    // Only `META` can lose whole lines and stay a valid pack.
                    let body = &pieces.sections[s].1;
                    assert!(
                        fix == Fix::ALL
                            && id == SectionId::META
                            && (keep == 0 || body[keep - 1] == b'\n'),
                        "{kind} pack: `{id}` truncated to {keep} of {len} bytes went \
                         unnoticed ({fix:?})"
                    );
                }
            }
            eprintln!(
                "truncations, {kind} pack, `{id}` ({len} points): reported with digests \
                 stale {}, header digest recomputed {}, all recomputed {}",
                counts[0], counts[1], counts[2]
            );
        }
    }
}

/// The whole file cut at every length, `file_size` and the header digest recomputed
/// where the header is still there: the section table no longer fits the file.
#[test]
fn every_file_truncation_with_a_recomputed_header() {
    for (kind, bytes) in packs() {
        for len in 0..bytes.len() {
            let mut cut = bytes[..len].to_vec();
            fix_digests(&mut cut, Fix::ALL);
            assert!(exercise(&cut).is_err(), "{kind} pack cut to {len} bytes");
        }
    }
}

/// Sections dropped or their bodies swapped, everything recomputed.
#[test]
fn sections_dropped_or_swapped() {
    for (kind, bytes) in packs() {
        let pieces = Pieces::parse(&bytes).unwrap();
        let n = pieces.sections.len();
        for s in 0..n {
            let mut p = pieces.clone();
            let (entry, _) = p.sections.remove(s);
            let mut damaged = p.assemble();
            fix_digests(&mut damaged, Fix::ALL);
            let id = SectionId(entry[..4].try_into().unwrap());
            let outcome = exercise(&damaged);
            assert_eq!(
                detected(&outcome),
                id != SectionId::META,
                "{kind}: `{id}` dropped"
            );
            for t in s + 1..n {
                let mut p = pieces.clone();
                let body = std::mem::take(&mut p.sections[s].1);
                p.sections[s].1 = std::mem::replace(&mut p.sections[t].1, body);
                let mut damaged = p.assemble();
                fix_digests(&mut damaged, Fix::ALL);
                assert!(detected(&exercise(&damaged)), "{kind}: {s} and {t} swapped");
            }
        }
    }
}

/// Bytes to write: `(offset, bytes)` pairs.
type Edit = Vec<(usize, Vec<u8>)>;

/// Every record, its digest recomputed, made invalid in each of the ways `bytecheck`
/// refuses: the reader reports `RecordInvalid` for that entry (at lookup and in verify),
/// and the other modules stay readable.
#[test]
fn invalid_records_are_refused_as_invalid() {
    let bytes = marshal_pack();
    let pack = Pack::from_bytes(&bytes).unwrap();
    let base = pack.as_bytes().as_ptr() as usize;
    let indx = section_range(&bytes, b"INDX").unwrap();
    let mut cases = 0;
    for index in 0..pack.len() {
        let m = pack.module_at(index).unwrap();
        let name = m.name().to_owned();
        let root = m.source_blake3().as_ptr() as usize - base;
        let entry = indx.start + index * 48;
        let mut edits: Vec<(&str, Edit)> = vec![
            ("is_package is neither 0 nor 1", vec![(root + 116, vec![2])]),
            (
                "an out-of-line source_path pointing outside the record",
                vec![(root + 104, vec![0x8c, 0, 0, 0, 0x00, 0x00, 0x00, 0x40])],
            ),
            (
                "an out-of-line source_path pointing before the record",
                vec![(root + 104, vec![0x8c, 0, 0, 0, 0x00, 0xf0, 0xff, 0xff])],
            ),
            ("a record shorter than a ModuleRecord", {
                vec![(entry + 12, 64u32.to_le_bytes().to_vec())]
            }),
            ("a misaligned record", {
                let off = u32::from_le_bytes(bytes[entry + 8..entry + 12].try_into().unwrap());
                vec![(entry + 8, (off + 8).to_le_bytes().to_vec())]
            }),
            (
                "a record past the end of RECS",
                vec![(entry + 8, vec![0, 0, 0, 0x10])],
            ),
        ];
        let source_path = m.source_path();
        if source_path.len() <= 8 {
            // An inline string with a byte that is not UTF-8.
            edits.push((
                "a source_path that is not UTF-8",
                vec![(root + 104, vec![0xc3, 0x28])],
            ));
        } else {
            let at = source_path.as_ptr() as usize - base;
            edits.push(("a source_path that is not UTF-8", vec![(at, vec![0xff])]));
        }
        for (what, edit) in edits {
            let mut damaged = bytes.clone();
            for (at, value) in &edit {
                damaged[*at..*at + value.len()].copy_from_slice(value);
            }
            fix_digests(&mut damaged, Fix::ALL);
            let p = Pack::from_bytes(&damaged).unwrap();
            let is_invalid = |e: &FormatError| matches!(e, FormatError::RecordInvalid { entry, .. } if *entry == index);
            let got = p.get(&name);
            assert!(
                matches!(&got, Err(e) if is_invalid(e)),
                "{name}: {what}: {got:?}"
            );
            assert!(
                matches!(p.module_at(index), Err(ref e) if is_invalid(e)),
                "{what}"
            );
            let report = p.verify();
            assert!(
                report.problems.iter().any(is_invalid),
                "{what}: {:?}",
                report.problems
            );
            for other in small_modules().iter().filter(|o| o.name != name) {
                let payload = p.get(&other.name).unwrap().unwrap().payload().unwrap();
                assert_eq!(payload, &other.payload[..], "{what}");
            }
            cases += 1;
        }
    }
    eprintln!("invalid records: {cases} cases, each refused as RecordInvalid");
    assert_eq!(cases, 4 * 7);
}

/// Image directory entries and relocation data made inconsistent, checksums recomputed:
/// the module's image is refused with a typed error, its payload and the other modules
/// stay usable, and verify names the module.
#[test]
fn damaged_image_directories_are_refused_per_module() {
    let bytes = image_pack();
    let pack = Pack::from_bytes(&bytes).unwrap();
    let irel = section_range(&bytes, b"IREL").unwrap();
    let mut cases = 0;
    for index in 0..pack.len() {
        let m = pack.module_at(index).unwrap();
        let Some(image) = m.image().unwrap() else {
            continue;
        };
        let name = m.name().to_owned();
        let e = irel.start + index * 64;
        let field = |at: usize| u64::from_le_bytes(bytes[e + at..e + at + 8].try_into().unwrap());
        let a = image.aux.start;
        let aux_field =
            |at: usize| u32::from_le_bytes(bytes[a + at..a + at + 4].try_into().unwrap());
        let set64 = |at: usize, v: u64| vec![(at, v.to_le_bytes().to_vec())];
        let set32 = |at: usize, v: u32| vec![(at, v.to_le_bytes().to_vec())];
        let mut edits = vec![
            ("objects misaligned", set64(e, field(0) + 8)),
            ("objects outside IMGO", set64(e, 1 << 40)),
            ("objects length past IMGO", set64(e + 8, field(8) + 4096)),
            ("aux inside the directory", set64(e + 16, 0)),
            ("aux misaligned", set64(e + 16, field(16) + 4)),
            ("aux too short", set64(e + 24, 24)),
            ("aux length past its data", set64(e + 24, field(24) + 8)),
            ("reserved bytes", set64(e + 56, 1)),
            ("a decoded length not a multiple of 8", set64(e + 48, 20)),
            (
                "a decoded length over 255 times the stored",
                set64(e + 48, field(8) * 256),
            ),
            ("aux reserved bytes", set64(a + 24, 1)),
            (
                "aux name count past its length",
                set32(a + 12, aux_field(12) + 1),
            ),
            // (+2: one more might only take the zero padding before the items, a valid empty set.)
            (
                "aux frozenset count past its length",
                set32(a + 16, aux_field(16) + 2),
            ),
            (
                "aux item count not the frozensets' sum",
                set32(a + 20, aux_field(20) + 1),
            ),
            ("a name slot outside INAM", set32(a + 32, 1000)),
        ];
        if image.compressed_from.is_some() {
            edits.push(("a wrong decoded length", set64(e + 48, field(48) + 8)));
        } else {
            edits.push((
                "an area marked compressed that is not",
                set64(e + 48, field(8)),
            ));
        }
        for (what, edit) in edits {
            if what == "a name slot outside INAM" && aux_field(12) == 0 {
                continue;
            }
            let mut damaged = bytes.clone();
            for (at, value) in &edit {
                damaged[*at..*at + value.len()].copy_from_slice(value);
            }
            fix_digests(&mut damaged, Fix::ALL);
            assert!(
                exercise(&damaged).is_ok_and(|r| !r.is_ok()),
                "{name}: {what}"
            );
            let p = Pack::from_bytes(&damaged).unwrap();
            for i in 0..p.len() {
                let other = p.module_at(i).unwrap();
                assert!(other.payload().is_ok(), "{what}");
                let result = other.checked_image();
                if other.name() == name {
                    assert!(
                        matches!(result, Err(FormatError::BadImage(_))),
                        "{name}: {what}"
                    );
                } else {
                    assert!(result.is_ok(), "{what}: {} {result:?}", other.name());
                }
            }
            let problems = p.verify().problems;
            assert!(
                problems.iter().any(|e| e.to_string().contains(&name)
                    || e.to_string().contains(&format!("entry {index}"))),
                "{name}: {what}: {problems:?}"
            );
            cases += 1;
        }
    }
    eprintln!("damaged image directory entries and relocation data: {cases} cases refused");
    assert!(cases >= 40, "{cases}");
}

/// Raw section table entries rewritten, the header digest recomputed.
#[test]
fn hostile_section_tables() {
    for (kind, bytes) in packs() {
        let table: Vec<usize> = raw_sections(&bytes).iter().map(|(at, _, _)| *at).collect();
        let len = bytes.len() as u64;
        for &e in &table {
            let off = u64::from_le_bytes(bytes[e + 8..e + 16].try_into().unwrap());
            let edits: Vec<(&str, usize, Vec<u8>)> = vec![
                (
                    "offset inside the table",
                    e + 8,
                    256u64.to_le_bytes().to_vec(),
                ),
                (
                    "offset past the file",
                    e + 8,
                    (len + 16).to_le_bytes().to_vec(),
                ),
                (
                    "length overflowing",
                    e + 16,
                    u64::MAX.to_le_bytes().to_vec(),
                ),
                ("length past the file", e + 16, len.to_le_bytes().to_vec()),
                ("alignment 0", e + 24, 0u32.to_le_bytes().to_vec()),
                ("alignment 3", e + 24, 3u32.to_le_bytes().to_vec()),
                (
                    "alignment 2^17",
                    e + 24,
                    (1u32 << 17).to_le_bytes().to_vec(),
                ),
                ("reserved", e + 28, 1u32.to_le_bytes().to_vec()),
                ("reserved flag bits", e + 4, 2u32.to_le_bytes().to_vec()),
                ("an unknown required section", e, b"QQQQ".to_vec()),
                (
                    "misaligned for its alignment",
                    e + 8,
                    (off + 8).to_le_bytes().to_vec(),
                ),
            ];
            for (what, at, value) in edits {
                let mut damaged = bytes.clone();
                damaged[at..at + value.len()].copy_from_slice(&value);
                if what == "an unknown required section" {
                    damaged[e + 4] = 1;
                }
                fix_digests(&mut damaged, Fix::HEADER);
                let outcome = Pack::from_bytes(&damaged);
                assert!(outcome.is_err(), "{kind}: {what} at entry {e:#x}");
            }
        }
        // Two entries for one section; two sections overlapping.
        let mut damaged = bytes.clone();
        let (a, b) = (table[0], table[1]);
        let first = damaged[a..a + 4].to_vec();
        damaged[b..b + 4].copy_from_slice(&first);
        fix_digests(&mut damaged, Fix::HEADER);
        assert!(matches!(
            Pack::from_bytes(&damaged),
            Err(FormatError::DuplicateSection(_))
        ));
        let mut damaged = bytes.clone();
        let first_offset = damaged[a + 8..a + 16].to_vec();
        damaged[b + 8..b + 16].copy_from_slice(&first_offset);
        fix_digests(&mut damaged, Fix::HEADER);
        assert!(matches!(
            Pack::from_bytes(&damaged),
            Err(FormatError::BadSection { .. })
        ));
    }
}
