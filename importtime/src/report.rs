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
    /// How the target's served modules were loaded, over every profiled run; `None` when
    /// nothing was served. [`build`] sets it from the runs (what is given is replaced).
    pub mode: Option<Mode>,
    pub hook_enabled: bool,
}

/// How ppyc made code objects: from a module's image, by `marshal.loads` of its payload,
/// or both (some modules one way, some the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Image,
    Marshal,
    Mixed,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Image => "image",
            Mode::Marshal => "marshal",
            Mode::Mixed => "mixed",
        }
    }

    /// The mode of a served record: its `mode`, `marshal` when it has none (a runtime
    /// from before image mode, which had only that); `None` for a value this version
    /// does not know.
    fn of_record(record: &Record) -> Option<Mode> {
        match record.mode.as_deref() {
            Some("image") => Some(Mode::Image),
            Some("marshal") | None => Some(Mode::Marshal),
            Some(_) => None,
        }
    }

    /// One mode for many loads: theirs when they agree, else `mixed`; `None` for none.
    fn combine(modes: impl IntoIterator<Item = Mode>) -> Option<Mode> {
        modes
            .into_iter()
            .reduce(|a, b| if a == b { a } else { Mode::Mixed })
    }

    /// The phases that turn the bytes read into a code object, in this mode.
    pub fn load_phases(self) -> &'static [Phase] {
        match self {
            Mode::Image => &[Phase::Relocate, Phase::Bind],
            Mode::Marshal => &[Phase::Unmarshal],
            Mode::Mixed => &[Phase::Unmarshal, Phase::Relocate, Phase::Bind],
        }
    }
}

/// The mode of the served modules of the ppyc side's runs (`meta.ppyc.mode`).
pub fn served_mode(runs: &[ProfiledRun]) -> Option<Mode> {
    Mode::combine(
        runs.iter()
            .flat_map(|r| r.records.values())
            .filter(|r| r.served)
            .filter_map(Mode::of_record),
    )
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

/// Where a module's import went on the ppyc side (microseconds). A phase a module did not
/// go through is 0: `unmarshal` in image mode, `relocate` and `bind` in marshal mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Phases {
    pub find_us: f64,
    pub check_us: f64,
    /// Reading the module's bytes from the mapped pack (its image, or its payload in marshal
    /// mode) and checking their digest.
    pub read_us: f64,
    /// Marshal mode: `marshal.loads`.
    pub unmarshal_us: f64,
    /// Image mode: validating and relocating the image.
    pub relocate_us: f64,
    /// Image mode: binding the image's identifiers to interned strings.
    pub bind_us: f64,
    /// Self time minus every phase above.
    pub exec_us: f64,
}

/// One phase of [`Phases`], in the order a load goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Find,
    Check,
    Read,
    Unmarshal,
    Relocate,
    Bind,
    Exec,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Find => "find",
            Phase::Check => "check",
            Phase::Read => "read",
            Phase::Unmarshal => "unmarshal",
            Phase::Relocate => "relocate",
            Phase::Bind => "bind",
            Phase::Exec => "exec",
        }
    }

    /// The phases a report shows for a ppyc side of `mode`: find, check and read, the ones
    /// that make code objects in that mode (none when nothing was served), exec.
    pub fn shown(mode: Option<Mode>) -> Vec<Phase> {
        let mut out = vec![Phase::Find, Phase::Check, Phase::Read];
        out.extend_from_slice(mode.map_or(&[], Mode::load_phases));
        out.push(Phase::Exec);
        out
    }
}

impl Phases {
    pub fn get(&self, phase: Phase) -> f64 {
        match phase {
            Phase::Find => self.find_us,
            Phase::Check => self.check_us,
            Phase::Read => self.read_us,
            Phase::Unmarshal => self.unmarshal_us,
            Phase::Relocate => self.relocate_us,
            Phase::Bind => self.bind_us,
            Phase::Exec => self.exec_us,
        }
    }

    /// Everything before the module's body runs: find, check, read, unmarshal, relocate
    /// and bind.
    pub fn loading_us(&self) -> f64 {
        self.find_us
            + self.check_us
            + self.read_us
            + self.unmarshal_us
            + self.relocate_us
            + self.bind_us
    }

    fn add(&mut self, other: &Phases) {
        self.find_us += other.find_us;
        self.check_us += other.check_us;
        self.read_us += other.read_us;
        self.unmarshal_us += other.unmarshal_us;
        self.relocate_us += other.relocate_us;
        self.bind_us += other.bind_us;
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
    /// ppyc side, served modules: how the code was loaded.
    pub mode: Option<Mode>,
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
    /// Served modules: how the code was loaded (`mixed` if the runs differ).
    pub mode: Option<Mode>,
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

/// The ppyc side's view of one module over the runs: served if it was in most runs (and
/// then how its code was loaded); the most frequent reason otherwise; median phases.
fn ppyc_outcome(
    name: &str,
    self_us: f64,
    runs: &[ProfiledRun],
    known: &Known,
) -> (bool, Option<String>, Option<Mode>, Option<Phases>) {
    let records: Vec<&Record> = runs.iter().filter_map(|r| r.records.get(name)).collect();
    let builtin_or_frozen = known.builtin.contains(name) || known.frozen.contains(name);
    if records.is_empty() || builtin_or_frozen {
        return (
            false,
            Some(unrecorded_reason(name, known).to_owned()),
            None,
            None,
        );
    }
    let served = records.iter().filter(|r| r.served).count() * 2 > runs.len().max(1);
    let mode = if served {
        Mode::combine(
            records
                .iter()
                .filter(|r| r.served)
                .filter_map(|r| Mode::of_record(r)),
        )
    } else {
        None
    };
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
        relocate_us: us(|r| r.relocate_ns),
        bind_us: us(|r| r.bind_ns),
        exec_us: 0.0,
    };
    phases.exec_us = (self_us - phases.loading_us()).max(0.0);
    (served, reason, mode, Some(phases))
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
        mut meta,
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

    meta.ppyc.mode = served_mode(ppyc_runs);
    let stock_medians = medians(stock_runs);
    let ppyc_medians = medians(ppyc_runs);
    let mut phase_totals = Phases::default();
    let mut ppyc_rows: BTreeMap<String, PpycTimes> = BTreeMap::new();
    for (name, (self_us, cum_us)) in &ppyc_medians {
        let (served, reason, mode, phases) = ppyc_outcome(name, *self_us, ppyc_runs, known);
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
                mode,
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
        mode: info.and_then(|i| i.mode),
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
                // What `build` must replace by what the runs show.
                mode: Some(Mode::Mixed),
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
        // Records without a mode come from a runtime that only had marshal mode.
        assert_eq!(r.meta.ppyc.mode, Some(Mode::Marshal));
        assert_eq!(p.mode, Some(Mode::Marshal));
        assert_eq!(r.sides.ppyc.tree[0].mode, Some(Mode::Marshal));
        assert_eq!(b.ppyc.as_ref().unwrap().mode, None);
        assert_eq!(r.sides.stock.tree[0].mode, None);
    }

    /// A served record as the runtime writes it in `mode`, with phases in microseconds
    /// (find, check, read, the load phase(s), exec).
    fn served(module: &str, mode: &str, us: [u64; 4]) -> Record {
        let [find, check, read, load] = us.map(|u| u * 1000);
        let image = mode == "image";
        Record {
            module: module.to_owned(),
            served: true,
            find_ns: find,
            check_ns: check,
            read_ns: read,
            unmarshal_ns: if image { 0 } else { load },
            relocate_ns: if image { load } else { 0 },
            bind_ns: if image { load / 2 } else { 0 },
            mode: Some(mode.to_owned()),
            exec_ns: 999_000_000,
            ..Record::default()
        }
    }

    fn runs_of(text: &str, records: Vec<Vec<Record>>) -> Vec<ProfiledRun> {
        records
            .into_iter()
            .map(|rs| ProfiledRun {
                rows: parse(text).rows,
                records: rs.into_iter().map(|r| (r.module.clone(), r)).collect(),
            })
            .collect()
    }

    fn build_ppyc(runs: &[ProfiledRun]) -> Report {
        build(Inputs {
            meta: meta(),
            wall_stock_ms: &[1.0],
            wall_ppyc_ms: &[1.0],
            stock_runs: &[],
            ppyc_runs: runs,
            known: &Known::default(),
            memory: None,
        })
    }

    #[test]
    fn image_phases_medians_and_rest() {
        let text = "import time:       300 |        300 |   a.sub\nimport time:       500 |        800 | a\n";
        let runs = runs_of(
            text,
            vec![
                vec![
                    served("a", "image", [10, 2, 4, 40]),
                    served("a.sub", "image", [1, 1, 1, 8]),
                ],
                vec![
                    served("a", "image", [30, 4, 6, 60]),
                    served("a.sub", "image", [1, 1, 1, 8]),
                ],
                vec![
                    served("a", "image", [20, 3, 5, 50]),
                    served("a.sub", "image", [1, 1, 1, 8]),
                ],
            ],
        );
        let r = build_ppyc(&runs);
        assert_eq!(r.meta.ppyc.mode, Some(Mode::Image));
        let a = r.modules.iter().find(|m| m.name == "a").unwrap();
        let p = a.ppyc.as_ref().unwrap();
        assert_eq!(p.mode, Some(Mode::Image));
        let ph = p.phases.as_ref().unwrap();
        // Medians: find 20, check 3, read 5, relocate 50, bind 25; the rest of 500 µs.
        assert_eq!(
            (ph.find_us, ph.check_us, ph.read_us, ph.unmarshal_us),
            (20.0, 3.0, 5.0, 0.0)
        );
        assert_eq!((ph.relocate_us, ph.bind_us), (50.0, 25.0));
        assert_eq!(ph.loading_us(), 103.0);
        assert_eq!(ph.exec_us, 397.0);
        // Totals over modules: a.sub adds 1+1+1+8+4 and 300 - 15 of rest.
        assert_eq!(r.phases.relocate_us, 58.0);
        assert_eq!(r.phases.bind_us, 29.0);
        assert_eq!(r.phases.unmarshal_us, 0.0);
        assert_eq!(r.phases.exec_us, 397.0 + 285.0);
        let tree = &r.sides.ppyc.tree[0];
        assert_eq!(tree.mode, Some(Mode::Image));
        assert_eq!(tree.phases.as_ref().unwrap().bind_us, 25.0);
        // The JSON spells the mode and every phase.
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["meta"]["ppyc"]["mode"], "image");
        assert_eq!(json["modules"][0]["ppyc"]["mode"], "image");
        assert_eq!(json["phases"]["relocate_us"], 58.0);
        assert_eq!(json["sides"]["ppyc"]["tree"][0]["phases"]["bind_us"], 25.0);
    }

    #[test]
    fn loading_phases_never_exceed_self_time() {
        let text = "import time:        50 |         50 | a\n";
        let r = build_ppyc(&runs_of(
            text,
            vec![vec![served("a", "image", [10, 10, 10, 40])]],
        ));
        let ph = r.modules[0].ppyc.as_ref().unwrap().phases.clone().unwrap();
        assert_eq!(ph.loading_us(), 90.0);
        assert_eq!(ph.exec_us, 0.0);
    }

    #[test]
    fn mixed_and_no_mode() {
        let text =
            "import time:       100 |        100 |   b\nimport time:       100 |        200 | a\n";
        // `a` from its image in two runs, unmarshalled in the third: mixed. `b` always
        // unmarshalled (a module without an image, in an image pack).
        let runs = runs_of(
            text,
            vec![
                vec![
                    served("a", "image", [1, 1, 1, 1]),
                    served("b", "marshal", [1, 1, 1, 5]),
                ],
                vec![
                    served("a", "image", [1, 1, 1, 1]),
                    served("b", "marshal", [1, 1, 1, 5]),
                ],
                vec![
                    served("a", "marshal", [1, 1, 1, 1]),
                    served("b", "marshal", [1, 1, 1, 5]),
                ],
            ],
        );
        let r = build_ppyc(&runs);
        assert_eq!(r.meta.ppyc.mode, Some(Mode::Mixed));
        let mode = |name: &str| {
            let m = r.modules.iter().find(|m| m.name == name).unwrap();
            m.ppyc.as_ref().unwrap().mode
        };
        assert_eq!(mode("a"), Some(Mode::Mixed));
        assert_eq!(mode("b"), Some(Mode::Marshal));
        assert_eq!(r.phases.unmarshal_us, 5.0);
        assert_eq!(r.phases.relocate_us, 1.0);
        assert_eq!(served_mode(&runs[2..]), Some(Mode::Marshal));
        assert_eq!(served_mode(&runs[..1]), Some(Mode::Mixed));

        // Nothing served: no mode, and no load phase is shown.
        let stale = Record {
            module: "a".into(),
            reason: Some("stale".into()),
            ..Record::default()
        };
        let r = build_ppyc(&runs_of(text, vec![vec![stale]]));
        assert_eq!(r.meta.ppyc.mode, None);
        assert_eq!(
            serde_json::to_value(&r).unwrap()["meta"]["ppyc"]["mode"],
            serde_json::Value::Null
        );
        assert_eq!(r.modules[0].ppyc.as_ref().unwrap().mode, None);
        assert_eq!(
            Phase::shown(None),
            [Phase::Find, Phase::Check, Phase::Read, Phase::Exec]
        );
        let names = |m| {
            Phase::shown(Some(m))
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(Mode::Image),
            ["find", "check", "read", "relocate", "bind", "exec"]
        );
        assert_eq!(
            names(Mode::Marshal),
            ["find", "check", "read", "unmarshal", "exec"]
        );
        assert_eq!(
            names(Mode::Mixed),
            [
                "find",
                "check",
                "read",
                "unmarshal",
                "relocate",
                "bind",
                "exec"
            ]
        );
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
