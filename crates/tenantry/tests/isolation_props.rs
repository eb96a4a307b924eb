//! Property: random sequences of hot add/remove and invocations across partitions never
//! deliver a call to another partition's instance, and never let an instance read or
//! write another instance's storage or credentials. Calls repeat between changes, so
//! routes the bus resolved before (and keeps) are checked against every change too.

use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tenantry::component::{Component, NoParams, Runnables};
use tenantry::schemars::JsonSchema;
use tenantry::scope::Secret;
use tenantry::{Context, Error, HandlerError, Invoke, Partition, Runtime};

const PARTITIONS: [&str; 3] = ["alpha", "beta", "gamma"];

#[derive(Deserialize, JsonSchema)]
struct Write {
    value: String,
}

struct Probe;

fn herr(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::new(e.to_string())
}

impl Component for Probe {
    const FACTORY: &'static str = "probe";
    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self)
    }
    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable("where", "Names itself.", |_, ctx, _: NoParams| {
            Ok(json!({"partition": ctx.partition().to_string(), "name": ctx.key().to_string()}))
        });
        r.runnable("secret", "Reads its token.", |_, ctx, _: NoParams| {
            Ok(ctx
                .credentials()
                .map_err(herr)?
                .get("token")
                .map(|s| s.expose().to_owned()))
        });
        r.runnable_async("write", "Writes its storage.", |_, ctx, w: Write| {
            Box::pin(async move {
                ctx.storage()
                    .map_err(herr)?
                    .put("k", w.value)
                    .await
                    .map_err(herr)
            })
        });
        r.runnable_async("read", "Reads its storage.", |_, ctx, _: NoParams| {
            Box::pin(async move {
                let v = ctx.storage().map_err(herr)?.get("k").await.map_err(herr)?;
                Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
            })
        });
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add {
        probe: usize,
        partition: usize,
    },
    Remove {
        probe: usize,
    },
    ByName {
        caller: usize,
        probe: usize,
        action: usize,
        value: u8,
    },
    ByFactory {
        caller: usize,
        target: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..PROBES, 0..3usize).prop_map(|(probe, partition)| Op::Add { probe, partition }),
        (0..PROBES).prop_map(|probe| Op::Remove { probe }),
        (0..3usize, 0..PROBES, 0..4usize, any::<u8>()).prop_map(
            |(caller, probe, action, value)| Op::ByName {
                caller,
                probe,
                action,
                value
            }
        ),
        (0..3usize, 0..3usize).prop_map(|(caller, target)| Op::ByFactory { caller, target }),
    ]
}

fn part(i: usize) -> Partition {
    Partition::new(PARTITIONS[i]).unwrap()
}

/// Probes `0..4` are `probe-<i>`; the last one is named like its factory.
const PROBES: usize = 5;

fn probe_name(probe: usize) -> String {
    match probe {
        4 => "probe".to_owned(),
        i => format!("probe-{i}"),
    }
}

/// Which live instance a call from `caller`'s partition to `prefix` reaches: an instance
/// of that name in the caller's partition, else (when `prefix` is the factory) the
/// oldest live instance in the caller's partition.
fn reached(live: &BTreeMap<String, (usize, u64)>, prefix: &str, caller: usize) -> Option<String> {
    match live.get(prefix) {
        Some((p, _)) if *p == caller => return Some(prefix.to_owned()),
        _ if prefix != "probe" => return None,
        _ => {}
    }
    live.iter()
        .filter(|(_, (p, _))| *p == caller)
        .min_by_key(|(_, (_, s))| *s)
        .map(|(n, _)| n.clone())
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = Runtime::in_memory();
    let k = rt.kernel();
    k.register::<Probe>().unwrap();
    // name -> (partition, seq); storage model keyed by (partition, name).
    let mut live: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let mut stored: BTreeMap<(usize, String), String> = BTreeMap::new();
    let mut seq = 0u64;
    for op in ops {
        match op {
            Op::Add { probe, partition } => {
                let name = probe_name(probe);
                let result = k
                    .hot_add("probe", &name, json!({"target": PARTITIONS[partition]}))
                    .await;
                prop_assert_eq!(result.is_ok(), !live.contains_key(&name));
                if result.is_ok() {
                    k.credentials().set(
                        &part(partition),
                        &format!("probe/{name}"),
                        "token",
                        Secret::new(format!("{}/{name}", PARTITIONS[partition])),
                    );
                    live.insert(name, (partition, seq));
                    seq += 1;
                }
            }
            Op::Remove { probe } => {
                let name = probe_name(probe);
                let result = k.hot_remove(&name).await;
                prop_assert_eq!(result.is_ok(), live.remove(&name).is_some());
            }
            Op::ByName {
                caller,
                probe,
                action,
                value,
            } => {
                let prefix = probe_name(probe);
                let bus = rt.bus_for(&part(caller));
                let (runnable, params) = match action {
                    0 => ("where", json!({})),
                    1 => ("secret", json!({})),
                    2 => ("write", json!({"value": value.to_string()})),
                    _ => ("read", json!({})),
                };
                let result = bus
                    .invoke(&format!("{prefix}.{runnable}"), params, Invoke::default())
                    .await;
                match reached(&live, &prefix, caller) {
                    Some(name) => {
                        let v = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                        match action {
                            0 => prop_assert_eq!(
                                v,
                                json!({"partition": PARTITIONS[caller], "name": name})
                            ),
                            1 => {
                                prop_assert_eq!(v, json!(format!("{}/{name}", PARTITIONS[caller])))
                            }
                            2 => {
                                stored.insert((caller, name), value.to_string());
                            }
                            _ => prop_assert_eq!(
                                v,
                                stored
                                    .get(&(caller, name))
                                    .map_or(Value::Null, |s| json!(s))
                            ),
                        }
                    }
                    // Another partition's instance, or none: never delivered.
                    _ => prop_assert!(matches!(result, Err(Error::RouteNotFound(_))), "{result:?}"),
                }
            }
            Op::ByFactory { caller, target } => {
                let bus = rt.bus_for(&part(caller));
                let result = bus
                    .invoke("probe.where", json!({}), Invoke::target(&part(target)))
                    .await;
                match (target == caller, reached(&live, "probe", caller)) {
                    (true, Some(name)) => {
                        let v = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(v, json!({"partition": PARTITIONS[caller], "name": name}));
                    }
                    _ => prop_assert!(matches!(result, Err(Error::RouteNotFound(_))), "{result:?}"),
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn calls_storage_and_credentials_never_cross_partitions(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}
