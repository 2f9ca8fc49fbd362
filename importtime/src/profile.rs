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
    /// Marshal mode: `marshal.loads` of the payload.
    #[serde(default)]
    pub unmarshal_ns: u64,
    /// Image mode: validating and relocating the image.
    #[serde(default)]
    pub relocate_ns: u64,
    /// Image mode: binding the image's identifiers to this process's interned strings.
    #[serde(default)]
    pub bind_ns: u64,
    /// How a served module's code was loaded: `image` or `marshal` (absent when the
    /// module was not served, and in profiles of runtimes before image mode).
    #[serde(default)]
    pub mode: Option<String>,
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
        assert_eq!(p["a"].mode, None);
        assert_eq!((p["a"].relocate_ns, p["a"].bind_ns), (0, 0));
        assert!(matches!(
            parse("{").unwrap_err(),
            Error::Profile { line: 1, .. }
        ));
    }

    #[test]
    fn image_mode_lines() {
        // As `python/ppyc/_hook.py` writes them, in its key order.
        let p = parse(
            "{\"pid\": 9, \"module\": \"m\", \"served\": true, \"find_ns\": 1200, \
             \"check_ns\": 300, \"read_ns\": 400, \"relocate_ns\": 2500, \"bind_ns\": 700, \
             \"mode\": \"image\", \"exec_ns\": 9000}\n\
             {\"pid\": 9, \"module\": \"n\", \"served\": true, \"read_ns\": 5, \
             \"unmarshal_ns\": 6, \"mode\": \"marshal\", \"exec_ns\": 7}\n",
        )
        .unwrap();
        let m = &p["m"];
        assert_eq!(m.mode.as_deref(), Some("image"));
        assert_eq!(
            (
                m.check_ns,
                m.read_ns,
                m.relocate_ns,
                m.bind_ns,
                m.unmarshal_ns
            ),
            (300, 400, 2500, 700, 0)
        );
        assert_eq!(p["n"].mode.as_deref(), Some("marshal"));
        assert_eq!((p["n"].unmarshal_ns, p["n"].relocate_ns), (6, 0));
    }
}
