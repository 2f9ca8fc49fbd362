//! `--trace`: the import trees as a Chrome trace (Trace Event Format, "X" complete events),
//! which chrome://tracing, Perfetto and speedscope open. Process 1 is stock, process 2
//! ppyc; a node starts where its previous sibling ended (the real interleaving of a
//! module's own time with its imports is not recorded), children after the module's
//! loading phases when known (find, check, read, then unmarshal in marshal mode or
//! relocate and bind in image mode). A served module's args name its mode.

use serde_json::{Value, json};

use crate::Report;
use crate::report::Node;

/// The trace document.
pub fn trace(report: &Report) -> Value {
    let mut events = Vec::new();
    for (pid, name, side) in [
        (1, "stock", &report.sides.stock),
        (2, "ppyc", &report.sides.ppyc),
    ] {
        events.push(
            json!({"ph": "M", "name": "process_name", "pid": pid, "tid": 1,
                           "args": {"name": format!("{name}: {}", report.meta.target.label)}}),
        );
        events.push(
            json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": 1,
                           "args": {"name": "imports"}}),
        );
        let mut ts = 0.0;
        for node in &side.tree {
            emit(node, pid, ts, &mut events);
            ts += node.cum_us;
        }
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "target": report.meta.target.label,
            "python": report.meta.python.version,
            "ppyc": report.meta.ppyc.version,
            "mode": report.meta.ppyc.mode,
            "runs": report.meta.runs,
            "note": "median per module over the profiled runs",
        },
    })
}

fn emit(node: &Node, pid: u32, start: f64, events: &mut Vec<Value>) {
    if node.cached {
        events.push(
            json!({"ph": "i", "s": "t", "name": format!("{} (cached)", node.name),
                           "pid": pid, "tid": 1, "ts": start}),
        );
        return;
    }
    let mut args = json!({"self_us": node.self_us, "cum_us": node.cum_us});
    if let Some(served) = node.served {
        args["served"] = json!(served);
    }
    if let Some(reason) = &node.reason {
        args["reason"] = json!(reason);
    }
    if let Some(mode) = node.mode {
        args["mode"] = json!(mode);
    }
    let mut lead = 0.0;
    if let Some(p) = &node.phases {
        args["phases"] = json!(p);
        lead = p.loading_us();
    }
    let cat = match node.served {
        Some(true) => "served",
        Some(false) => "not served",
        None => "stock",
    };
    events.push(
        json!({"ph": "X", "name": node.name, "cat": cat, "pid": pid, "tid": 1,
                       "ts": start, "dur": node.cum_us, "args": args}),
    );
    let children: f64 = node.children.iter().map(|c| c.cum_us).sum();
    // Children after the module's own lead phases, as long as they still fit inside it.
    let mut ts = start + lead.min((node.cum_us - children).max(0.0));
    for child in &node.children {
        emit(child, pid, ts, events);
        ts += child.cum_us;
    }
}
