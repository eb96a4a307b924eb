//! The embedded default store: redb, one file, ACID, with group commit.
//!
//! Reads run inline on the caller's task (a redb read transaction is a few microseconds
//! and never waits on writers). Writes go to one writer thread that takes every write
//! queued at that moment into a single transaction, so many hibernations share one
//! fsync; each writer is answered only after the commit is durable.

use super::{
    CheckpointStore, Record, SideWrite, StoreError, StoreKey, StoreUsage, TurnCommit, UsageDelta,
    check_version,
};
use crate::{Key, Partition};
use futures::future::{BoxFuture, FutureExt};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// `(partition, manager, key)` → `version (u64 LE) ++ bytes`.
const TABLE: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("checkpoints");

/// `partition` → `(bytes, records)` of its records' values: changed in the transaction
/// of every write, so it is never counted by scanning (except once, when a file written
/// before this table existed is opened).
const USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("usage");

/// Tuning for [`RedbStore`].
#[derive(Debug, Clone)]
pub struct RedbOptions {
    /// Most writes folded into one transaction (one fsync).
    pub max_batch: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self { max_batch: 4096 }
    }
}

/// A durable checkpoint store in one redb file.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    writes: Option<mpsc::UnboundedSender<Write>>,
    writer: Option<JoinHandle<()>>,
}

enum Write {
    Put {
        key: StoreKey,
        bytes: Arc<[u8]>,
        expected: Option<u64>,
        /// Applied with the put, or not at all.
        side: Vec<SideWrite>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Delete {
        key: StoreKey,
        expected: Option<u64>,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    Purge {
        partition: Partition,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedbStore {
    /// Opens (or creates) the store at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, RedbOptions::default())
    }

    /// Opens (or creates) the store at `path`.
    pub fn open_with(path: impl AsRef<Path>, options: RedbOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        let db = Database::create(path).map_err(unavailable)?;
        let txn = db.begin_write().map_err(unavailable)?;
        let counted = txn
            .list_tables()
            .map_err(unavailable)?
            .any(|t| t.name() == USAGE.name());
        let table = txn.open_table(TABLE).map_err(unavailable)?;
        let mut usage = txn.open_table(USAGE).map_err(unavailable)?;
        if !counted {
            count_usage(&table, &mut usage)?;
        }
        drop((table, usage));
        txn.commit().map_err(unavailable)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_db = db.clone();
        let max_batch = options.max_batch.max(1);
        let writer = std::thread::Builder::new()
            .name("tenantry-redb-writer".into())
            .spawn(move || writer_loop(&writer_db, rx, max_batch))
            .map_err(unavailable)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                writes: Some(tx),
                writer: Some(writer),
            }),
        })
    }

    fn submit(&self, write: Write) -> Result<(), StoreError> {
        match &self.inner.writes {
            Some(tx) => tx
                .send(write)
                .map_err(|_| unavailable("the redb writer has stopped")),
            None => Err(unavailable("the redb store is closed")),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close the queue, then wait for the writer so the file is released on return.
        self.writes = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn encode(version: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + bytes.len());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

fn decode(raw: &[u8]) -> Result<Record, StoreError> {
    let (head, bytes) = raw.split_first_chunk::<8>().ok_or_else(|| {
        StoreError::Corrupt(format!("record of {} bytes has no version", raw.len()))
    })?;
    Ok(Record {
        version: u64::from_le_bytes(*head),
        bytes: Arc::from(bytes),
    })
}

fn version_of(raw: &[u8]) -> Result<u64, StoreError> {
    raw.first_chunk::<8>()
        .map(|h| u64::from_le_bytes(*h))
        .ok_or_else(|| StoreError::Corrupt("record has no version".into()))
}

type Table<'t> = redb::Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>;
type UsageTable<'t> = redb::Table<'t, &'static str, (u64, u64)>;

/// The usage changes of one transaction, by partition, written just before it commits.
#[derive(Default)]
struct UsageChanges(HashMap<String, UsageDelta>);

impl UsageChanges {
    /// A record of `partition` went from `old` raw bytes to `new` (`None`: absent); the
    /// raw value holds an 8-byte version before the record's bytes.
    fn record(&mut self, partition: &str, old: Option<usize>, new: Option<usize>) {
        let bytes = |raw: Option<usize>| raw.map(|n| n.saturating_sub(8));
        self.0
            .entry(partition.to_owned())
            .or_default()
            .record(bytes(old), bytes(new));
    }

    fn write(self, usage: &mut UsageTable<'_>) -> Result<(), StoreError> {
        for (partition, delta) in self.0 {
            let (bytes, records) = usage
                .get(partition.as_str())
                .map_err(unavailable)?
                .map_or((0, 0), |v| v.value());
            let StoreUsage { bytes, records } = delta.applied_to(StoreUsage { bytes, records });
            if records == 0 {
                usage.remove(partition.as_str()).map_err(unavailable)?;
            } else {
                usage
                    .insert(partition.as_str(), (bytes, records))
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }
}

/// Counts every partition's usage from its records (a file from before the usage table).
fn count_usage(table: &Table<'_>, usage: &mut UsageTable<'_>) -> Result<(), StoreError> {
    let mut changes = UsageChanges::default();
    for entry in table.iter().map_err(unavailable)? {
        let (k, v) = entry.map_err(unavailable)?;
        changes.record(k.value().0, None, Some(v.value().len()));
    }
    changes.write(usage)
}

/// The table row of a store key: `(partition, manager, key)`.
fn row(k: &StoreKey) -> (&str, &str, &str) {
    (k.partition.as_storage_str(), &k.manager, k.key.encoded())
}

fn current_version(table: &Table<'_>, k: &StoreKey) -> Result<Option<u64>, StoreError> {
    let id = row(k);
    match table.get(id).map_err(unavailable)? {
        Some(v) => Ok(Some(version_of(v.value())?)),
        None => Ok(None),
    }
}

/// Applies a put and its side writes. The outer error is a storage failure that must
/// abort the whole transaction (so no side write lands without its put); the inner one
/// is this put's own compare-and-set outcome.
fn apply_put(
    table: &mut Table<'_>,
    changes: &mut UsageChanges,
    key: &StoreKey,
    bytes: &[u8],
    expected: Option<u64>,
    side: &[SideWrite],
) -> Result<Result<u64, StoreError>, StoreError> {
    // A failure reading this put's own record fails this put only.
    let current = match current_version(table, key) {
        Ok(current) => current,
        Err(e) => return Ok(Err(e)),
    };
    let version = match check_version(expected, current) {
        Ok(version) => version,
        Err(conflict) => return Ok(Err(conflict)),
    };
    // Read every side record first: a failure here fails this put only, before anything
    // of it is written. Only a failure to write aborts the transaction.
    let mut next = Vec::with_capacity(side.len());
    for write in side {
        match current_version(table, &write.key) {
            Ok(current) => next.push(current.map_or(1, |v| v + 1)),
            Err(e) => return Ok(Err(e)),
        }
    }
    let old_len = |old: Option<redb::AccessGuard<'_, &[u8]>>| old.map(|v| v.value().len());
    for (write, next) in side.iter().zip(next) {
        let (old, new) = match &write.bytes {
            Some(bytes) => {
                let raw = encode(next, bytes);
                let old = table
                    .insert(row(&write.key), raw.as_slice())
                    .map_err(unavailable)?;
                (old_len(old), Some(raw.len()))
            }
            None => (
                old_len(table.remove(row(&write.key)).map_err(unavailable)?),
                None,
            ),
        };
        changes.record(write.key.partition.as_storage_str(), old, new);
    }
    let raw = encode(version, bytes);
    let old = table
        .insert(row(key), raw.as_slice())
        .map_err(unavailable)?;
    changes.record(
        key.partition.as_storage_str(),
        old_len(old),
        Some(raw.len()),
    );
    Ok(Ok(version))
}

fn apply_delete(
    table: &mut Table<'_>,
    changes: &mut UsageChanges,
    key: &StoreKey,
    expected: Option<u64>,
) -> Result<bool, StoreError> {
    let Some(actual) = current_version(table, key)? else {
        return Ok(false);
    };
    if expected.is_some_and(|e| e != actual) {
        return Err(StoreError::Conflict {
            expected,
            actual: Some(actual),
        });
    }
    let id = row(key);
    let old = table
        .remove(id)
        .map_err(unavailable)?
        .map(|v| v.value().len());
    changes.record(key.partition.as_storage_str(), old, None);
    Ok(true)
}

fn apply_purge(
    table: &mut Table<'_>,
    changes: &mut UsageChanges,
    partition: &Partition,
) -> Result<u64, StoreError> {
    let p = partition.as_storage_str();
    let mut doomed: Vec<(String, String)> = Vec::new();
    for entry in table.range((p, "", "")..).map_err(unavailable)? {
        let (k, _) = entry.map_err(unavailable)?;
        let (kp, km, kk) = k.value();
        if kp != p {
            break;
        }
        doomed.push((km.to_owned(), kk.to_owned()));
    }
    for (m, k) in &doomed {
        let old = table
            .remove((p, m.as_str(), k.as_str()))
            .map_err(unavailable)?
            .map(|v| v.value().len());
        changes.record(p, old, None);
    }
    Ok(doomed.len() as u64)
}

/// A reply held until the batch commits: the commit decides whether it stands.
enum Pending {
    Put(
        oneshot::Sender<Result<u64, StoreError>>,
        Result<u64, StoreError>,
    ),
    Delete(
        oneshot::Sender<Result<bool, StoreError>>,
        Result<bool, StoreError>,
    ),
    Purge(
        oneshot::Sender<Result<u64, StoreError>>,
        Result<u64, StoreError>,
    ),
}

impl Pending {
    fn answer(self, commit: &Result<(), StoreError>) {
        fn settle<T>(
            r: Result<T, StoreError>,
            commit: &Result<(), StoreError>,
        ) -> Result<T, StoreError> {
            match commit {
                Ok(()) => r,
                Err(e) => Err(e.clone()),
            }
        }
        match self {
            Pending::Put(tx, r) => drop(tx.send(settle(r, commit))),
            Pending::Delete(tx, r) => drop(tx.send(settle(r, commit))),
            Pending::Purge(tx, r) => drop(tx.send(settle(r, commit))),
        }
    }
}

fn writer_loop(db: &Database, mut rx: mpsc::UnboundedReceiver<Write>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        commit_batch(db, &mut batch);
    }
}

fn commit_batch(db: &Database, batch: &mut Vec<Write>) {
    let mut pending = Vec::with_capacity(batch.len());
    let mut writes = batch.drain(..);
    let commit = (|| -> Result<(), StoreError> {
        let txn = db.begin_write().map_err(unavailable)?;
        {
            let mut table = txn.open_table(TABLE).map_err(unavailable)?;
            let mut changes = UsageChanges::default();
            for write in writes.by_ref() {
                match write {
                    Write::Put {
                        key,
                        bytes,
                        expected,
                        side,
                        reply,
                    } => match apply_put(&mut table, &mut changes, &key, &bytes, expected, &side) {
                        Ok(result) => pending.push(Pending::Put(reply, result)),
                        Err(e) => {
                            // A side write failed: nothing of this batch may commit.
                            pending.push(Pending::Put(reply, Err(e.clone())));
                            return Err(e);
                        }
                    },
                    Write::Delete {
                        key,
                        expected,
                        reply,
                    } => pending.push(Pending::Delete(
                        reply,
                        apply_delete(&mut table, &mut changes, &key, expected),
                    )),
                    Write::Purge { partition, reply } => pending.push(Pending::Purge(
                        reply,
                        apply_purge(&mut table, &mut changes, &partition),
                    )),
                }
            }
            changes.write(&mut txn.open_table(USAGE).map_err(unavailable)?)?;
        }
        txn.commit().map_err(unavailable)
    })();
    // Writes never reached (the transaction failed to open, or was aborted) are answered
    // with the reason too.
    for write in writes {
        let err = commit
            .clone()
            .err()
            .unwrap_or_else(|| unavailable("batch aborted"));
        match write {
            Write::Put { reply, .. } | Write::Purge { reply, .. } => drop(reply.send(Err(err))),
            Write::Delete { reply, .. } => drop(reply.send(Err(err))),
        }
    }
    for p in pending {
        p.answer(&commit);
    }
}

async fn await_reply<T>(rx: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
    rx.await
        .unwrap_or_else(|_| Err(unavailable("the redb writer stopped before answering")))
}

impl CheckpointStore for RedbStore {
    fn kind(&self) -> &'static str {
        "redb"
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        let result = (|| {
            let txn = self.inner.db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(TABLE).map_err(unavailable)?;
            let id = row(key);
            match table.get(id).map_err(unavailable)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            }
        })();
        futures::future::ready(result).boxed()
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
        let (reply, rx) = oneshot::channel();
        let sent = self.submit(Write::Put {
            key: turn.key,
            bytes: turn.bytes,
            expected: turn.expected,
            side: turn.side,
            reply,
        });
        async move {
            sent?;
            await_reply(rx).await
        }
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.submit(Write::Delete {
            key: key.clone(),
            expected,
            reply,
        });
        async move {
            sent?;
            await_reply(rx).await
        }
        .boxed()
    }

    fn list<'a>(
        &'a self,
        partition: &'a Partition,
        manager: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(Key, u64)>, StoreError>> {
        let result = (|| {
            let txn = self.inner.db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(TABLE).map_err(unavailable)?;
            let p = partition.as_storage_str();
            let mut out = Vec::new();
            for entry in table.range((p, manager, "")..).map_err(unavailable)? {
                let (k, v) = entry.map_err(unavailable)?;
                let (kp, km, kk) = k.value();
                if kp != p || km != manager {
                    break;
                }
                let key = Key::from_encoded(kk)
                    .map_err(|e| StoreError::Corrupt(format!("stored key {kk:?}: {e}")))?;
                out.push((key, version_of(v.value())?));
            }
            Ok(out)
        })();
        futures::future::ready(result).boxed()
    }

    fn usage<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<Option<StoreUsage>, StoreError>> {
        let result = (|| {
            let txn = self.inner.db.begin_read().map_err(unavailable)?;
            let usage = txn.open_table(USAGE).map_err(unavailable)?;
            let (bytes, records) = usage
                .get(partition.as_storage_str())
                .map_err(unavailable)?
                .map_or((0, 0), |v| v.value());
            Ok(Some(StoreUsage { bytes, records }))
        })();
        futures::future::ready(result).boxed()
    }

    fn purge_partition<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.submit(Write::Purge {
            partition: partition.clone(),
            reply,
        });
        async move {
            sent?;
            await_reply(rx).await
        }
        .boxed()
    }
}
