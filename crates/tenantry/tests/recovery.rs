//! Instances that gave up after repeated crashes are not dead for good: they back off
//! (exponentially), say so in their status, refuse calls with the time to retry, start
//! again after the backoff, and the host can restart them at once. Neighbours never
//! notice.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tenantry::component::{Component, NoParams, Runnables};
use tenantry::kernel::InstanceStatus;
use tenantry::schemars::JsonSchema;
use tenantry::{
    Backoff, CallError, Context, Error, Factory, Handler, HandlerError, Handlers, Identity, Invoke,
    ManagerConfig, Message, Partition, RestartPolicy, Runtime,
};

/// While set, `Fragile::create` of an instance with `"gated": true` fails (a start that
/// keeps failing); only one test gates its instances.
static CREATE_FAILS: AtomicBool = AtomicBool::new(false);

struct Fragile;

impl Component for Fragile {
    const FACTORY: &'static str = "fragile";
    fn create(ctx: &Context) -> Result<Self, HandlerError> {
        let gated = ctx.properties().get("gated") == Some(&json!(true));
        if gated && CREATE_FAILS.load(Ordering::SeqCst) {
            return Err(HandlerError::new("cannot start now"));
        }
        Ok(Self)
    }
    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable("ping", "Answers.", |_, ctx, _: NoParams| {
            Ok(ctx.partition().to_string())
        });
        r.runnable("boom", "Panics.", |_, _, _: NoParams| -> Result<(), _> {
            panic!("boom")
        });
    }
}

fn status(rt: &Runtime, name: &str) -> InstanceStatus {
    rt.kernel().instance(name).unwrap().status
}

async fn crash_until_it_gives_up(rt: &Runtime, name: &str) {
    for _ in 0..4 {
        let r = rt
            .bus()
            .invoke(&format!("{name}.boom"), json!({}), Invoke::default())
            .await;
        assert!(
            matches!(r, Err(Error::Call(CallError::Panicked { .. }))),
            "{r:?}"
        );
    }
}

async fn kernel_with_two(gated: bool) -> Runtime {
    let rt = Runtime::in_memory();
    let k = rt.kernel();
    k.register::<Fragile>().unwrap();
    k.hot_add(
        "fragile",
        "fragile-acme",
        json!({"target": "acme", "gated": gated}),
    )
    .await
    .unwrap();
    k.hot_add("fragile", "fragile-globex", json!({"target": "globex"}))
        .await
        .unwrap();
    rt
}

#[tokio::test(start_paused = true)]
async fn a_component_that_gave_up_backs_off_then_runs_again_and_its_neighbour_never_stops() {
    let rt = kernel_with_two(false).await;
    crash_until_it_gives_up(&rt, "fragile-acme").await;
    let InstanceStatus::BackingOff { attempt, error, .. } = status(&rt, "fragile-acme") else {
        panic!("{:?}", status(&rt, "fragile-acme"));
    };
    assert_eq!(attempt, 1);
    assert!(error.contains("boom"), "{error}");
    // Calls say it is backing off (by name and by factory + target), with when to retry.
    let acme = Partition::new("acme").unwrap();
    for (route, opts) in [
        ("fragile-acme.ping", Invoke::default()),
        ("fragile.ping", Invoke::target(&acme)),
    ] {
        let r = rt.bus().invoke(route, json!({}), opts).await;
        assert!(
            matches!(&r, Err(Error::BackingOff { attempt: 1, retry_in, .. })
                if *retry_in <= Duration::from_secs(1)),
            "{route}: {r:?}"
        );
    }
    // The neighbour in another tenant never noticed.
    assert_eq!(
        rt.bus()
            .invoke("fragile-globex.ping", json!({}), Invoke::default())
            .await
            .unwrap(),
        json!("globex")
    );
    // After the backoff (about a second) it runs again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&rt, "fragile-acme"), InstanceStatus::Active);
    assert_eq!(
        rt.bus()
            .invoke("fragile.ping", json!({}), Invoke::target(&acme))
            .await
            .unwrap(),
        json!("acme")
    );
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_back_off_longer_and_the_host_can_restart_at_once() {
    let rt = kernel_with_two(true).await;
    crash_until_it_gives_up(&rt, "fragile-acme").await;
    // It cannot start again: the next try fails and backs off twice as long.
    CREATE_FAILS.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let s = status(&rt, "fragile-acme");
    assert!(
        matches!(&s, InstanceStatus::BackingOff { attempt: 2, error, .. } if error.contains("cannot start now")),
        "{s:?}"
    );
    // A restart while it still cannot start says why and leaves it failed.
    let e = rt.kernel().restart("fragile-acme").await.unwrap_err();
    assert!(e.to_string().contains("cannot start now"), "{e}");
    assert!(matches!(
        status(&rt, "fragile-acme"),
        InstanceStatus::Failed(_)
    ));
    // Once it can, a restart starts it at once, without waiting out anything.
    CREATE_FAILS.store(false, Ordering::SeqCst);
    rt.kernel().restart("fragile-acme").await.unwrap();
    assert_eq!(status(&rt, "fragile-acme"), InstanceStatus::Active);
    assert!(matches!(
        rt.kernel().restart("fragile-acme").await,
        Err(Error::NotFailed(_))
    ));
    // A recovery that was waiting stands down: it stays active, one incarnation.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(status(&rt, "fragile-acme"), InstanceStatus::Active);
}

#[tokio::test(start_paused = true)]
async fn a_component_removed_while_backing_off_stays_removed() {
    let rt = kernel_with_two(false).await;
    crash_until_it_gives_up(&rt, "fragile-acme").await;
    rt.kernel().hot_remove("fragile-acme").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(rt.kernel().instance("fragile-acme").is_none());
    // The name is free again, and a new instance under it starts at once.
    rt.kernel()
        .hot_add("fragile", "fragile-acme", json!({"target": "acme"}))
        .await
        .unwrap();
    assert_eq!(status(&rt, "fragile-acme"), InstanceStatus::Active);
}

#[derive(Serialize, Deserialize, Default)]
struct Counter {
    n: u64,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Add {
    by: u64,
}
impl Message for Add {
    const NAME: &'static str = "add";
    type Reply = u64;
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Crash {}
impl Message for Crash {
    const NAME: &'static str = "crash";
    type Reply = ();
}

impl Factory for Counter {
    const NAME: &'static str = "counter";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Add>().add::<Crash>();
    }
}
impl Handler<Add> for Counter {
    async fn handle(&mut self, m: Add, _: &mut Context) -> Result<u64, HandlerError> {
        self.n += m.by;
        Ok(self.n)
    }
}
impl Handler<Crash> for Counter {
    async fn handle(&mut self, _: Crash, _: &mut Context) -> Result<(), HandlerError> {
        panic!("crash")
    }
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_gave_up_refuses_gets_until_its_backoff_passes_or_a_retry_now() {
    let rt = Runtime::in_memory();
    let backoff = Backoff {
        first: Duration::from_secs(2),
        max: Duration::from_secs(8),
    };
    let m = rt
        .register::<Counter>(
            "counters",
            ManagerConfig::default()
                .backoff(backoff)
                .restart(RestartPolicy {
                    max_restarts: 0,
                    window: Duration::from_secs(60),
                }),
        )
        .unwrap();
    let acme = Partition::new("acme").unwrap();
    let h = m.get("k", &acme).await.unwrap();
    assert_eq!(h.call(Add { by: 5 }).await.unwrap(), 5);
    m.stop("k", &acme).await.unwrap();
    let h = m.get("k", &acme).await.unwrap();
    assert!(matches!(
        h.call(Crash {}).await,
        Err(CallError::Panicked { .. })
    ));
    let failures = m.failures(&acme);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].1.attempt, 1);
    assert!(matches!(
        m.get("k", &acme).await,
        Err(Error::BackingOff { attempt: 1, .. })
    ));
    assert_eq!(m.count(&acme), 0);
    // Another key of the same tenant is untouched.
    assert_eq!(
        m.get("other", &acme)
            .await
            .unwrap()
            .call(Add { by: 1 })
            .await
            .unwrap(),
        1
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Thawed from its last checkpoint.
    let h = m.get("k", &acme).await.unwrap();
    assert_eq!(h.call(Add { by: 1 }).await.unwrap(), 6);
    // A second failure soon after backs off twice as long; retry_now skips it.
    let _ = h.call(Crash {}).await;
    assert_eq!(m.failures(&acme)[0].1.attempt, 2);
    assert!(matches!(
        m.get("k", &acme).await,
        Err(Error::BackingOff { attempt: 2, retry_in, .. }) if retry_in > Duration::from_secs(3)
    ));
    let h = m.retry_now("k", &acme).await.unwrap();
    assert_eq!(h.call(Add { by: 1 }).await.unwrap(), 6);
    assert!(m.failures(&acme).is_empty());
}
