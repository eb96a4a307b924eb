//! Mailbox letters: a message plus where its reply goes, runnable against the state.
//!
//! One generic letter serves typed calls (the reply goes back as the Rust value) and JSON
//! calls (the reply is encoded first). Running a letter catches a panic in the handler and
//! answers the caller with [`CallError::Panicked`], so a crash never leaves a caller hanging.

use super::context::EffectBody;
use super::factory::{Handler, Message};
use super::handlers::FnHandler;
use crate::caller::Caller;
use crate::scope::journal::HeldReply;
use crate::telemetry::Outcome;
use crate::{CallError, Context};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::value::RawValue;
use std::any::{Any, TypeId};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::oneshot;

/// How a turn ended.
pub(crate) enum Turn {
    /// The handler returned (a reply or an error).
    Done(Outcome),
    /// The handler panicked with this message; the state is suspect.
    Panicked(String),
}

/// What running a letter gives: the turn already over (nothing in it awaited), or the
/// rest of it to await.
pub(crate) enum Ran<'a> {
    Now(Turn),
    Later(BoxFuture<'a, Turn>),
}

/// A letter in an instance's mailbox.
pub(crate) trait Envelope<F>: Send {
    /// The handler this letter is for.
    fn handler(&self) -> &'static str;
    /// Whether the handler is declared not to change the state.
    fn read_only(&self) -> bool {
        false
    }
    /// Runs the handler in the instance's turn and answers the caller.
    fn run<'a>(self: Box<Self>, state: &'a mut F, ctx: &'a mut Context) -> Ran<'a>;
    /// Answers the caller with `err` without running (the instance stopped first).
    /// Returns whether anybody was waiting for an answer.
    fn reject(self: Box<Self>, err: CallError) -> bool;
}

/// Where a reply goes.
pub(crate) trait ReplySlot<T>: Send + 'static {
    fn answer(self, handler: &'static str, result: Result<T, CallError>);
}

impl<T: Send + 'static> ReplySlot<T> for oneshot::Sender<Result<T, CallError>> {
    fn answer(self, _handler: &'static str, result: Result<T, CallError>) {
        let _ = self.send(result);
    }
}

/// A reply slot that encodes the reply as JSON, refusing one over the size limit: as a
/// JSON value (for callers that read it), or as JSON text (for callers that send it on,
/// such as a gateway, which then never build the value).
pub(crate) enum JsonReply {
    Value {
        tx: oneshot::Sender<Result<serde_json::Value, CallError>>,
        /// The largest encoded reply allowed, in bytes.
        limit: usize,
    },
    Text {
        tx: oneshot::Sender<Result<Box<RawValue>, CallError>>,
        limit: usize,
    },
    /// For a caller that wants the reply as a Rust type: the reply itself when it is of
    /// that type (`wanted`), never encoded; else as a JSON value.
    Typed {
        tx: oneshot::Sender<Result<AnyReply, CallError>>,
        wanted: TypeId,
        limit: usize,
    },
}

/// A reply for a caller that asked for a Rust type (see [`JsonReply::Typed`]).
#[doc(hidden)]
pub enum AnyReply {
    /// The handler's reply itself, of the type the caller asked for.
    Itself(Box<dyn Any + Send>),
    /// The reply as JSON, for the caller to decode.
    Json(serde_json::Value),
}

/// The receiving end of a [`JsonReply`].
pub(crate) type JsonReceiver<O> = oneshot::Receiver<Result<O, CallError>>;

impl JsonReply {
    /// A slot for the reply as a JSON value.
    pub(crate) fn value(limit: usize) -> (Self, JsonReceiver<serde_json::Value>) {
        let (tx, rx) = oneshot::channel();
        (Self::Value { tx, limit }, rx)
    }

    /// A slot for the reply as JSON text.
    pub(crate) fn text(limit: usize) -> (Self, JsonReceiver<Box<RawValue>>) {
        let (tx, rx) = oneshot::channel();
        (Self::Text { tx, limit }, rx)
    }

    /// A slot for the reply itself if it is of type `wanted`, else as a JSON value.
    pub(crate) fn typed(wanted: TypeId) -> impl FnOnce(usize) -> (Self, JsonReceiver<AnyReply>) {
        move |limit| {
            let (tx, rx) = oneshot::channel();
            (Self::Typed { tx, wanted, limit }, rx)
        }
    }
}

impl<T: Serialize + Send + 'static> ReplySlot<T> for JsonReply {
    fn answer(self, handler: &'static str, result: Result<T, CallError>) {
        match self {
            Self::Value { tx, limit } => {
                let _ = tx.send(encode_caught(handler, result, |r| {
                    encode_bounded(handler, r, limit)
                }));
            }
            Self::Text { tx, limit } => {
                let _ = tx.send(encode_caught(handler, result, |r| {
                    encode_text(handler, &r, limit)
                }));
            }
            Self::Typed { tx, wanted, limit } => {
                let _ = tx.send(match result {
                    Ok(reply) if wanted == TypeId::of::<T>() => {
                        Ok(AnyReply::Itself(Box::new(reply)))
                    }
                    result => encode_caught(handler, result, |r| {
                        encode_bounded(handler, r, limit).map(AnyReply::Json)
                    }),
                });
            }
        }
    }
}

/// Encodes a handler's reply. A reply's `Serialize` is user code: its panic is this
/// call's error.
fn encode_caught<T, O>(
    handler: &'static str,
    result: Result<T, CallError>,
    encode: impl FnOnce(T) -> Result<O, CallError>,
) -> Result<O, CallError> {
    let reply = result?;
    std::panic::catch_unwind(AssertUnwindSafe(|| encode(reply))).unwrap_or_else(|payload| {
        Err(encoding_failed(
            handler,
            format!("encoding panicked: {}", panic_message(&*payload)),
        ))
    })
}

/// A reply that could not be encoded (or, for a caller that asked for a type, decoded).
pub(crate) fn encoding_failed(handler: &str, why: impl std::fmt::Display) -> CallError {
    CallError::ReplyEncoding {
        handler: handler.to_owned(),
        message: why.to_string(),
    }
}

/// Encodes a reply as JSON text if it fits in `limit` bytes (a refused one was written
/// whole first, like a refused value).
fn encode_text<T: Serialize>(
    handler: &'static str,
    reply: &T,
    limit: usize,
) -> Result<Box<RawValue>, CallError> {
    let text = serde_json::value::to_raw_value(reply).map_err(|e| encoding_failed(handler, e))?;
    if text.get().len() > limit {
        return Err(CallError::ReplyTooLarge {
            handler: handler.to_owned(),
            limit,
        });
    }
    Ok(text)
}

/// Counts encoded bytes and fails as soon as they pass the budget.
struct Budget {
    left: usize,
}

impl std::io::Write for Budget {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.left = self
            .left
            .checked_sub(buf.len())
            .ok_or_else(|| std::io::Error::other("over budget"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An upper bound of `value`'s encoded size (every string byte counted as the longest
/// escape), cheap enough to take on every reply. Past `limit` (or past a nesting depth
/// it will not recurse into) it answers `usize::MAX`: count exactly.
fn encoded_bound(value: &serde_json::Value, limit: usize, depth: u32) -> usize {
    use serde_json::Value;
    let text = |s: &str| s.len().saturating_mul(6).saturating_add(2);
    let mut total: usize = 2;
    let mut add = |n: usize| {
        total = total.saturating_add(n);
        total <= limit
    };
    let within = match value {
        Value::Null | Value::Bool(_) => return 5,
        Value::Number(_) => return 24,
        Value::String(s) => return text(s),
        _ if depth > 64 => return usize::MAX,
        Value::Array(items) => items
            .iter()
            .all(|v| add(1) && add(encoded_bound(v, limit, depth + 1))),
        Value::Object(map) => map
            .iter()
            .all(|(k, v)| add(text(k) + 2) && add(encoded_bound(v, limit, depth + 1))),
    };
    if within { total } else { usize::MAX }
}

/// Encodes a reply as JSON if it fits in `limit` bytes. Most replies are far below the
/// limit and pass on a cheap upper bound of their size; only those near it are counted
/// exactly. (The reply is built as a JSON value first: a refused one costs its memory
/// once more, briefly.)
fn encode_bounded<T: Serialize + 'static>(
    handler: &'static str,
    reply: T,
    limit: usize,
) -> Result<serde_json::Value, CallError> {
    let value = into_json_value(reply).map_err(|e| encoding_failed(handler, e))?;
    if encoded_bound(&value, limit, 0) > limit
        && serde_json::to_writer(&mut Budget { left: limit }, &value).is_err()
    {
        return Err(CallError::ReplyTooLarge {
            handler: handler.to_owned(),
            limit,
        });
    }
    Ok(value)
}

/// `reply` as a JSON value. One that already is (a handler replying with a
/// `serde_json::Value`) is taken as it is: encoding it would copy it whole.
fn into_json_value<T: Serialize + 'static>(reply: T) -> serde_json::Result<serde_json::Value> {
    let mut reply = Some(reply);
    let any: &mut dyn Any = &mut reply;
    match any.downcast_mut::<Option<serde_json::Value>>() {
        Some(value) => Ok(value.take().unwrap_or_default()),
        // `Some(reply)` encodes as the reply itself.
        None => serde_json::to_value(&reply),
    }
}

/// A message, its optional reply slot (`None` for a tell) and who sent it.
pub(crate) struct Letter<M, R> {
    msg: M,
    reply: Option<R>,
    caller: Caller,
}

impl<M, R> Letter<M, R> {
    pub(crate) fn new(msg: M, reply: Option<R>, caller: Caller) -> Self {
        Self { msg, reply, caller }
    }
}

/// A letter for a closure handler (see [`super::handlers::Handlers::add_fn`]).
pub(crate) struct FnLetter<F, P, R> {
    pub(crate) name: &'static str,
    pub(crate) handler: FnHandler<F, P, R>,
    pub(crate) params: P,
    pub(crate) reply: Option<JsonReply>,
    pub(crate) caller: Caller,
}

impl<F, P, R> Envelope<F> for FnLetter<F, P, R>
where
    F: Send + 'static,
    P: Send + 'static,
    R: Serialize + Send + 'static,
{
    fn handler(&self) -> &'static str {
        self.name
    }

    fn run<'a>(self: Box<Self>, state: &'a mut F, ctx: &'a mut Context) -> Ran<'a> {
        let FnLetter {
            name,
            handler,
            params,
            reply,
            caller,
        } = *self;
        ctx.set_caller(Some(caller));
        match handler {
            FnHandler::Sync(handler) => {
                let result =
                    std::panic::catch_unwind(AssertUnwindSafe(|| handler(state, ctx, params)));
                Ran::Now(settle(name, reply, result, ctx))
            }
            FnHandler::Async(handler) => Ran::Later(Box::pin(async move {
                let result = AssertUnwindSafe(async { handler(state, &mut *ctx, params).await })
                    .catch_unwind()
                    .await;
                settle(name, reply, result, ctx)
            })),
        }
    }

    fn reject(self: Box<Self>, err: CallError) -> bool {
        match self.reply {
            Some(reply) => {
                ReplySlot::<R>::answer(reply, self.name, Err(err));
                true
            }
            None => false,
        }
    }
}

/// Answers the caller from a handler's caught result and says how the turn ended. In a
/// durable instance the answer is held in its journal until the turn is durable.
fn settle<T: Send + 'static, S: ReplySlot<T>>(
    name: &'static str,
    reply: Option<S>,
    result: Result<Result<T, crate::HandlerError>, Box<dyn std::any::Any + Send>>,
    ctx: &mut Context,
) -> Turn {
    let (answer, turn) = match result {
        Ok(Ok(value)) => (Ok(value), Turn::Done(Outcome::Ok)),
        Ok(Err(err)) => (Err(CallError::Handler(err)), Turn::Done(Outcome::Error)),
        Err(payload) => {
            let message = panic_message(&*payload);
            let err = CallError::Panicked {
                handler: name.to_owned(),
                message: message.clone(),
            };
            (Err(err), Turn::Panicked(message))
        }
    };
    if let Some(reply) = reply {
        if ctx.is_durable() {
            let held: HeldReply = Box::new(move |failure| {
                reply.answer(name, failure.map_or(answer, Err));
            });
            if let Err(held) = ctx.hold_reply(held) {
                held(None);
            }
        } else {
            reply.answer(name, answer);
        }
    }
    turn
}

/// A letter that runs one of the instance's effects in its turn.
pub(crate) struct EffectLetter {
    pub(crate) effect: Arc<crate::reactive::EffectInner>,
}

impl<F: crate::instance::factory::Factory> Envelope<F> for EffectLetter {
    fn handler(&self) -> &'static str {
        "__effect"
    }

    fn run<'a>(self: Box<Self>, state: &'a mut F, ctx: &'a mut Context) -> Ran<'a> {
        // Nobody sent it: the effect acts with the instance's own authority.
        ctx.set_caller(None);
        Ran::Now({
            let effect = self.effect;
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                effect.run_in_turn(|body| {
                    let Some(target) = state.effect_target() else {
                        return Err("the instance is not active".to_owned());
                    };
                    let Some(run) = body.downcast_ref::<EffectBody>() else {
                        return Err("the effect does not belong to an instance".to_owned());
                    };
                    run(target, ctx).map_err(|e| e.to_string())
                })
            }));
            match result {
                Ok(Ok(())) => Turn::Done(Outcome::Ok),
                Ok(Err(error)) => {
                    ctx.report_effect_error(error);
                    Turn::Done(Outcome::Error)
                }
                Err(payload) => Turn::Panicked(panic_message(&*payload)),
            }
        })
    }

    fn reject(self: Box<Self>, _: CallError) -> bool {
        true
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

impl<F, M, R> Envelope<F> for Letter<M, R>
where
    F: Handler<M>,
    M: Message,
    R: ReplySlot<M::Reply>,
{
    fn handler(&self) -> &'static str {
        M::NAME
    }

    fn read_only(&self) -> bool {
        M::READ_ONLY
    }

    fn run<'a>(self: Box<Self>, state: &'a mut F, ctx: &'a mut Context) -> Ran<'a> {
        let Letter { msg, reply, caller } = *self;
        ctx.set_caller(Some(caller));
        Ran::Later(Box::pin(async move {
            // The async block makes even a panic before the first await land in catch_unwind.
            let result = AssertUnwindSafe(async { state.handle(msg, &mut *ctx).await })
                .catch_unwind()
                .await;
            settle(M::NAME, reply, result, ctx)
        }))
    }

    fn reject(self: Box<Self>, err: CallError) -> bool {
        match self.reply {
            Some(reply) => {
                reply.answer(M::NAME, Err(err));
                true
            }
            None => false,
        }
    }
}
