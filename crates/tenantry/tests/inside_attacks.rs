//! Attacks from inside a tenant: a component running in one partition uses every public
//! API it can reach — from runnables (called by its tenant and by host code), from a
//! spawned task, from an effect and from its `create`/`activate` hooks — against another
//! tenant's config, credentials, storage, state, events and instances. Nothing it reads
//! may hold another tenant's data, and nothing it writes may change another tenant's
//! anything (or any config at all: tenant code never writes config).
//!
//! Every tenant's data carries a marker the attacker cannot guess, so a breach shows as
//! another tenant's marker in what the attacker observed, or as changed data afterwards.

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tenantry::component::{BusEvent, Component, NoParams, Runnables};
use tenantry::config::ConfigView;
use tenantry::kernel::{Grant, ServiceRef};
use tenantry::providers::{ConfigProvider, CredentialsProvider};
use tenantry::schemars::JsonSchema;
use tenantry::scope::Secret;
use tenantry::{
    Bus, Context, Factory, Handler, HandlerError, Handlers, Identity, InstanceHandle, Invoke,
    ManagerConfig, Message, Partition, Runtime,
};

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// What only tenant `t` and the host know.
fn mark(t: &str, what: &str) -> String {
    format!("{what}-{t}-q7Zr2x")
}

/// The markers of every tenant but `own`.
fn foreign_marks(own: &str) -> Vec<String> {
    TENANTS
        .iter()
        .filter(|t| **t != own)
        .flat_map(|t| ["db", "secret", "data", "note"].map(|w| mark(t, w)))
        .collect()
}

// ---- what attackers observed, per test run -------------------------------------------

#[derive(Default)]
struct RunLog {
    /// (attacker's partition, what it read or managed to do).
    seen: Vec<(String, String)>,
    /// Attacks that ran to the end.
    finished: usize,
}

static RUNS: Mutex<Option<HashMap<u64, RunLog>>> = Mutex::new(None);
static NEXT_RUN: AtomicU64 = AtomicU64::new(1);

fn report(run: u64, actor: &str, seen: Vec<String>) {
    let mut runs = RUNS.lock().unwrap();
    let log = runs
        .get_or_insert_with(HashMap::new)
        .entry(run)
        .or_default();
    log.seen
        .extend(seen.into_iter().map(|s| (actor.to_owned(), s)));
    log.finished += 1;
}

fn finished(run: u64) -> usize {
    RUNS.lock()
        .unwrap()
        .as_ref()
        .and_then(|r| r.get(&run))
        .map_or(0, |l| l.finished)
}

fn seen(run: u64) -> Vec<(String, String)> {
    RUNS.lock()
        .unwrap()
        .as_ref()
        .and_then(|r| r.get(&run))
        .map(|l| l.seen.clone())
        .unwrap_or_default()
}

// ---- a keyed agent with state in every tenant ------------------------------------------

#[derive(Serialize, Deserialize, Default)]
struct Note {
    text: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct SetNote {
    text: String,
}
impl Message for SetNote {
    const NAME: &'static str = "set";
    type Reply = ();
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct GetNote {}
impl Message for GetNote {
    const NAME: &'static str = "get";
    type Reply = String;
}

impl Factory for Note {
    const NAME: &'static str = "note";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<SetNote>().add::<GetNote>();
    }
}
impl Handler<SetNote> for Note {
    async fn handle(&mut self, m: SetNote, _: &mut Context) -> Result<(), HandlerError> {
        self.text = m.text;
        Ok(())
    }
}
impl Handler<GetNote> for Note {
    async fn handle(&mut self, _: GetNote, _: &mut Context) -> Result<String, HandlerError> {
        Ok(self.text.clone())
    }
}

// ---- the victim: a component per tenant with storage, a secret and events ---------------

struct Vault {
    alarms: u64,
    /// Events handled as coming from a privileged caller.
    privileged_alarms: u64,
}

fn herr(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::new(e.to_string())
}

impl Component for Vault {
    const FACTORY: &'static str = "vault";
    fn subscriptions() -> &'static [&'static str] {
        &["alarm.**"]
    }
    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self {
            alarms: 0,
            privileged_alarms: 0,
        })
    }
    async fn activate(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        let own = ctx.partition().to_string();
        ctx.storage()
            .map_err(herr)?
            .put("k", mark(&own, "data"))
            .await
            .map_err(herr)
    }
    fn on_event(&mut self, _: BusEvent, ctx: &mut Context) -> Result<(), HandlerError> {
        self.alarms += 1;
        self.privileged_alarms += u64::from(ctx.caller_is_privileged());
        Ok(())
    }
    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable_async("read", "Everything it holds.", |v, ctx, _: NoParams| {
            Box::pin(async move {
                let stored = ctx.storage().map_err(herr)?.get("k").await.map_err(herr)?;
                let token = ctx.credentials().map_err(herr)?.get("token");
                Ok(json!({
                    "storage": stored.map(|b| String::from_utf8_lossy(&b).into_owned()),
                    "token": token.map(|s| s.expose().to_owned()),
                    "secrets": ctx.credentials().map_err(herr)?.names(),
                    "alarms": v.alarms,
                    "privileged_alarms": v.privileged_alarms,
                }))
            })
        });
    }
}

// ---- the attacker ----------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Action {
    CallerViewRead,
    CallerViewWrite,
    OwnViewRead,
    OwnViewWrite,
    RawConfigGet,
    RawConfigSet,
    RawSecretSet,
    RawSecretNames,
    ServiceConfigSet,
    ServiceSecretSet,
    BusConfigSet,
    BusSecretSet,
    BusVaultByName,
    BusVaultByFactory,
    BusPublishIn,
    BusSubscribeIn,
    BusListHandlers,
    NoteWrite,
}

const ACTIONS: [Action; 18] = [
    Action::CallerViewRead,
    Action::CallerViewWrite,
    Action::OwnViewRead,
    Action::OwnViewWrite,
    Action::RawConfigGet,
    Action::RawConfigSet,
    Action::RawSecretSet,
    Action::RawSecretNames,
    Action::ServiceConfigSet,
    Action::ServiceSecretSet,
    Action::BusConfigSet,
    Action::BusSecretSet,
    Action::BusVaultByName,
    Action::BusVaultByFactory,
    Action::BusPublishIn,
    Action::BusSubscribeIn,
    Action::BusListHandlers,
    Action::NoteWrite,
];

/// Where the attacking code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Vector {
    /// In the runnable's turn.
    Runnable,
    /// In a task the runnable spawns.
    Spawned,
    /// In an effect the runnable registers (async actions from a task it spawns).
    Effect,
    /// In `create` (sync actions) and `activate` (async ones) of a hot-added instance.
    Hook,
}

const VECTORS: [Vector; 4] = [
    Vector::Runnable,
    Vector::Spawned,
    Vector::Effect,
    Vector::Hook,
];

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Attack {
    action: Action,
    victim: String,
    vector: Vector,
    run: u64,
}

/// Everything the attacker holds, taken from its context (so a spawned task has it too).
struct Tools {
    actor: String,
    bus: Result<Bus, String>,
    caller_view: Result<ConfigView, String>,
    own_view: Result<ConfigView, String>,
    config_svc: ServiceRef,
    cred_svc: ServiceRef,
    note: Option<InstanceHandle<Note>>,
}

fn tools(ctx: &Context) -> Tools {
    Tools {
        actor: ctx.partition().to_string(),
        bus: ctx.bus().map_err(|e| e.to_string()),
        caller_view: ctx.caller_config().map_err(|e| e.to_string()),
        own_view: ctx.config().map_err(|e| e.to_string()),
        config_svc: ctx.service("IConfig"),
        cred_svc: ctx.service("ICredentials"),
        note: None,
    }
}

fn shown(v: &Value) -> String {
    v.to_string()
}

impl Tools {
    /// The actions that need no await; `None` for the others.
    fn attack_sync(&self, a: &Attack) -> Option<Vec<String>> {
        let victim = &a.victim;
        let key = format!("tenants.{victim}.db_url");
        let mut seen = Vec::new();
        match a.action {
            Action::CallerViewRead | Action::OwnViewRead => {
                let view = if a.action == Action::CallerViewRead {
                    &self.caller_view
                } else {
                    &self.own_view
                };
                if let Ok(view) = view {
                    for k in [key.as_str(), "tenants", &format!("tenants.{victim}")] {
                        if let Ok(Some(v)) = view.get(k) {
                            seen.push(shown(&v));
                        }
                    }
                }
            }
            Action::CallerViewWrite | Action::OwnViewWrite => {
                let view = if a.action == Action::CallerViewWrite {
                    &self.caller_view
                } else {
                    &self.own_view
                };
                if let Ok(view) = view {
                    if view.set(&key, json!("postgres://evil")).is_ok() {
                        seen.push(format!("wrote {}", mark(victim, "db")));
                    }
                }
            }
            Action::BusPublishIn => {
                let victim = Partition::new(victim).unwrap();
                if let Ok(bus) = &self.bus {
                    if let Ok(n) = bus.publish_in(&victim, "alarm.fire", json!({})) {
                        if n > 0 {
                            seen.push(format!("delivered into {}", mark(&a.victim, "data")));
                        }
                    }
                }
            }
            Action::BusSubscribeIn => {
                let victim = Partition::new(victim).unwrap();
                if let Ok(bus) = &self.bus {
                    if bus.subscribe_in(&victim, "**").is_ok() {
                        seen.push(format!("subscribed in {}", mark(&a.victim, "data")));
                    }
                }
            }
            Action::BusListHandlers => {
                if let Ok(bus) = &self.bus {
                    for h in bus.handlers() {
                        if h.route.contains(victim.as_str()) {
                            seen.push(format!("listed {} as {}", mark(victim, "data"), h.route));
                        }
                    }
                }
            }
            _ => return None,
        }
        Some(seen)
    }

    async fn attack(&self, a: &Attack) -> Vec<String> {
        if let Some(seen) = self.attack_sync(a) {
            return seen;
        }
        let victim = a.victim.as_str();
        let key = format!("tenants.{victim}.db_url");
        let config_set = json!({"key": key, "value": "postgres://evil"});
        let secret_set = json!({
            "partition": victim, "instance": format!("vault-{victim}"),
            "name": "token", "value": "stolen",
        });
        let secret_scope = json!({"partition": victim, "instance": format!("vault-{victim}")});
        let wrote = |ok: bool, what: &str| ok.then(|| format!("wrote {}", mark(victim, what)));
        let mut seen = Vec::new();
        match a.action {
            Action::RawConfigGet => {
                if let Some((_, raw)) = self.config_svc.resolve() {
                    if let Ok(v) = raw.call_json_dyn("get", json!({"key": key}), None).await {
                        seen.push(shown(&v));
                    }
                }
            }
            Action::RawConfigSet => {
                if let Some((_, raw)) = self.config_svc.resolve() {
                    let r = raw.call_json_dyn("set", config_set, None).await;
                    seen.extend(wrote(r.is_ok(), "db"));
                }
            }
            Action::RawSecretSet => {
                if let Some((_, raw)) = self.cred_svc.resolve() {
                    let r = raw.call_json_dyn("set", secret_set, None).await;
                    seen.extend(wrote(r.is_ok(), "secret"));
                }
            }
            Action::RawSecretNames => {
                if let Some((_, raw)) = self.cred_svc.resolve() {
                    if let Ok(v) = raw.call_json_dyn("names", secret_scope, None).await {
                        seen.push(format!("names of {}: {v}", mark(victim, "secret")));
                    }
                }
            }
            Action::ServiceConfigSet => {
                let r = self.config_svc.call("set", config_set).await;
                seen.extend(wrote(r.is_ok(), "db"));
            }
            Action::ServiceSecretSet => {
                let r = self.cred_svc.call("set", secret_set).await;
                seen.extend(wrote(r.is_ok(), "secret"));
            }
            Action::BusConfigSet | Action::BusSecretSet => {
                if let Ok(bus) = &self.bus {
                    let (route, params) = if a.action == Action::BusConfigSet {
                        ("config.set", config_set)
                    } else {
                        ("credentials.set", secret_set)
                    };
                    for opts in [
                        Invoke::default(),
                        Invoke::target(&Partition::new(victim).unwrap()),
                    ] {
                        let r = bus.invoke(route, params.clone(), opts).await;
                        seen.extend(wrote(r.is_ok(), "db"));
                    }
                }
            }
            Action::BusVaultByName | Action::BusVaultByFactory => {
                if let Ok(bus) = &self.bus {
                    let (route, opts) = if a.action == Action::BusVaultByName {
                        (format!("vault-{victim}.read"), Invoke::default())
                    } else {
                        (
                            "vault.read".to_owned(),
                            Invoke::target(&Partition::new(victim).unwrap()),
                        )
                    };
                    if let Ok(v) = bus.invoke(&route, json!({}), opts).await {
                        seen.push(shown(&v));
                    }
                }
            }
            Action::NoteWrite => {
                if let Some(note) = &self.note {
                    let text = format!("pwned-by-{}", self.actor);
                    if note.call(SetNote { text }).await.is_ok() {
                        if let Ok(t) = note.call(GetNote {}).await {
                            seen.push(t);
                        }
                    }
                }
            }
            _ => {}
        }
        seen
    }
}

/// Runs `a` from `tools` now if it needs no await, else in a spawned task; reports either
/// way.
fn sync_now_or_spawn(tools: Tools, a: Attack) {
    match tools.attack_sync(&a) {
        Some(seen) => report(a.run, &tools.actor, seen),
        None => {
            tokio::spawn(async move {
                let seen = tools.attack(&a).await;
                report(a.run, &tools.actor, seen);
            });
        }
    }
}

struct Intruder {
    /// The attack its hooks carry out (hook vector).
    hook: Option<Attack>,
}

impl Component for Intruder {
    const FACTORY: &'static str = "intruder";
    fn requires() -> &'static [&'static str] {
        &["IConfig", "ICredentials"]
    }
    fn create(ctx: &Context) -> Result<Self, HandlerError> {
        let hook: Option<Attack> = ctx
            .properties()
            .get("hook")
            .map(|h| serde_json::from_value(h.clone()).map_err(herr))
            .transpose()?;
        if let Some(a) = &hook {
            // Sync actions right here; async ones wait for `activate`.
            let t = tools(ctx);
            if let Some(seen) = t.attack_sync(a) {
                report(a.run, &t.actor, seen);
            }
        }
        Ok(Self { hook })
    }
    async fn activate(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        if let Some(a) = self.hook.clone() {
            let mut t = tools(ctx);
            if t.attack_sync(&a).is_none() {
                t.note = ctx.get::<Note>("notes", "k").await.ok();
                let seen = t.attack(&a).await;
                report(a.run, &t.actor, seen);
            }
        }
        Ok(())
    }
    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable_async(
            "refusal",
            "How the config provider refuses a write from this tenant.",
            |_, ctx, _: NoParams| {
                Box::pin(async move {
                    let set = json!({"key": "shared.region", "value": "mars"});
                    match ctx.service("IConfig").call("set", set).await {
                        Err(tenantry::Error::Call(tenantry::CallError::Handler(h))) => {
                            Ok(format!("{:?}", h.kind))
                        }
                        other => Ok(format!("not refused as a handler: {other:?}")),
                    }
                })
            },
        );
        r.runnable_async("attack", "Attacks another tenant.", |_, ctx, a: Attack| {
            Box::pin(async move {
                let mut t = tools(ctx);
                t.note = ctx.get::<Note>("notes", "k").await.ok();
                match a.vector {
                    Vector::Runnable => {
                        let seen = t.attack(&a).await;
                        report(a.run, &t.actor, seen);
                    }
                    Vector::Spawned => {
                        let task = tokio::spawn(async move {
                            let seen = t.attack(&a).await;
                            report(a.run, &t.actor, seen);
                        });
                        task.await.map_err(herr)?;
                    }
                    Vector::Effect => {
                        // The effect runs after this turn, with nobody calling.
                        ctx.effect(move |_: &mut Intruder, ctx: &mut Context| {
                            let mut t = tools(ctx);
                            t.note = None;
                            sync_now_or_spawn(t, a.clone());
                            Ok(())
                        });
                    }
                    Vector::Hook => return Err(HandlerError::new("hooks run at hot_add")),
                }
                Ok(())
            })
        });
    }
}

// ---- the world -------------------------------------------------------------------------

async fn world() -> Runtime {
    world_with(Grant::None).await
}

/// The world, with the shared providers given `grant`.
async fn world_with(grant: Grant) -> Runtime {
    let rt = Runtime::in_memory();
    rt.register::<Note>("notes", ManagerConfig::default())
        .unwrap();
    let k = rt.kernel();
    k.register::<ConfigProvider>().unwrap();
    k.register::<CredentialsProvider>().unwrap();
    k.register::<Vault>().unwrap();
    k.register::<Intruder>().unwrap();
    let mut tenants = serde_json::Map::new();
    for t in TENANTS {
        tenants.insert(t.into(), json!({"db_url": mark(t, "db")}));
    }
    k.instantiate_with(
        "config",
        "config",
        json!({"defaults": {"tenants": tenants, "shared": {"region": "eu"}}}),
        grant,
    )
    .unwrap();
    k.instantiate_with("credentials", "credentials", json!({}), grant)
        .unwrap();
    for t in TENANTS {
        k.instantiate("vault", &format!("vault-{t}"), json!({"target": t}))
            .unwrap();
        k.instantiate("intruder", &format!("intruder-{t}"), json!({"target": t}))
            .unwrap();
    }
    let report = k.boot().await.unwrap();
    assert!(
        report.failed.is_empty() && report.blocked.is_empty(),
        "{report:?}"
    );
    let notes = rt.manager::<Note>("notes").unwrap();
    for t in TENANTS {
        let p = Partition::new(t).unwrap();
        k.credentials().set(
            &p,
            &format!("vault/vault-{t}"),
            "token",
            Secret::new(mark(t, "secret")),
        );
        let note = notes.get("k", &p).await.unwrap();
        note.call(SetNote {
            text: mark(t, "note"),
        })
        .await
        .unwrap();
    }
    rt
}

/// Who calls the attacker's runnable.
#[derive(Debug, Clone, Copy)]
enum Invoker {
    /// Its own tenant (an API key of that tenant).
    Tenant,
    /// Host code (an admin route, the embedding program).
    Host,
}

static HOOKS: AtomicU64 = AtomicU64::new(0);

/// Carries out one attack and waits until it has run to the end.
async fn carry_out(
    rt: &Runtime,
    actor: &str,
    victim: &str,
    action: Action,
    vector: Vector,
    invoker: Invoker,
    run: u64,
) {
    let before = finished(run);
    let a = Attack {
        action,
        victim: victim.to_owned(),
        vector,
        run,
    };
    if vector == Vector::Hook {
        let name = format!("intruder-hook-{}", HOOKS.fetch_add(1, Ordering::Relaxed));
        rt.kernel()
            .hot_add("intruder", &name, json!({"target": actor, "hook": a}))
            .await
            .unwrap();
        rt.kernel().hot_remove(&name).await.unwrap();
    } else {
        let bus = match invoker {
            Invoker::Tenant => rt.bus_for(&Partition::new(actor).unwrap()),
            Invoker::Host => rt.bus(),
        };
        bus.invoke(
            &format!("intruder-{actor}.attack"),
            serde_json::to_value(&a).unwrap(),
            Invoke::default(),
        )
        .await
        .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while finished(run) == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{action:?} via {vector:?} never finished"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What every tenant holds, read by the host.
async fn holdings(rt: &Runtime) -> Value {
    let mut out = serde_json::Map::new();
    let notes = rt.manager::<Note>("notes").unwrap();
    for t in TENANTS {
        let p = Partition::new(t).unwrap();
        let vault = rt
            .bus()
            .invoke(&format!("vault-{t}.read"), json!({}), Invoke::default())
            .await
            .unwrap();
        let note = notes
            .get("k", &p)
            .await
            .unwrap()
            .call(GetNote {})
            .await
            .unwrap();
        out.insert(t.into(), json!({"vault": vault, "note": note}));
    }
    out.insert("config".into(), rt.kernel().config().snapshot());
    Value::Object(out)
}

/// No attacker observed another tenant's marker.
fn breaches(run: u64) -> Vec<String> {
    seen(run)
        .into_iter()
        .filter(|(actor, s)| foreign_marks(actor).iter().any(|m| s.contains(m)))
        .map(|(actor, s)| format!("{actor} saw: {s}"))
        .collect()
}

/// The holdings every tenant should have after attacks by `actors`: unchanged, except
/// that an attacker may write its own note.
fn holdings_unchanged(before: &Value, after: &Value) -> Result<(), String> {
    if before["config"] != after["config"] {
        return Err(format!(
            "config changed:\n{:#}\n->\n{:#}",
            before["config"], after["config"]
        ));
    }
    for t in TENANTS {
        if before[t]["vault"] != after[t]["vault"] {
            return Err(format!(
                "{t}'s vault changed: {} -> {}",
                before[t]["vault"], after[t]["vault"]
            ));
        }
        let note = after[t]["note"].as_str().unwrap_or_default();
        if note != mark(t, "note") && note != format!("pwned-by-{t}") {
            return Err(format!("{t}'s note became {note:?}"));
        }
    }
    Ok(())
}

/// Every action from every place, by acme against globex, called by acme and by host code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_action_from_any_place_in_a_tenant_reaches_another_tenant() {
    every_action_from_every_place(world().await).await;
}

/// The same when the shared providers hold the admin grant: they still serve a tenant
/// within that tenant's reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_granted_providers_still_serve_a_tenant_within_its_reach() {
    every_action_from_every_place(world_with(Grant::Admin).await).await;
}

async fn every_action_from_every_place(rt: Runtime) {
    let before = holdings(&rt).await;
    let mut failures = Vec::new();
    for vector in VECTORS {
        for invoker in [Invoker::Tenant, Invoker::Host] {
            if vector == Vector::Hook && matches!(invoker, Invoker::Host) {
                continue; // hooks have no invoker
            }
            for action in ACTIONS {
                let run = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
                carry_out(&rt, "acme", "globex", action, vector, invoker, run).await;
                let found = breaches(run);
                if !found.is_empty() {
                    failures.push(format!(
                        "{action:?} via {vector:?} called by {invoker:?}: {found:?}"
                    ));
                }
                let after = holdings(&rt).await;
                if let Err(e) = holdings_unchanged(&before, &after) {
                    failures.push(format!(
                        "{action:?} via {vector:?} called by {invoker:?}: {e}"
                    ));
                    break;
                }
            }
        }
    }
    assert!(failures.is_empty(), "breaches:\n{}", failures.join("\n"));
}

/// The attacker still reads what is its own: the shared keys and its own tenant's config,
/// through both views, and its own note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_still_reads_its_own_config_and_state() {
    let rt = world().await;
    for vector in [Vector::Runnable, Vector::Effect, Vector::Hook] {
        let run = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        for action in [Action::CallerViewRead, Action::OwnViewRead] {
            carry_out(&rt, "acme", "acme", action, vector, Invoker::Tenant, run).await;
        }
        let own = mark("acme", "db");
        let seen = seen(run);
        assert_eq!(
            seen.iter().filter(|(_, s)| s.contains(&own)).count(),
            6,
            "{vector:?}: {seen:?}"
        );
    }
}

/// An event a tenant publishes is handled as coming from that tenant, and nobody but the
/// bus can deliver one.
#[tokio::test]
async fn events_are_handled_as_coming_from_their_publisher() {
    let rt = world().await;
    let acme = Partition::new("acme").unwrap();
    let published = rt.bus_for(&acme).publish("alarm.fire", json!({})).unwrap();
    assert_eq!(published, 1);
    rt.bus().publish_in(&acme, "alarm.fire", json!({})).unwrap();
    let vault = loop {
        let v = rt
            .bus()
            .invoke("vault-acme.read", json!({}), Invoke::default())
            .await
            .unwrap();
        if v["alarms"] == 2 {
            break v;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(
        vault["privileged_alarms"], 1,
        "only the host's event is privileged"
    );
    // The event runnable is no call path's: not the bus's, not a handle's.
    let r = rt
        .bus()
        .invoke(
            "vault-acme.__event",
            json!({"topic": "alarm.x", "payload": {}}),
            Invoke::default(),
        )
        .await;
    assert!(r.is_err(), "{r:?}");
    let handle = rt.kernel().service("IConfig", &acme).resolve().unwrap().1;
    let r = handle
        .call_json_dyn("__event", json!({"topic": "t", "payload": {}}), None)
        .await;
    assert!(
        matches!(r, Err(tenantry::CallError::UnknownHandler { .. })),
        "{r:?}"
    );
}

/// A provider that refuses a tenant says it is forbidden (403), not that the request
/// was invalid (422).
#[tokio::test]
async fn a_providers_refusal_of_a_tenant_is_forbidden() {
    let rt = world().await;
    let kind = rt
        .bus_for(&Partition::new("acme").unwrap())
        .invoke("intruder-acme.refusal", json!({}), Invoke::default())
        .await
        .unwrap();
    assert_eq!(kind, json!("Forbidden"));
}

#[derive(Debug, Clone)]
struct Op {
    actor: usize,
    victim_offset: usize,
    action: Action,
    vector: Vector,
    by_host: bool,
}

fn op() -> impl Strategy<Value = Op> {
    (
        0..3usize,
        1..3usize,
        prop::sample::select(ACTIONS.to_vec()),
        prop::sample::select(VECTORS.to_vec()),
        any::<bool>(),
    )
        .prop_map(|(actor, victim_offset, action, vector, by_host)| Op {
            actor,
            victim_offset,
            action,
            vector,
            by_host,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// Random sequences of attacks across three tenants: no read returns another tenant's
    /// data and no write changes anything of another tenant (nor any config).
    #[test]
    fn attack_sequences_never_cross_tenants(ops in prop::collection::vec(op(), 1..12)) {
        let tokio_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        tokio_rt.block_on(async {
            let rt = world().await;
            let before = holdings(&rt).await;
            let run = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
            for op in &ops {
                let actor = TENANTS[op.actor];
                let victim = TENANTS[(op.actor + op.victim_offset) % 3];
                let invoker = if op.by_host { Invoker::Host } else { Invoker::Tenant };
                carry_out(&rt, actor, victim, op.action, op.vector, invoker, run).await;
            }
            let found = breaches(run);
            prop_assert!(found.is_empty(), "breaches: {:?}", found);
            let after = holdings(&rt).await;
            prop_assert!(holdings_unchanged(&before, &after).is_ok(), "{:?}", holdings_unchanged(&before, &after));
            Ok(())
        })?;
    }
}
