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

mod error;
mod process;
mod protocol;

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use ppyc_format::ModuleImage;

pub use error::{CompileFailure, ImageFailure, WorkerError, WorkerInterpreter};
use process::{Worker, WorkerScript, write_script};
use protocol::{Job, RunFailure};

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

/// The result for one job.
pub type CompileResult = Result<CompiledPyc, CompileFailure>;

/// One module whose image to make: the marshalled code object (a `.pyc` after its header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageJob {
    /// The module, for messages.
    pub module: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// The image of one module, or why it has none.
pub type ImageResult = Result<ModuleImage, ImageFailure>;

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
    /// The extension the workers load to make images (image pools only).
    native: Option<PathBuf>,
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
        Self::start_with(python, workers, timeouts, None)
    }

    /// Starts a pool whose workers make images ([`WorkerPool::snapshot_all`]) with the
    /// extension `native` (ppyc's own, built for `python`). Such workers only make images:
    /// they load other processes' code, which changes the state a compilation depends on
    /// (which strings are interned), so compiling is left to [`WorkerPool::start`]'s pools.
    /// Fails unless every worker can make images.
    pub fn start_images(
        python: &Path,
        workers: usize,
        timeouts: Timeouts,
        native: &Path,
    ) -> Result<Self, WorkerError> {
        let pool = Self::start_with(python, workers, timeouts, Some(native.to_path_buf()))?;
        if pool.interpreter.image_fingerprint.is_none() {
            return Err(WorkerError::NoImages {
                python: python.to_path_buf(),
                reason: pool.interpreter.image_note.clone(),
            });
        }
        Ok(pool)
    }

    fn start_with(
        python: &Path,
        workers: usize,
        timeouts: Timeouts,
        native: Option<PathBuf>,
    ) -> Result<Self, WorkerError> {
        let workers = workers.max(1);
        let script = write_script()?;
        let started: Vec<Result<(Worker, WorkerInterpreter), WorkerError>> =
            thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|_| {
                        thread::Builder::new()
                            .name("ppyc-worker-start".to_owned())
                            .spawn_scoped(scope, || {
                                Worker::spawn(
                                    python,
                                    &script.path,
                                    native.as_deref(),
                                    timeouts.startup,
                                )
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
            native,
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
        on_result: impl FnMut(&CompileJob, &CompileResult),
    ) -> Vec<(CompileJob, CompileResult)> {
        self.run_all(jobs, on_result)
    }

    /// Makes the image of every job (see [`WorkerPool::start_images`]), as
    /// [`WorkerPool::compile_all`] compiles.
    pub fn snapshot_all(
        &self,
        jobs: Vec<ImageJob>,
        on_result: impl FnMut(&ImageJob, &ImageResult),
    ) -> Vec<(ImageJob, ImageResult)> {
        self.run_all(jobs, on_result)
    }

    fn run_all<J: Job>(
        &self,
        jobs: Vec<J>,
        mut on_result: impl FnMut(&J, &J::Output),
    ) -> Vec<(J, J::Output)> {
        if jobs.is_empty() {
            return Vec::new();
        }
        let mut slots = self.lock_slots();
        let size = slots.len();
        let threads = size.min(jobs.len());
        let taken: Vec<Option<Worker>> = slots.drain(..threads).collect();
        let mut results: Vec<Option<J::Output>> = Vec::new();
        results.resize_with(jobs.len(), || None);

        let jobs_ref = &jobs;
        let (queue_tx, queue_rx) = bounded::<usize>(size.max(1) * 10);
        let (result_tx, result_rx) = unbounded::<(usize, J::Output)>();
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
                    let failure = job.failed(RunFailure::NoWorker(Arc::clone(&lost)));
                    on_result(&job, &failure);
                    failure
                });
                (job, result)
            })
            .collect()
    }

    /// The body of one pool thread: compiles jobs from `queue` until it is closed. Returns
    /// the worker to keep for the next call.
    fn serve<J: Job>(
        &self,
        mut worker: Option<Worker>,
        jobs: &[J],
        queue: &Receiver<usize>,
        results: &Sender<(usize, J::Output)>,
        live: &AtomicUsize,
    ) -> Option<Worker> {
        let mut broken: Option<Arc<WorkerError>> = None;
        for index in queue {
            let job = &jobs[index];
            if let Some(error) = &broken {
                let failure = job.failed(RunFailure::NoWorker(Arc::clone(error)));
                if results.send((index, failure)).is_err() {
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
                        let failure = job.failed(RunFailure::NoWorker(Arc::clone(&error)));
                        if results.send((index, failure)).is_err() {
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
            let (result, alive) = current.run(job, self.timeouts.per_file);
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
        let (worker, info) = Worker::spawn(
            &self.python,
            &self.script.path,
            self.native.as_deref(),
            self.timeouts.startup,
        )?;
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
