//! The global allocator: mimalloc, with every block zeroed before it goes back.
//!
//! Deleted and expired mail must not linger in the process's memory. The store zeroes
//! its ring and its parsed views itself, but message bytes also pass through buffers it
//! does not own: session read and body buffers, the `Arc<[u8]>` that carries a message
//! to another core, response buffers, parser and sanitizer temporaries. Each of those is
//! freed through the global allocator, so zeroing in [`WipingMiMalloc::dealloc`] covers
//! them all, including the ones nobody thought of. mimalloc itself would keep them: a
//! freed block keeps its bytes (all but the first word, its free-list link) until it is
//! reused, and only pages with no live block left are given back to the kernel.
//!
//! What this cannot cover is memory that is not freed: a buffer that lives on (a
//! session's buffers between two messages, a `Vec` or `String` that was cleared but keeps
//! its capacity, tracing's per-thread line buffer) still holds what it held, so its owner
//! calls [`wipe`], [`wipe_vec`] or [`wipe_string`] when the content is done with. Nor
//! does it cover copies outside this allocator: the kernel's socket buffers, and the
//! stack, where a thread that parsed mail and then idles keeps what its deepest frames
//! held, so the blocking threads' parse jobs end with [`wipe_stack`] (`tests/wipe.rs` finds
//! no message bytes left on any stack).
//!
//! Which bytes are zeroed:
//! - `dealloc`: the whole block as mimalloc sized it (`mi_usable_size`, which may be
//!   more than the layout asked for), so bytes a block held before an in-place shrink are
//!   covered too, even if wiping was switched on after that shrink.
//! - `realloc` that mimalloc would do in place (the new size fits the block and wastes at
//!   most half of it: mimalloc's own rule): the tail given up when shrinking, at once,
//!   because the block, and with it the tail, may live on for a long time.
//! - `realloc` that moves: the old block, after its bytes were copied and before it is
//!   freed. mimalloc's own `mi_realloc` frees the old block inside the call, where it
//!   could no longer be zeroed, so a moving realloc is done here as alloc, copy, zero,
//!   free.
//!
//! Wiping is on by default and switched process-wide by [`set_wipe_on_free`]; off, every
//! call goes straight to mimalloc (one relaxed atomic load more per free and realloc).
//! The flag is read at each call, so switching it while the process runs is sound: a
//! block freed while it was off is simply not wiped.
//!
//! The cost is one `memset` of each freed block, about as much again as writing the block
//! once (`benches/alloc.rs`: 16 KiB alloc+fill+free 105 ns, 183 ns wiped; 1 MiB 18.6 µs,
//! 37.3 µs wiped), plus a `mi_usable_size` call per free. On the server that is under 1%
//! of the CPU per message (perf samples of W2 1 KiB, pipelined 1 KiB and 100 KiB loads):
//! the big buffers of the SMTP path live as long as their session and are freed once.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};

use mimalloc::MiMalloc;

/// Whether freed blocks are zeroed. On by default: the safe setting is the one a
/// process gets when nobody configured anything.
static WIPE_ON_FREE: AtomicBool = AtomicBool::new(true);

/// mimalloc, wrapped so that freed memory is zeroed (see the module doc).
///
/// The binary installs it with `#[global_allocator]`; the library never does, so tests
/// and benches can pick their allocator.
pub struct WipingMiMalloc;

/// Switches wiping of freed memory on or off for the whole process, from now on.
///
/// Call it once at start-up, before the executors start (any thread may call it at any
/// time; blocks freed while it is off are not wiped).
pub fn set_wipe_on_free(on: bool) {
    WIPE_ON_FREE.store(on, Ordering::Relaxed);
}

/// Whether freed memory is being wiped.
pub fn wipe_on_free() -> bool {
    WIPE_ON_FREE.load(Ordering::Relaxed)
}

/// Overwrites `bytes` with zeros, in a way the compiler may not remove.
///
/// For buffers that outlive the message they held (a session's read or body buffer
/// between two messages). Unconditional: it does not look at [`set_wipe_on_free`].
pub fn wipe(bytes: &mut [u8]) {
    // SAFETY: a `&mut [u8]` is valid for writes of its whole length.
    unsafe { zero_bytes(bytes.as_mut_ptr(), bytes.len()) };
}

/// Zeroes all of `vec`'s memory, its spare capacity included, then empties it, keeping
/// the capacity for the next use.
///
/// `Vec::clear` and `Vec::truncate` leave the old bytes in the capacity; the spare
/// capacity can also hold bytes from before an earlier `truncate`. Unconditional, like
/// [`wipe`]. For a large buffer that is mostly unused room, wiping only the part that was
/// written (with [`wipe`]) is cheaper.
pub fn wipe_vec(vec: &mut Vec<u8>) {
    // SAFETY: a `Vec`'s buffer is valid for writes of `capacity()` bytes (initialized or
    // not); zero is a valid `u8`, and the length is set to 0 right after.
    unsafe { zero_bytes(vec.as_mut_ptr(), vec.capacity()) };
    vec.clear();
}

/// Zeroes the bytes `string` holds now and empties it, keeping its memory: for a string
/// that is wiped at every clear, so nothing older lingers past its length.
pub fn wipe_str(string: &mut String) {
    // SAFETY: zero bytes are valid UTF-8, and the string is emptied right after.
    wipe(unsafe { string.as_bytes_mut() });
    string.clear();
}

/// Stack bytes [`wipe_stack`] zeroes below its caller's frame: more than the deepest
/// parse of a message takes (mail-parser's decoding and the HTML sanitizer, a few tens of
/// KiB), well within a blocking thread's 2 MiB stack.
pub const STACK_WIPE_BYTES: usize = 256 * 1024;

/// Zeroes `STACK_WIPE_BYTES` of this thread's stack below the caller's frame, when wiping
/// is on.
///
/// For threads that parse mail and then sit idle (glommio's blocking threads, which run
/// the message-view and search parses): the frames of a parse leave message text on the
/// stack, and nothing overwrites it until the thread's next job, which may never come.
/// The executor threads need none: every turn of their loop reuses the same frames.
/// Cost: 4.8 us per call with the stack in cache (`cargo bench --bench alloc`,
/// `wipe_stack/256KiB`), on the blocking thread, once per parse job.
#[inline(never)]
pub fn wipe_stack() {
    if !wipe_on_free() {
        return;
    }
    let mut scratch = [0u8; STACK_WIPE_BYTES];
    wipe(&mut scratch);
    std::hint::black_box(&scratch);
}

/// `wipe`, when wiping is on (`set_wipe_on_free`): for buffers reused from one message to
/// the next, which `--wipe-freed-memory false` leaves as they are along with freed blocks.
pub fn wipe_if_on(bytes: &mut [u8]) {
    if wipe_on_free() {
        wipe(bytes);
    }
}

/// `wipe_str` when wiping is on; otherwise only empties `string`.
pub fn wipe_str_if_on(string: &mut String) {
    if wipe_on_free() {
        wipe_str(string);
    } else {
        string.clear();
    }
}

/// Zeroes all of `string`'s memory, spare capacity included, then empties it, keeping the
/// capacity: [`wipe_vec`] for a `String` (an envelope address kept between transactions).
pub fn wipe_string(string: &mut String) {
    // SAFETY: `wipe_vec` leaves the vector empty, and an empty `String` is valid UTF-8.
    wipe_vec(unsafe { string.as_mut_vec() });
}

// SAFETY: every method hands mimalloc only pointers and layouts that came from mimalloc
// with the same alignment, as `GlobalAlloc` requires of callers, and does the wiping
// only on memory the caller owns (a block it is giving back) before mimalloc gets it.
// `realloc`'s own path keeps `GlobalAlloc`'s contract: on failure the old block is left
// untouched and still owned by the caller.
unsafe impl GlobalAlloc for WipingMiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `alloc` are passed on unchanged.
        unsafe { MiMalloc.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `alloc_zeroed` are passed on unchanged.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WIPE_ON_FREE.load(Ordering::Relaxed) {
            // SAFETY: `ptr` is a live mimalloc block, the caller's guarantee for `dealloc`.
            unsafe { wipe_block(ptr) };
        }
        // SAFETY: as for `dealloc`.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !WIPE_ON_FREE.load(Ordering::Relaxed) {
            // SAFETY: the caller's guarantees for `realloc` are passed on unchanged.
            return unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `ptr` and `layout` describe a live block and that
        // `new_size` is non-zero and does not overflow when rounded up to the alignment.
        unsafe { realloc_wiping(ptr, layout, new_size) }
    }
}

/// `realloc` with the old bytes zeroed; see the module doc for which.
///
/// # Safety
/// As for `GlobalAlloc::realloc`: `ptr` is a live block from this allocator with
/// `layout`, `new_size > 0`, and `new_size` rounded up to `layout.align()` fits `isize`.
unsafe fn realloc_wiping(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    // SAFETY: `ptr` is a live mimalloc block.
    let usable_bytes = unsafe { MiMalloc.usable_size(ptr) };
    // mimalloc's own rule for keeping a block (`_mi_theap_realloc_zero`): the new size
    // fits and wastes at most half of it. The block is already aligned for `layout`,
    // which the realloc keeps.
    if new_size <= usable_bytes && new_size >= usable_bytes / 2 {
        if new_size < layout.size() {
            // SAFETY: `[new_size, layout.size())` lies inside the live block.
            unsafe { zero_bytes(ptr.add(new_size), layout.size() - new_size) };
        }
        return ptr;
    }
    // SAFETY: `layout.align()` is a valid alignment and the caller guarantees `new_size`
    // rounded up to it does not overflow `isize`.
    let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
    // SAFETY: `new_size > 0`, the caller's guarantee.
    let new_ptr = unsafe { MiMalloc.alloc(new_layout) };
    if new_ptr.is_null() {
        // The old block stays valid and owned by the caller, as `realloc` promises.
        return new_ptr;
    }
    // SAFETY: two distinct live blocks, each at least `min(old, new)` bytes long; the old
    // block is zeroed in full (it is a live block of `usable_bytes`) and then freed, once.
    unsafe {
        std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
        zero_bytes(ptr, usable_bytes);
        MiMalloc.dealloc(ptr, layout);
    }
    new_ptr
}

/// Zeroes the whole of a mimalloc block, as mimalloc sized it.
///
/// # Safety
/// `ptr` must be a live block from mimalloc; all of its usable size is the owner's to
/// write until it is freed.
#[inline]
unsafe fn wipe_block(ptr: *mut u8) {
    // SAFETY: `ptr` is a live mimalloc block, so mimalloc can tell its usable size, and
    // that many bytes are writable.
    unsafe { zero_bytes(ptr, MiMalloc.usable_size(ptr)) };
}

/// Writes `len` zeros at `ptr` and makes sure the writes happen.
///
/// Zeroing memory that is freed right after is a dead store that the compiler may
/// delete: LLVM knows `__rust_dealloc` frees, and after inlining it can see that nothing
/// reads the zeros. `std::ptr::write_bytes` (a `memset`, fast at every size) followed by
/// an empty `asm!` block that receives the pointer and may read memory forbids that: the
/// compiler must assume the asm reads the zeros, so the stores must be done before it.
/// This is glibc's `explicit_bzero` technique. A `compiler_fence` alone is not enough:
/// it orders atomics and does not make the buffer observable. Volatile byte writes would
/// be too slow for the 128 KiB to 1 MiB buffers freed on the SMTP path.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
#[inline]
unsafe fn zero_bytes(ptr: *mut u8, len: usize) {
    // SAFETY: the caller guarantees `ptr` is valid for `len` bytes of writes.
    unsafe { std::ptr::write_bytes(ptr, 0, len) };
    // SAFETY: the asm is empty: it reads no register but the pointer it is given and
    // writes nothing; `readonly` tells the compiler it may read memory (the zeros), which
    // is the point, and `nostack`/`preserves_flags` that it touches neither.
    unsafe {
        std::arch::asm!(
            "/* {0} */",
            in(reg) ptr,
            options(nostack, preserves_flags, readonly)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes around mimalloc's size-class and page boundaries, from the smallest to a
    /// block mimalloc takes straight from the OS.
    const SIZES: &[usize] = &[
        1,
        7,
        8,
        63,
        64,
        65,
        1000,
        1024,
        4096,
        16 * 1024,
        64 * 1024,
        128 * 1024 + 1,
        1024 * 1024,
        8 * 1024 * 1024 + 3,
    ];
    const ALIGNS: &[usize] = &[1, 8, 16, 64, 4096];

    /// A pattern byte for offset `i`, never zero, so a lost or zeroed byte shows.
    fn pattern(i: usize) -> u8 {
        (i % 251) as u8 + 1
    }

    /// The pattern for the largest block the tests use, built once: unoptimized
    /// byte-at-a-time loops over tens of MiB would make these tests slow.
    fn patterned() -> &'static [u8] {
        static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        PATTERN.get_or_init(|| {
            let largest = SIZES.iter().max().expect("sizes") * 3 + 5;
            (0..largest).map(pattern).collect()
        })
    }

    fn fill(ptr: *mut u8, len: usize) {
        // SAFETY: callers pass a live block of at least `len` bytes, distinct from the
        // pattern.
        unsafe { std::ptr::copy_nonoverlapping(patterned().as_ptr(), ptr, len) };
    }

    fn check(ptr: *const u8, len: usize, what: &str) {
        // SAFETY: callers pass a live, initialized block of at least `len` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
        // Slice equality is a memcmp, fast even unoptimized; find the byte only to report it.
        if bytes != &patterned()[..len] {
            let i = (0..len)
                .find(|&i| bytes[i] != pattern(i))
                .expect("a byte differs");
            panic!("{what}: byte {i} is {}, want {}", bytes[i], pattern(i));
        }
    }

    /// Allocates `size` bytes at `align`, fills them, reallocates to `new_size` (with
    /// `realloc_wiping` when `wiping`, else plain mimalloc) and checks the block: aligned,
    /// the common prefix kept, and, when the block stayed in place while shrinking and
    /// `wiping`, the tail given up zeroed. Returns whether the block stayed in place.
    ///
    /// Tests call the paths directly instead of flipping the process-wide flag, which
    /// other tests running at the same time would see.
    fn realloc_round(size: usize, align: usize, new_size: usize, wiping: bool) -> bool {
        let what = format!("size={size} align={align} new_size={new_size} wiping={wiping}");
        let layout = Layout::from_size_align(size, align).expect("valid layout");
        let new_layout = Layout::from_size_align(new_size, align).expect("valid layout");
        // SAFETY: the sizes are non-zero; the block is written and read within its size,
        // reallocated once with the layout it was allocated with, and freed once with the
        // layout it has after the realloc. Reading the tail after an in-place shrink reads
        // memory that mimalloc still counts as part of the live block (it is within
        // `usable_size`, checked), through a pointer that came from mimalloc, not from the
        // global allocator, so no Rust allocation ends before it.
        unsafe {
            let ptr = WipingMiMalloc.alloc(layout);
            assert!(!ptr.is_null(), "{what}: alloc");
            assert_eq!(ptr as usize % align, 0, "{what}: alignment");
            fill(ptr, size);
            let new_ptr = if wiping {
                realloc_wiping(ptr, layout, new_size)
            } else {
                MiMalloc.realloc(ptr, layout, new_size)
            };
            assert!(!new_ptr.is_null(), "{what}: realloc");
            assert_eq!(
                new_ptr as usize % align,
                0,
                "{what}: alignment after realloc"
            );
            check(new_ptr, size.min(new_size), &what);
            let in_place = new_ptr == ptr;
            if wiping && in_place && new_size < size {
                assert!(
                    MiMalloc.usable_size(new_ptr) >= size,
                    "{what}: block shrank"
                );
                let tail = std::slice::from_raw_parts(new_ptr.add(new_size), size - new_size);
                assert!(
                    tail.iter().all(|&b| b == 0),
                    "{what}: tail given up not zeroed"
                );
            }
            fill(new_ptr, new_size);
            if wiping {
                wipe_block(new_ptr);
            }
            MiMalloc.dealloc(new_ptr, new_layout);
            in_place
        }
    }

    #[test]
    fn realloc_keeps_contents_and_alignment_with_and_without_wiping() {
        for wiping in [true, false] {
            for &align in ALIGNS {
                for &size in SIZES {
                    // Growing (usually moving), growing a little (often in place),
                    // shrinking a little (in place) and shrinking to almost nothing (moving).
                    for new_size in [size * 3 + 5, size + 1, size - size / 4, 1] {
                        if new_size > 0 {
                            realloc_round(size, align, new_size, wiping);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn shrinking_in_place_zeroes_the_tail_given_up() {
        // Shrinking by a quarter wastes less than half the block, so mimalloc's rule keeps
        // it in place, except where mimalloc rounded a small or over-aligned block up to
        // much more than was asked. Make sure the blocks that must stay in place do, so
        // the tail check in `realloc_round` really runs.
        for &align in ALIGNS {
            for &size in SIZES.iter().filter(|&&size| size >= 8) {
                let in_place = realloc_round(size, align, size - size / 4, true);
                if size >= 1000 && size >= align {
                    assert!(
                        in_place,
                        "size {size} align {align}: mimalloc's rule changed"
                    );
                }
            }
        }
    }

    #[test]
    fn the_global_alloc_methods_work_whatever_the_flag() {
        // Through the trait, as the binary uses it, with the flag as it is (on unless a
        // test is changing it: either setting is valid for every block).
        let allocator = WipingMiMalloc;
        for &align in ALIGNS {
            for &size in SIZES {
                let what = format!("size={size} align={align}");
                let layout = Layout::from_size_align(size, align).expect("valid layout");
                let grown_layout = Layout::from_size_align(size * 2, align).expect("valid");
                // SAFETY: non-zero sizes; each block is used within its size and freed
                // once with its current layout.
                unsafe {
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert!(!zeroed.is_null(), "{what}: alloc_zeroed");
                    assert_eq!(zeroed as usize % align, 0, "{what}: alignment");
                    let bytes = std::slice::from_raw_parts(zeroed, size);
                    assert!(
                        bytes.iter().all(|&b| b == 0),
                        "{what}: alloc_zeroed not zero"
                    );
                    fill(zeroed, size);
                    let grown = allocator.realloc(zeroed, layout, size * 2);
                    assert!(!grown.is_null(), "{what}: realloc");
                    check(grown, size, &what);
                    allocator.dealloc(grown, grown_layout);
                }
            }
        }
    }

    #[test]
    fn the_flag_switches() {
        assert!(wipe_on_free(), "wiping is on by default");
        set_wipe_on_free(false);
        assert!(!wipe_on_free());
        set_wipe_on_free(true);
        assert!(wipe_on_free());
    }

    #[test]
    fn wipe_zeroes_every_byte_of_a_slice() {
        for len in [0, 1, 15, 16, 17, 4096, 100_003] {
            let mut buf: Vec<u8> = (0..len).map(pattern).collect();
            wipe(&mut buf[..len / 2]);
            assert!(buf[..len / 2].iter().all(|&b| b == 0), "len {len}: prefix");
            assert!(
                buf[len / 2..]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == pattern(len / 2 + i)),
                "len {len}: wipe wrote past the slice"
            );
            wipe(&mut buf);
            assert!(buf.iter().all(|&b| b == 0), "len {len}: whole");
        }
    }

    #[test]
    fn wipe_string_zeroes_and_empties() {
        let mut string = String::from("sender@example.test");
        string.truncate(6);
        let capacity = string.capacity();
        wipe_string(&mut string);
        assert!(string.is_empty());
        assert_eq!(
            string.capacity(),
            capacity,
            "the capacity is kept for reuse"
        );
        // SAFETY: the buffer holds `capacity` bytes, all written by `wipe_string`.
        let all = unsafe { std::slice::from_raw_parts(string.as_ptr(), capacity) };
        assert!(all.iter().all(|&b| b == 0), "spare capacity not zeroed");
    }

    #[test]
    fn wipe_vec_zeroes_the_spare_capacity_too() {
        let mut vec: Vec<u8> = (0..10_000).map(pattern).collect();
        // Bytes past the length that `truncate` left behind.
        vec.truncate(100);
        let capacity = vec.capacity();
        wipe_vec(&mut vec);
        assert!(vec.is_empty());
        assert_eq!(vec.capacity(), capacity, "the capacity is kept for reuse");
        // SAFETY: the buffer holds `capacity` bytes, all written by `wipe_vec`.
        let all = unsafe { std::slice::from_raw_parts(vec.as_ptr(), capacity) };
        assert!(all.iter().all(|&b| b == 0), "spare capacity not zeroed");
    }
}
