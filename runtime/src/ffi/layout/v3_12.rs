//! CPython 3.12 (x86-64 Linux, release build with the GIL).
//!
//! Sources: the installed headers of CPython 3.12.1 (`include/python3.12/`):
//! `cpython/code.h` (`_PyCode_DEF`), `cpython/unicodeobject.h`, `cpython/longintrepr.h`
//! (`_PyLongValue`), `object.h` (`_Py_IMMORTAL_REFCNT`), `internal/pycore_frame.h`
//! (`FRAME_SPECIALS_SIZE`), `internal/pycore_gc.h` (`PyGC_Head`), `internal/pycore_interp.h`
//! (`active_code_watchers`); offsets as computed with `offsetof` in
//! `../shared/design/CPYTHON-LAYOUTS.md` §1.1, §4.1, §5. The initial values of the
//! per-process fields are those `init_code` (`Objects/codeobject.c`, 3.12) stores.

use super::{CodeLayout, IntLayout, Layout, Pointer, Points, Reset, StrLayout, Table};

/// The 3.12 table.
pub(crate) struct V3_12;

impl Layout for V3_12 {
    fn table(&self) -> &'static Table {
        &TABLE
    }
}

/// The pointer fields of 3.12's `PyCodeObject`.
pub(crate) const POINTERS: &[Pointer] = &[
    Pointer {
        name: "co_consts",
        offset: 24,
        points: Points::Tuple,
    },
    Pointer {
        name: "co_names",
        offset: 32,
        points: Points::StrTuple,
    },
    Pointer {
        name: "co_exceptiontable",
        offset: 40,
        points: Points::Bytes,
    },
    Pointer {
        name: "co_localsplusnames",
        offset: 96,
        points: Points::StrTuple,
    },
    Pointer {
        name: "co_localspluskinds",
        offset: 104,
        points: Points::Bytes,
    },
    Pointer {
        name: "co_filename",
        offset: 112,
        points: Points::Str,
    },
    Pointer {
        name: "co_name",
        offset: 120,
        points: Points::Str,
    },
    Pointer {
        name: "co_qualname",
        offset: 128,
        points: Points::Str,
    },
    Pointer {
        name: "co_linetable",
        offset: 136,
        points: Points::Bytes,
    },
];

static TABLE: Table = Table {
    version: "3.12",
    minor: 12,
    // `_Py_IMMORTAL_REFCNT` (UINT_MAX on 64-bit, `object.h`): `Py_INCREF`/`Py_DECREF`
    // never write such an object.
    refcnt: 0xffff_ffff,
    gc_head: 16,
    code: CodeLayout {
        basicsize: 192,
        pointers: POINTERS,
        resets: &[
            Reset {
                name: "co_weakreflist",
                offset: 144,
                size: 8,
                value: 0,
            },
            Reset {
                name: "_co_cached",
                offset: 152,
                size: 8,
                value: 0,
            },
            Reset {
                name: "_co_instrumentation_version",
                offset: 160,
                size: 8,
                value: 0,
            },
            Reset {
                name: "_co_monitoring",
                offset: 168,
                size: 8,
                value: 0,
            },
            Reset {
                name: "co_extra",
                offset: 184,
                size: 8,
                value: 0,
            },
        ],
        padding: &[(180, 4)],
        flags: 48,
        argcount: 52,
        posonlyargcount: 56,
        kwonlyargcount: 60,
        stacksize: 64,
        firstlineno: 68,
        nlocalsplus: 72,
        framesize: Some(76),
        nlocals: 80,
        nplaincellvars: None,
        ncellvars: 84,
        nfreevars: 88,
        version: Some(92),
        firsttraceable: 176,
        localsplusnames: 96,
        localspluskinds: 104,
        filename: 112,
    },
    str_: StrLayout {
        ascii_size: 40,
        compact_size: 56,
        length: 16,
        hash: 24,
        state: 32,
        padding: (36, 4),
        zero: &[],
        compact_zero: &[("utf8_length", 40, 8), ("utf8", 48, 8)],
        // `statically_allocated` must be clear: image strings are not static strings.
        bit7: (0x80, 0),
        ucs4_shares_wstr: None,
    },
    int: IntLayout { tagged: true },
    frame_specials: 9,
    // `offsetof(PyInterpreterState, active_code_watchers)`, computed with gcc against the
    // installed internal headers (`internal/pycore_interp.h`, 3.12); checked at run time.
    active_code_watchers: Some(267344),
};
