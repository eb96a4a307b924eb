//! The kernel: registration, instantiate, boot order and failures, hot add/remove,
//! services and ranking, event subscriptions, runnable params.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tenantry::component::{BusEvent, Component, NoParams, Runnables};
use tenantry::kernel::{Grant, InstanceStatus};
use tenantry::schemars::JsonSchema;
use tenantry::{
    CallError, Context, Dependency, Error, HandlerError, Invoke, JsonParams, Partition, Runtime,
};

fn p(name: &str) -> Partition {
    Partition::new(name).unwrap()
}

/// Records activations and deactivations in order.
static JOURNAL: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn journal(entry: String) {
    JOURNAL.lock().unwrap().push(entry);
}

macro_rules! simple_component {
    ($ty:ident, $name:literal, provides: $prov:expr, requires: $req:expr, depends: $dep:expr) => {
        struct $ty {
            fail: bool,
        }
        impl Component for $ty {
            const FACTORY: &'static str = $name;
            fn provides() -> &'static [&'static str] {
                $prov
            }
            fn requires() -> &'static [&'static str] {
                $req
            }
            fn depends() -> &'static [&'static str] {
                $dep
            }
            fn create(ctx: &Context) -> Result<Self, HandlerError> {
                Ok(Self {
                    fail: ctx.properties().get("fail").is_some_and(|v| v == true),
                })
            }
            fn runnables(r: &mut Runnables<'_, Self>) {
                r.runnable("whoami", "Names the instance.", |_, ctx, _: NoParams| {
                    Ok(ctx.key().to_string())
                });
            }
            async fn activate(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
                if self.fail {
                    return Err("activation refused".into());
                }
                journal(format!("up {}", ctx.key()));
                Ok(())
            }
            async fn deactivate(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
                journal(format!("down {}", ctx.key()));
                Ok(())
            }
        }
    };
}

simple_component!(Db, "db", provides: &["IDb"], requires: &[], depends: &[]);
simple_component!(Cache, "cache", provides: &["ICache"], requires: &["IDb"], depends: &[]);
simple_component!(Api, "api", provides: &[], requires: &["ICache"], depends: &["db"]);
simple_component!(Ping, "ping", provides: &["IPong"], requires: &["IPing"], depends: &[]);
simple_component!(Pong, "pong", provides: &["IPing"], requires: &["IPong"], depends: &[]);

fn kernel_rt() -> Runtime {
    let rt = Runtime::in_memory();
    let k = rt.kernel();
    k.register::<Db>().unwrap();
    k.register::<Cache>().unwrap();
    k.register::<Api>().unwrap();
    rt
}

#[tokio::test]
async fn registration_and_instantiation_errors_are_typed() {
    let rt = kernel_rt();
    let k = rt.kernel();
    assert!(matches!(
        k.register::<Db>(),
        Err(Error::DuplicateFactory(_))
    ));
    assert!(matches!(
        k.instantiate("nope", "x", json!({})),
        Err(Error::UnknownFactory(_))
    ));
    k.instantiate("db", "db-1", json!({})).unwrap();
    assert!(matches!(
        k.instantiate("db", "db-1", json!({})),
        Err(Error::NameTaken(_))
    ));
    assert!(
        matches!(
            k.instantiate("db", "cache", json!({})),
            Err(Error::NameTaken(_))
        ),
        "a factory's name"
    );
    assert!(matches!(
        k.instantiate("db", "bad.name", json!({})),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        k.instantiate("db", "db-2", json!({"target": "a/b"})),
        Err(Error::InvalidPartition(_))
    ));
    assert!(matches!(
        k.instantiate("db", "db-3", json!([1])),
        Err(Error::InvalidProperties(_))
    ));
    assert!(matches!(
        k.hot_remove("ghost").await,
        Err(Error::UnknownInstance(_))
    ));
    // Any number of instances per factory.
    k.instantiate("db", "db-2", json!({"target": "alpha"}))
        .unwrap();
    assert_eq!(
        k.instances().iter().filter(|i| i.factory == "db").count(),
        2
    );
    assert_eq!(k.instance("db-2").unwrap().partition, p("alpha"));
}

#[tokio::test]
async fn boot_follows_dependencies_and_shutdown_reverses_them() {
    let rt = kernel_rt();
    let k = rt.kernel();
    // Names unique to this test: the journal is shared by the tests of this binary.
    k.instantiate("api", "api-order", json!({"target": "alpha"}))
        .unwrap();
    k.instantiate("cache", "cache-order", json!({})).unwrap();
    k.instantiate("db", "db-order", json!({})).unwrap();
    let report = k.boot().await.unwrap();
    assert_eq!(report.activated, ["db-order", "cache-order", "api-order"]);
    assert_eq!(
        k.instance("api-order").unwrap().status,
        InstanceStatus::Active
    );
    assert!(k.shutdown().await.is_empty());
    let j: Vec<String> = JOURNAL
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.ends_with("-order"))
        .cloned()
        .collect();
    assert_eq!(
        j,
        [
            "up db-order",
            "up cache-order",
            "up api-order",
            "down api-order",
            "down cache-order",
            "down db-order"
        ]
    );
    assert!(
        k.instances()
            .iter()
            .all(|i| i.status == InstanceStatus::Registered)
    );
}

#[tokio::test]
async fn boot_refuses_cycles_naming_them() {
    let rt = Runtime::in_memory();
    let k = rt.kernel();
    k.register::<Ping>().unwrap();
    k.register::<Pong>().unwrap();
    k.instantiate("ping", "ping-1", json!({})).unwrap();
    k.instantiate("pong", "pong-1", json!({})).unwrap();
    match k.boot().await {
        Err(Error::DependencyCycle(cycle)) => {
            assert!(
                cycle.contains(&"ping-1".to_string()) && cycle.contains(&"pong-1".to_string()),
                "{cycle:?}"
            );
        }
        other => panic!("expected a cycle, got {other:?}"),
    }
    assert!(
        k.instances()
            .iter()
            .all(|i| i.status == InstanceStatus::Registered),
        "nothing started"
    );
}

#[tokio::test]
async fn a_failed_activation_blocks_what_needs_it_and_boot_can_retry() {
    let rt = kernel_rt();
    let k = rt.kernel();
    k.instantiate("db", "db-shared", json!({"fail": true}))
        .unwrap();
    k.instantiate("cache", "cache-shared", json!({})).unwrap();
    k.instantiate("api", "api-a", json!({"target": "alpha"}))
        .unwrap();
    k.instantiate("db", "db-beta", json!({"target": "beta"}))
        .unwrap();
    let report = k.boot().await.unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, "db-shared");
    assert!(report.failed[0].1.contains("activation refused"));
    let blocked: Vec<&str> = report.blocked.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        blocked.contains(&"cache-shared") && blocked.contains(&"api-a"),
        "{report:?}"
    );
    let waits_for = |name: &str| {
        report
            .blocked
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, deps)| deps.clone())
    };
    assert_eq!(
        waits_for("cache-shared"),
        Some(vec![Dependency::Instance("db-shared".into())]),
        "a blocked instance names the instance it waits for"
    );
    assert_eq!(report.activated, ["db-beta"], "the rest runs");
    // Nothing half-started: the failed instance is not reachable.
    assert!(matches!(
        rt.bus()
            .invoke("db-shared.whoami", json!({}), Invoke::default())
            .await,
        Err(Error::RouteNotFound(_))
    ));
    // Fix it and boot again.
    k.hot_remove("db-shared").await.unwrap();
    k.instantiate("db", "db-shared", json!({})).unwrap();
    let report = k.boot().await.unwrap();
    assert_eq!(report.activated, ["db-shared", "cache-shared", "api-a"]);
}

#[tokio::test]
async fn hot_add_needs_active_prerequisites_and_hot_remove_keeps_the_factory() {
    let rt = kernel_rt();
    let k = rt.kernel();
    let err = k.hot_add("cache", "cache-1", json!({})).await.unwrap_err();
    assert!(
        matches!(&err, Error::DependenciesNotActive { instance, missing }
            if instance == "cache-1" && missing == &[Dependency::Service("IDb".into())]),
        "the missing dependency is typed: {err}"
    );
    assert!(
        k.instance("cache-1").is_none(),
        "nothing remains of a refused hot_add"
    );
    k.hot_add("db", "db-1", json!({})).await.unwrap();
    k.hot_add("cache", "cache-1", json!({})).await.unwrap();
    k.hot_remove("cache-1").await.unwrap();
    k.hot_remove("db-1").await.unwrap();
    assert!(k.factories().iter().any(|f| f.name == "db"));
    k.hot_add("db", "db-1", json!({})).await.unwrap();
}

#[tokio::test]
async fn services_rank_and_rewire_consumers() {
    let rt = kernel_rt();
    let k = rt.kernel();
    k.hot_add("db", "db-low", json!({"service.ranking": 1}))
        .await
        .unwrap();
    k.hot_add("db", "db-high", json!({"service.ranking": 10}))
        .await
        .unwrap();
    k.hot_add(
        "db",
        "db-alpha",
        json!({"target": "alpha", "service.ranking": 100}),
    )
    .await
    .unwrap();
    let shared = Partition::unpartitioned();
    assert_eq!(k.require("IDb", &shared).as_deref(), Some("db-high"));
    assert_eq!(
        k.require_all("IDb", &shared),
        ["db-high", "db-low"],
        "another tenant's provider is never visible"
    );
    assert_eq!(k.require("IDb", &p("alpha")).as_deref(), Some("db-alpha"));
    assert_eq!(k.require_all("IDb", &p("beta")), ["db-high", "db-low"]);

    let service = k.service("IDb", &shared);
    assert_eq!(
        service.call("whoami", json!({})).await.unwrap(),
        json!("db-high")
    );
    k.set_ranking("db-low", 50).unwrap();
    assert_eq!(
        service.call("whoami", json!({})).await.unwrap(),
        json!("db-low"),
        "ranking change re-wires"
    );
    k.hot_remove("db-low").await.unwrap();
    assert_eq!(
        service.call("whoami", json!({})).await.unwrap(),
        json!("db-high"),
        "removal re-wires"
    );
    k.hot_remove("db-high").await.unwrap();
    assert!(
        matches!(service.call("whoami", json!({})).await, Err(Error::ServiceGone(c)) if c == "IDb")
    );
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Resize {
    width: u32,
    #[serde(default = "default_height")]
    height: u32,
}
fn default_height() -> u32 {
    10
}

/// Nested params: a list of rectangles (which refuse unknown fields themselves) and an
/// optional frame (which says nothing about them).
#[derive(Deserialize, JsonSchema)]
struct Layout {
    rects: Vec<Resize>,
    #[serde(default)]
    frame: Option<Frame>,
}

#[derive(Deserialize, JsonSchema)]
struct Frame {
    width: u32,
    #[serde(default)]
    height: u32,
}

struct Shapes {
    events: Arc<AtomicUsize>,
}

static EVENTS: AtomicUsize = AtomicUsize::new(0);

impl Component for Shapes {
    const FACTORY: &'static str = "shapes";
    fn subscriptions() -> &'static [&'static str] {
        &["orders.*"]
    }
    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self {
            events: Arc::new(AtomicUsize::new(0)),
        })
    }
    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable("area", "Area of a rectangle.", |_, _, p: Resize| {
            Ok(p.width * p.height)
        });
        r.runnable("total", "Total area of a layout.", |_, _, p: Layout| {
            let frame = p.frame.map_or(0, |f| f.width * f.height.max(1));
            Ok(p.rects.iter().map(|r| r.width * r.height).sum::<u32>() + frame)
        });
        r.runnable("events", "Events seen.", |s, _, _: NoParams| {
            Ok(s.events.load(Ordering::SeqCst))
        });
        r.runnable_async(
            "store",
            "Writes and reads back scoped storage.",
            |_, ctx, p: Resize| {
                Box::pin(async move {
                    let storage = ctx
                        .storage()
                        .map_err(|e| HandlerError::new(e.to_string()))?;
                    storage
                        .put("w", p.width.to_string())
                        .await
                        .map_err(|e| HandlerError::new(e.to_string()))?;
                    let back = storage
                        .get("w")
                        .await
                        .map_err(|e| HandlerError::new(e.to_string()))?;
                    Ok(back.map(|b| String::from_utf8_lossy(&b).into_owned()))
                })
            },
        );
    }
    fn on_event(&mut self, event: BusEvent, _: &mut Context) -> Result<(), HandlerError> {
        assert!(event.topic.starts_with("orders."));
        self.events.fetch_add(1, Ordering::SeqCst);
        EVENTS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn runnable_params_apply_defaults_refuse_unknown_fields_and_name_bad_ones() {
    let rt = Runtime::in_memory();
    let k = rt.kernel();
    k.register::<Shapes>().unwrap();
    k.hot_add("shapes", "shapes-1", json!({})).await.unwrap();
    let bus = rt.bus();
    let call = |params| bus.invoke("shapes-1.area", params, Invoke::default());
    assert_eq!(
        call(json!({"width": 3})).await.unwrap(),
        json!(30),
        "default height"
    );
    assert_eq!(
        call(json!({"width": 3, "height": 2})).await.unwrap(),
        json!(6)
    );
    let unknown = call(json!({"width": 3, "depth": 1})).await.unwrap_err();
    assert!(
        matches!(&unknown, Error::Call(CallError::InvalidParams { message, .. }) if message.contains("depth")),
        "{unknown}"
    );
    let bad = call(json!({"width": "wide"})).await.unwrap_err();
    assert!(
        matches!(&bad, Error::Call(CallError::InvalidParams { message, .. }) if message.starts_with("width")),
        "{bad}"
    );
    let missing = call(json!({})).await.unwrap_err();
    assert!(
        matches!(&missing, Error::Call(CallError::InvalidParams { message, .. }) if message.contains("width")),
        "{missing}"
    );
    // Unknown fields are refused at any depth, naming their path.
    let total = |params| bus.invoke("shapes-1.total", params, Invoke::default());
    assert_eq!(
        total(json!({"rects": [{"width": 2, "height": 3}], "frame": {"width": 1}}))
            .await
            .unwrap(),
        json!(7)
    );
    for (params, named) in [
        (
            json!({"rects": [{"width": 2, "colour": "red"}]}),
            "rects[0].colour: unknown field `colour`",
        ),
        (
            json!({"rects": [], "frame": {"width": 1, "depth": 2}}),
            "unknown field `frame.depth`",
        ),
        (
            json!({"rects": [], "frame": {"width": 1, "depth": {"deeper": 1}}}),
            "unknown field `frame.depth`",
        ),
    ] {
        let nested = total(params).await.unwrap_err();
        assert!(
            matches!(&nested, Error::Call(CallError::InvalidParams { message, .. })
                if message.starts_with(named)),
            "{nested}"
        );
    }
    // A struct is an object: an array that serde would read field by field is refused,
    // at any depth, naming where.
    for (params, named) in [
        (
            json!([3, 2]),
            "invalid type: sequence, expected struct Resize",
        ),
        (
            json!({"rects": [[2, 3]]}),
            "rects[0]: invalid type: sequence, expected struct Resize",
        ),
        (
            json!({"rects": [], "frame": [1, 1]}),
            "frame: invalid type: sequence, expected struct Frame",
        ),
    ] {
        let call = if params.is_array() {
            call(params)
        } else {
            total(params)
        };
        let refused = call.await.unwrap_err();
        assert!(
            matches!(&refused, Error::Call(CallError::InvalidParams { message, .. })
                if message.starts_with(named)),
            "{refused}"
        );
    }
    assert!(matches!(
        bus.invoke("shapes-1.nope", json!({}), Invoke::default())
            .await,
        Err(Error::Call(CallError::UnknownHandler { .. }))
    ));
    // Introspection lists every handler with its description and schema.
    let handlers = bus.handlers();
    let area = handlers
        .iter()
        .find(|h| h.route == "shapes-1.area")
        .unwrap();
    assert_eq!(area.description, "Area of a rectangle.");
    assert_eq!(
        area.params_schema["properties"]["height"]["default"],
        json!(10)
    );
    assert!(!handlers.iter().any(|h| h.route.contains("__event")));
}

#[tokio::test]
async fn events_reach_subscribers_of_the_publishers_partition_only_and_go_with_hot_remove() {
    let rt = Runtime::in_memory();
    let k = rt.kernel();
    k.register::<Shapes>().unwrap();
    k.hot_add("shapes", "shapes-a", json!({"target": "alpha"}))
        .await
        .unwrap();
    k.hot_add("shapes", "shapes-b", json!({"target": "beta"}))
        .await
        .unwrap();
    let mut alpha_sub = rt.bus_for(&p("alpha")).subscribe("orders.**").unwrap();
    let subs_before = rt.bus().subscription_count();
    let reached = rt
        .bus_for(&p("alpha"))
        .publish("orders.created", json!({"id": 1}))
        .unwrap();
    assert_eq!(reached, 2, "shapes-a and the channel subscriber");
    assert_eq!(
        rt.bus_for(&p("alpha"))
            .publish("invoices.created", json!({}))
            .unwrap(),
        0
    );
    let event = alpha_sub.recv().await.unwrap();
    assert_eq!(event.topic, "orders.created");
    let seen = |name: &str| {
        let bus = rt.bus();
        let name = name.to_owned();
        async move {
            bus.invoke(&format!("{name}.events"), json!({}), Invoke::default())
                .await
                .unwrap()
        }
    };
    assert_eq!(seen("shapes-a").await, json!(1));
    assert_eq!(
        seen("shapes-b").await,
        json!(0),
        "beta saw nothing of alpha's event"
    );
    // A tenant may not publish or subscribe elsewhere.
    assert!(matches!(
        rt.bus_for(&p("alpha"))
            .publish_in(&p("beta"), "orders.x", json!({})),
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        rt.bus_for(&p("alpha")).subscribe_in(&p("beta"), "orders.*"),
        Err(Error::Forbidden(_))
    ));
    k.hot_remove("shapes-a").await.unwrap();
    assert_eq!(
        rt.bus().subscription_count(),
        subs_before - 1,
        "hot_remove drops its subscriptions"
    );
}

#[tokio::test]
async fn storage_and_credentials_are_scoped_per_instance() {
    let rt = Runtime::in_memory();
    let k = rt.kernel();
    k.register::<Shapes>().unwrap();
    k.hot_add("shapes", "shapes-a", json!({"target": "alpha"}))
        .await
        .unwrap();
    k.hot_add("shapes", "shapes-a2", json!({"target": "alpha"}))
        .await
        .unwrap();
    let bus = rt.bus();
    assert_eq!(
        bus.invoke("shapes-a.store", json!({"width": 7}), Invoke::default())
            .await
            .unwrap(),
        json!("7")
    );
    assert_eq!(
        bus.invoke("shapes-a2.store", json!({"width": 9}), Invoke::default())
            .await
            .unwrap(),
        json!("9")
    );
    assert_eq!(
        bus.invoke("shapes-a.store", json!({"width": 7}), Invoke::default())
            .await
            .unwrap(),
        json!("7"),
        "two instances of one factory never share storage"
    );
    let _ = Grant::None;
}

#[tokio::test]
async fn params_as_json_text_or_lent_decode_and_fail_as_their_values_do() {
    let rt = Runtime::in_memory();
    let k = rt.kernel();
    k.register::<Shapes>().unwrap();
    k.hot_add("shapes", "shapes-1", json!({})).await.unwrap();
    let bus = rt.bus();
    for (handler, params) in [
        ("shapes-1.area", json!({"width": 3})),
        ("shapes-1.area", json!({"width": 3, "height": 2})),
        ("shapes-1.area", json!({"width": 3, "depth": 1})),
        ("shapes-1.area", json!({"width": "wide"})),
        ("shapes-1.area", json!({})),
        ("shapes-1.area", json!([3, 2])),
        ("shapes-1.area", json!(null)),
        (
            "shapes-1.total",
            json!({"rects": [{"width": 2, "height": 3}], "frame": {"width": 1}}),
        ),
        (
            "shapes-1.total",
            json!({"rects": [{"width": 2, "colour": "red"}]}),
        ),
        (
            "shapes-1.total",
            json!({"rects": [], "frame": {"width": 1, "depth": {"deeper": 1}}}),
        ),
        ("shapes-1.total", json!({"rects": [[2, 3]]})),
        ("shapes-1.total", json!({"rects": [], "frame": [1, 1]})),
    ] {
        let text = params.to_string();
        let lent = bus.invoke(handler, &params, Invoke::default()).await;
        let from_value = bus.invoke(handler, params, Invoke::default()).await;
        assert_eq!(
            format!("{lent:?}"),
            format!("{from_value:?}"),
            "{handler} {text}: lent params answer as owned ones"
        );
        let from_text = bus
            .invoke_raw(handler, JsonParams::Text(&text), Invoke::default())
            .await;
        match (from_value, from_text) {
            (Ok(value), Ok(reply)) => {
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(reply.get()).unwrap(),
                    value
                )
            }
            (Err(value), Err(text_error)) => {
                assert_eq!(
                    text_error.to_string(),
                    value.to_string(),
                    "{handler} {text}"
                )
            }
            (value, text_reply) => panic!("{handler} {text}: {value:?} against {text_reply:?}"),
        }
    }
    // Text that is not JSON (or not JSON a value can hold) is malformed, not invalid.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for text in [
        r#"{"width": "#,
        r#"{"width": 3} {"width": 4}"#,
        r#"{"width": 1e400}"#,
        deep.as_str(),
        "",
    ] {
        let malformed = bus
            .invoke_raw("shapes-1.area", JsonParams::Text(text), Invoke::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&malformed, Error::Call(CallError::MalformedParams { handler, .. }) if handler == "area"),
            "{text}: {malformed}"
        );
    }
}
