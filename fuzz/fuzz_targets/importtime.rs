//! The `-X importtime` parser (`ppyc_importtime::xtime`): arbitrary stderr text split into
//! rows and the program's own lines, then the import tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ppyc_importtime::xtime;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = xtime::parse(&text);
    // Every line is either a row, the header, or the program's own.
    let lines = text.lines().count();
    assert!(parsed.rows.len() + parsed.other.len() <= lines);
    let forest = xtime::tree(&parsed.rows);
    let mut nodes = 0;
    for t in &forest {
        t.walk(&mut |_| nodes += 1);
    }
    assert_eq!(
        nodes,
        parsed.rows.len(),
        "every row is one node of the tree"
    );
});
