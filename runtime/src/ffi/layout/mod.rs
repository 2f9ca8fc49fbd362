//! CPython object layouts, one table per minor version, and the check of the table against
//! the running interpreter.
//!
//! Image mode copies objects byte for byte, so it must know, for every type it copies,
//! where each field is, which fields are pointers (turned into tagged words by the
//! snapshot and into addresses by the loader) and which are per-process state that an
//! image must never carry (cached hashes, lazily created caches, monitoring data, the code
//! object version). Those facts differ between minor versions and come from each version's
//! headers; [`v3_11`], [`v3_12`] and [`v3_13`] hold them, each citing its source.
//!
//! Only x86-64 Linux release builds with the GIL are described. [`current`] picks the table
//! of the running interpreter and checks it against real objects (sizes of the types, and
//! fields read back at their offsets on objects whose values are known); any difference,
//! a debug, trace-refs or free-threaded build, or an unknown version gives a reason instead
//! of a layout, and the caller uses marshal mode. Nothing is guessed.

pub(crate) mod probe;
pub(crate) mod v3_11;
pub(crate) mod v3_12;
pub(crate) mod v3_13;

/// What a pointer field of an image object may point at (checked by the loader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Points {
    /// A `tuple`.
    Tuple,
    /// A `tuple` whose items are all `str`.
    StrTuple,
    /// A `bytes`.
    Bytes,
    /// A `str` (or the module's filename).
    Str,
}

/// One pointer field of the code object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pointer {
    /// The C field name.
    pub(crate) name: &'static str,
    /// Offset from the start of the object.
    pub(crate) offset: usize,
    /// What it must point at.
    pub(crate) points: Points,
}

/// A per-process field of the code object: what an image stores in it (the value a freshly
/// created code object has), and what the loader may rely on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reset {
    /// The C field name.
    pub(crate) name: &'static str,
    /// Offset from the start of the object.
    pub(crate) offset: usize,
    /// Size in bytes (2, 4 or 8).
    pub(crate) size: usize,
    /// The value stored (little-endian, truncated to `size`).
    pub(crate) value: u64,
}

/// `PyCodeObject` (`Include/cpython/code.h`, `_PyCode_DEF`).
#[derive(Debug)]
pub(crate) struct CodeLayout {
    /// `offsetof(PyCodeObject, co_code_adaptive)` = `PyCode_Type.tp_basicsize`; the
    /// object's size is `round_up(basicsize + 2 * ob_size, 8)` (`_PyObject_VAR_SIZE`).
    pub(crate) basicsize: usize,
    /// Every `PyObject *` field that belongs to the code (not to the process).
    pub(crate) pointers: &'static [Pointer],
    /// Every per-process field, with the value an image holds.
    pub(crate) resets: &'static [Reset],
    /// Alignment padding (zeroed so that images are deterministic): `(offset, len)`.
    pub(crate) padding: &'static [(usize, usize)],
    /// `co_flags` (int).
    pub(crate) flags: usize,
    /// `co_argcount` (int).
    pub(crate) argcount: usize,
    /// `co_posonlyargcount` (int).
    pub(crate) posonlyargcount: usize,
    /// `co_kwonlyargcount` (int).
    pub(crate) kwonlyargcount: usize,
    /// `co_stacksize` (int).
    pub(crate) stacksize: usize,
    /// `co_firstlineno` (int).
    pub(crate) firstlineno: usize,
    /// `co_nlocalsplus` (int).
    pub(crate) nlocalsplus: usize,
    /// `co_framesize` (int; 3.12+).
    pub(crate) framesize: Option<usize>,
    /// `co_nlocals` (int).
    pub(crate) nlocals: usize,
    /// `co_nplaincellvars` (int; 3.11 only).
    pub(crate) nplaincellvars: Option<usize>,
    /// `co_ncellvars` (int).
    pub(crate) ncellvars: usize,
    /// `co_nfreevars` (int).
    pub(crate) nfreevars: usize,
    /// `co_version` (uint32; 3.12+): given a fresh value by the loader.
    pub(crate) version: Option<usize>,
    /// `_co_firsttraceable` (int).
    pub(crate) firsttraceable: usize,
    /// `co_localsplusnames` (the tuple whose length is `co_nlocalsplus`).
    pub(crate) localsplusnames: usize,
    /// `co_localspluskinds` (bytes of the same length).
    pub(crate) localspluskinds: usize,
    /// `co_filename`.
    pub(crate) filename: usize,
}

/// `PyASCIIObject` / `PyCompactUnicodeObject` (`Include/cpython/unicodeobject.h`).
#[derive(Debug)]
pub(crate) struct StrLayout {
    /// `sizeof(PyASCIIObject)`: where a compact ASCII string's characters start.
    pub(crate) ascii_size: usize,
    /// `sizeof(PyCompactUnicodeObject)`: where other compact strings' characters start.
    pub(crate) compact_size: usize,
    /// `length` (Py_ssize_t).
    pub(crate) length: usize,
    /// `hash` (Py_hash_t, -1 when not computed).
    pub(crate) hash: usize,
    /// `state` (32-bit bit field).
    pub(crate) state: usize,
    /// Alignment padding after `state` (zeroed so that images are deterministic).
    pub(crate) padding: (usize, usize),
    /// Fields zeroed in an image, all strings: `(name, offset, size)` (3.11: `wstr`).
    pub(crate) zero: &'static [(&'static str, usize, usize)],
    /// Fields zeroed in an image, compact non-ASCII strings only (`utf8_length`, `utf8`,
    /// 3.11 `wstr_length`).
    pub(crate) compact_zero: &'static [(&'static str, usize, usize)],
    /// The state bit that must be set (3.11 `ready`, `0x80`) or clear (3.12+
    /// `statically_allocated`, `0x80`) in an image: `(mask, value)`.
    pub(crate) bit7: (u32, u32),
    /// 3.11: `wstr` and `wstr_length` of compact UCS4 strings point at the string's own
    /// characters (`PyUnicode_New`, "is_sharing" when `sizeof(wchar_t) == 4`): the loader
    /// writes `(wstr offset, wstr_length offset)` itself.
    pub(crate) ucs4_shares_wstr: Option<(usize, usize)>,
}

/// `PyLongObject` (3.11 `Include/cpython/longintrepr.h`; 3.12+ `Include/cpython/longintrepr.h`
/// with `_PyLongValue`).
#[derive(Debug)]
pub(crate) struct IntLayout {
    /// 3.11: `ob_size` holds the sign and the number of digits. 3.12+: `lv_tag` holds
    /// `ndigits << 3 | sign` (sign 0 positive, 1 zero, 2 negative).
    pub(crate) tagged: bool,
}

/// One CPython minor version's layout facts.
#[derive(Debug)]
pub(crate) struct Table {
    /// `3.11`, ...
    pub(crate) version: &'static str,
    /// The minor version.
    pub(crate) minor: u8,
    /// What an image stores in `ob_refcnt`: the immortal encoding (3.12+), or a count no
    /// sequence of decrements reaches zero from (3.11, which has no immortality).
    pub(crate) refcnt: u64,
    /// `sizeof(PyGC_Head)` before GC objects (tuples).
    pub(crate) gc_head: usize,
    /// The code object.
    pub(crate) code: CodeLayout,
    /// Strings.
    pub(crate) str_: StrLayout,
    /// Ints.
    pub(crate) int: IntLayout,
    /// `_PyInterpreterFrame` specials counted in `co_framesize`
    /// (`FRAME_SPECIALS_SIZE`, `Include/internal/pycore_frame.h`).
    pub(crate) frame_specials: usize,
    /// `offsetof(PyInterpreterState, active_code_watchers)` (3.12+,
    /// `Include/internal/pycore_interp.h`): a byte with one bit per registered watcher.
    pub(crate) active_code_watchers: Option<usize>,
}

/// The fixed part of objects that are the same in every supported version
/// (`Include/object.h`, `Include/cpython/{tupleobject,bytesobject,floatobject,complexobject}.h`,
/// 3.11-3.13).
pub(crate) mod common {
    /// `ob_refcnt`.
    pub(crate) const REFCNT: usize = 0;
    /// `ob_type`.
    pub(crate) const TYPE: usize = 8;
    /// `ob_size` of a `PyVarObject`.
    pub(crate) const SIZE: usize = 16;
    /// `PyTupleObject.ob_item`.
    pub(crate) const TUPLE_ITEMS: usize = 24;
    /// `PyBytesObject.ob_shash` (-1 when not computed).
    pub(crate) const BYTES_HASH: usize = 24;
    /// `PyBytesObject.ob_sval`; `PyBytes_Type.tp_basicsize` is this plus one (the NUL).
    pub(crate) const BYTES_DATA: usize = 32;
    /// `PyLongObject.ob_digit` (3.11) / `long_value.ob_digit` (3.12+).
    pub(crate) const INT_DIGITS: usize = 24;
    /// `sizeof(PyFloatObject)`; `ob_fval` at 16.
    pub(crate) const FLOAT_SIZE: usize = 24;
    /// `sizeof(PyComplexObject)`; `cval` at 16.
    pub(crate) const COMPLEX_SIZE: usize = 32;
    /// `CO_FAST_LOCAL`, `CO_FAST_CELL`, `CO_FAST_FREE` (`Include/internal/pycore_code.h`).
    pub(crate) const FAST_LOCAL: u8 = 0x20;
    /// See [`FAST_LOCAL`].
    pub(crate) const FAST_CELL: u8 = 0x40;
    /// See [`FAST_LOCAL`].
    pub(crate) const FAST_FREE: u8 = 0x80;
}

/// One version's table, behind one interface.
pub(crate) trait Layout: Sync {
    /// The facts.
    fn table(&self) -> &'static Table;
}

/// The table for CPython `3.minor`, if this build describes it.
pub(crate) fn for_minor(minor: u8) -> Option<&'static dyn Layout> {
    match minor {
        11 => Some(&v3_11::V3_11),
        12 => Some(&v3_12::V3_12),
        13 => Some(&v3_13::V3_13),
        _ => None,
    }
}

impl Table {
    /// The layout description (`ILAY`, `spec/FORMAT.md` §10.1): every fact an image depends
    /// on, as sorted `key=value` lines; its BLAKE3 is the layout fingerprint. `build`
    /// identifies the interpreter exactly (version, hexversion, ABI flags, ...).
    pub(crate) fn description(&self, build: &[(&str, String)]) -> Vec<u8> {
        let mut lines: Vec<String> = build.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut fact = |k: &str, v: String| lines.push(format!("{k}={v}"));
        fact(
            "image_format",
            ppyc_format::image::IMAGE_FORMAT_VERSION.to_string(),
        );
        fact("layout", self.version.to_owned());
        fact("refcnt", format!("{:#x}", self.refcnt));
        fact("gc_head", self.gc_head.to_string());
        fact("frame_specials", self.frame_specials.to_string());
        let c = &self.code;
        fact("code.basicsize", c.basicsize.to_string());
        for p in c.pointers {
            fact(&format!("code.{}", p.name), p.offset.to_string());
        }
        for r in c.resets {
            fact(
                &format!("code.{}", r.name),
                format!("{}/{}={:#x}", r.offset, r.size, r.value),
            );
        }
        for (k, v) in [
            ("co_flags", Some(c.flags)),
            ("co_argcount", Some(c.argcount)),
            ("co_posonlyargcount", Some(c.posonlyargcount)),
            ("co_kwonlyargcount", Some(c.kwonlyargcount)),
            ("co_stacksize", Some(c.stacksize)),
            ("co_firstlineno", Some(c.firstlineno)),
            ("co_nlocalsplus", Some(c.nlocalsplus)),
            ("co_framesize", c.framesize),
            ("co_nlocals", Some(c.nlocals)),
            ("co_nplaincellvars", c.nplaincellvars),
            ("co_ncellvars", Some(c.ncellvars)),
            ("co_nfreevars", Some(c.nfreevars)),
            ("co_version", c.version),
            ("_co_firsttraceable", Some(c.firsttraceable)),
        ] {
            if let Some(v) = v {
                fact(&format!("code.{k}"), v.to_string());
            }
        }
        let s = &self.str_;
        fact("str.ascii_size", s.ascii_size.to_string());
        fact("str.compact_size", s.compact_size.to_string());
        fact(
            "str.fields",
            format!("length {} hash {} state {}", s.length, s.hash, s.state),
        );
        for (name, offset, size) in s.zero.iter().chain(s.compact_zero) {
            fact(&format!("str.{name}"), format!("{offset}/{size}=0"));
        }
        fact("str.bit7", format!("{:#x}/{:#x}", s.bit7.0, s.bit7.1));
        fact("int.tagged", self.int.tagged.to_string());
        if let Some(w) = self.active_code_watchers {
            fact("interp.active_code_watchers", w.to_string());
        }
        fact("symbols", ppyc_format::image::symbol::COUNT.to_string());
        lines.sort();
        lines.dedup();
        let mut out = lines.join("\n");
        out.push('\n');
        out.into_bytes()
    }
}
