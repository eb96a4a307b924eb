//! The per-factory handler table: names, descriptions, JSON Schemas and JSON adapters.

use super::envelope::{Envelope, FnLetter, JsonReply, Letter};
use super::factory::{Factory, Handler, Message};
use super::json_params::JsonParams;
use super::objects_only::ObjectsOnly;
use crate::caller::Caller;
use crate::{CallError, Context, HandlerError};
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

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
    /// The largest JSON reply a call may produce, in bytes (the manager's limit).
    pub max_reply_bytes: usize,
}

type MakeEnvelope<F> = Arc<
    dyn Fn(JsonParams<'_>, Option<JsonReply>, Caller) -> Result<Box<dyn Envelope<F>>, CallError>
        + Send
        + Sync,
>;

/// A handler written as a closure: borrows the state and the context for one turn.
pub type HandlerFn<F, P, R> = Arc<
    dyn for<'a> Fn(&'a mut F, &'a mut Context, P) -> BoxFuture<'a, Result<R, HandlerError>>
        + Send
        + Sync,
>;

/// A closure handler that never awaits: it runs whole in the turn, with no future to
/// allocate or poll.
pub type SyncHandlerFn<F, P, R> =
    Arc<dyn Fn(&mut F, &mut Context, P) -> Result<R, HandlerError> + Send + Sync>;

/// A closure handler as registered.
pub(crate) enum FnHandler<F, P, R> {
    Sync(SyncHandlerFn<F, P, R>),
    Async(HandlerFn<F, P, R>),
}

impl<F, P, R> Clone for FnHandler<F, P, R> {
    fn clone(&self) -> Self {
        match self {
            Self::Sync(f) => Self::Sync(f.clone()),
            Self::Async(f) => Self::Async(f.clone()),
        }
    }
}

struct Entry<F> {
    info: HandlerInfo,
    make: MakeEnvelope<F>,
    /// Reached only through the runtime's own deliveries (never a public call path,
    /// never listed).
    internal: bool,
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
                max_reply_bytes: 0,
            },
            make: Arc::new(make_json_envelope::<F, M>),
            internal: false,
        });
        self
    }

    /// Registers a handler written as a closure, with typed params `P` and reply `R`.
    /// Unknown fields in the params are refused at any depth, naming the field's path.
    pub fn add_fn<P, R>(
        &mut self,
        name: &'static str,
        description: &'static str,
        handler: HandlerFn<F, P, R>,
    ) -> &mut Self
    where
        P: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize + JsonSchema + Send + 'static,
    {
        self.push_fn(name, description, FnHandler::Async(handler), false)
    }

    /// [`Handlers::add_fn`] for a handler that never awaits. It runs whole in the turn,
    /// without a future: the cheaper choice when the handler has nothing to wait for.
    pub fn add_sync_fn<P, R>(
        &mut self,
        name: &'static str,
        description: &'static str,
        handler: SyncHandlerFn<F, P, R>,
    ) -> &mut Self
    where
        P: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize + JsonSchema + Send + 'static,
    {
        self.push_fn(name, description, FnHandler::Sync(handler), false)
    }

    /// [`Handlers::add_fn`] for a handler only the runtime itself sends letters to (the
    /// delivery of bus events): no public call path reaches it and listings omit it.
    pub(crate) fn add_internal_fn<P, R>(
        &mut self,
        name: &'static str,
        description: &'static str,
        handler: HandlerFn<F, P, R>,
    ) -> &mut Self
    where
        P: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize + JsonSchema + Send + 'static,
    {
        self.push_fn(name, description, FnHandler::Async(handler), true)
    }

    fn push_fn<P, R>(
        &mut self,
        name: &'static str,
        description: &'static str,
        handler: FnHandler<F, P, R>,
        internal: bool,
    ) -> &mut Self
    where
        P: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize + JsonSchema + Send + 'static,
    {
        if self.entries.iter().any(|e| e.info.name == name) {
            self.duplicates.push(name);
            return self;
        }
        // Unknown fields are refused at any depth, so the schema says so at every depth.
        let mut params_schema = schemars::schema_for!(P).to_value();
        close_objects(&mut params_schema);
        self.entries.push(Entry {
            info: HandlerInfo {
                name,
                description,
                params_schema,
                reply_schema: schemars::schema_for!(R).to_value(),
                max_reply_bytes: 0,
            },
            make: Arc::new(move |params, reply, caller| {
                let params: P = decode_params_strict(name, params)?;
                Ok(Box::new(FnLetter {
                    name,
                    handler: handler.clone(),
                    params,
                    reply,
                    caller,
                }) as Box<dyn Envelope<F>>)
            }),
            internal,
        });
        self
    }
}

/// Decodes JSON params and refuses any field the params type would ignore, at any depth,
/// naming its path (`unknown field `filter.extra``), and any struct given as an array.
/// Valid params decode once, without tracking paths (text straight into the type); only
/// invalid ones are decoded again, as a value, to name the offending field.
fn decode_params_strict<P: DeserializeOwned>(
    handler: &str,
    params: JsonParams<'_>,
) -> Result<P, CallError> {
    let decoded = match &params {
        JsonParams::Text(text) => super::unknown_fields::decode_text(text)
            .and_then(|(decoded, ignored)| (!ignored).then_some(decoded)),
        value => value
            .as_value()
            .and_then(super::unknown_fields::decode_ignoring_nothing),
    };
    match decoded {
        Some(decoded) => Ok(decoded),
        None => decode_params_strict_tracked(handler, params.into_value(handler)?),
    }
}

/// [`decode_params_strict`] past its fast path: decodes again, tracking paths. Out of
/// line, so that the valid params' path stays small.
#[cold]
#[inline(never)]
fn decode_params_strict_tracked<P: DeserializeOwned>(
    handler: &str,
    params: serde_json::Value,
) -> Result<P, CallError> {
    let mut unknown: Option<String> = None;
    let decoded = decode_params(handler, params, |de| {
        serde_ignored::deserialize(de, |path| {
            unknown.get_or_insert_with(|| field_path(&path));
        })
    })?;
    match unknown {
        Some(path) => Err(CallError::InvalidParams {
            handler: handler.to_owned(),
            message: format!("unknown field `{path}`"),
        }),
        None => Ok(decoded),
    }
}

/// Marks every object schema with named properties as closed (`additionalProperties:
/// false`) unless it says otherwise.
fn close_objects(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Array(items) => items.iter_mut().for_each(close_objects),
        serde_json::Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert(
                    "additionalProperties".into(),
                    serde_json::Value::Bool(false),
                );
            }
            for (keyword, value) in map.iter_mut() {
                match keyword.as_str() {
                    // Maps of name -> schema.
                    "properties" | "$defs" | "definitions" | "patternProperties" => {
                        if let serde_json::Value::Object(schemas) = value {
                            schemas.values_mut().for_each(close_objects);
                        }
                    }
                    // Data, not schemas.
                    "enum" | "const" | "default" | "examples" => {}
                    _ => close_objects(value),
                }
            }
        }
        _ => {}
    }
}

/// A field's path as serde_path_to_error writes it: `frame.depth`, `rects[0].colour`
/// (options and newtypes are transparent).
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// What the path-tracking decodes read: params, structs from objects only, with the path
/// of what is being read.
type Tracked<'t> =
    serde_path_to_error::Deserializer<'t, 't, ObjectsOnly<'static, serde_json::Value>>;

/// Decodes JSON `params` with `decode` over a [`Tracked`] deserializer, naming the
/// offending field on failure.
fn decode_params<P>(
    handler: &str,
    params: serde_json::Value,
    decode: impl FnOnce(Tracked<'_>) -> Result<P, serde_json::Error>,
) -> Result<P, CallError> {
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(ObjectsOnly::new(params), &mut track);
    decode(tracked).map_err(|inner| {
        let path = track.path().to_string();
        CallError::InvalidParams {
            handler: handler.to_owned(),
            message: if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            },
        }
    })
}

/// Decodes JSON params as the params type's own serde attributes say (typed messages),
/// structs from objects only; like the strict decode, only invalid params are decoded
/// again to name the field.
fn decode_params_lenient<P: DeserializeOwned>(
    handler: &str,
    params: JsonParams<'_>,
) -> Result<P, CallError> {
    let decoded = match &params {
        JsonParams::Text(text) => super::unknown_fields::decode_text(text).map(|(p, _)| p),
        value => value
            .as_value()
            .and_then(|value| P::deserialize(ObjectsOnly::new(value)).ok()),
    };
    match decoded {
        Some(decoded) => Ok(decoded),
        None => decode_params_lenient_tracked(handler, params.into_value(handler)?),
    }
}

/// [`decode_params_lenient`] past its fast path, out of line.
#[cold]
#[inline(never)]
fn decode_params_lenient_tracked<P: DeserializeOwned>(
    handler: &str,
    params: serde_json::Value,
) -> Result<P, CallError> {
    decode_params(handler, params, |de| P::deserialize(de))
}

fn make_json_envelope<F: Handler<M>, M: Message>(
    params: JsonParams<'_>,
    reply: Option<JsonReply>,
    caller: Caller,
) -> Result<Box<dyn Envelope<F>>, CallError> {
    let msg: M = decode_params_lenient(M::NAME, params)?;
    Ok(Box::new(Letter::<M, JsonReply>::new(msg, reply, caller)))
}

/// The frozen table a manager serves from.
pub(crate) struct HandlerTable<F> {
    entries: Vec<Entry<F>>,
    index: HashMap<&'static str, usize, foldhash::fast::RandomState>,
    /// The largest JSON reply a call may produce.
    pub(crate) max_reply_bytes: usize,
}

impl<F: Factory> HandlerTable<F> {
    /// Builds the factory's table, or names the handlers registered twice.
    pub(crate) fn build(max_reply_bytes: usize) -> Result<Self, Vec<&'static str>> {
        let mut handlers = Handlers::<F>::new();
        F::handlers(&mut handlers);
        if !handlers.duplicates.is_empty() {
            return Err(handlers.duplicates);
        }
        let mut entries = handlers.entries;
        for e in &mut entries {
            e.info.max_reply_bytes = max_reply_bytes;
        }
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.info.name, i))
            .collect();
        Ok(Self {
            entries,
            index,
            max_reply_bytes,
        })
    }

    /// The handlers callers may call (internal ones are not listed).
    pub(crate) fn infos(&self) -> impl Iterator<Item = &HandlerInfo> {
        self.entries.iter().filter(|e| !e.internal).map(|e| &e.info)
    }

    /// Decodes JSON params into a ready-to-send envelope (in the caller's task, so bad
    /// params never reach the instance). Internal handlers are unknown here.
    pub(crate) fn envelope(
        &self,
        handler: &str,
        params: JsonParams<'_>,
        reply: Option<JsonReply>,
        caller: Caller,
    ) -> Result<Box<dyn Envelope<F>>, CallError> {
        self.make(handler, false, params, reply, caller)
    }

    /// [`HandlerTable::envelope`] for an internal handler (the runtime's own deliveries).
    pub(crate) fn internal_envelope(
        &self,
        handler: &str,
        params: serde_json::Value,
        caller: Caller,
    ) -> Result<Box<dyn Envelope<F>>, CallError> {
        self.make(handler, true, params.into(), None, caller)
    }

    fn make(
        &self,
        handler: &str,
        internal: bool,
        params: JsonParams<'_>,
        reply: Option<JsonReply>,
        caller: Caller,
    ) -> Result<Box<dyn Envelope<F>>, CallError> {
        let entry = self
            .index
            .get(handler)
            .map(|&i| &self.entries[i])
            .filter(|e| e.internal == internal)
            .ok_or_else(|| CallError::UnknownHandler {
                handler: handler.to_owned(),
            })?;
        (entry.make)(params, reply, caller)
    }
}
