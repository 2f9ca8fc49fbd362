//! Opening a pack and every read path, on a seed pack mutated anywhere (header, section
//! table, any section) with every digest recomputed afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ppyc_fuzz::{Input, exercise, mutate, seed_names};

fuzz_target!(|input: Input| {
    let bytes = mutate(&input, &[]);
    let _ = exercise(&bytes, seed_names());
});
