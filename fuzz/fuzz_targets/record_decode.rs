//! Record decoding: the records of a seed pack replaced by bytes the fuzzer chooses (each
//! `INDX` entry pointing at a slice of them it chooses), every digest recomputed, so that
//! rkyv's validation and the reader's own record checks see arbitrary records.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ppyc_format::{FormatError, Pack};
use ppyc_fuzz::common::hostile::{Fix, Pieces, fix_digests};
use ppyc_fuzz::{Input, exercise, mutate, seed_names};

#[derive(Arbitrary, Debug)]
struct Records {
    pack: Input,
    /// The new body of `RECS`.
    recs: Vec<u8>,
    /// Per `INDX` entry: offset and length into it.
    spans: Vec<(u16, u16)>,
}

fuzz_target!(|input: Records| {
    let seed = mutate(&input.pack, &[b"RECS"]);
    let Some(mut pieces) = Pieces::parse(&seed) else {
        return;
    };
    let (Some(r), Some(i)) = (pieces.find(b"RECS"), pieces.find(b"INDX")) else {
        return;
    };
    pieces.sections[r].1 = input.recs.clone();
    let indx = &mut pieces.sections[i].1;
    for (n, (off, len)) in input.spans.iter().enumerate().take(indx.len() / 48) {
        indx[n * 48 + 8..n * 48 + 12].copy_from_slice(&u32::from(*off).to_le_bytes());
        indx[n * 48 + 12..n * 48 + 16].copy_from_slice(&u32::from(*len).to_le_bytes());
    }
    let mut bytes = pieces.assemble();
    fix_digests(&mut bytes, Fix::ALL);
    if let Ok(pack) = Pack::from_bytes(&bytes) {
        for i in 0..pack.len() {
            match pack.module_at(i) {
                Ok(m) => {
                    let _ = (m.name(), m.source_path(), m.is_package(), m.pyc_flags());
                    let _ = (m.source_size(), m.source_mtime_ns(), m.payload_range());
                }
                Err(FormatError::RecordInvalid { entry, .. }) => assert_eq!(entry, i),
                Err(FormatError::RecordDigestMismatch { entry }) => assert_eq!(entry, i),
                Err(e) => panic!("entry {i}: an unexpected error: {e}"),
            }
        }
    }
    let _ = exercise(&bytes, seed_names());
});
