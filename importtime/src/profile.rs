//! The runtime's `PPYC_PROFILE` file: one JSON line per module a process looked for
//! through ppyc, appended at exit (`python/ppyc/_hook.py`, `_write_profile`).

use std::collections::HashMap;

use serde::Deserialize;

use crate::Error;

/// One module of one process.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Record {
    #[serde(default)]
    pub pid: u32,
    pub module: String,
    #[serde(default)]
    pub served: bool,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub find_ns: u64,
    #[serde(default)]
    pub check_ns: u64,
    #[serde(default)]
    pub read_ns: u64,
    #[serde(default)]
    pub unmarshal_ns: u64,
    /// Inclusive of the imports the module's body made.
    #[serde(default)]
    pub exec_ns: u64,
}

/// The records of one profile file, by module (a module recorded twice, which a reload
/// can do, keeps its first record).
pub fn parse(text: &str) -> Result<HashMap<String, Record>, Error> {
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(line).map_err(|e| Error::Profile {
            line: n + 1,
            message: e.to_string(),
        })?;
        out.entry(record.module.clone()).or_insert(record);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let p = parse(
            "{\"pid\": 7, \"module\": \"a\", \"served\": true, \"find_ns\": 10, \"unmarshal_ns\": 5}\n\
             \n{\"pid\": 7, \"module\": \"b\", \"served\": false, \"reason\": \"stale\"}\n",
        )
        .unwrap();
        assert_eq!(p["a"].find_ns, 10);
        assert!(p["a"].served);
        assert_eq!(p["b"].reason.as_deref(), Some("stale"));
        assert!(matches!(
            parse("{").unwrap_err(),
            Error::Profile { line: 1, .. }
        ));
    }
}
