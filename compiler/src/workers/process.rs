//! One worker process: starting it, talking to it, stopping it.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

use super::error::{WorkerError, WorkerInterpreter};
use super::protocol::{Job, RunFailure, parse_ready};
use super::{EXIT_GRACE, STDERR_TAIL, WORKER_SCRIPT};

/// `worker.py` written alone into a new private directory. The directory is the script's
/// `sys.path[0]` on 3.10 (which has no `-P`), so nothing else may be in it.
pub(crate) struct WorkerScript {
    pub(crate) path: PathBuf,
    _dir: tempfile::TempDir,
}

pub(crate) fn write_script() -> Result<WorkerScript, WorkerError> {
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
pub(crate) struct StderrTail {
    bytes: Vec<u8>,
    truncated: bool,
}

impl StderrTail {
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > STDERR_TAIL {
            let excess = self.bytes.len() - STDERR_TAIL;
            self.bytes.drain(..excess);
            self.truncated = true;
        }
    }

    pub(crate) fn text(&self) -> String {
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
pub(crate) struct Worker {
    pub(crate) child: Child,
    /// `None` once closed (which tells the worker to exit).
    pub(crate) stdin: Option<BufWriter<ChildStdin>>,
    frames: Receiver<io::Result<Vec<u8>>>,
    stderr: Arc<Mutex<StderrTail>>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<()>>,
    /// Reaped already.
    exited: Option<ExitStatus>,
    next_id: u64,
}

impl Worker {
    /// Starts `python -s -B script` (see the environment below) and waits for its `Ready`
    /// frame. With `native`, the worker loads that extension (ppyc's own) to make images.
    pub(crate) fn spawn(
        python: &Path,
        script: &Path,
        native: Option<&Path>,
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
        command.arg("-s").arg("-B").arg(script);
        if let Some(native) = native {
            command.arg("--native").arg(native);
        }
        let mut child = command
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

    /// Runs one job. Returns the output and whether the worker is still usable (if not, it
    /// has been killed and reaped).
    pub(crate) fn run<J: Job>(&mut self, job: &J, timeout: Option<Duration>) -> (J::Output, bool) {
        let id = self.next_id;
        self.next_id += 1;
        let request = match job.encode(id) {
            Ok(request) => request,
            Err(message) => return (job.failed(RunFailure::Encode(message)), true),
        };
        let sent = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(&request).and_then(|()| stdin.flush()),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        };
        if let Err(err) = sent {
            let status = self.reap(EXIT_GRACE);
            let reason = format!(
                "cannot send it the request ({err}); it exited ({})",
                describe(status)
            );
            return (job.failed(self.crashed(reason)), false);
        }
        let started = Instant::now();
        match self.recv(timeout) {
            Ok(frame) => match job.decode(&frame, id) {
                Ok(result) => (result, true),
                Err(err) => {
                    self.kill_and_reap();
                    (
                        job.failed(self.crashed(format!("protocol error: {err}"))),
                        false,
                    )
                }
            },
            Err(RecvFailure::Timeout) => {
                let elapsed = started.elapsed();
                self.kill_and_reap();
                let failure = RunFailure::Timeout {
                    elapsed,
                    stderr: self.stderr_text(),
                };
                (job.failed(failure), false)
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
                (job.failed(self.crashed(reason)), false)
            }
        }
    }

    fn crashed(&self, reason: String) -> RunFailure {
        RunFailure::Crashed {
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

#[cfg(test)]
mod tests {
    use super::*;

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
