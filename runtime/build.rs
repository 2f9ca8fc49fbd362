//! Build script of `ppyc._native`.
//!
//! 1. Version cfgs (`Py_3_12`, `Py_GIL_DISABLED`, ...) for the interpreter this extension is
//!    built for, as orjson does: C API functions that exist only in some versions are
//!    declared under them.
//! 2. When maturin builds the wheel, the command-line extension `ppyc._cli` (crate
//!    `ppyc-cli`) for the same interpreter. maturin packs exactly one cdylib per wheel (this
//!    crate's), so this runs a nested `cargo build -p ppyc-cli` and leaves
//!    `_cli<EXT_SUFFIX>` in `OUT_DIR`, from where `[tool.maturin] include = [{ from =
//!    "out-dir", ... }]` (maturin >= 1.12) puts it into the wheel next to `_native`. Outside
//!    maturin (plain `cargo build/test/clippy`) step 2 does nothing.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    probe();
    for v in [
        "PYO3_PYTHON",
        "PYO3_BUILD_EXTENSION_MODULE",
        "PYO3_ENVIRONMENT_SIGNATURE",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let (Some(python), Some(_)) = (
        env::var_os("PYO3_PYTHON"),
        env::var_os("PYO3_BUILD_EXTENSION_MODULE"),
    ) else {
        return;
    };
    let var = |name: &str| env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"));
    let ws = PathBuf::from(var("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = PathBuf::from(var("OUT_DIR"));
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out. The nested build gets
    // a target dir of its own (sharing the outer one deadlocks on its lock, cargo#8938)
    // beside it, which outlives OUT_DIR hash changes so that rebuilds are incremental.
    let ancestor = |n: usize| {
        out_dir
            .ancestors()
            .nth(n)
            .expect("OUT_DIR is <target>/<profile>/build/<pkg>/out")
    };
    let target_dir = ancestor(4).join("ppyc-cli");
    // The profile maturin builds with (`release`, or another), from OUT_DIR's path: PROFILE
    // only says "release" or "debug".
    let profile_dir = ancestor(3)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a profile directory")
        .to_owned();
    let (host, target) = (var("HOST"), var("TARGET"));
    let mut cmd = Command::new(var("CARGO"));
    cmd.current_dir(&ws)
        .args([
            "build",
            "--locked",
            "-p",
            "ppyc-cli",
            "--lib",
            "--target-dir",
        ])
        .arg(&target_dir);
    let profile = if profile_dir == "debug" {
        "dev"
    } else {
        &profile_dir
    };
    cmd.args(["--profile", profile]);
    let mut artifacts = target_dir.clone();
    if host != target {
        cmd.args(["--target", &target]);
        artifacts.push(&target);
    }
    artifacts.push(&profile_dir);
    let status = cmd.status().expect("cannot run cargo to build ppyc-cli");
    assert!(status.success(), "building the ppyc._cli extension failed");

    // Rebuild when anything the CLI was built from changes (cargo's own dep-info for it).
    let dep_info = std::fs::read_to_string(artifacts.join("lib_cli.d")).unwrap_or_default();
    for dep in dep_info
        .split_once(": ")
        .map_or("", |(_, deps)| deps)
        .split_whitespace()
    {
        println!("cargo:rerun-if-changed={dep}");
    }
    println!("cargo:rerun-if-changed={}", ws.join("Cargo.lock").display());
    println!(
        "cargo:rerun-if-changed={}",
        ws.join("cli/Cargo.toml").display()
    );

    let suffix = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))",
        ])
        .output()
        .expect("cannot ask the interpreter for EXT_SUFFIX");
    let suffix = String::from_utf8(suffix.stdout).expect("EXT_SUFFIX is text");
    install(
        &artifacts.join("lib_cli.so"),
        &out_dir,
        &format!("_cli{}", suffix.trim()),
    );
}

/// `src/ffi/layout/probe.py` compiled by the target interpreter: its `MAGIC_NUMBER`, then
/// `marshal.dumps` of the code, in `OUT_DIR/probe.marshal` (empty when the interpreter
/// cannot be run: the extension then compiles the probe at run time).
fn probe() {
    let source = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("src/ffi/layout/probe.py");
    println!("cargo:rerun-if-changed={}", source.display());
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("probe.marshal");
    let python = pyo3_build_config::get().executable().map(str::to_owned);
    let script = "import importlib.util, marshal, sys\n\
                  src = open(sys.argv[1], encoding='utf-8').read()\n\
                  code = compile(src, '<ppyc layout probe>', 'exec')\n\
                  sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER + marshal.dumps(code))\n";
    let bytes = python
        .and_then(|py| {
            Command::new(py)
                .args(["-I", "-S", "-c", script])
                .arg(&source)
                .output()
                .ok()
        })
        .filter(|o| o.status.success())
        .map(|o| o.stdout)
        .unwrap_or_default();
    std::fs::write(&out, bytes).expect("OUT_DIR is writable");
}

/// Copies the built library to `out_dir/name`, removing copies made for other interpreters.
fn install(built: &Path, out_dir: &Path, name: &str) {
    for entry in std::fs::read_dir(out_dir)
        .expect("OUT_DIR exists")
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with("_cli.") {
            std::fs::remove_file(entry.path()).expect("OUT_DIR is writable");
        }
    }
    std::fs::copy(built, out_dir.join(name)).expect("the built _cli can be copied");
}
