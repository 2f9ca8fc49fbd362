//! Memory for images: anonymous mappings carved into 16-aligned pieces, never returned
//! (image objects live until the process ends).
//!
//! Images are read into fresh memory at every load. Pieces come from chunks that grow from
//! 256 KiB to 2 MiB, so that a process that loads little keeps its small first chunk. The
//! memory is private and anonymous (no file page is copied) and uses ordinary pages that
//! fault in as the image is read into them. Neither huge pages nor pre-faulting
//! (`MADV_POPULATE_WRITE`) is used: measured in a Firecracker VM, importing pandas, sympy
//! and Django took 1,595 ms of CPU with huge pages (`MADV_HUGEPAGE`), 1,409 ms with
//! pre-faulted small pages and 1,292 ms with neither (stock: 1,879 ms), as a huge page is
//! zeroed whole, from memory the host must first provide, before any of it is used. So the
//! chunks are marked `MADV_NOHUGEPAGE`: where transparent huge pages are `always` (not
//! only on `madvise`), the 2 MiB chunks would otherwise get them. The mark also keeps the
//! kernel from merging a chunk with the interpreter's own anonymous memory next to it, so
//! `/proc/PID/smaps` shows image memory apart ([`mappings`] says where it is).

use std::ptr::NonNull;
use std::sync::Mutex;

/// Chunk sizes, in order; the last repeats.
const CHUNKS: [usize; 4] = [256 << 10, 512 << 10, 1 << 20, 2 << 20];
/// Pieces at least this large get a mapping of their own.
const OWN_MAPPING: usize = 1 << 20;

struct Arena {
    /// The current chunk: next free byte and end.
    next: usize,
    end: usize,
    /// How many chunks were made (which size the next one gets).
    chunks: usize,
}

static ARENA: Mutex<Arena> = Mutex::new(Arena {
    next: 0,
    end: 0,
    chunks: 0,
});

/// An anonymous private mapping of `len` bytes (a multiple of the page size), zeroed.
fn map(len: usize) -> Option<NonNull<u8>> {
    // SAFETY: a new anonymous mapping; no existing memory is affected.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: advice on the mapping just made; it changes no contents.
    unsafe { libc::madvise(raw, len, libc::MADV_NOHUGEPAGE) };
    name(raw, len);
    MAPPINGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((raw as usize, len));
    NonNull::new(raw.cast::<u8>())
}

/// Every mapping made for images, `(start, length)`, for diagnostics and benchmarks
/// (the kernel may not name them: [`name`]).
static MAPPINGS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// The mappings images live in, `(start, length)`, in the order they were made.
pub(crate) fn mappings() -> Vec<(usize, usize)> {
    MAPPINGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Names the mapping `[anon:ppyc images]` in `/proc/PID/maps` and `smaps`, so that the
/// memory images take can be told apart from the interpreter's own (`PR_SET_VMA_ANON_NAME`,
/// Linux 5.17 with `CONFIG_ANON_VMA_NAME`; elsewhere the call fails and the mapping stays
/// unnamed, which changes nothing else).
fn name(raw: *mut libc::c_void, len: usize) {
    const NAME: &std::ffi::CStr = c"ppyc images";
    // SAFETY: `raw .. raw + len` is the anonymous mapping just made; the kernel copies the
    // name, which is a static NUL-terminated string.
    unsafe {
        libc::prctl(
            libc::PR_SET_VMA,
            libc::PR_SET_VMA_ANON_NAME as libc::c_ulong,
            raw as libc::c_ulong,
            len as libc::c_ulong,
            NAME.as_ptr() as libc::c_ulong,
        );
    }
}

/// `len` zeroed bytes, 16-aligned, that are never freed.
pub(crate) fn alloc(len: usize) -> Option<NonNull<u8>> {
    let len = len.max(16).next_multiple_of(16);
    if len >= OWN_MAPPING {
        return map(len.next_multiple_of(4096));
    }
    let mut arena = ARENA
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if arena.end - arena.next < len {
        // A chunk holds at least the piece it is made for: the early chunks are smaller
        // than the pieces that get no mapping of their own (a 600 KiB image loaded first
        // once went past the end of a 256 KiB chunk).
        let size = CHUNKS[arena.chunks.min(CHUNKS.len() - 1)].max(len.next_multiple_of(4096));
        let chunk = map(size)?;
        arena.chunks += 1;
        arena.next = chunk.as_ptr() as usize;
        arena.end = arena.next + size;
    }
    let piece = arena.next;
    arena.next += len;
    drop(arena);
    NonNull::new(piece as *mut u8)
}

/// Gives back the piece `ptr .. ptr + len` from [`alloc`] that turned out unused (an
/// image that failed validation): reused when it is the last piece handed out, else left
/// (a damaged image is rare; its memory is not worth tracking).
pub(crate) fn give_back(ptr: NonNull<u8>, len: usize) {
    let len = len.max(16).next_multiple_of(16);
    let start = ptr.as_ptr() as usize;
    if len >= OWN_MAPPING {
        // SAFETY: a mapping of its own made by `alloc` for this piece, unused.
        unsafe { libc::munmap(start as *mut libc::c_void, len.next_multiple_of(4096)) };
        MAPPINGS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|&(s, _)| s != start);
        return;
    }
    let mut arena = ARENA
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if start + len == arena.next {
        // Zeroed again, as `alloc` promises.
        // SAFETY: the piece is ours (just given back) and inside the current chunk.
        unsafe { std::ptr::write_bytes(start as *mut u8, 0, len) };
        arena.next = start;
    }
}
