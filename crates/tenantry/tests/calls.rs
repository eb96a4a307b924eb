//! Calls and tells: typed and JSON, errors, panics and restarts, timeouts, full mailboxes.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use tenantry::telemetry::EventKind;
use tenantry::{CallError, Error, Invoke, JsonParams, Key, ManagerConfig, RestartPolicy, Runtime};

#[tokio::test]
async fn typed_and_json_calls_reach_the_same_state() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let h = m.get("a", &p("alpha")).await.unwrap();
    assert_eq!(h.call(Increment { by: 2 }).await.unwrap(), 2);
    assert_eq!(
        h.call_json("increment", json!({"by": 3})).await.unwrap(),
        json!(5)
    );
    assert_eq!(h.call_json("get", json!(null)).await.unwrap(), json!(5));
    h.tell(Increment { by: 1 }).unwrap();
    h.tell_json("increment", json!({"by": 1})).unwrap();
    assert_eq!(h.call(Get).await.unwrap(), 7);
}

#[tokio::test]
async fn handler_errors_reach_the_caller() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let h = m.get("a", &p("alpha")).await.unwrap();
    let err = h
        .call(Fail {
            reason: "no".into(),
        })
        .await
        .unwrap_err();
    match err {
        CallError::Handler(e) => {
            assert_eq!(e.code, "refused");
            assert_eq!(e.message, "no");
        }
        other => panic!("expected a handler error, got {other:?}"),
    }
    // The instance keeps working after a handler error.
    assert_eq!(h.call(Increment { by: 1 }).await.unwrap(), 1);
}

#[tokio::test]
async fn unknown_handlers_and_bad_params_are_typed_errors() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let h = m.get("a", &p("alpha")).await.unwrap();
    assert_eq!(
        h.call_json("nope", json!({})).await.unwrap_err(),
        CallError::UnknownHandler {
            handler: "nope".into()
        }
    );
    let missing = h.call_json("increment", json!({})).await.unwrap_err();
    assert!(
        matches!(&missing, CallError::InvalidParams { handler, message } if handler == "increment" && message.contains("by")),
        "{missing:?}"
    );
    let wrong_type = h
        .call_json("increment", json!({"by": "x"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&wrong_type, CallError::InvalidParams { message, .. } if message.starts_with("by")),
        "{wrong_type:?}"
    );
    let unknown_field = h
        .call_json("increment", json!({"by": 1, "extra": 2}))
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown_field, CallError::InvalidParams { message, .. } if message.contains("extra")),
        "{unknown_field:?}"
    );
    // A typed message is an object too: serde would read `[1]` as `{"by": 1}`.
    let positional = h.call_json("increment", json!([1])).await.unwrap_err();
    assert!(
        matches!(&positional, CallError::InvalidParams { message, .. }
            if message.contains("invalid type: sequence, expected struct Increment")),
        "{positional:?}"
    );
    // Nothing of the refused calls reached the state.
    assert_eq!(h.call(Get).await.unwrap(), 0);
}

#[tokio::test]
async fn a_handle_takes_params_lent_or_as_text_as_it_takes_values() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let h = m.get("a", &p("alpha")).await.unwrap();
    let by_two = json!({"by": 2});
    assert_eq!(h.call_json("increment", &by_two).await.unwrap(), json!(2));
    assert_eq!(
        h.call_json("increment", &by_two).await.unwrap(),
        json!(4),
        "lent params stay the caller's, for the next call"
    );
    let by_one = JsonParams::Text(r#"{"by": 1}"#);
    assert_eq!(h.call_json("increment", by_one).await.unwrap(), json!(5));
    h.tell_json("increment", &by_two).unwrap();
    for bad in [json!({"by": "x"}), json!({"by": 1, "extra": 2}), json!([1])] {
        let text = bad.to_string();
        let owned = h.call_json("increment", bad.clone()).await.unwrap_err();
        let lent = h.call_json("increment", &bad).await.unwrap_err();
        assert_eq!(lent, owned, "{text}: lent params fail as owned ones");
        let as_text = h.call_json("increment", JsonParams::Text(&text)).await;
        assert_eq!(
            as_text.unwrap_err(),
            owned,
            "{text}: params as text fail as their value does"
        );
        let told = h.tell_json("increment", &bad).unwrap_err();
        assert_eq!(told, owned, "{text}: a tell refuses them before queuing");
        let told_text = h.tell_json("increment", JsonParams::Text(&text));
        assert_eq!(told_text.unwrap_err(), owned, "{text}: told as text");
    }
    let malformed = h
        .call_json("increment", JsonParams::Text(r#"{"by":"#))
        .await
        .unwrap_err();
    assert!(
        matches!(malformed, CallError::MalformedParams { .. }),
        "{malformed:?}"
    );
    assert_eq!(
        h.call(Get).await.unwrap(),
        7,
        "the valid calls and the tell counted, the refused ones did not"
    );
}

#[tokio::test]
async fn handlers_publish_names_descriptions_and_schemas() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let handlers = m.handlers();
    let inc = handlers.iter().find(|h| h.name == "increment").unwrap();
    assert!(inc.description.contains("Adds"));
    assert_eq!(
        inc.params_schema["properties"]["by"]["type"],
        json!("integer")
    );
    assert_eq!(inc.reply_schema["type"], json!("integer"));
}

#[tokio::test]
async fn a_panic_fails_the_call_and_the_instance_restarts_from_its_last_good_state() {
    quiet_panics();
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    let h = m.get("a", &alpha).await.unwrap();
    h.call(Increment { by: 5 }).await.unwrap();
    m.stop("a", &alpha).await.unwrap(); // checkpoint at 5
    let h = m.get("a", &alpha).await.unwrap();
    h.call(Increment { by: 1 }).await.unwrap(); // 6, not checkpointed
    let mut events = rt.subscribe();
    let err = h.call(Explode).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Panicked { handler, message } if handler == "explode" && message == "boom")
    );
    // Same handle, restarted from the checkpoint: neither the panic's +1000 nor the
    // un-checkpointed +1 survive.
    assert_eq!(h.call(Get).await.unwrap(), 5);
    let mut saw_crash = false;
    let mut saw_restart = false;
    while let Some(Ok(e)) = events.try_recv() {
        match e.kind {
            EventKind::Crashed { .. } => saw_crash = true,
            EventKind::Restarted { attempt } => {
                assert_eq!(attempt, 1);
                saw_restart = true
            }
            _ => {}
        }
    }
    assert!(saw_crash && saw_restart);
}

#[tokio::test]
async fn a_crash_never_writes_a_checkpoint() {
    quiet_panics();
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    let h = m.get("a", &alpha).await.unwrap();
    h.call(Increment { by: 1 }).await.unwrap();
    let _ = h.call(Explode).await;
    let id = h.identity().clone();
    assert!(rt.store().get(&id).await.unwrap().is_none());
    // Fresh restart without a checkpoint starts from the fresh state.
    assert_eq!(h.call(Get).await.unwrap(), 0);
}

#[tokio::test]
async fn past_the_restart_bound_the_instance_stops_and_an_event_says_why() {
    quiet_panics();
    let rt = Runtime::in_memory();
    let config = ManagerConfig::default().restart(RestartPolicy {
        max_restarts: 2,
        window: Duration::from_secs(60),
    });
    let m = rt.register::<Counter>("counters", config).unwrap();
    let alpha = p("alpha");
    let h = m.get("a", &alpha).await.unwrap();
    let mut events = rt.subscribe();
    for _ in 0..3 {
        assert!(matches!(
            h.call(Explode).await,
            Err(CallError::Panicked { .. })
        ));
    }
    assert_eq!(h.call(Get).await.unwrap_err(), CallError::Stopped);
    assert!(m.lookup("a", &alpha).unwrap().is_none());
    let mut reason = None;
    while let Some(Ok(e)) = events.try_recv() {
        if let EventKind::GaveUp { reason: r } = &e.kind {
            assert_eq!(e.partition, alpha);
            reason = Some(r.clone());
        }
    }
    let reason = reason.expect("a GaveUp event");
    assert!(reason.contains("restart bound"), "{reason}");
    // A get during its backoff is refused (see tests/recovery.rs); a retry starts a new
    // incarnation.
    assert!(matches!(
        m.get("a", &alpha).await,
        Err(Error::BackingOff { attempt: 1, .. })
    ));
    let again = m.retry_now("a", &alpha).await.unwrap();
    assert_eq!(again.call(Get).await.unwrap(), 0);
}

#[tokio::test]
async fn a_slow_handler_times_out_the_call() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>(
            "counters",
            ManagerConfig::default().call_timeout(Duration::from_millis(50)),
        )
        .unwrap();
    let h = m.get("a", &p("alpha")).await.unwrap();
    let err = h.call(Sleep { millis: 500 }).await.unwrap_err();
    assert_eq!(err, CallError::Timeout(Duration::from_millis(50)));
    let err = h
        .call_with_timeout(Sleep { millis: 200 }, Duration::from_millis(10))
        .await
        .unwrap_err();
    assert_eq!(err, CallError::Timeout(Duration::from_millis(10)));
}

#[tokio::test]
async fn a_full_mailbox_is_an_error_not_a_silent_drop() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default().mailbox_capacity(4))
        .unwrap();
    let h = m.get("a", &p("alpha")).await.unwrap();
    // Keep the instance busy so the mailbox fills.
    h.tell(Sleep { millis: 300 }).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut accepted = 0;
    let mut full = 0;
    for _ in 0..10 {
        match h.tell(Increment { by: 1 }) {
            Ok(()) => accepted += 1,
            Err(CallError::MailboxFull { capacity }) => {
                assert_eq!(capacity, 4);
                full += 1
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 4);
    assert_eq!(full, 6);
    // A call is refused the same way while the mailbox is full...
    assert!(matches!(
        h.call(Get).await,
        Err(CallError::MailboxFull { .. })
    ));
    // ...and once the instance catches up, every accepted tell was handled.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.call(Get).await.unwrap(), 4);
}

#[tokio::test]
async fn an_instance_can_ask_to_stop_after_its_turn() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    let h = m.get("a", &alpha).await.unwrap();
    h.call(Increment { by: 3 }).await.unwrap();
    h.call(StopSelf).await.unwrap();
    // The stop is asynchronous; the directory empties once the checkpoint is written.
    for _ in 0..100 {
        if m.lookup("a", &alpha).unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(m.lookup("a", &alpha).unwrap().is_none());
    assert_eq!(
        m.get("a", &alpha).await.unwrap().call(Get).await.unwrap(),
        3
    );
}

#[tokio::test]
async fn a_typed_message_decodes_from_json_text_and_skips_unknown_fields_unread() {
    let rt = Runtime::in_memory();
    rt.register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let bus = rt.bus();
    let opts = || Invoke::target(&p("alpha")).key(Key::new("a").unwrap());
    let call =
        |text: &'static str| bus.invoke_raw("counters.sleep", JsonParams::Text(text), opts());
    // `Sleep` ignores unknown fields; read from text they are skipped without being held
    // as a value, so what a value could not hold there is no error.
    let reply = call(r#"{"millis": 0, "extra": [1e400, {"s": "\ud800"}]}"#)
        .await
        .unwrap();
    assert_eq!(reply.get(), "null");
    let wrong = call(r#"{"millis": "soon"}"#).await.unwrap_err();
    assert!(
        matches!(&wrong, Error::Call(CallError::InvalidParams { message, .. }) if message.starts_with("millis")),
        "{wrong:?}"
    );
    // Where the field is read, a number a value cannot hold is malformed.
    let out_of_range = call(r#"{"millis": 1e400}"#).await.unwrap_err();
    assert!(
        matches!(
            &out_of_range,
            Error::Call(CallError::MalformedParams { .. })
        ),
        "{out_of_range:?}"
    );
    let trailing = call(r#"{"millis": 0} {}"#).await.unwrap_err();
    assert!(
        matches!(&trailing, Error::Call(CallError::MalformedParams { .. })),
        "{trailing:?}"
    );
}
