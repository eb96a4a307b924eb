//! [`PgStore`]: connection, the direct operations (delete, list, purge), and the
//! [`CheckpointStore`] implementation that routes puts and gets through the batchers.

use crate::batch::{self, GetRequest, PutRequest};
use crate::conn::{Shared, on_connection, read_with_retry};
use crate::error::{classify, version_from_db};
use crate::fence::{Fence, Fencing, ShardOf};
use crate::schema::{Statements, migrate, quoted};
use crate::{PgError, PgOptions};
use futures::future::{BoxFuture, FutureExt};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::sync::Arc;
use tenantry::cluster::{ShardCount, ShardId};
use tenantry::store::{CheckpointStore, Record, StoreError, StoreKey, StoreUsage, TurnCommit};
use tenantry::{Key, Partition};
use tokio::sync::{mpsc, oneshot};

/// A checkpoint store in a PostgreSQL schema. Cheap to clone; clones share one pool and
/// one writer.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
    /// Set on a fenced handle (cluster mode): its writes pass the shard fences.
    fencing: Option<Arc<Fencing>>,
}

struct Inner {
    shared: Arc<Shared>,
    puts: mpsc::UnboundedSender<PutRequest>,
    gets: mpsc::UnboundedSender<GetRequest>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.shared.options.schema)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// creates the schema and applies pending migrations. Fails with
    /// [`PgError::Unavailable`] if the database cannot be reached within
    /// [`PgOptions::connect_timeout`].
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, PgError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| PgError::InvalidOption(format!("database URL: {e}")))?;
        Self::connect_with(connect, options).await
    }

    /// Like [`PgStore::connect`], with connection settings built in code.
    pub async fn connect_with(
        connect: PgConnectOptions,
        options: PgOptions,
    ) -> Result<Self, PgError> {
        options.validate()?;
        let server_timeout = format!("{}ms", options.statement_timeout.as_millis());
        let mut connect = connect.options([("statement_timeout", server_timeout.as_str())]);
        if connect.get_application_name().is_none() {
            connect = connect.application_name("tenantry");
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(0)
            .acquire_timeout(options.connect_timeout)
            .connect_lazy_with(connect);
        let deadline = options.connect_timeout + options.statement_timeout;
        // Boxed so the future's type is checked for `Send` here, once; callers can then
        // spawn `connect` (unboxed, rustc cannot prove sqlx's futures `Send` for every
        // lifetime at the spawn site).
        let migration = migrate(&pool, &options.schema).boxed();
        match tokio::time::timeout(deadline, migration).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                pool.close().await;
                return Err(e);
            }
            Err(_) => {
                pool.close().await;
                return Err(PgError::Unavailable(format!(
                    "no answer from the database within {deadline:?}"
                )));
            }
        }
        let shared = Arc::new(Shared {
            pool,
            sql: Statements::new(&options.schema),
            options,
        });
        let (puts, put_rx) = mpsc::unbounded_channel();
        let (gets, get_rx) = mpsc::unbounded_channel();
        tokio::spawn(batch::writer(shared.clone(), put_rx));
        tokio::spawn(batch::reader(shared.clone(), get_rx));
        Ok(Self {
            inner: Arc::new(Inner { shared, puts, gets }),
            fencing: None,
        })
    }

    /// A handle to the same store whose writes pass the shard fences of `cluster` as
    /// node `node` (see the `fence` module): a record, mapped to its shard by `shard_of`,
    /// is written only while this node holds that shard's current epoch. It holds none
    /// until it takes them ([`PgStore::take_shard`]). Reads are not fenced.
    pub fn fenced(&self, cluster: &str, node: &str, shard_of: ShardOf) -> Self {
        Self {
            inner: self.inner.clone(),
            fencing: Some(Arc::new(Fencing::new(cluster, node, shard_of))),
        }
    }

    /// Takes `shard` for this fenced handle's node: raises the shard's epoch in the
    /// database (so every earlier holder's writes fail from now on) and writes under
    /// the new one. Returns the new epoch.
    pub async fn take_shard(&self, shard: ShardId) -> Result<u64, StoreError> {
        let fencing = self.fencing()?;
        let shard_db = shard_param(shard)?;
        let shared = &*self.inner.shared;
        let epoch: i64 = on_connection!(shared, conn => {
            sqlx::query_scalar(&shared.sql.take_shard)
                .bind(&*fencing.cluster)
                .bind(shard_db)
                .bind(&fencing.node)
                .fetch_one(&mut *conn)
                .await
        })
        .map_err(|f| f.error)?;
        fencing.hold(shard.0, epoch);
        version_from_db(epoch)
    }

    /// Stops writing `shard` (its records fail with `Fenced` from now on), for a
    /// handoff. Its epoch stays for the next taker to raise.
    pub fn release_shard(&self, shard: ShardId) -> Result<(), StoreError> {
        self.fencing()?.release(shard.0);
        Ok(())
    }

    /// The current epoch of `shard` in this handle's cluster and the node that raised
    /// it, if anyone took it.
    pub async fn shard_fence(&self, shard: ShardId) -> Result<Option<(u64, String)>, StoreError> {
        let fencing = self.fencing()?;
        let shard_db = shard_param(shard)?;
        let shared = &*self.inner.shared;
        let rows = read_with_retry!(shared, conn => {
            sqlx::query(&shared.sql.shard_fence)
                .bind(&*fencing.cluster)
                .bind(shard_db)
                .fetch_all(&mut *conn)
                .await
        })?;
        match rows.first() {
            None => Ok(None),
            Some(row) => {
                let epoch: i64 = row.try_get(0).map_err(|e| classify(e).error)?;
                let holder: String = row.try_get(1).map_err(|e| classify(e).error)?;
                Ok(Some((version_from_db(epoch)?, holder)))
            }
        }
    }

    fn fencing(&self) -> Result<&Fencing, StoreError> {
        self.fencing.as_deref().ok_or_else(|| {
            StoreError::Unavailable("shard fences need a fenced store handle".into())
        })
    }

    /// The fence a write of `key` passes, on a fenced handle.
    fn fence_for(&self, key: &StoreKey) -> Result<Option<Fence>, StoreError> {
        match &self.fencing {
            Some(f) => f.for_key(key),
            None => Ok(None),
        }
    }

    /// The schema the store lives in.
    pub fn schema(&self) -> &str {
        &self.inner.shared.options.schema
    }

    /// Drops the schema `schema` at `url` and everything in it: every record of every
    /// tenant a store kept there. For tearing down scratch stores (tests, benchmarks); a
    /// schema that does not exist is not an error.
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), PgError> {
        use sqlx::Connection;
        crate::options::check_schema_name(schema)?;
        let unavailable = |e: sqlx::Error| PgError::Unavailable(classify(e).error.to_string());
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(unavailable)?;
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", quoted(schema));
        let dropped = sqlx::raw_sql(&sql).execute(&mut conn).await.map(drop);
        let _ = conn.close().await;
        dropped.map_err(unavailable)
    }

    /// Closes the pool: waits for borrowed connections to come back and closes them all.
    /// Every later operation of this store (and its clones) fails with `Unavailable`.
    pub async fn close(&self) {
        self.inner.shared.pool.close().await;
    }

    async fn delete_inner(
        &self,
        key: &StoreKey,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let shared = &*self.inner.shared;
        let fence = self.fence_for(key)?;
        // A delete that misses because the record changed in between is tried again.
        for _ in 0..3 {
            let expected_db = match expected.map(i64::try_from).transpose() {
                Ok(e) => e,
                // No stored version is that large.
                Err(_) => return self.conflict_or_absent(key, expected).await,
            };
            let rows = on_connection!(shared, conn => {
                sqlx::query(&shared.sql.delete)
                    .bind(key.partition.as_storage_str())
                    .bind(&*key.manager)
                    .bind(key.key.encoded())
                    .bind(expected_db)
                    .bind(fence.as_ref().map(|f| &*f.cluster))
                    .bind(fence.as_ref().map(|f| f.shard as i32))
                    .bind(fence.as_ref().map(|f| f.epoch))
                    .fetch_all(&mut *conn)
                    .await
            })
            .map_err(|f| f.error)?;
            if !rows.is_empty() {
                return Ok(true);
            }
            if let Some(fence) = &fence {
                self.check_still_held(fence).await?;
            }
            if expected.is_none() {
                return Ok(false);
            }
            match self.conflict_or_absent(key, expected).await {
                Err(StoreError::Conflict { actual, .. }) if actual == expected => continue,
                other => return other,
            }
        }
        Err(StoreError::Unavailable(format!(
            "the record {key} kept changing during its delete"
        )))
    }

    /// After a fenced write missed: `Fenced` unless `fence` still holds.
    async fn check_still_held(&self, fence: &Fence) -> Result<(), StoreError> {
        let current = self.shard_fence(ShardId(fence.shard)).await?;
        match current {
            Some((epoch, _)) if i64::try_from(epoch).ok() == Some(fence.epoch) => Ok(()),
            _ => Err(StoreError::Fenced { shard: fence.shard }),
        }
    }

    /// After a conditional write missed: `Ok(false)` if there is no record, else a
    /// `Conflict` naming the version found.
    async fn conflict_or_absent(
        &self,
        key: &StoreKey,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        match version_of(&self.inner.shared, key).await? {
            None => Ok(false),
            actual => Err(StoreError::Conflict { expected, actual }),
        }
    }

    async fn list_inner(
        &self,
        partition: &Partition,
        manager: &str,
    ) -> Result<Vec<(Key, u64)>, StoreError> {
        let shared = &*self.inner.shared;
        let rows = read_with_retry!(shared, conn => {
            sqlx::query(&shared.sql.list)
                .bind(partition.as_storage_str())
                .bind(manager)
                .fetch_all(&mut *conn)
                .await
        })?;
        rows.iter()
            .map(|row| {
                let encoded: &str = row.try_get(0).map_err(|e| classify(e).error)?;
                let version: i64 = row.try_get(1).map_err(|e| classify(e).error)?;
                let key = Key::from_encoded(encoded)
                    .map_err(|e| StoreError::Corrupt(format!("stored key {encoded:?}: {e}")))?;
                Ok((key, version_from_db(version)?))
            })
            .collect()
    }

    async fn purge_inner(&self, partition: &Partition) -> Result<u64, StoreError> {
        let shared = &*self.inner.shared;
        on_connection!(shared, conn => {
            sqlx::query(&shared.sql.purge)
                .bind(partition.as_storage_str())
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(|f| f.error)
    }
}

impl PgStore {
    async fn usage_inner(&self, partition: &Partition) -> Result<Option<StoreUsage>, StoreError> {
        let shared = &*self.inner.shared;
        let rows = read_with_retry!(shared, conn => {
            sqlx::query(&shared.sql.usage)
                .bind(partition.as_storage_str())
                .fetch_all(&mut *conn)
                .await
        })?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("the usage sum returned no row".into()))?;
        let count = |i: usize| -> Result<u64, StoreError> {
            let n: i64 = row.try_get(i).map_err(|e| classify(e).error)?;
            u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative usage {n}")))
        };
        Ok(Some(StoreUsage {
            bytes: count(0)?,
            records: count(1)?,
        }))
    }
}

/// The current version of one record, read directly.
pub(crate) async fn version_of(shared: &Shared, key: &StoreKey) -> Result<Option<u64>, StoreError> {
    let rows = read_with_retry!(shared, conn => {
        sqlx::query(&shared.sql.version_one)
            .bind(key.partition.as_storage_str())
            .bind(&*key.manager)
            .bind(key.key.encoded())
            .fetch_all(&mut *conn)
            .await
    })?;
    match rows.first() {
        None => Ok(None),
        Some(row) => {
            let v: i64 = row.try_get(0).map_err(|e| classify(e).error)?;
            version_from_db(v).map(Some)
        }
    }
}

impl CheckpointStore for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        async move {
            let (reply, rx) = oneshot::channel();
            self.inner
                .gets
                .send(GetRequest {
                    key: key.clone(),
                    reply,
                })
                .map_err(|_| StoreError::Unavailable("the store's reader has stopped".into()))?;
            batch::await_reply(rx, self.inner.shared.options.operation_deadline()).await
        }
        .boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        bytes: Arc<[u8]>,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.commit(TurnCommit::checkpoint(key.clone(), bytes, expected))
    }

    fn commit<'a>(&'a self, turn: TurnCommit) -> BoxFuture<'a, Result<u64, StoreError>> {
        async move {
            let TurnCommit {
                key,
                bytes,
                expected,
                side,
            } = turn;
            let fence = self.fence_for(&key)?;
            if expected.is_some_and(|e| i64::try_from(e).is_err()) {
                // No stored version is that large: the compare-and-set cannot hold.
                let actual = version_of(&self.inner.shared, &key).await?;
                return Err(StoreError::Conflict { expected, actual });
            }
            let (reply, rx) = oneshot::channel();
            self.inner
                .puts
                .send(PutRequest {
                    key,
                    bytes,
                    expected,
                    side,
                    fence,
                    reply,
                })
                .map_err(|_| StoreError::Unavailable("the store's writer has stopped".into()))?;
            batch::await_reply(rx, self.inner.shared.options.operation_deadline()).await
        }
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.delete_inner(key, expected).boxed()
    }

    fn list<'a>(
        &'a self,
        partition: &'a Partition,
        manager: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(Key, u64)>, StoreError>> {
        self.list_inner(partition, manager).boxed()
    }

    fn purge_partition<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.purge_inner(partition).boxed()
    }

    fn usage<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<Option<StoreUsage>, StoreError>> {
        self.usage_inner(partition).boxed()
    }
}

/// A shard as the fence table stores it (an int4: shard counts are far below its range).
fn shard_param(shard: ShardId) -> Result<i32, StoreError> {
    if shard.0 >= ShardCount::MAX {
        return Err(StoreError::Unavailable(format!(
            "shard {shard} is beyond any cluster's shard count"
        )));
    }
    Ok(shard.0 as i32)
}
