//! A counter factory shared by the black-box tests.
#![allow(dead_code)]

pub mod pods;

use serde::{Deserialize, Serialize};
use std::time::Duration;
use tenantry::schemars::JsonSchema;
use tenantry::{Context, Factory, Handler, HandlerError, Handlers, Identity, Message};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counter {
    pub count: u64,
    pub label: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Increment {
    pub by: u64,
}
impl Message for Increment {
    const NAME: &'static str = "increment";
    const DESCRIPTION: &'static str = "Adds `by` to the count and returns the new count.";
    type Reply = u64;
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Get;
impl Message for Get {
    const NAME: &'static str = "get";
    const DESCRIPTION: &'static str = "Returns the count.";
    type Reply = u64;
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Fail {
    pub reason: String,
}
impl Message for Fail {
    const NAME: &'static str = "fail";
    type Reply = ();
}

/// Adds to the count, then panics: the increment must not survive the restart.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Explode;
impl Message for Explode {
    const NAME: &'static str = "explode";
    type Reply = ();
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Sleep {
    pub millis: u64,
}
impl Message for Sleep {
    const NAME: &'static str = "sleep";
    type Reply = ();
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct StopSelf;
impl Message for StopSelf {
    const NAME: &'static str = "stop_self";
    type Reply = ();
}

/// Gets (or starts) another counter of the same manager in this instance's partition and
/// keeps it alive for as long as this instance runs. Replies with the child's partition.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Adopt {
    pub key: String,
}
impl Message for Adopt {
    const NAME: &'static str = "adopt";
    type Reply = Option<String>;
}

/// Returns the label the lifecycle hooks write.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Label;
impl Message for Label {
    const NAME: &'static str = "label";
    type Reply = String;
}

impl Factory for Counter {
    const NAME: &'static str = "counter";

    fn fresh(_: &Identity) -> Self {
        Self::default()
    }

    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Increment>()
            .add::<Get>()
            .add::<Fail>()
            .add::<Explode>()
            .add::<Sleep>()
            .add::<StopSelf>()
            .add::<Adopt>()
            .add::<Label>();
    }

    async fn on_start(&mut self, _: &mut Context) -> Result<(), HandlerError> {
        self.label = "started".into();
        Ok(())
    }

    async fn on_thaw(&mut self, _: &mut Context) -> Result<(), HandlerError> {
        self.label.push_str(",thawed");
        Ok(())
    }

    async fn on_stop(&mut self, _: &mut Context) -> Result<(), HandlerError> {
        self.label.push_str(",stopped");
        Ok(())
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
impl Handler<Fail> for Counter {
    async fn handle(&mut self, m: Fail, _: &mut Context) -> Result<(), HandlerError> {
        Err(HandlerError::with_code("refused", m.reason))
    }
}
impl Handler<Explode> for Counter {
    async fn handle(&mut self, _: Explode, _: &mut Context) -> Result<(), HandlerError> {
        self.count += 1000;
        panic!("boom");
    }
}
impl Handler<Sleep> for Counter {
    async fn handle(&mut self, m: Sleep, _: &mut Context) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(m.millis)).await;
        Ok(())
    }
}
impl Handler<StopSelf> for Counter {
    async fn handle(&mut self, _: StopSelf, ctx: &mut Context) -> Result<(), HandlerError> {
        ctx.request_stop();
        Ok(())
    }
}

impl Handler<Adopt> for Counter {
    async fn handle(
        &mut self,
        m: Adopt,
        ctx: &mut Context,
    ) -> Result<Option<String>, HandlerError> {
        let manager = ctx.manager().to_owned();
        let child = ctx
            .get::<Counter>(&manager, m.key.as_str())
            .await
            .map_err(|e| HandlerError::new(e.to_string()))?;
        ctx.hold(child.attach());
        Ok(child.identity().partition.name().map(str::to_owned))
    }
}

impl Handler<Label> for Counter {
    async fn handle(&mut self, _: Label, _: &mut Context) -> Result<String, HandlerError> {
        Ok(self.label.clone())
    }
}

/// Silences the default panic hook's output for the `boom` panics tests provoke.
pub fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info.to_string();
            if !msg.contains("boom") {
                default(info);
            }
        }));
    });
}

pub fn p(name: &str) -> tenantry::Partition {
    tenantry::Partition::new(name).expect("valid partition")
}
