//! Helpers shared by the compiler's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Command;

/// Every CPython 3.10+ interpreter the tests should run against.
///
/// `PPYC_TEST_PYTHONS` (a `:`-separated list of executables) wins; otherwise every
/// `$(pyenv root)/versions/3.1x.y/bin/python` with x >= 0, falling back to `python3`.
pub fn pythons() -> Vec<PathBuf> {
    if let Ok(list) = std::env::var("PPYC_TEST_PYTHONS") {
        return list
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
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
