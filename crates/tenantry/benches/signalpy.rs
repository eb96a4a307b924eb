//! Side by side with signalpy-kernel 0.4.0 on its own multi-tenant scenario: three
//! `tenant-db` instances over a config provider, one caller awaiting each call in turn.
//! Printed as `name: value unit` lines:
//!
//! - `tenantry_invoke_exact_{task,main}`: `bus.invoke("tenant-db-acme.query", ...)`;
//! - `tenantry_invoke_routed_{task,main}`: `bus.invoke("tenant-db.query", ..., target)`;
//! - `tenantry_config_write_then_routed_query_{task,main}`: a write of
//!   `tenants.globex.db_url`, then a routed query that must see it;
//! - `tenantry_invoke_as_exact_{task,main}`, `tenantry_invoke_as_routed_{task,main}` and
//!   `tenantry_config_write_then_routed_invoke_as_{task,main}`: the same three with
//!   `bus.invoke_as::<QueryResult>(...)`, the reply as the handler's own type (as
//!   signalpy's `invoke` hands back the handler's own dict), never built as JSON;
//! - `tenantry_invoke_raw_exact_{task,main}`, `tenantry_invoke_raw_routed_{task,main}` and
//!   `tenantry_config_write_then_routed_invoke_raw_{task,main}`: the same three with
//!   `bus.invoke_raw(...)`, the reply as JSON text (what the HTTP gateway sends on),
//!   encoded once and never built as a value;
//!
//! each measured from a task on the runtime (`task`) and from the code a
//! `#[tokio::main]` runs (`main`: the runtime's `block_on`, off the worker threads). Each
//! figure is the median of 200 batches; the two places alternate over five rounds and the
//! median round is printed (the machine's noise moves single rounds a lot). When `python3` can import `signalpy`, the bench then
//! runs `../shared/bench/signalpy_bench.py` (or `$SIGNALPY_BENCH`) and prints its lines and
//! the ratios (`ratio_*`: signalpy's time over tenantry's; higher is better for tenantry).
//!
//! `signalpy_mimalloc` runs the same with mimalloc as the allocator (its lines end in
//! `_mimalloc`).
//!
//! Run: `cargo bench -p tenantry --bench signalpy` (or `--bench signalpy_mimalloc`)
//! (signalpy: `pip install signalpy-kernel==0.4.0 pydantic`).

mod side_by_side;

fn main() {
    side_by_side::run("");
}
