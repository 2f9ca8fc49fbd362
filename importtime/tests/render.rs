//! Rendering a report: the table, the HTML page (data safely embedded) and the trace.

use std::collections::HashMap;

use ppyc_importtime::profile::Record;
use ppyc_importtime::render::{html, table, trace};
use ppyc_importtime::report::{
    Inputs, Known, Machine, Memory, MemoryReport, Meta, Mode, PpycInfo, ProfiledRun, PythonInfo,
    Report, Target, build,
};
use ppyc_importtime::xtime::parse;

const EVIL: &str = "evil</script><!--x";

/// The sample report with `pkg` and `pkg.sub` served in marshal mode.
fn report() -> Report {
    report_in(["marshal", "marshal"])
}

/// The sample report with `pkg` and `pkg.sub` served in these modes: 40 µs of loading
/// each (unmarshal 40, or relocate 30 and bind 10).
fn report_in(modes: [&str; 2]) -> Report {
    let stock = format!(
        "import time:       100 |        100 |     {EVIL}\n\
         import time:       300 |        400 |   pkg.sub\n\
         import time:       500 |        900 | pkg\n"
    );
    let ppyc = "import time:       200 |        200 |   ppyc._hook\n\
                import time:       100 |        300 | site\n\
                import time:        80 |         80 |   pkg.sub\n\
                import time:       120 |        200 | pkg\n";
    let record = |m: &str, mode: Option<&str>, reason: Option<&str>| {
        let image = mode == Some("image");
        (
            m.to_owned(),
            Record {
                module: m.to_owned(),
                served: mode.is_some(),
                reason: reason.map(str::to_owned),
                find_ns: 5_000,
                unmarshal_ns: if mode == Some("marshal") { 40_000 } else { 0 },
                relocate_ns: if image { 30_000 } else { 0 },
                bind_ns: if image { 10_000 } else { 0 },
                mode: mode.map(str::to_owned),
                ..Record::default()
            },
        )
    };
    let records: HashMap<String, Record> = [
        record("pkg", Some(modes[0]), None),
        record("pkg.sub", Some(modes[1]), None),
        record("ppyc._hook", None, Some("imported before ppyc started")),
    ]
    .into_iter()
    .collect();
    let runs = |text: &str, records: &HashMap<String, Record>| {
        vec![ProfiledRun {
            rows: parse(text).rows,
            records: records.clone(),
        }]
    };
    build(Inputs {
        meta: Meta {
            target: Target {
                kind: "c".into(),
                value: "import pkg".into(),
                label: "import pkg".into(),
                args: vec![],
            },
            python: PythonInfo {
                executable: "/usr/bin/python3".into(),
                version: "3.12.1".into(),
                cache_tag: "cpython-312".into(),
                implementation: "cpython".into(),
            },
            ppyc: PpycInfo {
                version: "0.1.0".into(),
                mode: None,
                hook_enabled: true,
            },
            runs: 1,
            warmup: 1,
            processes: 2,
            machine: Machine {
                hostname: "host".into(),
                os: "Linux 6".into(),
                cpus: 2,
                cpu: "cpu".into(),
                memory_bytes: 1 << 30,
            },
            date: "2026-12-02T00:00:00Z".into(),
            command: vec!["ppyc".into(), "importtime".into(), EVIL.into()],
        },
        wall_stock_ms: &[20.0],
        wall_ppyc_ms: &[15.0],
        stock_runs: &runs(&stock, &HashMap::new()),
        ppyc_runs: &runs(ppyc, &records),
        known: &Known::default(),
        memory: Some(MemoryReport {
            processes: 2,
            stock: Memory {
                rss_bytes: 10 << 20,
                pss_bytes: 6 << 20,
                ..Memory::default()
            },
            ppyc: Memory {
                rss_bytes: 11 << 20,
                pss_bytes: 5 << 20,
                pack_rss_bytes: 1 << 20,
                ..Memory::default()
            },
        }),
    })
}

/// The columns of a module's row in a table.
fn row<'a>(t: &'a str, module: &str) -> Vec<&'a str> {
    t.lines()
        .find(|l| l.trim_start().starts_with(&format!("{module} ")))
        .unwrap_or_else(|| panic!("{module}:\n{t}"))
        .split_whitespace()
        .collect()
}

#[test]
fn table_has_every_part() {
    let t = table(&report(), 20);
    for needle in [
        "ppyc importtime: import pkg",
        "ppyc 0.1.0 (marshal mode)",
        "ppyc phases (marshal mode): find 0.01 ms · check 0.00 ms · read 0.00 ms · \
         unmarshal 0.08 ms · exec and rest",
        "ratio ppyc/stock, pair by pair: median 0.750",
        "ppyc 1.33x faster",
        "top 5 modules by self time",
        "not served by ppyc: 2 modules",
        "imported before ppyc started: 1",
        "memory (median process of 2 running together",
        "pack mappings: RSS",
        "11.0 MiB",
    ] {
        assert!(t.contains(needle), "{needle}:\n{t}");
    }
    assert!(!t.contains("relocate") && !t.contains("bind"), "{t}");
    // stock 500, ppyc 120, ratio 0.24, find 5, unmarshal 40, exec 120-45 = 75, served.
    assert_eq!(
        row(&t, "module"),
        [
            "module",
            "stock",
            "ppyc",
            "ratio",
            "find",
            "check",
            "read",
            "unmarshal",
            "exec",
            "served"
        ]
    );
    assert_eq!(
        row(&t, "pkg"),
        [
            "pkg", "500", "120", "0.24", "5", "0", "0", "40", "75", "yes"
        ]
    );
    assert_eq!(table(&report(), 1).matches("\n  pkg ").count(), 1);
}

#[test]
fn table_of_image_mode() {
    let r = report_in(["image", "image"]);
    assert_eq!(r.meta.ppyc.mode, Some(Mode::Image));
    let t = table(&r, 20);
    for needle in [
        "ppyc 0.1.0 (image mode)",
        "ppyc phases (image mode): find 0.01 ms · check 0.00 ms · read 0.00 ms · \
         relocate 0.06 ms · bind 0.02 ms · exec and rest 0.",
    ] {
        assert!(t.contains(needle), "{needle}:\n{t}");
    }
    assert!(!t.contains("unmarshal"), "{t}");
    assert_eq!(
        row(&t, "module"),
        [
            "module", "stock", "ppyc", "ratio", "find", "check", "read", "relocate", "bind",
            "exec", "served"
        ]
    );
    // exec and rest: 120 - (5 + 30 + 10).
    assert_eq!(
        row(&t, "pkg"),
        [
            "pkg", "500", "120", "0.24", "5", "0", "0", "30", "10", "75", "yes"
        ]
    );
    assert_eq!(
        row(&t, "ppyc._hook"),
        [
            "ppyc._hook",
            "-",
            "200",
            "-",
            "5",
            "0",
            "0",
            "0",
            "0",
            "195",
            "no:",
            "imported",
            "before",
            "ppyc",
            "started"
        ]
    );
}

#[test]
fn table_of_mixed_mode() {
    let r = report_in(["image", "marshal"]);
    assert_eq!(r.meta.ppyc.mode, Some(Mode::Mixed));
    let t = table(&r, 20);
    assert!(
        t.contains(
            "ppyc phases (mixed mode): find 0.01 ms · check 0.00 ms · read 0.00 ms · \
             unmarshal 0.04 ms · relocate 0.03 ms · bind 0.01 ms · exec and rest"
        ),
        "{t}"
    );
    assert_eq!(
        row(&t, "module")[4..],
        [
            "find",
            "check",
            "read",
            "unmarshal",
            "relocate",
            "bind",
            "exec",
            "served"
        ]
    );
    assert_eq!(
        row(&t, "pkg")[4..],
        ["5", "0", "0", "0", "30", "10", "75", "yes", "(image)"]
    );
    assert_eq!(
        row(&t, "pkg.sub")[4..],
        ["5", "0", "0", "40", "0", "0", "35", "yes", "(marshal)"]
    );
}

#[test]
fn html_embeds_the_data_safely() {
    let r = report();
    let page = html(&r);
    assert!(!page.contains("/*PPYC_DATA*/null"));
    // The data cannot close the script element or open a comment.
    let script_closes = page.matches("</script>").count();
    let template_closes = include_str!("../assets/report.html")
        .matches("</script>")
        .count();
    assert_eq!(script_closes, template_closes);
    assert!(!page.contains(EVIL));
    assert!(page.contains("evil\\u003c/script>\\u003c!--x"));
    // And it is the report, whole: the JSON between the markers parses back.
    let start = page.find("{\"schema\":\"ppyc-importtime/1\"").unwrap();
    let json: serde_json::Value = serde_json::Deserializer::from_str(&page[start..])
        .into_iter::<serde_json::Value>()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(json["meta"]["target"]["label"], "import pkg");
    assert_eq!(json["sides"]["ppyc"]["tree"][1]["name"], "pkg");
    assert_eq!(json["modules"][0]["name"], "pkg");
    assert_eq!(json["meta"]["ppyc"]["mode"], "marshal");
    assert_eq!(json["modules"][0]["ppyc"]["mode"], "marshal");
}

#[test]
fn trace_nests_children_inside_parents() {
    for modes in [["marshal", "marshal"], ["image", "image"]] {
        trace_of(&report_in(modes), modes[0]);
    }
}

fn trace_of(r: &Report, mode: &str) {
    let t = trace(r);
    let events = t["traceEvents"].as_array().unwrap();
    let x = |pid: u64, name: &str| {
        events
            .iter()
            .find(|e| e["ph"] == "X" && e["pid"] == pid && e["name"] == name)
            .unwrap_or_else(|| panic!("{pid} {name}"))
            .clone()
    };
    for pid in [1, 2] {
        let pkg = x(pid, "pkg");
        let sub = x(pid, "pkg.sub");
        let (p0, pd) = (pkg["ts"].as_f64().unwrap(), pkg["dur"].as_f64().unwrap());
        let (s0, sd) = (sub["ts"].as_f64().unwrap(), sub["dur"].as_f64().unwrap());
        assert!(p0 <= s0 && s0 + sd <= p0 + pd, "{pid}: {pkg} {sub}");
    }
    // ppyc: `site` (300) comes first, so `pkg` starts at 300, its child after its lead
    // phases (find 5 + unmarshal 40, or find 5 + relocate 30 + bind 10).
    assert_eq!(x(2, "pkg")["ts"], 300.0);
    assert_eq!(x(2, "pkg.sub")["ts"], 345.0);
    assert_eq!(x(2, "pkg")["args"]["served"], true);
    assert_eq!(x(2, "pkg")["args"]["mode"], mode);
    assert_eq!(t["otherData"]["mode"], mode);
    let phases = &x(2, "pkg")["args"]["phases"];
    let (unmarshal, relocate) = if mode == "image" {
        (0.0, 30.0)
    } else {
        (40.0, 0.0)
    };
    assert_eq!(phases["unmarshal_us"], unmarshal);
    assert_eq!(phases["relocate_us"], relocate);
    assert_eq!(x(1, "pkg")["cat"], "stock");
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stock: import pkg", "ppyc: import pkg"]);
}

#[test]
fn a_ratio_near_one_is_the_same_not_1_00x() {
    let verdict = |median: f64| {
        let mut r = report();
        r.wall.ratio.median = median;
        let t = table(&r, 20);
        let line = t
            .lines()
            .find(|l| l.contains("ratio ppyc/stock"))
            .unwrap_or_else(|| panic!("{t}"))
            .to_owned();
        line.rsplit(": ").next().unwrap().to_owned()
    };
    assert_eq!(verdict(1.004), "the same (within 0.5 %)");
    assert_eq!(verdict(0.996), "the same (within 0.5 %)");
    assert_eq!(verdict(1.0), "the same (within 0.5 %)");
    assert_eq!(verdict(1.006), "ppyc 1.01x slower");
    assert_eq!(verdict(0.5), "ppyc 2.00x faster");
}
