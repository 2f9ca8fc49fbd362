//! Version cfgs (`Py_3_12`, `Py_GIL_DISABLED`, ...) for the interpreter this extension is
//! built for, as orjson does: C API functions that exist only in some versions are
//! declared under them.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
