//! The `-X importtime` parser on outputs recorded from each CPython (`data/xtime-3.*.txt`:
//! `python -X importtime -c "import json, email.message"` with 3.10 to 3.13; 3.14's
//! `-X importtime=2` transcript is written with the printf formats of its `import.c`).

use ppyc_importtime::xtime::{Tree, parse, tree};

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn find<'a>(forest: &'a [Tree], name: &str) -> Option<&'a Tree> {
    for t in forest {
        if t.row.name == name {
            return Some(t);
        }
        if let Some(found) = find(&t.children, name) {
            return Some(found);
        }
    }
    None
}

/// CPython rounds each time up to the microsecond (`_PyTime_ROUND_CEILING`), so a module's
/// cumulative time is its self time plus its children's, give or take one per term.
fn check_sums(t: &Tree) {
    if !t.row.cached {
        let children: i64 = t
            .children
            .iter()
            .filter(|c| !c.row.cached)
            .map(|c| c.row.cum_us as i64)
            .sum();
        let terms = t.children.len() as i64 + 1;
        let diff = t.row.cum_us as i64 - t.row.self_us as i64 - children;
        assert!(
            diff.abs() <= terms,
            "{}: cum {} != self {} + children {children}",
            t.row.name,
            t.row.cum_us,
            t.row.self_us
        );
    }
    for c in &t.children {
        assert!(
            c.row.level == t.row.level + 1,
            "{} under {}",
            c.row.name,
            t.row.name
        );
        check_sums(c);
    }
}

#[test]
fn every_recorded_version() {
    for version in ["3.10", "3.11", "3.12", "3.13"] {
        let text = data(&format!("xtime-{version}.txt"));
        let parsed = parse(&text);
        assert!(parsed.header, "{version}");
        assert!(parsed.other.is_empty(), "{version}: {:?}", parsed.other);
        assert_eq!(
            parsed.rows.len(),
            text.lines().count() - 1,
            "{version}: every row but the header"
        );
        let forest = tree(&parsed.rows);
        for root in &forest {
            assert_eq!(root.row.level, 0, "{version}: {}", root.row.name);
            check_sums(root);
        }
        let names: Vec<&str> = forest.iter().map(|t| t.row.name.as_str()).collect();
        for expected in ["site", "json", "email.message"] {
            assert!(names.contains(&expected), "{version}: roots {names:?}");
        }
        // Modules the program imported are found in the tree, with their parents.
        let decoder = find(&forest, "json.decoder").expect("json.decoder");
        assert!(decoder.row.level >= 1);
        let json = find(&forest, "json").unwrap();
        assert!(
            find(&json.children, "json.decoder").is_some(),
            "{version}: json.decoder under json"
        );
        let utils = find(&forest, "email.utils").expect("email.utils");
        assert!(
            find(&utils.children, "email._parseaddr").is_some(),
            "{version}"
        );
        let total: u64 = forest.iter().map(|t| t.row.cum_us).sum();
        assert!(total > 0);
    }
}

#[test]
fn cached_rows_of_3_14() {
    let parsed = parse(&data("xtime-3.14-importtime2.txt"));
    assert!(parsed.header);
    let cached: Vec<(&str, usize)> = parsed
        .rows
        .iter()
        .filter(|r| r.cached)
        .map(|r| (r.name.as_str(), r.level))
        .collect();
    assert_eq!(
        cached,
        vec![("sys", 1), ("_io", 1), ("a", 2), ("os", 0), ("json", 0)]
    );
    let forest = tree(&parsed.rows);
    let names: Vec<(&str, bool)> = forest
        .iter()
        .map(|t| (t.row.name.as_str(), t.row.cached))
        .collect();
    assert_eq!(
        names,
        vec![
            ("_frozen_importlib_external", false),
            ("site", false),
            ("os", true),
            ("json", false),
            ("json", true)
        ]
    );
    let fie: Vec<&str> = forest[0]
        .children
        .iter()
        .map(|c| c.row.name.as_str())
        .collect();
    assert_eq!(fie, vec!["_io", "marshal", "sys"]);
    let site: Vec<&str> = forest[1]
        .children
        .iter()
        .map(|c| c.row.name.as_str())
        .collect();
    assert_eq!(site, vec!["_io", "os", "encodings"]);
    let enc: Vec<&str> = forest[1].children[2]
        .children
        .iter()
        .map(|c| c.row.name.as_str())
        .collect();
    assert_eq!(enc, vec!["a", "codecs"]);
    for root in &forest {
        check_sums(root);
    }
}

#[test]
fn interleaved_program_stderr_and_a_crash() {
    let text = "import time: self [us] | cumulative | imported package\n\
                import time:        10 |         10 |     deep\n\
                warning from the program\n\
                import time:        20 |         30 |   mid\n\
                Traceback (most recent call last):\n\
                ModuleNotFoundError: No module named 'x'\n";
    let parsed = parse(text);
    assert_eq!(parsed.rows.len(), 2);
    assert_eq!(parsed.other.len(), 3);
    // The importer of `mid` never finished: `mid` becomes a root.
    let forest = tree(&parsed.rows);
    assert_eq!(forest.len(), 1);
    assert_eq!(forest[0].row.name, "mid");
    assert_eq!(forest[0].children[0].row.name, "deep");
}
