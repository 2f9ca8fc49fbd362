//! Memory for images: anonymous mappings carved into 16-aligned pieces, never returned
//! (image objects live until the process ends).
//!
//! Images are read into fresh memory at every load, so the cost of faulting pages in is
//! part of every load. Pieces come from chunks that grow from 256 KiB to 2 MiB; 2 MiB
//! chunks are 2 MiB aligned and marked `MADV_HUGEPAGE`, so that one fault maps a whole
//! chunk where transparent huge pages are enabled (`madvise` mode or `always`). A process
//! that loads little keeps its small first chunk. The memory is private and anonymous: no
//! file page is copied; each piece's pages are faulted in with one call when it is handed
//! out ([`populate`]).

use std::ptr::NonNull;
use std::sync::Mutex;

/// Chunk sizes, in order; the last repeats.
const CHUNKS: [usize; 4] = [256 << 10, 512 << 10, 1 << 20, 2 << 20];
/// The huge page size that chunks of this size are aligned to.
const HUGE: usize = 2 << 20;
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

/// An anonymous private mapping of `len` bytes, aligned to `align` (a power of two, at
/// least the page size), marked for huge pages when `len` is a multiple of [`HUGE`].
fn map(len: usize, align: usize) -> Option<NonNull<u8>> {
    let total = len.checked_add(align)?;
    // SAFETY: a new anonymous mapping; no existing memory is affected.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(align);
    // SAFETY: both ranges lie inside the mapping just made and are not used: the part
    // before the aligned start and the part after its end.
    unsafe {
        if aligned > start {
            libc::munmap(raw, aligned - start);
        }
        let tail = start + total - (aligned + len);
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
        if len % HUGE == 0 {
            // Advice only: without transparent huge pages this changes nothing.
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
    NonNull::new(aligned as *mut u8)
}

/// `len` zeroed bytes, 16-aligned, that are never freed.
pub(crate) fn alloc(len: usize) -> Option<NonNull<u8>> {
    let len = len.max(16).next_multiple_of(16);
    if len >= OWN_MAPPING {
        return map(len.next_multiple_of(4096), 4096);
    }
    let mut arena = ARENA
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if arena.end - arena.next < len {
        let size = CHUNKS[arena.chunks.min(CHUNKS.len() - 1)];
        let chunk = map(size, if size == HUGE { HUGE } else { 4096 })?;
        arena.chunks += 1;
        arena.next = chunk.as_ptr() as usize;
        arena.end = arena.next + size;
    }
    let piece = arena.next;
    arena.next += len;
    drop(arena);
    populate(piece, len);
    NonNull::new(piece as *mut u8)
}

/// Faults in the pages of `start .. start + len` with one call (`MADV_POPULATE_WRITE`,
/// Linux 5.14+) instead of one page fault per page as the image is read into them: page
/// faults are the dearest part of reading an image, above all in virtual machines. Advice
/// only: on older kernels, or when memory is short, the pages fault in as they are touched.
fn populate(start: usize, len: usize) {
    let first = start & !4095;
    let end = (start + len).next_multiple_of(4096);
    // SAFETY: `first .. end` lies inside one chunk mapped by `map` (pieces never cross
    // chunks, and chunks are page-aligned with a page-multiple size); populating writable
    // private anonymous pages changes no byte (they stay zero).
    unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            end - first,
            libc::MADV_POPULATE_WRITE,
        );
    }
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
