//! What the compiler needs to know about the target interpreter.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

/// The Python source that describes an interpreter: defines `query() -> str` (JSON), and
/// prints it when run as a script.
pub const INTERPRETER_QUERY: &str = include_str!("interpreter_query.py");

/// Errors while asking an interpreter about itself.
#[derive(Debug, thiserror::Error)]
pub enum InterpreterError {
    #[error("cannot run `{python}`: {source}")]
    Spawn {
        python: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{python}` failed to describe itself: {stderr}")]
    Failed { python: PathBuf, stderr: String },
    #[error("unexpected interpreter description: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("{0} is not supported (ppyc supports CPython 3.10 to 3.14)")]
    Unsupported(String),
}

/// A description of a CPython interpreter (see `interpreter_query.py`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Interpreter {
    /// `sys.implementation.name`.
    pub implementation: String,
    /// `sys.executable`.
    pub executable: PathBuf,
    /// `sys.hexversion`.
    pub hexversion: u32,
    /// `sys.implementation.cache_tag`.
    pub cache_tag: String,
    /// `importlib.util.MAGIC_NUMBER`.
    pub pyc_magic: [u8; 4],
    /// `sys.flags.optimize`.
    pub optimize: u8,
    /// `importlib.machinery.EXTENSION_SUFFIXES`.
    pub extension_suffixes: Vec<String>,
    /// purelib and platlib (`sysconfig.get_paths()`), venv aware, without duplicates.
    pub site_packages: Vec<PathBuf>,
    /// Directories that `.pth` files of the site directories put on `sys.path`
    /// (path-based editable installs, `.egg` directories), in the order `site` adds them.
    #[serde(default)]
    pub pth_roots: Vec<PathBuf>,
    /// The user site-packages, when enabled.
    pub user_site: Option<PathBuf>,
    /// `sysconfig.get_paths()["stdlib"]`.
    pub stdlib: PathBuf,
    /// `sysconfig.get_paths()["platstdlib"]`.
    pub platstdlib: PathBuf,
    /// `sys.prefix`.
    pub prefix: PathBuf,
    /// `sys.base_prefix`.
    pub base_prefix: PathBuf,
    /// `sys.dont_write_bytecode` (`-B`, `PYTHONDONTWRITEBYTECODE`).
    pub dont_write_bytecode: bool,
    /// `sys.pycache_prefix` (`-X pycache_prefix`, `PYTHONPYCACHEPREFIX`).
    pub pycache_prefix: Option<PathBuf>,
}

impl Interpreter {
    /// Parses the JSON printed by [`INTERPRETER_QUERY`] and checks the interpreter is one
    /// ppyc supports.
    pub fn from_json(json: &str) -> Result<Self, InterpreterError> {
        let interp: Self = serde_json::from_str(json)?;
        interp.check_supported()?;
        Ok(interp)
    }

    /// Runs `python` in a subprocess to describe it.
    pub fn query(python: &Path) -> Result<Self, InterpreterError> {
        let out = Command::new(python)
            .args(["-I", "-B", "-c", INTERPRETER_QUERY])
            .output()
            .map_err(|source| InterpreterError::Spawn {
                python: python.to_path_buf(),
                source,
            })?;
        if !out.status.success() {
            return Err(InterpreterError::Failed {
                python: python.to_path_buf(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let mut interp = Self::from_json(&String::from_utf8_lossy(&out.stdout))?;
        // `-I` hides `PYTHONPYCACHEPREFIX` from the query; the interpreter run in this
        // environment would use it (CPython ignores an empty value).
        if interp.pycache_prefix.is_none() {
            interp.pycache_prefix = std::env::var_os("PYTHONPYCACHEPREFIX")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from);
        }
        Ok(interp)
    }

    /// Major and minor version.
    #[must_use]
    pub fn version(&self) -> (u32, u32) {
        (self.hexversion >> 24, (self.hexversion >> 16) & 0xff)
    }

    fn check_supported(&self) -> Result<(), InterpreterError> {
        let (major, minor) = self.version();
        if self.implementation != "cpython" || major != 3 || !(10..=14).contains(&minor) {
            return Err(InterpreterError::Unsupported(format!(
                "{} {major}.{minor}",
                self.implementation
            )));
        }
        Ok(())
    }

    /// The pack target for code compiled at `optimize`.
    #[must_use]
    pub fn target(&self, optimize: u8) -> ppyc_format::Target {
        ppyc_format::Target {
            cache_tag: self.cache_tag.clone(),
            hexversion: self.hexversion,
            pyc_magic: self.pyc_magic,
            optimize,
        }
    }
}
