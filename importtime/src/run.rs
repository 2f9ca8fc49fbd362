//! Running the target: the probe, timed runs, profiled runs and memory rounds, stock and
//! ppyc alternating (`spec/IMPORTTIME.md` §1).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::Error;
use crate::memory;
use crate::profile;
use crate::report::{self, Known, MemoryReport, ProfiledRun, Report, Target};
use crate::xtime;

/// The two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Stock,
    Ppyc,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Stock => "stock",
            Side::Ppyc => "ppyc",
        }
    }
}

/// What to measure, and how.
#[derive(Debug, Clone)]
pub struct Config {
    pub python: PathBuf,
    pub target: Target,
    /// Runs per side, for wall time and again for the profile.
    pub runs: usize,
    /// Uncounted runs per side first.
    pub warmup: usize,
    pub memory: bool,
    /// Concurrent processes per side in the memory rounds.
    pub processes: usize,
    /// Limit for one process.
    pub timeout: Duration,
    /// Where the profile files go (a fresh directory the caller removes).
    pub scratch: PathBuf,
    /// The command line, for the report.
    pub command: Vec<String>,
}

/// Progress, for the command line to show (`Reporter` as in uv: only the CLI draws).
pub trait Reporter: Sync {
    /// A phase starts: `total` processes to run.
    fn on_phase(&self, name: &str, total: usize);
    /// One process of the phase finished.
    fn on_run(&self);
    fn on_finish(&self);
}

/// A reporter that shows nothing.
pub struct Silent;

impl Reporter for Silent {
    fn on_phase(&self, _: &str, _: usize) {}
    fn on_run(&self) {}
    fn on_finish(&self) {}
}

/// What the probe learns about the target interpreter.
#[derive(Debug, Clone, Deserialize)]
pub struct Probe {
    pub executable: String,
    pub version: String,
    pub cache_tag: String,
    pub implementation: String,
    #[serde(default)]
    pub builtin: Vec<String>,
    #[serde(default)]
    pub frozen: Vec<String>,
    #[serde(default)]
    pub ppyc: Option<String>,
    #[serde(default)]
    pub ppyc_error: Option<String>,
    #[serde(default)]
    pub hook_enabled: bool,
}

const PROBE: &str = r#"
import json, platform, sys
out = {"executable": sys.executable, "version": platform.python_version(),
       "cache_tag": sys.implementation.cache_tag, "implementation": sys.implementation.name,
       "builtin": list(sys.builtin_module_names)}
try:
    import _imp
    out["frozen"] = list(_imp._frozen_module_names())
except Exception:
    # 3.10 has no list; these are its frozen modules (Python/frozen.c, 3.10).
    out["frozen"] = ["_frozen_importlib", "_frozen_importlib_external", "zipimport"]
try:
    import ppyc
    from ppyc import _status
    out["ppyc"] = ppyc.__version__
    out["hook_enabled"] = bool(_status.pth_files())
except Exception as exc:
    out["ppyc_error"] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(out))
"#;

/// Asks the interpreter what it is and whether ppyc is installed and enabled there.
pub fn probe(python: &Path, timeout: Duration) -> Result<Probe, Error> {
    let mut cmd = Command::new(python);
    cmd.args(["-c", PROBE]).env("PPYC_DISABLE", "1");
    clean_env(&mut cmd);
    let out = run_captured(cmd, timeout).map_err(|e| Error::Spawn {
        python: python.to_owned(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Spawn {
            python: python.to_owned(),
            message: format!(
                "the probe failed ({}): {}",
                out.status,
                tail(&out.stderr, 10)
            ),
        });
    }
    let probe: Probe = serde_json::from_str(out.stdout.trim()).map_err(|e| Error::Spawn {
        python: python.to_owned(),
        message: format!("unexpected probe output ({e}): {}", tail(&out.stdout, 5)),
    })?;
    if let Some(why) = &probe.ppyc_error {
        return Err(Error::NotInstalled {
            python: python.to_owned(),
            message: why.clone(),
        });
    }
    if !probe.hook_enabled {
        return Err(Error::NotEnabled {
            python: python.to_owned(),
        });
    }
    Ok(probe)
}

/// Measures everything the config asks for and builds the report.
pub fn measure(config: &Config, reporter: &dyn Reporter) -> Result<Report, Error> {
    let probe = probe(&config.python, config.timeout)?;
    let sides = [Side::Stock, Side::Ppyc];

    reporter.on_phase("warm-up", 2 * config.warmup);
    for _ in 0..config.warmup {
        for side in sides {
            let out = run_once(config, side, false, None)?;
            check_ok(side, &out)?;
            reporter.on_run();
        }
    }

    reporter.on_phase("wall time", 2 * config.runs);
    let mut wall: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..config.runs {
        for (i, side) in sides.into_iter().enumerate() {
            let out = run_once(config, side, false, None)?;
            check_ok(side, &out)?;
            wall[i].push(out.elapsed.as_secs_f64() * 1000.0);
            reporter.on_run();
        }
    }

    reporter.on_phase("profile", 2 * config.runs);
    let mut profiled: [Vec<ProfiledRun>; 2] = [Vec::new(), Vec::new()];
    for n in 0..config.runs {
        for (i, side) in sides.into_iter().enumerate() {
            let profile_file =
                (side == Side::Ppyc).then(|| config.scratch.join(format!("profile-{n}.jsonl")));
            let out = run_once(config, side, true, profile_file.as_deref())?;
            check_ok(side, &out)?;
            let parsed = xtime::parse(&out.stderr);
            let records = match &profile_file {
                Some(path) => match std::fs::read_to_string(path) {
                    Ok(text) => profile::parse(&text)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(Error::HookInactive {
                            python: config.python.clone(),
                        });
                    }
                    Err(e) => {
                        return Err(Error::Io {
                            path: path.clone(),
                            source: e,
                        });
                    }
                },
                None => Default::default(),
            };
            profiled[i].push(ProfiledRun {
                rows: parsed.rows,
                records,
            });
            reporter.on_run();
        }
    }
    // The target's own imports: those a bare start-up (`-c pass`) does not make. An error
    // if some are source modules found on sys.path and not one of them was served.
    let bare = run_bare(config)?;
    let own_source = |r: &ProfiledRun| {
        r.records
            .values()
            .filter(|rec| !bare.contains(&rec.module))
            .filter(|rec| {
                rec.served
                    || rec.reason.as_deref().is_some_and(|why| {
                        !why.starts_with("not a source module")
                            && why != "imported before ppyc started"
                    })
            })
            .map(|rec| rec.served)
            .collect::<Vec<bool>>()
    };
    let served_any = profiled[1].iter().any(|r| own_source(r).contains(&true));
    let own_any = profiled[1].iter().any(|r| !own_source(r).is_empty());
    if own_any && !served_any {
        return Err(Error::NothingServed {
            target: config.target.label.clone(),
            python: config.python.clone(),
        });
    }

    let memory = if config.memory {
        Some(measure_memory(config, reporter)?)
    } else {
        None
    };
    reporter.on_finish();

    let known = Known {
        builtin: probe.builtin.iter().cloned().collect::<HashSet<_>>(),
        frozen: probe.frozen.iter().cloned().collect::<HashSet<_>>(),
    };
    Ok(report::build(report::Inputs {
        meta: report::Meta {
            target: config.target.clone(),
            python: report::PythonInfo {
                executable: probe.executable.clone(),
                version: probe.version.clone(),
                cache_tag: probe.cache_tag.clone(),
                implementation: probe.implementation.clone(),
            },
            ppyc: report::PpycInfo {
                version: probe.ppyc.clone().unwrap_or_default(),
                // What the target used: `report::build` reads it from the profiled runs'
                // records (each served module's `mode`).
                mode: None,
                hook_enabled: probe.hook_enabled,
            },
            runs: config.runs,
            warmup: config.warmup,
            processes: config.processes,
            machine: crate::machine::this_machine(),
            date: crate::machine::now_rfc3339(),
            command: config.command.clone(),
        },
        wall_stock_ms: &wall[0],
        wall_ppyc_ms: &wall[1],
        stock_runs: &profiled[0],
        ppyc_runs: &profiled[1],
        known: &known,
        memory,
    }))
}

/// The modules a bare start-up of the ppyc side imports (`python -X importtime -c pass`).
fn run_bare(config: &Config) -> Result<HashSet<String>, Error> {
    let mut cmd = Command::new(&config.python);
    cmd.args(["-X", "importtime", "-c", "pass"]);
    side_env(
        &mut cmd,
        Side::Ppyc,
        Some(&config.scratch.join("bare.jsonl")),
    );
    let out = run_captured(cmd, config.timeout).map_err(|e| Error::Spawn {
        python: config.python.clone(),
        message: e.to_string(),
    })?;
    Ok(xtime::parse(&out.stderr)
        .rows
        .into_iter()
        .map(|r| r.name)
        .collect())
}

/// Rounds of the memory measurement (sides alternate; the median round is kept).
const MEMORY_ROUNDS: usize = 3;

fn measure_memory(config: &Config, reporter: &dyn Reporter) -> Result<MemoryReport, Error> {
    reporter.on_phase("memory", 2 * MEMORY_ROUNDS * config.processes);
    let mut rounds: [Vec<Vec<memory::Sample>>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..MEMORY_ROUNDS {
        for (i, side) in [Side::Stock, Side::Ppyc].into_iter().enumerate() {
            let samples = memory_round(config, side)?;
            for _ in 0..samples.len() {
                reporter.on_run();
            }
            rounds[i].push(samples);
        }
    }
    let [stock, ppyc] = rounds;
    Ok(MemoryReport {
        processes: config.processes,
        stock: memory::summarise(&stock),
        ppyc: memory::summarise(&ppyc),
    })
}

/// The line a waiting process prints once the target is done.
const READY: &str = "@@ppyc-importtime-ready@@";

/// Prepended to the target in memory rounds: at exit, say so and wait for stdin to close,
/// so that the parent reads `/proc/PID/smaps*` of a process that has done everything.
const WAIT_PRELUDE: &str = r#"import atexit as _ppyc_a, sys as _ppyc_s
def _ppyc_wait(s=_ppyc_s):
    try:
        s.stdout.flush()
    except Exception:
        pass
    s.__stdout__.write('\n@@ppyc-importtime-ready@@\n')
    s.__stdout__.flush()
    s.__stdin__.read()
_ppyc_a.register(_ppyc_wait)
del _ppyc_a, _ppyc_s
"#;

fn memory_round(config: &Config, side: Side) -> Result<Vec<memory::Sample>, Error> {
    let code = match config.target.kind.as_str() {
        "m" => format!(
            "{WAIT_PRELUDE}import runpy\nrunpy.run_module({:?}, run_name='__main__', alter_sys=True)\n",
            config.target.value
        ),
        _ => format!("{WAIT_PRELUDE}{}\n", config.target.value),
    };
    let mut children: Vec<Child> = Vec::new();
    let result = (|| {
        let mut readers = Vec::new();
        for _ in 0..config.processes {
            let mut cmd = Command::new(&config.python);
            cmd.args(["-c", &code]).args(&config.target.args);
            side_env(&mut cmd, side, None);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().map_err(|e| Error::Spawn {
                python: config.python.clone(),
                message: e.to_string(),
            })?;
            let stdout = child.stdout.take().expect("piped");
            let stderr = child.stderr.take().expect("piped");
            let (tx, rx) = mpsc::channel();
            // Reads stdout until the ready line, then drains it (a full pipe would block).
            thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                let mut sent = false;
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    if !sent && line.trim_end() == READY {
                        let _ = tx.send(());
                        sent = true;
                    }
                    line.clear();
                }
            });
            let err = thread::spawn(move || {
                let mut s = String::new();
                let _ = BufReader::new(stderr).read_to_string(&mut s);
                s
            });
            readers.push((rx, err));
            children.push(child);
        }
        let deadline = Instant::now() + config.timeout;
        let mut samples = Vec::new();
        let mut errs = Vec::new();
        for (n, (rx, err)) in readers.into_iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            if rx.recv_timeout(left).is_err() {
                let _ = children[n].kill();
                let status = children[n].wait().ok();
                let stderr = err.join().unwrap_or_default();
                return Err(Error::TargetFailed {
                    side: side.name(),
                    status: status.map_or_else(|| "timed out".to_owned(), |s| s.to_string()),
                    stderr: tail(&stderr, 30),
                });
            }
            samples.push(memory::read(children[n].id())?);
            errs.push(err);
        }
        Ok(samples)
    })();
    for mut child in children {
        drop(child.stdin.take());
        if result.is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
    result
}

/// The outcome of one process.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// PPYC_* variables of the caller's environment that would change what a side means.
fn clean_env(cmd: &mut Command) {
    for var in [
        "PPYC_DISABLE",
        "PPYC_PROFILE",
        "PPYC_VERBOSE",
        "PYTHONPROFILEIMPORTTIME",
    ] {
        cmd.env_remove(var);
    }
}

fn side_env(cmd: &mut Command, side: Side, profile: Option<&Path>) {
    clean_env(cmd);
    match side {
        Side::Stock => {
            cmd.env("PPYC_DISABLE", "1");
        }
        Side::Ppyc => {
            if let Some(p) = profile {
                cmd.env("PPYC_PROFILE", p);
            }
        }
    }
}

/// One run of the target; with `-X importtime` when `importtime`, and `PPYC_PROFILE` set
/// to `profile` (the ppyc side of a profiled pair).
fn run_once(
    config: &Config,
    side: Side,
    importtime: bool,
    profile: Option<&Path>,
) -> Result<Output, Error> {
    let mut cmd = Command::new(&config.python);
    if importtime {
        cmd.args(["-X", "importtime"]);
    }
    match config.target.kind.as_str() {
        "m" => cmd.args(["-m", &config.target.value]),
        _ => cmd.args(["-c", &config.target.value]),
    };
    cmd.args(&config.target.args);
    side_env(&mut cmd, side, profile);
    run_captured(cmd, config.timeout).map_err(|e| Error::Spawn {
        python: config.python.clone(),
        message: e.to_string(),
    })
}

fn check_ok(side: Side, out: &Output) -> Result<(), Error> {
    if out.status.success() {
        return Ok(());
    }
    let own: Vec<String> = xtime::parse(&out.stderr).other;
    Err(Error::TargetFailed {
        side: side.name(),
        status: out.status.to_string(),
        stderr: tail(&own.join("\n"), 30),
    })
}

/// The last `n` lines of a text.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a command to completion with stdout and stderr captured, stdin empty; kills it
/// after `timeout`. Wall time is from just before the spawn to the reaping.
pub fn run_captured(mut cmd: Command, timeout: Duration) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_thread = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_thread = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if done_rx.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
            // The child is not reaped before `wait` below returns, so the pid is still its.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            true
        } else {
            false
        }
    });
    let status = child.wait()?;
    let elapsed = start.elapsed();
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let stdout = String::from_utf8_lossy(&out_thread.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
    if timed_out {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "timed out after {:.0} s; its stderr: {}",
                timeout.as_secs_f64(),
                tail(&stderr, 20)
            ),
        ));
    }
    Ok(Output {
        status,
        stdout,
        stderr,
        elapsed,
    })
}
