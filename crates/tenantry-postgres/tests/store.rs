//! PostgreSQL store behaviour beyond the shared conformance suite: option checks, the
//! unreachable database, migrations, what the table holds, runtime round trips, and a
//! database that goes away or stops answering (played by a TCP proxy the test controls).
//! Tests needing a server are skipped when TENANTRY_TEST_POSTGRES_URL is not set.

mod common;

use common::*;
use sqlx::Row;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use tenantry::store::{CheckpointStore, StoreError};
use tenantry::{Identity, Key, ManagerConfig, Partition, Runtime};
use tenantry_postgres::{PgConnectOptions, PgError, PgOptions, PgStore, SCHEMA_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn p(name: &str) -> Partition {
    Partition::new(name).expect("valid partition")
}

fn id(partition: &Partition, manager: &str, key: &str) -> Identity {
    Identity::new(
        partition.clone(),
        manager,
        Key::new(key).expect("valid key"),
    )
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_within_the_connect_timeout() {
    let started = Instant::now();
    // Spawned, which also checks that `connect` can run as a task of its own.
    let result = tokio::spawn(PgStore::connect(
        "postgres://postgres@127.0.0.1:1/test",
        PgOptions {
            connect_timeout: Duration::from_millis(500),
            ..PgOptions::with_schema("tenantry_unreachable")
        },
    ))
    .await
    .expect("connect task");
    let elapsed = started.elapsed();
    match result {
        Err(PgError::Unavailable(message)) => {
            let as_store = StoreError::from(PgError::Unavailable(message));
            assert!(matches!(as_store, StoreError::Unavailable(_)));
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected to a port nothing listens on"),
    }
    assert!(
        elapsed < Duration::from_secs(5),
        "gave up after {elapsed:?}, not within the timeout"
    );
}

#[tokio::test]
async fn invalid_options_and_urls_are_refused_before_connecting() {
    for schema in [
        "",
        "Upper",
        "a-b",
        "x\"; DROP TABLE y; --",
        "pg_mine",
        "1st",
    ] {
        let result = PgStore::connect(
            "postgres://postgres@127.0.0.1:1/test",
            PgOptions::with_schema(schema),
        )
        .await;
        assert!(
            matches!(result, Err(PgError::InvalidOption(_))),
            "schema {schema:?}: {result:?}"
        );
    }
    let result = PgStore::connect("not a url", PgOptions::default()).await;
    assert!(
        matches!(result, Err(PgError::InvalidOption(_))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_migrate_once_and_record_the_schema_version() {
    let Some(db) = TestDb::new("migrate") else {
        return;
    };
    let (a, b, c) = tokio::join!(db.store(), db.store(), db.store());
    drop((a, b, c));
    let store = db.store().await;
    assert_eq!(store.schema(), db.schema);
    let mut raw = db.raw().await;
    let rows = sqlx::query(&format!(
        "SELECT version, description FROM \"{}\".tenantry_migrations ORDER BY version",
        db.schema
    ))
    .fetch_all(&mut raw)
    .await
    .expect("migrations table");
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    let columns: Vec<(String, String)> = sqlx::query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = $1 AND table_name = 'checkpoints' ORDER BY ordinal_position",
    )
    .bind(&db.schema)
    .fetch_all(&mut raw)
    .await
    .expect("columns")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(
        columns,
        [
            ("partition", "text"),
            ("manager", "text"),
            ("key", "text"),
            ("version", "bigint"),
            ("bytes", "bytea")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_migrated_by_a_newer_build_is_refused() {
    let Some(db) = TestDb::new("newer") else {
        return;
    };
    drop(db.store().await);
    let mut raw = db.raw().await;
    sqlx::query(&format!(
        "INSERT INTO \"{}\".tenantry_migrations (version, description) VALUES (99, 'future')",
        db.schema
    ))
    .execute(&mut raw)
    .await
    .expect("insert");
    let result = PgStore::connect(&db.url, db.options()).await;
    assert!(
        matches!(
            result,
            Err(PgError::SchemaTooNew {
                found: 99,
                supported: SCHEMA_VERSION
            })
        ),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_keyed_by_partition_manager_and_encoded_key_with_unpartitioned_as_empty() {
    let Some(db) = TestDb::new("rows") else {
        return;
    };
    let store = db.store().await;
    let none = Partition::unpartitioned();
    store
        .put(&id(&none, "m", "a"), Arc::from(&b"x"[..]), None)
        .await
        .expect("put");
    let tuple = Identity::new(p("alpha"), "m", Key::tuple(["x", "y"]).expect("key"));
    store
        .put(&tuple, Arc::from(&b"y"[..]), None)
        .await
        .expect("put");
    store
        .put(&tuple, Arc::from(&b"z"[..]), Some(1))
        .await
        .expect("put");
    let mut raw = db.raw().await;
    let rows: Vec<(String, String, String, i64, Vec<u8>)> = sqlx::query(&format!(
        "SELECT partition, manager, key, version, bytes FROM \"{}\".checkpoints ORDER BY partition",
        db.schema
    ))
    .fetch_all(&mut raw)
    .await
    .expect("select")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect();
    assert_eq!(
        rows,
        vec![
            ("".into(), "m".into(), "a".into(), 1, b"x".to_vec()),
            (
                "alpha".into(),
                "m".into(),
                r#"["x","y"]"#.into(),
                2,
                b"z".to_vec()
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_key_that_does_not_parse_makes_list_report_corrupt() {
    let Some(db) = TestDb::new("badkey") else {
        return;
    };
    let store = db.store().await;
    let mut raw = db.raw().await;
    sqlx::query(&format!(
        "INSERT INTO \"{}\".checkpoints VALUES ('alpha', 'm', '[not json', 1, '\\x00')",
        db.schema
    ))
    .execute(&mut raw)
    .await
    .expect("insert");
    let result = store.list(&p("alpha"), "m").await;
    assert!(
        matches!(&result, Err(StoreError::Corrupt(m)) if m.contains("[not json")),
        "{result:?}"
    );
    // Other managers and partitions still list.
    assert_eq!(store.list(&p("alpha"), "other").await, Ok(vec![]));
    assert_eq!(store.list(&p("beta"), "m").await, Ok(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_instances_hibernate_and_thaw_through_a_runtime() {
    let Some(db) = TestDb::new("runtime") else {
        return;
    };
    let n = 2000;
    let alpha = p("alpha");
    let payload = "x".repeat(1000);
    {
        let rt = Runtime::new(db.store().await);
        let m = rt
            .register::<Counter>("counters", ManagerConfig::default())
            .expect("register");
        for i in 0..n {
            let initial = Counter {
                count: i,
                payload: payload.clone(),
            };
            m.get_with(format!("k{i}"), &alpha, initial)
                .await
                .expect("get");
        }
        let (stopped, errors) = m.stop_all().await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(stopped, n as usize);
        rt.shutdown().await;
    }
    let store = db.store().await;
    assert_eq!(
        store.list(&alpha, "counters").await.expect("list").len(),
        n as usize
    );
    let rt = Runtime::new(store);
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .expect("register");
    let thaws = (0..n).map(|i| {
        let m = m.clone();
        let alpha = alpha.clone();
        tokio::spawn(async move {
            let h = m.get(format!("k{i}"), &alpha).await.expect("thaw");
            (i, h.call(Get).await.expect("call"))
        })
    });
    for joined in futures::future::join_all(thaws).await {
        let (i, count) = joined.expect("task");
        assert_eq!(count, i, "state of k{i} after the thaw");
    }
    rt.shutdown().await;
}

/// What the proxy does with traffic.
const FORWARD: u8 = 0;
/// Accept connections and close them at once: a database that is down.
const REFUSE: u8 = 1;
/// Accept connections and hold them without a byte passing: a database that hangs.
const STALL: u8 = 2;

/// A TCP proxy in front of the test server that the test can cut or stall.
struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
    generation: Arc<AtomicU8>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let generation = Arc::new(AtomicU8::new(0));
        let (m, g) = (mode.clone(), generation.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (m, g, upstream) = (m.clone(), g.clone(), upstream.clone());
                tokio::spawn(async move {
                    match m.load(Ordering::SeqCst) {
                        FORWARD => {
                            if let Ok(server) = TcpStream::connect(upstream).await {
                                relay(client, server, m, g).await;
                            }
                        }
                        REFUSE => drop(client),
                        _ => {
                            // Hold the connection without answering until told otherwise.
                            let born = g.load(Ordering::SeqCst);
                            while g.load(Ordering::SeqCst) == born {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            port,
            mode,
            generation,
            accept,
        }
    }

    /// Sets the mode and ends every connection opened so far.
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        if mode != STALL {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.accept.abort();
    }
}

/// Copies bytes both ways until either side closes, the proxy's generation changes (the
/// connection is cut), or the proxy stalls (bytes stop passing, the sockets stay open).
async fn relay(client: TcpStream, server: TcpStream, mode: Arc<AtomicU8>, gen_: Arc<AtomicU8>) {
    let born = gen_.load(Ordering::SeqCst);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(pump(cr, sw, mode.clone(), gen_.clone(), born));
    let down = tokio::spawn(pump(sr, cw, mode, gen_, born));
    let _ = tokio::join!(up, down);
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<AtomicU8>,
    gen_: Arc<AtomicU8>,
    born: u8,
) {
    let cut = || gen_.load(Ordering::SeqCst) != born;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                if cut() {
                    return;
                }
                continue;
            }
        };
        while mode.load(Ordering::SeqCst) == STALL && !cut() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if cut() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A store reaching the test server through `proxy`, with short timeouts.
async fn store_via(db: &TestDb, proxy: &Proxy) -> PgStore {
    let connect = PgConnectOptions::from_str(&db.url)
        .expect("url")
        .host("127.0.0.1")
        .port(proxy.port);
    PgStore::connect_with(
        connect,
        PgOptions {
            connect_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(1),
            ..db.options()
        },
    )
    .await
    .expect("connect through the proxy")
}

fn upstream(db: &TestDb) -> (String, u16) {
    let o = PgConnectOptions::from_str(&db.url).expect("url");
    (o.get_host().to_owned(), o.get_port())
}

/// Asserts `result` is `Unavailable` and came within `limit`.
fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, StoreError>,
    started: Instant,
    limit: Duration,
) {
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{what}: expected Unavailable, got {result:?}"
    );
    assert!(
        started.elapsed() < limit,
        "{what}: answered after {:?}, not within {limit:?}",
        started.elapsed()
    );
}

/// Retries `get` until it succeeds (the store heals by itself), at most `limit`.
async fn until_healed(store: &PgStore, key: &Identity, limit: Duration) -> u64 {
    let started = Instant::now();
    loop {
        match store.get(key).await {
            Ok(Some(record)) => return record.version,
            other if started.elapsed() > limit => {
                panic!("the store did not recover within {limit:?}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_is_unavailable_and_the_store_recovers_when_it_is_back() {
    let Some(db) = TestDb::new("down") else {
        return;
    };
    let proxy = Proxy::start(upstream(&db)).await;
    let store = store_via(&db, &proxy).await;
    let alpha = p("alpha");
    let a = id(&alpha, "m", "a");
    assert_eq!(store.put(&a, Arc::from(&b"1"[..]), None).await, Ok(1));

    proxy.set(REFUSE);
    let limit = Duration::from_secs(8);
    let t = Instant::now();
    assert_unavailable("get", store.get(&a).await, t, limit);
    let t = Instant::now();
    assert_unavailable(
        "put",
        store.put(&a, Arc::from(&b"2"[..]), Some(1)).await,
        t,
        limit,
    );
    let t = Instant::now();
    assert_unavailable("list", store.list(&alpha, "m").await, t, limit);
    let t = Instant::now();
    assert_unavailable("delete", store.delete(&a, Some(1)).await, t, limit);
    let t = Instant::now();
    assert_unavailable("purge", store.purge_partition(&alpha).await, t, limit);

    proxy.set(FORWARD);
    assert_eq!(
        until_healed(&store, &a, Duration::from_secs(10)).await,
        1,
        "nothing was changed while the database was away"
    );
    assert_eq!(store.put(&a, Arc::from(&b"2"[..]), Some(1)).await, Ok(2));
    assert_eq!(store.list(&alpha, "m").await.map(|l| l.len()), Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_is_unavailable_within_the_timeouts_not_a_hang() {
    let Some(db) = TestDb::new("hang") else {
        return;
    };
    let proxy = Proxy::start(upstream(&db)).await;
    let store = store_via(&db, &proxy).await;
    let a = id(&p("alpha"), "m", "a");
    assert_eq!(store.put(&a, Arc::from(&b"1"[..]), None).await, Ok(1));

    // Pooled connections stop passing bytes mid-conversation; new ones never get an answer.
    proxy.set(STALL);
    let limit = Duration::from_secs(8);
    let t = Instant::now();
    assert_unavailable("get", store.get(&a).await, t, limit);
    let t = Instant::now();
    assert_unavailable(
        "put",
        store.put(&a, Arc::from(&b"2"[..]), Some(1)).await,
        t,
        limit,
    );

    proxy.set(FORWARD);
    until_healed(&store, &a, Duration::from_secs(10)).await;
    // The stalled put either never reached the database or landed: either way the
    // compare-and-set tells which, and the store takes writes again.
    let version = store.get(&a).await.expect("get").expect("record").version;
    assert_eq!(
        store.put(&a, Arc::from(&b"3"[..]), Some(version)).await,
        Ok(version + 1)
    );
}
