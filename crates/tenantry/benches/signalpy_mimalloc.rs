//! The side-by-side with signalpy (`signalpy.rs`), with mimalloc as the global allocator:
//! what an application embedding Tenantry gets with the allocator the `tenantry` server
//! binary ships. Its lines end in `_mimalloc`.
//!
//! Run: `cargo bench -p tenantry --bench signalpy_mimalloc`

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod side_by_side;

fn main() {
    side_by_side::run("_mimalloc");
}
