//! A pool of long-lived Python processes that compile sources to `.pyc` bytes.
//!
//! ppyc packs the bytecode the target interpreter itself would produce, so whatever has
//! no usable `.pyc` is compiled by that interpreter. Starting one interpreter per file
//! would cost more than compiling, so, like uv's `crates/uv-installer/src/compile.rs`
//! (see `MODELS.md` §1.8), a few interpreters are started once and fed many files.
//!
//! # Design
//!
//! * **Workers.** Each worker is `<python> -s -B <worker.py>`, isolated as `-I` would make
//!   it but with `PYTHONHASHSEED=0` (see `Worker::spawn`) ([`WORKER_SCRIPT`], embedded with
//!   `include_str!` and written alone into a private temporary directory so that Python's
//!   error messages name a real file). It announces itself with a `Ready` frame
//!   (magic number, `sys.hexversion`, cache tag) within [`Timeouts::startup`].
//! * **Protocol.** Binary frames (`u32` little-endian length + payload) both ways, so
//!   paths are sent as raw bytes and any file name works, newlines included. Every request
//!   carries an id that the response must echo; anything unexpected on the pipe is treated
//!   as a crashed worker. The frame layouts are documented at the top of `worker.py`.
//! * **Compilation** is exactly `py_compile.compile` (3.10–3.13): `SourceFileLoader.get_data`,
//!   `source_to_code` (`compile(bytes, path, 'exec', dont_inherit=True, optimize=n)`, which
//!   honours PEP 263 coding cookies), `_code_to_timestamp_pyc` / `_code_to_hash_pyc`, and
//!   `_write_atomic` with `_calc_mode`'s permissions into a directory made by
//!   `os.makedirs`. The source is stat'ed before it is read, as `SourceLoader.get_code`
//!   does. The full `.pyc` bytes come back to Rust whether or not writing them worked.
//! * **Threads, no async runtime.** [`WorkerPool::compile_all`] puts job indices on a
//!   bounded `crossbeam-channel` queue (capacity `workers * 10`, which uv found much faster
//!   than 1 or `workers`). One scoped thread per worker takes jobs from it. Each worker
//!   process also has two threads that drain its stdout (frames, into a channel) and its
//!   stderr (the last 64 KiB are kept). Waiting on that channel with `recv_timeout` gives
//!   the per-file timeout ([`Timeouts::per_file`]).
//! * **Failures stay local.** A syntax error, an unreadable file, a timeout or a crash
//!   fails that one file ([`CompileFailure`]). A worker that timed out is killed. A worker
//!   that timed out or crashed is replaced by a fresh one, and the run goes on. If no
//!   replacement can be started, the remaining jobs fail with [`CompileFailure::NoWorker`]
//!   instead of hanging. Failures carry the worker's stderr where it helps.
//! * **No zombies.** Dropping a worker closes its stdin (the script exits on EOF), waits
//!   briefly, kills it if needed, reaps it and joins its reader threads. A worker killed
//!   for a timeout is reaped at once.

use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};

use crate::pyc::{InvalidationMode, OptLevel};

/// The Python side of the pool (`worker.py`).
pub const WORKER_SCRIPT: &str = include_str!("worker.py");

/// How much of a worker's stderr is kept (the end of it).
const STDERR_TAIL: usize = 64 * 1024;

/// How long a worker whose stdin was closed (or whose stdout ended) gets to exit on its
/// own before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Time limits for workers. `None` means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a new worker may take to report `Ready` (default 60 s).
    pub startup: Option<Duration>,
    /// How long compiling (reading, compiling and writing) one file may take (default
    /// 60 s). On timeout the worker is killed and replaced.
    pub per_file: Option<Duration>,
}

impl Timeouts {
    /// The default limit for both, as uv's `UV_COMPILE_BYTECODE_TIMEOUT`.
    pub const DEFAULT: Duration = Duration::from_secs(60);
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            startup: Some(Self::DEFAULT),
            per_file: Some(Self::DEFAULT),
        }
    }
}

/// The number of workers to use by default: the available parallelism (cores).
#[must_use]
pub fn default_workers() -> usize {
    thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// One file to compile.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CompileJob {
    /// The source file. Also the `co_filename` of the compiled code, as given (the path
    /// is passed to `compile()` after `os.fsdecode`, as `py_compile` would get it).
    pub source: PathBuf,
    /// Where to write the `.pyc` (e.g. [`crate::pyc::cache_path`]), or `None` to only
    /// return the bytes.
    pub cfile: Option<PathBuf>,
    /// The `optimize` argument of `compile()`.
    pub optimize: OptLevel,
    /// How the `.pyc` is invalidated (PEP 552).
    pub invalidation_mode: InvalidationMode,
}

impl CompileJob {
    /// A job with the default (timestamp) invalidation mode.
    #[must_use]
    pub fn new(source: impl Into<PathBuf>, cfile: Option<PathBuf>, optimize: OptLevel) -> Self {
        Self {
            source: source.into(),
            cfile,
            optimize,
            invalidation_mode: InvalidationMode::Timestamp,
        }
    }

    /// The same job with another invalidation mode.
    #[must_use]
    pub fn with_invalidation_mode(mut self, mode: InvalidationMode) -> Self {
        self.invalidation_mode = mode;
        self
    }
}

/// A compiled file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledPyc {
    /// The complete `.pyc`: 16-byte header and marshalled code object, byte for byte what
    /// was (or would have been) written to [`CompileJob::cfile`].
    pub pyc: Vec<u8>,
    /// Whether the `.pyc` was written to [`CompileJob::cfile`].
    pub written: bool,
    /// Why it was not written although a `cfile` was given (e.g. a read-only directory, or
    /// `cfile` is a symlink or not a regular file, which `py_compile` refuses to replace).
    /// Not an error: the bytes are still good.
    pub write_error: Option<String>,
    /// Warnings the compiler emitted (e.g. `SyntaxWarning: invalid escape sequence`), as
    /// `file:line: Category: message`.
    pub warnings: Vec<String>,
}

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
struct StderrSuffix<'a>(&'a str);

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

/// The result for one job.
pub type CompileResult = Result<CompiledPyc, CompileFailure>;

/// A pool of long-lived Python worker processes (see the module docs).
///
/// Dropping the pool stops and reaps every worker.
pub struct WorkerPool {
    python: PathBuf,
    timeouts: Timeouts,
    interpreter: WorkerInterpreter,
    /// One slot per worker; `None` when its worker died and has not been replaced yet.
    /// Locked for the whole of [`WorkerPool::compile_all`].
    slots: Mutex<Vec<Option<Worker>>>,
    /// The worker script on disk, alone in a private directory; deleted when the pool is
    /// dropped (after the workers).
    script: WorkerScript,
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("python", &self.python)
            .field("timeouts", &self.timeouts)
            .field("interpreter", &self.interpreter)
            .finish_non_exhaustive()
    }
}

impl WorkerPool {
    /// Starts `workers` (at least one) interpreters `python` in parallel and waits for each
    /// to report `Ready`. Cheap enough (one interpreter startup, in parallel) to call only
    /// once something turns out to need compiling.
    pub fn start(python: &Path, workers: usize, timeouts: Timeouts) -> Result<Self, WorkerError> {
        let workers = workers.max(1);
        let script = write_script()?;
        let started: Vec<Result<(Worker, WorkerInterpreter), WorkerError>> =
            thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|_| {
                        thread::Builder::new()
                            .name("ppyc-worker-start".to_owned())
                            .spawn_scoped(scope, || {
                                Worker::spawn(python, &script.path, timeouts.startup)
                            })
                            .map_err(WorkerError::Thread)
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|handle| match handle {
                        Ok(handle) => handle.join().unwrap_or(Err(WorkerError::Panicked)),
                        Err(err) => Err(err),
                    })
                    .collect()
            });
        let mut slots = Vec::with_capacity(workers);
        let mut interpreter = None;
        for result in started {
            // On error the workers started so far are dropped, i.e. stopped and reaped.
            let (worker, info) = result?;
            match &interpreter {
                None => interpreter = Some(info),
                Some(expected) if *expected != info => {
                    return Err(WorkerError::InterpreterChanged {
                        python: python.to_path_buf(),
                        expected: Box::new(expected.clone()),
                        found: Box::new(info),
                    });
                }
                Some(_) => {}
            }
            slots.push(Some(worker));
        }
        let Some(interpreter) = interpreter else {
            return Err(WorkerError::Panicked);
        };
        Ok(Self {
            python: python.to_path_buf(),
            timeouts,
            interpreter,
            slots: Mutex::new(slots),
            script,
        })
    }

    /// The interpreter the workers run, as they reported it.
    #[must_use]
    pub fn interpreter(&self) -> &WorkerInterpreter {
        &self.interpreter
    }

    /// The number of workers.
    #[must_use]
    pub fn size(&self) -> usize {
        self.lock_slots().len()
    }

    /// Process ids of the running workers (for diagnostics). Blocks while
    /// [`WorkerPool::compile_all`] runs.
    #[must_use]
    pub fn worker_pids(&self) -> Vec<u32> {
        self.lock_slots()
            .iter()
            .flatten()
            .map(|worker| worker.child.id())
            .collect()
    }

    /// Compiles one file.
    pub fn compile(&self, job: CompileJob) -> CompileResult {
        let path = job.source.clone();
        match self.compile_all(vec![job], |_, _| {}).pop() {
            Some((_, result)) => result,
            // `compile_all` returns one result per job, so this does not happen.
            None => Err(CompileFailure::NoWorker {
                path,
                error: Arc::new(WorkerError::Panicked),
            }),
        }
    }

    /// Compiles every job on the workers and returns one result per job, in job order.
    ///
    /// `on_result` is called on the calling thread as each job finishes (in completion
    /// order), e.g. for progress. A failing file never stops the run: syntax errors,
    /// unreadable files, timeouts and worker crashes are results (a worker that timed out
    /// or crashed is replaced). Calls from several threads run one after another.
    pub fn compile_all(
        &self,
        jobs: Vec<CompileJob>,
        mut on_result: impl FnMut(&CompileJob, &CompileResult),
    ) -> Vec<(CompileJob, CompileResult)> {
        if jobs.is_empty() {
            return Vec::new();
        }
        let mut slots = self.lock_slots();
        let size = slots.len();
        let threads = size.min(jobs.len());
        let taken: Vec<Option<Worker>> = slots.drain(..threads).collect();
        let mut results: Vec<Option<CompileResult>> = Vec::new();
        results.resize_with(jobs.len(), || None);

        let jobs_ref = &jobs;
        let (queue_tx, queue_rx) = bounded::<usize>(size.max(1) * 10);
        let (result_tx, result_rx) = unbounded::<(usize, CompileResult)>();
        let live = AtomicUsize::new(threads);
        let live = &live;
        let returned: Vec<Option<Worker>> = thread::scope(|scope| {
            let mut handles = Vec::with_capacity(threads);
            for slot in taken {
                let queue = queue_rx.clone();
                let results = result_tx.clone();
                let spawned = thread::Builder::new()
                    .name("ppyc-worker".to_owned())
                    .spawn_scoped(scope, move || {
                        self.serve(slot, jobs_ref, &queue, &results, live)
                    });
                if spawned.is_err() {
                    // The closure, and the slot's worker with it, was dropped.
                    live.fetch_sub(1, Ordering::SeqCst);
                }
                handles.extend(spawned.ok());
            }
            // Only the pool threads hold these now: when they are all gone, the feeder's
            // `send` fails and the loop below ends, so nothing can hang.
            drop(queue_rx);
            drop(result_tx);
            // Feed the queue from a thread, so that this one reports results as they come.
            let feeder = thread::Builder::new()
                .name("ppyc-worker-queue".to_owned())
                .spawn_scoped(scope, move || {
                    for index in 0..jobs_ref.len() {
                        if queue_tx.send(index).is_err() {
                            break;
                        }
                    }
                });
            // If the feeder could not be created, `queue_tx` is gone: the pool threads
            // see a closed queue and stop at once.
            for (index, result) in &result_rx {
                on_result(&jobs_ref[index], &result);
                results[index] = Some(result);
            }
            if let Ok(feeder) = feeder {
                let _ = feeder.join();
            }
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap_or(None))
                .collect()
        });
        slots.extend(returned);
        slots.resize_with(size, || None);
        drop(slots);

        // Every job gets a result, even if a thread could not be created or panicked.
        let lost = Arc::new(WorkerError::Panicked);
        jobs.into_iter()
            .zip(results)
            .map(|(job, result)| {
                let result = result.unwrap_or_else(|| {
                    let failure = Err(CompileFailure::NoWorker {
                        path: job.source.clone(),
                        error: Arc::clone(&lost),
                    });
                    on_result(&job, &failure);
                    failure
                });
                (job, result)
            })
            .collect()
    }

    /// The body of one pool thread: compiles jobs from `queue` until it is closed. Returns
    /// the worker to keep for the next call.
    fn serve(
        &self,
        mut worker: Option<Worker>,
        jobs: &[CompileJob],
        queue: &Receiver<usize>,
        results: &Sender<(usize, CompileResult)>,
        live: &AtomicUsize,
    ) -> Option<Worker> {
        let mut broken: Option<Arc<WorkerError>> = None;
        for index in queue {
            let job = &jobs[index];
            if let Some(error) = &broken {
                let failure = CompileFailure::NoWorker {
                    path: job.source.clone(),
                    error: Arc::clone(error),
                };
                if results.send((index, Err(failure))).is_err() {
                    break;
                }
                continue;
            }
            let mut current = match worker.take() {
                Some(current) => current,
                None => match self.spawn_worker() {
                    Ok(fresh) => fresh,
                    Err(error) => {
                        let error = Arc::new(error);
                        let failure = CompileFailure::NoWorker {
                            path: job.source.clone(),
                            error: Arc::clone(&error),
                        };
                        if results.send((index, Err(failure))).is_err() {
                            break;
                        }
                        // Leave the queue to the other threads if there are any; the last
                        // one fails the remaining jobs rather than retrying each.
                        if live
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                (n > 1).then(|| n - 1)
                            })
                            .is_ok()
                        {
                            return None;
                        }
                        broken = Some(error);
                        continue;
                    }
                },
            };
            let (result, alive) = current.compile(job, self.timeouts.per_file);
            if alive {
                worker = Some(current);
            }
            // else: `current` is dropped here (already reaped); the next job starts a
            // replacement.
            if results.send((index, result)).is_err() {
                break;
            }
        }
        worker
    }

    fn spawn_worker(&self) -> Result<Worker, WorkerError> {
        let (worker, info) = Worker::spawn(&self.python, &self.script.path, self.timeouts.startup)?;
        if info == self.interpreter {
            Ok(worker)
        } else {
            Err(WorkerError::InterpreterChanged {
                python: self.python.clone(),
                expected: Box::new(self.interpreter.clone()),
                found: Box::new(info),
            })
        }
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, Vec<Option<Worker>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        let slots = self.slots.get_mut().unwrap_or_else(PoisonError::into_inner);
        // Close every stdin first so that the workers exit in parallel, then reap them.
        for worker in slots.iter_mut().flatten() {
            worker.stdin = None;
        }
        slots.clear();
    }
}

/// `worker.py` written alone into a new private directory. The directory is the script's
/// `sys.path[0]` on 3.10 (which has no `-P`), so nothing else may be in it.
struct WorkerScript {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn write_script() -> Result<WorkerScript, WorkerError> {
    let dir = tempfile::Builder::new()
        .prefix("ppyc_worker_")
        .tempdir()
        .map_err(WorkerError::Script)?;
    let path = dir.path().join("ppyc_worker.py");
    std::fs::write(&path, WORKER_SCRIPT.as_bytes()).map_err(WorkerError::Script)?;
    Ok(WorkerScript { path, _dir: dir })
}

/// The end of a worker's stderr.
#[derive(Default)]
struct StderrTail {
    bytes: Vec<u8>,
    truncated: bool,
}

impl StderrTail {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > STDERR_TAIL {
            let excess = self.bytes.len() - STDERR_TAIL;
            self.bytes.drain(..excess);
            self.truncated = true;
        }
    }

    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        if self.truncated {
            format!("[...]{text}")
        } else {
            text.into_owned()
        }
    }
}

/// Why no frame arrived.
enum RecvFailure {
    Timeout,
    /// Stdout ended (or could not be read).
    Closed(Option<io::Error>),
}

/// One worker process and its reader threads.
struct Worker {
    child: Child,
    /// `None` once closed (which tells the worker to exit).
    stdin: Option<BufWriter<ChildStdin>>,
    frames: Receiver<io::Result<Vec<u8>>>,
    stderr: Arc<Mutex<StderrTail>>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<()>>,
    /// Reaped already.
    exited: Option<ExitStatus>,
    next_id: u64,
}

impl Worker {
    /// Starts `python -s -B script` (see the environment below) and waits for its `Ready` frame.
    fn spawn(
        python: &Path,
        script: &Path,
        startup: Option<Duration>,
    ) -> Result<(Self, WorkerInterpreter), WorkerError> {
        let mut command = Command::new(python);
        // Isolated as `-I` would make it, but with a fixed hash seed (which `-I` would
        // ignore): no PYTHON* or PPYC_* variable of the caller reaches the worker (so no
        // PYTHONPATH, no profile file of ppyc's own), no user site-packages, no script
        // directory on sys.path (3.11+; on 3.10 it is the script's private directory),
        // and ppyc's hook stays off. The seed makes what the compiler writes independent
        // of the run: on 3.10, marshal writes set constants in iteration order, which
        // depends on the hash seed (spec/FORMAT.md, "Set order").
        for (key, _) in std::env::vars_os() {
            let key_bytes = key.as_bytes();
            if key_bytes.starts_with(b"PYTHON") || key_bytes.starts_with(b"PPYC_") {
                command.env_remove(&key);
            }
        }
        let mut child = command
            .arg("-s")
            .arg("-B")
            .arg(script)
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONSAFEPATH", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env("PPYC_DISABLE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| WorkerError::Spawn {
                python: python.to_path_buf(),
                source,
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (frames_tx, frames) = unbounded();
        let mut worker = Self {
            child,
            stdin: stdin.map(BufWriter::new),
            frames,
            stderr: Arc::new(Mutex::new(StderrTail::default())),
            stdout_reader: None,
            stderr_reader: None,
            exited: None,
            next_id: 0,
        };
        // From here on, dropping `worker` on an error path stops and reaps the child.
        let (Some(stdout), Some(stderr), true) = (stdout, stderr, worker.stdin.is_some()) else {
            return Err(worker.handshake_error(python, "its stdio pipes are missing".to_owned()));
        };
        worker.stdout_reader = Some(
            thread::Builder::new()
                .name("ppyc-worker-stdout".to_owned())
                .spawn(move || read_frames(stdout, &frames_tx))
                .map_err(WorkerError::Thread)?,
        );
        let tail = Arc::clone(&worker.stderr);
        worker.stderr_reader = Some(
            thread::Builder::new()
                .name("ppyc-worker-stderr".to_owned())
                .spawn(move || read_stderr(stderr, &tail))
                .map_err(WorkerError::Thread)?,
        );

        let frame = match worker.recv(startup) {
            Ok(frame) => frame,
            Err(RecvFailure::Timeout) => {
                worker.kill_and_reap();
                return Err(WorkerError::StartupTimeout {
                    python: python.to_path_buf(),
                    timeout: startup.unwrap_or_default(),
                    stderr: worker.stderr_text(),
                });
            }
            Err(RecvFailure::Closed(err)) => {
                let status = worker.reap(EXIT_GRACE);
                let reason = match err {
                    Some(err) => format!("cannot read its output: {err}"),
                    None => format!("it exited ({}) before reporting ready", describe(status)),
                };
                return Err(worker.handshake_error(python, reason));
            }
        };
        match parse_ready(&frame) {
            Ok(info) => Ok((worker, info)),
            Err(err) => Err(worker.handshake_error(python, format!("unexpected handshake: {err}"))),
        }
    }

    /// Kills and reaps the worker and describes the failure with its stderr.
    fn handshake_error(&mut self, python: &Path, reason: String) -> WorkerError {
        self.kill_and_reap();
        WorkerError::Handshake {
            python: python.to_path_buf(),
            reason,
            stderr: self.stderr_text(),
        }
    }

    fn recv(&self, timeout: Option<Duration>) -> Result<Vec<u8>, RecvFailure> {
        let received = match timeout {
            Some(timeout) => self.frames.recv_timeout(timeout),
            None => self
                .frames
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(err)) => Err(RecvFailure::Closed(Some(err))),
            Err(RecvTimeoutError::Timeout) => Err(RecvFailure::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(RecvFailure::Closed(None)),
        }
    }

    /// Compiles one job. Returns the result and whether the worker is still usable (if
    /// not, it has been killed and reaped).
    fn compile(&mut self, job: &CompileJob, timeout: Option<Duration>) -> (CompileResult, bool) {
        let id = self.next_id;
        self.next_id += 1;
        let path = &job.source;
        let request = match encode_request(id, job) {
            Ok(request) => request,
            Err(message) => {
                let failure = CompileFailure::Unreadable {
                    path: path.clone(),
                    exception: "OSError".to_owned(),
                    message,
                };
                return (Err(failure), true);
            }
        };
        let sent = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(&request).and_then(|()| stdin.flush()),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        };
        if let Err(err) = sent {
            let status = self.reap(EXIT_GRACE);
            return (
                Err(self.crashed(
                    path,
                    format!(
                        "cannot send it the file ({err}); it exited ({})",
                        describe(status)
                    ),
                )),
                false,
            );
        }
        let started = Instant::now();
        match self.recv(timeout) {
            Ok(frame) => match decode_response(&frame, id, path) {
                Ok(result) => (result, true),
                Err(err) => {
                    self.kill_and_reap();
                    (
                        Err(self.crashed(path, format!("protocol error: {err}"))),
                        false,
                    )
                }
            },
            Err(RecvFailure::Timeout) => {
                let elapsed = started.elapsed();
                self.kill_and_reap();
                let failure = CompileFailure::Timeout {
                    path: path.clone(),
                    elapsed,
                    stderr: self.stderr_text(),
                };
                (Err(failure), false)
            }
            Err(RecvFailure::Closed(err)) => {
                let status = self.reap(EXIT_GRACE);
                let reason = match err {
                    Some(err) => format!(
                        "cannot read its output ({err}); it exited ({})",
                        describe(status)
                    ),
                    None => format!("it exited ({})", describe(status)),
                };
                (Err(self.crashed(path, reason)), false)
            }
        }
    }

    fn crashed(&self, path: &Path, reason: String) -> CompileFailure {
        CompileFailure::WorkerCrashed {
            path: path.to_path_buf(),
            reason,
            stderr: self.stderr_text(),
        }
    }

    /// Stderr so far; complete once the worker has been reaped (the reader is joined).
    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .text()
    }

    fn kill_and_reap(&mut self) -> Option<ExitStatus> {
        self.reap(Duration::ZERO)
    }

    /// Closes stdin, waits up to `grace` for the worker to exit, kills it if it has not,
    /// reaps it and joins the reader threads. Returns the exit status, if it could be had.
    fn reap(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.stdin = None;
            let deadline = Instant::now() + grace;
            self.exited = loop {
                match self.child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(2));
                    }
                    Ok(None) | Err(_) => {
                        // Fails only if it exited meanwhile; `wait` then reaps it.
                        let _ = self.child.kill();
                        break self.child.wait().ok();
                    }
                }
            };
        }
        // The child is gone, so its pipes are closed and both readers reach EOF.
        if let Some(handle) = self.stdout_reader.take() {
            let _ = handle.join();
        }
        if let Some(handle) = self.stderr_reader.take() {
            let _ = handle.join();
        }
        self.exited
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.reap(EXIT_GRACE);
    }
}

fn describe(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "status unknown".to_owned(), |status| status.to_string())
}

/// Reads `u32 length + payload` frames until EOF.
fn read_frames(stdout: ChildStdout, frames: &Sender<io::Result<Vec<u8>>>) {
    let mut reader = BufReader::new(stdout);
    loop {
        let mut len = [0; 4];
        match reader.read(&mut len[..1]) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                let _ = frames.send(Err(err));
                return;
            }
        }
        if let Err(err) = reader.read_exact(&mut len[1..]) {
            let _ = frames.send(Err(err));
            return;
        }
        let len = u32::from_le_bytes(len);
        // Read incrementally: a garbage length must not allocate gigabytes up front.
        let mut payload = Vec::new();
        match (&mut reader).take(u64::from(len)).read_to_end(&mut payload) {
            Ok(n) if u64::try_from(n).is_ok_and(|n| n == u64::from(len)) => {
                if frames.send(Ok(payload)).is_err() {
                    return;
                }
            }
            Ok(_) => {
                let _ = frames.send(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated frame",
                )));
                return;
            }
            Err(err) => {
                let _ = frames.send(Err(err));
                return;
            }
        }
    }
}

fn read_stderr(mut stderr: ChildStderr, tail: &Mutex<StderrTail>) {
    let mut buf = [0; 8192];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => tail
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Appends `u32 length + bytes`.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), String> {
    let len = u32::try_from(bytes.len()).map_err(|_| "path too long".to_owned())?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// A request frame (layout in `worker.py`).
fn encode_request(id: u64, job: &CompileJob) -> Result<Vec<u8>, String> {
    let mut payload = Vec::with_capacity(64 + job.source.as_os_str().len());
    payload.extend_from_slice(&id.to_le_bytes());
    payload.push(job.optimize.as_u8());
    payload.push(match job.invalidation_mode {
        InvalidationMode::Timestamp => 0,
        InvalidationMode::CheckedHash => 1,
        InvalidationMode::UncheckedHash => 2,
    });
    put_bytes(&mut payload, job.source.as_os_str().as_bytes())?;
    match &job.cfile {
        Some(cfile) => {
            payload.push(1);
            put_bytes(&mut payload, cfile.as_os_str().as_bytes())?;
        }
        None => payload.push(0),
    }
    let mut frame = Vec::with_capacity(payload.len() + 4);
    put_bytes(&mut frame, &payload)?;
    Ok(frame)
}

/// Reads fields of a response frame.
struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len());
        let Some(end) = end else {
            return Err(format!("frame truncated at byte {}", self.pos));
        };
        let chunk = &self.data[self.pos..end];
        self.pos = end;
        Ok(chunk)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, String> {
        self.array().map(i64::from_le_bytes)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()?;
        let len = usize::try_from(len).map_err(|_| "length overflows usize".to_owned())?;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, String> {
        self.bytes()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    }

    fn finish(&self) -> Result<(), String> {
        if self.pos == self.data.len() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected trailing bytes",
                self.data.len() - self.pos
            ))
        }
    }
}

fn parse_ready(frame: &[u8]) -> Result<WorkerInterpreter, String> {
    let mut fields = Fields {
        data: frame,
        pos: 0,
    };
    if fields.u8()? != b'R' {
        return Err("expected a `Ready` frame".to_owned());
    }
    let magic: [u8; 4] = fields
        .bytes()?
        .try_into()
        .map_err(|_| "the magic number is not 4 bytes".to_owned())?;
    let info = WorkerInterpreter {
        magic,
        hexversion: fields.u32()?,
        cache_tag: fields.string()?,
        implementation: fields.string()?,
    };
    fields.finish()?;
    Ok(info)
}

fn line_number(value: i64) -> Option<u32> {
    u32::try_from(value).ok()
}

/// Decodes a response frame for request `id` about `path` (layout in `worker.py`).
fn decode_response(frame: &[u8], id: u64, path: &Path) -> Result<CompileResult, String> {
    let mut fields = Fields {
        data: frame,
        pos: 0,
    };
    let tag = fields.u8()?;
    let got = fields.u64()?;
    if got != id {
        return Err(format!("response to request {got} while waiting for {id}"));
    }
    let path = path.to_path_buf();
    let result = match tag {
        b'O' => {
            let written = match fields.u8()? {
                0 => false,
                1 => true,
                other => return Err(format!("bad `written` flag {other}")),
            };
            let pyc = fields.bytes()?.to_vec();
            let write_error = match fields.u8()? {
                0 => None,
                _ => Some(fields.string()?),
            };
            let count = fields.u32()?;
            let mut warnings = Vec::new();
            for _ in 0..count {
                warnings.push(fields.string()?);
            }
            Ok(CompiledPyc {
                pyc,
                written,
                write_error,
                warnings,
            })
        }
        b'S' => Err(CompileFailure::Syntax {
            path,
            exception: fields.string()?,
            line: line_number(fields.i64()?),
            offset: line_number(fields.i64()?),
            message: fields.string()?,
        }),
        b'U' => Err(CompileFailure::Unreadable {
            path,
            exception: fields.string()?,
            message: fields.string()?,
        }),
        b'E' => Err(CompileFailure::Compile {
            path,
            exception: fields.string()?,
            message: fields.string()?,
        }),
        b'X' => Err(CompileFailure::Internal {
            path,
            traceback: fields.string()?,
        }),
        other => return Err(format!("unknown response tag {other:#04x}")),
    };
    fields.finish()?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_layout() {
        let job = CompileJob::new("a\nb.py", Some(PathBuf::from("c.pyc")), OptLevel::Two)
            .with_invalidation_mode(InvalidationMode::UncheckedHash);
        let frame = encode_request(7, &job).expect("encodes");
        let mut fields = Fields {
            data: &frame,
            pos: 0,
        };
        let payload = fields.bytes().expect("frame");
        fields.finish().expect("one frame");
        let mut fields = Fields {
            data: payload,
            pos: 0,
        };
        assert_eq!(fields.u64(), Ok(7));
        assert_eq!(fields.u8(), Ok(2));
        assert_eq!(fields.u8(), Ok(2));
        assert_eq!(fields.bytes(), Ok(b"a\nb.py".as_slice()));
        assert_eq!(fields.u8(), Ok(1));
        assert_eq!(fields.bytes(), Ok(b"c.pyc".as_slice()));
        fields.finish().expect("nothing else");
    }

    #[test]
    fn garbage_responses_are_errors_not_panics() {
        let path = Path::new("x.py");
        for frame in [
            &b""[..],
            b"O",
            b"O\x01\0\0\0\0\0\0\0",
            b"Q\0\0\0\0\0\0\0\0",
            b"O\0\0\0\0\0\0\0\0\x02",
            b"O\0\0\0\0\0\0\0\0\x01\xff\xff\xff\xff",
            b"S\0\0\0\0\0\0\0\0\x01\0\0\0",
        ] {
            assert!(decode_response(frame, 0, path).is_err(), "{frame:?}");
        }
        let ok = b"O\x05\0\0\0\0\0\0\0\x00\x02\0\0\0ab\x00\0\0\0\0";
        let compiled = decode_response(ok, 5, path)
            .expect("well formed")
            .expect("success");
        assert_eq!(compiled.pyc, b"ab");
        assert!(!compiled.written);
        assert!(decode_response(ok, 6, path).is_err());
        assert!(parse_ready(b"R\x03\0\0\0abc").is_err());
    }

    #[test]
    fn syntax_error_display() {
        let failure = CompileFailure::Syntax {
            path: PathBuf::from("pkg/m.py"),
            exception: "SyntaxError".to_owned(),
            line: Some(3),
            offset: Some(1),
            message: "invalid syntax".to_owned(),
        };
        assert_eq!(failure.to_string(), "pkg/m.py:3: invalid syntax");
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        let mut tail = StderrTail::default();
        tail.push(&vec![b'a'; STDERR_TAIL]);
        tail.push(b"end");
        let text = tail.text();
        assert!(text.starts_with("[...]"));
        assert!(text.ends_with("aend"));
        assert_eq!(text.len(), STDERR_TAIL + 5);
    }
}
