//! Helpers shared by the compiler's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every CPython 3.10+ interpreter the tests should run against.
///
/// `PPYC_TEST_PYTHONS` (a `:`-separated list of executables) wins; otherwise every
/// `$(pyenv root)/versions/3.1x.y/bin/python` with x >= 0, falling back to `python3`.
pub fn pythons() -> Vec<PathBuf> {
    if let Ok(list) = std::env::var("PPYC_TEST_PYTHONS") {
        let found: Vec<PathBuf> = list
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        // A test over no interpreter tests nothing: it must not pass.
        assert!(
            !found.is_empty(),
            "PPYC_TEST_PYTHONS is set but names no interpreter (expected CPython 3.10-3.14)"
        );
        return found;
    }
    let root = Command::new("pyenv")
        .arg("root")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut found = Vec::new();
    if let Some(root) = root {
        if let Ok(entries) = std::fs::read_dir(root.join("versions")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let mut parts = name.split('.');
                let (Some("3"), Some(minor)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let Ok(minor) = minor.parse::<u32>() else {
                    continue;
                };
                let exe = entry.path().join("bin/python");
                if (10..=14).contains(&minor) && exe.exists() {
                    found.push(exe);
                }
            }
        }
    }
    found.sort();
    if found.is_empty() {
        found.push(PathBuf::from("python3"));
    }
    found
}

/// `python` as a process that permission bits stop: `python` itself when not root; as root
/// (CI), a wrapper script in `dir` that runs it through `setpriv` without the capabilities
/// that override file permissions, as the Python tests do (`UNPRIVILEGED` in
/// `tests/python/conftest.py`), so that `chmod` keeps it out as it keeps out any user.
pub fn unprivileged(python: &Path, dir: &Path) -> PathBuf {
    #[allow(unsafe_code)]
    // SAFETY: `geteuid` has no preconditions and cannot fail (POSIX).
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        return python.to_path_buf();
    }
    let wrapper = dir.join("unprivileged-python");
    let script = format!(
        "#!/bin/sh\nexec setpriv --inh-caps=-dac_override,-dac_read_search \
         --bounding-set=-dac_override,-dac_read_search -- '{}' \"$@\"\n",
        python.display()
    );
    std::fs::write(&wrapper, script).expect("write the wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // The capabilities really are gone: a file of mode 000 cannot be opened.
    let probe = dir.join("unprivileged-probe");
    std::fs::write(&probe, b"").expect("write");
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let out = Command::new(&wrapper)
        .args(["-I", "-c", "import sys; open(sys.argv[1])"])
        .arg(&probe)
        .output()
        .expect("run setpriv (util-linux)");
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("PermissionError"),
        "{} through setpriv still opens a file of mode 000: {}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&probe).expect("remove");
    wrapper
}
