//! Running the server: bind, boot the application, serve, and shut down gracefully.
//!
//! [`start`] is the library entry point (the binary and the tests use it). Shutdown stops
//! accepting, lets in-flight requests finish (up to the grace period), then hibernates
//! every live instance through [`tenantry::Runtime::shutdown`], so nothing acknowledged
//! is lost.

use crate::app::App;
use crate::application::Application;
use crate::settings::{AdminKey, AppSpec, Settings, StoreChoice, demo_key};
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tenantry::store::CheckpointStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server.
pub struct Server {
    /// The application state.
    pub app: Arc<App>,
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

/// What a shutdown did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownSummary {
    /// Whether every in-flight request finished within the grace period.
    pub drained: bool,
    /// Instances hibernated.
    pub hibernated: usize,
    /// Instances that failed to hibernate.
    pub failed: usize,
}

/// [`start_application`] with the built-in demo application.
pub async fn start(
    settings: Settings,
    store: Option<Arc<dyn CheckpointStore>>,
) -> anyhow::Result<Server> {
    start_application(&Application::demo(), settings, store).await
}

/// Binds the listen address, boots `application` (over `store`, or the configured one),
/// and serves. Ready when this returns. The demo tenants that settings without a config
/// file stand for are the demo's only: another application starts with no tenant (the
/// admin onboards them, or a config file declares them).
pub async fn start_application(
    application: &Application,
    mut settings: Settings,
    store: Option<Arc<dyn CheckpointStore>>,
) -> anyhow::Result<Server> {
    if settings.app.builtin_demo && !application.is_demo() {
        settings.app = AppSpec::default();
    }
    // Install the recorder before the runtime caches any metric handle.
    let node = settings.cluster.as_ref().map(|c| c.node.as_str());
    let _ = crate::telemetry::install_metrics(node);
    let listener = TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let app = App::open_application(application, settings, store).await?;
    if let Some(cluster) = &app.cluster {
        cluster.join(&app.runtime, &addr.to_string()).await?;
        cluster.follow_registry(Arc::downgrade(&app)).await?;
    }
    let gateway = crate::routes::gateway(app.clone());
    if let Some(cluster) = &app.cluster {
        cluster.serve_relays(gateway.clone()).await?;
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service(gateway),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .await
    });
    app.set_ready(true);
    Ok(Server {
        app,
        addr,
        stop: Some(stop),
        task,
    })
}

impl Server {
    /// Stops accepting, waits for in-flight requests (up to the grace period), then
    /// hibernates every live instance and waits for them.
    pub async fn shutdown(mut self) -> ShutdownSummary {
        self.app.set_ready(false);
        // Event streams never end on their own: end them, or they hold the drain up.
        self.app.streams.close_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let grace = self.app.settings.limits.shutdown_grace;
        let drained = match tokio::time::timeout(grace, &mut self.task).await {
            Ok(Ok(Ok(()))) => true,
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "the listener failed");
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the serve task failed");
                true
            }
            Err(_) => {
                tracing::warn!(?grace, "in-flight requests did not finish in time");
                self.task.abort();
                false
            }
        };
        if let Some(cluster) = &self.app.cluster {
            // Hand every shard off first: their calls go to the next owners.
            cluster.leave().await;
        }
        let report = self.app.runtime.shutdown().await;
        for e in &report.errors {
            tracing::warn!(error = %e, "hibernation at shutdown failed");
        }
        ShutdownSummary {
            drained,
            hibernated: report.stopped,
            failed: report.errors.len(),
        }
    }

    /// The banner printed at start: where it listens, the admin key if generated, and for
    /// the demo, the tenants' keys and a first call. Its first line is
    /// `tenantry listening on http://<addr>`.
    pub fn banner(&self) -> String {
        let s = &self.app.settings;
        let base = format!("http://{}", self.addr);
        let mut out = format!("tenantry listening on {base}\n");
        let store = match &s.store {
            StoreChoice::Redb(p) => format!("redb {}", p.display()),
            StoreChoice::Postgres { schema, .. } => format!("postgres (schema {schema})"),
        };
        out.push_str(&format!("store: {store}\n"));
        if let Some(c) = &s.cluster {
            out.push_str(&format!(
                "cluster: {} as node {} ({} shards, NATS {})\n",
                c.name,
                c.node,
                c.shards.get(),
                c.nats_url
            ));
        }
        match &s.admin_key {
            AdminKey::Generated(k) => out.push_str(&format!(
                "admin key (generated for this run; set TENANTRY_ADMIN_KEY to choose one): {k}\n"
            )),
            AdminKey::Plain(_) => out.push_str("admin key: from TENANTRY_ADMIN_KEY\n"),
            AdminKey::Hashed(_) => out.push_str("admin key: from the config file (hashed)\n"),
        }
        if s.app.builtin_demo {
            out.push_str("demo tenants:\n");
            for t in tenantry_demo::TENANTS {
                out.push_str(&format!("  {t:<8} key {}\n", demo_key(t)));
            }
            out.push_str(&format!(
                "try:\n  curl -s -X POST {base}/v1/partitions/acme/invoke/tenant-db.query \\\n    \
                 -H 'Authorization: Bearer {}' -d '{{\"sql\": \"select 1\"}}'\n",
                demo_key("acme")
            ));
        }
        out
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}

/// Runs `tenantry serve`: start `application`, print the banner, serve until SIGINT or
/// SIGTERM, shut down gracefully.
pub async fn serve(application: &Application, settings: Settings) -> anyhow::Result<()> {
    let server = start_application(application, settings, None).await?;
    print!("{}", server.banner());
    tracing::info!(addr = %server.addr, "ready");
    shutdown_signal().await;
    tracing::info!("shutting down: draining requests, then hibernating instances");
    let summary = server.shutdown().await;
    tracing::info!(
        drained = summary.drained,
        hibernated = summary.hibernated,
        failed = summary.failed,
        "stopped"
    );
    Ok(())
}
