//! Log context: every event a handler emits carries its instance's partition, manager,
//! key and handler, whoever called it and wherever its turn ran (in place on the caller's
//! thread, or in the instance's task after an await), and `telemetry::fmt`'s lines name
//! them as the turns' spans would, without opening those spans.

use tenantry::telemetry::fmt::{PlainFields, TurnFormat, TurnJson, without_turn_spans};
use tenantry_testing::LogLines;
use tenantry_testing::speakers::{SPOKEN, speak};
use tracing::Subscriber;
use tracing_subscriber::filter::{FilterExt, LevelFilter};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, JsonFields};
use tracing_subscriber::layer::{Layer, SubscriberExt};

/// The line of `text` that logged `word`.
fn saying(text: &str, word: &str) -> String {
    let mut found = text.lines().filter(|l| l.contains(&format!("word={word}")));
    let line = found
        .next()
        .unwrap_or_else(|| panic!("no line says {word}:\n{text}"));
    assert!(found.next().is_none(), "one line says {word}:\n{text}");
    line.to_owned()
}

/// Where a test's subscriber writes: the test's `LogLines`.
type Sink = Box<dyn Fn() -> LogLines + Send + Sync>;

/// Runs [`speak`] under the subscriber `make` builds around a writer into memory (on
/// this test's thread, which runs every turn: the test runtime has one thread) and
/// returns what it logged.
async fn logged_by<S>(make: impl FnOnce(Sink) -> S) -> String
where
    S: Subscriber + Send + Sync + 'static,
{
    let lines = LogLines::default();
    let writer = lines.clone();
    let _default = tracing::subscriber::set_default(make(Box::new(move || writer.clone())));
    speak().await;
    lines.text()
}

/// The span of a turn of `speakers` instance `key` of `partition`, running `handler`.
fn turn_span(partition: &str, key: &str, handler: &str) -> String {
    format!("handler{{partition={partition} manager=speakers key={key} handler=\"{handler}\"}}:")
}

#[tokio::test]
async fn a_handlers_events_carry_its_instance_and_handler_whoever_called() {
    let lines = logged_by(|sink| {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(sink)
            .finish()
    })
    .await;
    // Called by another instance (`relayed`), the callee's turn is the innermost.
    for (word, partition, key, handler) in SPOKEN {
        let line = saying(&lines, word);
        assert!(line.contains(&turn_span(partition, key, handler)), "{line}");
    }
    let beta = saying(&lines, "beta");
    assert!(!beta.contains("alpha"), "{beta}");
}

/// What [`speak`] logs at `info` under `tracing_subscriber`'s full format, every turn
/// in its span.
async fn with_turn_spans<N>(fields: N, ansi: bool) -> String
where
    N: for<'w> FormatFields<'w> + Send + Sync + 'static,
{
    logged_by(|sink| {
        tracing_subscriber::fmt()
            .with_max_level(LevelFilter::INFO)
            .with_ansi(ansi)
            .without_time()
            .fmt_fields(fields)
            .with_writer(sink)
            .finish()
    })
    .await
}

/// What [`speak`] logs at `info` as the server logs: [`TurnFormat`], the turns'
/// spans refused.
async fn from_running_turns<N>(fields: N, ansi: bool) -> String
where
    N: for<'w> FormatFields<'w> + Send + Sync + 'static,
{
    logged_by(|sink| {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .event_format(TurnFormat::without_time())
            .fmt_fields(fields)
            .with_writer(sink)
            .with_filter(LevelFilter::INFO.and(without_turn_spans()));
        tracing_subscriber::registry().with(layer)
    })
    .await
}

/// Checks that `text` has every word [`speak`] says.
fn each_word_is_said(text: &str) {
    for (word, ..) in SPOKEN {
        assert!(
            text.contains(&format!("said word={word}")),
            "{word}:\n{text}"
        );
    }
}

#[tokio::test]
async fn plain_lines_name_each_turn_where_its_span_would_be() {
    let expected = with_turn_spans(PlainFields, false).await;
    let written = from_running_turns(PlainFields, false).await;
    each_word_is_said(&expected);
    // In place under the host's span, nested inside another turn, after an await,
    // around a span of the handler's own, and outside any turn.
    for shape in [
        "request{id=7}:handler{partition=alpha manager=speakers key=a handler=\"say\"}: ",
        "handler{partition=alpha manager=speakers key=a handler=\"relay\"}:handler{partition=alpha manager=speakers key=b handler=\"say\"}: ",
        "handler{partition=alpha manager=speakers key=a handler=\"say_in_step\"}:step{n=1}: ",
        "handler{partition=alpha manager=speakers key=a handler=\"say_later\"}: ",
        "request{id=7}: tenantry_testing::speakers: said outside any turn",
    ] {
        assert!(expected.contains(shape), "{shape}:\n{expected}");
    }
    assert_eq!(written, expected);
}

#[tokio::test]
async fn default_fields_lines_are_the_same_with_and_without_colour() {
    for ansi in [false, true] {
        let expected = with_turn_spans(DefaultFields::new(), ansi).await;
        let written = from_running_turns(DefaultFields::new(), ansi).await;
        assert_eq!(written, expected, "colour: {ansi}");
    }
}

#[tokio::test]
async fn json_lines_list_each_turn_where_its_span_would_be() {
    let expected = logged_by(|sink| {
        tracing_subscriber::fmt()
            .json()
            .with_max_level(LevelFilter::INFO)
            .without_time()
            .with_writer(sink)
            .finish()
    })
    .await;
    let written = logged_by(|sink| {
        let layer = tracing_subscriber::fmt::layer()
            .event_format(TurnJson::without_time())
            .fmt_fields(JsonFields::new())
            .with_writer(sink)
            .with_filter(LevelFilter::INFO.and(without_turn_spans()));
        tracing_subscriber::registry().with(layer)
    })
    .await;

    each_word_is_said_in_json(&expected);
    let nested = r#""spans":[{"id":7,"name":"request"},{"handler":"relay","key":"a","manager":"speakers","partition":"alpha","name":"handler"},{"handler":"say","key":"b","manager":"speakers","partition":"alpha","name":"handler"}]"#;
    assert!(expected.contains(nested), "{expected}");
    assert_eq!(written, expected);
}

/// Checks that the JSON lines `text` have every word [`speak`] says.
fn each_word_is_said_in_json(text: &str) {
    for (word, ..) in SPOKEN {
        assert!(
            text.contains(&format!(r#""word":"{word}""#)),
            "{word}:\n{text}"
        );
    }
}
