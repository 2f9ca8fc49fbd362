//! Why a job or a worker failed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why one file could not be compiled. Never stops the run.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CompileFailure {
    /// `compile()` raised `SyntaxError` (or a subclass such as `IndentationError`).
    /// Displayed as `path:line: message`.
    Syntax {
        /// The source.
        path: PathBuf,
        /// The exception class name, e.g. `SyntaxError`, `IndentationError`.
        exception: String,
        /// `SyntaxError.lineno`.
        line: Option<u32>,
        /// `SyntaxError.offset`.
        offset: Option<u32>,
        /// `SyntaxError.msg`.
        message: String,
    },
    /// The source could not be read (`OSError`) or decoded (`UnicodeError`).
    Unreadable {
        /// The source.
        path: PathBuf,
        /// The exception class name, e.g. `PermissionError`, `IsADirectoryError`.
        exception: String,
        /// `str(exception)`.
        message: String,
    },
    /// `compile()` raised something else (e.g. `ValueError` for a NUL byte on 3.10, where
    /// later versions raise `SyntaxError`; `RecursionError`; `MemoryError`).
    Compile {
        /// The source.
        path: PathBuf,
        /// The exception class name.
        exception: String,
        /// `str(exception)`.
        message: String,
    },
    /// The worker took longer than [`Timeouts::per_file`]; it was killed and replaced.
    Timeout {
        /// The source.
        path: PathBuf,
        /// How long it had been working on the file.
        elapsed: Duration,
        /// The end of the worker's stderr.
        stderr: String,
    },
    /// The worker died (or broke the protocol) while compiling this file; it was replaced.
    WorkerCrashed {
        /// The source.
        path: PathBuf,
        /// What happened (exit status, protocol error).
        reason: String,
        /// The end of the worker's stderr.
        stderr: String,
    },
    /// The worker failed to handle the request (a bug in `worker.py`); the worker lives on.
    Internal {
        /// The source.
        path: PathBuf,
        /// The Python traceback.
        traceback: String,
    },
    /// No worker could be (re)started to compile this file.
    NoWorker {
        /// The source.
        path: PathBuf,
        /// Why the worker could not be started.
        #[source]
        error: Arc<WorkerError>,
    },
}

impl CompileFailure {
    /// The source file the failure is about.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::Syntax { path, .. }
            | Self::Unreadable { path, .. }
            | Self::Compile { path, .. }
            | Self::Timeout { path, .. }
            | Self::WorkerCrashed { path, .. }
            | Self::Internal { path, .. }
            | Self::NoWorker { path, .. } => path,
        }
    }
}

impl fmt::Display for CompileFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax {
                path,
                line,
                message,
                ..
            } => match line {
                Some(line) => write!(f, "{}:{line}: {message}", path.display()),
                None => write!(f, "{}: {message}", path.display()),
            },
            Self::Unreadable { path, message, .. } => {
                write!(f, "cannot read `{}`: {message}", path.display())
            }
            Self::Compile {
                path,
                exception,
                message,
            } => write!(
                f,
                "cannot compile `{}`: {exception}: {message}",
                path.display()
            ),
            Self::Timeout {
                path,
                elapsed,
                stderr,
            } => write!(
                f,
                "compiling `{}` timed out after {:.1} s{}",
                path.display(),
                elapsed.as_secs_f64(),
                StderrSuffix(stderr)
            ),
            Self::WorkerCrashed {
                path,
                reason,
                stderr,
            } => write!(
                f,
                "the worker compiling `{}` failed: {reason}{}",
                path.display(),
                StderrSuffix(stderr)
            ),
            Self::Internal { path, traceback } => write!(
                f,
                "the worker could not handle `{}`:\n{}",
                path.display(),
                traceback.trim_end()
            ),
            Self::NoWorker { path, error } => {
                write!(f, "no worker to compile `{}`: {error}", path.display())
            }
        }
    }
}

/// Appends `\n[stderr]\n...` to an error message when there is stderr (uv's
/// `ErrorWithStderr` layout).
pub(crate) struct StderrSuffix<'a>(pub(crate) &'a str);

impl fmt::Display for StderrSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stderr = self.0.trim_end();
        if stderr.is_empty() {
            Ok(())
        } else {
            write!(f, "\n[stderr]\n{stderr}")
        }
    }
}

/// Errors starting a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker script could not be written to a temporary file.
    #[error("cannot write the worker script to a temporary file")]
    Script(#[source] io::Error),
    /// The interpreter could not be started.
    #[error("cannot start `{}`", python.display())]
    Spawn {
        /// The interpreter.
        python: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A thread could not be created.
    #[error("cannot create a thread for a worker")]
    Thread(#[source] io::Error),
    /// The worker did not report `Ready` in time; it was killed.
    #[error("`{}` did not start within {:.1} s{}", python.display(), timeout.as_secs_f64(), StderrSuffix(stderr))]
    StartupTimeout {
        /// The interpreter.
        python: PathBuf,
        /// The startup timeout.
        timeout: Duration,
        /// The end of its stderr.
        stderr: String,
    },
    /// The worker exited or said something else instead of `Ready` (not a CPython, a
    /// broken installation, ...).
    #[error("`{}` failed to start a compile worker: {reason}{}", python.display(), StderrSuffix(stderr))]
    Handshake {
        /// The interpreter.
        python: PathBuf,
        /// What went wrong.
        reason: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// A replacement worker reports another interpreter than the pool started with.
    #[error("`{}` changed while compiling: it was {expected}, now it is {found}", python.display())]
    InterpreterChanged {
        /// The interpreter.
        python: PathBuf,
        /// What the pool's first workers reported.
        expected: Box<WorkerInterpreter>,
        /// What the replacement reported.
        found: Box<WorkerInterpreter>,
    },
    /// The workers were asked for images but cannot make them.
    #[error("`{}` cannot make images: {reason}", python.display())]
    NoImages {
        /// The interpreter.
        python: PathBuf,
        /// Why.
        reason: String,
    },
    /// A pool thread panicked (a bug); its worker was lost.
    #[error("a compile worker thread panicked")]
    Panicked,
}

/// What a worker reports about its interpreter in the `Ready` handshake.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkerInterpreter {
    /// `importlib.util.MAGIC_NUMBER`.
    pub magic: [u8; 4],
    /// `sys.hexversion`.
    pub hexversion: u32,
    /// `sys.implementation.cache_tag` (empty if `None`).
    pub cache_tag: String,
    /// `sys.implementation.name`.
    pub implementation: String,
    /// The layout fingerprint of image snapshots (workers started for images only).
    pub image_fingerprint: Option<[u8; 32]>,
    /// Why the worker cannot make images, when it was asked to and cannot.
    pub image_note: String,
}

impl fmt::Display for WorkerInterpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}.{}.{} (`{}`, magic {:02x}{:02x})",
            self.implementation,
            self.hexversion >> 24,
            (self.hexversion >> 16) & 0xff,
            (self.hexversion >> 8) & 0xff,
            self.cache_tag,
            self.magic[0],
            self.magic[1],
        )
    }
}

/// Why one module got no image. Never stops the run: the module is packed with its
/// marshal payload only.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ImageFailure {
    /// The snapshot refused it (an object it cannot copy, ...).
    #[error("`{module}` has no image: {reason}")]
    Refused {
        /// The module.
        module: String,
        /// Why.
        reason: String,
    },
    /// The worker failed (crash, timeout, a bug).
    #[error("no image for `{module}`: {reason}")]
    Worker {
        /// The module.
        module: String,
        /// What happened.
        reason: String,
    },
}
