//! Progress reporting: the library calls a [`Reporter`]; only the command line knows about
//! terminals and progress bars.

use std::fmt;
use std::path::{Path, PathBuf};

/// A module left out of a pack, or a source that could not be checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The source file.
    pub path: PathBuf,
    /// The line, for syntax errors.
    pub line: Option<u64>,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `path:line: message`, or `path: message` without a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// Receives progress events; implementations must be cheap (called once per module).
pub trait Reporter: Send + Sync {
    /// A directory is about to be processed, with `modules` modules found in it.
    fn on_start(&self, _dir: &Path, _modules: usize) {}
    /// `n` more modules are done (packed, reused or skipped).
    fn on_progress(&self, _n: usize) {}
    /// A module had to be left out, or a walk issue was found.
    fn on_problem(&self, _problem: &Problem) {}
    /// The directory is finished.
    fn on_finish(&self) {}
}

/// A reporter that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReporter;

impl Reporter for NoReporter {}
