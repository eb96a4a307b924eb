//! Bounds on what one call can make an instance do: bounded params are refused on decode,
//! naming the field, and a JSON reply over the manager's limit is refused, not sent.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tenantry::params::{Bounded, BoundedText};
use tenantry::schemars::JsonSchema;
use tenantry::{
    CallError, Context, Error, Factory, Handler, HandlerError, Handlers, Identity, Invoke, Key,
    ManagerConfig, Message, Partition, Runtime,
};

#[derive(Serialize, Deserialize, Default)]
struct Echo;

#[derive(Serialize, Deserialize, JsonSchema)]
struct Repeat {
    text: BoundedText<8>,
    times: Bounded<1, 1000>,
}
impl Message for Repeat {
    const NAME: &'static str = "repeat";
    type Reply = String;
}

impl Factory for Echo {
    const NAME: &'static str = "echo";
    fn fresh(_: &Identity) -> Self {
        Self
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Repeat>();
    }
}
impl Handler<Repeat> for Echo {
    async fn handle(&mut self, m: Repeat, _: &mut Context) -> Result<String, HandlerError> {
        Ok(m.text.as_str().repeat(m.times.as_usize()))
    }
}

#[tokio::test]
async fn bounded_params_are_refused_on_decode_naming_the_field() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Echo>("echoes", ManagerConfig::default())
        .unwrap();
    let h = m.get("a", &Partition::new("acme").unwrap()).await.unwrap();
    assert_eq!(
        h.call_json("repeat", json!({"text": "ab", "times": 2}))
            .await
            .unwrap(),
        json!("abab")
    );
    for (params, field) in [
        (json!({"text": "ab", "times": 0}), "times"),
        (json!({"text": "ab", "times": 1001}), "times"),
        (json!({"text": "ab", "times": u64::MAX}), "times"),
        (json!({"text": "ab", "times": -1}), "times"),
        (json!({"text": "ééééééééé", "times": 1}), "text"),
    ] {
        let e = h.call_json("repeat", params).await.unwrap_err();
        assert!(
            matches!(&e, CallError::InvalidParams { message, .. } if message.starts_with(field)),
            "{e}"
        );
    }
    // Eight two-byte characters are eight characters: within the bound.
    assert!(
        h.call_json("repeat", json!({"text": "éééééééé", "times": 1}))
            .await
            .is_ok()
    );
    // The schema states the bounds.
    let info = &m.handlers()[0];
    let props = &info.params_schema["properties"];
    assert_eq!(props["times"]["minimum"], 1);
    assert_eq!(props["times"]["maximum"], 1000);
    assert_eq!(props["text"]["maxLength"], 8);
}

#[tokio::test]
async fn a_reply_over_the_managers_limit_is_refused_and_the_instance_lives_on() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Echo>("echoes", ManagerConfig::default().max_reply_bytes(100))
        .unwrap();
    assert_eq!(m.handlers()[0].max_reply_bytes, 100);
    let h = m.get("a", &Partition::new("acme").unwrap()).await.unwrap();
    // 98 characters plus two quotes: exactly at the limit.
    let at_limit = h
        .call_json("repeat", json!({"text": "ab", "times": 49}))
        .await
        .unwrap();
    assert_eq!(at_limit.as_str().unwrap().len(), 98);
    let e = h
        .call_json("repeat", json!({"text": "abcdefgh", "times": 1000}))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        CallError::ReplyTooLarge {
            handler: "repeat".into(),
            limit: 100
        }
    );
    assert!(h.is_alive());
    // Typed in-process calls are not encoded, so not bounded.
    let typed = h
        .call(Repeat {
            text: BoundedText::new("abcdefgh").unwrap(),
            times: Bounded::new(1000).unwrap(),
        })
        .await
        .unwrap();
    assert_eq!(typed.len(), 8000);
    // So is a typed bus call asking for the handler's own reply type; asking for another
    // type goes through the JSON, under the limit.
    let bus = rt.bus();
    let opts = || Invoke::target(&Partition::new("acme").unwrap()).key(Key::new("a").unwrap());
    let params = json!({"text": "abcdefgh", "times": 1000});
    let own: String = bus
        .invoke_as("echoes.repeat", params.clone(), opts())
        .await
        .unwrap();
    assert_eq!(own.len(), 8000);
    let other = bus
        .invoke_as::<Box<str>>("echoes.repeat", params, opts())
        .await;
    assert!(
        matches!(
            other,
            Err(Error::Call(CallError::ReplyTooLarge { limit: 100, .. }))
        ),
        "{other:?}"
    );
    // The default is 1 MiB.
    assert_eq!(ManagerConfig::default().max_reply_bytes, 1 << 20);
}

#[tokio::test]
async fn a_reply_as_json_text_is_the_same_json_under_the_same_limit() {
    let rt = Runtime::in_memory();
    rt.register::<Echo>("echoes", ManagerConfig::default().max_reply_bytes(100))
        .unwrap();
    let acme = Partition::new("acme").unwrap();
    let bus = rt.bus();
    let opts = || Invoke::target(&acme).key(tenantry::Key::new("a").unwrap());
    for times in [1, 49] {
        let params = json!({"text": "a\"é", "times": times});
        let value = bus.invoke("echoes.repeat", params.clone(), opts()).await;
        let text = bus.invoke_raw("echoes.repeat", params, opts()).await;
        let (value, text) = match (value, text) {
            (Ok(v), Ok(t)) => (v, t),
            // 49 times three characters is over the limit either way.
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string());
                continue;
            }
            other => panic!("the two forms disagree: {other:?}"),
        };
        assert_eq!(text.get(), serde_json::to_string(&value).unwrap());
    }
    // Exactly at the limit passes, one byte over is refused, as for values.
    let at_limit = bus
        .invoke_raw("echoes.repeat", json!({"text": "ab", "times": 49}), opts())
        .await
        .unwrap();
    assert_eq!(at_limit.get().len(), 100);
    let e = bus
        .invoke_raw(
            "echoes.repeat",
            json!({"text": "abcdefgh", "times": 1000}),
            opts(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Call(CallError::ReplyTooLarge { limit: 100, .. })),
        "{e}"
    );
}
