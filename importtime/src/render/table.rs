//! The terminal report: wall times and ratio, totals, the top modules by self time with
//! both sides and ppyc's phase split, what ppyc did not serve and why, memory.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{bytes, ms};
use crate::Report;
use crate::report::{Mode, Phase};
use crate::stats::Summary;

/// `image mode`, `marshal mode`, `mixed mode`, or that nothing was served.
fn mode_label(mode: Option<Mode>) -> String {
    mode.map_or_else(
        || "no module served".to_owned(),
        |m| format!("{} mode", m.name()),
    )
}

/// The width of a phase's column in the module table.
fn phase_width(phase: Phase) -> usize {
    match phase {
        Phase::Unmarshal => 9,
        Phase::Relocate | Phase::Exec => 8,
        _ => 6,
    }
}

/// The table, with the `top` modules by self time.
pub fn table(report: &Report, top: usize) -> String {
    let mut o = String::new();
    let m = &report.meta;
    let _ = writeln!(o, "ppyc importtime: {}", m.target.label);
    let _ = writeln!(
        o,
        "{} {} ({}), ppyc {} ({}); {} runs per side after {} warm-up, alternating; {} on {} CPUs",
        m.python.implementation,
        m.python.version,
        m.python.executable,
        m.ppyc.version,
        mode_label(m.ppyc.mode),
        m.runs,
        m.warmup,
        m.machine.hostname,
        m.machine.cpus,
    );
    let _ = writeln!(o);

    let w = &report.wall;
    let _ = writeln!(
        o,
        "wall time        {:>10} {:>10} {:>10}",
        "min", "median", "max"
    );
    let line = |o: &mut String, name: &str, s: &Summary| {
        let _ = writeln!(
            o,
            "  {name:<14} {:>7.1} ms {:>7.1} ms {:>7.1} ms",
            s.min, s.median, s.max
        );
    };
    line(&mut o, "stock", &w.stock);
    line(&mut o, "ppyc", &w.ppyc);
    let verdict = verdict(w.ratio.median);
    let _ = writeln!(
        o,
        "  ratio ppyc/stock, pair by pair: median {:.3} (min {:.3}, max {:.3}): {verdict}",
        w.ratio.median, w.ratio.min, w.ratio.max
    );
    for warning in &w.warnings {
        let _ = writeln!(o, "  warning: {warning}");
    }
    let _ = writeln!(o);

    let (stock, ppyc) = (&report.sides.stock, &report.sides.ppyc);
    let served = report
        .modules
        .iter()
        .filter(|r| r.ppyc.as_ref().is_some_and(|p| p.served))
        .count();
    let _ = writeln!(
        o,
        "imports (-X importtime, median per module over {} runs)   {:>10} {:>10}",
        m.runs, "stock", "ppyc"
    );
    let _ = writeln!(
        o,
        "  total self time {:>42} {:>10}",
        ms(stock.total_self_us),
        ms(ppyc.total_self_us)
    );
    let _ = writeln!(
        o,
        "  modules imported {:>41} {:>10}",
        stock.modules, ppyc.modules
    );
    let _ = writeln!(o, "  served from packs {:>51}", served);
    // The phases of the mode the target used: relocate and bind in image mode, unmarshal
    // in marshal mode, all three when mixed.
    let phases = Phase::shown(m.ppyc.mode);
    let split = phases
        .iter()
        .map(|&ph| {
            let name = if ph == Phase::Exec {
                "exec and rest"
            } else {
                ph.name()
            };
            format!("{name} {}", ms(report.phases.get(ph)))
        })
        .collect::<Vec<_>>()
        .join(" · ");
    let _ = writeln!(o, "  ppyc phases ({}): {split}", mode_label(m.ppyc.mode));
    let _ = writeln!(o);

    let shown = report.modules.len().min(top);
    let _ = writeln!(
        o,
        "top {shown} modules by self time (µs; phases of the ppyc side)"
    );
    let width = report
        .modules
        .iter()
        .take(top)
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(6)
        .clamp(6, 40);
    let mut head = format!(
        "  {:<width$} {:>8} {:>8} {:>6}",
        "module", "stock", "ppyc", "ratio"
    );
    for &ph in &phases {
        let _ = write!(head, " {:>w$}", ph.name(), w = phase_width(ph));
    }
    let _ = writeln!(o, "{head}  served");
    let num = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    for r in report.modules.iter().take(top) {
        let s = r.stock.as_ref().map(|s| s.self_us);
        let pp = r.ppyc.as_ref();
        let ratio = match (s, pp) {
            (Some(s), Some(p)) if s > 0.0 => format!("{:.2}", p.self_us / s),
            _ => "-".to_owned(),
        };
        let ph = pp.and_then(|p| p.phases.as_ref());
        let served = match pp {
            None => "(stock only)".to_owned(),
            // In a mixed report, each served module says how it was loaded.
            Some(p) if p.served => match (m.ppyc.mode, p.mode) {
                (Some(Mode::Mixed), Some(mode)) => format!("yes ({})", mode.name()),
                _ => "yes".to_owned(),
            },
            Some(p) => format!("no: {}", p.reason.as_deref().unwrap_or("unknown")),
        };
        let mut name: String = r.name.chars().take(width).collect();
        if r.name.chars().count() > width {
            name.pop();
            name.push('…');
        }
        let mut line = format!(
            "  {name:<width$} {:>8} {:>8} {:>6}",
            num(s),
            num(pp.map(|p| p.self_us)),
            ratio,
        );
        for &phase in &phases {
            let v = num(ph.map(|p| p.get(phase)));
            let _ = write!(line, " {v:>w$}", w = phase_width(phase));
        }
        let _ = writeln!(o, "{line}  {served}");
    }

    let mut reasons: BTreeMap<&str, (usize, f64, Vec<&str>)> = BTreeMap::new();
    for r in &report.modules {
        if let Some(p) = &r.ppyc {
            if !p.served {
                let e = reasons
                    .entry(p.reason.as_deref().unwrap_or("unknown"))
                    .or_default();
                e.0 += 1;
                e.1 += p.self_us;
                e.2.push(&r.name);
            }
        }
    }
    if !reasons.is_empty() {
        let total: usize = reasons.values().map(|e| e.0).sum();
        let _ = writeln!(o);
        let _ = writeln!(o, "not served by ppyc: {total} modules");
        let mut by_time: Vec<_> = reasons.into_iter().collect();
        by_time.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        for (reason, (n, self_us, names)) in by_time {
            let mut list = names.iter().take(6).copied().collect::<Vec<_>>().join(", ");
            if names.len() > 6 {
                let _ = write!(list, ", … ({} more)", names.len() - 6);
            }
            let _ = writeln!(o, "  {reason}: {n} ({}): {list}", ms(self_us));
        }
    }

    if let Some(mem) = &report.memory {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "memory (median process of {} running together; smaps_rollup)   {:>10} {:>10}",
            mem.processes, "stock", "ppyc"
        );
        let row = |o: &mut String, name: &str, s: u64, p: u64| {
            let _ = writeln!(o, "  {name:<60} {:>10} {:>10}", bytes(s), bytes(p));
        };
        row(&mut o, "RSS", mem.stock.rss_bytes, mem.ppyc.rss_bytes);
        row(&mut o, "Pss", mem.stock.pss_bytes, mem.ppyc.pss_bytes);
        row(
            &mut o,
            "private",
            mem.stock.private_bytes,
            mem.ppyc.private_bytes,
        );
        row(
            &mut o,
            "shared",
            mem.stock.shared_bytes,
            mem.ppyc.shared_bytes,
        );
        row(
            &mut o,
            &format!("Pss of all {} processes", mem.processes),
            mem.stock.pss_total_bytes,
            mem.ppyc.pss_total_bytes,
        );
        row(
            &mut o,
            "pack mappings: RSS",
            mem.stock.pack_rss_bytes,
            mem.ppyc.pack_rss_bytes,
        );
        row(
            &mut o,
            "pack mappings: Pss",
            mem.stock.pack_pss_bytes,
            mem.ppyc.pack_pss_bytes,
        );
        row(
            &mut o,
            "pack mappings: shared",
            mem.stock.pack_shared_bytes,
            mem.ppyc.pack_shared_bytes,
        );
    }
    o
}

/// What a median ratio ppyc/stock means, in words: a factor with the digits that show the
/// difference, or "the same" when it is less than 0.5 % either way (where two decimals
/// would print `1.00x`).
fn verdict(ratio: f64) -> String {
    if !(ratio.is_finite() && ratio > 0.0) {
        return "no ratio".to_owned();
    }
    let (factor, word) = if ratio < 1.0 {
        (1.0 / ratio, "faster")
    } else {
        (ratio, "slower")
    };
    if factor < 1.005 {
        "the same (within 0.5 %)".to_owned()
    } else {
        format!("ppyc {factor:.2}x {word}")
    }
}
