//! Checking a layout table against the running interpreter, once per process.
//!
//! [`current`] answers whether image mode is possible here and, if so, with everything the
//! snapshot and the loader need: the table, the layout description and its fingerprint,
//! and the addresses of the well-known objects ([`ppyc_format::image::symbol`]). The
//! checks read fields of real objects whose values are known (built from Python source
//! below) at the table's offsets, and compare the types' sizes with the table. The answer
//! is computed once and cached; it costs a `marshal.loads` of a few lines compiled at build time.

use std::ffi::c_int;
use std::sync::OnceLock;

use ppyc_format::image::symbol;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::{Table, common, for_minor};
use crate::ffi::raw::{self, peek, read};

/// Image mode is possible in this process.
pub(crate) struct Runtime {
    /// The checked table.
    pub(crate) table: &'static Table,
    /// The layout description (`ILAY`).
    pub(crate) description: Vec<u8>,
    /// BLAKE3 of the description.
    pub(crate) fingerprint: [u8; 32],
    /// The objects of [`symbol`], by symbol number (null where a number is reserved).
    pub(crate) symbols: Vec<usize>,
    /// The symbol number of each (non-null) address of `symbols`.
    pub(crate) symbol_of: rustc_hash::FxHashMap<usize, u32>,
    /// The type objects, by type symbol.
    pub(crate) types: [usize; symbol::TYPE_COUNT as usize],
}

static CURRENT: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// Image mode in this interpreter: `Ok` with the checked facts, or why not.
pub(crate) fn current(py: Python<'_>) -> Result<&'static Runtime, &'static str> {
    CURRENT
        .get_or_init(|| check(py))
        .as_ref()
        .map_err(String::as_str)
}

/// The interpreter's build, as the layout description records it; or why image mode is
/// not possible with it.
/// The minor version and the build facts of the layout description.
type Build = (u8, Vec<(&'static str, String)>);

fn build(py: Python<'_>) -> Result<Build, String> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return Err("image mode supports x86-64 Linux only".into());
    }
    if cfg!(Py_GIL_DISABLED) {
        return Err("a free-threaded build".into());
    }
    let sys = py.import("sys").map_err(|e| e.to_string())?;
    let attr = |name: &str| sys.getattr(name).map_err(|e| e.to_string());
    let implementation = attr("implementation")?;
    let name: String = implementation
        .getattr("name")
        .and_then(|n| n.extract())
        .map_err(|e| e.to_string())?;
    if name != "cpython" {
        return Err(format!("not CPython ({name})"));
    }
    if sys.hasattr("gettotalrefcount").unwrap_or(true) {
        return Err("a debug build (Py_DEBUG)".into());
    }
    if sys.hasattr("getobjects").unwrap_or(true) {
        return Err("a Py_TRACE_REFS build".into());
    }
    let abiflags: String = attr("abiflags")
        .and_then(|a| a.extract().map_err(|e: PyErr| e.to_string()))
        .unwrap_or_default();
    if abiflags.contains('t') {
        return Err("a free-threaded build".into());
    }
    if abiflags.contains('d') {
        return Err("a debug build".into());
    }
    let (major, minor, micro, level, serial): (u8, u8, u8, String, u8) = attr("version_info")?
        .extract()
        .map_err(|e: PyErr| e.to_string())?;
    if major != 3 || for_minor(minor).is_none() {
        return Err(format!(
            "CPython {major}.{minor} (image mode supports 3.11, 3.12 and 3.13)"
        ));
    }
    if level != "final" {
        return Err(format!(
            "a pre-release ({major}.{minor}.{micro}{level}{serial})"
        ));
    }
    let hexversion: u32 = attr("hexversion")?
        .extract()
        .map_err(|e: PyErr| e.to_string())?;
    let cache_tag: String = implementation
        .getattr("cache_tag")
        .and_then(|t| t.extract())
        .map_err(|e| e.to_string())?;
    let maxsize: u64 = attr("maxsize")?
        .extract()
        .map_err(|e: PyErr| e.to_string())?;
    if maxsize != i64::MAX as u64 {
        return Err("not a 64-bit build".into());
    }
    Ok((
        minor,
        vec![
            ("implementation", name),
            ("version", format!("{major}.{minor}.{micro}")),
            ("hexversion", format!("{hexversion:#010x}")),
            ("cache_tag", cache_tag),
            ("abiflags", abiflags),
            ("platform", "x86_64-linux".into()),
            ("pointer_size", "8".into()),
            ("build", "release,gil".into()),
        ],
    ))
}

/// Objects with known contents, made by the interpreter itself.
const PROBE_SOURCE: &str = include_str!("probe.py");

/// `probe.py` compiled by the interpreter this extension is built for, at build time
/// (`build.rs`): its `MAGIC_NUMBER`, then `marshal.dumps` of the code; empty when the build
/// could not run it. Loading it costs some 20 µs, against a millisecond and more for
/// `compile()` of the source at the first image load of every process.
const PROBE_MARSHAL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe.marshal"));

/// Runs the probe in `ns`: the build-time code when it was made for this interpreter's
/// magic number, else the source compiled now.
fn run_probe(py: Python<'_>, ns: &Bound<'_, PyDict>) -> PyResult<()> {
    let magic: Vec<u8> = py
        .import("_frozen_importlib_external")?
        .getattr("MAGIC_NUMBER")?
        .extract()?;
    if PROBE_MARSHAL.len() > 4 && PROBE_MARSHAL[..4] == magic[..] {
        let code = py.import("marshal")?.call_method1(
            "loads",
            (pyo3::types::PyBytes::new(py, &PROBE_MARSHAL[4..]),),
        )?;
        py.import("builtins")?.call_method1("exec", (code, ns))?;
        return Ok(());
    }
    let source = std::ffi::CString::new(PROBE_SOURCE)?;
    py.run(&source, Some(ns), None)
}

fn get<'py>(ns: &Bound<'py, PyDict>, key: &str) -> Result<Bound<'py, PyAny>, String> {
    ns.get_item(key)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("probe object `{key}` missing"))
}

fn int_attr(obj: &Bound<'_, PyAny>, name: &str) -> Result<i64, String> {
    obj.getattr(name)
        .and_then(|v| v.extract())
        .map_err(|e| e.to_string())
}

fn check(py: Python<'_>) -> Result<Runtime, String> {
    let (minor, build) = build(py)?;
    let table = for_minor(minor)
        .ok_or_else(|| format!("no layout for 3.{minor}"))?
        .table();
    check_types(table)?;
    let ns = PyDict::new(py);
    run_probe(py, &ns).map_err(|e| format!("the layout probe failed: {e}"))?;
    check_code(table, &get(&ns, "code")?, 6, 0, 0)?;
    check_code(table, &get(&ns, "outer_code")?, 1, 1, 0)?;
    check_code(table, &get(&ns, "inner_code")?, 0, 0, 1)?;
    check_strings(table, &get(&ns, "strings")?, &get(&ns, "chars")?)?;
    check_numbers(table, &ns)?;
    let (symbols, types) = symbols(py)?;
    check_refcnt(table, symbols[symbol::NONE as usize])?;
    check_code_watchers(table)?;
    let description = table.description(&build);
    let fingerprint = *blake3::hash(&description).as_bytes();
    let symbol_of = symbols
        .iter()
        .enumerate()
        .filter(|&(_, &a)| a != 0)
        .map(|(i, &a)| (a, i as u32))
        .collect();
    Ok(Runtime {
        table,
        description,
        fingerprint,
        symbols,
        symbol_of,
        types,
    })
}

fn type_sizes(t: *mut ffi::PyTypeObject) -> (isize, isize, u64) {
    // SAFETY: `t` is one of the static type objects of the interpreter, alive for the
    // whole process; these are plain fields of `PyTypeObject` (`Include/cpython/object.h`).
    unsafe { ((*t).tp_basicsize, (*t).tp_itemsize, (*t).tp_flags) }
}

fn check_types(table: &Table) -> Result<(), String> {
    let gc = ffi::Py_TPFLAGS_HAVE_GC;
    let expect = |what: &str, t: *mut ffi::PyTypeObject, basic: usize, item: usize, is_gc| {
        let (b, i, flags) = type_sizes(t);
        if b != basic as isize || i != item as isize || (flags & gc != 0) != is_gc {
            return Err(format!(
                "{what}: basicsize {b}, itemsize {i}, GC {} (the {} layout expects {basic}, \
                 {item}, {is_gc})",
                flags & gc != 0,
                table.version
            ));
        }
        Ok(())
    };
    expect(
        "code",
        &raw mut ffi::PyCode_Type,
        table.code.basicsize,
        2,
        false,
    )?;
    expect(
        "tuple",
        &raw mut ffi::PyTuple_Type,
        common::TUPLE_ITEMS,
        8,
        true,
    )?;
    expect(
        "bytes",
        &raw mut ffi::PyBytes_Type,
        common::BYTES_DATA + 1,
        1,
        false,
    )?;
    expect(
        "int",
        &raw mut ffi::PyLong_Type,
        common::INT_DIGITS,
        4,
        false,
    )?;
    expect(
        "float",
        &raw mut ffi::PyFloat_Type,
        common::FLOAT_SIZE,
        0,
        false,
    )?;
    expect(
        "complex",
        &raw mut ffi::PyComplex_Type,
        common::COMPLEX_SIZE,
        0,
        false,
    )?;
    // sizeof(PyUnicodeObject): the compact header plus the `data` union.
    expect(
        "str",
        &raw mut ffi::PyUnicode_Type,
        table.str_.compact_size + 8,
        0,
        false,
    )?;
    Ok(())
}

fn field_mismatch(
    table: &Table,
    what: &str,
    found: impl std::fmt::Debug,
    want: impl std::fmt::Debug,
) -> String {
    format!(
        "{what} reads {found:?} at the {} layout's offset, the interpreter says {want:?}",
        table.version
    )
}

/// Checks one fresh (never executed) code object: its fields at the table's offsets
/// against the Python attributes, its per-process fields' initial values and the derived
/// counts. `nlocals`, `ncells`, `nfrees`: what the probe source implies.
fn check_code(
    table: &Table,
    code: &Bound<'_, PyAny>,
    nlocals: i64,
    ncells: i64,
    nfrees: i64,
) -> Result<(), String> {
    let c = &table.code;
    let code_type = raw::addr((&raw mut ffi::PyCode_Type).cast());
    if peek::<usize>(code, common::TYPE)? != code_type {
        return Err("the code object's type is not at offset 8".into());
    }
    for p in c.pointers {
        let attr = match p.name {
            "co_localsplusnames" | "co_localspluskinds" => continue,
            name => code.getattr(name).map_err(|e| e.to_string())?,
        };
        let found = peek::<usize>(code, p.offset)?;
        if found != raw::addr(attr.as_ptr()) {
            return Err(field_mismatch(
                table,
                p.name,
                found,
                raw::addr(attr.as_ptr()),
            ));
        }
    }
    for r in c.resets {
        let value = match r.size {
            2 => u64::from(peek::<u16>(code, r.offset)?),
            4 => u64::from(peek::<u32>(code, r.offset)?),
            _ => peek::<u64>(code, r.offset)?,
        };
        if value != r.value {
            return Err(field_mismatch(table, r.name, value, r.value));
        }
    }
    let int = |offset: usize| peek::<i32>(code, offset).map(i64::from);
    for (name, offset) in [
        ("co_flags", c.flags),
        ("co_argcount", c.argcount),
        ("co_posonlyargcount", c.posonlyargcount),
        ("co_kwonlyargcount", c.kwonlyargcount),
        ("co_stacksize", c.stacksize),
        ("co_firstlineno", c.firstlineno),
        ("co_nlocals", c.nlocals),
    ] {
        let want = int_attr(code, name)?;
        if int(offset)? != want {
            return Err(field_mismatch(table, name, int(offset)?, want));
        }
    }
    for (name, offset, want) in [
        ("co_nlocals", c.nlocals, nlocals),
        ("co_ncellvars", c.ncellvars, ncells),
        ("co_nfreevars", c.nfreevars, nfrees),
    ] {
        if int(offset)? != want {
            return Err(field_mismatch(table, name, int(offset)?, want));
        }
    }
    let nlocalsplus = int(c.nlocalsplus)?;
    let names = peek::<usize>(code, c.localsplusnames)?;
    let kinds = peek::<usize>(code, c.localspluskinds)?;
    // `co_localsplusnames` and `co_localspluskinds` have no attribute of their own (the
    // `co_varnames` family builds new tuples from them). Every field around them has been
    // checked above, so these two words are the pointers the header puts there: follow
    // them to check their types and lengths, and that the first local's name is the one
    // `co_varnames` gives.
    // SAFETY: `names` and `kinds` are the code object's own `co_localsplusnames` tuple and
    // `co_localspluskinds` bytes (the offsets lie between fields verified above against the
    // interpreter, `_PyCode_DEF` in `Include/cpython/code.h`); `code` keeps them alive.
    let (names_ok, kinds_ok, names_first) = unsafe {
        let (names, kinds) = (names as *mut ffi::PyObject, kinds as *mut ffi::PyObject);
        let names_ok = ffi::PyTuple_CheckExact(names) != 0
            && ffi::PyTuple_GET_SIZE(names) as i64 == nlocalsplus;
        let kinds_ok =
            ffi::PyBytes_CheckExact(kinds) != 0 && ffi::Py_SIZE(kinds) as i64 == nlocalsplus;
        let first =
            (names_ok && nlocalsplus > 0).then(|| raw::addr(ffi::PyTuple_GET_ITEM(names, 0)));
        (names_ok, kinds_ok, first)
    };
    let varnames = code.getattr("co_varnames").map_err(|e| e.to_string())?;
    let first_name = varnames.get_item(0).ok().map(|n| raw::addr(n.as_ptr()));
    if !names_ok
        || !kinds_ok
        || nlocalsplus != nlocals + ncells + nfrees
        || (nlocals > 0 && names_first != first_name)
    {
        return Err(field_mismatch(
            table,
            "co_nlocalsplus",
            nlocalsplus,
            nlocals + ncells + nfrees,
        ));
    }
    if let Some(offset) = c.framesize {
        let want = nlocalsplus + int_attr(code, "co_stacksize")? + table.frame_specials as i64;
        if int(offset)? != want {
            return Err(field_mismatch(table, "co_framesize", int(offset)?, want));
        }
    }
    if let Some(offset) = c.nplaincellvars {
        if int(offset)? != ncells {
            return Err(field_mismatch(
                table,
                "co_nplaincellvars",
                int(offset)?,
                ncells,
            ));
        }
    }
    let size = peek::<isize>(code, common::SIZE)?;
    let first = int(c.firsttraceable)?;
    // Last: reading `co_code` creates the per-process caches checked above.
    let units = code
        .getattr("co_code")
        .and_then(|b| b.len())
        .map_err(|e| e.to_string())?
        / 2;
    if size as usize != units || first < 0 || first as usize >= units {
        return Err(field_mismatch(table, "ob_size", size, units));
    }
    Ok(())
}

fn check_strings(
    table: &Table,
    strings: &Bound<'_, PyAny>,
    chars: &Bound<'_, PyAny>,
) -> Result<(), String> {
    let s = &table.str_;
    let strings = strings.cast::<PyTuple>().map_err(|e| e.to_string())?;
    for (item, chars) in strings
        .iter()
        .zip(chars.try_iter().map_err(|e| e.to_string())?)
    {
        let chars: Vec<u32> = chars.and_then(|c| c.extract()).map_err(|e| e.to_string())?;
        let hash = item.hash().map_err(|e| e.to_string())?;
        let max = chars.iter().copied().max().unwrap_or(0);
        let kind: u32 = match max {
            0..=0xff => 1,
            0x100..=0xffff => 2,
            _ => 4,
        };
        let ascii = max < 0x80;
        let length = peek::<isize>(&item, s.length)?;
        let stored_hash = peek::<isize>(&item, s.hash)?;
        let state = peek::<u32>(&item, s.state)?;
        let want_state = (kind << 2) | (1 << 5) | (u32::from(ascii) << 6);
        if length as usize != chars.len()
            || stored_hash != hash
            || state & 0x7c != want_state
            || state & s.bit7.0 != s.bit7.1
        {
            return Err(field_mismatch(
                table,
                &format!("str {chars:?} (length, hash, state)"),
                (length, stored_hash, state & 0xff),
                (chars.len(), hash, want_state | s.bit7.1),
            ));
        }
        let data = if ascii { s.ascii_size } else { s.compact_size };
        for (i, &ch) in chars.iter().enumerate() {
            let found = match kind {
                1 => u32::from(peek::<u8>(&item, data + i)?),
                2 => u32::from(peek::<u16>(&item, data + 2 * i)?),
                _ => peek::<u32>(&item, data + 4 * i)?,
            };
            if found != ch {
                return Err(field_mismatch(table, "str characters", found, ch));
            }
        }
        if let (Some((wstr, wstr_len)), 4) = (s.ucs4_shares_wstr, kind) {
            let p = peek::<usize>(&item, wstr)?;
            let n = peek::<isize>(&item, wstr_len)?;
            let own = raw::addr(item.as_ptr()) + data;
            if p != own || n as usize != chars.len() {
                return Err(field_mismatch(table, "3.11 UCS4 wstr", p, own));
            }
        }
    }
    Ok(())
}

fn check_numbers(table: &Table, ns: &Bound<'_, PyDict>) -> Result<(), String> {
    let data = get(ns, "data")?;
    let hash = data.hash().map_err(|e| e.to_string())?;
    let want: Vec<u8> = data.extract().map_err(|e: PyErr| e.to_string())?;
    let size = peek::<isize>(&data, common::SIZE)?;
    let stored_hash = peek::<isize>(&data, common::BYTES_HASH)?;
    for i in 0..=want.len() {
        if peek::<u8>(&data, common::BYTES_DATA + i)? != *want.get(i).unwrap_or(&0) {
            return Err(field_mismatch(table, "bytes contents", i, "the bytes"));
        }
    }
    if size as usize != want.len() || stored_hash != hash {
        return Err(field_mismatch(
            table,
            "bytes",
            (size, stored_hash),
            (want.len(), hash),
        ));
    }
    for (key, negative, digits) in [
        ("big", false, vec![5u32, 0, 1 << 10]),
        ("negative", true, vec![0, 1 << 10]),
    ] {
        let n = get(ns, key)?;
        let ndigits = digits.len();
        let head = peek::<i64>(&n, common::SIZE)?;
        let mut found = Vec::with_capacity(ndigits);
        for i in 0..ndigits {
            found.push(peek::<u32>(&n, common::INT_DIGITS + 4 * i)?);
        }
        let want_head = if table.int.tagged {
            (ndigits as i64) << 3 | if negative { 2 } else { 0 }
        } else if negative {
            -(ndigits as i64)
        } else {
            ndigits as i64
        };
        if head != want_head || found != digits {
            return Err(field_mismatch(
                table,
                &format!("int {key}"),
                (head, found),
                (want_head, digits),
            ));
        }
    }
    let fval = peek::<f64>(&get(ns, "number")?, 16)?;
    let cplx = get(ns, "cplx")?;
    let cval = (peek::<f64>(&cplx, 16)?, peek::<f64>(&cplx, 24)?);
    if fval != 1.25 || cval != (1.5, 2.5) {
        return Err(field_mismatch(
            table,
            "float/complex",
            (fval, cval),
            (1.25, (1.5, 2.5)),
        ));
    }
    let pair = get(ns, "pair")?;
    let strings = get(ns, "strings")?;
    let n = peek::<isize>(&pair, common::SIZE)?;
    let first = peek::<usize>(&pair, common::TUPLE_ITEMS)?;
    // SAFETY: `pair` is a live tuple, a GC type (checked by `check_types`), so the
    // `PyGC_Head` is in the `gc_head` bytes before it (`_Py_AS_GC`,
    // `Include/internal/pycore_gc.h`); a tracked object's `_gc_next` is not zero.
    let gc_next = unsafe { read::<usize>(pair.as_ptr().cast::<u8>().sub(table.gc_head), 0) };
    if n != 2 || first != raw::addr(strings.as_ptr()) || gc_next == 0 {
        return Err(field_mismatch(
            table,
            "tuple",
            (n, first, gc_next),
            (2, raw::addr(strings.as_ptr()), "tracked"),
        ));
    }
    Ok(())
}

fn check_refcnt(table: &Table, none: usize) -> Result<(), String> {
    if table.minor >= 12 {
        // SAFETY: `None` is a static immortal object.
        let found = unsafe { raw::refcnt(none as *mut ffi::PyObject) };
        if found & 0xffff_ffff != table.refcnt {
            return Err(field_mismatch(
                table,
                "the refcount of None",
                found,
                table.refcnt,
            ));
        }
    }
    Ok(())
}

/// The addresses of the symbols and type objects, checking that what should be a shared
/// singleton is one.
fn symbols(py: Python<'_>) -> Result<(Vec<usize>, [usize; symbol::TYPE_COUNT as usize]), String> {
    let mut symbols = vec![0usize; symbol::COUNT as usize];
    // Each pair of calls must return the same object: a shared singleton.
    let same = |what: &str, make: &dyn Fn() -> *mut ffi::PyObject| -> Result<usize, String> {
        let (a, b) = (make(), make());
        if a.is_null() || b.is_null() {
            // SAFETY: the GIL is held; the failed call set an exception.
            unsafe { ffi::PyErr_Clear() };
            return Err(format!("cannot make {what}"));
        }
        // SAFETY: `a` and `b` are new references returned by the calls above.
        unsafe {
            ffi::Py_DECREF(a);
            ffi::Py_DECREF(b);
        }
        if a != b {
            return Err(format!("{what} is not a shared singleton in this build"));
        }
        Ok(a as usize)
    };
    let _ = py;
    for v in symbol::SMALL_INT_MIN..=symbol::SMALL_INT_MAX {
        let n = symbol::small_int(v).unwrap_or_default() as usize;
        symbols[n] = same(&format!("the int {v}"), &|| {
            // SAFETY: a plain constructor, called with the GIL held.
            unsafe { ffi::PyLong_FromLongLong(v) }
        })?;
    }
    for c in 0..=255u8 {
        symbols[symbol::latin1(c) as usize] = same(&format!("chr({c})"), &|| {
            // SAFETY: a plain constructor, called with the GIL held.
            unsafe { ffi::PyUnicode_FromOrdinal(c_int::from(c)) }
        })?;
    }
    symbols[symbol::EMPTY_TUPLE as usize] = same("()", &|| {
        // SAFETY: a plain constructor, called with the GIL held.
        unsafe { ffi::PyTuple_New(0) }
    })?;
    symbols[symbol::EMPTY_STR as usize] = same("''", &|| {
        // SAFETY: a plain constructor, called with the GIL held.
        unsafe { ffi::PyUnicode_FromStringAndSize(std::ptr::null(), 0) }
    })?;
    symbols[symbol::EMPTY_BYTES as usize] = same("b''", &|| {
        // SAFETY: a plain constructor, called with the GIL held.
        unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), 0) }
    })?;
    // SAFETY: the addresses of the interpreter's static singletons and exception class.
    unsafe {
        symbols[symbol::NONE as usize] = ffi::Py_None() as usize;
        symbols[symbol::FALSE as usize] = ffi::Py_False() as usize;
        symbols[symbol::TRUE as usize] = ffi::Py_True() as usize;
        symbols[symbol::ELLIPSIS as usize] = ffi::Py_Ellipsis() as usize;
        symbols[symbol::STOP_ITERATION as usize] = ffi::PyExc_StopIteration as usize;
    }
    let types = [
        (&raw mut ffi::PyCode_Type) as usize,
        (&raw mut ffi::PyTuple_Type) as usize,
        (&raw mut ffi::PyUnicode_Type) as usize,
        (&raw mut ffi::PyBytes_Type) as usize,
        (&raw mut ffi::PyLong_Type) as usize,
        (&raw mut ffi::PyFloat_Type) as usize,
        (&raw mut ffi::PyComplex_Type) as usize,
    ];
    Ok((symbols, types))
}

/// The `active_code_watchers` byte of this interpreter, if the version has code watchers.
pub(crate) fn active_code_watchers(table: &Table) -> Option<u8> {
    let offset = table.active_code_watchers?;
    // SAFETY: `PyInterpreterState_Get` returns the current interpreter (the GIL is held by
    // every caller); the offset was checked by `check_code_watchers` (a byte inside
    // `PyInterpreterState`, `Include/internal/pycore_interp.h`).
    Some(unsafe { read::<u8>(ffi::PyInterpreterState_Get().cast(), offset) })
}

/// Checks the `active_code_watchers` offset: registering a watcher must set its bit,
/// clearing it must clear the bit.
fn check_code_watchers(table: &Table) -> Result<(), String> {
    let Some(offset) = table.active_code_watchers else {
        return Ok(());
    };
    let before = active_code_watchers(table).unwrap_or(0);
    let Some(id) = raw::add_code_watcher() else {
        return Err("cannot register a code watcher to check the layout".into());
    };
    let during = active_code_watchers(table).unwrap_or(0);
    raw::clear_code_watcher(id);
    let after = active_code_watchers(table).unwrap_or(0);
    let bit = 1u8 << (id & 7);
    if during & bit == 0 || after & bit != 0 || before & bit != 0 {
        return Err(field_mismatch(
            table,
            &format!("active_code_watchers at {offset}"),
            (before, during, after),
            bit,
        ));
    }
    Ok(())
}
