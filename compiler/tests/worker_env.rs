//! The environment of the compile workers: no `PYTHON*` or `PPYC_*` variable of the caller
//! reaches them (issue 13: workers inherited `PPYC_PROFILE` and `PPYC_VERBOSE`, and
//! appended to the user's profile file). Its own test binary: the variables are set in
//! this process, before any other thread runs.

mod common;

use std::os::unix::fs::PermissionsExt;

use ppyc_compiler::workers::{Timeouts, WorkerPool};

#[test]
fn workers_get_no_ppyc_or_python_variable_of_the_caller() {
    let pythons = common::pythons();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.jsonl");
    // SAFETY: this binary's only test, and no thread of it has started yet: nothing reads
    // the environment concurrently.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("PPYC_PROFILE", &profile);
        std::env::set_var("PPYC_VERBOSE", "1");
        std::env::set_var("PPYC_CHECK", "hash");
        std::env::set_var("PYTHONPATH", dir.path().join("nowhere"));
        std::env::set_var("PYTHONWARNINGS", "error");
    }
    for (i, python) in pythons.iter().enumerate() {
        let dump = dir.path().join(format!("env-{i}"));
        let wrapper = dir.path().join(format!("python-{i}"));
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nenv > '{}'\nexec '{}' \"$@\"\n",
                dump.display(),
                python.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pool = WorkerPool::start(&wrapper, 1, Timeouts::default())
            .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
        drop(pool);
        let env = std::fs::read_to_string(&dump).unwrap();
        let mut passed: Vec<&str> = env
            .lines()
            .filter(|l| l.starts_with("PPYC_") || l.starts_with("PYTHON"))
            .collect();
        passed.sort_unstable();
        assert_eq!(
            passed,
            [
                "PPYC_DISABLE=1",
                "PYTHONHASHSEED=0",
                "PYTHONSAFEPATH=1",
                "PYTHONUNBUFFERED=1"
            ],
            "{}",
            python.display()
        );
    }
    assert!(
        !profile.exists(),
        "a worker wrote the caller's profile file"
    );
}
