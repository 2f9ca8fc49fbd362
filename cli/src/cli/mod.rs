//! The `ppyc` command line. The only part of ppyc that prints.
//!
//! Exit status: 0 success, 1 failure (including, with `--strict`, modules left out), 2
//! usage error.

mod args;
mod clean;
mod commands;
mod hook;
mod importtime;
mod progress;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use clap::Parser;
use pyo3::prelude::*;

use args::{Cli, Command};

/// Exit statuses.
pub(crate) const SUCCESS: i32 = 0;
pub(crate) const FAILURE: i32 = 1;
pub(crate) const USAGE: i32 = 2;

/// Writes a line to stdout; a closed pipe (`ppyc inspect … | head`) is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use out;

pub(crate) fn main(py: Python<'_>, argv: Vec<String>) -> i32 {
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { USAGE } else { SUCCESS };
        }
    };
    let python = match &cli.command {
        Command::Compile(a) => a.python.clone(),
        Command::Verify(a) => a.python.clone(),
        Command::Inspect(_) => None,
        Command::Enable(a) => a.python.clone(),
        Command::Disable(a) => a.python.clone(),
        Command::Clean(a) => a.python.clone(),
        Command::Status(a) => a.python.clone(),
        // Runs the target interpreter itself: nothing to delegate.
        Command::Importtime(_) => None,
    };
    let result = match python {
        Some(python) => py.detach(|| delegate(&python, &argv)),
        None => match cli.command {
            Command::Compile(args) => commands::compile(py, &args),
            Command::Inspect(args) => commands::inspect(py, &args),
            Command::Verify(args) => commands::verify(py, &args),
            Command::Enable(args) => hook::enable(py, &args),
            Command::Disable(args) => hook::disable(py, args.clean),
            Command::Clean(args) => clean::clean(py, &args),
            Command::Status(args) => hook::status(py, &args),
            Command::Importtime(args) => importtime::importtime(py, &args, &argv),
        },
    };
    let _ = std::io::stdout().flush();
    match result {
        Ok(code) => code,
        Err(err) => {
            let mut chain = err.chain();
            let mut last = String::new();
            if let Some(first) = chain.next() {
                last = first.to_string();
                eprintln!("error: {last}");
            }
            for cause in chain {
                // Errors that print their cause in their own message (`cannot read `x`:
                // No such file …`) are not followed by it again.
                let cause = cause.to_string();
                if !last.ends_with(&cause) {
                    eprintln!("  caused by: {cause}");
                }
                last = cause;
            }
            FAILURE
        }
    }
}

/// Runs the same command with another interpreter's ppyc (`--python PATH`), passing the
/// arguments through without `--python`.
fn delegate(python: &Path, argv: &[String]) -> anyhow::Result<i32> {
    let probe = Process::new(python)
        .args(["-c", "import ppyc._native; print('ppyc-probe-ok')"])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run `{}`: {e}", python.display()))?;
    if probe.status.success() && !String::from_utf8_lossy(&probe.stdout).contains("ppyc-probe-ok") {
        anyhow::bail!(
            "`{}` could not be queried: it exited with status 0 but printed nothing for `-c \
             \"import ppyc._native; print(…)\"` (is it a Python interpreter?)",
            python.display()
        );
    }
    if !probe.status.success() {
        let stderr = String::from_utf8_lossy(&probe.stderr);
        let last = stderr.lines().last().unwrap_or("").trim();
        anyhow::bail!(
            "ppyc is not installed for `{py}` ({last}); install it there first: `{py} -m pip install ppyc`",
            py = python.display()
        );
    }
    let mut rest = Vec::new();
    let mut skip = false;
    for arg in argv.iter().skip(1) {
        if skip {
            skip = false;
        } else if arg == "--python" {
            skip = true;
        } else if !arg.starts_with("--python=") {
            rest.push(arg.clone());
        }
    }
    let status = Process::new(python)
        .args(["-m", "ppyc"])
        .args(&rest)
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run `{}`: {e}", python.display()))?;
    Ok(status.code().unwrap_or(FAILURE))
}

pub(crate) use ppyc_importtime::render::bytes as human_bytes;

/// The pack of `dir` for this interpreter and optimisation level: the one that serves it
/// (`spec/FORMAT.md` §2 "Precedence"), else where it would be in the tree.
pub(crate) fn pack_of_dir(
    dir: &Path,
    interp: &ppyc_compiler::interpreter::Interpreter,
    optimize: u8,
) -> PathBuf {
    ppyc_format::PackCandidates::of(
        dir,
        &interp.cache_tag,
        optimize,
        interp.pycache_prefix.as_deref(),
    )
    .preferred()
}
