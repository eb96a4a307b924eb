//! Log context: every event a handler emits carries its instance's partition, manager,
//! key and handler, whoever called it and wherever its turn ran (in place on the caller's
//! thread, or in the instance's task after an await).

use tenantry_testing::LogLines;
use tenantry_testing::speakers::{SPOKEN, speak};

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

/// Runs [`speak`] under a subscriber at `filter` (on this test's thread, which runs every
/// turn: the test runtime has one thread) and returns what it logged.
async fn logged_at(filter: &str) -> LogLines {
    let lines = LogLines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    speak().await;
    lines
}

/// The span of a turn of `speakers` instance `key` of `partition`, running `handler`.
fn turn_span(partition: &str, key: &str, handler: &str) -> String {
    format!("handler{{partition={partition} manager=speakers key={key} handler=\"{handler}\"}}:")
}

#[tokio::test]
async fn a_handlers_events_carry_its_instance_and_handler_whoever_called() {
    let lines = logged_at("info").await;
    // Called by another instance (`relayed`), the callee's turn is the innermost.
    for (word, partition, key, handler) in SPOKEN {
        let line = saying(&lines, word);
        assert!(line.contains(&turn_span(partition, key, handler)), "{line}");
    }
    let beta = saying(&lines, "beta");
    assert!(!beta.contains("alpha"), "{beta}");
}
