//! What the pack fuzz targets share: the seed packs (a marshal pack and an image pack, built
//! by `PackWriter` as the format tests build them), structured mutations drawn by the
//! fuzzer, and the digest fixer of `format/tests/common/hostile.rs`, so that every mutated
//! pack has every digest recomputed and the fuzzer reaches the structural checks behind
//! them instead of stopping at the header digest.

use std::sync::OnceLock;

use arbitrary::Arbitrary;

#[path = "../../format/tests/common/mod.rs"]
pub mod common;

pub use common::hostile::{Fix, Mutation, apply, exercise, fix_digests, raw_sections};

/// The two seed packs: `[marshal, image]`.
pub fn seeds() -> &'static [Vec<u8>; 2] {
    static SEEDS: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    SEEDS.get_or_init(|| [common::build(common::small_modules()), common::image_pack()])
}

/// The names the seed packs hold, to look up in every mutated pack.
pub fn seed_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<String> = common::small_modules()
            .into_iter()
            .map(|m| m.name)
            .collect();
        names.extend(["beta", "gamma.pkg", "zeta"].map(String::from));
        names
    })
}

/// Where a byte-level mutation lands: the header and section table, or one section.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Region {
    /// Bytes 0 to the end of the section table.
    Header,
    /// Section `n` (modulo the sections the target may touch).
    Section(u8),
    /// Anywhere in the file.
    Anywhere,
}

/// One mutation, as the fuzzer draws it.
#[derive(Arbitrary, Clone, Debug)]
pub enum Edit {
    Flip {
        region: Region,
        at: u32,
        mask: u8,
    },
    Set {
        region: Region,
        at: u32,
        width: u8,
        value: u64,
    },
    /// A value near a field's limits, at a 4- or 8-byte boundary of the region.
    Interesting {
        region: Region,
        at: u32,
        wide: bool,
        which: u8,
    },
    TruncateSection {
        section: u8,
        len: u32,
    },
    Insert {
        section: u8,
        at: u32,
        bytes: Vec<u8>,
    },
    DropSection {
        section: u8,
    },
    SwapBodies {
        a: u8,
        b: u8,
    },
    TruncateFile {
        len: u32,
    },
}

/// A seed pack, the edits to make to it, and whether the layout fingerprint is recomputed
/// too (every other digest always is).
#[derive(Arbitrary, Clone, Debug)]
pub struct Input {
    pub image_seed: bool,
    pub fingerprint: bool,
    pub edits: Vec<Edit>,
}

const INTERESTING: [u64; 12] = [
    0,
    1,
    7,
    8,
    16,
    0x7f,
    0x80,
    0xff,
    0x7fff_ffff,
    0xffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// The sections of `bytes` whose ids are in `allowed` (all when empty), as body ranges.
fn section_ranges(bytes: &[u8], allowed: &[&[u8; 4]]) -> Vec<(usize, std::ops::Range<usize>)> {
    raw_sections(bytes)
        .into_iter()
        .enumerate()
        .filter(|(_, (_, id, _))| allowed.is_empty() || allowed.contains(&id))
        .filter_map(|(i, (_, _, r))| Some((i, r?)))
        .collect()
}

fn resolve(bytes: &[u8], allowed: &[&[u8; 4]], region: Region, at: u32) -> Option<usize> {
    let range = match region {
        Region::Anywhere => 0..bytes.len(),
        Region::Header => 0..(256 + 64 * raw_sections(bytes).len()).min(bytes.len()),
        Region::Section(n) => {
            let ranges = section_ranges(bytes, allowed);
            if ranges.is_empty() {
                return None;
            }
            ranges[n as usize % ranges.len()].1.clone()
        }
    };
    (!range.is_empty()).then(|| range.start + at as usize % range.len())
}

fn section_index(bytes: &[u8], allowed: &[&[u8; 4]], n: u8) -> Option<usize> {
    let ranges = section_ranges(bytes, allowed);
    (!ranges.is_empty()).then(|| ranges[n as usize % ranges.len()].0)
}

/// Applies `edits` to a copy of the seed, confining section-level edits to the sections in
/// `allowed` (all when empty), then recomputes every digest.
pub fn mutate(input: &Input, allowed: &[&[u8; 4]]) -> Vec<u8> {
    let mut bytes = seeds()[usize::from(input.image_seed)].clone();
    for edit in input.edits.iter().take(16) {
        let m = match *edit {
            Edit::Flip { region, at, mask } => {
                resolve(&bytes, allowed, region, at).map(|at| Mutation::Flip { at, mask })
            }
            Edit::Set {
                region,
                at,
                width,
                value,
            } => resolve(&bytes, allowed, region, at).map(|at| Mutation::Set { at, width, value }),
            Edit::Interesting {
                region,
                at,
                wide,
                which,
            } => resolve(&bytes, allowed, region, at).map(|at| Mutation::Set {
                at: at & !if wide { 7 } else { 3 },
                width: if wide { 3 } else { 2 },
                value: INTERESTING[which as usize % INTERESTING.len()],
            }),
            Edit::TruncateSection { section, len } => {
                section_index(&bytes, allowed, section).map(|section| Mutation::TruncateSection {
                    section,
                    len: len as usize,
                })
            }
            Edit::Insert {
                section,
                at,
                bytes: ref extra,
            } => section_index(&bytes, allowed, section).map(|section| Mutation::Insert {
                section,
                at: at as usize,
                bytes: extra.iter().copied().take(256).collect(),
            }),
            Edit::DropSection { section } => section_index(&bytes, allowed, section)
                .map(|section| Mutation::DropSection { section }),
            Edit::SwapBodies { a, b } => {
                match (
                    section_index(&bytes, allowed, a),
                    section_index(&bytes, allowed, b),
                ) {
                    (Some(a), Some(b)) => Some(Mutation::SwapBodies { a, b }),
                    _ => None,
                }
            }
            Edit::TruncateFile { len } => Some(Mutation::TruncateFile { len: len as usize }),
        };
        if let Some(m) = m {
            apply(&mut bytes, &m);
        }
    }
    let fix = if input.fingerprint {
        Fix::EVERYTHING
    } else {
        Fix::ALL
    };
    fix_digests(&mut bytes, fix);
    bytes
}
