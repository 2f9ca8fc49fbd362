//! Hot paths of the pack reader: opening a pack (every interpreter start) and looking a
//! module up (every import).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ppyc_benches::{module_name, synthetic_pack};
use ppyc_format::Pack;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("__ppyc__.cpython-312.ppyc");
    // 10,000 modules with ~8 KiB of code each: an 80 MB pack.
    ppyc_format::write_atomic(&path, &synthetic_pack(10_000, 8 * 1024)).expect("write");
    let size = std::fs::metadata(&path).expect("stat").len();
    eprintln!("pack: 10000 modules, {size} bytes");

    c.bench_function("open 10k-module pack", |b| {
        b.iter(|| Pack::open(black_box(&path)).expect("open"));
    });

    let pack = Pack::open(&path).expect("open");
    let names: Vec<String> = (0..10_000).step_by(37).map(module_name).collect();
    let mut i = 0;
    c.bench_function("lookup (hit, record checked)", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            black_box(
                pack.get(black_box(&names[i]))
                    .expect("ok")
                    .expect("present"),
            );
        });
    });
    c.bench_function("lookup (miss)", |b| {
        b.iter(|| black_box(pack.get(black_box("numpy.core.multiarray")).expect("ok")));
    });
    c.bench_function("lookup + payload digest check", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            let m = pack
                .get(black_box(&names[i]))
                .expect("ok")
                .expect("present");
            black_box(m.payload().expect("intact").len());
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
