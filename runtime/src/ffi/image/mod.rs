//! Image mode (`spec/FORMAT.md` §10): [`snapshot`] makes a module's image in a compile
//! worker; [`load`] validates and loads one in the import hook. This module decides, per
//! pack, whether its images can be used in this process ([`pack_mode`]), and loads one
//! module's code from a pack, image or payload ([`load_code`]).

mod arena;
pub(crate) use arena::mappings;
pub(crate) mod load;
pub(crate) mod snapshot;

use std::time::Instant;

use ppyc_format::image::Aux;
use ppyc_format::{Module, Pack};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::ffi::layout::probe;
use load::{ImageMemory, NameCache};

/// How a pack's modules are loaded in this process.
pub(crate) enum Mode {
    /// From their images (modules without one: from their payloads).
    Image(NameCache),
    /// From their payloads, with `marshal.loads`; why not images.
    Marshal(String),
}

impl Mode {
    /// `image` or `marshal`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Image(_) => "image",
            Self::Marshal(_) => "marshal",
        }
    }

    /// Why marshal mode (`None` in image mode).
    pub(crate) fn reason(&self) -> Option<&str> {
        match self {
            Self::Image(_) => None,
            Self::Marshal(r) => Some(r),
        }
    }
}

/// Whether `PPYC_MODE=marshal` asks for marshal mode (an environment variable, so not
/// under `-E`/`-I`, as Python's own variables).
fn marshal_requested(py: Python<'_>) -> bool {
    crate::hook::env_var(py, "PPYC_MODE").is_some_and(|v| v == "marshal")
}

/// The first line in which two layout descriptions differ, for messages.
fn first_difference(ours: &[u8], theirs: &[u8]) -> String {
    let ours = String::from_utf8_lossy(ours);
    let theirs = String::from_utf8_lossy(theirs);
    let mine: std::collections::BTreeSet<&str> = ours.lines().collect();
    for line in theirs.lines() {
        if !mine.contains(line) {
            let key = line.split('=').next().unwrap_or(line);
            let here = ours
                .lines()
                .find(|l| l.split('=').next() == Some(key))
                .unwrap_or("nothing");
            return format!("the pack has `{line}`, this interpreter `{here}`");
        }
    }
    "the descriptions differ".into()
}

/// The mode of `pack` in this process.
pub(crate) fn pack_mode(py: Python<'_>, pack: &Pack) -> Mode {
    let images = match pack.images() {
        Ok(Some(images)) => images,
        Ok(None) => {
            return Mode::Marshal(
                "the pack has no images (built with `--mode marshal`, or by an interpreter \
                 image mode does not support)"
                    .into(),
            );
        }
        Err(e) => return Mode::Marshal(format!("its image sections are unusable ({e})")),
    };
    if marshal_requested(py) {
        return Mode::Marshal("PPYC_MODE=marshal".into());
    }
    let rt = match probe::current(py) {
        Ok(rt) => rt,
        Err(reason) => {
            return Mode::Marshal(format!("this interpreter cannot use images: {reason}"));
        }
    };
    if rt.fingerprint != pack.header().layout_fingerprint {
        return Mode::Marshal(format!(
            "layout fingerprint mismatch: the images were made by another build ({})",
            first_difference(&rt.description, images.layout)
        ));
    }
    Mode::Image(NameCache::new(images.names.len()))
}

/// Time spent in each step of a load, in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Phases {
    /// Reading the bytes (pread) and checking their digest.
    pub(crate) read: u64,
    /// Validating and relocating an image (frozensets and code versions included), or
    /// `marshal.loads`.
    pub(crate) load: u64,
    /// Binding an image's identifiers to this process's interned strings.
    pub(crate) bind: u64,
}

/// A module's code, loaded.
pub(crate) struct Loaded<'py> {
    pub(crate) code: Bound<'py, PyAny>,
    /// Whether it came from the image (else from the payload).
    pub(crate) image: bool,
    /// Bytes read from the pack.
    pub(crate) bytes: usize,
    /// Why the module's image was not used although the pack is in image mode.
    pub(crate) image_problem: Option<String>,
    /// Whether that was damage to the pack's image sections (the hook reports it), not a
    /// missing image or a limit of this process.
    pub(crate) image_damaged: bool,
    pub(crate) phases: Phases,
}

/// Why an image was not loaded.
enum ImageFailure {
    /// This process cannot load images now (the layout probe, memory).
    Unavailable(String),
    /// The image sections are not what the writer wrote.
    Damaged(String),
}

impl From<String> for ImageFailure {
    fn from(s: String) -> Self {
        Self::Damaged(s)
    }
}

fn ns(since: Instant) -> u64 {
    since.elapsed().as_nanos() as u64
}

/// The image of `module`, loaded: `Ok(None)` when it has none.
fn load_image<'py>(
    py: Python<'py>,
    pack: &Pack,
    cache: &NameCache,
    module: &Module<'_>,
    filename: &Bound<'py, PyString>,
    phases: &mut Phases,
) -> Result<Option<(Bound<'py, PyAny>, usize)>, ImageFailure> {
    let Some(image) = module.image().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if let Some(reason) = load::unavailable(py) {
        return Err(ImageFailure::Unavailable(reason));
    }
    let rt = probe::current(py).map_err(|e| ImageFailure::Unavailable(e.to_owned()))?;
    let t0 = Instant::now();
    let mut memory = ImageMemory::new(image.objects_len())
        .ok_or_else(|| ImageFailure::Unavailable("no memory for the image".into()))?;
    let mut aux = vec![0u8; image.aux.len()];
    pack.read_into(image.aux.clone(), &mut aux)
        .map_err(|e| e.to_string())?;
    let damaged = || "the image is damaged (digest mismatch)".to_owned();
    if image.compressed_from.is_some() {
        // Read the stored bytes (pread: a truncated file is an error, not a SIGBUS), check
        // them, then decompress into the image memory.
        let mut stored = vec![0u8; image.objects.len()];
        pack.read_into(image.objects.clone(), &mut stored)
            .map_err(|e| e.to_string())?;
        if !image.check(&stored, &aux) {
            return Err(damaged().into());
        }
        image
            .decode_objects(&stored, memory.bytes_mut())
            .map_err(|e| e.to_string())?;
    } else {
        pack.read_into(image.objects.clone(), memory.bytes_mut())
            .map_err(|e| e.to_string())?;
        if !image.check(memory.bytes(), &aux) {
            return Err(damaged().into());
        }
    }
    let aux = Aux::parse(&aux).map_err(|e| e.to_string())?;
    let names = pack
        .images()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no identifier table".to_owned())?
        .names;
    phases.read = ns(t0);
    let bytes = image.objects_len() + image.aux.len();
    let code = load::load(py, rt, memory, &aux, &names, cache, filename, phases)?;
    Ok(Some((code, bytes)))
}

/// `module`'s payload, unmarshalled (what `marshal.loads` of it gives), with
/// `co_filename` fixed as `SourceLoader.get_code` does for a `.pyc`.
fn load_payload<'py>(
    py: Python<'py>,
    pack: &Pack,
    module: &Module<'_>,
    filename: &Bound<'py, PyString>,
    phases: &mut Phases,
) -> Result<(Bound<'py, PyAny>, usize), String> {
    let t0 = Instant::now();
    let range = module.payload_range().map_err(|e| e.to_string())?;
    let mut payload = vec![0u8; range.len()];
    pack.read_into(range, &mut payload)
        .map_err(|e| e.to_string())?;
    if !module.payload_matches(&payload) {
        return Err(format!(
            "the code of `{}` is damaged (digest mismatch)",
            module.name()
        ));
    }
    phases.read = ns(t0);
    let t1 = Instant::now();
    // SAFETY: the GIL is held; `payload` is valid for its length; the call returns a new
    // reference or NULL with an exception (`marshal.loads` of the same bytes).
    let code = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyMarshal_ReadObjectFromString(payload.as_ptr().cast(), payload.len() as isize),
        )
    }
    .map_err(|e| format!("marshal refused the payload: {e}"))?;
    // SAFETY: `code` is a live object.
    if unsafe { ffi::Py_TYPE(code.as_ptr()) } != &raw mut ffi::PyCode_Type {
        return Err("the payload is not a code object".into());
    }
    py.import("_imp")
        .and_then(|imp| imp.call_method1("_fix_co_filename", (&code, filename)))
        .map_err(|e| e.to_string())?;
    phases.load = ns(t1);
    Ok((code, payload.len()))
}

/// `module`'s code: from its image in image mode (falling back to its payload, with the
/// reason, when the image cannot be used), else from its payload.
pub(crate) fn load_code<'py>(
    py: Python<'py>,
    pack: &Pack,
    mode: &Mode,
    module: &Module<'_>,
    filename: &Bound<'py, PyString>,
) -> Result<Loaded<'py>, String> {
    let mut phases = Phases::default();
    let mut image_problem = None;
    let mut image_damaged = false;
    if let Mode::Image(cache) = mode {
        match load_image(py, pack, cache, module, filename, &mut phases) {
            Ok(Some((code, bytes))) => {
                return Ok(Loaded {
                    code,
                    image: true,
                    bytes,
                    image_problem: None,
                    image_damaged: false,
                    phases,
                });
            }
            Ok(None) => image_problem = Some("the module has no image".to_owned()),
            Err(ImageFailure::Unavailable(e)) => image_problem = Some(e),
            Err(ImageFailure::Damaged(e)) => {
                image_problem = Some(e);
                image_damaged = true;
            }
        }
    }
    let (code, bytes) = load_payload(py, pack, module, filename, &mut phases)?;
    Ok(Loaded {
        code,
        image: false,
        bytes,
        image_problem,
        image_damaged,
        phases,
    })
}
