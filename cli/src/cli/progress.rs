//! The terminal side of progress: an indicatif bar on stderr when it is a terminal.

use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ppyc_compiler::report::{Problem, Reporter};

/// A bar on stderr (drawn only on a terminal, and not when `PPYC_NO_PROGRESS` is set or
/// `hidden`), with `template`.
pub(crate) fn bar(hidden: bool, template: &str) -> ProgressBar {
    let target = if hidden || std::env::var_os("PPYC_NO_PROGRESS").is_some() {
        ProgressDrawTarget::hidden()
    } else {
        // indicatif draws only when stderr is a terminal.
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Shows a progress bar (only on a terminal, and not when `PPYC_NO_PROGRESS` is set) and
/// prints problems above it.
pub(crate) struct BarReporter {
    bar: ProgressBar,
    quiet: bool,
}

impl BarReporter {
    pub(crate) fn new(quiet: bool) -> Self {
        let bar = bar(quiet, "{prefix} [{bar:30}] {pos}/{len} {elapsed}");
        Self { bar, quiet }
    }
}

impl Reporter for BarReporter {
    fn on_start(&self, dir: &Path, modules: usize) {
        self.bar.reset();
        self.bar.set_length(modules as u64);
        self.bar.set_position(0);
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.bar.set_prefix(name);
    }

    fn on_progress(&self, n: usize) {
        self.bar.inc(n as u64);
    }

    fn on_problem(&self, problem: &Problem) {
        // Problems are always shown, even with --quiet: they are the errors.
        let _ = self.quiet;
        self.bar.suspend(|| eprintln!("{problem}"));
    }

    fn on_finish(&self) {
        self.bar.finish_and_clear();
    }
}
