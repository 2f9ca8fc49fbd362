//! `ppyc importtime`: where start-up goes, stock CPython versus ppyc (`spec/IMPORTTIME.md`).
//!
//! - [`xtime`] parses `-X importtime` (3.7 to 3.14, with 3.14's `cached` rows) into an
//!   import tree; [`profile`] reads the runtime's `PPYC_PROFILE` lines.
//! - [`run`] runs the target in fresh processes, stock and ppyc alternating, and
//!   [`memory`] reads what they use; [`report`] aggregates it all into one [`Report`].
//! - [`render`] turns a report into the terminal table, the HTML page and a Chrome trace.
//!
//! Pure Rust and processes: no CPython is linked, so everything here is unit-tested with
//! `cargo test`.

pub mod machine;
pub mod memory;
pub mod profile;
pub mod render;
pub mod report;
pub mod run;
pub mod stats;
pub mod xtime;

use std::path::PathBuf;

pub use report::Report;
pub use run::{Config, Reporter, Silent, measure};

/// What can go wrong, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run `{python}`: {message}", python = python.display())]
    Spawn { python: PathBuf, message: String },
    #[error(
        "ppyc is not installed for `{py}` ({message}); install it there first: `{py} -m pip install ppyc`",
        py = python.display()
    )]
    NotInstalled { python: PathBuf, message: String },
    #[error(
        "the ppyc hook is not enabled for `{py}`: run `ppyc enable --python {py}` first (and `ppyc disable` to go back)",
        py = python.display()
    )]
    NotEnabled { python: PathBuf },
    #[error(
        "the ppyc hook did not run in the target process of `{py}` (no PPYC_PROFILE was written): is `ppyc.pth` processed (not `-S`/`-I`), and PPYC_DISABLE unset in the target?",
        py = python.display()
    )]
    HookInactive { python: PathBuf },
    #[error(
        "ppyc served none of the modules `{target}` imports: no pack covers them. Build packs first: `ppyc compile --python {py}` (site-packages) and `ppyc compile --stdlib --python {py}`; `ppyc status --python {py}` shows what is there",
        py = python.display()
    )]
    NothingServed { target: String, python: PathBuf },
    #[error("the target failed on the {side} side ({status}); its stderr ends with:\n{stderr}")]
    TargetFailed {
        side: &'static str,
        status: String,
        stderr: String,
    },
    #[error("malformed PPYC_PROFILE line {line}: {message}")]
    Profile { line: usize, message: String },
    #[error("cannot read `{path}`", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
