//! The fence checks of the conformance suite, for stores that fence writes per shard
//! (cluster mode): a node writes a shard's records only while it holds the shard's
//! current epoch, and once another node took the shard its former owner's puts, turn
//! commits and deletes fail with [`StoreError::Fenced`] and change nothing, even when
//! they race the take.
//!
//! A backend provides a [`FenceRig`]: an unfenced handle and two fenced nodes of one
//! fresh store, whose records map to shards by [`shard_of_record`]. [`FENCE_CHECKS`] lists
//! the checks; [`run_fence_checks`] runs them all.

use super::{CheckResult, bytes, expect_record, get, id, key, partition};
use futures::future::{BoxFuture, FutureExt};
use std::future::Future;
use std::sync::Arc;
use tenantry::cluster::{RoutingKey, ShardCount, ShardId, shard_of};
use tenantry::store::{CheckpointStore, SideWrite, StoreError, StoreKey, TurnCommit};

/// How many shards the fence checks' records spread over.
pub const FENCE_SHARDS: u32 = 8;

/// The shard of a record in the fence checks: by its key, over [`FENCE_SHARDS`]. The
/// fenced handles of a [`FenceRig`] must map records with this function.
pub fn shard_of_record(key: &StoreKey) -> Option<ShardId> {
    let count = ShardCount::new(FENCE_SHARDS)?;
    Some(shard_of(
        &key.partition,
        RoutingKey::Key(key.key.encoded()),
        count,
    ))
}

/// One node's fenced handle of the store.
pub trait FencedNode: Send + Sync {
    /// The handle, whose writes pass the fences.
    fn store(&self) -> Arc<dyn CheckpointStore>;
    /// Takes `shard` for this node: raises its epoch (every earlier holder's writes fail
    /// from then on); the new epoch.
    fn take(&self, shard: ShardId) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// Stops writing `shard` (a hand-off).
    fn release(&self, shard: ShardId) -> Result<(), StoreError>;
}

/// What the fence checks run against: one fresh, empty store, seen unfenced and by two
/// fenced nodes of one cluster.
pub struct FenceRig {
    /// An unfenced handle (reads, and writes no fence concerns).
    pub plain: Arc<dyn CheckpointStore>,
    /// Node a.
    pub a: Arc<dyn FencedNode>,
    /// Node b.
    pub b: Arc<dyn FencedNode>,
}

/// One named fence check.
#[derive(Clone, Copy)]
pub struct FenceCheck {
    /// The check's name (its function's name).
    pub name: &'static str,
    /// Runs the check against a fresh rig.
    pub run: fn(FenceRig) -> BoxFuture<'static, CheckResult>,
}

impl std::fmt::Debug for FenceCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FenceCheck")
            .field("name", &self.name)
            .finish()
    }
}

macro_rules! fence_checks {
    ($($name:ident),* $(,)?) => {
        /// Every fence check, in the order [`run_fence_checks`] runs them.
        pub const FENCE_CHECKS: &[FenceCheck] = &[$(FenceCheck {
            name: stringify!($name),
            run: |rig| $name(rig).boxed(),
        }),*];
    };
}

fence_checks!(
    a_node_writes_only_shards_it_holds_and_not_after_another_took_them,
    in_a_batch_only_the_fenced_out_writes_fail,
    writes_racing_a_take_land_before_it_or_not_at_all,
);

/// Runs every check of [`FENCE_CHECKS`], each against a fresh rig from `fresh_rig`, and
/// returns the first failure, prefixed with the check's name.
pub async fn run_fence_checks<F, Fut>(mut fresh_rig: F) -> CheckResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<FenceRig, String>>,
{
    for check in FENCE_CHECKS {
        let rig = fresh_rig()
            .await
            .map_err(|e| format!("{}: no store: {e}", check.name))?;
        (check.run)(rig)
            .await
            .map_err(|e| format!("{}: {e}", check.name))?;
    }
    Ok(())
}

fn record(name: &str) -> Result<StoreKey, String> {
    Ok(id(&partition("fences")?, "carts", &key(name)?))
}

fn shard(k: &StoreKey) -> Result<ShardId, String> {
    shard_of_record(k).ok_or_else(|| format!("{k} has no shard"))
}

async fn take(node: &dyn FencedNode, s: ShardId) -> Result<u64, String> {
    node.take(s)
        .await
        .map_err(|e| format!("taking shard {s}: {e:?}"))
}

fn expect_fenced<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, StoreError>,
    s: ShardId,
) -> CheckResult {
    match result {
        Err(StoreError::Fenced { shard }) if shard == s.0 => Ok(()),
        other => Err(format!(
            "{what}: got {other:?}, expected Fenced {{ shard: {s} }}"
        )),
    }
}

/// Unheld shards refuse writes; a take admits them and raises the epoch; once the other
/// node took the shard, the former owner's put, turn commit (side writes included) and
/// delete are refused and change nothing; a release stops a node's own writes.
pub async fn a_node_writes_only_shards_it_holds_and_not_after_another_took_them(
    rig: FenceRig,
) -> CheckResult {
    let (plain, a, b) = (&*rig.plain, rig.a.store(), rig.b.store());
    let k = record("cart-1")?;
    let s = shard(&k)?;
    expect_fenced(
        "a put on a shard not taken",
        a.put(&k, bytes("a0"), None).await,
        s,
    )?;
    ensure!(
        get(plain, &k).await?.is_none(),
        "a refused put left a record"
    );

    let first = take(&*rig.a, s).await?;
    ensure_eq!(
        a.put(&k, bytes("a1"), None)
            .await
            .map_err(|e| format!("{e:?}"))?,
        1,
        "a's put on its shard"
    );
    let second = take(&*rig.b, s).await?;
    ensure!(second > first, "epochs rise: {first} then {second}");

    expect_fenced("a's stale put", a.put(&k, bytes("a2"), Some(1)).await, s)?;
    let side = record("cart-1-side")?;
    let stale_turn = TurnCommit {
        side: vec![SideWrite {
            key: side.clone(),
            bytes: Some(bytes("side")),
        }],
        ..TurnCommit::checkpoint(k.clone(), bytes("a3"), Some(1))
    };
    let turn = a.commit(stale_turn).await;
    ensure!(
        matches!(turn, Err(StoreError::Fenced { .. })),
        "a's stale turn commit: got {turn:?}, expected Fenced"
    );
    expect_fenced("a's stale delete", a.delete(&k, None).await, s)?;
    expect_record(plain, &k, 1, b"a1").await?;
    ensure!(
        get(plain, &side).await?.is_none(),
        "a fenced turn's side write landed"
    );

    ensure_eq!(
        b.put(&k, bytes("b1"), Some(1))
            .await
            .map_err(|e| format!("{e:?}"))?,
        2,
        "b's put after its take"
    );
    rig.b
        .release(s)
        .map_err(|e| format!("releasing shard {s}: {e:?}"))?;
    expect_fenced(
        "b's put after its release",
        b.put(&k, bytes("b2"), Some(2)).await,
        s,
    )?;
    expect_record(plain, &k, 2, b"b1").await
}

/// Writes of two shards go to the store together; only the shard taken away refuses.
pub async fn in_a_batch_only_the_fenced_out_writes_fail(rig: FenceRig) -> CheckResult {
    let first = record("k-0")?;
    let mut second = None;
    for i in 1..100 {
        let k = record(&format!("k-{i}"))?;
        if shard(&k)? != shard(&first)? {
            second = Some(k);
            break;
        }
    }
    let second = second.ok_or("no second shard among 100 keys")?;
    for s in [shard(&first)?, shard(&second)?] {
        take(&*rig.a, s).await?;
    }
    take(&*rig.b, shard(&second)?).await?;
    let a = rig.a.store();
    let (one, two) = tokio::join!(
        a.put(&first, bytes("x"), None),
        a.put(&second, bytes("y"), None)
    );
    ensure!(one == Ok(1), "the put on the shard a holds: {one:?}");
    expect_fenced("the put on the shard b took", two, shard(&second)?)?;
    ensure!(
        get(&*rig.plain, &second).await?.is_none(),
        "the fenced put landed"
    );
    Ok(())
}

/// A node writing as fast as it can while another takes the shard: every write it saw
/// succeed is older than what the take found, and none lands after it.
pub async fn writes_racing_a_take_land_before_it_or_not_at_all(rig: FenceRig) -> CheckResult {
    let k = record("race")?;
    let s = shard(&k)?;
    take(&*rig.a, s).await?;
    let writer = {
        let (a, k) = (rig.a.store(), k.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut version = None;
            for i in 0..400 {
                match a.put(&k, bytes(format!("a{i}")), version).await {
                    Ok(v) => {
                        version = Some(v);
                        acked.push(v);
                    }
                    Err(StoreError::Fenced { .. }) => break,
                    Err(e) => return Err(format!("a's write {i}: {e:?}")),
                }
            }
            Ok(acked)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    take(&*rig.b, s).await?;
    let after_take = get(&*rig.plain, &k).await?.map(|r| r.version);
    let acked = writer.await.map_err(|e| format!("the writer: {e}"))??;
    ensure_eq!(
        acked.last().copied(),
        after_take,
        "a's last acknowledged write is what the take found"
    );
    let current = get(&*rig.plain, &k).await?.map(|r| r.version);
    ensure_eq!(current, after_take, "no write landed after the take");
    let next = rig.b.store().put(&k, bytes("b"), current).await;
    ensure!(
        next == Ok(current.unwrap_or(0) + 1),
        "b writes after its take: {next:?}"
    );
    Ok(())
}
