//! A damaged pack never panics, never reads out of bounds, and never hands out another
//! module's code or corrupted code: every damage is either refused with a typed error or
//! (for bytes no reader looks at, such as padding) harmless.
mod common;

use common::{build, small_modules};
use ppyc_format::Pack;
use proptest::prelude::*;

/// Opens `bytes` and exercises every read path; whatever is handed out must be exactly
/// the original module's data.
fn exercise(bytes: &[u8]) {
    let originals = small_modules();
    let Ok(pack) = Pack::from_bytes(bytes) else {
        return;
    };
    let _ = pack.verify();
    let _ = pack.meta();
    for m in pack.modules().flatten() {
        if let Ok(payload) = m.payload() {
            let original = originals.iter().find(|o| o.name == m.name());
            assert_eq!(
                Some(payload),
                original.map(|o| &o.payload[..]),
                "module {}",
                m.name()
            );
        }
    }
    for o in &originals {
        if let Ok(Some(m)) = pack.get(&o.name) {
            assert_eq!(m.name(), o.name);
            if let Ok(payload) = m.payload() {
                assert_eq!(payload, &o.payload[..], "module {}", o.name);
            }
        }
    }
    let _ = pack.get("not.there");
}

#[test]
fn every_single_byte_flip() {
    let bytes = build(small_modules());
    let mut refused = 0;
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[at] ^= mask;
            exercise(&damaged);
            let pack = Pack::from_bytes(&damaged);
            if pack.is_err() || !pack.unwrap().verify().is_ok() {
                refused += 1;
            }
        }
    }
    // Only padding bytes may be flipped unnoticed (verify checks every digest).
    assert!(
        refused > bytes.len() * 3 * 9 / 10,
        "{refused} of {}",
        bytes.len() * 3
    );
}

#[test]
fn every_truncation_is_refused() {
    let bytes = build(small_modules());
    for len in 0..bytes.len() {
        assert!(
            Pack::from_bytes(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Pack::from_bytes(&longer).is_err());
}

#[test]
fn verify_detects_every_flip_outside_padding() {
    let bytes = build(small_modules());
    let pack = Pack::from_bytes(&bytes).unwrap();
    let mut covered = vec![false; bytes.len()];
    covered[..256 + pack.sections().len() * 64]
        .iter_mut()
        .for_each(|c| *c = true);
    for s in pack.sections() {
        covered[s.offset as usize..(s.offset + s.length) as usize]
            .iter_mut()
            .for_each(|c| *c = true);
    }
    for at in (0..bytes.len()).filter(|&i| covered[i]) {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x20;
        let ok = Pack::from_bytes(&damaged)
            .map(|p| p.verify().is_ok())
            .unwrap_or(false);
        assert!(!ok, "flip at {at} went unnoticed");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn random_damage_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = build(small_modules());
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        exercise(&bytes);
    }

    #[test]
    fn random_input_never_panics(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&data);
        let mut with_header = build(small_modules())[..256].to_vec();
        with_header.extend_from_slice(&data);
        exercise(&with_header);
    }
}
