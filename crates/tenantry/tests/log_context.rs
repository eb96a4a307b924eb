//! Log context: every event a handler emits carries its instance's partition, manager,
//! key and handler, whoever called it and wherever its turn ran (in place on the caller's
//! thread, or in the instance's task after an await).

use serde::{Deserialize, Serialize};
use tenantry::schemars::JsonSchema;
use tenantry::{
    Context, Factory, Handler, HandlerError, Handlers, Identity, ManagerConfig, Message, Partition,
    Runtime,
};
use tenantry_testing::LogLines;

#[derive(Serialize, Deserialize, Default)]
struct Speaker;

#[derive(Serialize, Deserialize, JsonSchema)]
struct Say {
    word: String,
}
impl Message for Say {
    const NAME: &'static str = "say";
    type Reply = ();
}

/// Says its word after its turn awaited once (the turn goes on in the instance's task).
#[derive(Serialize, Deserialize, JsonSchema)]
struct SayLater {
    word: String,
}
impl Message for SayLater {
    const NAME: &'static str = "say_later";
    type Reply = ();
}

/// Asks the speaker `key` of its own partition to say `word`.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Relay {
    key: String,
    word: String,
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
        h.add::<Say>().add::<SayLater>().add::<Relay>();
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

/// The line of `lines` that logged `word`.
fn saying(lines: &LogLines, word: &str) -> String {
    let text = lines.text();
    let mut found = text.lines().filter(|l| l.contains(&format!("word={word}")));
    let line = found
        .next()
        .unwrap_or_else(|| panic!("no line says {word}:\n{text}"));
    assert!(found.next().is_none(), "one line says {word}:\n{text}");
    line.to_owned()
}

/// Runs the calls below under a subscriber at `filter` (on this test's thread, which runs
/// every turn: the test runtime has one thread) and returns what it logged.
async fn logged_at(filter: &str) -> LogLines {
    let lines = LogLines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

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
    a.call(Relay {
        key: "b".into(),
        word: "relayed".into(),
    })
    .await
    .unwrap();
    let b = m.get("a", &beta).await.unwrap();
    b.call(say("beta")).await.unwrap();
    rt.shutdown().await;
    lines
}

/// The span of a turn of `speakers` instance `key` of `partition`, running `handler`.
fn turn_span(partition: &str, key: &str, handler: &str) -> String {
    format!("handler{{partition={partition} manager=speakers key={key} handler=\"{handler}\"}}: ")
}

#[tokio::test]
async fn a_handlers_events_carry_its_instance_and_handler_whoever_called() {
    let lines = logged_at("info").await;
    for (word, handler) in [("first", "say"), ("second", "say"), ("later", "say_later")] {
        let line = saying(&lines, word);
        assert!(line.contains(&turn_span("alpha", "a", handler)), "{line}");
    }
    // Called by another instance: the innermost span is the callee's turn.
    let relayed = saying(&lines, "relayed");
    assert!(
        relayed.contains(&turn_span("alpha", "b", "say")),
        "{relayed}"
    );
    let beta = saying(&lines, "beta");
    assert!(beta.contains(&turn_span("beta", "a", "say")), "{beta}");
    assert!(!beta.contains("alpha"), "{beta}");
}
