//! The tenantry server: the `tenantry` binary's library.
//!
//! It hosts an application's components and agents for many tenants behind an
//! authenticated HTTP API (axum), over the embedded redb store by default or PostgreSQL.
//!
//! - [`settings`]: the TOML config file, environment overrides, defaults, the built-in demo.
//! - [`application`]: what a server hosts (the demo, or an application of one's own);
//!   [`app`]: the runtime, its factories and tenants, onboarding and offboarding.
//! - [`routes`]: the HTTP API; [`error`]: error bodies and statuses; [`openapi`]: the
//!   OpenAPI document.
//! - [`keys`]: API keys (kept hashed); [`registry`]: the durable record of runtime
//!   onboardings.
//! - [`server`]: start, serve and graceful shutdown; [`cli`]: the command line;
//!   [`demo`]: the in-process scenarios (the demo application is `tenantry-demo`);
//!   [`telemetry`]: logs and Prometheus metrics; [`traffic`]: each tenant's recent calls
//!   (rate, latency, errors) for the dashboard; [`cluster`]: the node this process runs
//!   as in cluster mode.

pub mod app;
pub mod application;
pub mod cli;
pub mod cluster;
pub mod demo;
pub mod error;
pub mod keys;
pub mod openapi;
pub mod quota;
pub mod registry;
pub mod relay;
pub mod routes;
pub mod server;
pub mod settings;
pub mod telemetry;
pub mod traffic;

pub use app::App;
pub use application::Application;
pub use server::{Server, ShutdownSummary, start, start_application};
pub use settings::Settings;
