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
    /// Import from packs in every run of this interpreter (writes `ppyc.pth` into
    /// site-packages).
    Enable(HookArgs),
    /// Back to the stock importer (removes `ppyc.pth`).
    Disable(HookArgs),
    /// Show the packs on `sys.path`, stale modules, whether the hook is active, and the mode.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HookArgs {
    /// Act on another interpreter (it must have ppyc installed).
    #[arg(long, value_name = "PATH")]
    pub(crate) python: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Report on another interpreter (it must have ppyc installed).
    #[arg(long, value_name = "PATH")]
    pub(crate) python: Option<PathBuf>,
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
    /// site-packages (purelib and platlib).
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
    /// Compiler processes (default: one per core).
    #[arg(long, short = 'j', value_name = "N")]
    pub(crate) jobs: Option<usize>,
    /// Time limit for compiling one file, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub(crate) timeout: f64,
    /// Rebuild from scratch, ignoring the previous pack.
    #[arg(long)]
    pub(crate) force: bool,
    /// Leave out files and directories whose path (relative to the packed directory)
    /// contains TEXT. Repeatable.
    #[arg(long, value_name = "TEXT")]
    pub(crate) exclude: Vec<String>,
    /// Do not write `.pyc` files for the sources ppyc compiles.
    #[arg(long)]
    pub(crate) no_write_pyc: bool,
    /// Print only errors.
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Also print the time of each phase.
    #[arg(long, short = 'v')]
    pub(crate) verbose: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A pack file, or a directory (its pack for this interpreter is shown).
    pub(crate) pack: PathBuf,
    /// Show this module in detail.
    pub(crate) module: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Pack files or packed directories. Default: the packs of this interpreter's
    /// site-packages.
    pub(crate) packs: Vec<PathBuf>,
    /// Verify with another interpreter (it must have ppyc installed).
    #[arg(long, value_name = "PATH")]
    pub(crate) python: Option<PathBuf>,
    /// Compiler processes (default: one per core).
    #[arg(long, short = 'j', value_name = "N")]
    pub(crate) jobs: Option<usize>,
    /// Time limit for compiling one file, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub(crate) timeout: f64,
}
