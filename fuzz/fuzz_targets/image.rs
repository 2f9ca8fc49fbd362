//! The image directory and relocation data (`Module::image`, `Module::checked_image`,
//! `ImageRef::decode_objects`, `Aux::parse`, `Names::get`): an image seed pack whose
//! `IMGO`, `IREL` and `INAM` are mutated, every digest (image checksums and `INAM` check
//! values included) recomputed; and the decoders fed the fuzzer's bytes directly.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ppyc_format::image::Aux;
use ppyc_format::{ImageRef, Pack};
use ppyc_fuzz::{Input, mutate};

#[derive(Arbitrary, Debug)]
struct Images {
    pack: Input,
    /// Bytes given to `Aux::parse` and, as a stored object area, to `decode_objects`.
    raw: Vec<u8>,
    /// The decoded length claimed for `raw` (bounded).
    decoded: Option<u16>,
}

fuzz_target!(|input: Images| {
    let mut pack_input = input.pack.clone();
    pack_input.image_seed = true;
    let bytes = mutate(&pack_input, &[b"IMGO", b"IREL", b"INAM", b"ILAY"]);
    if let Ok(pack) = Pack::from_bytes(&bytes) {
        let names = pack.images().ok().flatten().map(|i| i.names);
        if let Some(names) = names {
            for i in 0..names.len().min(4096) + 1 {
                let _ = names.get(i);
            }
        }
        for m in pack.modules().flatten() {
            if let Ok(Some(image)) = m.image() {
                let all = pack.as_bytes();
                assert!(image.objects.end <= all.len() && image.aux.end <= all.len());
                let mut out = vec![0u8; image.objects_len()];
                let _ = image.decode_objects(&all[image.objects.clone()], &mut out);
                if let Ok(aux) = Aux::parse(&all[image.aux.clone()]) {
                    for slot in 0..aux.name_count() + 1 {
                        if let (Some(s), Some(names)) = (aux.name_slot(slot), names) {
                            let _ = names.get(s as usize);
                        }
                    }
                    let items: usize = aux.frozensets().map(|(_, items)| items.count()).sum();
                    assert!(items <= all.len() / 8);
                }
            }
            let _ = m.checked_image();
        }
        let _ = pack.verify();
    }
    // The decoders alone, on arbitrary bytes.
    if let Ok(aux) = Aux::parse(&input.raw) {
        assert!(aux.name_count() * 4 <= input.raw.len());
        let _ = aux
            .frozensets()
            .map(|(_, items)| items.count())
            .sum::<usize>();
    }
    let decoded = input.decoded.map(|n| usize::from(n) * 8);
    let image = ImageRef {
        objects: 0..input.raw.len(),
        compressed_from: decoded,
        aux: 0..0,
        digest: [0; 16],
        record_digest: [0; 32],
    };
    let mut out = vec![0u8; image.objects_len()];
    let _ = image.decode_objects(&input.raw, &mut out);
    let mut wrong = vec![0u8; image.objects_len() + 8];
    assert!(image.decode_objects(&input.raw, &mut wrong).is_err());
});
