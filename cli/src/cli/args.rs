//! The command line, as clap types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// ppyc: perfect pyc. Packs the compiled code of whole directories (site-packages, the
/// standard library) so that CPython imports them faster.
#[derive(Debug, Parser)]
#[command(name = "ppyc", version, disable_help_subcommand = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Build packs: one per directory, by default every site-packages of this interpreter.
    Compile(CompileArgs),
    /// Show a pack's header, sections and modules, or one module in detail.
    Inspect(InspectArgs),
    /// Check packs: integrity, and that every module holds what its source compiles to.
    Verify(VerifyArgs),
    /// Import from packs in every run of this interpreter (writes `00-ppyc.pth` into
    /// site-packages).
    Enable(EnableArgs),
    /// Back to the stock importer (removes `00-ppyc.pth`); `--clean` also removes every pack
    /// (run it before `pip uninstall ppyc`).
    Disable(DisableArgs),
    /// Remove packs: every pack of the directories (all `-O` levels, in the tree and in the
    /// user cache), the `.pyc` files `compile --write-pyc` wrote, leftover temporary files.
    Clean(CleanArgs),
    /// Show the packs on `sys.path`, stale modules, whether the hook is active, and the mode.
    Status(StatusArgs),
    /// Measure import time (and memory), stock versus ppyc, in fresh processes: wall time,
    /// every module's self time and ppyc's phases, what was not served and why.
    #[command(
        after_help = "Examples:\n  ppyc importtime -c \"import requests\"\n  ppyc importtime -m mytool --html report.html -- --version\n  ppyc importtime rich.console --runs 30 --json\n  ppyc importtime -c \"import jinja2\" --memory --processes 4"
    )]
    Importtime(ImporttimeArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["module", "code", "run_module"])))]
pub(crate) struct ImporttimeArgs {
    /// A module to import: the same as `-c "import MODULE"`.
    pub(crate) module: Option<String>,
    /// Program passed in as a string (as `python -c`).
    #[arg(short = 'c', value_name = "CODE")]
    pub(crate) code: Option<String>,
    /// Run a library module as a script (as `python -m`).
    #[arg(short = 'm', value_name = "MODULE")]
    pub(crate) run_module: Option<String>,
    /// The interpreter to measure (ppyc must be installed and enabled there). Default: the
    /// one running ppyc.
    #[arg(long, value_name = "PATH")]
    pub(crate) python: Option<PathBuf>,
    /// Runs per side, for wall time and again with the profile.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) runs: u32,
    /// Uncounted runs per side first.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(crate) warmup: u32,
    /// Modules in the table.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub(crate) top: usize,
    /// Print the whole report as JSON (spec/IMPORTTIME.md) instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Write a self-contained HTML report (import trees, phases, search and zoom).
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
    /// Write the import trees as a Chrome trace (chrome://tracing, Perfetto, speedscope).
    #[arg(long, value_name = "FILE")]
    pub(crate) trace: Option<PathBuf>,
    /// Also measure memory: RSS, Pss, private and shared, and the pack mappings (Linux).
    #[arg(long)]
    pub(crate) memory: bool,
    /// Processes running together per side in the memory measurement (implies --memory).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) processes: Option<u32>,
    /// Time limit for one run of the target, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120.0)]
    pub(crate) timeout: f64,
    /// Arguments for the target (its `sys.argv[1:]`), after `--`.
    #[arg(last = true, value_name = "ARGS")]
    pub(crate) args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct EnableArgs {
    /// Act on another interpreter (it must have ppyc installed).
    #[arg(long, value_name = "PATH")]
    pub(crate) python: Option<PathBuf>,
    /// Never rebuild a stale pack in the background (by default, when a module changed or
    /// is new since its pack was built, the hook starts a low-priority `ppyc compile` of
    /// that directory, at most once a minute per pack; `PPYC_AUTO_REFRESH=0` turns it off
    /// for one run).
    #[arg(long)]
    pub(crate) no_auto_refresh: bool,
}

#[derive(Debug, Args)]
pub(crate) struct HookArgs {
    /// Act on another interpreter (it must have ppyc installed).
    #[arg(long, value_name = "PATH")]
    pub(crate) python: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct DisableArgs {
    /// Act on another interpreter (it must have ppyc installed).
    #[arg(long, value_name = "PATH")]
    pub(crate) python: Option<PathBuf>,
    /// Also remove the packs (and the `.pyc` files ppyc wrote) of every directory on the
    /// interpreter's `sys.path`, standard library included, as `ppyc clean` does.
    #[arg(long)]
    pub(crate) clean: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CleanArgs {
    /// Directories whose packs to remove. Default: this interpreter's site-packages, the
    /// directories `ppyc compile` packs by default.
    pub(crate) paths: Vec<PathBuf>,
    /// Also the standard library's packs.
    #[arg(long)]
    pub(crate) stdlib: bool,
    /// Also the user-cache packs (any interpreter, any -O level) of directories that no
    /// longer exist; alone, only those.
    #[arg(long)]
    pub(crate) orphans: bool,
    /// Clean for another interpreter (it must have ppyc installed).
    #[arg(long, value_name = "PATH")]
    pub(crate) python: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Report on another interpreter (it must have ppyc installed).
    #[arg(long, value_name = "PATH")]
    pub(crate) python: Option<PathBuf>,
    /// Report on the packs that runs at this optimisation level use (`-O`/`-OO`).
    /// Default: this run's `sys.flags.optimize`.
    #[arg(long, short = 'O', value_parser = clap::value_parser!(u8).range(0..=2))]
    pub(crate) optimize: Option<u8>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// List every stale or missing module, not only the first few.
    #[arg(long, short = 'v')]
    pub(crate) verbose: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CompileArgs {
    /// Directories to pack (each a `sys.path` entry). Default: this interpreter's
    /// site-packages (purelib and platlib) and the directories their `.pth` files put on
    /// `sys.path` (path-based editable installs, `.egg` directories).
    pub(crate) paths: Vec<PathBuf>,
    /// Also pack the standard library.
    #[arg(long)]
    pub(crate) stdlib: bool,
    /// Build for another interpreter (it must have ppyc installed).
    #[arg(long, value_name = "PATH")]
    pub(crate) python: Option<PathBuf>,
    /// Optimisation level of the packed code, as `-O`/`-OO` runs will use it. Default: this
    /// run's `sys.flags.optimize`.
    #[arg(long, short = 'O', value_parser = clap::value_parser!(u8).range(0..=2))]
    pub(crate) optimize: Option<u8>,
    /// Exit with status 1 if any module had to be left out.
    #[arg(long)]
    pub(crate) strict: bool,
    /// Compiler processes, at least 1 (default: one per core).
    #[arg(long, short = 'j', value_name = "N", value_parser = parse_jobs)]
    pub(crate) jobs: Option<usize>,
    /// Time limit for compiling one file, in seconds; `0` or `none`: no limit.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_time_limit)]
    pub(crate) timeout: TimeLimit,
    /// Rebuild from scratch, ignoring the previous pack.
    #[arg(long)]
    pub(crate) force: bool,
    /// Leave out files and directories whose path (relative to the packed directory)
    /// contains TEXT. Repeatable.
    #[arg(long, value_name = "TEXT")]
    pub(crate) exclude: Vec<String>,
    /// Pack the named directories even if one is a package (has an `__init__`) or lies in
    /// a `sys.path` directory of this interpreter: it is itself on `sys.path` all the same.
    #[arg(long)]
    pub(crate) sys_path_entry: bool,
    /// Also write a `.pyc` file for each source ppyc compiles (as `compileall` does), and
    /// record it beside the pack so that `ppyc clean` removes it. Default: no `.pyc` files.
    #[arg(long)]
    pub(crate) write_pyc: bool,
    /// `image`: store every module's code as ready-made objects (CPython 3.11-3.13 release
    /// builds on x86-64 Linux); `marshal`: marshalled code only; `auto`: image where the
    /// interpreter supports it.
    #[arg(long, value_enum, default_value_t = PackMode::Auto)]
    pub(crate) mode: PackMode,
    /// Print only errors.
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Also print the time of each phase.
    #[arg(long, short = 'v')]
    pub(crate) verbose: bool,
}

/// What `ppyc compile` stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PackMode {
    /// Images where the interpreter supports them, else marshal.
    Auto,
    /// Images (an error where the interpreter does not support them).
    Image,
    /// Marshalled code only.
    Marshal,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A pack file, or a directory (its pack for this interpreter is shown).
    pub(crate) pack: PathBuf,
    /// Show this module in detail.
    pub(crate) module: Option<String>,
    /// For a directory: show its pack for this optimisation level. Default: this run's
    /// `sys.flags.optimize`.
    #[arg(long, short = 'O', value_parser = clap::value_parser!(u8).range(0..=2))]
    pub(crate) optimize: Option<u8>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Pack files or packed directories. Default: the packs of this interpreter's
    /// site-packages.
    pub(crate) packs: Vec<PathBuf>,
    /// Verify with another interpreter (it must have ppyc installed).
    #[arg(long, value_name = "PATH")]
    pub(crate) python: Option<PathBuf>,
    /// For directories (and the default): verify their packs for this optimisation level.
    /// Default: this run's `sys.flags.optimize`.
    #[arg(long, short = 'O', value_parser = clap::value_parser!(u8).range(0..=2))]
    pub(crate) optimize: Option<u8>,
    /// Compiler processes, at least 1 (default: one per core).
    #[arg(long, short = 'j', value_name = "N", value_parser = parse_jobs)]
    pub(crate) jobs: Option<usize>,
    /// Time limit for compiling one file, in seconds; `0` or `none`: no limit.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_time_limit)]
    pub(crate) timeout: TimeLimit,
    /// Also load every module's image in a fresh process and compare it with
    /// `marshal.loads` of the same payload (every attribute, constants, positions, `dis`).
    #[arg(long)]
    pub(crate) deep: bool,
}

/// `--timeout`: a time limit, or none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TimeLimit(pub(crate) Option<std::time::Duration>);

/// `--timeout SECONDS`: a positive number of seconds, or `0`/`none` for no limit.
fn parse_time_limit(text: &str) -> Result<TimeLimit, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(TimeLimit(None));
    }
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds (or `none`)"))?;
    if seconds == 0.0 {
        return Ok(TimeLimit(None));
    }
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!(
            "`{text}` is not a positive number of seconds (`0` or `none`: no limit)"
        ));
    }
    std::time::Duration::try_from_secs_f64(seconds)
        .map(|d| TimeLimit(Some(d)))
        .map_err(|e| format!("`{text}`: {e}"))
}

/// `-j N`: at least one process.
fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("at least 1 process is needed (leave -j out for one per core)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a number of processes")),
    }
}
