//! A server for an application of one's own: two agents, the whole gateway.
//!
//! ```sh
//! TENANTRY_ADMIN_KEY=admin cargo run -p tenantry-server --example shop -- serve
//! curl -s -X POST localhost:7878/v1/admin/partitions -H 'Authorization: Bearer admin' \
//!     -d '{"partition": "hooli"}'                       # returns the tenant's key
//! curl -s -X POST 'localhost:7878/v1/partitions/hooli/invoke/carts.add?key=alice' \
//!     -H 'Authorization: Bearer <key>' -d '{"sku": "tea", "qty": 2}'
//! ```

mod agents;

fn main() -> std::process::ExitCode {
    tenantry_server::cli::run_application(agents::application())
}
