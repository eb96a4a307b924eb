//! `Bus::invoke_as`: a reply of the type asked for comes as itself, any other is decoded
//! from its JSON, and routing, confinement and errors are those of `Bus::invoke`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tenantry::{
    CallError, Component, Context, Error, HandlerError, Invoke, NoParams, Partition, Runnables,
    Runtime,
};
use tenantry_demo::QueryResult;

fn p(name: &str) -> Partition {
    Partition::new(name).unwrap()
}

async fn demo() -> Runtime {
    let rt = Runtime::in_memory();
    tenantry_demo::install(&rt).await.unwrap();
    rt
}

fn params() -> serde_json::Value {
    json!({"sql": "select * from orders", "limit": 2})
}

#[tokio::test]
async fn a_typed_reply_is_the_one_the_json_reply_encodes() {
    let rt = demo().await;
    let bus = rt.bus();
    for (handler, opts) in [
        ("tenant-db-acme.query", Invoke::default()),
        ("tenant-db.query", Invoke::target(&p("globex"))),
        ("mysql-db.query", Invoke::target(&p("globex"))),
    ] {
        let typed: QueryResult = bus
            .invoke_as(handler, params(), opts.clone())
            .await
            .unwrap();
        let json = bus.invoke(handler, params(), opts).await.unwrap();
        let decoded: QueryResult = serde_json::from_value(json).unwrap();
        assert_eq!(typed.rows.len(), 2, "{handler}");
        // The query counter is not in the reply: both calls answer alike.
        assert_eq!(typed, decoded, "{handler}");
    }
}

/// Part of a query's reply, under other names: decoded from the JSON.
#[derive(Debug, Deserialize)]
struct Summary {
    tenant: String,
    #[serde(rename = "rows")]
    lines: Vec<String>,
}

#[tokio::test]
async fn a_reply_of_another_type_is_decoded_from_its_json() {
    let rt = demo().await;
    let summary: Summary = rt
        .bus()
        .invoke_as("tenant-db.query", params(), Invoke::target(&p("initech")))
        .await
        .unwrap();
    assert_eq!(summary.tenant, "initech");
    assert_eq!(summary.lines, ["pg:initech-row-1", "pg:initech-row-2"]);
}

#[tokio::test]
async fn a_reply_that_does_not_decode_is_an_error_and_the_instance_goes_on() {
    let rt = demo().await;
    let bus = rt.bus();
    let wrong = bus
        .invoke_as::<u64>("tenant-db-acme.query", params(), Invoke::default())
        .await;
    match wrong {
        Err(Error::Call(CallError::ReplyEncoding { handler, message })) => {
            assert_eq!(handler, "tenant-db-acme.query");
            assert!(message.contains("u64"), "{message}");
        }
        other => panic!("expected a decoding error, got {other:?}"),
    }
    let status = bus
        .invoke("tenant-db-acme.status", json!({}), Invoke::default())
        .await
        .unwrap();
    assert_eq!(
        status["queries"], 1,
        "the query ran; only its decoding failed"
    );
}

#[tokio::test]
async fn typed_calls_fail_as_json_calls_do() {
    let rt = demo().await;
    let bus = rt.bus();
    let unknown = bus
        .invoke_as::<QueryResult>("tenant-db-acme.nope", params(), Invoke::default())
        .await;
    assert!(
        matches!(unknown, Err(Error::Call(CallError::UnknownHandler { .. }))),
        "{unknown:?}"
    );
    let invalid = bus
        .invoke_as::<QueryResult>(
            "tenant-db-acme.query",
            json!({"sql": "select 1", "limit": 0}),
            Invoke::default(),
        )
        .await;
    assert!(
        matches!(invalid, Err(Error::Call(CallError::InvalidParams { .. }))),
        "{invalid:?}"
    );
    let nowhere = bus
        .invoke_as::<QueryResult>("tenant-db.query", params(), Invoke::target(&p("umbrella")))
        .await;
    assert!(
        matches!(nowhere, Err(Error::RouteNotFound(_))),
        "{nowhere:?}"
    );
    // A handler's own error.
    rt.kernel()
        .config()
        .set("tenants.acme.db_url", json!(""))
        .unwrap();
    let refused = bus
        .invoke_as::<QueryResult>("tenant-db-acme.query", params(), Invoke::default())
        .await;
    assert!(
        matches!(refused, Err(Error::Call(CallError::Handler(_)))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_tenants_typed_call_reaches_its_own_partition_only() {
    let rt = demo().await;
    let acme = rt.bus_for(&p("acme"));
    let own: QueryResult = acme
        .invoke_as("tenant-db.query", params(), Invoke::target(&p("acme")))
        .await
        .unwrap();
    assert_eq!(&*own.tenant, "acme");
    for (handler, opts) in [
        ("tenant-db.query", Invoke::target(&p("globex"))),
        ("tenant-db-globex.query", Invoke::default()),
    ] {
        let other = acme.invoke_as::<QueryResult>(handler, params(), opts).await;
        assert!(
            matches!(other, Err(Error::RouteNotFound(_))),
            "{handler}: {other:?}"
        );
    }
}

/// A reply with a field its JSON leaves out: only a reply that comes as itself has it.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Sealed {
    shown: u32,
    #[serde(skip)]
    kept: u32,
}

#[derive(Deserialize, JsonSchema)]
struct Relay {
    target: String,
}

/// Seals.
struct Sealer;

impl Component for Sealer {
    const FACTORY: &'static str = "sealer";

    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self)
    }

    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable("seal", "Seals.", |_, _, _: NoParams| {
            Ok(Sealed { shown: 1, kept: 7 })
        });
    }
}

/// Relays a typed call to the sealer of a target partition, from inside its own, and
/// answers the field only a reply handed over as itself keeps.
struct Relayer;

impl Component for Relayer {
    const FACTORY: &'static str = "relayer";

    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self)
    }

    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable_async("relay", "Asks a sealer, typed.", |_, ctx, p: Relay| {
            Box::pin(async move {
                let bus = ctx.bus().map_err(|e| HandlerError::new(e.to_string()))?;
                let target =
                    Partition::new(&p.target).map_err(|e| HandlerError::new(e.to_string()))?;
                let sealed: Sealed = bus
                    .invoke_as("sealer.seal", json!({}), Invoke::target(&target))
                    .await
                    .map_err(|e| HandlerError::with_code("bus", e.to_string()))?;
                Ok(sealed.kept)
            })
        });
    }
}

async fn sealers() -> Runtime {
    let rt = Runtime::in_memory();
    let k = rt.kernel();
    k.register::<Sealer>().unwrap();
    k.register::<Relayer>().unwrap();
    for t in ["acme", "globex"] {
        k.hot_add("sealer", &format!("sealer-{t}"), json!({"target": t}))
            .await
            .unwrap();
    }
    k.hot_add("relayer", "relayer-acme", json!({"target": "acme"}))
        .await
        .unwrap();
    rt
}

#[tokio::test]
async fn a_reply_of_the_type_asked_for_comes_as_itself_never_encoded() {
    let rt = sealers().await;
    let bus = rt.bus();
    let sealed: Sealed = bus
        .invoke_as("sealer-acme.seal", json!({}), Invoke::default())
        .await
        .unwrap();
    assert_eq!((sealed.shown, sealed.kept), (1, 7));
    let json = bus
        .invoke("sealer-acme.seal", json!({}), Invoke::default())
        .await
        .unwrap();
    assert_eq!(json, json!({"shown": 1}));
    // A tenant's call from outside is measured, so it goes through JSON.
    let outside: Sealed = rt
        .bus_for(&p("acme"))
        .invoke_as("sealer.seal", json!({}), Invoke::default())
        .await
        .unwrap();
    assert_eq!((outside.shown, outside.kept), (1, 0));
}

#[tokio::test]
async fn an_instances_typed_call_reaches_its_own_partition_only() {
    let rt = sealers().await;
    let bus = rt.bus();
    let own = bus
        .invoke(
            "relayer-acme.relay",
            json!({"target": "acme"}),
            Invoke::default(),
        )
        .await
        .unwrap();
    // An instance never holds another instance's live value: the reply came as JSON.
    assert_eq!(own, json!(0), "the sealer's reply came through its JSON");
    let other = bus
        .invoke(
            "relayer-acme.relay",
            json!({"target": "globex"}),
            Invoke::default(),
        )
        .await;
    match other {
        Err(Error::Call(CallError::Handler(e))) => {
            assert!(e.to_string().contains("no handler sealer.seal"), "{e}")
        }
        other => panic!("expected the relay to find no route, got {other:?}"),
    }
}
