//! The frames between ppyc and its workers. Byte layouts are documented at the top of
//! `worker.py`; all integers are little-endian, every field is read through
//! [`ppyc_format::bytes::Cursor`].

use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use ppyc_format::ModuleImage;
use ppyc_format::bytes::{Cursor, put_blob};

use super::error::{CompileFailure, ImageFailure, WorkerError, WorkerInterpreter};
use super::{CompileJob, CompileResult, CompiledPyc, ImageJob, ImageResult};
use crate::pyc::InvalidationMode;

/// The protocol version the worker script and this crate speak; the worker announces it
/// in its `Ready` frame and the pool refuses any other.
pub(crate) const PROTOCOL_VERSION: u32 = 2;

/// Why a job got no answer from a worker.
#[derive(Debug)]
pub(crate) enum RunFailure {
    /// The request could not be encoded (e.g. a path of 4 GiB).
    Encode(String),
    /// The worker died or broke the protocol.
    Crashed { reason: String, stderr: String },
    /// The worker took too long and was killed.
    Timeout { elapsed: Duration, stderr: String },
    /// No worker could be started for it.
    NoWorker(Arc<WorkerError>),
}

/// One kind of request a worker serves.
pub(crate) trait Job: Sync {
    /// What the caller gets for it, answered or not.
    type Output: Send;
    /// The request frame (with its length prefix).
    fn encode(&self, id: u64) -> Result<Vec<u8>, String>;
    /// The answer in `frame` to request `id`; `Err` is a protocol error (the worker is
    /// then treated as crashed).
    fn decode(&self, frame: &[u8], id: u64) -> Result<Self::Output, String>;
    /// The output when no answer came.
    fn failed(&self, failure: RunFailure) -> Self::Output;
}

fn framed(payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut frame = Vec::with_capacity(payload.len() + 4);
    put_blob(&mut frame, &payload).ok_or("request over 4 GiB")?;
    Ok(frame)
}

fn truncated(c: &Cursor<'_>) -> String {
    format!("frame truncated at byte {}", c.position())
}

fn string(c: &mut Cursor<'_>) -> Result<String, String> {
    let bytes = c.blob().ok_or_else(|| truncated(c))?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn finish(c: &Cursor<'_>) -> Result<(), String> {
    if c.is_at_end() {
        Ok(())
    } else {
        Err(format!("{} unexpected trailing bytes", c.remaining()))
    }
}

/// Checks the tag and id at the start of a response; returns the tag.
fn head(c: &mut Cursor<'_>, id: u64) -> Result<u8, String> {
    let tag = c.u8().ok_or_else(|| truncated(c))?;
    let got = c.u64().ok_or_else(|| truncated(c))?;
    if got != id {
        return Err(format!("response to request {got} while waiting for {id}"));
    }
    Ok(tag)
}

impl Job for CompileJob {
    type Output = CompileResult;

    fn encode(&self, id: u64) -> Result<Vec<u8>, String> {
        let mut p = Vec::with_capacity(64 + self.source.as_os_str().len());
        p.push(b'C');
        p.extend_from_slice(&id.to_le_bytes());
        p.push(self.optimize.as_u8());
        p.push(match self.invalidation_mode {
            InvalidationMode::Timestamp => 0,
            InvalidationMode::CheckedHash => 1,
            InvalidationMode::UncheckedHash => 2,
        });
        put_blob(&mut p, self.source.as_os_str().as_bytes()).ok_or("path too long")?;
        match &self.cfile {
            Some(cfile) => {
                p.push(1);
                put_blob(&mut p, cfile.as_os_str().as_bytes()).ok_or("path too long")?;
            }
            None => p.push(0),
        }
        framed(p)
    }

    fn decode(&self, frame: &[u8], id: u64) -> Result<CompileResult, String> {
        let mut c = Cursor::new(frame);
        let tag = head(&mut c, id)?;
        let path = self.source.clone();
        let result = match tag {
            b'O' => {
                let written = match c.u8().ok_or_else(|| truncated(&c))? {
                    0 => false,
                    1 => true,
                    other => return Err(format!("bad `written` flag {other}")),
                };
                let pyc = c.blob().ok_or_else(|| truncated(&c))?.to_vec();
                let write_error = match c.u8().ok_or_else(|| truncated(&c))? {
                    0 => None,
                    _ => Some(string(&mut c)?),
                };
                let count = c.u32().ok_or_else(|| truncated(&c))?;
                let mut warnings = Vec::new();
                for _ in 0..count {
                    warnings.push(string(&mut c)?);
                }
                Ok(CompiledPyc {
                    pyc,
                    written,
                    write_error,
                    warnings,
                })
            }
            b'S' => {
                let exception = string(&mut c)?;
                let line = c.i64().ok_or_else(|| truncated(&c))?;
                let offset = c.i64().ok_or_else(|| truncated(&c))?;
                Err(CompileFailure::Syntax {
                    path,
                    exception,
                    line: u32::try_from(line).ok(),
                    offset: u32::try_from(offset).ok(),
                    message: string(&mut c)?,
                })
            }
            b'U' => Err(CompileFailure::Unreadable {
                path,
                exception: string(&mut c)?,
                message: string(&mut c)?,
            }),
            b'E' => Err(CompileFailure::Compile {
                path,
                exception: string(&mut c)?,
                message: string(&mut c)?,
            }),
            b'X' => Err(CompileFailure::Internal {
                path,
                traceback: string(&mut c)?,
            }),
            other => return Err(format!("unknown response tag {other:#04x}")),
        };
        finish(&c)?;
        Ok(result)
    }

    fn failed(&self, failure: RunFailure) -> CompileResult {
        let path = self.source.clone();
        Err(match failure {
            RunFailure::Encode(message) => CompileFailure::Unreadable {
                path,
                exception: "OSError".to_owned(),
                message,
            },
            RunFailure::Crashed { reason, stderr } => CompileFailure::WorkerCrashed {
                path,
                reason,
                stderr,
            },
            RunFailure::Timeout { elapsed, stderr } => CompileFailure::Timeout {
                path,
                elapsed,
                stderr,
            },
            RunFailure::NoWorker(error) => CompileFailure::NoWorker { path, error },
        })
    }
}

impl Job for ImageJob {
    type Output = ImageResult;

    fn encode(&self, id: u64) -> Result<Vec<u8>, String> {
        let mut p = Vec::with_capacity(16 + self.payload.len());
        p.push(b'I');
        p.extend_from_slice(&id.to_le_bytes());
        put_blob(&mut p, &self.payload).ok_or("payload over 4 GiB")?;
        framed(p)
    }

    fn decode(&self, frame: &[u8], id: u64) -> Result<ImageResult, String> {
        let mut c = Cursor::new(frame);
        let tag = head(&mut c, id)?;
        let module = self.module.clone();
        let result = match tag {
            b'M' => {
                let wire = c.blob().ok_or_else(|| truncated(&c))?;
                ModuleImage::from_wire(wire)
                    .map_err(|e| format!("the worker sent an unreadable image: {e}"))
                    .map(Ok)?
            }
            b'N' => Err(ImageFailure::Refused {
                module,
                reason: string(&mut c)?,
            }),
            b'X' => Err(ImageFailure::Worker {
                module,
                reason: string(&mut c)?,
            }),
            other => return Err(format!("unknown response tag {other:#04x}")),
        };
        finish(&c)?;
        Ok(result)
    }

    fn failed(&self, failure: RunFailure) -> ImageResult {
        let reason = match failure {
            RunFailure::Encode(m) => m,
            RunFailure::Crashed { reason, stderr } => {
                format!("the worker died: {reason}\n{stderr}")
            }
            RunFailure::Timeout { elapsed, .. } => {
                format!("timed out after {:.1} s", elapsed.as_secs_f64())
            }
            RunFailure::NoWorker(e) => format!("no worker: {e}"),
        };
        Err(ImageFailure::Worker {
            module: self.module.clone(),
            reason,
        })
    }
}

/// Parses the `Ready` frame.
pub(crate) fn parse_ready(frame: &[u8]) -> Result<WorkerInterpreter, String> {
    let mut c = Cursor::new(frame);
    if c.u8() != Some(b'R') {
        return Err("expected a `Ready` frame".to_owned());
    }
    let protocol = c.u32().ok_or_else(|| truncated(&c))?;
    if protocol != PROTOCOL_VERSION {
        return Err(format!(
            "the worker speaks protocol {protocol}, this ppyc {PROTOCOL_VERSION}"
        ));
    }
    let magic: [u8; 4] = c
        .blob()
        .ok_or_else(|| truncated(&c))?
        .try_into()
        .map_err(|_| "the magic number is not 4 bytes".to_owned())?;
    let hexversion = c.u32().ok_or_else(|| truncated(&c))?;
    let cache_tag = string(&mut c)?;
    let implementation = string(&mut c)?;
    let fingerprint = c.blob().ok_or_else(|| truncated(&c))?;
    let image_fingerprint = match fingerprint.len() {
        0 => None,
        32 => fingerprint.try_into().ok(),
        n => return Err(format!("a fingerprint of {n} bytes")),
    };
    let image_note = string(&mut c)?;
    finish(&c)?;
    Ok(WorkerInterpreter {
        magic,
        hexversion,
        cache_tag,
        implementation,
        image_fingerprint,
        image_note,
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::pyc::OptLevel;

    #[test]
    fn request_round_trip_layout() {
        let job = CompileJob::new("a\nb.py", Some(PathBuf::from("c.pyc")), OptLevel::Two)
            .with_invalidation_mode(InvalidationMode::UncheckedHash);
        let frame = job.encode(7).expect("encodes");
        let mut c = Cursor::new(&frame);
        let payload = c.blob().expect("frame");
        assert!(c.is_at_end(), "one frame");
        let mut c = Cursor::new(payload);
        assert_eq!(c.u8(), Some(b'C'));
        assert_eq!(c.u64(), Some(7));
        assert_eq!(c.u8(), Some(2));
        assert_eq!(c.u8(), Some(2));
        assert_eq!(c.blob(), Some(b"a\nb.py".as_slice()));
        assert_eq!(c.u8(), Some(1));
        assert_eq!(c.blob(), Some(b"c.pyc".as_slice()));
        assert!(c.is_at_end(), "nothing else");
        let image = ImageJob {
            module: "m".into(),
            payload: vec![1, 2, 3],
        };
        let frame = image.encode(9).unwrap();
        assert_eq!(
            frame,
            b"\x10\0\0\0I\x09\0\0\0\0\0\0\0\x03\0\0\0\x01\x02\x03"
        );
    }

    #[test]
    fn garbage_responses_are_errors_not_panics() {
        let job = CompileJob::new(Path::new("x.py"), None, OptLevel::Zero);
        for frame in [
            &b""[..],
            b"O",
            b"O\x01\0\0\0\0\0\0\0",
            b"Q\0\0\0\0\0\0\0\0",
            b"O\0\0\0\0\0\0\0\0\x02",
            b"O\0\0\0\0\0\0\0\0\x01\xff\xff\xff\xff",
            b"S\0\0\0\0\0\0\0\0\x01\0\0\0",
        ] {
            assert!(job.decode(frame, 0).is_err(), "{frame:?}");
        }
        let ok = b"O\x05\0\0\0\0\0\0\0\x00\x02\0\0\0ab\x00\0\0\0\0";
        let compiled = job.decode(ok, 5).expect("well formed").expect("success");
        assert_eq!(compiled.pyc, b"ab");
        assert!(!compiled.written);
        assert!(job.decode(ok, 6).is_err());
        assert!(parse_ready(b"R\x03\0\0\0abc").is_err());
        assert!(parse_ready(b"R\x01\0\0\0").is_err(), "another protocol");
        let image = ImageJob {
            module: "m".into(),
            payload: Vec::new(),
        };
        assert!(
            image
                .decode(b"M\x01\0\0\0\0\0\0\0\x04\0\0\0PPIM", 1)
                .is_err()
        );
        let refused = image.decode(b"N\x01\0\0\0\0\0\0\0\x02\0\0\0no", 1).unwrap();
        assert!(matches!(refused, Err(ImageFailure::Refused { reason, .. }) if reason == "no"));
    }

    #[test]
    fn syntax_error_display() {
        let failure = CompileFailure::Syntax {
            path: PathBuf::from("pkg/m.py"),
            exception: "SyntaxError".to_owned(),
            line: Some(3),
            offset: Some(1),
            message: "invalid syntax".to_owned(),
        };
        assert_eq!(failure.to_string(), "pkg/m.py:3: invalid syntax");
    }
}
