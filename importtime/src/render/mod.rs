//! A report as text (the terminal table), HTML (one self-contained page) and a Chrome
//! trace (also read by speedscope and Perfetto).

mod html;
mod table;
mod trace;

pub use html::html;
pub use table::table;
pub use trace::trace;

/// `12.34 ms` for microseconds.
pub(crate) fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

/// `12.3 MiB` (also the `ppyc` command line's byte format).
pub fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[unit])
    }
}
