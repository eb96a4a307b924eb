//! The shared half of an instance: its mailbox sender, liveness and the handles to it.
//!
//! Calls go through [`Cell::call`]: when the instance is idle the caller runs the turn
//! itself (see [`super::runner`]); tells and control mail only queue.

use super::envelope::{AnyReply, Envelope, JsonReceiver, JsonReply, Letter};
use super::factory::{Factory, Handler, Message};
use super::handlers::HandlerTable;
use super::json_params::JsonParams;
use super::mailbox::{Delivered, Mailbox, Queued, SendError};
use super::runner::{self, Runner};
use crate::caller::{CallAs, Caller};
use crate::telemetry::StopReason;
use crate::{CallError, Error, Identity};
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use std::any::TypeId;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What an instance's mailbox carries.
pub(crate) enum Mail<F> {
    /// A message for a handler.
    Letter(Box<dyn Envelope<F>>),
    /// Hibernate and stop; the reply says whether the checkpoint was written.
    Stop {
        reason: StopReason,
        reply: Option<oneshot::Sender<Result<(), Error>>>,
    },
}

/// Liveness shared by the actor, its handles and keep-alive owners.
pub(crate) struct Liveness {
    /// Number of keep-alive owners attached.
    pub(crate) owners: AtomicUsize,
    /// Milliseconds since `epoch` of the last message, touch or detach.
    pub(crate) last_active_ms: AtomicU64,
    pub(crate) epoch: Instant,
}

impl Liveness {
    pub(crate) fn new(epoch: Instant) -> Self {
        let live = Self {
            owners: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            epoch,
        };
        live.touch();
        live
    }

    pub(crate) fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn last_active(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed))
    }

    /// How long the instance has been idle with no keep-alive owner, if `timeout` or
    /// longer.
    pub(crate) fn idle_for(&self, timeout: Duration) -> Option<Duration> {
        if self.owners.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle_for = Instant::now().saturating_duration_since(self.last_active());
        (idle_for >= timeout).then_some(idle_for)
    }
}

/// What a keep-alive needs of an instance, without its factory type.
pub(crate) trait Alive: Send + Sync {
    fn liveness(&self) -> &Liveness;
}

pub(crate) struct Cell<F: Factory> {
    pub(crate) identity: Arc<Identity>,
    /// The mailbox, and the actor while it is parked there.
    pub(crate) mailbox: Mailbox<Mail<F>, Box<dyn Runner<F>>>,
    pub(crate) live: Liveness,
    pub(crate) table: Arc<HandlerTable<F>>,
    pub(crate) call_timeout: Duration,
    /// Where the actor's task runs when it has one.
    pub(crate) runtime: tokio::runtime::Handle,
}

impl<F: Factory> Cell<F> {
    fn refused(&self, e: SendError<Mail<F>>) -> CallError {
        match e {
            SendError::Full(_) => CallError::MailboxFull {
                capacity: self.mailbox.capacity(),
            },
            SendError::Closed(_) => CallError::Stopped,
        }
    }

    fn queued(self: &Arc<Self>, queued: Queued) {
        if queued == Queued::Kick {
            runner::kick(self.clone());
        }
    }

    /// Queues a letter (a tell): the actor runs it when it gets to it.
    pub(crate) fn post(self: &Arc<Self>, mail: Mail<F>) -> Result<(), CallError> {
        let queued = self.mailbox.try_send(mail).map_err(|e| self.refused(e))?;
        self.queued(queued);
        Ok(())
    }

    /// Queues a call's letter and waits for its reply; if the instance is idle and this
    /// thread may, runs it first (with anything queued ahead of it), so the reply is ready
    /// at once.
    /// With `queued` it only queues (see `Invoke::queued`).
    async fn call<T>(
        self: &Arc<Self>,
        mail: Mail<F>,
        rx: oneshot::Receiver<Result<T, CallError>>,
        timeout: Duration,
        queued: bool,
    ) -> Result<T, CallError> {
        self.send_call(mail, rx, timeout, queued)?.reply().await
    }

    /// [`Cell::call`] up to the wait: the letter is in (and answered, if its turn ran
    /// here); the reply is left to wait for.
    fn send_call<T>(
        self: &Arc<Self>,
        mail: Mail<F>,
        rx: oneshot::Receiver<Result<T, CallError>>,
        timeout: Duration,
        queued: bool,
    ) -> Result<Pending<T>, CallError> {
        let handed_off = if queued || !runner::may_run_here() {
            self.post(mail)?;
            true
        } else {
            match self.mailbox.deliver(mail).map_err(|e| self.refused(e))? {
                Delivered::Run { actor, turns } => runner::run_here(actor, turns, &self.runtime),
                // The actor is running and will see the letter.
                Delivered::Queued(queued) => {
                    self.queued(queued);
                    false
                }
            }
        };
        Ok(Pending {
            rx,
            timeout,
            handed_off,
        })
    }

    /// Queues control mail (stops, effects), past the mailbox bound; `Err` once closed.
    pub(crate) fn post_control(self: &Arc<Self>, mail: Mail<F>) -> Result<(), ()> {
        let queued = self.mailbox.send_control(mail).map_err(|_| ())?;
        self.queued(queued);
        Ok(())
    }
}

impl<F: Factory> Alive for Cell<F> {
    fn liveness(&self) -> &Liveness {
        &self.live
    }
}

/// A keep-alive owner: while any is attached the instance is never idle-hibernated.
/// Dropping it (or the owner going away with it) detaches and restarts the idle clock.
#[must_use = "dropping a KeepAlive detaches at once"]
pub struct KeepAlive {
    target: Arc<dyn Alive>,
}

impl KeepAlive {
    /// Detaches explicitly (the same as dropping it).
    pub fn detach(self) {}
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        let live = self.target.liveness();
        live.touch();
        live.owners.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeepAlive")
    }
}

/// A handle to a live instance of factory `F`. Cheap to clone.
///
/// A handle carries the authority of whoever it was handed to: host code gets host
/// handles from its managers, an instance gets handles bound to its own identity from
/// [`Context::get`](crate::Context::get). Every letter sent through it is stamped with
/// that [`Caller`]; the handler sees it as [`Context::caller`](crate::Context::caller).
pub struct InstanceHandle<F: Factory> {
    pub(crate) cell: Arc<Cell<F>>,
    caller: Caller,
}

impl<F: Factory> Clone for InstanceHandle<F> {
    fn clone(&self) -> Self {
        Self {
            cell: self.cell.clone(),
            caller: self.caller.clone(),
        }
    }
}

impl<F: Factory> std::fmt::Debug for InstanceHandle<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InstanceHandle({})", self.cell.identity)
    }
}

impl<F: Factory> InstanceHandle<F> {
    /// A host handle (what a manager gives the code holding the runtime).
    pub(crate) fn host(cell: Arc<Cell<F>>) -> Self {
        Self {
            cell,
            caller: Caller::host(),
        }
    }

    /// The same instance, calling as `caller`.
    pub(crate) fn bound(&self, caller: Caller) -> Self {
        Self {
            cell: self.cell.clone(),
            caller,
        }
    }

    /// Who calls through this handle.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The instance's identity.
    pub fn identity(&self) -> &Identity {
        &self.cell.identity
    }

    /// Whether the instance still accepts messages.
    pub fn is_alive(&self) -> bool {
        self.cell.mailbox.is_accepting()
    }

    /// Whether two handles point to the same incarnation.
    pub fn same_instance(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }

    fn post(&self, mail: Mail<F>) -> Result<(), CallError> {
        self.cell.post(mail)
    }

    /// Calls the handler of `M` and waits for its reply (the manager's call timeout).
    pub async fn call<M: Message>(&self, msg: M) -> Result<M::Reply, CallError>
    where
        F: Handler<M>,
    {
        self.call_with_timeout(msg, self.cell.call_timeout).await
    }

    /// Calls the handler of `M` with an explicit timeout.
    pub async fn call_with_timeout<M: Message>(
        &self,
        msg: M,
        timeout: Duration,
    ) -> Result<M::Reply, CallError>
    where
        F: Handler<M>,
    {
        let (tx, rx) = oneshot::channel();
        let letter = Letter::new(msg, Some(tx), self.caller.clone());
        self.cell
            .call(Mail::Letter(Box::new(letter)), rx, timeout, false)
            .await
    }

    /// Queues `msg` without waiting for a reply. A full mailbox is an error.
    pub fn tell<M: Message>(&self, msg: M) -> Result<(), CallError>
    where
        F: Handler<M>,
    {
        self.post(Mail::Letter(Box::new(
            Letter::<M, oneshot::Sender<_>>::new(msg, None, self.caller.clone()),
        )))
    }

    /// Calls a handler by name with JSON params; the reply comes back as JSON.
    /// Params are decoded before queuing, so invalid params never reach the instance.
    /// They may be a value, a lent one (`&value`: the handler only reads them) or JSON
    /// text (see [`JsonParams`]). Like every call, the letter is sent when the future is
    /// first polled.
    pub async fn call_json(
        &self,
        handler: &str,
        params: impl Into<JsonParams<'_>>,
    ) -> Result<serde_json::Value, CallError> {
        self.call_json_with_timeout(handler, params, self.cell.call_timeout)
            .await
    }

    /// [`InstanceHandle::call_json`] with an explicit timeout.
    pub async fn call_json_with_timeout(
        &self,
        handler: &str,
        params: impl Into<JsonParams<'_>>,
        timeout: Duration,
    ) -> Result<serde_json::Value, CallError> {
        self.call_json_stamped(
            handler,
            params.into(),
            timeout,
            self.caller.clone(),
            false,
            JsonReply::value,
        )
        .await
    }

    /// A JSON call as `caller`, its reply in the form `slot` makes: the params are
    /// checked now, the letter goes in when the future is first polled.
    fn call_json_stamped<O: Send + 'static>(
        &self,
        handler: &str,
        params: JsonParams<'_>,
        timeout: Duration,
        caller: Caller,
        queued: bool,
        slot: impl FnOnce(usize) -> (JsonReply, JsonReceiver<O>),
    ) -> impl Future<Output = Result<O, CallError>> + Send + 'static {
        let letter = self.json_letter(handler, params, caller, slot);
        let cell = self.cell.clone();
        async move {
            let (mail, rx) = letter?;
            cell.call(mail, rx, timeout, queued).await
        }
    }

    /// A JSON call as `caller` sent now, for the dyn handle: its letter goes in (its turn
    /// runs here if the instance is idle and `queued` is false) before this returns; no
    /// `timeout` means the manager's.
    fn send_json_now<O: Send + 'static>(
        &self,
        handler: &str,
        params: JsonParams<'_>,
        timeout: Option<Duration>,
        caller: Caller,
        queued: bool,
        slot: impl FnOnce(usize) -> (JsonReply, JsonReceiver<O>),
    ) -> Result<Pending<O>, CallError> {
        let (mail, rx) = self.json_letter(handler, params, caller, slot)?;
        let timeout = timeout.unwrap_or(self.cell.call_timeout);
        self.cell.send_call(mail, rx, timeout, queued)
    }

    /// The letter of a JSON call as `caller` (its params decoded now), and where its
    /// reply, in the form `slot` makes, will come.
    fn json_letter<O>(
        &self,
        handler: &str,
        params: JsonParams<'_>,
        caller: Caller,
        slot: impl FnOnce(usize) -> (JsonReply, JsonReceiver<O>),
    ) -> Result<(Mail<F>, JsonReceiver<O>), CallError> {
        let (reply, rx) = slot(self.cell.table.max_reply_bytes);
        let letter = self
            .cell
            .table
            .envelope(handler, params, Some(reply), caller)?;
        Ok((Mail::Letter(letter), rx))
    }

    /// Queues a JSON message by handler name without waiting. The params are decoded
    /// now, so they may be lent (see [`InstanceHandle::call_json`]).
    pub fn tell_json<'p>(
        &self,
        handler: &str,
        params: impl Into<JsonParams<'p>>,
    ) -> Result<(), CallError> {
        let letter = self
            .cell
            .table
            .envelope(handler, params.into(), None, self.caller.clone())?;
        self.post(Mail::Letter(letter))
    }

    /// Attaches a keep-alive owner; the instance is not idle-hibernated while it lives.
    pub fn attach(&self) -> KeepAlive {
        self.cell.live.owners.fetch_add(1, Ordering::AcqRel);
        self.cell.live.touch();
        KeepAlive {
            target: self.cell.clone(),
        }
    }

    /// Resets the idle timer as if a message had been handled.
    pub fn touch(&self) {
        self.cell.live.touch();
    }

    /// Number of keep-alive owners attached.
    pub fn owners(&self) -> usize {
        self.cell.live.owners.load(Ordering::Acquire)
    }
}

/// A call whose letter is in: its reply, or the wait for it. What the bus gets from an
/// instance without its factory type, so that the wait needs no boxed future (the
/// awaiting future holds the wait's timer state itself, about a hundred bytes more than
/// a box's pointer, where a box cost an allocation per call).
#[doc(hidden)]
#[must_use = "the reply is only read by awaiting `reply`"]
pub struct Pending<T> {
    rx: oneshot::Receiver<Result<T, CallError>>,
    timeout: Duration,
    /// Whether the turn was left to a task (see `reply`).
    handed_off: bool,
}

impl<T> Pending<T> {
    /// The reply, waiting at most the call's timeout for it.
    pub async fn reply(self) -> Result<T, CallError> {
        // A kick spawned for the letter (or the loop handed to its task) waits in this
        // worker's LIFO slot, which no other worker may steal; yielding once lets it run
        // now, and this caller's own remaining work goes to the back of the queue, where
        // an idle worker can take it. The reply is then usually there when the caller
        // resumes, and no timer is armed for it.
        if self.handed_off {
            tokio::task::yield_now().await;
        }
        await_reply(self.rx, self.timeout).await
    }
}

async fn await_reply<T>(
    mut rx: oneshot::Receiver<Result<T, CallError>>,
    timeout: Duration,
) -> Result<T, CallError> {
    // A turn run in place has answered already: no timer to arm.
    match rx.try_recv() {
        Ok(result) => return result,
        Err(oneshot::error::TryRecvError::Closed) => return Err(CallError::Stopped),
        Err(oneshot::error::TryRecvError::Empty) => {}
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result,
        // The letter was dropped unanswered: the instance stopped before running it.
        Ok(Err(_)) => Err(CallError::Stopped),
        Err(_) => Err(CallError::Timeout(timeout)),
    }
}

/// A live instance without its factory type: what the bus and the gateway hold.
///
/// Like [`InstanceHandle`], it calls with the authority of whoever it was handed to
/// (host code, or the instance that resolved it). Only the runtime implements it.
pub trait AnyInstance: Send + Sync {
    /// The instance's identity.
    fn identity(&self) -> &Identity;
    /// The factory's name.
    fn factory(&self) -> &'static str;
    /// Calls a handler by name with JSON params (sent when the future is first polled).
    fn call_json_dyn(
        &self,
        handler: &str,
        params: serde_json::Value,
        timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<serde_json::Value, CallError>>;
    /// Queues a JSON message by handler name.
    fn tell_json_dyn(&self, handler: &str, params: serde_json::Value) -> Result<(), CallError>;
    /// Who calls through this handle.
    fn caller(&self) -> &Caller;
    /// Whether it still accepts messages.
    fn is_alive(&self) -> bool;
    /// Like `call_json_dyn`, on behalf of the caller the runtime proved (the bus), and
    /// sent at once: the letter is in (its turn run here if the instance is idle, unless
    /// `queued`) when this returns, and [`Pending::reply`] waits for the answer.
    #[doc(hidden)]
    fn call_json_as(
        &self,
        handler: &str,
        params: JsonParams<'_>,
        timeout: Option<Duration>,
        caller: CallAs,
        queued: bool,
    ) -> Result<Pending<serde_json::Value>, CallError>;
    /// [`AnyInstance::call_json_as`] with the reply as JSON text, for callers that send
    /// it on: encoded once, never built as a JSON value.
    #[doc(hidden)]
    fn call_text_as(
        &self,
        handler: &str,
        params: JsonParams<'_>,
        timeout: Option<Duration>,
        caller: CallAs,
        queued: bool,
    ) -> Result<Pending<Box<RawValue>>, CallError>;
    /// [`AnyInstance::call_json_as`] for a caller that wants the reply as the Rust type
    /// `wanted`: a reply of that type comes as itself, never encoded; any other as JSON.
    #[doc(hidden)]
    fn call_typed_as(
        &self,
        handler: &str,
        params: JsonParams<'_>,
        timeout: Option<Duration>,
        caller: CallAs,
        queued: bool,
        wanted: TypeId,
    ) -> Result<Pending<AnyReply>, CallError>;
    /// The same instance, calling as the caller the runtime proved (service resolution).
    #[doc(hidden)]
    fn bound_as(&self, caller: CallAs) -> Arc<dyn AnyInstance>;
    /// Queues a letter for an internal handler (the bus's event delivery), sent by the
    /// caller the runtime proved.
    #[doc(hidden)]
    fn tell_internal(
        &self,
        handler: &str,
        params: serde_json::Value,
        sender: CallAs,
    ) -> Result<(), CallError>;
}

impl<F: Factory> AnyInstance for InstanceHandle<F> {
    fn identity(&self) -> &Identity {
        InstanceHandle::identity(self)
    }

    fn factory(&self) -> &'static str {
        F::NAME
    }

    fn call_json_dyn(
        &self,
        handler: &str,
        params: serde_json::Value,
        timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<serde_json::Value, CallError>> {
        let timeout = timeout.unwrap_or(self.cell.call_timeout);
        let caller = self.caller.clone();
        let call = self.call_json_stamped(
            handler,
            params.into(),
            timeout,
            caller,
            false,
            JsonReply::value,
        );
        Box::pin(call)
    }

    fn tell_json_dyn(&self, handler: &str, params: serde_json::Value) -> Result<(), CallError> {
        self.tell_json(handler, params)
    }

    fn caller(&self) -> &Caller {
        InstanceHandle::caller(self)
    }

    fn is_alive(&self) -> bool {
        InstanceHandle::is_alive(self)
    }

    fn call_json_as(
        &self,
        handler: &str,
        params: JsonParams<'_>,
        timeout: Option<Duration>,
        caller: CallAs,
        queued: bool,
    ) -> Result<Pending<serde_json::Value>, CallError> {
        self.send_json_now(handler, params, timeout, caller.0, queued, JsonReply::value)
    }

    fn call_text_as(
        &self,
        handler: &str,
        params: JsonParams<'_>,
        timeout: Option<Duration>,
        caller: CallAs,
        queued: bool,
    ) -> Result<Pending<Box<RawValue>>, CallError> {
        self.send_json_now(handler, params, timeout, caller.0, queued, JsonReply::text)
    }

    fn call_typed_as(
        &self,
        handler: &str,
        params: JsonParams<'_>,
        timeout: Option<Duration>,
        caller: CallAs,
        queued: bool,
        wanted: TypeId,
    ) -> Result<Pending<AnyReply>, CallError> {
        let slot = JsonReply::typed(wanted);
        self.send_json_now(handler, params, timeout, caller.0, queued, slot)
    }

    fn bound_as(&self, caller: CallAs) -> Arc<dyn AnyInstance> {
        Arc::new(self.bound(caller.0))
    }

    fn tell_internal(
        &self,
        handler: &str,
        params: serde_json::Value,
        sender: CallAs,
    ) -> Result<(), CallError> {
        let letter = self
            .cell
            .table
            .internal_envelope(handler, params, sender.0)?;
        self.post(Mail::Letter(letter))
    }
}

impl std::fmt::Debug for dyn AnyInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnyInstance({})", self.identity())
    }
}
