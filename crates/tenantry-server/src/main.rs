//! The `tenantry` binary: see `tenantry --help`.

/// The server's allocator. Requests allocate on connection tasks and are freed on the
/// instance's, and replies the other way round: glibc's allocator spent about 15% of a
/// loaded gateway's CPU moving and merging those chunks (see BENCHMARKS.md, "HTTP
/// server"). Applications embedding the library choose their own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tenantry_server::cli::run()
}
