//! The report (`spec/IMPORTTIME.md` §3) and its aggregation from the raw runs.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::profile::Record;
use crate::stats::{Summary, median};
use crate::xtime::{Row, Tree, tree};

/// The schema name and version of the `--json` document.
pub const SCHEMA: &str = "ppyc-importtime/1";

/// Spreads above this (interquartile range / median) make the ratio untrustworthy.
pub const SPREAD_LIMIT: f64 = 0.10;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub meta: Meta,
    pub wall: Wall,
    pub sides: Sides,
    pub phases: Phases,
    pub modules: Vec<ModuleRow>,
    pub memory: Option<MemoryReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub target: Target,
    pub python: PythonInfo,
    pub ppyc: PpycInfo,
    pub runs: usize,
    pub warmup: usize,
    pub processes: usize,
    pub machine: Machine,
    pub date: String,
    pub command: Vec<String>,
}

/// What runs: `python -c VALUE` or `python -m VALUE`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// `"c"` or `"m"`.
    pub kind: String,
    pub value: String,
    /// How the user named it: `import rich.console`, `-m mytool`.
    pub label: String,
    /// Arguments for the target (its `sys.argv[1:]`).
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PythonInfo {
    pub executable: String,
    pub version: String,
    pub cache_tag: String,
    pub implementation: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PpycInfo {
    pub version: String,
    pub mode: String,
    pub hook_enabled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub os: String,
    pub cpus: usize,
    pub cpu: String,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Wall {
    pub stock: Summary,
    pub ppyc: Summary,
    /// ppyc / stock of each pair of runs.
    pub ratio: Summary,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sides {
    pub stock: Side,
    pub ppyc: Side,
}

#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub total_self_us: f64,
    pub modules: usize,
    pub tree: Vec<Node>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Phases {
    pub find_us: f64,
    pub check_us: f64,
    pub read_us: f64,
    pub unmarshal_us: f64,
    /// Self time minus the four above.
    pub exec_us: f64,
}

impl Phases {
    fn add(&mut self, other: &Phases) {
        self.find_us += other.find_us;
        self.check_us += other.check_us;
        self.read_us += other.read_us;
        self.unmarshal_us += other.unmarshal_us;
        self.exec_us += other.exec_us;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub name: String,
    pub self_us: f64,
    pub cum_us: f64,
    pub cached: bool,
    pub served: Option<bool>,
    pub reason: Option<String>,
    pub phases: Option<Phases>,
    pub children: Vec<Node>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModuleRow {
    pub name: String,
    pub stock: Option<StockTimes>,
    pub ppyc: Option<PpycTimes>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StockTimes {
    pub self_us: f64,
    pub cum_us: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PpycTimes {
    pub self_us: f64,
    pub cum_us: f64,
    pub served: bool,
    pub reason: Option<String>,
    pub phases: Option<Phases>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub processes: usize,
    pub stock: Memory,
    pub ppyc: Memory,
}

/// Memory of one side (the median process of the median round; `pss_total_bytes` sums the
/// processes of a round).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Memory {
    pub rss_bytes: u64,
    pub pss_bytes: u64,
    pub private_bytes: u64,
    pub shared_bytes: u64,
    pub pss_total_bytes: u64,
    pub pack_rss_bytes: u64,
    pub pack_pss_bytes: u64,
    pub pack_private_bytes: u64,
    pub pack_shared_bytes: u64,
}

/// One profiled run: its `-X importtime` rows and, on the ppyc side, the runtime's records.
#[derive(Debug, Clone, Default)]
pub struct ProfiledRun {
    pub rows: Vec<Row>,
    pub records: HashMap<String, Record>,
}

/// What the interpreter knows about modules that never reach a path finder.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub builtin: HashSet<String>,
    pub frozen: HashSet<String>,
}

/// Why the ppyc side did not serve a module the runtime has no record of.
fn unrecorded_reason(name: &str, known: &Known) -> &'static str {
    if known.builtin.contains(name) {
        "builtin module"
    } else if known.frozen.contains(name) {
        "frozen module"
    } else {
        "not found through a directory ppyc serves"
    }
}

/// Per module of one side: the median over runs of self and cumulative time (first row of
/// the module in each run; cached rows carry no time).
fn medians(runs: &[ProfiledRun]) -> BTreeMap<String, (f64, f64)> {
    let mut samples: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for run in runs {
        let mut seen = HashSet::new();
        for row in run.rows.iter().filter(|r| !r.cached) {
            if seen.insert(row.name.as_str()) {
                let e = samples.entry(row.name.clone()).or_default();
                e.0.push(row.self_us as f64);
                e.1.push(row.cum_us as f64);
            }
        }
    }
    samples
        .into_iter()
        .map(|(name, (s, c))| (name, (median(&s), median(&c))))
        .collect()
}

/// The ppyc side's view of one module over the runs: served if it was in most runs; the
/// most frequent reason otherwise; median phases.
fn ppyc_outcome(
    name: &str,
    self_us: f64,
    runs: &[ProfiledRun],
    known: &Known,
) -> (bool, Option<String>, Option<Phases>) {
    let records: Vec<&Record> = runs.iter().filter_map(|r| r.records.get(name)).collect();
    let builtin_or_frozen = known.builtin.contains(name) || known.frozen.contains(name);
    if records.is_empty() || builtin_or_frozen {
        return (false, Some(unrecorded_reason(name, known).to_owned()), None);
    }
    let served = records.iter().filter(|r| r.served).count() * 2 > runs.len().max(1);
    let reason = if served {
        None
    } else {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &records {
            let reason = r
                .reason
                .as_deref()
                .unwrap_or("not found in a directory of sys.path");
            *counts.entry(reason).or_default() += 1;
        }
        if records.len() < runs.len() {
            *counts.entry(unrecorded_reason(name, known)).or_default() +=
                runs.len() - records.len();
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(r, _)| r.to_owned())
    };
    let us = |f: fn(&Record) -> u64| {
        median(
            &records
                .iter()
                .map(|r| f(r) as f64 / 1000.0)
                .collect::<Vec<_>>(),
        )
    };
    let mut phases = Phases {
        find_us: us(|r| r.find_ns),
        check_us: us(|r| r.check_ns),
        read_us: us(|r| r.read_ns),
        unmarshal_us: us(|r| r.unmarshal_ns),
        exec_us: 0.0,
    };
    phases.exec_us =
        (self_us - phases.find_us - phases.check_us - phases.read_us - phases.unmarshal_us)
            .max(0.0);
    (served, reason, Some(phases))
}

/// Builds the report from the measurements.
pub struct Inputs<'a> {
    pub meta: Meta,
    pub wall_stock_ms: &'a [f64],
    pub wall_ppyc_ms: &'a [f64],
    pub stock_runs: &'a [ProfiledRun],
    pub ppyc_runs: &'a [ProfiledRun],
    pub known: &'a Known,
    pub memory: Option<MemoryReport>,
}

pub fn build(inputs: Inputs<'_>) -> Report {
    let Inputs {
        meta,
        wall_stock_ms,
        wall_ppyc_ms,
        stock_runs,
        ppyc_runs,
        known,
        memory,
    } = inputs;
    let empty = || Summary::of(&[0.0]).expect("one sample");
    let stock = Summary::of(wall_stock_ms).unwrap_or_else(empty);
    let ppyc = Summary::of(wall_ppyc_ms).unwrap_or_else(empty);
    let pairs: Vec<f64> = wall_stock_ms
        .iter()
        .zip(wall_ppyc_ms)
        .filter(|(s, _)| **s > 0.0)
        .map(|(s, p)| p / s)
        .collect();
    let ratio = Summary::of(&pairs).unwrap_or_else(empty);
    let mut warnings = Vec::new();
    for (side, s) in [("stock", &stock), ("ppyc", &ppyc)] {
        if s.relative_iqr() > SPREAD_LIMIT {
            warnings.push(format!(
                "the {side} wall times spread by {:.0} % of their median (interquartile range): \
                 the machine is noisy; more --runs or a quieter machine give a number to trust",
                s.relative_iqr() * 100.0
            ));
        }
    }
    if ratio.relative_iqr() > SPREAD_LIMIT {
        warnings.push(format!(
            "the pairwise ratios spread by {:.0} % (interquartile range): do not trust a \
             difference smaller than that",
            ratio.relative_iqr() * 100.0
        ));
    }

    let stock_medians = medians(stock_runs);
    let ppyc_medians = medians(ppyc_runs);
    let mut phase_totals = Phases::default();
    let mut ppyc_rows: BTreeMap<String, PpycTimes> = BTreeMap::new();
    for (name, (self_us, cum_us)) in &ppyc_medians {
        let (served, reason, phases) = ppyc_outcome(name, *self_us, ppyc_runs, known);
        if let Some(p) = &phases {
            phase_totals.add(p);
        }
        ppyc_rows.insert(
            name.clone(),
            PpycTimes {
                self_us: *self_us,
                cum_us: *cum_us,
                served,
                reason,
                phases,
            },
        );
    }

    let stock_side = side(stock_runs, &stock_medians, None);
    let ppyc_side = side(ppyc_runs, &ppyc_medians, Some(&ppyc_rows));

    let mut names: Vec<&String> = stock_medians.keys().chain(ppyc_medians.keys()).collect();
    names.sort();
    names.dedup();
    let mut modules: Vec<ModuleRow> = names
        .into_iter()
        .map(|name| ModuleRow {
            name: name.clone(),
            stock: stock_medians
                .get(name)
                .map(|&(self_us, cum_us)| StockTimes { self_us, cum_us }),
            ppyc: ppyc_rows.get(name).cloned(),
        })
        .collect();
    let key = |m: &ModuleRow| {
        let s = m.stock.as_ref().map_or(0.0, |s| s.self_us);
        let p = m.ppyc.as_ref().map_or(0.0, |p| p.self_us);
        s.max(p)
    };
    modules.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));

    Report {
        schema: SCHEMA,
        meta,
        wall: Wall {
            stock,
            ppyc,
            ratio,
            warnings,
        },
        sides: Sides {
            stock: stock_side,
            ppyc: ppyc_side,
        },
        phases: phase_totals,
        modules,
        memory,
    }
}

/// A side's tree: the shape of its first run with the medians of every module.
fn side(
    runs: &[ProfiledRun],
    medians: &BTreeMap<String, (f64, f64)>,
    ppyc: Option<&BTreeMap<String, PpycTimes>>,
) -> Side {
    let forest = runs.first().map(|r| tree(&r.rows)).unwrap_or_default();
    let nodes = forest.iter().map(|t| node(t, medians, ppyc)).collect();
    Side {
        total_self_us: medians.values().map(|(s, _)| s).sum(),
        modules: medians.len(),
        tree: nodes,
    }
}

fn node(
    t: &Tree,
    medians: &BTreeMap<String, (f64, f64)>,
    ppyc: Option<&BTreeMap<String, PpycTimes>>,
) -> Node {
    let (self_us, cum_us) = if t.row.cached {
        (0.0, 0.0)
    } else {
        medians.get(&t.row.name).copied().unwrap_or((0.0, 0.0))
    };
    let info = ppyc
        .and_then(|m| m.get(&t.row.name))
        .filter(|_| !t.row.cached);
    Node {
        name: t.row.name.clone(),
        self_us,
        cum_us,
        cached: t.row.cached,
        served: info.map(|i| i.served),
        reason: info.and_then(|i| i.reason.clone()),
        phases: info.and_then(|i| i.phases.clone()),
        children: t.children.iter().map(|c| node(c, medians, ppyc)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xtime::parse;

    fn meta() -> Meta {
        Meta {
            target: Target {
                kind: "c".into(),
                value: "import a".into(),
                label: "import a".into(),
                args: vec![],
            },
            python: PythonInfo {
                executable: "/py".into(),
                version: "3.12.1".into(),
                cache_tag: "cpython-312".into(),
                implementation: "cpython".into(),
            },
            ppyc: PpycInfo {
                version: "0.1.0".into(),
                mode: "marshal".into(),
                hook_enabled: true,
            },
            runs: 3,
            warmup: 1,
            processes: 1,
            machine: Machine {
                hostname: "h".into(),
                os: "linux".into(),
                cpus: 2,
                cpu: "cpu".into(),
                memory_bytes: 1,
            },
            date: "2026-01-01T00:00:00Z".into(),
            command: vec![],
        }
    }

    fn run(text: &str, records: &[(&str, bool, Option<&str>, u64)]) -> ProfiledRun {
        ProfiledRun {
            rows: parse(text).rows,
            records: records
                .iter()
                .map(|&(m, served, reason, ns)| {
                    (
                        m.to_owned(),
                        Record {
                            module: m.to_owned(),
                            served,
                            reason: reason.map(str::to_owned),
                            find_ns: ns,
                            unmarshal_ns: ns,
                            ..Record::default()
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn aggregates_medians_outcomes_and_ratios() {
        let stock = |a: u64| {
            run(
                &format!(
                    "import time:       100 |        100 |   sys2\nimport time: {a:9} | {:10} | a\n",
                    a + 100
                ),
                &[],
            )
        };
        let ppyc = |a: u64| {
            run(
                &format!(
                    "import time:       100 |        100 |   sys2\nimport time:        50 |         50 |   b\n\
                     import time: {a:9} | {:10} | a\n",
                    a + 150
                ),
                &[("a", true, None, 10_000), ("b", false, Some("stale"), 1000)],
            )
        };
        let known = Known {
            builtin: ["sys2".to_owned()].into(),
            ..Known::default()
        };
        let r = build(Inputs {
            meta: meta(),
            wall_stock_ms: &[10.0, 12.0, 11.0],
            wall_ppyc_ms: &[5.0, 6.0, 5.5],
            stock_runs: &[stock(900), stock(1000), stock(1100)],
            ppyc_runs: &[ppyc(500), ppyc(400), ppyc(600)],
            known: &known,
            memory: None,
        });
        assert_eq!(r.wall.ratio.median, 0.5);
        assert_eq!(r.wall.stock.median, 11.0);
        let a = r.modules.iter().find(|m| m.name == "a").unwrap();
        assert_eq!(a.stock.as_ref().unwrap().self_us, 1000.0);
        let p = a.ppyc.as_ref().unwrap();
        assert_eq!(p.self_us, 500.0);
        assert!(p.served);
        let phases = p.phases.as_ref().unwrap();
        assert_eq!(phases.find_us, 10.0);
        assert_eq!(phases.exec_us, 480.0);
        let b = r.modules.iter().find(|m| m.name == "b").unwrap();
        assert!(b.stock.is_none());
        assert_eq!(b.ppyc.as_ref().unwrap().reason.as_deref(), Some("stale"));
        let s = r.modules.iter().find(|m| m.name == "sys2").unwrap();
        assert_eq!(
            s.ppyc.as_ref().unwrap().reason.as_deref(),
            Some("builtin module")
        );
        assert_eq!(r.sides.ppyc.tree.len(), 1);
        assert_eq!(r.sides.ppyc.tree[0].children.len(), 2);
        assert_eq!(r.sides.ppyc.tree[0].served, Some(true));
        assert_eq!(r.sides.stock.tree[0].served, None);
        assert_eq!(r.modules[0].name, "a");
        assert_eq!(r.phases.find_us, 11.0);
        assert!(r.wall.warnings.is_empty(), "{:?}", r.wall.warnings);
    }

    #[test]
    fn warns_on_spread() {
        let r = build(Inputs {
            meta: meta(),
            wall_stock_ms: &[10.0, 20.0, 10.0, 30.0],
            wall_ppyc_ms: &[10.0, 10.0, 10.0, 10.0],
            stock_runs: &[],
            ppyc_runs: &[],
            known: &Known::default(),
            memory: None,
        });
        assert_eq!(r.wall.warnings.len(), 2, "{:?}", r.wall.warnings);
        assert!(r.sides.stock.tree.is_empty());
    }
}
