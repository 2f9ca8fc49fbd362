//! A reader of CPython's marshal format, as `.pyc` files hold it (CPython 3.10 to 3.14).
//!
//! ppyc reads marshal data for three things: to check that the code of a `.pyc` is complete
//! and well formed before packing it ([`validate`]), to show a code object's summary
//! (`ppyc inspect PACK MODULE`, [`summary`]) and to compare stored code with what a source
//! compiles to (`ppyc verify`, [`same_code`]). `spec/MARSHAL.md` records why this is our own
//! module rather than an existing crate.
//!
//! The reader follows `r_object` in CPython's `Python/marshal.c` (3.10–3.14): the same type
//! codes, the same reference table (objects flagged with `FLAG_REF` get the next index;
//! tuples, lists, dicts and sets before their items, frozensets, code objects and slices
//! reserve theirs before their items and fill it after), the same limits (nesting depth
//! 2000, `MAX_MARSHAL_STACK_DEPTH`). References are resolved into shared [`Rc`]s, so
//! structural equality does not depend on whether a value was written once and referenced
//! or written twice.
//!
//! Hostile input is safe: every read is bounds checked, sizes are checked against the bytes
//! left before anything is allocated, references to slots not yet filled are refused (where
//! CPython would build a cycle or raise), and nesting is bounded. No `unsafe`.

use std::fmt::Write as _;
use std::rc::Rc;

/// `MAX_MARSHAL_STACK_DEPTH` in Python/marshal.c (3.10–3.14).
const MAX_DEPTH: usize = 2000;
/// `FLAG_REF` in Python/marshal.c.
const FLAG_REF: u8 = 0x80;

/// The CPython versions whose `.pyc` files the reader understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PyVersion {
    /// 3.10: pyc magic 3439, marshal version 4.
    V3_10,
    /// 3.11: pyc magic 3495, marshal version 4.
    V3_11,
    /// 3.12: pyc magic 3531, marshal version 4.
    V3_12,
    /// 3.13: pyc magic 3571, marshal version 4.
    V3_13,
    /// 3.14: pyc magic 3627, marshal version 5 (adds slices).
    V3_14,
}

impl PyVersion {
    /// The version whose final pyc magic number (Lib/importlib/_bootstrap_external.py,
    /// `MAGIC_NUMBER`) is `magic`; `None` for any other, pre-releases included.
    #[must_use]
    pub fn from_magic(magic: [u8; 4]) -> Option<Self> {
        if magic[2..] != *b"\r\n" {
            return None;
        }
        match u16::from_le_bytes([magic[0], magic[1]]) {
            3439 => Some(Self::V3_10),
            3495 => Some(Self::V3_11),
            3531 => Some(Self::V3_12),
            3571 => Some(Self::V3_13),
            3627 => Some(Self::V3_14),
            _ => None,
        }
    }

    /// The minor version (10 for 3.10).
    #[must_use]
    pub fn minor(self) -> u8 {
        match self {
            Self::V3_10 => 10,
            Self::V3_11 => 11,
            Self::V3_12 => 12,
            Self::V3_13 => 13,
            Self::V3_14 => 14,
        }
    }
}

/// Why marshal data was refused. `offset` is where the reader was in the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MarshalError {
    #[error("marshal data ends early (at byte {offset})")]
    Truncated { offset: usize },
    #[error("unknown marshal type code {code:#04x} at byte {offset}")]
    UnknownType { code: u8, offset: usize },
    #[error("bad marshal data at byte {offset}: {what}")]
    Invalid { offset: usize, what: &'static str },
    #[error("marshal data nested deeper than {MAX_DEPTH} levels (at byte {offset})")]
    TooDeep { offset: usize },
}

/// A decoded marshal object.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// `None`.
    None,
    /// `False`.
    False,
    /// `True`.
    True,
    /// `StopIteration` (the class).
    StopIteration,
    /// `...`.
    Ellipsis,
    /// An int that fits in 32 bits (`TYPE_INT`).
    Int(i32),
    /// A larger int (`TYPE_LONG`): sign and base-2^15 digits, least significant first.
    Long {
        /// Whether the value is negative.
        negative: bool,
        /// 15-bit digits, least significant first, the last one non-zero.
        digits: Vec<u16>,
    },
    /// A float, by its IEEE 754 bits (`TYPE_BINARY_FLOAT`) or text (`TYPE_FLOAT`).
    Float(FloatRepr),
    /// A complex number: real and imaginary parts.
    Complex(FloatRepr, FloatRepr),
    /// `bytes`.
    Bytes(Rc<[u8]>),
    /// `str`, as UTF-8 with lone surrogates encoded as CPython's `surrogatepass` does.
    Str(Rc<[u8]>),
    /// `tuple`.
    Tuple(Rc<[Obj]>),
    /// `list`.
    List(Rc<[Obj]>),
    /// `dict`, in stream order.
    Dict(Rc<[(Obj, Obj)]>),
    /// `set`, in stream order.
    Set(Rc<[Obj]>),
    /// `frozenset`, in stream order (which is the set's iteration order when written).
    FrozenSet(Rc<[Obj]>),
    /// A code object.
    Code(Rc<Code>),
    /// `slice(start, stop, step)` (3.14).
    Slice(Obj, Obj, Obj),
}

/// A shared, reference-resolved object.
pub type Obj = Rc<Object>;

/// How a float was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FloatRepr {
    /// IEEE 754 binary64 bits (`TYPE_BINARY_FLOAT`, marshal version 2 and later).
    Bits(u64),
    /// Decimal text (`TYPE_FLOAT`, marshal versions 0 and 1).
    Text(Vec<u8>),
}

/// A code object's fields, in marshal order.
///
/// 3.10 (Python/marshal.c, 3.10): argcount, posonlyargcount, kwonlyargcount, nlocals,
/// stacksize, flags, code, consts, names, varnames, freevars, cellvars, filename, name,
/// firstlineno, linetable. 3.11–3.14 (Python/marshal.c, 3.11–3.14): argcount,
/// posonlyargcount, kwonlyargcount, stacksize, flags, code, consts, names, localsplusnames,
/// localspluskinds, filename, name, qualname, firstlineno, linetable, exceptiontable.
/// Fields a version does not have are `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct Code {
    /// `co_argcount`.
    pub argcount: i32,
    /// `co_posonlyargcount`.
    pub posonlyargcount: i32,
    /// `co_kwonlyargcount`.
    pub kwonlyargcount: i32,
    /// `co_nlocals` (3.10 only; derived from localsplus later).
    pub nlocals: Option<i32>,
    /// `co_stacksize`.
    pub stacksize: i32,
    /// `co_flags`.
    pub flags: i32,
    /// `co_code` (bytes).
    pub code: Obj,
    /// `co_consts` (tuple).
    pub consts: Obj,
    /// `co_names` (tuple).
    pub names: Obj,
    /// 3.10: `co_varnames`; 3.11+: `co_localsplusnames`.
    pub localsplusnames: Obj,
    /// 3.11+: `co_localspluskinds` (bytes).
    pub localspluskinds: Option<Obj>,
    /// 3.10: `co_freevars`.
    pub freevars: Option<Obj>,
    /// 3.10: `co_cellvars`.
    pub cellvars: Option<Obj>,
    /// `co_filename`.
    pub filename: Obj,
    /// `co_name`.
    pub name: Obj,
    /// 3.11+: `co_qualname`.
    pub qualname: Option<Obj>,
    /// `co_firstlineno`.
    pub firstlineno: i32,
    /// `co_linetable` (3.10: the PEP 626 line table).
    pub linetable: Obj,
    /// 3.11+: `co_exceptiontable`.
    pub exceptiontable: Option<Obj>,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    version: PyVersion,
    /// The reference table; `None` marks a reserved slot not yet filled.
    refs: Vec<Option<Obj>>,
    depth: usize,
    /// The strings read with an interned type code (`t`, `A`, `Z`), by address.
    interned: std::collections::HashSet<usize>,
}

impl<'a> Reader<'a> {
    fn invalid(&self, what: &'static str) -> MarshalError {
        MarshalError::Invalid {
            offset: self.pos,
            what,
        }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], MarshalError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(MarshalError::Truncated { offset: self.pos })?;
        let b = &self.data[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn byte(&mut self) -> Result<u8, MarshalError> {
        Ok(self.bytes(1)?[0])
    }

    fn long(&mut self) -> Result<i32, MarshalError> {
        let b = self.bytes(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A non-negative 32-bit length, at most the bytes left divided by `unit` (each item
    /// needs at least `unit` bytes), so that nothing is allocated for data that is not there.
    fn len(&mut self, unit: usize) -> Result<usize, MarshalError> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| self.invalid("negative size"))?;
        if n.saturating_mul(unit) > self.data.len() - self.pos {
            return Err(MarshalError::Truncated { offset: self.pos });
        }
        Ok(n)
    }

    fn f64_bits(&mut self) -> Result<u64, MarshalError> {
        let b = self.bytes(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn text_float(&mut self) -> Result<FloatRepr, MarshalError> {
        let n = usize::from(self.byte()?);
        Ok(FloatRepr::Text(self.bytes(n)?.to_vec()))
    }

    /// Registers `obj` for `FLAG_REF` (`R_REF`/`r_ref` in marshal.c).
    fn string(&mut self, interned: bool, text: Rc<[u8]>) -> Obj {
        let s = Rc::new(Object::Str(text));
        if interned {
            self.interned.insert(Rc::as_ptr(&s) as usize);
        }
        s
    }

    fn remember(&mut self, flag: bool, obj: Obj) -> Obj {
        if flag {
            self.refs.push(Some(obj.clone()));
        }
        obj
    }

    /// `r_ref_reserve`: takes an index now, filled by [`Self::fill`] after the items.
    fn reserve(&mut self, flag: bool) -> Option<usize> {
        flag.then(|| {
            self.refs.push(None);
            self.refs.len() - 1
        })
    }

    fn fill(&mut self, slot: Option<usize>, obj: Obj) -> Obj {
        if let Some(i) = slot {
            self.refs[i] = Some(obj.clone());
        }
        obj
    }

    fn items(&mut self, n: usize) -> Result<Vec<Obj>, MarshalError> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.object()?);
        }
        Ok(v)
    }

    fn object(&mut self) -> Result<Obj, MarshalError> {
        if self.depth >= MAX_DEPTH {
            return Err(MarshalError::TooDeep { offset: self.pos });
        }
        self.depth += 1;
        let r = self.object_inner();
        self.depth -= 1;
        r
    }

    fn object_inner(&mut self) -> Result<Obj, MarshalError> {
        let offset = self.pos;
        let code = self.byte()?;
        let flag = code & FLAG_REF != 0;
        Ok(match code & !FLAG_REF {
            b'0' => {
                return Err(MarshalError::Invalid {
                    offset,
                    what: "NULL object",
                });
            }
            b'N' => Rc::new(Object::None),
            b'F' => Rc::new(Object::False),
            b'T' => Rc::new(Object::True),
            b'S' => Rc::new(Object::StopIteration),
            b'.' => Rc::new(Object::Ellipsis),
            b'i' => {
                let v = self.long()?;
                self.remember(flag, Rc::new(Object::Int(v)))
            }
            b'l' => {
                let n = self.long()?;
                let count =
                    usize::try_from(n.unsigned_abs()).map_err(|_| self.invalid("long size"))?;
                if count.saturating_mul(2) > self.data.len() - self.pos {
                    return Err(MarshalError::Truncated { offset: self.pos });
                }
                let mut digits = Vec::with_capacity(count);
                for _ in 0..count {
                    let b = self.bytes(2)?;
                    let d = u16::from_le_bytes([b[0], b[1]]);
                    if d > 0x7fff {
                        return Err(self.invalid("digit out of range in long"));
                    }
                    digits.push(d);
                }
                if digits.last() == Some(&0) {
                    return Err(self.invalid("unnormalized long data"));
                }
                self.remember(
                    flag,
                    Rc::new(Object::Long {
                        negative: n < 0,
                        digits,
                    }),
                )
            }
            b'g' => {
                let v = self.f64_bits()?;
                self.remember(flag, Rc::new(Object::Float(FloatRepr::Bits(v))))
            }
            b'f' => {
                let v = self.text_float()?;
                self.remember(flag, Rc::new(Object::Float(v)))
            }
            b'y' => {
                let (re, im) = (self.f64_bits()?, self.f64_bits()?);
                self.remember(
                    flag,
                    Rc::new(Object::Complex(FloatRepr::Bits(re), FloatRepr::Bits(im))),
                )
            }
            b'x' => {
                let (re, im) = (self.text_float()?, self.text_float()?);
                self.remember(flag, Rc::new(Object::Complex(re, im)))
            }
            b's' => {
                let n = self.len(1)?;
                let b: Rc<[u8]> = self.bytes(n)?.into();
                self.remember(flag, Rc::new(Object::Bytes(b)))
            }
            t @ (b'u' | b't') => {
                let n = self.len(1)?;
                let b = self.bytes(n)?;
                if !valid_utf8_surrogatepass(b) {
                    return Err(MarshalError::Invalid {
                        offset,
                        what: "string is not UTF-8",
                    });
                }
                let s = self.string(t == b't', b.into());
                self.remember(flag, s)
            }
            t @ (b'a' | b'A') => {
                let n = self.len(1)?;
                let b = self.bytes(n)?;
                let s = self.string(t == b'A', latin1_to_utf8(b));
                self.remember(flag, s)
            }
            t @ (b'z' | b'Z') => {
                let n = usize::from(self.byte()?);
                let b = self.bytes(n)?;
                let s = self.string(t == b'Z', latin1_to_utf8(b));
                self.remember(flag, s)
            }
            b')' => {
                let n = usize::from(self.byte()?);
                self.tuple(n, flag)?
            }
            b'(' => {
                let n = self.len(1)?;
                self.tuple(n, flag)?
            }
            b'[' => {
                let n = self.len(1)?;
                let slot = self.reserve(flag);
                let items = self.items(n)?;
                self.fill(slot, Rc::new(Object::List(items.into())))
            }
            b'{' => {
                let slot = self.reserve(flag);
                let mut pairs = Vec::new();
                loop {
                    if self
                        .data
                        .get(self.pos)
                        .is_some_and(|&c| c & !FLAG_REF == b'0')
                    {
                        self.pos += 1;
                        break;
                    }
                    let k = self.object()?;
                    let v = self.object()?;
                    pairs.push((k, v));
                }
                self.fill(slot, Rc::new(Object::Dict(pairs.into())))
            }
            t @ (b'<' | b'>') => {
                let n = self.len(1)?;
                let slot = self.reserve(flag);
                let items = self.items(n)?;
                let obj = if t == b'<' {
                    Object::Set(items.into())
                } else {
                    Object::FrozenSet(items.into())
                };
                self.fill(slot, Rc::new(obj))
            }
            b'c' => {
                let slot = self.reserve(flag);
                let code = self.code()?;
                self.fill(slot, Rc::new(Object::Code(Rc::new(code))))
            }
            b':' if self.version >= PyVersion::V3_14 => {
                let slot = self.reserve(flag);
                let (start, stop, step) = (self.object()?, self.object()?, self.object()?);
                self.fill(slot, Rc::new(Object::Slice(start, stop, step)))
            }
            b'r' => {
                let n = self.long()?;
                let found = usize::try_from(n)
                    .ok()
                    .and_then(|i| self.refs.get(i))
                    .cloned();
                match found {
                    Some(Some(obj)) => obj,
                    Some(None) => {
                        return Err(MarshalError::Invalid {
                            offset,
                            what: "reference to an incomplete object",
                        });
                    }
                    None => {
                        return Err(MarshalError::Invalid {
                            offset,
                            what: "invalid reference",
                        });
                    }
                }
            }
            other => {
                return Err(MarshalError::UnknownType {
                    code: other,
                    offset,
                });
            }
        })
    }

    fn tuple(&mut self, n: usize, flag: bool) -> Result<Obj, MarshalError> {
        // Tuples take their index before their items (R_REF right after PyTuple_New); an
        // item referring to its own tuple would be a cycle, which compile() never writes.
        let slot = self.reserve(flag);
        let items = self.items(n)?;
        Ok(self.fill(slot, Rc::new(Object::Tuple(items.into()))))
    }

    fn typed(&mut self, what: &'static str, ok: fn(&Object) -> bool) -> Result<Obj, MarshalError> {
        let offset = self.pos;
        let obj = self.object()?;
        if ok(&obj) {
            Ok(obj)
        } else {
            Err(MarshalError::Invalid { offset, what })
        }
    }

    fn code(&mut self) -> Result<Code, MarshalError> {
        let is_bytes = |o: &Object| matches!(o, Object::Bytes(_));
        let is_tuple = |o: &Object| matches!(o, Object::Tuple(_));
        let is_str = |o: &Object| matches!(o, Object::Str(_));
        let argcount = self.long()?;
        let posonlyargcount = self.long()?;
        let kwonlyargcount = self.long()?;
        if self.version == PyVersion::V3_10 {
            let nlocals = self.long()?;
            let stacksize = self.long()?;
            let flags = self.long()?;
            let code = self.typed("co_code is not bytes", is_bytes)?;
            let consts = self.typed("co_consts is not a tuple", is_tuple)?;
            let names = self.typed("co_names is not a tuple", is_tuple)?;
            let varnames = self.typed("co_varnames is not a tuple", is_tuple)?;
            let freevars = self.typed("co_freevars is not a tuple", is_tuple)?;
            let cellvars = self.typed("co_cellvars is not a tuple", is_tuple)?;
            let filename = self.typed("co_filename is not a str", is_str)?;
            let name = self.typed("co_name is not a str", is_str)?;
            let firstlineno = self.long()?;
            let linetable = self.typed("co_linetable is not bytes", is_bytes)?;
            return Ok(Code {
                argcount,
                posonlyargcount,
                kwonlyargcount,
                nlocals: Some(nlocals),
                stacksize,
                flags,
                code,
                consts,
                names,
                localsplusnames: varnames,
                localspluskinds: None,
                freevars: Some(freevars),
                cellvars: Some(cellvars),
                filename,
                name,
                qualname: None,
                firstlineno,
                linetable,
                exceptiontable: None,
            });
        }
        let stacksize = self.long()?;
        let flags = self.long()?;
        let code = self.typed("co_code is not bytes", is_bytes)?;
        let consts = self.typed("co_consts is not a tuple", is_tuple)?;
        let names = self.typed("co_names is not a tuple", is_tuple)?;
        let localsplusnames = self.typed("co_localsplusnames is not a tuple", is_tuple)?;
        let localspluskinds = self.typed("co_localspluskinds is not bytes", is_bytes)?;
        let filename = self.typed("co_filename is not a str", is_str)?;
        let name = self.typed("co_name is not a str", is_str)?;
        let qualname = self.typed("co_qualname is not a str", is_str)?;
        let firstlineno = self.long()?;
        let linetable = self.typed("co_linetable is not bytes", is_bytes)?;
        let exceptiontable = self.typed("co_exceptiontable is not bytes", is_bytes)?;
        Ok(Code {
            argcount,
            posonlyargcount,
            kwonlyargcount,
            nlocals: None,
            stacksize,
            flags,
            code,
            consts,
            names,
            localsplusnames,
            localspluskinds: Some(localspluskinds),
            freevars: None,
            cellvars: None,
            filename,
            name,
            qualname: Some(qualname),
            firstlineno,
            linetable,
            exceptiontable: Some(exceptiontable),
        })
    }
}

/// Whether `b` is UTF-8 as CPython's `surrogatepass` error handler writes it: standard UTF-8
/// where the three-byte forms of U+D800..U+DFFF are allowed too.
fn valid_utf8_surrogatepass(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        match std::str::from_utf8(&b[i..]) {
            Ok(_) => return true,
            Err(e) => {
                i += e.valid_up_to();
                // A surrogate: ED A0..BF 80..BF.
                if b.len() >= i + 3
                    && b[i] == 0xED
                    && (0xA0..=0xBF).contains(&b[i + 1])
                    && (0x80..=0xBF).contains(&b[i + 2])
                {
                    i += 3;
                } else {
                    return false;
                }
            }
        }
    }
    true
}

/// `TYPE_ASCII` strings are read as Latin-1 by CPython (`PyUnicode_FromKindAndData` with
/// 1-byte kind), so bytes over 0x7F become the code points U+0080..U+00FF.
fn latin1_to_utf8(b: &[u8]) -> Rc<[u8]> {
    if b.is_ascii() {
        return b.into();
    }
    let s: String = b.iter().map(|&c| char::from(c)).collect();
    s.into_bytes().into()
}

/// Parses a whole marshal stream (a `.pyc` without its 16-byte header) into one object.
///
/// Bytes after the object are ignored, as `marshal.loads` ignores them.
pub fn parse(data: &[u8], version: PyVersion) -> Result<Object, MarshalError> {
    let obj = parse_annotated(data, version)?.root;
    Ok(Rc::try_unwrap(obj).unwrap_or_else(|rc| (*rc).clone()))
}

/// A parsed marshal stream that remembers which strings were written as interned.
#[derive(Debug)]
pub struct Annotated {
    /// The top-level object.
    pub root: Obj,
    interned: std::collections::HashSet<usize>,
}

impl Annotated {
    /// Whether `s` (a string of this tree) was written with an interned type code
    /// (`t`, `A`, `Z`), so that `marshal.loads` interns it.
    #[must_use]
    pub fn is_interned(&self, s: &Obj) -> bool {
        self.interned.contains(&(Rc::as_ptr(s) as usize))
    }
}

/// Parses like [`parse`], also recording which strings were marked interned.
pub fn parse_annotated(data: &[u8], version: PyVersion) -> Result<Annotated, MarshalError> {
    let mut r = Reader {
        data,
        pos: 0,
        version,
        refs: Vec::new(),
        depth: 0,
        interned: std::collections::HashSet::new(),
    };
    let root = r.object()?;
    Ok(Annotated {
        root,
        interned: r.interned,
    })
}

/// Checks that `data` is one well-formed marshal object whose top level is a code object
/// (what a `.pyc` holds), without keeping the result.
pub fn validate(data: &[u8], version: PyVersion) -> Result<(), MarshalError> {
    match parse(data, version)? {
        Object::Code(_) => Ok(()),
        _ => Err(MarshalError::Invalid {
            offset: 0,
            what: "the top-level object is not a code object",
        }),
    }
}

fn text(obj: &Object) -> String {
    match obj {
        Object::Str(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

fn len_of(obj: &Object) -> usize {
    match obj {
        Object::Tuple(v) | Object::List(v) | Object::Set(v) | Object::FrozenSet(v) => v.len(),
        Object::Bytes(b) | Object::Str(b) => b.len(),
        Object::Dict(d) => d.len(),
        _ => 0,
    }
}

/// Code objects nested in `code`'s constants, recursively.
fn nested(code: &Code) -> usize {
    let Object::Tuple(consts) = &*code.consts else {
        return 0;
    };
    consts
        .iter()
        .map(|c| match &**c {
            Object::Code(inner) => 1 + nested(inner),
            _ => 0,
        })
        .sum()
}

/// A human-readable summary of a code object (one `field: value` per line).
#[must_use]
pub fn summary(obj: &Object) -> String {
    let Object::Code(code) = obj else {
        return format!("not a code object: {obj:?}");
    };
    let mut s = String::new();
    let _ = writeln!(s, "name: {}", text(&code.name));
    if let Some(q) = &code.qualname {
        let _ = writeln!(s, "qualname: {}", text(q));
    }
    let _ = writeln!(s, "filename: {}", text(&code.filename));
    let _ = writeln!(s, "firstlineno: {}", code.firstlineno);
    let _ = writeln!(
        s,
        "argcount: {}, posonlyargcount: {}, kwonlyargcount: {}",
        code.argcount, code.posonlyargcount, code.kwonlyargcount
    );
    let _ = writeln!(s, "flags: {:#x}, stacksize: {}", code.flags, code.stacksize);
    let _ = writeln!(s, "bytecode: {} bytes", len_of(&code.code));
    let _ = writeln!(
        s,
        "consts: {}, names: {}, locals: {}",
        len_of(&code.consts),
        len_of(&code.names),
        len_of(&code.localsplusnames)
    );
    let _ = writeln!(s, "nested code objects: {} (recursively)", nested(code));
    s
}

/// Structural equality that ignores every `co_filename` (which the import system rewrites
/// at load time anyway) and stops after `budget` steps (a hostile stream of shared
/// references could otherwise make the comparison exponential).
fn equal(a: &Obj, b: &Obj, budget: &mut u32) -> bool {
    if Rc::ptr_eq(a, b) {
        return true;
    }
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let all = |x: &[Obj], y: &[Obj], budget: &mut u32| {
        x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q, budget))
    };
    match (&**a, &**b) {
        (Object::Tuple(x), Object::Tuple(y)) | (Object::List(x), Object::List(y)) => {
            all(x, y, budget)
        }
        // A set's marshalled order is its iteration order in the process that wrote it,
        // which depends on that process's hash seed (str and bytes hashes): compare sets
        // as sets. Elements that have no canonical key (never the case for constants)
        // are compared in order.
        (Object::Set(x), Object::Set(y)) | (Object::FrozenSet(x), Object::FrozenSet(y)) => {
            match (sorted_keys(x, budget), sorted_keys(y, budget)) {
                (Some(p), Some(q)) => p == q,
                _ => all(x, y, budget),
            }
        }
        (Object::Dict(x), Object::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((k1, v1), (k2, v2))| equal(k1, k2, budget) && equal(v1, v2, budget))
        }
        (Object::Slice(a1, a2, a3), Object::Slice(b1, b2, b3)) => {
            equal(a1, b1, budget) && equal(a2, b2, budget) && equal(a3, b3, budget)
        }
        (Object::Code(x), Object::Code(y)) => {
            let opt = |p: &Option<Obj>, q: &Option<Obj>, budget: &mut u32| match (p, q) {
                (Some(p), Some(q)) => equal(p, q, budget),
                (None, None) => true,
                _ => false,
            };
            x.argcount == y.argcount
                && x.posonlyargcount == y.posonlyargcount
                && x.kwonlyargcount == y.kwonlyargcount
                && x.nlocals == y.nlocals
                && x.stacksize == y.stacksize
                && x.flags == y.flags
                && x.firstlineno == y.firstlineno
                && equal(&x.code, &y.code, budget)
                && equal(&x.consts, &y.consts, budget)
                && equal(&x.names, &y.names, budget)
                && equal(&x.localsplusnames, &y.localsplusnames, budget)
                && opt(&x.localspluskinds, &y.localspluskinds, budget)
                && opt(&x.freevars, &y.freevars, budget)
                && opt(&x.cellvars, &y.cellvars, budget)
                && equal(&x.name, &y.name, budget)
                && opt(&x.qualname, &y.qualname, budget)
                && equal(&x.linetable, &y.linetable, budget)
                && opt(&x.exceptiontable, &y.exceptiontable, budget)
        }
        (x, y) => x == y,
    }
}

/// The canonical keys of a set's elements, sorted: two sets hold the same elements (with
/// exactly the same types) when these are equal. `None` if an element has no key.
fn sorted_keys(items: &[Obj], budget: &mut u32) -> Option<Vec<Vec<u8>>> {
    let mut keys = Vec::with_capacity(items.len());
    for item in items {
        let mut key = Vec::new();
        canonical_key(item, &mut key, budget)?;
        keys.push(key);
    }
    keys.sort_unstable();
    Some(keys)
}

/// Appends a self-delimiting encoding of a hashable constant that is equal for two
/// objects exactly when they are the same value of the same type (sets in any order;
/// an `int` the same whichever marshal code wrote it). `None` for objects that cannot be
/// set elements (code, list, dict, set) or once `budget` is spent.
fn canonical_key(obj: &Object, out: &mut Vec<u8>, budget: &mut u32) -> Option<()> {
    canonical_key_into(obj, out, budget)
}

/// The canonical key of a set element (the same for two objects exactly when they are the
/// same value of the same type; sets in any order): how `ppyc verify` compares sets, and
/// how image snapshots match a frozenset's live items with their stream order. `None` for
/// objects that cannot be set elements.
#[must_use]
pub fn set_element_key(obj: &Object) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    canonical_key_into(obj, &mut out, &mut 1_000_000)?;
    Some(out)
}

fn canonical_key_into(obj: &Object, out: &mut Vec<u8>, budget: &mut u32) -> Option<()> {
    *budget = budget.checked_sub(1)?;
    let blob = |out: &mut Vec<u8>, tag: u8, bytes: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    match obj {
        Object::None => out.push(0),
        Object::False => out.push(1),
        Object::True => out.push(2),
        Object::StopIteration => out.push(3),
        Object::Ellipsis => out.push(4),
        Object::Int(v) => {
            // As a TYPE_LONG would hold it: sign, then 15-bit digits.
            let mut magnitude = v.unsigned_abs();
            let mut digits = Vec::new();
            while magnitude != 0 {
                digits.extend_from_slice(&((magnitude & 0x7fff) as u16).to_le_bytes());
                magnitude >>= 15;
            }
            blob(out, 5 + u8::from(*v < 0), &digits);
        }
        Object::Long { negative, digits } => {
            let bytes: Vec<u8> = digits.iter().flat_map(|d| d.to_le_bytes()).collect();
            blob(out, 5 + u8::from(*negative), &bytes);
        }
        Object::Float(f) => float_key(f, out),
        Object::Complex(re, im) => {
            out.push(8);
            float_key(re, out);
            float_key(im, out);
        }
        Object::Bytes(b) => blob(out, 9, b),
        Object::Str(s) => blob(out, 10, s),
        Object::Tuple(items) => {
            out.push(11);
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items.iter() {
                canonical_key(item, out, budget)?;
            }
        }
        Object::FrozenSet(items) => {
            out.push(12);
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for key in sorted_keys(items, budget)? {
                out.extend_from_slice(&key);
            }
        }
        Object::Slice(start, stop, step) => {
            out.push(13);
            for part in [start, stop, step] {
                canonical_key(part, out, budget)?;
            }
        }
        Object::List(_) | Object::Dict(_) | Object::Set(_) | Object::Code(_) => return None,
    }
    Some(())
}

fn float_key(f: &FloatRepr, out: &mut Vec<u8>) {
    match f {
        FloatRepr::Bits(bits) => {
            out.push(7);
            out.extend_from_slice(&bits.to_le_bytes());
        }
        FloatRepr::Text(text) => {
            out.push(14);
            out.extend_from_slice(&(text.len() as u64).to_le_bytes());
            out.extend_from_slice(text);
        }
    }
}

/// Whether two marshal streams hold the same code, ignoring `co_filename` and how values
/// were shared by references. `false` if either does not parse.
#[must_use]
pub fn same_code(a: &[u8], b: &[u8], version: PyVersion) -> bool {
    match (parse(a, version), parse(b, version)) {
        (Ok(x), Ok(y)) => equal(&Rc::new(x), &Rc::new(y), &mut 50_000_000),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: PyVersion = PyVersion::V3_12;

    fn obj(data: &[u8]) -> Object {
        parse(data, V).unwrap()
    }

    #[test]
    fn scalars() {
        assert_eq!(obj(b"N"), Object::None);
        assert_eq!(obj(b"T"), Object::True);
        assert_eq!(obj(b"F"), Object::False);
        assert_eq!(obj(b"."), Object::Ellipsis);
        assert_eq!(obj(b"S"), Object::StopIteration);
        assert_eq!(obj(b"i\xff\xff\xff\xff"), Object::Int(-1));
        assert_eq!(
            obj(b"l\xfe\xff\xff\xff\x01\x00\x02\x00"),
            Object::Long {
                negative: true,
                digits: vec![1, 2]
            }
        );
        assert_eq!(
            obj(b"g\x00\x00\x00\x00\x00\x00\xf0\x3f"),
            Object::Float(FloatRepr::Bits(1f64.to_bits()))
        );
        assert_eq!(
            obj(b"f\x031.5"),
            Object::Float(FloatRepr::Text(b"1.5".to_vec()))
        );
        assert_eq!(
            obj(b"x\x011\x012"),
            Object::Complex(
                FloatRepr::Text(b"1".to_vec()),
                FloatRepr::Text(b"2".to_vec())
            )
        );
        assert!(matches!(
            obj(b"y\0\0\0\0\0\0\0\0\0\0\0\0\0\0\xf0\x3f"),
            Object::Complex(..)
        ));
        assert_eq!(obj(b"s\x02\x00\x00\x00ab"), Object::Bytes(b"ab"[..].into()));
        assert_eq!(
            obj(b"u\x02\x00\x00\x00\xc3\xa9"),
            Object::Str("\u{e9}".as_bytes().into())
        );
        assert_eq!(
            obj(b"u\x03\x00\x00\x00\xed\xa0\x80"),
            Object::Str(b"\xed\xa0\x80"[..].into())
        );
        assert_eq!(obj(b"z\x02hi"), Object::Str(b"hi"[..].into()));
        assert_eq!(
            obj(b"a\x01\x00\x00\x00\xe9"),
            Object::Str("\u{e9}".as_bytes().into())
        );
    }

    #[test]
    fn containers_and_refs() {
        // A flagged string, then a reference to it inside a small tuple.
        let t = obj(b")\x02\xda\x01xr\x00\x00\x00\x00");
        let Object::Tuple(items) = &t else { panic!() };
        assert_eq!(*items[0], Object::Str(b"x"[..].into()));
        assert!(Rc::ptr_eq(&items[0], &items[1]));
        // Written twice or referenced: equal.
        assert_eq!(t, obj(b")\x02z\x01xz\x01x"));
        assert!(matches!(obj(b"[\x01\x00\x00\x00N"), Object::List(_)));
        assert!(matches!(obj(b"{i\x01\x00\x00\x00N0"), Object::Dict(d) if d.len() == 1));
        assert!(matches!(obj(b"<\x00\x00\x00\x00"), Object::Set(_)));
        assert!(matches!(obj(b">\x02\x00\x00\x00NT"), Object::FrozenSet(s) if s.len() == 2));
    }

    #[test]
    fn hostile_inputs_are_refused() {
        for bad in [
            &b""[..],
            b"0",
            b"?",
            b"r\x00\x00\x00\x00",
            b"s\xff\xff\xff\xff",
            b"s\x10\x00\x00\x00ab",
            b"(\xff\xff\xff\x7f",
            b"l\x01\x00\x00\x00\x00\x80",
            b"l\x01\x00\x00\x00\x00\x00",
            b"u\x01\x00\x00\x00\xff",
            // A frozenset whose item refers to the frozenset itself.
            b"\xbe\x01\x00\x00\x00r\x00\x00\x00\x00",
            b":NNN",
        ] {
            assert!(parse(bad, V).is_err(), "{bad:?}");
        }
        // Nesting is bounded (like CPython) before the stack is: the deepest accepted input
        // needs well under 1 MiB of stack in optimised builds, more in debug builds.
        let deep: Vec<u8> = std::iter::repeat_n(b')', 5000)
            .flat_map(|c| [c, 1])
            .collect();
        let outcome = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || parse(&deep, V).map(drop))
            .unwrap()
            .join()
            .unwrap();
        assert!(matches!(outcome, Err(MarshalError::TooDeep { .. })));
        assert!(validate(b"N", V).is_err());
    }

    /// The deepest input the reader accepts, read where `ppyc compile` reads `.pyc` files:
    /// on a thread of rayon's pool, with its default stack (not a 64 MiB test thread).
    /// Release builds only: a debug build's frames are several times larger, and CI and
    /// `ppyc` itself run release builds.
    #[test]
    #[cfg_attr(debug_assertions, ignore = "stack use is measured in release builds")]
    fn the_deepest_accepted_nesting_fits_a_rayon_stack() {
        let nested = |depth: usize| -> Vec<u8> {
            let mut v: Vec<u8> = std::iter::repeat_n([b')', 1], depth).flatten().collect();
            v.push(b'N');
            v
        };
        let deepest = (1..=MAX_DEPTH)
            .rev()
            .find(|&d| parse(&nested(d), V).is_ok())
            .expect("some nesting is accepted");
        assert!(deepest >= MAX_DEPTH - 2, "{deepest}");
        assert!(matches!(
            parse(&nested(deepest + 1), V),
            Err(MarshalError::TooDeep { .. })
        ));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let data = nested(deepest);
        let results: Vec<bool> = pool.install(|| {
            use rayon::prelude::*;
            (0..4)
                .into_par_iter()
                .map(|_| parse(&data, V).is_ok() && parse_annotated(&data, V).is_ok())
                .collect()
        });
        assert_eq!(results, [true; 4]);
    }

    #[test]
    fn slices_need_3_14() {
        let s = b":NTi\x02\x00\x00\x00";
        assert!(parse(s, PyVersion::V3_13).is_err());
        assert!(matches!(
            parse(s, PyVersion::V3_14).unwrap(),
            Object::Slice(..)
        ));
        // A flagged slice can be referenced after it is complete.
        let t = b")\x02\xbaNNNr\x00\x00\x00\x00";
        let Object::Tuple(items) = parse(t, PyVersion::V3_14).unwrap() else {
            panic!()
        };
        assert!(Rc::ptr_eq(&items[0], &items[1]));
    }

    #[test]
    fn magic_numbers() {
        assert_eq!(
            PyVersion::from_magic([0x6f, 0x0d, b'\r', b'\n']),
            Some(PyVersion::V3_10)
        );
        assert_eq!(
            PyVersion::from_magic([0xa7, 0x0d, b'\r', b'\n']),
            Some(PyVersion::V3_11)
        );
        assert_eq!(
            PyVersion::from_magic([0xcb, 0x0d, b'\r', b'\n']),
            Some(PyVersion::V3_12)
        );
        assert_eq!(
            PyVersion::from_magic([0xf3, 0x0d, b'\r', b'\n']),
            Some(PyVersion::V3_13)
        );
        assert_eq!(
            PyVersion::from_magic([0x2b, 0x0e, b'\r', b'\n']),
            Some(PyVersion::V3_14)
        );
        assert_eq!(PyVersion::from_magic([0xcb, 0x0d, 0, 0]), None);
        assert_eq!(PyVersion::V3_14.minor(), 14);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            for v in [PyVersion::V3_10, PyVersion::V3_12, PyVersion::V3_14] {
                let _ = parse(&data, v);
                let _ = same_code(&data, &data, v);
            }
        }
    }
}
