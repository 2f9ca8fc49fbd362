//! Loading a module image: validation, then relocation, identifier binding, frozensets
//! and fresh code versions (`spec/FORMAT.md` §10.6).
//!
//! The image's bytes have been read into private memory ([`ImageMemory`]) and their
//! digest checked by the caller. Validation then proves, before anything is written, that
//! the image cannot make the interpreter read or write outside it or treat arbitrary memory
//! as an object:
//!
//! - walking the object area from its start finds exactly `object_count` objects, each
//!   8-aligned, inside the area, with the image reference count, a type symbol of a
//!   supported type, a size that follows from its own header (checked against the area),
//!   and consistent header fields (a compact string's kind and terminator, an int's digits,
//!   a tuple's zeroed GC header, a code object's counts);
//! - every pointer word decodes to a known tag whose value is in range: an internal word
//!   points at the start of an object of a type the field allows (`co_consts` a tuple,
//!   `co_names` a tuple of strings, `co_linetable` bytes, ...); a symbol word names an
//!   existing well-known object; a name word an existing slot; a frozenset word an existing
//!   frozenset (frozensets only refer to earlier ones, and never to code objects);
//! - the objects form no cycle.
//!
//! Only then are the words turned into addresses, in place; the memory is never freed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use ppyc_format::Word;
use ppyc_format::image::{Aux, Names, symbol};
use pyo3::ffi;
use pyo3::prelude::*;

use super::snapshot::Kind;
use crate::ffi::layout::probe::{self, Runtime};
use crate::ffi::layout::{Points, Table, common};
use crate::ffi::raw;

/// Memory for one image ([`super::arena`]): 16-aligned and zeroed; given back unless
/// [`ImageMemory::leak`] hands it to the interpreter for good.
pub(crate) struct ImageMemory {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl ImageMemory {
    /// `len` zeroed bytes; `None` if they cannot be had.
    pub(crate) fn new(len: usize) -> Option<Self> {
        super::arena::alloc(len).map(|ptr| Self { ptr, len })
    }

    /// The bytes, to fill.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is an allocation of at least `len` initialised (zeroed) bytes
        // owned by `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: as in `bytes_mut`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Gives the memory up for good: objects in it may now be live.
    fn leak(self) -> *mut u8 {
        let ptr = self.ptr.as_ptr();
        std::mem::forget(self);
        ptr
    }
}

impl Drop for ImageMemory {
    fn drop(&mut self) {
        super::arena::give_back(self.ptr, self.len);
    }
}

/// The identifiers of one pack, bound to this process's interned strings: each at most
/// once per process, shared by every image of the pack, and kept alive forever (the
/// table holds one reference to each).
///
/// A map, not a table of the pack's size: a process uses a few thousand of a pack's tens of
/// thousands of identifiers, and a table would touch a fresh page of memory for almost
/// every one of them (a page fault each, costly in virtual machines).
pub(crate) struct NameCache {
    slots: Mutex<std::collections::HashMap<u32, usize, BuildIdentity>>,
    count: usize,
}

/// Hashing for the name cache's keys, which are indices already spread over the table:
/// one multiplication (Fibonacci hashing).
#[derive(Clone, Copy, Default)]
pub(crate) struct BuildIdentity;

/// The hasher of [`BuildIdentity`].
#[derive(Default)]
pub(crate) struct IndexHasher(u64);

impl std::hash::Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.0 = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl std::hash::BuildHasher for BuildIdentity {
    type Hasher = IndexHasher;
    fn build_hasher(&self) -> IndexHasher {
        IndexHasher(0)
    }
}

impl NameCache {
    pub(crate) fn new(count: usize) -> Self {
        Self {
            slots: Mutex::new(std::collections::HashMap::with_capacity_and_hasher(
                1024,
                BuildIdentity,
            )),
            count,
        }
    }
}

/// Code object versions (3.12+): `MAKE_FUNCTION` copies `co_version` into the function's
/// `func_version`, which call-site specialisation trusts, so no two live code objects may
/// share one. The interpreter's counter counts up from its start-up value; image code
/// objects take theirs from this private range counting down from 2^32-1, which that
/// counter does not reach in practice (`../shared/design/SNAPSHOT.md`; 3.12
/// `_Py_next_func_version` and 3.13 `func_state.next_version`, `Objects/codeobject.c`).
static NEXT_VERSION: AtomicU32 = AtomicU32::new(u32::MAX);

/// Below this, the private range is used up (or about to meet the interpreter's counter):
/// images are no longer loaded.
const VERSION_FLOOR: u32 = 1 << 31;

/// Takes `n` versions; `None` when the range is exhausted.
fn reserve_versions(n: u32) -> Option<u32> {
    let mut current = NEXT_VERSION.load(Ordering::Relaxed);
    loop {
        let next = current.checked_sub(n).filter(|&v| v > VERSION_FLOOR)?;
        match NEXT_VERSION.compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(current),
            Err(actual) => current = actual,
        }
    }
}

/// Deliberately wrong versions, for the test that reproduces the crash a copied
/// `co_version` causes (`PPYC_TEST_CO_VERSION=<n>`: every image code object gets `n`).
fn test_version() -> Option<u32> {
    static TEST: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *TEST.get_or_init(|| {
        std::env::var("PPYC_TEST_CO_VERSION")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

/// One object found by the walk.
#[derive(Clone, Copy, Debug)]
struct Found {
    offset: u32,
    kind: Kind,
    /// Its first pointer word's entry in [`Checked::refs`].
    first_ref: u32,
}

/// What a pointer word refers to, once validated.
#[derive(Clone, Copy, Debug)]
enum Ref {
    /// An image object, by index.
    Object(u32),
    Symbol(u32),
    Name(u32),
    FrozenSet(u32),
    Filename,
}

/// An image whose structure has been validated: its objects, and every pointer word
/// decoded (in object order: a code object's fields in table order, a tuple's items).
struct Checked {
    objects: Vec<Found>,
    refs: Vec<Ref>,
    /// The frozensets' items, decoded, in build order.
    frozensets: Vec<(bool, Vec<Ref>)>,
}

fn bad(what: impl Into<String>) -> String {
    format!("the image is invalid: {}", what.into())
}

/// The words a kind of object points with: `(offset, what it may point at)`.
fn pointer_count(table: &Table, bytes: &[u8], f: &Found) -> usize {
    match f.kind {
        Kind::Code => table.code.pointers.len(),
        Kind::Tuple => raw::word(bytes, f.offset as usize + common::SIZE) as usize,
        _ => 0,
    }
}

/// Validates the image (see the module docs) in a few linear passes.
fn check(table: &'static Table, bytes: &[u8], aux: &Aux<'_>) -> Result<Checked, String> {
    let len = bytes.len();
    let count = aux.object_count as usize;
    if count > len / 24 || len > u32::MAX as usize {
        return Err(bad("more objects than the area can hold"));
    }
    // 1. Walk: object starts, kinds, sizes. `at_unit[o / 8]` is the index + 1 of the object
    //    starting at `o`.
    let mut at_unit = vec![0u32; len / 8 + 1];
    let mut objects = Vec::with_capacity(count);
    let mut at = 0usize;
    let mut nrefs = 0usize;
    for index in 0..count {
        at = at.next_multiple_of(8);
        if at + 24 > len {
            return Err(bad("an object lies past the end"));
        }
        let gc = raw::word(bytes, at) == 0;
        if gc {
            if raw::word(bytes, at + 8) != 0 {
                return Err(bad("a GC header is not zero"));
            }
            at += table.gc_head;
            if at + 24 > len {
                return Err(bad("an object lies past the end"));
            }
        }
        if raw::word(bytes, at) != table.refcnt {
            return Err(bad("an object has another reference count"));
        }
        let kind = match Word::decode(raw::word(bytes, at + common::TYPE)) {
            Some(Word::Symbol(t)) => Kind::of_type_symbol(t),
            _ => None,
        }
        .ok_or_else(|| bad("an object's type is not a type symbol"))?;
        if gc != (kind == Kind::Tuple) {
            return Err(bad("a GC header before an object that is not a tuple"));
        }
        let size = object_size(table, bytes, at, kind)?;
        let end = at
            .checked_add(size)
            .filter(|&end| end <= len)
            .ok_or_else(|| bad("an object lies past the end"))?;
        let found = Found {
            offset: at as u32,
            kind,
            first_ref: nrefs as u32,
        };
        nrefs += pointer_count(table, bytes, &found);
        at_unit[at / 8] = index as u32 + 1;
        objects.push(found);
        at = end;
    }
    if at.next_multiple_of(8) != len {
        return Err(bad("bytes after the last object"));
    }
    // 2. Every pointer word: decoded once, checked against what its field allows.
    let symbol_ok = |n: u32| (symbol::NONE..symbol::COUNT).contains(&n) && !(24..=31).contains(&n);
    let decode = |w: u64| -> Result<Ref, String> {
        match Word::decode(w).ok_or_else(|| bad("a reserved word tag"))? {
            Word::Internal(offset) => {
                let o = offset as usize;
                let i = if o % 8 == 0 && o < len {
                    at_unit[o / 8]
                } else {
                    0
                };
                if i == 0 {
                    return Err(bad("a pointer that is not an object start"));
                }
                Ok(Ref::Object(i - 1))
            }
            Word::Symbol(n) if symbol_ok(n) => Ok(Ref::Symbol(n)),
            Word::Symbol(_) => Err(bad("a symbol out of range")),
            Word::Name(s) if (s as usize) < aux.name_count() => Ok(Ref::Name(s)),
            Word::Name(_) => Err(bad("a name slot out of range")),
            Word::FrozenSet(i) if (i as usize) < aux.frozenset_count() => Ok(Ref::FrozenSet(i)),
            Word::FrozenSet(_) => Err(bad("a frozenset out of range")),
            Word::Filename => Ok(Ref::Filename),
        }
    };
    let kind_of = |r: Ref| match r {
        Ref::Object(i) => Some(objects[i as usize].kind),
        _ => None,
    };
    let is_str = |r: Ref| match r {
        Ref::Object(i) => objects[i as usize].kind == Kind::Str,
        Ref::Name(_) => true,
        Ref::Symbol(n) => n == symbol::EMPTY_STR || n >= symbol::LATIN1_FIRST,
        Ref::FrozenSet(_) | Ref::Filename => false,
    };
    let length = |r: Ref| match r {
        Ref::Object(i) => {
            raw::word(bytes, objects[i as usize].offset as usize + common::SIZE) as usize
        }
        _ => 0,
    };
    let mut refs = Vec::with_capacity(nrefs);
    let c = &table.code;
    for f in &objects {
        let at = f.offset as usize;
        match f.kind {
            Kind::Tuple => {
                let n = raw::word(bytes, at + common::SIZE) as usize;
                for k in 0..n {
                    let r = decode(raw::word(bytes, at + common::TUPLE_ITEMS + 8 * k))?;
                    if matches!(r, Ref::Filename) {
                        return Err(bad("the filename word in a tuple"));
                    }
                    refs.push(r);
                }
            }
            Kind::Code => {
                let mut names_len = 0;
                let mut kinds: &[u8] = &[];
                for p in c.pointers {
                    let r = decode(raw::word(bytes, at + p.offset))?;
                    let ok = match p.points {
                        Points::Tuple | Points::StrTuple => {
                            matches!(r, Ref::Symbol(symbol::EMPTY_TUPLE))
                                || kind_of(r) == Some(Kind::Tuple)
                        }
                        Points::Bytes => {
                            matches!(r, Ref::Symbol(symbol::EMPTY_BYTES))
                                || kind_of(r) == Some(Kind::Bytes)
                        }
                        Points::Str => {
                            is_str(r) || (p.offset == c.filename && matches!(r, Ref::Filename))
                        }
                    };
                    if !ok {
                        return Err(bad(format!("`{}` holds the wrong kind of object", p.name)));
                    }
                    if p.points == Points::StrTuple {
                        if let Ref::Object(i) = r {
                            let t = objects[i as usize].offset as usize;
                            for k in 0..length(r) {
                                let item =
                                    decode(raw::word(bytes, t + common::TUPLE_ITEMS + 8 * k))?;
                                if !is_str(item) {
                                    return Err(bad("a name that is not a string"));
                                }
                            }
                        }
                    }
                    if p.offset == c.localsplusnames {
                        names_len = length(r);
                    }
                    if p.offset == c.localspluskinds {
                        if let Ref::Object(i) = r {
                            let o = objects[i as usize].offset as usize + common::BYTES_DATA;
                            kinds = &bytes[o..o + length(r)];
                        }
                    }
                    refs.push(r);
                }
                check_code(table, bytes, at, names_len, kinds)?;
            }
            _ => {}
        }
    }
    // 3. Frozensets: only earlier frozensets, no code objects, no filename.
    let mut frozensets = Vec::with_capacity(aux.frozenset_count());
    for (index, (rebuild, items)) in aux.frozensets().enumerate() {
        let mut decoded = Vec::new();
        for w in items {
            let r = decode(w)?;
            match r {
                Ref::Filename => return Err(bad("the filename word in a frozenset")),
                Ref::FrozenSet(j) if j as usize >= index => {
                    return Err(bad("a frozenset refers to a later one"));
                }
                Ref::Object(i) if objects[i as usize].kind == Kind::Code => {
                    return Err(bad("a code object in a frozenset"));
                }
                _ => {}
            }
            decoded.push(r);
        }
        frozensets.push((rebuild, decoded));
    }
    let checked = Checked {
        objects,
        refs,
        frozensets,
    };
    checked.check_graph()?;
    Ok(checked)
}

/// A code object's counts against its own `co_localsplusnames` and `co_localspluskinds`,
/// as `_PyCode_Validate` checks them (`Objects/codeobject.c`, 3.11-3.13), and its
/// per-process fields at their initial values.
fn check_code(
    table: &Table,
    bytes: &[u8],
    at: usize,
    names_len: usize,
    kinds: &[u8],
) -> Result<(), String> {
    let c = &table.code;
    let int = |offset: usize| i64::from(ppyc_format::bytes::u32_at(bytes, at + offset) as i32);
    let nlocalsplus = int(c.nlocalsplus);
    let count = |mask: u8| kinds.iter().filter(|&&k| k & mask != 0).count() as i64;
    let (locals, cells, frees) = (
        count(common::FAST_LOCAL),
        count(common::FAST_CELL),
        count(common::FAST_FREE),
    );
    let (argcount, posonly, kwonly) = (
        int(c.argcount),
        int(c.posonlyargcount),
        int(c.kwonlyargcount),
    );
    // CO_VARARGS 0x4, CO_VARKEYWORDS 0x8 (`Include/cpython/code.h`).
    let flags = int(c.flags);
    let star_args = i64::from(flags & 0x4 != 0) + i64::from(flags & 0x8 != 0);
    let units = raw::word(bytes, at + common::SIZE) as i64;
    let consistent = nlocalsplus as usize == names_len
        && kinds.len() == names_len
        && int(c.nlocals) == locals
        && int(c.ncellvars) == cells
        && int(c.nfreevars) == frees
        && c.nplaincellvars.is_none_or(|o| int(o) <= cells)
        && (0..=argcount).contains(&posonly)
        && kwonly >= 0
        && argcount + kwonly + star_args <= locals
        && int(c.stacksize) >= 0
        && units >= 1
        && (0..units).contains(&int(c.firsttraceable))
        && c.framesize
            .is_none_or(|o| int(o) == nlocalsplus + int(c.stacksize) + table.frame_specials as i64);
    if !consistent {
        return Err(bad("a code object's counts are inconsistent"));
    }
    for r in c.resets {
        let mut v = [0u8; 8];
        v[..r.size].copy_from_slice(&bytes[at + r.offset..at + r.offset + r.size]);
        if u64::from_le_bytes(v) != r.value {
            return Err(bad(format!(
                "a code object's `{}` is not its initial value",
                r.name
            )));
        }
    }
    Ok(())
}

impl Checked {
    fn refs_of(&self, i: usize) -> &[Ref] {
        let start = self.objects[i].first_ref as usize;
        let end = self
            .objects
            .get(i + 1)
            .map_or(self.refs.len(), |f| f.first_ref as usize);
        &self.refs[start..end]
    }

    /// No cycles through tuples and code objects (hashing or printing a cyclic constant
    /// would recurse forever), and, when there are frozensets, every frozenset an item of
    /// frozenset `k` reaches (through tuples and code objects) comes before `k`, so that
    /// building them in order never hashes a pointer not yet written. One iterative
    /// depth-first search.
    fn check_graph(&self) -> Result<(), String> {
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        let n = self.objects.len();
        let mut color = vec![WHITE; n];
        let with_sets = !self.frozensets.is_empty();
        // Highest frozenset index reachable, plus one (0: none).
        let mut reach = if with_sets { vec![0u32; n] } else { Vec::new() };
        let mut stack: Vec<(u32, u32)> = Vec::new();
        for start in 0..n {
            if color[start] != WHITE || self.refs_of(start).is_empty() {
                continue;
            }
            color[start] = GREY;
            stack.push((start as u32, 0));
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let node = node as usize;
                let refs = self.refs_of(node);
                if let Some(&r) = refs.get(*next as usize) {
                    *next += 1;
                    match r {
                        Ref::Object(j) => {
                            let j = j as usize;
                            match color[j] {
                                GREY => return Err(bad("the objects form a cycle")),
                                WHITE if !self.refs_of(j).is_empty() => {
                                    color[j] = GREY;
                                    stack.push((j as u32, 0));
                                }
                                _ => {
                                    if with_sets {
                                        reach[node] = reach[node].max(reach[j]);
                                    }
                                }
                            }
                        }
                        Ref::FrozenSet(k) if with_sets => reach[node] = reach[node].max(k + 1),
                        _ => {}
                    }
                } else {
                    color[node] = 2;
                    stack.pop();
                    if let (true, Some(&(parent, _))) = (with_sets, stack.last()) {
                        reach[parent as usize] = reach[parent as usize].max(reach[node]);
                    }
                }
            }
        }
        for (k, (_, items)) in self.frozensets.iter().enumerate() {
            for r in items {
                if let Ref::Object(i) = r {
                    if reach[*i as usize] > k as u32 {
                        return Err(bad("a frozenset's item refers to a later frozenset"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The size of the object of `kind` at `at`, from its header, with its fields checked.
fn object_size(table: &Table, bytes: &[u8], at: usize, kind: Kind) -> Result<usize, String> {
    let len = bytes.len();
    let word = |o: usize| -> Result<u64, String> {
        o.checked_add(8)
            .filter(|&e| e <= len)
            .map(|_| raw::word(bytes, o))
            .ok_or_else(|| bad("a header lies past the end"))
    };
    let limit = |n: u64, unit: u64| -> Result<usize, String> {
        n.checked_mul(unit)
            .filter(|&b| b <= len as u64)
            .map(|b| b as usize)
            .ok_or_else(|| bad("a size larger than the image"))
    };
    Ok(match kind {
        Kind::Code => {
            let n = word(at + common::SIZE)?;
            table.code.basicsize + limit(n, 2)?
        }
        Kind::Tuple => common::TUPLE_ITEMS + limit(word(at + common::SIZE)?, 8)?,
        Kind::Bytes => {
            let n = limit(word(at + common::SIZE)?, 1)?;
            let size = common::BYTES_DATA + n + 1;
            if at + size > len
                || bytes[at + size - 1] != 0
                || word(at + common::BYTES_HASH)? != u64::MAX
            {
                return Err(bad("a bytes object is malformed"));
            }
            size
        }
        Kind::Str => {
            let s = &table.str_;
            let state = ppyc_format::bytes::u32_at(bytes, at + s.state);
            let char_size = ((state >> 2) & 7) as usize;
            let ascii = state & 0x40 != 0;
            if state & !0xfc != 0
                || state & 0x20 == 0
                || !matches!(char_size, 1 | 2 | 4)
                || (ascii && char_size != 1)
                || state & s.bit7.0 != s.bit7.1
                || word(at + s.hash)? != u64::MAX
            {
                return Err(bad("a string's header is malformed"));
            }
            let n = limit(word(at + s.length)?, char_size as u64)? / char_size;
            let header = if ascii { s.ascii_size } else { s.compact_size };
            let size = header + (n + 1) * char_size;
            if at + size > len
                || bytes[at + size - char_size..at + size]
                    .iter()
                    .any(|&b| b != 0)
            {
                return Err(bad("a string is not terminated"));
            }
            let zeros = s
                .zero
                .iter()
                .chain(if ascii { &[][..] } else { s.compact_zero });
            for &(_, offset, size) in zeros {
                if bytes[at + offset..at + offset + size]
                    .iter()
                    .any(|&b| b != 0)
                {
                    return Err(bad("a string's cache fields are not zero"));
                }
            }
            size
        }
        Kind::Int => {
            let head = word(at + common::SIZE)? as i64;
            let (n, sign_ok) = if table.int.tagged {
                ((head >> 3) as u64, matches!(head & 7, 0 | 2))
            } else {
                (head.unsigned_abs(), true)
            };
            let size = common::INT_DIGITS + 4 * limit(n, 4)? / 4;
            if n == 0 || !sign_ok || at + size > len {
                return Err(bad("an int's header is malformed"));
            }
            let digit =
                |i: usize| ppyc_format::bytes::u32_at(bytes, at + common::INT_DIGITS + 4 * i);
            let n = n as usize;
            if (0..n).any(|i| digit(i) >= 1 << 30) || digit(n - 1) == 0 {
                return Err(bad("an int's digits are malformed"));
            }
            size
        }
        Kind::Float => common::FLOAT_SIZE,
        Kind::Complex => common::COMPLEX_SIZE,
    })
}

/// Why a module's image is not loaded in this process, before any work: image mode
/// impossible here, code watchers registered (they must see every code object created, as
/// `marshal.loads` announces them), or the version range used up.
pub(crate) fn unavailable(py: Python<'_>) -> Option<String> {
    let rt = match probe::current(py) {
        Ok(rt) => rt,
        Err(reason) => return Some(reason.to_owned()),
    };
    if probe::active_code_watchers(rt.table).is_some_and(|w| w != 0) {
        return Some("code watchers are registered".into());
    }
    None
}

/// Validates and loads an image whose bytes (digest checked) are in `memory`; returns the
/// top-level code object (a new reference). `filename` is the path the module was found
/// at: the `co_filename` of its code objects.
#[allow(clippy::too_many_arguments)] // one call per module, from one caller
pub(crate) fn load<'py>(
    py: Python<'py>,
    rt: &'static Runtime,
    memory: ImageMemory,
    aux: &Aux<'_>,
    names: &Names<'_>,
    cache: &NameCache,
    filename: &Bound<'py, pyo3::types::PyString>,
    phases: &mut super::Phases,
) -> Result<Bound<'py, PyAny>, String> {
    let table = rt.table;
    let t0 = std::time::Instant::now();
    let checked = check(table, memory.bytes(), aux)?;
    let root = checked
        .objects
        .iter()
        .position(|f| f.offset == aux.root && f.kind == Kind::Code)
        .ok_or_else(|| bad("the root is not a code object"))?;
    let code_count = checked
        .objects
        .iter()
        .filter(|f| f.kind == Kind::Code)
        .count() as u32;
    if code_count != aux.code_count {
        return Err(bad("the code object count differs"));
    }
    // Identifiers, before anything is written (nothing of the image is live yet).
    let t1 = std::time::Instant::now();
    let mut bound = vec![0usize; aux.name_count()];
    let mut slots = cache
        .slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (slot, out) in bound.iter_mut().enumerate() {
        let key = aux.name_slot(slot).unwrap_or(u32::MAX);
        let global = key as usize;
        if global >= cache.count {
            return Err(bad("a name index out of range"));
        }
        let cached = slots.get(&key).copied();
        *out = if let Some(cached) = cached {
            cached
        } else {
            // Interning runs without the lock held (it allocates, which may run a
            // collection and arbitrary finalizers).
            drop(slots);
            let s = intern(names.get(global).map_err(|e| e.to_string())?)?;
            slots = cache
                .slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *slots.entry(key).or_insert(s)
        };
    }
    drop(slots);
    let t2 = std::time::Instant::now();
    let versions = match (table.code.version, test_version()) {
        (None, _) => None,
        (Some(_), Some(v)) => Some(v),
        (Some(_), None) => {
            Some(reserve_versions(code_count).ok_or("the private code versions are used up")?)
        }
    };
    // From here on the memory belongs to the interpreter.
    let len = memory.bytes().len();
    let base = memory.leak();
    // SAFETY: `base` is the leaked allocation of `len` bytes, validated above; nothing
    // else refers to it yet.
    let bytes = unsafe { std::slice::from_raw_parts_mut(base, len) };
    // SAFETY: `filename` is a live str; the image keeps a reference to it forever.
    let filename_ptr = unsafe { ffi::Py_NewRef(filename.as_ptr()) } as u64;
    let objects = &checked.objects;
    let address = |r: Ref, frozensets: &[u64]| -> u64 {
        match r {
            Ref::Object(i) => base as u64 + u64::from(objects[i as usize].offset),
            Ref::Symbol(n) => rt.symbols[n as usize] as u64,
            Ref::Name(s) => bound[s as usize] as u64,
            Ref::FrozenSet(i) => frozensets.get(i as usize).copied().unwrap_or(0),
            Ref::Filename => filename_ptr,
        }
    };
    // Pass 1: every pointer but those to frozensets (built next, from relocated items).
    let mut pending: Vec<(usize, u32)> = Vec::new();
    let mut next_version = versions.unwrap_or(0);
    let step = u32::from(test_version().is_none());
    for (i, f) in objects.iter().enumerate() {
        let at = f.offset as usize;
        raw::put(
            bytes,
            at + common::TYPE,
            8,
            rt.types[f.kind.type_symbol() as usize] as u64,
        );
        let refs = checked.refs_of(i);
        match f.kind {
            Kind::Code => {
                for (p, &r) in table.code.pointers.iter().zip(refs) {
                    put_ref(bytes, at + p.offset, r, &mut pending, &address);
                }
                if let (Some(_), Some(offset)) = (versions, table.code.version) {
                    raw::put(bytes, at + offset, 4, u64::from(next_version));
                    next_version = next_version.wrapping_sub(step);
                }
            }
            Kind::Tuple => {
                for (k, &r) in refs.iter().enumerate() {
                    put_ref(
                        bytes,
                        at + common::TUPLE_ITEMS + 8 * k,
                        r,
                        &mut pending,
                        &address,
                    );
                }
            }
            Kind::Str => {
                if let Some((wstr, wstr_len)) = table.str_.ucs4_shares_wstr {
                    let state = ppyc_format::bytes::u32_at(bytes, at + table.str_.state);
                    if (state >> 2) & 7 == 4 {
                        let n = raw::word(bytes, at + table.str_.length);
                        let data = base as u64 + (at + table.str_.compact_size) as u64;
                        raw::put(bytes, at + wstr, 8, data);
                        raw::put(bytes, at + wstr_len, 8, n);
                    }
                }
            }
            _ => {}
        }
    }
    // Pass 2: frozensets, in order, each from its items in stream order; the pointers to
    // frozenset `k` are written as soon as it exists, before any later frozenset hashes a
    // tuple holding them (`check_graph`).
    if !checked.frozensets.is_empty() {
        let mut built: Vec<u64> = Vec::with_capacity(checked.frozensets.len());
        for (k, (rebuild, items)) in checked.frozensets.iter().enumerate() {
            let items: Vec<u64> = items.iter().map(|&r| address(r, &built)).collect();
            let fs = build_frozenset(py, &items, *rebuild)? as u64;
            for &(o, _) in pending.iter().filter(|&&(_, j)| j as usize == k) {
                raw::put(bytes, o, 8, fs);
            }
            built.push(fs);
        }
    }
    let t3 = std::time::Instant::now();
    phases.load = (t1 - t0 + t3.duration_since(t2)).as_nanos() as u64;
    phases.bind = (t2 - t1).as_nanos() as u64;
    let code = base as usize + objects[root].offset as usize;
    // SAFETY: `code` is a relocated, validated code object in memory that is never freed;
    // its reference count is the image's (immortal, or too high to reach zero).
    Ok(unsafe { Bound::from_borrowed_ptr(py, code as *mut ffi::PyObject) })
}

/// Writes the address of `r` at `at`, or, for a frozenset, remembers `at` for later.
fn put_ref(
    bytes: &mut [u8],
    at: usize,
    r: Ref,
    pending: &mut Vec<(usize, u32)>,
    address: &impl Fn(Ref, &[u64]) -> u64,
) {
    if let Ref::FrozenSet(i) = r {
        pending.push((at, i));
        raw::put(bytes, at, 8, 0);
    } else {
        raw::put(bytes, at, 8, address(r, &[]));
    }
}

/// This process's interned string for `text` (a new reference the name cache keeps).
fn intern(text: &[u8]) -> Result<usize, String> {
    const SURROGATEPASS: &std::ffi::CStr = c"surrogatepass";
    // SAFETY: the GIL is held by the loader's caller; `text` is valid for its length; the
    // decoder returns a new str or NULL with an exception, which is cleared.
    unsafe {
        let mut s = ffi::PyUnicode_DecodeUTF8(
            text.as_ptr().cast(),
            text.len() as isize,
            SURROGATEPASS.as_ptr(),
        );
        if s.is_null() {
            ffi::PyErr_Clear();
            return Err(bad("an identifier is not UTF-8"));
        }
        // As stock 3.13 interns names and marshal's interned strings: immortal
        // (`_PyUnicode_InternImmortal`, `Include/internal/pycore_unicodeobject.h`, 3.13).
        #[cfg(Py_3_13)]
        crate::ffi::raw::intern_immortal(&raw mut s);
        #[cfg(not(Py_3_13))]
        ffi::PyUnicode_InternInPlace(&raw mut s);
        Ok(s as usize)
    }
}

/// A frozenset of `items` (addresses of live objects) inserted in that order, built once
/// more from its own iteration order when `rebuild` (as code creation does).
fn build_frozenset(
    py: Python<'_>,
    items: &[u64],
    rebuild: bool,
) -> Result<*mut ffi::PyObject, String> {
    let _ = py;
    // SAFETY: the GIL is held; every item is a live, relocated object (image objects are
    // immortal, names are kept by the cache, symbols are static); `PyTuple_SET_ITEM`
    // steals the reference taken by `Py_NewRef`.
    unsafe {
        let tuple = ffi::PyTuple_New(items.len() as isize);
        if tuple.is_null() {
            ffi::PyErr_Clear();
            return Err("cannot build a frozenset".into());
        }
        for (i, &item) in items.iter().enumerate() {
            ffi::PyTuple_SET_ITEM(
                tuple,
                i as isize,
                ffi::Py_NewRef(item as *mut ffi::PyObject),
            );
        }
        let mut fs = ffi::PyFrozenSet_New(tuple);
        ffi::Py_DECREF(tuple);
        if !fs.is_null() && rebuild {
            let again = ffi::PyFrozenSet_New(fs);
            ffi::Py_DECREF(fs);
            fs = again;
        }
        if fs.is_null() {
            ffi::PyErr_Clear();
            return Err("cannot build a frozenset".into());
        }
        Ok(fs)
    }
}
