//! `ppyc importtime`: the command line around `ppyc_importtime` (runs, progress, outputs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;
use ppyc_importtime::report::Target;
use ppyc_importtime::{Config, Reporter, render};
use pyo3::prelude::*;

use super::args::ImporttimeArgs;
use super::{SUCCESS, USAGE, out};

/// The progress of the runs on stderr (a terminal only, and not under `PPYC_NO_PROGRESS`).
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Self {
        Self(super::progress::bar(
            false,
            "{prefix:>9} [{bar:30}] {pos}/{len} {elapsed}",
        ))
    }
}

impl Reporter for Bar {
    fn on_phase(&self, name: &str, total: usize) {
        self.0.reset();
        self.0.set_length(total as u64);
        self.0.set_position(0);
        self.0.set_prefix(name.to_owned());
    }

    fn on_run(&self) {
        self.0.inc(1);
    }

    fn on_finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A fresh private directory for the profile files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("ppyc-importtime-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, text: &str, what: &str) -> anyhow::Result<()> {
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the {what} to `{}`", path.display()))
}

pub(crate) fn importtime(
    py: Python<'_>,
    args: &ImporttimeArgs,
    argv: &[String],
) -> anyhow::Result<i32> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        eprintln!("error: --timeout must be a positive number of seconds");
        return Ok(USAGE);
    }
    let target = if let Some(code) = &args.code {
        let label = if code.lines().count() > 1 || code.len() > 60 {
            "-c <program>".to_owned()
        } else {
            code.clone()
        };
        Target {
            kind: "c".into(),
            value: code.clone(),
            label,
            args: args.args.clone(),
        }
    } else if let Some(module) = &args.run_module {
        Target {
            kind: "m".into(),
            value: module.clone(),
            label: format!("-m {module}"),
            args: args.args.clone(),
        }
    } else {
        let module = args.module.clone().unwrap_or_default();
        let valid = !module.is_empty()
            && module
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c == '_' || c.is_alphanumeric()));
        if !valid {
            eprintln!("error: `{module}` is not a module name (use -c for a program)");
            return Ok(USAGE);
        }
        Target {
            kind: "c".into(),
            value: format!("import {module}"),
            label: format!("import {module}"),
            args: args.args.clone(),
        }
    };
    let python = match &args.python {
        Some(p) => p.clone(),
        None => {
            let exe: String = py
                .import("sys")
                .and_then(|sys| sys.getattr("executable"))
                .and_then(|e| e.extract())
                .context("cannot find this interpreter (sys.executable)")?;
            if exe.is_empty() {
                anyhow::bail!("this interpreter does not know its executable: pass --python");
            }
            PathBuf::from(exe)
        }
    };
    let scratch = Scratch::new()?;
    let processes = args.processes.unwrap_or(1) as usize;
    let config = Config {
        python,
        target,
        runs: args.runs as usize,
        warmup: args.warmup as usize,
        memory: args.memory || args.processes.is_some(),
        processes,
        timeout: Duration::from_secs_f64(args.timeout),
        scratch: scratch.0.clone(),
        command: argv.to_vec(),
    };
    let report = py.detach(|| {
        let bar = Bar::new();
        let result = ppyc_importtime::measure(&config, &bar);
        bar.on_finish();
        result
    })?;
    if let Some(path) = &args.html {
        write(path, &render::html(&report), "HTML report")?;
    }
    if let Some(path) = &args.trace {
        let text = serde_json::to_string(&render::trace(&report)).context("trace")?;
        write(path, &text, "trace")?;
    }
    if args.json {
        let text = serde_json::to_string_pretty(&report).context("report")?;
        out!("{text}");
    } else {
        let text = render::table(&report, args.top);
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        if let Some(path) = &args.html {
            out!("\nHTML report: {}", path.display());
        }
        if let Some(path) = &args.trace {
            out!("trace: {}", path.display());
        }
    }
    Ok(SUCCESS)
}
