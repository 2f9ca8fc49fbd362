//! Reading and writing object fields by offset, and the few C API functions PyO3 does not
//! declare.

use std::ffi::c_int;

use pyo3::ffi;

/// Reads a `T` at `offset` bytes from `base`.
///
/// # Safety
/// `base + offset .. + size_of::<T>()` must be readable memory.
pub(crate) unsafe fn read<T: Copy>(base: *const u8, offset: usize) -> T {
    // SAFETY: the caller guarantees the bytes are readable; unaligned reads are allowed.
    unsafe { base.add(offset).cast::<T>().read_unaligned() }
}

/// Reads the little-endian `u64` at `offset` of a byte slice (bounds checked by the
/// caller; panics otherwise).
pub(crate) fn word(bytes: &[u8], offset: usize) -> u64 {
    ppyc_format::bytes::u64_at(bytes, offset)
}

/// Writes `value`'s low `size` bytes, little-endian, at `offset` of a byte slice.
pub(crate) fn put(bytes: &mut [u8], offset: usize, size: usize, value: u64) {
    bytes[offset..offset + size].copy_from_slice(&value.to_le_bytes()[..size]);
}

/// The address of a Python object, as an integer.
pub(crate) fn addr(obj: *mut ffi::PyObject) -> usize {
    obj as usize
}

/// `Py_REFCNT`, read without any API call.
///
/// # Safety
/// `obj` must be a live object.
pub(crate) unsafe fn refcnt(obj: *mut ffi::PyObject) -> u64 {
    // SAFETY: `ob_refcnt` is the first field of every object (`Include/object.h`).
    unsafe { read::<u64>(obj.cast(), 0) }
}

/// A code watcher that does nothing (the probe registers it for a moment).
#[cfg(Py_3_12)]
extern "C" fn ignore_code_event(_event: c_int, _code: *mut ffi::PyObject) -> c_int {
    0
}

#[cfg(Py_3_12)]
unsafe extern "C" {
    // `Include/cpython/code.h`, 3.12 and 3.13 (exported, `PyAPI_FUNC`).
    fn PyCode_AddWatcher(callback: extern "C" fn(c_int, *mut ffi::PyObject) -> c_int) -> c_int;
    fn PyCode_ClearWatcher(watcher_id: c_int) -> c_int;
}

/// Registers a do-nothing code watcher: its id, or `None` (3.11 has no code watchers).
pub(crate) fn add_code_watcher() -> Option<c_int> {
    #[cfg(Py_3_12)]
    {
        // SAFETY: called with the GIL held (the probe runs under `Python<'_>`); the
        // callback is a plain function that lives as long as the process.
        let id = unsafe { PyCode_AddWatcher(ignore_code_event) };
        if id < 0 {
            // SAFETY: the GIL is held; the failed call set an exception we do not want.
            unsafe { ffi::PyErr_Clear() };
            return None;
        }
        Some(id)
    }
    #[cfg(not(Py_3_12))]
    {
        None
    }
}

/// Unregisters a watcher registered by [`add_code_watcher`].
pub(crate) fn clear_code_watcher(id: c_int) {
    #[cfg(Py_3_12)]
    // SAFETY: the GIL is held and `id` came from `PyCode_AddWatcher`.
    unsafe {
        if PyCode_ClearWatcher(id) < 0 {
            ffi::PyErr_Clear();
        }
    }
    #[cfg(not(Py_3_12))]
    let _ = id;
}

/// Reads a `T` at `offset` bytes into a live object, refusing reads past the object's own
/// memory as `__sizeof__` reports it (for `str` and `code` that also counts caches
/// allocated elsewhere, which the layout probe's objects never have: nothing asks for their
/// UTF-8 form or their `co_code` before the reads).
pub(crate) fn peek<T: Copy>(
    obj: &pyo3::Bound<'_, pyo3::PyAny>,
    offset: usize,
) -> Result<T, String> {
    use pyo3::prelude::*;
    let size: usize = obj
        .call_method0("__sizeof__")
        .and_then(|s| s.extract())
        .map_err(|e| e.to_string())?;
    if offset
        .checked_add(size_of::<T>())
        .is_none_or(|end| end > size)
    {
        return Err(format!("offset {offset} lies outside a {size}-byte object"));
    }
    // SAFETY: `obj` is alive while borrowed, and its memory spans `size` bytes from its
    // address (`__sizeof__`), which the read stays inside.
    Ok(unsafe { read(obj.as_ptr().cast(), offset) })
}

#[cfg(Py_3_13)]
unsafe extern "C" {
    // `Include/internal/pycore_unicodeobject.h`, 3.13 (`PyAPI_FUNC`, exported).
    fn _PyUnicode_InternImmortal(interp: *mut ffi::PyInterpreterState, s: *mut *mut ffi::PyObject);
}

/// Interns `*s` immortal, as 3.13 interns code object names (`*s` may be replaced by the
/// canonical string; the reference is transferred as `PyUnicode_InternInPlace` does).
///
/// # Safety
/// The GIL is held and `*s` is a new reference to an exact `str`.
#[cfg(Py_3_13)]
pub(crate) unsafe fn intern_immortal(s: *mut *mut ffi::PyObject) {
    // SAFETY: the caller's contract; the current interpreter is the caller's.
    unsafe { _PyUnicode_InternImmortal(ffi::PyInterpreterState_Get(), s) }
}

/// `os.fsdecode` of raw name bytes (the filesystem encoding with surrogateescape, as
/// `os.listdir` decodes names).
pub(crate) fn decode_fs<'py>(
    py: pyo3::Python<'py>,
    bytes: &[u8],
) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
    // SAFETY: `bytes` is valid for its length; the call returns a new reference or NULL
    // with an exception set (the GIL is held: `py`).
    unsafe {
        pyo3::Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_DecodeFSDefaultAndSize(bytes.as_ptr().cast(), bytes.len() as isize),
        )
    }
}

/// The effective user id of this process.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: `geteuid` has no preconditions and cannot fail (POSIX).
    unsafe { libc::geteuid() }
}

unsafe extern "C" {
    // `Include/cpython/classobject.h`, 3.10-3.14 (exported, `PyAPI_FUNC`).
    fn PyInstanceMethod_New(func: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// `func` wrapped so that, as a class attribute, it binds like a Python function (the
/// instance is passed first): how a class made at run time gets native methods.
pub(crate) fn instance_method<'py>(
    func: &pyo3::Bound<'py, pyo3::PyAny>,
) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
    let py = func.py();
    // SAFETY: the GIL is held (`func` is bound to it); `PyInstanceMethod_New` takes a
    // borrowed callable and returns a new reference, or NULL with an exception set, which
    // `from_owned_ptr_or_err` turns into the error (`Objects/classobject.c`).
    unsafe { pyo3::Bound::from_owned_ptr_or_err(py, PyInstanceMethod_New(func.as_ptr())) }
}
