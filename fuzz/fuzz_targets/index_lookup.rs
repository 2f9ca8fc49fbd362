//! Index lookup (`Pack::get`): a seed pack whose `INDX` and `RECS` are mutated, every digest
//! recomputed, then names looked up: the seeds' names, names drawn by the fuzzer, and the
//! names the damaged pack itself claims. A lookup may fail or miss, but a hit must be the
//! module asked for and the scan must stay inside the index.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ppyc_format::{Pack, name_hash};
use ppyc_fuzz::{Input, mutate, seed_names};

#[derive(Arbitrary, Debug)]
struct Lookup {
    pack: Input,
    names: Vec<String>,
}

fuzz_target!(|input: Lookup| {
    let bytes = mutate(&input.pack, &[b"INDX", b"RECS"]);
    let Ok(pack) = Pack::from_bytes(&bytes) else {
        return;
    };
    let claimed: Vec<String> = pack
        .modules()
        .flatten()
        .map(|m| m.name().to_owned())
        .collect();
    let names = seed_names().iter().chain(&input.names).chain(&claimed);
    for name in names.take(64) {
        if let Ok(Some(m)) = pack.get(name) {
            assert_eq!(m.name(), name);
            assert!(m.index() < pack.len());
            let _ = m.payload();
        }
    }
    let report = pack.verify();
    // An intact index holds only entries whose hash is their name's.
    if report.is_ok() {
        for m in pack.modules() {
            let m = m.expect("verify passed");
            assert!(matches!(pack.get(m.name()), Ok(Some(found)) if found.index() == m.index()));
            let _ = name_hash(m.name().as_bytes());
        }
    }
});
