//! The per-factory handler table: names, descriptions, JSON Schemas and JSON adapters.

use super::envelope::{Envelope, JsonReply, Letter};
use super::factory::{Factory, Handler, Message};
use crate::CallError;
use std::collections::HashMap;
use std::marker::PhantomData;

/// What a client needs to know about one handler.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HandlerInfo {
    /// The handler name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// JSON Schema of its params.
    pub params_schema: serde_json::Value,
    /// JSON Schema of its reply.
    pub reply_schema: serde_json::Value,
}

type MakeEnvelope<F> =
    fn(serde_json::Value, Option<JsonReply>) -> Result<Box<dyn Envelope<F>>, CallError>;

struct Entry<F> {
    info: HandlerInfo,
    make: MakeEnvelope<F>,
}

/// The registry a factory fills in [`Factory::handlers`].
pub struct Handlers<F> {
    entries: Vec<Entry<F>>,
    duplicates: Vec<&'static str>,
    _factory: PhantomData<fn() -> F>,
}

impl<F: Factory> Handlers<F> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Vec::new(),
            duplicates: Vec::new(),
            _factory: PhantomData,
        }
    }

    /// Registers the handler of message type `M` under `M::NAME`.
    pub fn add<M: Message>(&mut self) -> &mut Self
    where
        F: Handler<M>,
    {
        if self.entries.iter().any(|e| e.info.name == M::NAME) {
            self.duplicates.push(M::NAME);
            return self;
        }
        self.entries.push(Entry {
            info: HandlerInfo {
                name: M::NAME,
                description: M::DESCRIPTION,
                params_schema: schemars::schema_for!(M).to_value(),
                reply_schema: schemars::schema_for!(M::Reply).to_value(),
            },
            make: make_json_envelope::<F, M>,
        });
        self
    }
}

fn make_json_envelope<F: Handler<M>, M: Message>(
    params: serde_json::Value,
    reply: Option<JsonReply>,
) -> Result<Box<dyn Envelope<F>>, CallError> {
    let msg: M = serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        CallError::InvalidParams {
            handler: M::NAME.to_owned(),
            message: if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            },
        }
    })?;
    Ok(Box::new(Letter::<M, JsonReply>::new(msg, reply)))
}

/// The frozen table a manager serves from.
pub(crate) struct HandlerTable<F> {
    entries: Vec<Entry<F>>,
    index: HashMap<&'static str, usize>,
}

impl<F: Factory> HandlerTable<F> {
    /// Builds the factory's table, or names the handlers registered twice.
    pub(crate) fn build() -> Result<Self, Vec<&'static str>> {
        let mut handlers = Handlers::<F>::new();
        F::handlers(&mut handlers);
        if !handlers.duplicates.is_empty() {
            return Err(handlers.duplicates);
        }
        let index = handlers
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.info.name, i))
            .collect();
        Ok(Self {
            entries: handlers.entries,
            index,
        })
    }

    pub(crate) fn infos(&self) -> impl Iterator<Item = &HandlerInfo> {
        self.entries.iter().map(|e| &e.info)
    }

    /// Decodes JSON params into a ready-to-send envelope (in the caller's task, so bad
    /// params never reach the instance).
    pub(crate) fn envelope(
        &self,
        handler: &str,
        params: serde_json::Value,
        reply: Option<JsonReply>,
    ) -> Result<Box<dyn Envelope<F>>, CallError> {
        let entry = self
            .index
            .get(handler)
            .map(|&i| &self.entries[i])
            .ok_or_else(|| CallError::UnknownHandler {
                handler: handler.to_owned(),
            })?;
        (entry.make)(params, reply)
    }
}
