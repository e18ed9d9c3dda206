//! A global allocator that counts this thread's heap allocations, for the benches and tests
//! that report allocations (`benches/oauth2.rs`, `tests/allocations.rs`,
//! `tests/dpop_allocations.rs`). Including this module installs it for the whole binary.
//!
//! A dependency was considered: `dhat` (well kept, made for heap testing) counts across the
//! whole process and records a backtrace per allocation; counting per thread in a few lines is
//! simpler to trust here, and the harness's other threads never show up in a count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards everything to the system allocator, counting this thread's allocations.
pub struct Counting;

thread_local! {
    // `const` and without a destructor: usable from inside the allocator, at any time.
    static ALLOCATED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn count(bytes: usize) {
    let _ = ALLOCATED.try_with(|c| {
        let (blocks, total) = c.get();
        c.set((blocks + 1, total + bytes as u64));
    });
}

// SAFETY: every method forwards to `System` with the caller's own arguments, so `System`'s
// guarantees are the ones the caller gets; counting touches no memory the caller owns.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded as is (see above).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocations (blocks, bytes) this thread has made so far.
pub fn allocated() -> (u64, u64) {
    ALLOCATED.with(Cell::get)
}
