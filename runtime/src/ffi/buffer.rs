#![allow(unsafe_code)]
//! The buffer protocol for read-only memory owned by a Python object (a mapped pack).

use std::ffi::{c_int, c_void};

use pyo3::ffi;
use pyo3::prelude::*;

/// Fills `view` so that it exposes `bytes` read-only, keeping `owner` alive for as long as
/// the view exists (`PyBuffer_FillInfo` stores a new reference to `owner` in `view.obj`).
///
/// # Safety
/// `view` must be the `Py_buffer` CPython passed to `bf_getbuffer`, and `bytes` must stay
/// valid and unchanged for as long as `owner` is alive.
pub(crate) unsafe fn fill_readonly(
    owner: &Bound<'_, PyAny>,
    view: *mut ffi::Py_buffer,
    bytes: &[u8],
    flags: c_int,
) -> PyResult<()> {
    let len = ffi::Py_ssize_t::try_from(bytes.len())
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("pack too large"))?;
    // SAFETY: `view` is CPython's buffer request (caller contract); `bytes` outlives `owner`
    // (caller contract) and `PyBuffer_FillInfo` increments `owner`'s reference count, so the
    // memory outlives the view. `readonly = 1`: a request for a writable buffer fails with
    // BufferError instead of handing out write access to a shared, read-only mapping.
    let rc = unsafe {
        ffi::PyBuffer_FillInfo(
            view,
            owner.as_ptr(),
            bytes.as_ptr().cast_mut().cast::<c_void>(),
            len,
            1,
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(PyErr::fetch(owner.py()))
    }
}
