//! `ppyc_compiler::workers` against every installed CPython: what the pool compiles is what
//! `py_compile` produces, failures are per file, timeouts and crashes replace the worker,
//! and no process outlives the pool.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ppyc_compiler::pyc::{InvalidationMode, OptLevel, PycHeader, cache_path};
use ppyc_compiler::workers::{
    CompileFailure, CompileJob, CompileResult, CompiledPyc, Timeouts, WorkerError, WorkerPool,
};

const MODES: [InvalidationMode; 3] = [
    InvalidationMode::Timestamp,
    InvalidationMode::CheckedHash,
    InvalidationMode::UncheckedHash,
];

const MODULE: &str = r#""""Module doc."""
import os


def f(x):
    """Function doc."""
    assert x, "no"
    if __debug__:
        return "debug"
    return "optimized"


class C:
    """Class doc."""

    def m(self):
        return [i * i for i in range(3)]
"#;

fn run_py(python: &Path, script: &str, args: &[&OsStr]) -> String {
    let out = Command::new(python)
        .args(["-I", "-B", "-c", script])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{} failed: {}\n{}",
        python.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python printed UTF-8")
}

fn start(python: &Path, workers: usize) -> WorkerPool {
    WorkerPool::start(python, workers, Timeouts::default())
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()))
}

fn path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

fn mode_name(mode: InvalidationMode) -> &'static str {
    match mode {
        InvalidationMode::Timestamp => "TIMESTAMP",
        InvalidationMode::CheckedHash => "CHECKED_HASH",
        InvalidationMode::UncheckedHash => "UNCHECKED_HASH",
    }
}

fn expect_ok<'a>(job: &CompileJob, result: &'a CompileResult) -> &'a CompiledPyc {
    match result {
        Ok(compiled) => compiled,
        Err(failure) => panic!("{}: {failure}", job.source.display()),
    }
}

/// Whether a process exists (alive or zombie).
fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Compiles sources with py_compile (`doraise=True`) into reference files.
/// Each item: (source, reference cfile, optimize, mode).
fn py_compile_all(python: &Path, items: &[(PathBuf, PathBuf, OptLevel, InvalidationMode)]) {
    let mut args: Vec<&OsStr> = Vec::new();
    let levels: Vec<String> = items.iter().map(|i| i.2.as_u8().to_string()).collect();
    for (item, level) in items.iter().zip(&levels) {
        args.push(item.0.as_os_str());
        args.push(item.1.as_os_str());
        args.push(OsStr::new(level));
        args.push(OsStr::new(mode_name(item.3)));
    }
    run_py(
        python,
        "import sys, py_compile\n\
         a = sys.argv[1:]\n\
         for i in range(0, len(a), 4):\n\
         \x20   py_compile.compile(a[i], cfile=a[i + 1], optimize=int(a[i + 2]), doraise=True,\n\
         \x20                      invalidation_mode=py_compile.PycInvalidationMode[a[i + 3]])\n",
        &args,
    );
}

/// For each (ours, reference) pyc file pair: whether the marshalled code objects are equal
/// (including `co_filename`, recursively), and what running the module shows about
/// docstrings and asserts.
const COMPARE_SCRIPT: &str = r#"
import marshal, sys

def same(a, b):
    if type(a) is not type(b):
        return False
    if hasattr(a, "co_code"):
        return (a == b and a.co_filename == b.co_filename and a.co_name == b.co_name
                and len(a.co_consts) == len(b.co_consts)
                and all(same(x, y) for x, y in zip(a.co_consts, b.co_consts)))
    return a == b

def behaviour(code):
    ns = {"__name__": "m"}
    exec(code, ns)
    try:
        ns["f"](0)
        asserts = False
    except AssertionError:
        asserts = True
    return "doc=%s fdoc=%s cdoc=%s asserts=%s debug=%s" % (
        ns.get("__doc__") is not None, ns["f"].__doc__ is not None, ns["C"].__doc__ is not None,
        asserts, ns["f"](1) == "debug")

a = sys.argv[1:]
for ours, ref in zip(a[::2], a[1::2]):
    x = marshal.loads(open(ours, "rb").read()[16:])
    y = marshal.loads(open(ref, "rb").read()[16:])
    print(same(x, y), behaviour(x), "|", behaviour(y))
"#;

#[test]
fn compiles_exactly_like_py_compile() {
    for python in common::pythons() {
        let pool = start(&python, 2);
        let tag = pool.interpreter().cache_tag.clone();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let refs = root.join("refs");
        std::fs::create_dir_all(&refs).expect("mkdir");
        let sources = [
            root.join("plain.py"),
            root.join(path(b"pkg/new\nline \xc3\xbc.py")),
            root.join(path(b"raw\xff/m.py")),
        ];
        for source in &sources {
            std::fs::create_dir_all(source.parent().expect("parent")).expect("mkdir");
            std::fs::write(source, MODULE).expect("write");
        }
        let mut jobs = Vec::new();
        let mut items = Vec::new();
        for source in &sources {
            for level in OptLevel::ALL {
                for mode in MODES {
                    let reference = refs.join(format!("{}.pyc", items.len()));
                    items.push((source.clone(), reference, level, mode));
                    // Each mode gets its own cfile location (cache_path is per level only).
                    let cfile = cache_path(source, &tag, level)
                        .with_extension(format!("{}.pyc", mode.as_str()));
                    jobs.push(
                        CompileJob::new(source.clone(), Some(cfile), level)
                            .with_invalidation_mode(mode),
                    );
                }
            }
        }
        py_compile_all(&python, &items);
        let mut seen = 0;
        let results = pool.compile_all(jobs.clone(), |_, _| seen += 1);
        assert_eq!(seen, jobs.len());
        let mut compare_args = Vec::new();
        for ((job, result), item) in results.iter().zip(&items) {
            assert_eq!(job.source, item.0);
            let compiled = expect_ok(job, result);
            assert!(compiled.written, "{}", job.source.display());
            assert_eq!(compiled.write_error, None);
            let cfile = job.cfile.as_ref().expect("cfile");
            assert_eq!(std::fs::read(cfile).expect("written"), compiled.pyc);
            let reference = std::fs::read(&item.1).expect("py_compile wrote");
            // Same header: magic, flags, and mtime+size or source hash.
            let ours = PycHeader::parse(&compiled.pyc).expect("header");
            let theirs = PycHeader::parse(&reference).expect("header");
            assert_eq!(ours, theirs, "{}: {:?}", python.display(), item);
            assert_eq!(ours.magic(), pool.interpreter().magic);
            compare_args.push(cfile.clone().into_os_string());
            compare_args.push(item.1.clone().into_os_string());
        }
        let args: Vec<&OsStr> = compare_args.iter().map(|a| a.as_os_str()).collect();
        let out = run_py(&python, COMPARE_SCRIPT, &args);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), items.len());
        for (line, item) in lines.iter().zip(&items) {
            let (same, rest) = line.split_once(' ').expect("two parts");
            assert_eq!(
                same,
                "True",
                "{}: code differs for {item:?}",
                python.display()
            );
            let (ours, theirs) = rest.split_once(" | ").expect("behaviours");
            assert_eq!(ours, theirs);
            let expected = match item.2 {
                OptLevel::Zero => "doc=True fdoc=True cdoc=True asserts=True debug=True",
                OptLevel::One => "doc=True fdoc=True cdoc=True asserts=False debug=False",
                OptLevel::Two => "doc=False fdoc=False cdoc=False asserts=False debug=False",
            };
            assert_eq!(ours, expected, "{}: {item:?}", python.display());
        }
    }
}

#[test]
fn coding_cookie_and_warnings() {
    for python in common::pythons() {
        let pool = start(&python, 1);
        let dir = tempfile::tempdir().expect("tempdir");
        let latin = dir.path().join("latin.py");
        std::fs::write(
            &latin,
            b"# -*- coding: latin-1 -*-\ns = '\xe9t\xe9'\n".as_slice(),
        )
        .expect("write");
        let escape = dir.path().join("escape.py");
        std::fs::write(&escape, b"import re\np = re.compile('\\d+')\n").expect("write");
        let results = pool.compile_all(
            vec![
                CompileJob::new(latin.clone(), None, OptLevel::Zero),
                CompileJob::new(escape.clone(), None, OptLevel::Zero),
            ],
            |_, _| {},
        );
        let latin_pyc = expect_ok(&results[0].0, &results[0].1);
        assert!(!latin_pyc.written);
        assert_eq!(latin_pyc.write_error, None);
        let pyc_file = dir.path().join("latin.pyc");
        std::fs::write(&pyc_file, &latin_pyc.pyc).expect("write");
        let value = run_py(
            &python,
            "import marshal, sys\n\
             ns = {}\n\
             exec(marshal.loads(open(sys.argv[1], 'rb').read()[16:]), ns)\n\
             print(ascii(ns['s']))\n",
            &[pyc_file.as_os_str()],
        );
        assert_eq!(value.trim(), r"'\xe9t\xe9'", "{}", python.display());
        let warned = expect_ok(&results[1].0, &results[1].1);
        assert!(
            warned
                .warnings
                .iter()
                .any(|w| w.contains("invalid escape sequence") && w.contains(":2: ")),
            "{}: {:?}",
            python.display(),
            warned.warnings
        );
    }
}

/// Each failure kind, checked against the exception `py_compile` reports for the same file.
#[test]
fn failures_are_per_file_and_match_py_compile() {
    for python in common::pythons() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Permission bits must keep the workers (and py_compile) out, even in CI as root.
        let bin = tempfile::tempdir().expect("tempdir");
        let python = common::unprivileged(&python, bin.path());
        let pool = start(&python, 2);
        let tag = pool.interpreter().cache_tag.clone();
        let d = dir.path();
        let write = |name: &str, content: &[u8]| {
            let p = d.join(name);
            std::fs::write(&p, content).expect("write");
            p
        };
        let syntax = write("syntax.py", b"x = 1\ndef f(:\n    pass\n");
        let indent = write("indent.py", b"if True:\nx = 1\n");
        let not_utf8 = write("latin_no_cookie.py", b"s = '\xe9'\n");
        let bad_cookie = write("bad_cookie.py", b"# coding: no-such-codec\nx = 1\n");
        let nul = write("nul.py", b"x = 1\0\n");
        let good = write("good.py", b"x = 1\n");
        let directory = d.join("directory.py");
        std::fs::create_dir(&directory).expect("mkdir");
        let missing = d.join("missing.py");
        let mut unreadable = vec![directory.clone(), missing.clone()];
        // chmod 000 keeps out everyone but root with its capabilities.
        let denied = write("denied.py", b"x = 1\n");
        std::fs::set_permissions(&denied, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        unreadable.push(denied.clone());
        let compile_errors = [syntax.clone(), indent, not_utf8, bad_cookie, nul];
        let mut sources: Vec<PathBuf> = compile_errors.to_vec();
        sources.extend(unreadable.iter().cloned());
        sources.push(good.clone());
        let jobs: Vec<CompileJob> = sources
            .iter()
            .map(|s| {
                CompileJob::new(
                    s.clone(),
                    Some(cache_path(s, &tag, OptLevel::Zero)),
                    OptLevel::Zero,
                )
            })
            .collect();
        let results = pool.compile_all(jobs, |_, _| {});

        // What py_compile says about each.
        let args: Vec<&OsStr> = sources.iter().map(|s| s.as_os_str()).collect();
        let out = run_py(
            &python,
            "import sys, py_compile\n\
             for p in sys.argv[1:]:\n\
             \x20   try:\n\
             \x20       py_compile.compile(p, cfile=p + '.ref.pyc', doraise=True)\n\
             \x20       print('ok')\n\
             \x20   except py_compile.PyCompileError as e:\n\
             \x20       print(e.exc_type_name, getattr(e.exc_value, 'lineno', None))\n\
             \x20   except OSError as e:\n\
             \x20       print(type(e).__name__, None)\n",
            &args,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), sources.len());
        for ((job, result), line) in results.iter().zip(lines) {
            let what = format!("{}: {}", python.display(), job.source.display());
            let (exc, lineno) = line.split_once(' ').unwrap_or((line, ""));
            match result {
                Ok(compiled) => {
                    assert_eq!(line, "ok", "{what}");
                    assert!(compiled.written, "{what}");
                }
                Err(failure) => {
                    assert_eq!(failure.path(), job.source, "{what}");
                    // No pyc for a failed file.
                    assert!(!job.cfile.as_ref().expect("cfile").exists(), "{what}");
                    match failure {
                        CompileFailure::Syntax {
                            exception, line, ..
                        } => {
                            assert_eq!(exception, exc, "{what}");
                            assert_eq!(
                                line.map_or("None".to_owned(), |l| l.to_string()),
                                lineno,
                                "{what}"
                            );
                            let prefix = match line {
                                Some(l) => format!("{}:{l}: ", job.source.display()),
                                None => format!("{}: ", job.source.display()),
                            };
                            assert!(
                                failure.to_string().starts_with(&prefix),
                                "{what}: {failure}"
                            );
                        }
                        CompileFailure::Unreadable { exception, .. }
                        | CompileFailure::Compile { exception, .. } => {
                            assert_eq!(exception, exc, "{what}");
                        }
                        other => panic!("{what}: unexpected {other}"),
                    }
                }
            }
        }
        // The kinds are the expected ones.
        assert!(matches!(
            &results[0].1,
            Err(CompileFailure::Syntax { line: Some(2), .. })
        ));
        assert_eq!(
            results[0].1.as_ref().err().map(ToString::to_string),
            Some(format!("{}:2: invalid syntax", syntax.display()))
        );
        assert!(
            matches!(&results[1].1, Err(CompileFailure::Syntax { exception, .. }) if exception == "IndentationError")
        );
        for (job, result) in &results[compile_errors.len()..sources.len() - 1] {
            assert!(
                matches!(result, Err(CompileFailure::Unreadable { .. })),
                "{}: {result:?}",
                job.source.display()
            );
        }
        // The file of mode 000 was refused for its permissions, as py_compile refuses it.
        let (job, result) = &results[compile_errors.len() + 2];
        assert_eq!(job.source, denied);
        assert!(
            matches!(result, Err(CompileFailure::Unreadable { exception, .. }) if exception == "PermissionError"),
            "{}: {result:?}",
            python.display()
        );
        assert!(results.last().is_some_and(|(_, r)| r.is_ok()));
    }
}

#[test]
fn unwritable_cfile_is_not_an_error() {
    for python in common::pythons() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = tempfile::tempdir().expect("tempdir");
        let python = common::unprivileged(&python, bin.path());
        let pool = start(&python, 1);
        let tag = pool.interpreter().cache_tag.clone();
        let mut jobs = Vec::new();
        // `__pycache__` is a regular file: the directory cannot be created, even by root.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).expect("mkdir");
        std::fs::write(blocked.join("__pycache__"), b"not a dir").expect("write");
        let source = blocked.join("m.py");
        std::fs::write(&source, "x = 1\n").expect("write");
        jobs.push(CompileJob::new(
            source.clone(),
            Some(cache_path(&source, &tag, OptLevel::Zero)),
            OptLevel::Zero,
        ));
        // The cfile is a symlink: py_compile refuses to replace it.
        let linked = dir.path().join("linked");
        std::fs::create_dir_all(linked.join("__pycache__")).expect("mkdir");
        let source = linked.join("m.py");
        std::fs::write(&source, "x = 1\n").expect("write");
        let cfile = cache_path(&source, &tag, OptLevel::Zero);
        symlink(dir.path().join("elsewhere.pyc"), &cfile).expect("symlink");
        jobs.push(CompileJob::new(source, Some(cfile), OptLevel::Zero));
        // A read-only directory keeps out everyone but root with its capabilities.
        let readonly = dir.path().join("readonly");
        std::fs::create_dir(&readonly).expect("mkdir");
        let source = readonly.join("m.py");
        std::fs::write(&source, "x = 1\n").expect("write");
        std::fs::set_permissions(&readonly, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        jobs.push(CompileJob::new(
            source.clone(),
            Some(cache_path(&source, &tag, OptLevel::Zero)),
            OptLevel::Zero,
        ));
        let results = pool.compile_all(jobs, |_, _| {});
        for (job, result) in &results {
            let compiled = expect_ok(job, result);
            assert!(!compiled.written, "{}", job.source.display());
            assert!(compiled.write_error.is_some(), "{}", job.source.display());
            assert_eq!(
                PycHeader::parse(&compiled.pyc).expect("header").magic(),
                pool.interpreter().magic
            );
            assert!(compiled.pyc.len() > 16);
        }
        assert!(!dir.path().join("elsewhere.pyc").exists());
        assert!(
            std::fs::symlink_metadata(results[1].0.cfile.as_ref().expect("cfile"))
                .expect("still there")
                .file_type()
                .is_symlink()
        );
        assert_eq!(results.len(), 3);
        assert!(!results[2].0.cfile.as_ref().expect("cfile").exists());
        std::fs::set_permissions(&readonly, std::fs::Permissions::from_mode(0o755))
            .expect("chmod back");
    }
}

/// A FIFO without a writer blocks `open()` for ever: a real hang, no test hook needed.
fn make_fifo(python: &Path, at: &Path) {
    run_py(
        python,
        "import os, sys; os.mkfifo(sys.argv[1])",
        &[at.as_os_str()],
    );
}

#[test]
fn timeout_kills_and_replaces_the_worker() {
    for python in common::pythons() {
        let timeouts = Timeouts {
            startup: Some(Duration::from_secs(60)),
            per_file: Some(Duration::from_millis(700)),
        };
        let pool = WorkerPool::start(&python, 1, timeouts).expect("start");
        let [first_pid] = pool.worker_pids()[..] else {
            panic!("one worker");
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("hang.py");
        make_fifo(&python, &fifo);
        let good = dir.path().join("good.py");
        std::fs::write(&good, "x = 1\n").expect("write");
        let started = Instant::now();
        let results = pool.compile_all(
            vec![
                CompileJob::new(good.clone(), None, OptLevel::Zero),
                CompileJob::new(fifo.clone(), None, OptLevel::Zero),
                CompileJob::new(good.clone(), None, OptLevel::Zero),
            ],
            |_, _| {},
        );
        assert!(results[0].1.is_ok());
        match &results[1].1 {
            Err(CompileFailure::Timeout { path, elapsed, .. }) => {
                assert_eq!(path, &fifo);
                assert!(*elapsed >= Duration::from_millis(700));
            }
            other => panic!("{}: expected a timeout, got {other:?}", python.display()),
        }
        assert!(
            results[2].1.is_ok(),
            "{}: {:?}",
            python.display(),
            results[2].1
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        // The hung worker was killed and reaped; a new one took over.
        assert!(!process_exists(first_pid));
        let [second_pid] = pool.worker_pids()[..] else {
            panic!("one worker");
        };
        assert_ne!(first_pid, second_pid);
        drop(pool);
        assert!(!process_exists(second_pid));
    }
}

#[test]
fn crashed_worker_is_reported_and_replaced() {
    for python in common::pythons() {
        let pool = start(&python, 1);
        let [pid] = pool.worker_pids()[..] else {
            panic!("one worker");
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("hang.py");
        make_fifo(&python, &fifo);
        let good = dir.path().join("good.py");
        std::fs::write(&good, "x = 1\n").expect("write");
        // Kill the worker while it hangs on the FIFO.
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .expect("kill")
        });
        let results = pool.compile_all(
            vec![
                CompileJob::new(fifo.clone(), None, OptLevel::Zero),
                CompileJob::new(good.clone(), None, OptLevel::Zero),
            ],
            |_, _| {},
        );
        assert!(killer.join().expect("killer").success());
        match &results[0].1 {
            Err(failure @ CompileFailure::WorkerCrashed { reason, .. }) => {
                assert!(reason.contains("signal: 9"), "{failure}");
                assert!(failure.to_string().contains("hang.py"));
            }
            other => panic!("{}: expected a crash, got {other:?}", python.display()),
        }
        assert!(results[1].1.is_ok());
        assert!(!process_exists(pid));
    }
}

#[test]
fn startup_failures_are_typed_errors_with_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    };
    let failing = fake("failing", "echo 'fatal: no encodings module' >&2; exit 3");
    match WorkerPool::start(&failing, 2, Timeouts::default()) {
        Err(err @ WorkerError::Handshake { .. }) => {
            let text = err.to_string();
            assert!(text.contains("exit status: 3"), "{text}");
            assert!(text.contains("fatal: no encodings module"), "{text}");
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }
    let chatty = fake("chatty", "echo 'Python 9.9'");
    assert!(matches!(
        WorkerPool::start(&chatty, 1, Timeouts::default()),
        Err(WorkerError::Handshake { .. })
    ));
    let slow = fake("slow", "exec sleep 30");
    let started = Instant::now();
    let timeouts = Timeouts {
        startup: Some(Duration::from_millis(300)),
        per_file: None,
    };
    assert!(matches!(
        WorkerPool::start(&slow, 1, timeouts),
        Err(WorkerError::StartupTimeout { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        WorkerPool::start(&dir.path().join("missing"), 1, Timeouts::default()),
        Err(WorkerError::Spawn { .. })
    ));
}

#[test]
fn five_hundred_files_through_two_workers() {
    for python in common::pythons() {
        let pool = start(&python, 2);
        assert_eq!(pool.size(), 2);
        let tag = pool.interpreter().cache_tag.clone();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut jobs = Vec::new();
        for i in 0..500 {
            let package = dir.path().join(format!("pkg{}", i % 10));
            std::fs::create_dir_all(&package).expect("mkdir");
            let source = package.join(format!("mod{i}.py"));
            std::fs::write(
                &source,
                format!("VALUE = {i}\n\ndef f():\n    return VALUE * 2\n"),
            )
            .expect("write");
            let cfile = cache_path(&source, &tag, OptLevel::Zero);
            jobs.push(CompileJob::new(source, Some(cfile), OptLevel::Zero));
        }
        let mut reported = std::collections::HashSet::new();
        let results = pool.compile_all(jobs.clone(), |job, result| {
            assert!(result.is_ok());
            assert!(reported.insert(job.source.clone()), "reported twice");
        });
        assert_eq!(reported.len(), 500);
        assert_eq!(results.len(), 500);
        for ((job, result), expected) in results.iter().zip(&jobs) {
            assert_eq!(job, expected);
            let compiled = expect_ok(job, result);
            assert!(compiled.written);
            assert_eq!(
                std::fs::read(job.cfile.as_ref().expect("cfile")).expect("written"),
                compiled.pyc
            );
        }
        // The pool is reusable, and an empty batch is fine.
        assert!(pool.compile_all(Vec::new(), |_, _| {}).is_empty());
        assert!(pool.compile(jobs[0].clone()).is_ok());
        let pids = pool.worker_pids();
        assert_eq!(pids.len(), 2);
        drop(pool);
        for pid in pids {
            assert!(!process_exists(pid), "worker {pid} outlived the pool");
        }
    }
}
