//! A test factory whose handlers log: what the log-context tests run their turns with.
//!
//! [`speak`] runs the same calls each time, under whatever subscriber is the default:
//! turns run in place under a span of the host's own, a turn that awaits and logs after,
//! a turn that calls another instance (which runs in place inside it), and a second
//! partition. Each logs one line with its `word`.

use serde::{Deserialize, Serialize};
use tenantry::schemars::JsonSchema;
use tenantry::{
    Context, Factory, Handler, HandlerError, Handlers, Identity, ManagerConfig, Message, Partition,
    Runtime,
};

/// An instance that logs the words it is asked to say.
#[derive(Serialize, Deserialize, Default)]
pub struct Speaker;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Say {
    pub word: String,
}
impl Message for Say {
    const NAME: &'static str = "say";
    type Reply = ();
}

/// Says its word after its turn awaited once (the turn goes on in the instance's task).
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct SayLater {
    pub word: String,
}
impl Message for SayLater {
    const NAME: &'static str = "say_later";
    type Reply = ();
}

/// Says its word inside a span of the handler's own (`step{n=1}`).
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct SayInStep {
    pub word: String,
}
impl Message for SayInStep {
    const NAME: &'static str = "say_in_step";
    type Reply = ();
}

/// Asks the speaker `key` of its own partition to say `word`.
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Relay {
    pub key: String,
    pub word: String,
}
impl Message for Relay {
    const NAME: &'static str = "relay";
    type Reply = ();
}

impl Factory for Speaker {
    const NAME: &'static str = "speaker";
    fn fresh(_: &Identity) -> Self {
        Self
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Say>()
            .add::<SayLater>()
            .add::<SayInStep>()
            .add::<Relay>();
    }
}

impl Handler<Say> for Speaker {
    async fn handle(&mut self, m: Say, _: &mut Context) -> Result<(), HandlerError> {
        tracing::info!(word = %m.word, "said");
        Ok(())
    }
}

impl Handler<SayLater> for Speaker {
    async fn handle(&mut self, m: SayLater, _: &mut Context) -> Result<(), HandlerError> {
        tokio::task::yield_now().await;
        tracing::info!(word = %m.word, "said");
        Ok(())
    }
}

impl Handler<SayInStep> for Speaker {
    async fn handle(&mut self, m: SayInStep, _: &mut Context) -> Result<(), HandlerError> {
        tracing::info_span!("step", n = 1).in_scope(|| tracing::info!(word = %m.word, "said"));
        Ok(())
    }
}

impl Handler<Relay> for Speaker {
    async fn handle(&mut self, m: Relay, ctx: &mut Context) -> Result<(), HandlerError> {
        let manager = ctx.manager().to_owned();
        let other = ctx
            .get::<Speaker>(&manager, m.key.as_str())
            .await
            .map_err(|e| HandlerError::new(e.to_string()))?;
        other
            .call(Say { word: m.word })
            .await
            .map_err(|e| HandlerError::new(e.to_string()))
    }
}

/// The words [`speak`] has said, with the partition, key and handler of the turn that
/// said each: `first`, `second` (`say`), `later` (`say_later`) and `stepped`
/// (`say_in_step`) by `a` of `alpha`, `relayed` by `b` of `alpha` (called from `a`'s
/// `relay` turn), `beta` by `a` of `beta`.
pub const SPOKEN: [(&str, &str, &str, &str); 6] = [
    ("first", "alpha", "a", "say"),
    ("second", "alpha", "a", "say"),
    ("later", "alpha", "a", "say_later"),
    ("stepped", "alpha", "a", "say_in_step"),
    ("relayed", "alpha", "b", "say"),
    ("beta", "beta", "a", "say"),
];

/// Runs the calls that say [`SPOKEN`] on a fresh in-memory runtime (manager `speakers`),
/// from inside a host span `request{id=7}` (which also logs `outside` of any turn), and shuts the runtime down. On a
/// current-thread runtime every turn runs on the caller's thread.
pub async fn speak() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Speaker>("speakers", ManagerConfig::default())
        .unwrap();
    let (alpha, beta) = (
        Partition::new("alpha").unwrap(),
        Partition::new("beta").unwrap(),
    );
    let a = m.get("a", &alpha).await.unwrap();
    let say = |word: &str| Say { word: word.into() };
    // Host code calls from inside a span of its own.
    let request = tracing::info_span!("request", id = 7);
    let _entered = request.enter();
    a.call(say("first")).await.unwrap();
    a.call(say("second")).await.unwrap();
    a.call(SayLater {
        word: "later".into(),
    })
    .await
    .unwrap();
    a.call(SayInStep {
        word: "stepped".into(),
    })
    .await
    .unwrap();
    a.call(Relay {
        key: "b".into(),
        word: "relayed".into(),
    })
    .await
    .unwrap();
    let b = m.get("a", &beta).await.unwrap();
    b.call(say("beta")).await.unwrap();
    tracing::info!(word = "outside", "said outside any turn");
    rt.shutdown().await;
}
