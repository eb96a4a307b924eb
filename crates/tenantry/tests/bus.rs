//! Bus routing: resolution order, keyed activation, transports, caller confinement,
//! admin grants with audit, introspection per partition, scoped config and credentials.

mod common;

use common::{Counter, p};
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tenantry::bus::{RemoteCall, RouteKind, Transport};
use tenantry::component::{Component, NoParams, Runnables};
use tenantry::kernel::Grant;
use tenantry::schemars::JsonSchema;
use tenantry::scope::Secret;
use tenantry::telemetry::EventKind;
use tenantry::{Context, Error, HandlerError, Invoke, Key, ManagerConfig, Runtime};

#[derive(Deserialize, JsonSchema)]
struct Peek {
    target: String,
}

/// Calls `tenant-db.status` in another partition through its own bus.
struct Prober;
impl Component for Prober {
    const FACTORY: &'static str = "prober";
    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self)
    }
    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable_async(
            "peek",
            "Reads another tenant's status.",
            |_, ctx, p: Peek| {
                Box::pin(async move {
                    let bus = ctx.bus().map_err(|e| HandlerError::new(e.to_string()))?;
                    let target = tenantry::Partition::new(&p.target)
                        .map_err(|e| HandlerError::new(e.to_string()))?;
                    bus.invoke("tenant-db.status", json!({}), Invoke::target(&target))
                        .await
                        .map_err(|e| HandlerError::with_code("bus", e.to_string()))
                })
            },
        );
        r.runnable(
            "my_db_url",
            "Reads db urls through the scoped config view.",
            |_, ctx, _: NoParams| {
                let config = ctx.config().map_err(|e| HandlerError::new(e.to_string()))?;
                let mine = config
                    .get_str(&config.tenant_key("db_url"))
                    .map_err(|e| HandlerError::new(e.to_string()))?;
                let globex = config
                    .get("tenants.globex.db_url")
                    .map_err(|e| HandlerError::new(e.to_string()))?;
                let all = config
                    .get("tenants")
                    .map_err(|e| HandlerError::new(e.to_string()))?;
                let write = config.set("tenants.acme.db_url", json!("hacked")).is_ok();
                Ok(json!({"mine": mine, "globex": globex, "all": all, "write": write}))
            },
        );
        r.runnable_async("abuse", "Tries the shared providers on another tenant.", |_, ctx, _: NoParams| {
            Box::pin(async move {
                let creds = ctx
                    .service("ICredentials")
                    .call(
                        "set",
                        json!({"partition": "globex", "instance": "tenant-db-globex", "name": "x", "value": "evil"}),
                    )
                    .await
                    .is_ok();
                let names = ctx
                    .service("ICredentials")
                    .call("names", json!({"partition": "globex", "instance": "tenant-db-globex"}))
                    .await
                    .is_ok();
                let read = ctx
                    .service("IConfig")
                    .call("get", json!({"key": "tenants.globex.db_url"}))
                    .await
                    .unwrap_or(Value::Null);
                let own = ctx
                    .service("IConfig")
                    .call("get", json!({"key": "tenants.acme.db_url"}))
                    .await
                    .unwrap_or(Value::Null);
                let write = ctx
                    .service("IConfig")
                    .call("set", json!({"key": "tenants.globex.db_url", "value": "evil"}))
                    .await
                    .is_ok();
                let borrowed = ctx
                    .get::<tenantry::component::ComponentState<Prober>>("prober", "prober-admin")
                    .await
                    .is_ok();
                Ok(json!({"creds": creds, "names": names, "read": read, "own": own, "write": write, "borrowed": borrowed}))
            })
        });
        r.runnable("secret", "Reads its own secret.", |_, ctx, _: NoParams| {
            let creds = ctx
                .credentials()
                .map_err(|e| HandlerError::new(e.to_string()))?;
            Ok(creds.get("api_token").map(|s| s.expose().to_owned()))
        });
    }
}

async fn demo() -> Runtime {
    let rt = Runtime::in_memory();
    tenantry_demo::install(&rt).await.unwrap();
    rt.kernel().register::<Prober>().unwrap();
    rt
}

#[tokio::test]
async fn a_tenant_caller_reaches_only_its_own_partition_whatever_target_it_names() {
    let rt = demo().await;
    let acme = rt.bus_for(&p("acme"));
    let q = json!({"sql": "x"});
    assert!(
        acme.invoke("tenant-db.query", &q, Invoke::default())
            .await
            .is_ok(),
        "its own, no target needed"
    );
    assert!(
        acme.invoke("tenant-db.query", &q, Invoke::target(&p("acme")))
            .await
            .is_ok()
    );
    for (handler, opts) in [
        ("tenant-db.query", Invoke::target(&p("globex"))),
        ("tenant-db-globex.query", Invoke::default()),
        ("config.get", Invoke::default()),
    ] {
        let err = acme
            .invoke(handler, json!({"sql": "x", "key": "a"}), opts)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::RouteNotFound(h) if h == handler),
            "{err}"
        );
        assert!(
            !err.to_string().contains("globex") || handler.contains("globex"),
            "no other tenant's names leak"
        );
    }
}

#[tokio::test]
async fn instance_calls_are_confined_unless_the_instance_holds_the_admin_grant() {
    let rt = demo().await;
    let k = rt.kernel();
    k.hot_add("prober", "prober-acme", json!({"target": "acme"}))
        .await
        .unwrap();
    k.hot_add_with(
        "prober",
        "prober-admin",
        json!({"target": "ops"}),
        Grant::Admin,
    )
    .await
    .unwrap();
    let mut events = rt.subscribe();
    let bus = rt.bus();
    let denied = bus
        .invoke(
            "prober-acme.peek",
            json!({"target": "globex"}),
            Invoke::default(),
        )
        .await
        .unwrap_err();
    assert!(
        denied.to_string().contains("no handler tenant-db.status"),
        "{denied}"
    );
    let allowed = bus
        .invoke(
            "prober-admin.peek",
            json!({"target": "globex"}),
            Invoke::default(),
        )
        .await
        .unwrap();
    assert_eq!(allowed["queries"], json!(0));
    assert_eq!(allowed["connected_to"], json!("postgres://db2.prod/globex"));
    let mut audited = false;
    while let Some(Ok(e)) = events.try_recv() {
        if let EventKind::Audit { action, target } = &e.kind {
            assert_eq!(e.key.encoded(), "prober-admin");
            assert_eq!(target, &p("globex"));
            assert!(action.contains("tenant-db.status"));
            audited = true;
        }
    }
    assert!(audited, "cross-partition admin access is audited");
}

#[tokio::test]
async fn the_config_view_shows_shared_keys_and_the_own_tenant_only_and_writes_need_the_grant() {
    let rt = demo().await;
    let k = rt.kernel();
    k.hot_add("prober", "prober-acme", json!({"target": "acme"}))
        .await
        .unwrap();
    let v = rt
        .bus()
        .invoke("prober-acme.my_db_url", json!(null), Invoke::default())
        .await
        .unwrap();
    assert_eq!(v["mine"], json!("postgres://db1.prod/acme"));
    assert_eq!(v["globex"], Value::Null);
    assert_eq!(
        v["all"],
        json!({"acme": {"db_url": "postgres://db1.prod/acme"}})
    );
    assert_eq!(v["write"], json!(false));
    assert_eq!(
        k.config().get("tenants.acme.db_url").unwrap(),
        Some(json!("postgres://db1.prod/acme")),
        "the write was refused"
    );
}

#[tokio::test]
async fn credentials_are_scoped_to_the_instance() {
    let rt = demo().await;
    let k = rt.kernel();
    k.hot_add("prober", "prober-acme", json!({"target": "acme"}))
        .await
        .unwrap();
    k.hot_add("prober", "prober-acme-2", json!({"target": "acme"}))
        .await
        .unwrap();
    rt.bus()
        .invoke(
            "credentials.set",
            json!({"partition": "acme", "instance": "prober-acme", "name": "api_token", "value": "s3cret"}),
            Invoke::default(),
        )
        .await
        .unwrap();
    let bus = rt.bus();
    assert_eq!(
        bus.invoke("prober-acme.secret", json!({}), Invoke::default())
            .await
            .unwrap(),
        json!("s3cret")
    );
    assert_eq!(
        bus.invoke("prober-acme-2.secret", json!({}), Invoke::default())
            .await
            .unwrap(),
        Value::Null
    );
    assert_eq!(format!("{:?}", Secret::new("s3cret")), "Secret(***)");
    // Setting a secret for an instance in the wrong partition is refused.
    assert!(
        bus.invoke(
            "credentials.set",
            json!({"partition": "globex", "instance": "prober-acme", "name": "x", "value": "y"}),
            Invoke::default(),
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn keyed_routes_activate_instances_through_their_manager() {
    let rt = Runtime::in_memory();
    let counters = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let bus = rt.bus_for(&p("alpha"));
    let key = Key::new("visits").unwrap();
    assert!(counters.lookup(&key, &p("alpha")).unwrap().is_none());
    let v = bus
        .invoke(
            "counters.increment",
            json!({"by": 2}),
            Invoke::default().key(key.clone()),
        )
        .await
        .unwrap();
    assert_eq!(v, json!(2));
    assert!(
        counters.lookup(&key, &p("alpha")).unwrap().is_some(),
        "activated on demand"
    );
    assert!(counters.lookup(&key, &p("beta")).unwrap().is_none());
    // Without a key the manager route does not apply.
    assert!(matches!(
        bus.invoke("counters.increment", json!({"by": 1}), Invoke::default())
            .await,
        Err(Error::RouteNotFound(_))
    ));
    let handlers = bus.handlers();
    assert!(
        handlers
            .iter()
            .any(|h| h.route == "counters.increment" && h.kind == RouteKind::Keyed)
    );
}

struct Remote {
    calls: Arc<AtomicUsize>,
}

impl Transport for Remote {
    fn name(&self) -> &str {
        "test-remote"
    }
    fn invoke<'a>(&'a self, call: &'a RemoteCall) -> BoxFuture<'a, Option<Result<Value, Error>>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if call.handler.starts_with("remote-svc.") {
                Some(Ok(
                    json!({"served_by": "remote", "target": call.target.as_ref().map(|t| t.to_string())}),
                ))
            } else {
                None
            }
        })
    }
}

#[tokio::test]
async fn unresolved_calls_fall_through_to_transports_in_order_then_not_found() {
    let rt = demo().await;
    let calls = Arc::new(AtomicUsize::new(0));
    rt.add_transport(Remote {
        calls: calls.clone(),
    });
    let acme = rt.bus_for(&p("acme"));
    let v = acme
        .invoke("remote-svc.ping", json!({}), Invoke::default())
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"served_by": "remote", "target": "acme"}),
        "the transport sees the confined target"
    );
    // Local routes win: the transport is not asked.
    let before = calls.load(Ordering::SeqCst);
    acme.invoke("tenant-db.query", json!({"sql": "x"}), Invoke::default())
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), before);
    assert!(matches!(
        acme.invoke("nobody.home", json!({}), Invoke::default())
            .await,
        Err(Error::RouteNotFound(_))
    ));
    // A typed call from host code decodes the transport's JSON reply.
    #[derive(serde::Deserialize)]
    struct Served {
        served_by: String,
        target: Option<String>,
    }
    let served: Served = rt
        .bus()
        .invoke_as("remote-svc.ping", json!({}), Invoke::target(&p("globex")))
        .await
        .unwrap();
    assert_eq!(
        (served.served_by.as_str(), served.target.as_deref()),
        ("remote", Some("globex"))
    );
}

#[tokio::test]
async fn introspection_shows_a_partition_only_its_own_routes() {
    let rt = demo().await;
    let routes: Vec<String> = rt
        .bus_for(&p("globex"))
        .handlers()
        .into_iter()
        .map(|h| h.route)
        .collect();
    assert!(routes.contains(&"tenant-db-globex.query".to_string()));
    assert!(routes.contains(&"tenant-db.query".to_string()));
    assert!(routes.contains(&"mysql-db.query".to_string()));
    assert!(
        !routes
            .iter()
            .any(|r| r.contains("acme") || r.contains("initech")),
        "{routes:?}"
    );
    assert!(
        !routes.iter().any(|r| r.starts_with("config.")),
        "shared providers are not tenant routes"
    );
    let all: Vec<String> = rt.bus().handlers().into_iter().map(|h| h.route).collect();
    assert!(
        all.contains(&"tenant-db-acme.query".to_string())
            && all.contains(&"config.set".to_string())
    );
}

#[tokio::test]
async fn shared_providers_act_only_within_what_their_caller_may_reach() {
    let rt = demo().await;
    let k = rt.kernel();
    k.hot_add("prober", "prober-acme", json!({"target": "acme"}))
        .await
        .unwrap();
    k.hot_add_with(
        "prober",
        "prober-admin",
        json!({"target": "ops"}),
        Grant::Admin,
    )
    .await
    .unwrap();
    let v = rt
        .bus()
        .invoke("prober-acme.abuse", json!({}), Invoke::default())
        .await
        .unwrap();
    assert_eq!(
        v["creds"],
        json!(false),
        "a tenant cannot write another tenant's secrets"
    );
    assert_eq!(v["names"], json!(false), "nor list them");
    assert_eq!(
        v["read"],
        Value::Null,
        "nor read another tenant's config through the provider"
    );
    assert_eq!(
        v["own"],
        json!("postgres://db1.prod/acme"),
        "its own config reads fine"
    );
    assert_eq!(v["write"], json!(false), "nor write config");
    assert_eq!(
        v["borrowed"],
        json!(false),
        "nor mint a copy of an admin-granted component"
    );
    assert_eq!(
        k.config().get("tenants.globex.db_url").unwrap(),
        Some(json!("postgres://db2.prod/globex"))
    );
}

#[tokio::test]
async fn an_instance_named_like_its_factory_does_not_capture_other_targets() {
    let rt = demo().await;
    rt.kernel()
        .hot_add("tenant-db", "tenant-db", json!({"target": "acme"}))
        .await
        .unwrap();
    let globex = tenantry::Partition::new("globex").unwrap();
    let v = rt
        .bus()
        .invoke(
            "tenant-db.query",
            json!({"sql": "x"}),
            Invoke::target(&globex),
        )
        .await
        .unwrap();
    assert_eq!(v["tenant"], json!("globex"));
    let v = rt
        .bus_for(&globex)
        .invoke("tenant-db.query", json!({"sql": "x"}), Invoke::default())
        .await
        .unwrap();
    assert_eq!(v["instance"], json!("tenant-db-globex"));
}
