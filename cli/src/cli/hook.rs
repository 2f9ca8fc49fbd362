//! The commands that turn the import hook on and off and report on it: `enable`,
//! `disable`, `status`. The facts come from the running interpreter (`ppyc._status`);
//! this module only decides and prints.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use pyo3::prelude::*;
use serde_json::Value;

use super::args::{EnableArgs, StatusArgs};
use super::{SUCCESS, human_bytes, out};

/// How many stale or missing modules `status` names per pack without `--verbose`.
const SHOWN: usize = 5;

/// `ppyc._status.collect(optimize)`, as JSON (`None`: this run's `sys.flags.optimize`).
fn collect(py: Python<'_>, optimize: Option<u8>) -> anyhow::Result<Value> {
    let json = py
        .import("json")
        .and_then(|json| {
            let data = py
                .import("ppyc._status")?
                .call_method1("collect", (optimize,))?;
            json.call_method1("dumps", (data,))?.extract::<String>()
        })
        .map_err(|e| anyhow::anyhow!("cannot describe this interpreter: {e}"))?;
    Ok(serde_json::from_str(&json)?)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn python_attr(py: Python<'_>, module: &str, attr: &str) -> anyhow::Result<String> {
    py.import(module)
        .and_then(|m| m.getattr(attr)?.extract::<String>())
        .map_err(|e| anyhow::anyhow!("cannot read {module}.{attr}: {e}"))
}

pub(crate) fn enable(py: Python<'_>, args: &EnableArgs) -> anyhow::Result<i32> {
    let status = collect(py, None)?;
    let python = status["python"].as_str().unwrap_or("python").to_owned();
    let site = strings(&status["site_dirs"]);
    let purelib = site
        .first()
        .map(PathBuf::from)
        .context("this interpreter has no site-packages directory")?;
    let pth = purelib.join(python_attr(py, "ppyc._status", "PTH_NAME")?);
    let line = py
        .import("ppyc._status")
        .and_then(|m| {
            m.call_method1("pth_line", (!args.no_auto_refresh,))?
                .extract::<String>()
        })
        .map_err(|e| anyhow::anyhow!("cannot make the .pth line: {e}"))?;
    ppyc_format::write_atomic(&pth, line.as_bytes())
        .with_context(|| format!("cannot enable ppyc for `{python}`"))?;
    // A `.pth` file of an older ppyc, under the name it had then.
    for old in strings(&status["enabled"]) {
        if std::path::Path::new(&old) != pth {
            std::fs::remove_file(&old).with_context(|| format!("cannot remove `{old}`"))?;
        }
    }
    out!("ppyc enabled for `{python}`: wrote `{}`", pth.display());
    out!(
        "Every run of this interpreter now imports from packs; `PPYC_DISABLE=1` runs one without."
    );
    if args.no_auto_refresh {
        out!("Stale packs are not rebuilt in the background: run `ppyc compile` after changes.");
    } else {
        out!(
            "A pack whose modules changed is rebuilt in the background (`ppyc enable --no-auto-refresh` turns that off)."
        );
    }
    let packed = status["sys_path"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["packs"].as_array().is_some_and(|p| !p.is_empty()));
    if !packed {
        out!(
            "No directory on sys.path has a pack yet: run `ppyc compile` (and `ppyc compile --stdlib`)."
        );
    }
    Ok(SUCCESS)
}

/// `ppyc disable`; with `clean`, then `ppyc clean` of every directory on `sys.path`.
pub(crate) fn disable(py: Python<'_>, clean: bool) -> anyhow::Result<i32> {
    let status = collect(py, None)?;
    let python = status["python"].as_str().unwrap_or("python").to_owned();
    let files = strings(&status["enabled"]);
    if files.is_empty() {
        out!("ppyc is not enabled for `{python}`.");
    } else {
        for f in &files {
            std::fs::remove_file(f).with_context(|| format!("cannot remove `{f}`"))?;
            out!("Removed `{f}`.");
        }
        if clean {
            out!("ppyc disabled for `{python}`: the stock importer runs.");
        } else {
            out!(
                "ppyc disabled for `{python}`: the stock importer runs; packs stay on disk \
                 (`ppyc clean` or `ppyc disable --clean` removes them)."
            );
        }
    }
    if !clean {
        return Ok(SUCCESS);
    }
    // Every directory on `sys.path` (the standard library included), as `status` lists it.
    let dirs: Vec<(PathBuf, bool)> = status["sys_path"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["dir"].as_str())
        .map(|d| (PathBuf::from(d), false))
        .collect();
    let tag = status["cache_tag"]
        .as_str()
        .context("cannot read this interpreter's cache tag")?
        .to_owned();
    let prefix: Option<PathBuf> = py.import("sys")?.getattr("pycache_prefix")?.extract()?;
    Ok(py.detach(move || super::clean::clean_dirs(&dirs, &tag, prefix.as_deref(), true)))
}

fn names(list: &[String], verbose: bool) -> String {
    if verbose || list.len() <= SHOWN {
        list.join(", ")
    } else {
        format!(
            "{}, … ({} more; --verbose lists all)",
            list[..SHOWN].join(", "),
            list.len() - SHOWN
        )
    }
}

pub(crate) fn status(py: Python<'_>, args: &StatusArgs) -> anyhow::Result<i32> {
    let status = collect(py, args.optimize)?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(SUCCESS);
    }
    let s = |k: &str| status[k].as_str().unwrap_or("?").to_owned();
    out!(
        "Interpreter: {} (CPython {}, {}, optimize {})",
        s("python"),
        s("version"),
        s("cache_tag"),
        status["optimize"]
    );
    let enabled = strings(&status["enabled"]);
    if enabled.is_empty() {
        out!("Enabled:     no (`ppyc enable` turns it on for every run)");
    } else {
        out!("Enabled:     yes, by `{}`", enabled.join("`, `"));
    }
    let active = status["installed"].as_bool().unwrap_or(false);
    let hook = if active {
        "active in this process".to_owned()
    } else if status["disabled_by_env"].as_bool().unwrap_or(false) {
        "not active: PPYC_DISABLE is set".to_owned()
    } else if enabled.is_empty() {
        "not active".to_owned()
    } else {
        "not active (the interpreter ran without site, or the hook failed to load)".to_owned()
    };
    out!("Hook:        {hook}");
    out!("Mode:        {} ({})", s("mode"), s("mode_reason"));
    out!("Freshness:   {} (PPYC_CHECK)", s("check"));
    let refresh = &status["auto_refresh"];
    if refresh["enabled"].as_bool().unwrap_or(false) {
        out!("Refresh:     automatic (a pack whose modules changed is rebuilt in the background)");
    } else {
        out!(
            "Refresh:     off ({}): run `ppyc compile` after changes",
            refresh["off"].as_str().unwrap_or("?")
        );
    }
    out!("sys.path:");
    if let Some(own) = status["left_out_entry"].as_str() {
        out!(
            "  (`{own}`, sys.path[0] of this ppyc command, is left out: every program has its own)"
        );
    }
    for entry in status["sys_path"].as_array().into_iter().flatten() {
        let dir = entry["dir"].as_str().unwrap_or("?");
        let packs = entry["packs"].as_array().cloned().unwrap_or_default();
        if packs.is_empty() {
            out!("  {dir}: no pack");
            continue;
        }
        out!("  {dir}:");
        let auto = refresh["enabled"].as_bool().unwrap_or(false);
        let mut behind = false;
        for p in packs {
            let path = p["path"].as_str().unwrap_or("?");
            let modules = p["modules"].as_u64().unwrap_or(0);
            let size = p["size"].as_u64().map(human_bytes).unwrap_or_default();
            if let Some(newer) = p["hidden_by"].as_str() {
                out!(
                    "    {path}: {modules} modules, {size}, not used: `{newer}` was written later and serves this directory"
                );
                continue;
            }
            if p["usable"].as_bool().unwrap_or(false) {
                let mode = match (p["mode"].as_str(), p["mode_reason"].as_str()) {
                    (Some("image"), _) => "image mode".to_owned(),
                    (Some(m), Some(r)) => format!("{m} mode: {r}"),
                    (Some(m), None) => format!("{m} mode"),
                    _ => "mode unknown".to_owned(),
                };
                out!("    {path}: {modules} modules, {size}, {mode}");
                let delta = &p["delta"];
                if let Some(delta_path) = delta["path"].as_str() {
                    out!(
                        "      with its delta `{delta_path}` ({}: {} changed or new since the pack was built, {} deleted)",
                        delta["file_size"]
                            .as_u64()
                            .map(human_bytes)
                            .unwrap_or_default(),
                        delta["module_count"].as_u64().unwrap_or(0),
                        delta["deleted"].as_u64().unwrap_or(0)
                    );
                }
                if let Some(why) = p["delta_problem"].as_str() {
                    out!("      its delta is NOT USED ({why}): `ppyc compile {dir}` replaces it");
                }
            } else {
                out!(
                    "    {path}: NOT USED ({})",
                    p["reason"].as_str().unwrap_or("unusable")
                );
            }
            if p["serving"].as_bool().unwrap_or(false)
                && !(strings(&p["stale"]).is_empty() && strings(&p["new"]).is_empty())
            {
                behind = true;
            }
            for (label, key) in [
                ("stale (the stock importer loads them)", "stale"),
                (
                    "new since the pack was built (the stock importer loads them)",
                    "new",
                ),
                (
                    "left out when the pack was built (`ppyc compile` says why)",
                    "left_out",
                ),
                ("deleted since the pack was built", "missing"),
                ("damaged (the stock importer loads them)", "damaged"),
            ] {
                let list = strings(&p[key]);
                if !list.is_empty() {
                    out!(
                        "      {} {label}: {}",
                        list.len(),
                        names(&list, args.verbose)
                    );
                }
            }
        }
        refresh_lines(dir, &entry["refresh"], behind, auto);
    }
    let _ = std::io::stdout().flush();
    Ok(SUCCESS)
}

/// What became of the background refresh of `dir`'s pack, and what to do when it is behind.
fn refresh_lines(dir: &str, state: &Value, behind: bool, auto: bool) {
    let when = |key: &str| {
        state[key]
            .as_f64()
            .map(|t| {
                let ago = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |now| now.as_secs_f64() - t);
                format!("{:.0} s ago", ago.max(0.0))
            })
            .unwrap_or_else(|| "at an unknown time".into())
    };
    let log = state["log"].as_str().unwrap_or("?");
    let compile = format!("run `ppyc compile {dir}`");
    if state["running"].as_bool().unwrap_or(false) {
        out!(
            "    a background refresh is running (started {}; log `{log}`)",
            when("started")
        );
        return;
    }
    match state["state"].as_str() {
        Some("failed") => {
            out!(
                "    the background refresh failed (exit {}, {}; log `{log}`): {compile} to see why",
                state["exit"],
                when("finished")
            );
            return;
        }
        Some("ok") if !behind => {
            out!("    refreshed in the background {}", when("finished"));
        }
        _ => {}
    }
    if behind {
        if auto {
            out!(
                "    to serve them again: {compile} (or import one: a refresh starts in the background)"
            );
        } else {
            out!("    to serve them again: {compile}");
        }
    }
}
