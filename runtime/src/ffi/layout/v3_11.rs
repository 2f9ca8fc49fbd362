//! CPython 3.11 (x86-64 Linux, release build with the GIL).
//!
//! Sources: the installed headers of CPython 3.11.7 (`include/python3.11/`):
//! `cpython/code.h` (`_PyCode_DEF`), `cpython/unicodeobject.h`, `cpython/longintrepr.h`,
//! `internal/pycore_code.h` (`QUICKENING_INITIAL_WARMUP_VALUE`), `internal/pycore_frame.h`
//! (`FRAME_SPECIALS_SIZE`), `internal/pycore_gc.h` (`PyGC_Head`); offsets as computed with
//! `offsetof` in `../shared/design/CPYTHON-LAYOUTS.md` §1.1, §4.1, §5. The initial values
//! of the per-process fields are those `init_code` (`Objects/codeobject.c`, 3.11) stores.

use super::{CodeLayout, IntLayout, Layout, Pointer, Points, Reset, StrLayout, Table};

/// The 3.11 table.
pub(crate) struct V3_11;

impl Layout for V3_11 {
    fn table(&self) -> &'static Table {
        &TABLE
    }
}

/// The pointer fields of 3.11's `PyCodeObject`.
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

/// `QUICKENING_INITIAL_WARMUP_VALUE` = `-QUICKENING_WARMUP_DELAY` = -8, as a 16-bit field
/// (`internal/pycore_code.h`, 3.11.7).
const WARMUP: u64 = (-8i16) as u16 as u64;

static TABLE: Table = Table {
    version: "3.11",
    minor: 11,
    // 3.11 has no immortal objects: a count that no run can decrement to zero (deepfreeze
    // uses 999999999, Tools/scripts/deepfreeze.py, 3.11).
    refcnt: 1 << 40,
    gc_head: 16,
    code: CodeLayout {
        basicsize: 184,
        pointers: POINTERS,
        resets: &[
            Reset {
                name: "co_warmup",
                offset: 52,
                size: 2,
                value: WARMUP,
            },
            Reset {
                name: "_co_linearray_entry_size",
                offset: 54,
                size: 2,
                value: 0,
            },
            Reset {
                name: "co_weakreflist",
                offset: 144,
                size: 8,
                value: 0,
            },
            Reset {
                name: "_co_code",
                offset: 152,
                size: 8,
                value: 0,
            },
            Reset {
                name: "_co_linearray",
                offset: 160,
                size: 8,
                value: 0,
            },
            Reset {
                name: "co_extra",
                offset: 176,
                size: 8,
                value: 0,
            },
        ],
        padding: &[(172, 4)],
        flags: 48,
        argcount: 56,
        posonlyargcount: 60,
        kwonlyargcount: 64,
        stacksize: 68,
        firstlineno: 72,
        nlocalsplus: 76,
        framesize: None,
        nlocals: 80,
        nplaincellvars: Some(84),
        ncellvars: 88,
        nfreevars: 92,
        version: None,
        firsttraceable: 168,
        localsplusnames: 96,
        localspluskinds: 104,
        filename: 112,
    },
    str_: StrLayout {
        ascii_size: 48,
        compact_size: 72,
        length: 16,
        hash: 24,
        state: 32,
        padding: (36, 4),
        zero: &[("wstr", 40, 8)],
        compact_zero: &[
            ("utf8_length", 48, 8),
            ("utf8", 56, 8),
            ("wstr_length", 64, 8),
        ],
        // `ready` must be set.
        bit7: (0x80, 0x80),
        ucs4_shares_wstr: Some((40, 64)),
    },
    int: IntLayout { tagged: false },
    frame_specials: 9,
    active_code_watchers: None,
};
