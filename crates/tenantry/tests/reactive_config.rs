//! Reactive config per dotted key, tenant-scoped reactive views, the live migration
//! scenario, instance effects, and services re-wired under computed values.

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tenantry::component::{Component, NoParams, Runnables};
use tenantry::config::ConfigStore;
use tenantry::reactive::{Computed, batch};
use tenantry::telemetry::EventKind;
use tenantry::{Context, HandlerError, Invoke, Partition, Runtime};
use tenantry_demo::Status;

fn reader(store: &Arc<ConfigStore>, key: &'static str) -> Computed<Option<Value>> {
    let store = store.clone();
    Computed::new(move || store.get(key).ok().flatten())
}

#[test]
fn a_key_reader_wakes_for_its_key_its_ancestors_and_descendants_only() {
    let store = Arc::new(ConfigStore::new());
    store.set_defaults(json!({"a": {"b": {"c": 1}, "x": 1}, "z": 0}));
    let ab = reader(&store, "a.b");
    assert_eq!(ab.get(), Some(json!({"c": 1})));
    let runs = |c: &Computed<Option<Value>>| {
        c.get();
        c.runs()
    };
    assert_eq!(runs(&ab), 1);
    store.set("a.x", json!(2)).unwrap();
    store.set("z", json!(5)).unwrap();
    store.set("a.bb", json!(1)).unwrap();
    assert_eq!(runs(&ab), 1, "siblings and unrelated keys wake nobody");
    store.set("a.b.c", json!(2)).unwrap();
    assert_eq!(runs(&ab), 2, "a child write wakes the parent reader");
    assert_eq!(ab.get(), Some(json!({"c": 2})));
    store.set("a", json!({"b": {"c": 3}})).unwrap();
    assert_eq!(runs(&ab), 3, "a parent that replaces it wakes it");
    store.set("a", json!({"b": {"c": 3}, "x": 9})).unwrap();
    assert_eq!(runs(&ab), 3, "a parent write that leaves it equal does not");
    store.set("a.b", json!({"c": 3})).unwrap();
    assert_eq!(runs(&ab), 3, "an equal write wakes nobody");
    assert_eq!(store.readers("a.b"), 1);
}

/// Keys that nest, and neighbours that sort between a key and its children
/// (`a.b-x`, `a.bc`).
const KEYS: [&str; 7] = ["a", "a.b", "a.b.c", "a.b-x", "a.bc", "a.d", "e"];

/// What a write does, as the obvious slow code would do it: objects in the way are
/// created or replace what is there.
fn assign_naively(tree: &mut Value, key: &str, value: Value) {
    let mut node = tree;
    for part in key.split('.') {
        if !node.is_object() {
            *node = json!({});
        }
        node = node
            .as_object_mut()
            .expect("an object")
            .entry(part.to_owned())
            .or_insert(Value::Null);
    }
    *node = value;
}

fn read_naively(tree: &Value, key: &str) -> Option<Value> {
    key.split('.')
        .try_fold(tree, |v, part| v.get(part))
        .cloned()
}

proptest::proptest! {
    /// Any sequence of writes reads like one plain tree written in order; every reader
    /// recomputes exactly when its key's value changed; and rebuilding the merged view
    /// from its layers (an equal defaults layer) changes nothing and wakes nobody.
    #[test]
    fn any_writes_read_like_a_plain_tree_and_wake_exactly_the_changed_readers(
        writes in proptest::collection::vec(
            (
                0..KEYS.len(),
                proptest::prop_oneof![
                    proptest::strategy::Just(json!(1)),
                    proptest::strategy::Just(json!(2)),
                    proptest::strategy::Just(json!("s")),
                    proptest::strategy::Just(Value::Null),
                    proptest::strategy::Just(json!({"b": {"c": 7}})),
                    proptest::strategy::Just(json!({"d": 1, "bc": 2})),
                ],
            ),
            0..24,
        )
    ) {
        let defaults = json!({"a": {"b": {"c": 0}, "d": 0}, "e": 0});
        let store = Arc::new(ConfigStore::new());
        store.set_defaults(defaults.clone());
        let mut model = defaults.clone();
        let readers: Vec<_> = KEYS.iter().map(|k| reader(&store, k)).collect();
        let mut runs: Vec<u64> = readers.iter().map(|r| { r.get(); r.runs() }).collect();
        for (i, value) in writes {
            let before: Vec<_> = KEYS.iter().map(|k| read_naively(&model, k)).collect();
            assign_naively(&mut model, KEYS[i], value.clone());
            store.set(KEYS[i], value).unwrap();
            for (j, key) in KEYS.iter().enumerate() {
                let now = read_naively(&model, key);
                proptest::prop_assert_eq!(store.get(key).unwrap(), now.clone(), "{}", key);
                proptest::prop_assert_eq!(readers[j].get(), now.clone(), "{}", key);
                let expected = runs[j] + u64::from(before[j] != now);
                proptest::prop_assert_eq!(readers[j].runs(), expected, "recomputations of {}", key);
                runs[j] = expected;
            }
        }
        store.set_defaults(defaults);
        proptest::prop_assert_eq!(store.snapshot(), model);
        for (j, r) in readers.iter().enumerate() {
            r.get();
            proptest::prop_assert_eq!(r.runs(), runs[j], "{} woke on an equal rebuild", KEYS[j]);
        }
    }
}

#[test]
fn layered_sources_and_file_reloads_wake_exactly_the_changed_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(
        &file,
        r#"{"tenants": {"acme": {"db_url": "file-acme"}, "globex": {"db_url": "file-globex"}}}"#,
    )
    .unwrap();
    let store = Arc::new(ConfigStore::new());
    store.set_defaults(json!({"tenants": {"acme": {"db_url": "default-acme"}}}));
    let acme = reader(&store, "tenants.acme.db_url");
    let globex = reader(&store, "tenants.globex.db_url");
    assert_eq!(acme.get(), Some(json!("default-acme")));
    store.load_file(&file).unwrap();
    assert_eq!(acme.get(), Some(json!("file-acme")));
    assert_eq!(globex.get(), Some(json!("file-globex")));
    let (a_runs, g_runs) = (acme.runs(), globex.runs());
    std::fs::write(
        &file,
        r#"{"tenants": {"acme": {"db_url": "file-acme"}, "globex": {"db_url": "moved"}}}"#,
    )
    .unwrap();
    store.reload_file().unwrap();
    assert_eq!(globex.get(), Some(json!("moved")));
    assert_eq!(globex.runs(), g_runs + 1);
    acme.get();
    assert_eq!(
        acme.runs(),
        a_runs,
        "acme's value did not change in the reload"
    );
    store.load_env(
        "APP_",
        [(
            "APP_TENANTS__acme__DB_URL".to_string(),
            "env-acme".to_string(),
        )],
    );
    assert_eq!(
        acme.get(),
        Some(json!("env-acme")),
        "env overrides the file"
    );
    store.set("tenants.acme.db_url", json!("written")).unwrap();
    assert_eq!(
        acme.get(),
        Some(json!("written")),
        "writes override everything"
    );
    std::fs::write(&file, "not json").unwrap();
    assert!(
        store.reload_file().is_err(),
        "a broken file is an error and changes nothing"
    );
    assert_eq!(acme.get(), Some(json!("written")));
}

/// Partitions are case-sensitive, so the environment keeps a tenant name's case: `ACME`
/// and `acme` are two tenants, each configurable from the environment.
#[test]
fn environment_keys_keep_the_case_of_tenant_names() {
    let store = ConfigStore::new();
    store.load_env(
        "APP_",
        [
            ("APP_TENANTS__ACME__DB_URL".to_string(), "upper".to_string()),
            ("APP_TENANTS__acme__DB_URL".to_string(), "lower".to_string()),
            ("APP_SHARED__Region".to_string(), "eu".to_string()),
            (
                "OTHER_TENANTS__acme__DB_URL".to_string(),
                "ignored".to_string(),
            ),
        ],
    );
    assert_eq!(
        store.get("tenants.ACME.db_url").unwrap(),
        Some(json!("upper"))
    );
    assert_eq!(
        store.get("tenants.acme.db_url").unwrap(),
        Some(json!("lower"))
    );
    assert_eq!(store.get("shared.region").unwrap(), Some(json!("eu")));
    assert_eq!(
        store
            .get("tenants")
            .unwrap()
            .unwrap()
            .as_object()
            .unwrap()
            .len(),
        2,
        "nothing but the two tenants: {:?}",
        store.get("tenants")
    );
}

fn status(v: Value) -> Status {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn live_migration_recomputes_only_the_migrated_tenant_and_reconnects_once() {
    let rt = Runtime::in_memory();
    tenantry_demo::install(&rt).await.unwrap();
    let bus = rt.bus();
    let q = json!({"sql": "select 1"});
    let p = |t: &str| Partition::new(t).unwrap();
    for t in tenantry_demo::TENANTS {
        bus.invoke("tenant-db.query", &q, Invoke::target(&p(t)))
            .await
            .unwrap();
    }
    let before: Vec<Status> = futures::future::join_all(tenantry_demo::TENANTS.iter().map(|t| {
        let bus = bus.clone();
        async move {
            status(
                bus.invoke(
                    &format!("tenant-db-{t}.status"),
                    json!({}),
                    Invoke::default(),
                )
                .await
                .unwrap(),
            )
        }
    }))
    .await;

    rt.kernel()
        .config()
        .set(
            "tenants.globex.db_url",
            json!("postgres://db-new.prod/globex-migrated"),
        )
        .unwrap();

    let globex = bus
        .invoke("tenant-db.query", &q, Invoke::target(&p("globex")))
        .await
        .unwrap();
    assert_eq!(
        globex["db_url"],
        json!("postgres://db-new.prod/globex-migrated")
    );
    for (i, t) in tenantry_demo::TENANTS.iter().enumerate() {
        let r = bus
            .invoke("tenant-db.query", &q, Invoke::target(&p(t)))
            .await
            .unwrap();
        let s = status(
            bus.invoke(
                &format!("tenant-db-{t}.status"),
                json!({}),
                Invoke::default(),
            )
            .await
            .unwrap(),
        );
        if *t == "globex" {
            assert_eq!(
                s.db_url_computations,
                before[i].db_url_computations + 1,
                "globex recomputed once"
            );
            assert_eq!(
                s.reconnects,
                before[i].reconnects + 1,
                "globex's effect reconnected exactly once"
            );
            assert_eq!(s.connected_to, "postgres://db-new.prod/globex-migrated");
        } else {
            assert_eq!(
                s.db_url_computations, before[i].db_url_computations,
                "{t} did not recompute"
            );
            assert_eq!(s.reconnects, 0, "{t} did not reconnect");
            assert_eq!(
                r["db_url"],
                json!(format!("postgres://db{}.prod/{t}", i + 1)),
                "{t} did not change"
            );
        }
    }
    // The provider's runnable and a batch of writes work the same way.
    batch(|| {
        rt.kernel()
            .config()
            .set("tenants.acme.db_url", json!("tmp"))
            .unwrap();
        rt.kernel()
            .config()
            .set("tenants.acme.db_url", json!("postgres://db9.prod/acme"))
            .unwrap();
    });
    let acme = status(
        bus.invoke("tenant-db-acme.status", json!({}), Invoke::default())
            .await
            .unwrap(),
    );
    assert_eq!(acme.reconnects, 1, "two writes in one batch, one reconnect");
    bus.invoke(
        "config.set",
        json!({"key": "tenants.initech.db_url", "value": "postgres://x/initech"}),
        Invoke::default(),
    )
    .await
    .unwrap();
    let initech = bus
        .invoke("tenant-db.query", q, Invoke::target(&p("initech")))
        .await
        .unwrap();
    assert_eq!(initech["db_url"], json!("postgres://x/initech"));
}

/// Reacts to its tenant's `feature` flag and to re-wiring of the `IDb` service.
struct Watcher {
    seen: Vec<String>,
    provider: Computed<Option<String>>,
    fail_on: Option<String>,
}

static PROVIDER_RUNS: AtomicU64 = AtomicU64::new(0);

impl Component for Watcher {
    const FACTORY: &'static str = "watcher";
    fn create(ctx: &Context) -> Result<Self, HandlerError> {
        let service = ctx.service("IDb");
        Ok(Self {
            seen: Vec::new(),
            provider: ctx.computed(move || {
                PROVIDER_RUNS.fetch_add(1, Ordering::SeqCst);
                service.provider()
            }),
            fail_on: None,
        })
    }
    async fn activate(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        let config = ctx.config().map_err(|e| HandlerError::new(e.to_string()))?;
        let key = config.tenant_key("feature");
        ctx.effect(move |w: &mut Watcher, _| {
            let value = config.get_str(&key).ok().flatten().unwrap_or_default();
            if w.fail_on.as_deref() == Some(value.as_str()) {
                return Err(format!("cannot apply {value}").into());
            }
            w.seen.push(value);
            Ok(())
        });
        Ok(())
    }
    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable(
            "seen",
            "Feature values seen by the effect.",
            |w, _, _: NoParams| Ok(w.seen.clone()),
        );
        r.runnable(
            "provider",
            "The current IDb provider.",
            |w, _, _: NoParams| Ok(w.provider.get()),
        );
        r.runnable(
            "fail_on",
            "Makes the effect fail on a value.",
            |w, _, v: Value| {
                w.fail_on = v.as_str().map(str::to_owned);
                Ok(())
            },
        );
    }
}

struct Db;
impl Component for Db {
    const FACTORY: &'static str = "db";
    fn provides() -> &'static [&'static str] {
        &["IDb"]
    }
    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self)
    }
    fn runnables(_: &mut Runnables<'_, Self>) {}
}

#[tokio::test]
async fn instance_effects_run_in_turn_report_errors_and_are_disposed_with_the_instance() {
    let rt = Runtime::in_memory();
    let k = rt.kernel();
    k.register::<Watcher>().unwrap();
    k.register::<Db>().unwrap();
    k.config().set("tenants.acme.feature", json!("v1")).unwrap();
    k.hot_add("watcher", "watcher-acme", json!({"target": "acme"}))
        .await
        .unwrap();
    let bus = rt.bus();
    let seen = || bus.invoke("watcher-acme.seen", json!({}), Invoke::default());
    assert_eq!(
        seen().await.unwrap(),
        json!(["v1"]),
        "first run in its first turn"
    );
    k.config().set("tenants.acme.feature", json!("v2")).unwrap();
    k.config()
        .set("tenants.globex.feature", json!("other"))
        .unwrap();
    assert_eq!(
        seen().await.unwrap(),
        json!(["v1", "v2"]),
        "woken by its tenant's key only"
    );

    let mut events = rt.subscribe();
    bus.invoke("watcher-acme.fail_on", json!("v3"), Invoke::default())
        .await
        .unwrap();
    k.config().set("tenants.acme.feature", json!("v3")).unwrap();
    assert_eq!(seen().await.unwrap(), json!(["v1", "v2"]));
    let mut failed = false;
    while let Some(Ok(e)) = events.try_recv() {
        if let EventKind::EffectFailed { error } = &e.kind {
            assert!(error.contains("cannot apply v3"));
            assert_eq!(e.partition.name(), Some("acme"));
            failed = true;
        }
    }
    assert!(failed, "effect errors are events");

    assert_eq!(k.config().readers("tenants.acme.feature"), 1);
    k.hot_remove("watcher-acme").await.unwrap();
    assert_eq!(
        k.config().readers("tenants.acme.feature"),
        0,
        "disposed with the instance"
    );
}

#[tokio::test]
async fn a_service_rewired_by_hot_add_remove_or_ranking_reruns_what_depends_on_it() {
    let rt = Runtime::in_memory();
    let k = rt.kernel();
    k.register::<Watcher>().unwrap();
    k.register::<Db>().unwrap();
    k.hot_add("watcher", "watcher-x", json!({})).await.unwrap();
    let bus = rt.bus();
    let provider = || bus.invoke("watcher-x.provider", json!({}), Invoke::default());
    assert_eq!(provider().await.unwrap(), Value::Null);
    k.hot_add("db", "db-1", json!({})).await.unwrap();
    assert_eq!(provider().await.unwrap(), json!("db-1"));
    k.hot_add("db", "db-2", json!({"service.ranking": 5}))
        .await
        .unwrap();
    assert_eq!(provider().await.unwrap(), json!("db-2"));
    k.set_ranking("db-1", 9).unwrap();
    assert_eq!(provider().await.unwrap(), json!("db-1"));
    k.hot_remove("db-1").await.unwrap();
    assert_eq!(provider().await.unwrap(), json!("db-2"));
    let runs = PROVIDER_RUNS.load(Ordering::SeqCst);
    provider().await.unwrap();
    assert_eq!(
        PROVIDER_RUNS.load(Ordering::SeqCst),
        runs,
        "cached while nothing changed"
    );
}

/// Reads the key it is given through each of its config view's readers.
struct KeyReader;
impl Component for KeyReader {
    const FACTORY: &'static str = "key-reader";
    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self)
    }
    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable(
            "read",
            "The key through get, get_str and get_shared_str.",
            |_, ctx, key: String| {
                let config = ctx.config().map_err(|e| HandlerError::new(e.to_string()))?;
                let fail = |e: tenantry::config::ConfigError| HandlerError::new(e.to_string());
                Ok(json!({
                    "value": config.get(&key).map_err(fail)?,
                    "str": config.get_str(&key).map_err(fail)?,
                    "shared": config.get_shared_str(&key).map_err(fail)?.as_deref(),
                }))
            },
        );
    }
}

#[tokio::test]
async fn a_shared_string_read_sees_what_get_sees_and_nothing_of_other_tenants() {
    let rt = Runtime::in_memory();
    let k = rt.kernel();
    k.register::<KeyReader>().unwrap();
    let config = k.config();
    config
        .set("tenants.acme.db_url", json!("pg://acme"))
        .unwrap();
    config.set("tenants.acme.pool", json!({"size": 4})).unwrap();
    config
        .set("tenants.globex.db_url", json!("pg://globex"))
        .unwrap();
    config.set("region", json!("eu")).unwrap();
    k.hot_add("key-reader", "reader-acme", json!({"target": "acme"}))
        .await
        .unwrap();
    let bus = rt.bus();
    let read = |key: &'static str| bus.invoke("reader-acme.read", json!(key), Invoke::default());
    let string = |s: &str| json!({"value": s, "str": s, "shared": s});
    let absent = json!({"value": null, "str": null, "shared": null});
    assert_eq!(
        read("tenants.acme.db_url").await.unwrap(),
        string("pg://acme")
    );
    assert_eq!(read("region").await.unwrap(), string("eu"), "shared keys");
    assert_eq!(
        read("tenants.acme.pool").await.unwrap(),
        json!({"value": {"size": 4}, "str": null, "shared": null}),
        "an object is not a string"
    );
    for other in [
        "tenants.globex.db_url",
        "tenants.globex",
        "tenants.nobody.x",
    ] {
        assert_eq!(
            read(other).await.unwrap(),
            absent,
            "{other} is not in acme's view"
        );
    }
    assert_eq!(
        read("tenants").await.unwrap(),
        json!({
            "value": {"acme": {"db_url": "pg://acme", "pool": {"size": 4}}},
            "str": null,
            "shared": null,
        }),
        "`tenants` holds acme's own entry only, and is no string"
    );
    assert!(
        read("tenants..x").await.is_err(),
        "an invalid key is an error, not an absent value"
    );
}
