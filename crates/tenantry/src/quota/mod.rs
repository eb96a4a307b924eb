//! Per-tenant limits and fair admission: what keeps one tenant from crowding out the
//! others.
//!
//! Every call that enters the runtime from outside (a [`Bus`](crate::Bus) from
//! [`Runtime::bus_for`](crate::Runtime::bus_for), which is what the gateway calls
//! through) asks [`Quotas::admit`] first, and holds the [`Permit`] it gets until the call
//! has its answer. Calls instances make to each other are not metered: they are part of
//! work already admitted, and refusing them halfway would fail it.
//!
//! Three checks, cheapest first, each answered with [`Throttled`] naming the limit:
//! - **rate**: a token bucket per partition (`rate_per_sec`, `burst`), kept as one
//!   atomic "theoretical arrival time" (GCRA), so admitting takes no lock;
//! - **concurrency**: calls in flight per partition;
//! - **fair share**: when the runtime is saturated (more calls in flight than its
//!   `capacity`), a partition holding more than its weighted share of the capacity
//!   (`capacity × weight / the weights of the partitions with calls in flight`) is
//!   refused, so its excess waits at its own door instead of queueing in front of
//!   everyone; below capacity nobody is refused for it.
//!
//! What a partition holds is limited too:
//! - **live instances** (`max_instances`): every keyed instance takes a [`Seat`] of its
//!   partition while it lives; at the cap, the manager hibernates the partition's least
//!   recently used idle instances to make room, and refuses the activation
//!   ([`Limit::Instances`]) only when none can hibernate;
//! - **stored bytes** (`max_stored_bytes`) and **the largest record**
//!   (`max_state_bytes`): the runtime's store is wrapped in a metering store
//!   ([`metered`]) that refuses a write past them with
//!   [`StoreError::OverLimit`](crate::store::StoreError::OverLimit), against the usage
//!   the store keeps current ([`CheckpointStore::usage`]);
//! - **the largest reply** (`max_reply_bytes`) of a call from outside.
//!
//! Limits are config ([`Limits`]): defaults under the shared key `limits`, overrides
//! under `tenants.<partition>.limits`; a reactive effect per partition applies a write at
//! once (the next call sees it). The runtime's own (unpartitioned) instances are never
//! limited by what they hold.

mod limits;
pub(crate) mod metered;
mod rate;

pub use crate::error::{Limit, Throttled};
pub use limits::{Limits, MAX_BYTES, MAX_COUNT, MAX_RATE_PER_SEC, MAX_WEIGHT};

use crate::config::ConfigStore;
use crate::reactive::Effect;
use crate::store::{CheckpointStore, StoreError, StoreUsage};
use crate::telemetry::{EventKind, Telemetry};
use crate::{Identity, Key, Partition};
use rate::RateGate;
use std::collections::HashMap;

/// The partitions' quotas by partition (a fast hash: the table is read on every call).
type Table = HashMap<Partition, Arc<TenantQuota>, foldhash::fast::RandomState>;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

/// What a partition uses and may use.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Usage {
    /// Its limits in force (defaults and its own together).
    pub limits: Limits,
    /// Calls in flight now.
    pub in_flight: u32,
    /// Calls admitted so far.
    pub admitted: u64,
    /// Calls refused so far, by limit.
    pub throttled: Throttles,
    /// Keyed instances live now.
    pub live_instances: u32,
    /// What it keeps in the store (`None`: the store keeps no usage).
    pub stored: Option<StoreUsage>,
}

/// Refused calls by limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Throttles {
    /// By the rate.
    pub rate: u64,
    /// By the calls in flight.
    pub concurrency: u64,
    /// By the fair share.
    pub fair_share: u64,
    /// Activations refused at the live-instance cap.
    pub instances: u64,
}

/// One partition's gates and counters.
struct TenantQuota {
    partition: Partition,
    /// Its label in metrics (`*` when the runtime's metrics carry no partition).
    label: String,
    rate: RateGate,
    /// Calls in flight now.
    in_flight: AtomicU32,
    /// Its concurrency limit (0: none) and weight.
    concurrency: AtomicU32,
    weight: AtomicU32,
    limits: Mutex<Limits>,
    admitted: AtomicU64,
    throttled: [AtomicU64; 4],
    /// Keyed instances live now, and the cap (0: none).
    live: AtomicU32,
    max_instances: AtomicU32,
    /// Byte limits (0: none).
    max_stored: AtomicU64,
    max_state: AtomicU64,
    max_reply: AtomicU64,
    /// The second (since the quotas' epoch, plus one) of its last throttle event.
    refusal_second: AtomicU64,
    /// Follows the config (kept alive with the quota).
    follow: Mutex<Option<Effect>>,
}

impl TenantQuota {
    fn apply(&self, limits: Limits) {
        self.rate.set(limits.rate_per_sec.zip(limits.burst()));
        self.concurrency
            .store(limits.concurrency.unwrap_or(0), Ordering::Relaxed);
        self.weight.store(limits.weight(), Ordering::Relaxed);
        // The runtime's own instances are not limited by what they hold.
        let held = |limit: Option<u64>| {
            limit
                .filter(|_| !self.partition.is_unpartitioned())
                .unwrap_or(0)
        };
        self.max_instances.store(
            held(limits.max_instances.map(u64::from)) as u32,
            Ordering::Relaxed,
        );
        self.max_stored
            .store(held(limits.max_stored_bytes), Ordering::Relaxed);
        self.max_state
            .store(held(limits.max_state_bytes), Ordering::Relaxed);
        self.max_reply
            .store(held(limits.max_reply_bytes), Ordering::Relaxed);
        *self.limits.lock().unwrap_or_else(|e| e.into_inner()) = limits;
    }

    /// Counts a refusal by `limit`; returns its count so far, this one included.
    fn count_refusal(&self, limit: Limit) -> u64 {
        let i = match limit {
            Limit::Rate => 0,
            Limit::Concurrency => 1,
            Limit::FairShare => 2,
            Limit::Instances => 3,
        };
        let refused = self.throttled[i].fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!(
            "tenantry_throttled_total",
            "partition" => self.label.clone(),
            "limit" => limit.name()
        )
        .increment(1);
        refused
    }

    /// Whether the refusal at `now` (since the quotas' epoch) is the first of its second:
    /// the one that tells the event subscribers.
    fn first_refusal_of_second(&self, now: Duration) -> bool {
        let second = now.as_secs() + 1;
        // Read first: in a flood of refusals, only one a second writes the line.
        self.refusal_second.load(Ordering::Relaxed) != second
            && self.refusal_second.swap(second, Ordering::Relaxed) != second
    }
}

/// The runtime's per-partition limits and fair admission (see the module docs).
pub struct Quotas {
    config: Arc<ConfigStore>,
    telemetry: Telemetry,
    /// The store as the runtime got it (not metered): where usage is read.
    store: Arc<dyn CheckpointStore>,
    tenants: RwLock<Table>,
    epoch: Instant,
    /// Calls in flight in the whole runtime.
    total: AtomicU64,
    /// Above this many calls in flight the runtime is saturated (0: never).
    capacity: AtomicU64,
    /// The weights of the partitions with calls in flight, and when they were summed.
    active_weight: Mutex<(Instant, u64)>,
}

/// The manager name of a throttle event's identity (`_quota/<limit>`): `_` starts no
/// manager's name, so no agent's events can be taken for a throttle's.
pub const QUOTA_IDENTITY: &str = "_quota";

/// How long a sum of the active partitions' weights stays good while saturated.
const WEIGHTS_FRESH_FOR: Duration = Duration::from_millis(1);

/// A call admitted: holds its place among the calls in flight until dropped.
#[must_use = "the call counts as in flight until the permit is dropped"]
pub struct Permit<'a> {
    tenant: Arc<TenantQuota>,
    quotas: &'a Quotas,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.tenant.in_flight.fetch_sub(1, Ordering::Release);
        self.quotas.total.fetch_sub(1, Ordering::Release);
    }
}

impl Permit<'_> {
    /// The largest JSON reply the admitted call may get, if its partition limits it.
    pub fn max_reply_bytes(&self) -> Option<u64> {
        Some(self.tenant.max_reply.load(Ordering::Relaxed)).filter(|&n| n != 0)
    }
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("partition", &self.tenant.partition)
            .finish()
    }
}

/// A live keyed instance's place in its partition's count (see [`Quotas::seat`]).
pub struct Seat {
    tenant: Arc<TenantQuota>,
}

impl Seat {
    /// Whether its partition has a live-instance cap now.
    pub fn is_capped(&self) -> bool {
        self.tenant.max_instances.load(Ordering::Relaxed) != 0
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.tenant.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seat")
            .field("partition", &self.tenant.partition)
            .finish()
    }
}

/// A partition's byte limits on what it writes (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteLimits {
    pub(crate) stored: Option<u64>,
    pub(crate) state: Option<u64>,
}

impl Quotas {
    /// Limits read from `config`, usage from `store`; no capacity (fair shares never
    /// refuse).
    pub(crate) fn new(
        config: Arc<ConfigStore>,
        telemetry: Telemetry,
        store: Arc<dyn CheckpointStore>,
    ) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            config,
            telemetry,
            store,
            tenants: RwLock::default(),
            epoch: now,
            total: AtomicU64::new(0),
            capacity: AtomicU64::new(0),
            active_weight: Mutex::new((now, 0)),
        })
    }

    /// The config the limits are read from (the runtime's).
    pub(crate) fn config(&self) -> &Arc<ConfigStore> {
        &self.config
    }

    /// Above `capacity` calls in flight the runtime counts as saturated, and each
    /// partition is held to its weighted share of it (`None`: never).
    pub fn set_capacity(&self, capacity: Option<u64>) {
        self.capacity
            .store(capacity.unwrap_or(0), Ordering::Relaxed);
    }

    /// Admits one call of `partition`, or says which limit refused it.
    pub fn admit(&self, partition: &Partition) -> Result<Permit<'_>, Throttled> {
        let tenant = self.tenant(partition);
        if tenant.rate.is_limited() {
            let now = self.epoch.elapsed().as_nanos() as u64;
            if let Err(wait) = tenant.rate.admit(now) {
                return Err(self.refuse(&tenant, Limit::Rate, wait));
            }
        }
        let before = tenant.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = Permit {
            tenant,
            quotas: self,
        };
        let tenant = &permit.tenant;
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        let concurrency = tenant.concurrency.load(Ordering::Relaxed);
        if concurrency != 0 && before >= concurrency {
            return Err(self.refuse(tenant, Limit::Concurrency, Duration::from_secs(1)));
        }
        let capacity = self.capacity.load(Ordering::Relaxed);
        if capacity != 0 && total > capacity {
            let weight = u64::from(tenant.weight.load(Ordering::Relaxed));
            let share = (capacity * weight / self.active_weight().max(weight)).max(1);
            if u64::from(before) >= share {
                return Err(self.refuse(tenant, Limit::FairShare, Duration::from_secs(1)));
            }
        }
        tenant.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(permit)
    }

    /// A place for one more live keyed instance of `partition`, or `None` at its cap.
    /// The instance holds the seat while it lives.
    pub fn seat(&self, partition: &Partition) -> Option<Seat> {
        let tenant = self.tenant(partition);
        let max = tenant.max_instances.load(Ordering::Relaxed);
        let taken = tenant
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (max == 0 || live < max).then_some(live + 1)
            });
        // Built only when taken: a seat dropped gives its place back.
        taken.is_ok().then(|| Seat { tenant })
    }

    /// Counts an activation of `partition` refused at its live-instance cap.
    pub fn refuse_activation(&self, partition: &Partition) -> Throttled {
        self.refuse(
            &self.tenant(partition),
            Limit::Instances,
            Duration::from_secs(1),
        )
    }

    /// Counts a refusal of `tenant`'s by `limit`, tells the event subscribers if it is
    /// the first of its second, and says when to try again.
    fn refuse(&self, tenant: &TenantQuota, limit: Limit, retry_after: Duration) -> Throttled {
        let throttled = Throttled { limit, retry_after };
        let refused = tenant.count_refusal(limit);
        if self.telemetry.wanted()
            && tenant.first_refusal_of_second(self.epoch.elapsed())
            && let Ok(quota) = Key::new(limit.name())
        {
            self.telemetry.emit(
                &Identity::new(tenant.partition.clone(), QUOTA_IDENTITY, quota),
                EventKind::Throttled {
                    throttled: throttled.clone(),
                    refused,
                },
            );
        }
        throttled
    }

    /// `partition`'s limits on the records it writes.
    pub(crate) fn byte_limits(&self, partition: &Partition) -> ByteLimits {
        let tenant = self.tenant(partition);
        let limit = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|&n| n != 0);
        ByteLimits {
            stored: limit(&tenant.max_stored),
            state: limit(&tenant.max_state),
        }
    }

    /// What `partition` uses and may use.
    pub async fn usage(&self, partition: &Partition) -> Result<Usage, StoreError> {
        let tenant = self.tenant(partition);
        self.usage_of(&tenant).await
    }

    /// The usage of every partition that made a call or holds an instance, by partition.
    pub async fn all_usage(&self) -> Result<Vec<(Partition, Usage)>, StoreError> {
        let mut tenants: Vec<Arc<TenantQuota>> = self
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        tenants.sort_by(|a, b| a.partition.cmp(&b.partition));
        let mut all = Vec::with_capacity(tenants.len());
        for t in tenants {
            all.push((t.partition.clone(), self.usage_of(&t).await?));
        }
        Ok(all)
    }

    async fn usage_of(&self, t: &TenantQuota) -> Result<Usage, StoreError> {
        let count = |i: usize| t.throttled[i].load(Ordering::Relaxed);
        let stored = self.store.usage(&t.partition).await?;
        Ok(Usage {
            limits: *t.limits.lock().unwrap_or_else(|e| e.into_inner()),
            in_flight: t.in_flight.load(Ordering::Relaxed),
            admitted: t.admitted.load(Ordering::Relaxed),
            throttled: Throttles {
                rate: count(0),
                concurrency: count(1),
                fair_share: count(2),
                instances: count(3),
            },
            live_instances: t.live.load(Ordering::Relaxed),
            stored,
        })
    }

    /// Forgets `partition`'s counters (an offboarded tenant).
    pub fn forget(&self, partition: &Partition) {
        self.tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(partition);
    }

    fn tenant(&self, partition: &Partition) -> Arc<TenantQuota> {
        if let Some(t) = self
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(partition)
        {
            return t.clone();
        }
        let tenant = {
            let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = tenants.get(partition) {
                return t.clone();
            }
            let tenant = Arc::new(TenantQuota {
                partition: partition.clone(),
                label: self.telemetry.partition_label(partition),
                rate: RateGate::default(),
                in_flight: AtomicU32::new(0),
                concurrency: AtomicU32::new(0),
                weight: AtomicU32::new(1),
                limits: Mutex::default(),
                admitted: AtomicU64::new(0),
                throttled: Default::default(),
                live: AtomicU32::new(0),
                max_instances: AtomicU32::new(0),
                max_stored: AtomicU64::new(0),
                max_state: AtomicU64::new(0),
                max_reply: AtomicU64::new(0),
                refusal_second: AtomicU64::new(0),
                follow: Mutex::new(None),
            });
            // In force before its first call, not after the effect's first run.
            if let Ok(limits) = read_limits(&self.config, partition) {
                tenant.apply(limits);
            }
            tenants.insert(partition.clone(), tenant.clone());
            tenant
        };
        // Outside the table's lock: the effect runs once now, and on every write after.
        let effect = follow_config(self.config.clone(), Arc::downgrade(&tenant));
        *tenant.follow.lock().unwrap_or_else(|e| e.into_inner()) = Some(effect);
        tenant
    }

    /// The weights of the partitions with calls in flight, summed at most every
    /// [`WEIGHTS_FRESH_FOR`] (only while saturated).
    fn active_weight(&self) -> u64 {
        let mut cached = self.active_weight.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0.elapsed() >= WEIGHTS_FRESH_FOR || cached.1 == 0 {
            let sum = self
                .tenants
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .filter(|t| t.in_flight.load(Ordering::Relaxed) > 0)
                .map(|t| u64::from(t.weight.load(Ordering::Relaxed)))
                .sum();
            *cached = (Instant::now(), sum);
        }
        cached.1
    }
}

/// An effect that applies `limits` and `tenants.<partition>.limits` to the quota on
/// every write to them. Invalid limits leave the ones in force and are reported.
fn follow_config(config: Arc<ConfigStore>, tenant: Weak<TenantQuota>) -> Effect {
    Effect::new(move || {
        let Some(tenant) = tenant.upgrade() else {
            return Ok(());
        };
        tenant.apply(read_limits(&config, &tenant.partition)?);
        Ok(())
    })
}

/// `partition`'s limits in `config`: its own over the defaults.
fn read_limits(config: &ConfigStore, partition: &Partition) -> Result<Limits, String> {
    let defaults = config.get("limits").map_err(|e| e.to_string())?;
    let own = match partition.name() {
        Some(name) => config
            .get(&format!("tenants.{name}.limits"))
            .map_err(|e| e.to_string())?,
        None => None,
    };
    Ok(Limits::from_config(own.as_ref())?.over(Limits::from_config(defaults.as_ref())?))
}
