//! Snapshotting the code of a `.pyc` payload into a module image (in the compile workers).
//!
//! The interpreter is the authority on its objects: [`snapshot`] lets it `marshal.loads`
//! the payload (exactly the bytes a `.pyc` holds), then copies the memory of every object
//! that load created, and turns every pointer into a [`Word`]. Nothing is synthesised:
//! the bytes are the interpreter's own, with only per-process fields reset to the values a
//! fresh object has (and alignment padding zeroed, for determinism).
//!
//! The walk goes over the live objects and the parsed stream (`ppyc_compiler::marshal`) in
//! lockstep, which gives what the live objects have lost: the order a frozenset's items
//! were inserted in (the stream order), and which strings the stream marked interned. Every
//! object copied must be owned by the graph (its reference count equals the references the
//! graph holds); a shared object that is not one of the well-known [`symbol`]s, an
//! unsupported type, or any disagreement between the two walks refuses the image (the
//! module is then served by `marshal.loads` of its payload). The image is made twice, from
//! two loads, and must come out identical: code that has been executed (quickened,
//! instrumented) or any other process state would show as a difference.

use std::ffi::CStr;

use rustc_hash::FxHashMap as HashMap;

use ppyc_compiler::marshal::{self, Annotated, Obj, Object, PyVersion};
use ppyc_format::image::symbol;
use ppyc_format::{FrozenSetImage, ModuleImage, Word};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;

use crate::ffi::layout::probe::{self, Runtime};
use crate::ffi::layout::{Table, common};
use crate::ffi::raw::{self, read};

/// The supported types of image objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Code,
    Tuple,
    Str,
    Int,
    Float,
    Complex,
    Bytes,
}

impl Kind {
    /// The type symbol of objects of this kind.
    pub(crate) fn type_symbol(self) -> u32 {
        match self {
            Self::Code => symbol::CODE_TYPE,
            Self::Tuple => symbol::TUPLE_TYPE,
            Self::Str => symbol::STR_TYPE,
            Self::Bytes => symbol::BYTES_TYPE,
            Self::Int => symbol::INT_TYPE,
            Self::Float => symbol::FLOAT_TYPE,
            Self::Complex => symbol::COMPLEX_TYPE,
        }
    }

    /// The kind of the type symbol `n`.
    pub(crate) fn of_type_symbol(n: u32) -> Option<Self> {
        Some(match n {
            symbol::CODE_TYPE => Self::Code,
            symbol::TUPLE_TYPE => Self::Tuple,
            symbol::STR_TYPE => Self::Str,
            symbol::BYTES_TYPE => Self::Bytes,
            symbol::INT_TYPE => Self::Int,
            symbol::FLOAT_TYPE => Self::Float,
            symbol::COMPLEX_TYPE => Self::Complex,
            _ => return None,
        })
    }

    /// Layout group: objects are laid out code first, then tuples, strings, numbers and
    /// bytes, so that the pages written after load (code objects specialise, tuples
    /// hold identifiers) are apart from those that are only read.
    fn group(self) -> u8 {
        match self {
            Self::Code => 0,
            Self::Tuple => 1,
            Self::Str => 2,
            Self::Int | Self::Float | Self::Complex => 3,
            Self::Bytes => 4,
        }
    }
}

/// The CPython minor version's marshal dialect.
fn marshal_version(minor: u8) -> Result<PyVersion, String> {
    match minor {
        11 => Ok(PyVersion::V3_11),
        12 => Ok(PyVersion::V3_12),
        13 => Ok(PyVersion::V3_13),
        _ => Err(format!("no marshal reader for 3.{minor}")),
    }
}

/// The image of the code in `payload` (a marshalled top-level code object), or why this
/// module cannot have one.
pub(crate) fn snapshot(py: Python<'_>, payload: &[u8]) -> Result<ModuleImage, String> {
    let rt = probe::current(py).map_err(str::to_owned)?;
    let version = marshal_version(rt.table.minor)?;
    let parsed = marshal::parse_annotated(payload, version).map_err(|e| e.to_string())?;
    if !matches!(&*parsed.root, Object::Code(_)) {
        return Err("the payload is not a code object".into());
    }
    let first = once(py, rt, &parsed, payload)?;
    let second = once(py, rt, &parsed, payload)?;
    if first != second {
        return Err("two loads of the payload gave different images".into());
    }
    Ok(first)
}

fn once(
    py: Python<'_>,
    rt: &'static Runtime,
    parsed: &Annotated,
    payload: &[u8],
) -> Result<ModuleImage, String> {
    static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let code = LOADS
        .import(py, "marshal", "loads")
        .and_then(|loads| loads.call1((PyBytes::new(py, payload),)))
        .map_err(|e| format!("marshal.loads refused the payload: {e}"))?;
    let root = code.as_ptr();
    // SAFETY: `root` is a live object (held by `code`).
    if unsafe { ffi::Py_TYPE(root) } != &raw mut ffi::PyCode_Type {
        return Err("the payload is not a code object".into());
    }
    let mut snap = Snap::new(rt, parsed);
    let root_filename = snap.text_of(snap_field(rt.table, root, rt.table.code.filename))?;
    snap.root_filename = root_filename;
    let slot = snap.visit(root, &parsed.root, Pos::ROOT)?;
    if slot != Slot::Ptr(root as usize) {
        return Err("the top-level code object is shared".into());
    }
    snap.check_owned()?;
    let image = snap.emit(root as usize)?;
    drop(code);
    Ok(image)
}

/// The pointer stored at `offset` of the live object `obj`.
fn snap_field(table: &Table, obj: *mut ffi::PyObject, offset: usize) -> *mut ffi::PyObject {
    debug_assert!(offset < table.code.basicsize);
    // SAFETY: callers pass a live code object and one of its pointer-field offsets (below
    // `basicsize`, the table checked by the probe).
    unsafe { read::<*mut ffi::PyObject>(obj.cast(), offset) }
}

/// Where an object is referenced from: this decides whether stock code creation interns a
/// string there, and which code objects get their `co_filename` replaced by the path the
/// module was found at (`_imp._fix_co_filename`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    at: At,
    /// For code objects: reached from the top-level code object through `co_consts` of
    /// code objects whose `co_filename` all equal the top-level one
    /// (`update_code_filenames`, `Python/import.c`, 3.11-3.13).
    filename_chain: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    Root,
    /// The `co_consts` tuple itself.
    Consts,
    /// An item of `co_consts`, or an item of a tuple or frozenset among them.
    Const,
    /// The `co_names` or `co_localsplusnames` tuple.
    Names,
    /// An item of those.
    Name,
    /// Another field of a code object (`co_filename`, `co_linetable`, ...).
    Field,
}

impl Pos {
    const ROOT: Self = Self {
        at: At::Root,
        filename_chain: true,
    };

    fn at(at: At) -> Self {
        Self {
            at,
            filename_chain: false,
        }
    }
}

/// One pointer word of the image being made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// An image object, by its live address (an internal offset once laid out).
    Ptr(usize),
    /// Anything else.
    Word(Word),
}

/// An object the image will hold.
struct Owned {
    ptr: usize,
    kind: Kind,
    /// Bytes of the live object to copy (its size without the allocator's rounding).
    len: usize,
    /// Pointer words: offset in the object, value.
    slots: Vec<(usize, Slot)>,
}

struct Snap<'a> {
    rt: &'static Runtime,
    parsed: &'a Annotated,
    symbols: &'static HashMap<usize, u32>,
    owned: Vec<Owned>,
    by_ptr: HashMap<usize, usize>,
    /// References to each visited object from within the graph (and one for the root,
    /// held by the caller).
    refs: HashMap<usize, u64>,
    names: Vec<Vec<u8>>,
    name_slots: HashMap<Vec<u8>, u32>,
    frozensets: Vec<(Vec<Slot>, bool)>,
    frozenset_index: HashMap<usize, u32>,
    root_filename: Vec<u8>,
    code_count: u32,
}

/// `[A-Za-z0-9_]*`: the strings stock code creation interns among the constants
/// (`all_name_chars`, 3.11-3.12; `should_intern_string`, 3.13; `Objects/codeobject.c`).
fn name_chars(text: &[u8]) -> bool {
    text.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

impl<'a> Snap<'a> {
    fn new(rt: &'static Runtime, parsed: &'a Annotated) -> Self {
        Self {
            rt,
            parsed,
            symbols: &rt.symbol_of,
            owned: Vec::new(),
            by_ptr: HashMap::default(),
            refs: HashMap::default(),
            names: Vec::new(),
            name_slots: HashMap::default(),
            frozensets: Vec::new(),
            frozenset_index: HashMap::default(),
            root_filename: Vec::new(),
            code_count: 0,
        }
    }

    fn table(&self) -> &'static Table {
        self.rt.table
    }

    /// The UTF-8 (lone surrogates as `surrogatepass` writes them) of a live `str`.
    fn text_of(&self, s: *mut ffi::PyObject) -> Result<Vec<u8>, String> {
        const UTF8: &CStr = c"utf-8";
        const SURROGATEPASS: &CStr = c"surrogatepass";
        // SAFETY: `s` is a live object of the graph (the GIL is held). For an exact str,
        // `state` and `length` are fields of its `PyASCIIObject` header and, when compact
        // and ASCII, its `length` bytes start `ascii_size` bytes in (the layout table,
        // checked by the probe). The encoder returns a new bytes object or NULL with an
        // exception, which is cleared.
        unsafe {
            if ffi::PyUnicode_CheckExact(s) == 0 {
                return Err("a string field does not hold a str".into());
            }
            // A compact ASCII string (most of them) is its own UTF-8: its characters
            // follow the `PyASCIIObject` header (`Include/cpython/unicodeobject.h`,
            // 3.11-3.13: `compact` is bit 5 and `ascii` bit 6 of `state`).
            let table = self.table();
            let state = read::<u32>(s.cast(), table.str_.state);
            if state & 0x60 == 0x60 {
                let n = read::<usize>(s.cast(), table.str_.length);
                let data = s.cast::<u8>().add(table.str_.ascii_size);
                return Ok(std::slice::from_raw_parts(data, n).to_vec());
            }
            let b = ffi::PyUnicode_AsEncodedString(s, UTF8.as_ptr(), SURROGATEPASS.as_ptr());
            if b.is_null() {
                ffi::PyErr_Clear();
                return Err("a string cannot be encoded".into());
            }
            let out = std::slice::from_raw_parts(
                ffi::PyBytes_AsString(b).cast::<u8>(),
                ffi::PyBytes_Size(b) as usize,
            )
            .to_vec();
            ffi::Py_DECREF(b);
            Ok(out)
        }
    }

    fn name_slot(&mut self, text: Vec<u8>) -> Slot {
        if let Some(&i) = self.name_slots.get(&text) {
            return Slot::Word(Word::Name(i));
        }
        let i = self.names.len() as u32;
        self.names.push(text.clone());
        self.name_slots.insert(text, i);
        Slot::Word(Word::Name(i))
    }

    /// A live object as a marshal [`Object`] (constants only), to compare with the stream.
    fn value_of(&self, obj: *mut ffi::PyObject) -> Result<Object, String> {
        if let Some(&sym) = self.symbols.get(&(obj as usize)) {
            match sym {
                symbol::NONE => return Ok(Object::None),
                symbol::FALSE => return Ok(Object::False),
                symbol::TRUE => return Ok(Object::True),
                symbol::ELLIPSIS => return Ok(Object::Ellipsis),
                symbol::STOP_ITERATION => return Ok(Object::StopIteration),
                _ => {}
            }
        }
        // SAFETY: `obj` is a live object of the graph; the checks read its type and then
        // only fields of that type (`Include/cpython/*.h`).
        unsafe {
            let ty = ffi::Py_TYPE(obj);
            if ty == &raw mut ffi::PyUnicode_Type {
                return Ok(Object::Str(self.text_of(obj)?.into()));
            }
            if ty == &raw mut ffi::PyBytes_Type {
                let data = std::slice::from_raw_parts(
                    ffi::PyBytes_AsString(obj).cast::<u8>(),
                    ffi::PyBytes_Size(obj) as usize,
                );
                return Ok(Object::Bytes(data.into()));
            }
            if ty == &raw mut ffi::PyFloat_Type {
                return Ok(Object::Float(marshal::FloatRepr::Bits(
                    ffi::PyFloat_AsDouble(obj).to_bits(),
                )));
            }
            if ty == &raw mut ffi::PyComplex_Type {
                let re = ffi::PyComplex_RealAsDouble(obj).to_bits();
                let im = ffi::PyComplex_ImagAsDouble(obj).to_bits();
                return Ok(Object::Complex(
                    marshal::FloatRepr::Bits(re),
                    marshal::FloatRepr::Bits(im),
                ));
            }
            if ty == &raw mut ffi::PyLong_Type {
                return self.int_of(obj);
            }
            if ty == &raw mut ffi::PyTuple_Type {
                let n = ffi::PyTuple_GET_SIZE(obj);
                let mut items = Vec::with_capacity(n as usize);
                for i in 0..n {
                    items.push(Obj::new(self.value_of(ffi::PyTuple_GET_ITEM(obj, i))?));
                }
                return Ok(Object::Tuple(items.into()));
            }
            if ty == &raw mut ffi::PyFrozenSet_Type {
                let items = frozenset_items(obj)?;
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    values.push(Obj::new(self.value_of(item as *mut ffi::PyObject)?));
                }
                return Ok(Object::FrozenSet(values.into()));
            }
        }
        Err("a constant of an unsupported type".into())
    }

    /// A live `int` as marshal writes it: sign and base-2^15 digits.
    fn int_of(&self, obj: *mut ffi::PyObject) -> Result<Object, String> {
        let table = self.table();
        let base = obj.cast::<u8>().cast_const();
        // SAFETY: `obj` is a live int: its header and `ndigits` 30-bit digits
        // (`Include/cpython/longintrepr.h`: 3.11 signed `ob_size`; 3.12+ `lv_tag`).
        let (negative, digits30) = unsafe {
            let head = read::<i64>(base, common::SIZE);
            let (negative, n) = if table.int.tagged {
                ((head & 3) == 2, (head >> 3) as usize)
            } else {
                (head < 0, head.unsigned_abs() as usize)
            };
            let digits: Vec<u32> = (0..n)
                .map(|i| read::<u32>(base, common::INT_DIGITS + 4 * i))
                .collect();
            (negative, digits)
        };
        // Re-cut 30-bit digits into 15-bit ones.
        let mut digits = Vec::with_capacity(digits30.len() * 2);
        for d in &digits30 {
            digits.push((d & 0x7fff) as u16);
            digits.push((d >> 15) as u16);
        }
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.len() <= 2 {
            let v = digits
                .iter()
                .rev()
                .fold(0i64, |acc, &d| acc << 15 | i64::from(d));
            let v = if negative { -v } else { v };
            if let Ok(v) = i32::try_from(v) {
                return Ok(Object::Int(v));
            }
        }
        Ok(Object::Long { negative, digits })
    }

    /// Checks that the live constant `obj` is the stream's `parsed`.
    fn same_value(&self, obj: *mut ffi::PyObject, parsed: &Obj) -> Result<(), String> {
        let live = self.value_of(obj)?;
        // The common leaves compare directly; anything else by its canonical key.
        let direct = match (&live, &**parsed) {
            (Object::None, Object::None)
            | (Object::False, Object::False)
            | (Object::True, Object::True)
            | (Object::Ellipsis, Object::Ellipsis)
            | (Object::StopIteration, Object::StopIteration) => Some(true),
            (Object::Int(a), Object::Int(b)) => Some(a == b),
            (Object::Str(a), Object::Str(b)) | (Object::Bytes(a), Object::Bytes(b)) => Some(a == b),
            (
                Object::Float(marshal::FloatRepr::Bits(a)),
                Object::Float(marshal::FloatRepr::Bits(b)),
            ) => Some(a == b),
            _ => None,
        };
        match direct {
            Some(true) => return Ok(()),
            Some(false) => return Err("a live constant differs from the marshal stream".into()),
            None => {}
        }
        let (a, b) = (
            marshal::set_element_key(&live),
            marshal::set_element_key(parsed),
        );
        if a.is_none() || a != b {
            return Err("a live constant differs from the marshal stream".into());
        }
        Ok(())
    }

    /// Visits the reference to `obj` (whose stream counterpart is `parsed`) from a
    /// position `pos`, and returns the word the referring field will hold.
    fn visit(&mut self, obj: *mut ffi::PyObject, parsed: &Obj, pos: Pos) -> Result<Slot, String> {
        if obj.is_null() {
            return Err("a NULL pointer in the code's objects".into());
        }
        let ptr = obj as usize;
        *self.refs.entry(ptr).or_insert(0) += 1;
        // SAFETY: `obj` is a live object of the graph (held by its referrer).
        let ty = unsafe { ffi::Py_TYPE(obj) };
        let is_str = ty == &raw mut ffi::PyUnicode_Type;
        if let Some(&sym) = self.symbols.get(&ptr) {
            self.same_value(obj, parsed)?;
            if is_str {
                // A one-character or empty string: a shared singleton whose interned
                // state is process state, so decide by position, as stock code creation
                // and marshal do: names are interned, and so are constants matching
                // [A-Za-z0-9_]*, and strings the stream marks interned (3.13 also interns
                // co_filename, co_name and co_qualname).
                let text = self.text_of(obj)?;
                let interned = match pos.at {
                    At::Name => true,
                    At::Const => name_chars(&text),
                    At::Field => self.table().minor >= 13,
                    _ => false,
                } || self.parsed.is_interned(parsed);
                if interned {
                    return Ok(self.name_slot(text));
                }
            }
            return Ok(Slot::Word(Word::Symbol(sym)));
        }
        if is_str {
            let text = self.text_of(obj)?;
            if !matches!(&**parsed, Object::Str(b) if **b == *text) {
                return Err("a live string differs from the marshal stream".into());
            }
            // SAFETY: `obj` is a live str; `state` is a 32-bit field of its header.
            let state = unsafe { read::<u32>(obj.cast(), self.table().str_.state) };
            if state & 3 != 0 {
                return Ok(self.name_slot(text));
            }
            return self.own(obj, Kind::Str, parsed, pos);
        }
        if ty == &raw mut ffi::PyFrozenSet_Type {
            return self.frozenset(obj, parsed);
        }
        let kind = if ty == &raw mut ffi::PyCode_Type {
            Kind::Code
        } else if ty == &raw mut ffi::PyTuple_Type {
            Kind::Tuple
        } else if ty == &raw mut ffi::PyBytes_Type {
            Kind::Bytes
        } else if ty == &raw mut ffi::PyLong_Type {
            Kind::Int
        } else if ty == &raw mut ffi::PyFloat_Type {
            Kind::Float
        } else if ty == &raw mut ffi::PyComplex_Type {
            Kind::Complex
        } else {
            // SAFETY: `ty` is the live object's type; `tp_name` is a C string.
            let name = unsafe { CStr::from_ptr((*ty).tp_name) }.to_string_lossy();
            return Err(format!("a constant of type `{name}`"));
        };
        self.own(obj, kind, parsed, pos)
    }

    /// An object to copy into the image (visited once however often it is referenced).
    fn own(
        &mut self,
        obj: *mut ffi::PyObject,
        kind: Kind,
        parsed: &Obj,
        pos: Pos,
    ) -> Result<Slot, String> {
        let ptr = obj as usize;
        if self.by_ptr.contains_key(&ptr) {
            return Ok(Slot::Ptr(ptr));
        }
        let table = self.table();
        let base = obj.cast::<u8>().cast_const();
        // SAFETY: (the size reads) `obj` is a live object of `kind` (its exact type was
        // checked); the fields read are in its fixed header.
        let len = unsafe {
            match kind {
                Kind::Code => table.code.basicsize + 2 * read::<usize>(base, common::SIZE),
                Kind::Tuple => common::TUPLE_ITEMS + 8 * read::<usize>(base, common::SIZE),
                Kind::Bytes => common::BYTES_DATA + read::<usize>(base, common::SIZE) + 1,
                Kind::Str => {
                    let s = &table.str_;
                    let state = read::<u32>(base, s.state);
                    let n = read::<usize>(base, s.length);
                    let char_size = ((state >> 2) & 7) as usize;
                    if state & 0x20 == 0 || !matches!(char_size, 1 | 2 | 4) {
                        return Err("a string that is not compact".into());
                    }
                    let header = if state & 0x40 != 0 {
                        s.ascii_size
                    } else {
                        s.compact_size
                    };
                    header + (n + 1) * char_size
                }
                Kind::Int => {
                    let head = read::<i64>(base, common::SIZE);
                    let n = if table.int.tagged {
                        (head >> 3) as usize
                    } else {
                        head.unsigned_abs() as usize
                    };
                    common::INT_DIGITS + 4 * n.max(1)
                }
                Kind::Float => common::FLOAT_SIZE,
                Kind::Complex => common::COMPLEX_SIZE,
            }
        };
        let index = self.owned.len();
        self.owned.push(Owned {
            ptr,
            kind,
            len,
            slots: Vec::new(),
        });
        self.by_ptr.insert(ptr, index);
        let slots = match kind {
            Kind::Code => self.code_slots(obj, parsed, pos)?,
            Kind::Tuple => self.tuple_slots(obj, parsed, pos)?,
            Kind::Bytes => {
                // SAFETY: `obj` is a live bytes object.
                let data = unsafe {
                    std::slice::from_raw_parts(
                        ffi::PyBytes_AsString(obj).cast::<u8>(),
                        ffi::PyBytes_Size(obj) as usize,
                    )
                };
                if !matches!(&**parsed, Object::Bytes(b) if **b == *data) {
                    return Err("a live constant differs from the marshal stream".into());
                }
                Vec::new()
            }
            _ => {
                self.same_value(obj, parsed)?;
                Vec::new()
            }
        };
        self.owned[index].slots = slots;
        Ok(Slot::Ptr(ptr))
    }

    fn code_slots(
        &mut self,
        obj: *mut ffi::PyObject,
        parsed: &Obj,
        pos: Pos,
    ) -> Result<Vec<(usize, Slot)>, String> {
        let Object::Code(code) = &**parsed else {
            return Err("a live code object is something else in the marshal stream".into());
        };
        self.code_count += 1;
        let table = self.table();
        let filename = snap_field(table, obj, table.code.filename);
        let keeps_chain = pos.filename_chain && self.text_of(filename)? == self.root_filename;
        let mut slots = Vec::with_capacity(table.code.pointers.len());
        for p in table.code.pointers {
            let child = snap_field(table, obj, p.offset);
            let missing = || format!("`{}` is missing from the marshal stream", p.name);
            let (stream, at): (&Obj, At) = match p.name {
                "co_consts" => (&code.consts, At::Consts),
                "co_names" => (&code.names, At::Names),
                "co_localsplusnames" => (&code.localsplusnames, At::Names),
                "co_localspluskinds" => (
                    code.localspluskinds.as_ref().ok_or_else(missing)?,
                    At::Field,
                ),
                "co_filename" => (&code.filename, At::Field),
                "co_name" => (&code.name, At::Field),
                "co_qualname" => (code.qualname.as_ref().ok_or_else(missing)?, At::Field),
                "co_linetable" => (&code.linetable, At::Field),
                "co_exceptiontable" => {
                    (code.exceptiontable.as_ref().ok_or_else(missing)?, At::Field)
                }
                other => return Err(format!("no stream field for `{other}`")),
            };
            let slot = if p.offset == table.code.filename && keeps_chain {
                if !matches!(&**stream, Object::Str(_)) {
                    return Err("co_filename is not a str in the marshal stream".into());
                }
                // Not copied, but still a reference the graph holds.
                *self.refs.entry(child as usize).or_insert(0) += 1;
                Slot::Word(Word::Filename)
            } else {
                let mut child_pos = Pos::at(at);
                child_pos.filename_chain = keeps_chain && at == At::Consts;
                self.visit(child, stream, child_pos)?
            };
            slots.push((p.offset, slot));
        }
        Ok(slots)
    }

    fn tuple_slots(
        &mut self,
        obj: *mut ffi::PyObject,
        parsed: &Obj,
        pos: Pos,
    ) -> Result<Vec<(usize, Slot)>, String> {
        let Object::Tuple(items) = &**parsed else {
            return Err("a live tuple is something else in the marshal stream".into());
        };
        // SAFETY: `obj` is a live tuple.
        let n = unsafe { ffi::PyTuple_GET_SIZE(obj) } as usize;
        if n != items.len() {
            return Err("a tuple's length differs from the marshal stream".into());
        }
        let item_pos = match pos.at {
            At::Names => Pos::at(At::Name),
            // Direct items of co_consts: code objects there continue the filename chain.
            At::Consts => Pos {
                at: At::Const,
                filename_chain: pos.filename_chain,
            },
            _ => Pos::at(At::Const),
        };
        let mut slots = Vec::with_capacity(n);
        for (i, stream) in items.iter().enumerate() {
            // SAFETY: `i < n`; the item is a live object owned by the tuple.
            let item = unsafe { ffi::PyTuple_GET_ITEM(obj, i as isize) };
            let slot = self.visit(item, stream, item_pos)?;
            slots.push((common::TUPLE_ITEMS + 8 * i, slot));
        }
        Ok(slots)
    }

    /// A frozenset: its items in stream order (matched with the live items by value), and
    /// whether stock code creation builds it a second time.
    fn frozenset(&mut self, obj: *mut ffi::PyObject, parsed: &Obj) -> Result<Slot, String> {
        let ptr = obj as usize;
        if let Some(&i) = self.frozenset_index.get(&ptr) {
            return Ok(Slot::Word(Word::FrozenSet(i)));
        }
        let Object::FrozenSet(stream) = &**parsed else {
            return Err("a live frozenset is something else in the marshal stream".into());
        };
        let mut live: HashMap<Vec<u8>, Vec<usize>> = HashMap::default();
        let items = frozenset_items(obj)?;
        if items.len() != stream.len() {
            return Err("a frozenset's size differs from the marshal stream".into());
        }
        for item in items {
            let key = marshal::set_element_key(&self.value_of(item as *mut ffi::PyObject)?)
                .ok_or("a frozenset item without a key")?;
            live.entry(key).or_default().push(item);
        }
        let mut slots = Vec::with_capacity(stream.len());
        let mut rebuild = false;
        for s in stream.iter() {
            let key = marshal::set_element_key(s).ok_or("a frozenset item without a key")?;
            let item = live
                .get_mut(&key)
                .and_then(Vec::pop)
                .ok_or("a frozenset's items differ from the marshal stream")?;
            // `intern_string_constants` / `intern_constants` (Objects/codeobject.c,
            // 3.11-3.13) rebuild a frozenset when interning replaced an item: an item
            // matching [A-Za-z0-9_]* that marshal did not intern (and that is not a shared
            // singleton, which interns in place), or a nested frozenset that was rebuilt.
            rebuild |= match &**s {
                Object::Str(text) => {
                    name_chars(text)
                        && !self.parsed.is_interned(s)
                        && !self.symbols.contains_key(&item)
                }
                _ => false,
            };
            let slot = self.visit(item as *mut ffi::PyObject, s, Pos::at(At::Const))?;
            if let Slot::Word(Word::FrozenSet(inner)) = slot {
                rebuild |= self.frozensets[inner as usize].1;
            }
            slots.push(slot);
        }
        let index = self.frozensets.len() as u32;
        self.frozensets.push((slots, rebuild));
        self.frozenset_index.insert(ptr, index);
        Ok(Slot::Word(Word::FrozenSet(index)))
    }

    /// Every copied object must belong to the graph alone: its reference count is the
    /// number of references the graph holds (one of the root's is the caller's).
    fn check_owned(&self) -> Result<(), String> {
        for o in &self.owned {
            // SAFETY: `o.ptr` is a live object of the graph.
            let count = unsafe { raw::refcnt(o.ptr as *mut ffi::PyObject) };
            let expected = self.refs.get(&o.ptr).copied().unwrap_or(0);
            if count != expected {
                return Err(format!(
                    "a {:?} object is shared outside the module's code ({count} references, {expected} from the code)",
                    o.kind
                ));
            }
        }
        Ok(())
    }

    /// Lays the objects out and writes the image.
    fn emit(mut self, root: usize) -> Result<ModuleImage, String> {
        let table = self.table();
        let mut order: Vec<usize> = (0..self.owned.len()).collect();
        order.sort_by_key(|&i| (self.owned[i].kind.group(), i));
        let mut offsets: HashMap<usize, usize> =
            HashMap::with_capacity_and_hasher(order.len(), Default::default());
        let mut at = 0usize;
        for &i in &order {
            let o = &self.owned[i];
            at = at.next_multiple_of(8);
            if o.kind == Kind::Tuple {
                at += table.gc_head;
            }
            offsets.insert(o.ptr, at);
            at += o.len;
        }
        let total = at.next_multiple_of(8);
        let mut objects = vec![0u8; total];
        let word = |slot: Slot| -> Result<u64, String> {
            match slot {
                Slot::Word(w) => Ok(w.encode()),
                Slot::Ptr(p) => offsets
                    .get(&p)
                    .map(|&o| Word::Internal(o as u64).encode())
                    .ok_or_else(|| "a pointer to an object not in the image".into()),
            }
        };
        for &i in &order {
            let o = &self.owned[i];
            let start = offsets[&o.ptr];
            let out = &mut objects[start..start + o.len];
            // SAFETY: `o.ptr` is a live object of `o.len` bytes (computed from its own
            // header by `own`).
            out.copy_from_slice(unsafe { std::slice::from_raw_parts(o.ptr as *const u8, o.len) });
            raw::put(out, common::REFCNT, 8, table.refcnt);
            raw::put(
                out,
                common::TYPE,
                8,
                Word::Symbol(o.kind.type_symbol()).encode(),
            );
            for &(offset, slot) in &o.slots {
                raw::put(out, offset, 8, word(slot)?);
            }
            reset(table, o.kind, out);
        }
        let frozensets = std::mem::take(&mut self.frozensets)
            .into_iter()
            .map(|(slots, rebuild)| {
                Ok(FrozenSetImage {
                    items: slots
                        .into_iter()
                        .map(&word)
                        .collect::<Result<_, String>>()?,
                    rebuild,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(ModuleImage {
            objects,
            root: u32::try_from(offsets[&root]).map_err(|_| "the image is over 4 GiB")?,
            object_count: u32::try_from(order.len()).map_err(|_| "too many objects")?,
            code_count: self.code_count,
            names: self.names,
            frozensets,
        })
    }
}

/// Resets the per-process fields of one copied object to the values of a fresh object
/// (and zeroes padding), as the layout table lists them.
pub(crate) fn reset(table: &Table, kind: Kind, out: &mut [u8]) {
    match kind {
        Kind::Code => {
            let c = &table.code;
            for r in c.resets {
                raw::put(out, r.offset, r.size, r.value);
            }
            for &(offset, len) in c.padding {
                out[offset..offset + len].fill(0);
            }
            if let Some(v) = c.version {
                // Given a fresh value at every load (never the compiling process's).
                raw::put(out, v, 4, 0);
            }
        }
        Kind::Str => {
            let s = &table.str_;
            raw::put(out, s.hash, 8, u64::MAX);
            let state = ppyc_format::bytes::u32_at(out, s.state);
            // Kind, compact and ascii kept; not interned; bit 7 as the table requires;
            // the unnamed bits zero.
            raw::put(out, s.state, 4, u64::from((state & 0x7c) | s.bit7.1));
            out[s.padding.0..s.padding.0 + s.padding.1].fill(0);
            for &(_, offset, size) in s.zero {
                raw::put(out, offset, size, 0);
            }
            if state & 0x40 == 0 {
                for &(_, offset, size) in s.compact_zero {
                    raw::put(out, offset, size, 0);
                }
            }
        }
        Kind::Bytes => raw::put(out, common::BYTES_HASH, 8, u64::MAX),
        Kind::Tuple | Kind::Int | Kind::Float | Kind::Complex => {}
    }
}

/// The items of a live frozenset, in its iteration order (the references taken by the
/// iteration are released again).
fn frozenset_items(obj: *mut ffi::PyObject) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    // SAFETY: `obj` is a live frozenset (the GIL is held); `PyIter_Next` returns new
    // references, released at once: the set keeps its items alive.
    unsafe {
        let it = ffi::PyObject_GetIter(obj);
        if it.is_null() {
            ffi::PyErr_Clear();
            return Err("cannot iterate a frozenset".into());
        }
        loop {
            let item = ffi::PyIter_Next(it);
            if item.is_null() {
                break;
            }
            out.push(item as usize);
            ffi::Py_DECREF(item);
        }
        ffi::Py_DECREF(it);
        if !ffi::PyErr_Occurred().is_null() {
            ffi::PyErr_Clear();
            return Err("cannot iterate a frozenset".into());
        }
    }
    Ok(out)
}
