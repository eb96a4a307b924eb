//! Instance managers across partitions, on the embedded redb store.
//!
//! A counter agent; the same key in two partitions; increments; stop (hibernate) and get
//! again (thaw) shows each partition's own count; a corrupt checkpoint is refused with a
//! clear message and left untouched.
//!
//! Run: `cargo run --example instance_managers`

use serde::{Deserialize, Serialize};
use tenantry::schemars::JsonSchema;
use tenantry::store::RedbStore;
use tenantry::telemetry::EventKind;
use tenantry::{
    Context, Factory, Handler, HandlerError, Handlers, Identity, ManagerConfig, Message, Partition,
    Runtime,
};

#[derive(Serialize, Deserialize, Default)]
struct Counter {
    count: u64,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Increment {
    by: u64,
}
impl Message for Increment {
    const NAME: &'static str = "increment";
    const DESCRIPTION: &'static str = "Adds `by` and returns the new count.";
    type Reply = u64;
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Get;
impl Message for Get {
    const NAME: &'static str = "get";
    const DESCRIPTION: &'static str = "Returns the count.";
    type Reply = u64;
}

impl Factory for Counter {
    const NAME: &'static str = "counter";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Increment>().add::<Get>();
    }
}

impl Handler<Increment> for Counter {
    async fn handle(&mut self, m: Increment, _: &mut Context) -> Result<u64, HandlerError> {
        self.count += m.by;
        Ok(self.count)
    }
}

impl Handler<Get> for Counter {
    async fn handle(&mut self, _: Get, _: &mut Context) -> Result<u64, HandlerError> {
        Ok(self.count)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("checkpoints.redb");
    let runtime = Runtime::new(RedbStore::open(&path)?);
    let counters = runtime.register::<Counter>("counters", ManagerConfig::default())?;
    let mut events = runtime.subscribe();
    println!("store: redb at {}", path.display());

    let alpha = Partition::new("tenant_alpha")?;
    let beta = Partition::new("tenant_beta")?;

    let a = counters.get("visits", &alpha).await?;
    let b = counters.get("visits", &beta).await?;
    for _ in 0..3 {
        a.call(Increment { by: 1 }).await?;
    }
    b.call(Increment { by: 10 }).await?;
    println!(
        "same key \"visits\": {} -> {}, {} -> {}",
        alpha,
        a.call(Get).await?,
        beta,
        b.call(Get).await?
    );

    counters.stop("visits", &alpha).await?;
    counters.stop("visits", &beta).await?;
    println!(
        "stopped both; live in {alpha}: {}, live in {beta}: {}",
        counters.stats(&alpha).count,
        counters.stats(&beta).count
    );

    let a = counters.get("visits", &alpha).await?;
    let b = counters.get("visits", &beta).await?;
    println!(
        "thawed: {} -> {}, {} -> {}",
        alpha,
        a.call(Get).await?,
        beta,
        b.call(Get).await?
    );

    // A checkpoint damaged on disk is refused, not silently replaced by a fresh start.
    let broken = Identity::new(alpha.clone(), "counters", tenantry::Key::new("broken")?);
    runtime
        .store()
        .put(&broken, b"\x00garbage".to_vec().into(), None)
        .await?;
    match counters.get("broken", &alpha).await {
        Ok(_) => println!("unexpected: the corrupt checkpoint was accepted"),
        Err(e) => println!("corrupt checkpoint refused: {e}"),
    }
    let kept = runtime.store().get(&broken).await?.map(|r| r.bytes.len());
    println!("stored bytes left untouched: {kept:?} bytes");

    runtime.shutdown().await;
    println!("events:");
    while let Some(Ok(e)) = events.try_recv() {
        let what = match &e.kind {
            EventKind::HandlerFinished {
                handler, outcome, ..
            } => {
                format!("handled {handler} ({})", outcome.as_str())
            }
            other => format!("{other:?}"),
        };
        println!("  [{}] {}/{}: {what}", e.partition, e.manager, e.key);
    }
    Ok(())
}
