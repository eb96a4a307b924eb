//! The batchers: a writer task that folds queued puts into one statement and commit,
//! and a reader task that folds concurrent gets into one query.
//!
//! When a write slot is free, the writer takes every put queued at that moment (up to
//! `max_batch` puts and `max_batch_bytes` bytes), with each key at most once (a second put
//! of a key waits for the next batch, so it sees the first one's outcome), and runs them
//! as one statement: one round trip and one commit for the lot. Up to
//! `write_concurrency` batches run at once, never two with a key in common. Each put is
//! answered with its own compare-and-set result; the losers' actual versions are read
//! after the commit. A batch that PostgreSQL aborts for a deadlock or a serialization
//! failure (possible only with other writers on the same rows, e.g. another node) changed
//! nothing and runs again.
//!
//! When a read slot is free, the reader takes every get queued at that moment and reads
//! them in one query; up to `read_concurrency` such queries run at once.

use crate::conn::{Shared, on_connection, read_with_retry};
use crate::error::{Failure, classify, version_from_db};
use crate::fence::Fence;
use sqlx::Row;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tenantry::store::{Record, SideWrite, StoreError, StoreKey};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// A queued put.
pub(crate) struct PutRequest {
    pub(crate) key: StoreKey,
    pub(crate) bytes: Arc<[u8]>,
    pub(crate) expected: Option<u64>,
    /// Written in the same statement as the put, and only if its compare-and-set holds.
    pub(crate) side: Vec<SideWrite>,
    /// The shard fence the put must pass (a fenced store handle's), if any.
    pub(crate) fence: Option<Fence>,
    pub(crate) reply: oneshot::Sender<Result<u64, StoreError>>,
}

impl PutRequest {
    /// Every record the put writes: its own and its side writes'.
    fn keys(&self) -> impl Iterator<Item = &StoreKey> {
        std::iter::once(&self.key).chain(self.side.iter().map(|w| &w.key))
    }
}

/// A queued get.
pub(crate) struct GetRequest {
    pub(crate) key: StoreKey,
    pub(crate) reply: oneshot::Sender<Result<Option<Record>, StoreError>>,
}

/// Waits for a batcher's answer, at most `limit`. After that the caller gets
/// `Unavailable`; a put not started by then is dropped by the writer, one already sent
/// to the database may still have taken effect (a retry at the same expected version
/// then gets `Conflict`).
pub(crate) async fn await_reply<T>(
    rx: oneshot::Receiver<Result<T, StoreError>>,
    limit: Duration,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(StoreError::Unavailable(
            "the store stopped before answering".into(),
        )),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer from the database within {limit:?}"
        ))),
    }
}

/// How often a batch aborted by a transient transaction conflict is run again.
const TRANSIENT_RETRIES: usize = 5;

/// A finished batch: the keys it held, and the puts to try again.
struct Done {
    keys: Vec<StoreKey>,
    again: Vec<PutRequest>,
}

/// The writer task: runs until every handle of the store is gone, the queue is empty and
/// no batch is running. Up to `write_concurrency` batches run at once, never two with a
/// key in common: a put whose key is in a running batch waits for it to finish.
pub(crate) async fn writer(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<PutRequest>) {
    let max_batch = shared.options.max_batch;
    let max_bytes = shared.options.max_batch_bytes;
    let slots = Arc::new(Semaphore::new(shared.options.write_concurrency));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut waiting: VecDeque<PutRequest> = VecDeque::new();
    let mut in_flight: HashSet<StoreKey> = HashSet::new();
    let mut running = 0usize;
    let mut open = true;
    let settle = |done: Done,
                  waiting: &mut VecDeque<PutRequest>,
                  in_flight: &mut HashSet<StoreKey>,
                  running: &mut usize| {
        *running -= 1;
        for key in &done.keys {
            in_flight.remove(key);
        }
        // Puts to retry go first, ahead of what was already waiting.
        for put in done.again.into_iter().rev() {
            waiting.push_front(put);
        }
    };
    loop {
        while let Ok(done) = done_rx.try_recv() {
            settle(done, &mut waiting, &mut in_flight, &mut running);
        }
        let ready = waiting
            .iter()
            .any(|put| put.keys().all(|k| !in_flight.contains(k)));
        if !ready {
            if !open && running == 0 && waiting.is_empty() {
                return;
            }
            tokio::select! {
                put = rx.recv(), if open => match put {
                    Some(put) => waiting.push_back(put),
                    None => open = false,
                },
                Some(done) = done_rx.recv(), if running > 0 => {
                    settle(done, &mut waiting, &mut in_flight, &mut running);
                }
            }
            continue;
        }
        // Wait for a free slot; meanwhile more puts queue up and join this batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        let mut keys = HashSet::new();
        let mut bytes = 0usize;
        let mut later = VecDeque::new();
        let mut offer = |put: PutRequest, batch: &mut Vec<PutRequest>| {
            if put.reply.is_closed() {
                return; // The caller gave up: do not write behind its back.
            }
            let size = put.bytes.len()
                + put
                    .side
                    .iter()
                    .map(|w| w.bytes.as_ref().map_or(0, |b| b.len()))
                    .sum::<usize>();
            let full = batch.len() >= max_batch || (!batch.is_empty() && bytes + size > max_bytes);
            if full
                || put
                    .keys()
                    .any(|k| keys.contains(k) || in_flight.contains(k))
            {
                later.push_back(put);
            } else {
                bytes += size;
                keys.extend(put.keys().cloned());
                batch.push(put);
            }
        };
        while let Some(put) = waiting.pop_front() {
            offer(put, &mut batch);
        }
        while open && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(put) => offer(put, &mut batch),
                Err(_) => break,
            }
        }
        waiting = later;
        if batch.is_empty() {
            continue;
        }
        let keys: Vec<StoreKey> = batch.iter().flat_map(|put| put.keys().cloned()).collect();
        in_flight.extend(keys.iter().cloned());
        running += 1;
        let (shared, done_tx) = (shared.clone(), done_tx.clone());
        tokio::spawn(async move {
            let again = write_batch(&shared, batch).await;
            drop(slot);
            let _ = done_tx.send(Done { keys, again });
        });
    }
}

/// Runs one batch and answers every put in it, except those returned: puts whose
/// compare-and-set missed while the version now read is the one they expected (the
/// record was deleted and recreated in between), to be tried again.
async fn write_batch(shared: &Shared, batch: Vec<PutRequest>) -> Vec<PutRequest> {
    let mut outcome = run_put_statement(shared, &batch).await;
    for _ in 0..TRANSIENT_RETRIES {
        match &outcome {
            Err(f) if f.retry => outcome = run_put_statement(shared, &batch).await,
            _ => break,
        }
    }
    let (won, fenced) = match outcome {
        Ok(outcome) => outcome,
        Err(failure) => {
            for put in batch {
                let _ = put.reply.send(Err(failure.error.clone()));
            }
            return Vec::new();
        }
    };
    let lost: Vec<usize> = (0..batch.len())
        .filter(|i| !won.contains_key(i) && !fenced.contains(i))
        .collect();
    let actual: Result<HashMap<usize, Option<u64>>, StoreError> = if lost.is_empty() {
        Ok(HashMap::new())
    } else {
        let puts: Vec<&PutRequest> = lost.iter().filter_map(|&i| batch.get(i)).collect();
        read_versions(shared, &puts)
            .await
            .map(|versions| lost.iter().copied().zip(versions).collect())
    };
    let mut again = Vec::new();
    for (i, put) in batch.into_iter().enumerate() {
        if fenced.contains(&i) {
            let shard = put.fence.as_ref().map_or(0, |f| f.shard);
            let _ = put.reply.send(Err(StoreError::Fenced { shard }));
            continue;
        }
        let result = match (won.get(&i), &actual) {
            (Some(version), _) => Ok(*version),
            (None, Err(e)) => Err(e.clone()),
            (None, Ok(versions)) => {
                let actual = versions.get(&i).copied().flatten();
                if actual == put.expected {
                    again.push(put);
                    continue;
                }
                Err(StoreError::Conflict {
                    expected: put.expected,
                    actual,
                })
            }
        };
        let _ = put.reply.send(result);
    }
    again
}

/// The side writes of a batch, as the statement's array parameters.
#[derive(Default)]
struct SideColumns<'a> {
    partitions: Vec<&'a str>,
    managers: Vec<&'a str>,
    keys: Vec<&'a str>,
    /// `None`: delete the record.
    bytes: Vec<Option<&'a [u8]>>,
    /// The ordinal of the put each side write belongs to.
    owners: Vec<i64>,
}

/// What a batch statement did, by position in the batch: the new version of every put
/// whose compare-and-set held, and the puts their fence kept out.
type Outcome = (HashMap<usize, u64>, HashSet<usize>);

/// The batch statement (see [`Outcome`]).
async fn run_put_statement(shared: &Shared, batch: &[PutRequest]) -> Result<Outcome, Failure> {
    let mut partitions = Vec::with_capacity(batch.len());
    let mut managers = Vec::with_capacity(batch.len());
    let mut keys = Vec::with_capacity(batch.len());
    let mut expected = Vec::with_capacity(batch.len());
    let mut bytes = Vec::with_capacity(batch.len());
    let mut side = SideColumns::default();
    let mut fences = FenceColumns::default();
    for (ord, put) in (1i64..).zip(batch) {
        fences
            .clusters
            .push(put.fence.as_ref().map(|f| &*f.cluster));
        // Shards are below `ShardCount::MAX`, so they fit an int4.
        fences
            .shards
            .push(put.fence.as_ref().map(|f| f.shard as i32));
        fences.epochs.push(put.fence.as_ref().map(|f| f.epoch));
        partitions.push(put.key.partition.as_storage_str());
        managers.push(&*put.key.manager);
        keys.push(put.key.key.encoded());
        // Checked by `PgStore::put` to fit.
        expected.push(put.expected.and_then(|e| i64::try_from(e).ok()));
        bytes.push(&*put.bytes);
        for write in &put.side {
            side.partitions.push(write.key.partition.as_storage_str());
            side.managers.push(&*write.key.manager);
            side.keys.push(write.key.key.encoded());
            side.bytes.push(write.bytes.as_deref());
            side.owners.push(ord);
        }
    }
    let rows = on_connection!(shared, conn => {
        sqlx::query(&shared.sql.put_batch)
            .bind(&partitions)
            .bind(&managers)
            .bind(&keys)
            .bind(&expected)
            .bind(&bytes)
            .bind(&side.partitions)
            .bind(&side.managers)
            .bind(&side.keys)
            .bind(&side.bytes)
            .bind(&side.owners)
            .bind(&fences.clusters)
            .bind(&fences.shards)
            .bind(&fences.epochs)
            .fetch_all(&mut *conn)
            .await
    })?;
    let mut won = HashMap::with_capacity(rows.len());
    let mut fenced = HashSet::new();
    for row in rows {
        let decoded = row
            .try_get::<i64, _>(0)
            .and_then(|ord| Ok((ord, row.try_get::<i64, _>(1)?)));
        let (ord, version) = decoded.map_err(classify)?;
        // Ordinals count from 1 in the order the puts were bound.
        let Some(i) = usize::try_from(ord).ok().and_then(|o| o.checked_sub(1)) else {
            continue;
        };
        // Version 0 marks a put its fence kept out (stored versions start at 1).
        if version == 0 && batch.get(i).is_some_and(|p| p.fence.is_some()) {
            fenced.insert(i);
            continue;
        }
        let version = version_from_db(version).map_err(|error| Failure {
            error,
            broken: false,
            retry: false,
        })?;
        won.insert(i, version);
    }
    Ok((won, fenced))
}

/// The fences of a batch's puts, as the statement's array parameters (`None`: unfenced).
#[derive(Default)]
struct FenceColumns<'a> {
    clusters: Vec<Option<&'a str>>,
    shards: Vec<Option<i32>>,
    epochs: Vec<Option<i64>>,
}

/// The current versions of the given records, in the same order (`None`: no record).
async fn read_versions(
    shared: &Shared,
    puts: &[&PutRequest],
) -> Result<Vec<Option<u64>>, StoreError> {
    let partitions: Vec<&str> = puts
        .iter()
        .map(|p| p.key.partition.as_storage_str())
        .collect();
    let managers: Vec<&str> = puts.iter().map(|p| &*p.key.manager).collect();
    let keys: Vec<&str> = puts.iter().map(|p| p.key.key.encoded()).collect();
    let rows = read_with_retry!(shared, conn => {
        sqlx::query(&shared.sql.versions)
            .bind(&partitions)
            .bind(&managers)
            .bind(&keys)
            .fetch_all(&mut *conn)
            .await
    })?;
    let mut out = vec![None; puts.len()];
    for row in rows {
        let ord: i64 = row.try_get(0).map_err(|e| classify(e).error)?;
        let version: i64 = row.try_get(1).map_err(|e| classify(e).error)?;
        if let Some(slot) = usize::try_from(ord)
            .ok()
            .and_then(|o| o.checked_sub(1))
            .and_then(|i| out.get_mut(i))
        {
            *slot = Some(version_from_db(version)?);
        }
    }
    Ok(out)
}

/// The reader task: runs until every handle of the store is gone.
pub(crate) async fn reader(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<GetRequest>) {
    let slots = Arc::new(Semaphore::new(shared.options.read_concurrency));
    while let Some(first) = rx.recv().await {
        // Wait for a free slot first: meanwhile more gets queue up and join this batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < shared.options.max_read_batch {
            match rx.try_recv() {
                Ok(get) => batch.push(get),
                Err(_) => break,
            }
        }
        batch.retain(|get| !get.reply.is_closed());
        let shared = shared.clone();
        tokio::spawn(async move {
            read_batch(&shared, batch).await;
            drop(slot);
        });
    }
}

async fn read_batch(shared: &Shared, batch: Vec<GetRequest>) {
    if batch.is_empty() {
        return;
    }
    match read_records(shared, &batch).await {
        Ok(mut records) => {
            for (i, get) in batch.into_iter().enumerate() {
                let record = records.get_mut(i).and_then(Option::take);
                let _ = get.reply.send(record.transpose());
            }
        }
        Err(e) => {
            for get in batch {
                let _ = get.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Reads the records of a batch, by position (`None`: no record; `Some(Err)`: a row that
/// does not decode, which fails only its own get).
async fn read_records(
    shared: &Shared,
    batch: &[GetRequest],
) -> Result<Vec<Option<Result<Record, StoreError>>>, StoreError> {
    let partitions: Vec<&str> = batch
        .iter()
        .map(|g| g.key.partition.as_storage_str())
        .collect();
    let managers: Vec<&str> = batch.iter().map(|g| &*g.key.manager).collect();
    let keys: Vec<&str> = batch.iter().map(|g| g.key.key.encoded()).collect();
    let rows = read_with_retry!(shared, conn => {
        sqlx::query(&shared.sql.get_batch)
            .bind(&partitions)
            .bind(&managers)
            .bind(&keys)
            .fetch_all(&mut *conn)
            .await
    })?;
    let mut out: Vec<Option<Result<Record, StoreError>>> = Vec::new();
    out.resize_with(batch.len(), || None);
    for row in rows {
        let ord: i64 = row.try_get(0).map_err(|e| classify(e).error)?;
        let record = (|| {
            let version: i64 = row.try_get(1).map_err(|e| classify(e).error)?;
            let bytes: &[u8] = row.try_get(2).map_err(|e| classify(e).error)?;
            Ok(Record {
                version: version_from_db(version)?,
                bytes: Arc::from(bytes),
            })
        })();
        if let Some(slot) = usize::try_from(ord)
            .ok()
            .and_then(|o| o.checked_sub(1))
            .and_then(|i| out.get_mut(i))
        {
            *slot = Some(record);
        }
    }
    Ok(out)
}
