//! Rendering a report: the table, the HTML page (data safely embedded) and the trace.

use std::collections::HashMap;

use ppyc_importtime::profile::Record;
use ppyc_importtime::render::{html, table, trace};
use ppyc_importtime::report::{
    Inputs, Known, Machine, Memory, MemoryReport, Meta, PpycInfo, ProfiledRun, PythonInfo, Report,
    Target, build,
};
use ppyc_importtime::xtime::parse;

const EVIL: &str = "evil</script><!--x";

fn report() -> Report {
    let stock = format!(
        "import time:       100 |        100 |     {EVIL}\n\
         import time:       300 |        400 |   pkg.sub\n\
         import time:       500 |        900 | pkg\n"
    );
    let ppyc = "import time:       200 |        200 |   ppyc._hook\n\
                import time:       100 |        300 | site\n\
                import time:        80 |         80 |   pkg.sub\n\
                import time:       120 |        200 | pkg\n";
    let record = |m: &str, served: bool, reason: Option<&str>| {
        (
            m.to_owned(),
            Record {
                module: m.to_owned(),
                served,
                reason: reason.map(str::to_owned),
                find_ns: 5_000,
                unmarshal_ns: 40_000,
                ..Record::default()
            },
        )
    };
    let records: HashMap<String, Record> = [
        record("pkg", true, None),
        record("pkg.sub", true, None),
        record("ppyc._hook", false, Some("imported before ppyc started")),
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
                mode: "marshal".into(),
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

#[test]
fn table_has_every_part() {
    let t = table(&report(), 20);
    for needle in [
        "ppyc importtime: import pkg",
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
    let pkg = t
        .lines()
        .find(|l| l.trim_start().starts_with("pkg "))
        .unwrap();
    // stock 500, ppyc 120, ratio 0.24, find 5, unmarshal 40, exec 120-45 = 75, served.
    let cols: Vec<&str> = pkg.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "pkg", "500", "120", "0.24", "5", "0", "0", "40", "75", "yes"
        ]
    );
    assert_eq!(table(&report(), 1).matches("\n  pkg ").count(), 1);
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
}

#[test]
fn trace_nests_children_inside_parents() {
    let t = trace(&report());
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
    // phases (find 5 + unmarshal 40).
    assert_eq!(x(2, "pkg")["ts"], 300.0);
    assert_eq!(x(2, "pkg.sub")["ts"], 345.0);
    assert_eq!(x(2, "pkg")["args"]["served"], true);
    assert_eq!(x(1, "pkg")["cat"], "stock");
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stock: import pkg", "ppyc: import pkg"]);
}
