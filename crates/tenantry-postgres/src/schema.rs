//! The store's tables, their versioned migrations, and the SQL it runs against them.
//!
//! Migrations are applied by [`migrate`] in one transaction that first takes an advisory
//! lock per schema, so several processes connecting at once migrate exactly once. Each
//! applied migration is recorded in `<schema>.tenantry_migrations`. Migrations are only
//! ever appended: a released one is never edited.

use crate::PgError;
use crate::error::classify;
use sqlx::postgres::PgPool;
use sqlx::{Executor, PgConnection};

/// One schema change.
struct Migration {
    version: i32,
    description: &'static str,
    /// Statements, with `{schema}` standing for the quoted schema name.
    sql: &'static str,
}

/// Every migration, in order. Text columns use the "C" collation so that the primary key
/// orders keys by bytes, which is the order `list` promises, whatever the database's
/// default collation.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "checkpoints table keyed by (partition, manager, key)",
        sql: r#"
        CREATE TABLE {schema}.checkpoints (
            partition TEXT COLLATE "C" NOT NULL,
            manager   TEXT COLLATE "C" NOT NULL,
            key       TEXT COLLATE "C" NOT NULL,
            version   BIGINT NOT NULL CHECK (version > 0),
            bytes     BYTEA NOT NULL,
            PRIMARY KEY (partition, manager, key)
        );
    "#,
    },
    Migration {
        version: 2,
        description: "shard fences of cluster mode: (cluster, shard) -> epoch, holder",
        sql: r#"
        CREATE TABLE {schema}.shard_fences (
            cluster TEXT COLLATE "C" NOT NULL,
            shard   INTEGER NOT NULL CHECK (shard >= 0),
            epoch   BIGINT NOT NULL CHECK (epoch > 0),
            holder  TEXT NOT NULL,
            PRIMARY KEY (cluster, shard)
        );
    "#,
    },
    Migration {
        version: 3,
        description: "each partition's stored bytes and records, kept by statement triggers",
        // Striped by the writing backend so that concurrent writers of one partition do
        // not queue on one counter row; a read sums the stripes. The triggers count every
        // statement's rows, so the usage changes in the transaction of the write.
        sql: r#"
        CREATE TABLE {schema}.partition_usage (
            partition TEXT COLLATE "C" NOT NULL,
            stripe    SMALLINT NOT NULL,
            bytes     BIGINT NOT NULL,
            records   BIGINT NOT NULL,
            PRIMARY KEY (partition, stripe)
        );
        CREATE FUNCTION {schema}.tenantry_count_usage() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO {schema}.partition_usage AS u (partition, stripe, bytes, records)
                SELECT partition, pg_backend_pid() % 64, sum(octet_length(bytes)), count(*)
                FROM new_rows GROUP BY partition ORDER BY partition
                ON CONFLICT (partition, stripe) DO UPDATE
                SET bytes = u.bytes + EXCLUDED.bytes, records = u.records + EXCLUDED.records;
            ELSIF TG_OP = 'UPDATE' THEN
                INSERT INTO {schema}.partition_usage AS u (partition, stripe, bytes, records)
                SELECT partition, pg_backend_pid() % 64, sum(b), 0 FROM (
                    SELECT partition, octet_length(bytes)::int8 AS b FROM new_rows
                    UNION ALL
                    SELECT partition, -octet_length(bytes)::int8 FROM old_rows
                ) AS d GROUP BY partition ORDER BY partition
                ON CONFLICT (partition, stripe) DO UPDATE SET bytes = u.bytes + EXCLUDED.bytes;
            ELSE
                INSERT INTO {schema}.partition_usage AS u (partition, stripe, bytes, records)
                SELECT partition, pg_backend_pid() % 64, -sum(octet_length(bytes)), -count(*)
                FROM old_rows GROUP BY partition ORDER BY partition
                ON CONFLICT (partition, stripe) DO UPDATE
                SET bytes = u.bytes + EXCLUDED.bytes, records = u.records + EXCLUDED.records;
            END IF;
            RETURN NULL;
        END
        $fn$;
        CREATE TRIGGER usage_on_insert AFTER INSERT ON {schema}.checkpoints
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION {schema}.tenantry_count_usage();
        CREATE TRIGGER usage_on_update AFTER UPDATE ON {schema}.checkpoints
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION {schema}.tenantry_count_usage();
        CREATE TRIGGER usage_on_delete AFTER DELETE ON {schema}.checkpoints
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION {schema}.tenantry_count_usage();
        INSERT INTO {schema}.partition_usage (partition, stripe, bytes, records)
        SELECT partition, 0, sum(octet_length(bytes)), count(*)
        FROM {schema}.checkpoints GROUP BY partition;
    "#,
    },
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i32 = 3;

/// `"name"`: the schema name as a quoted identifier. Names are checked by
/// `PgOptions::validate` to hold no quote.
pub(crate) fn quoted(schema: &str) -> String {
    format!("\"{schema}\"")
}

/// Creates the schema if needed and applies every migration not applied yet, in one
/// transaction. On any failure the connection is closed, which rolls the transaction back.
pub(crate) async fn migrate(pool: &PgPool, schema: &str) -> Result<(), PgError> {
    let unavailable = |e: sqlx::Error| PgError::Unavailable(classify(e).error.to_string());
    let mut conn = pool.acquire().await.map_err(unavailable)?;
    let begun = conn.execute("BEGIN").await;
    let outcome = match begun {
        Ok(_) => apply(&mut conn, schema).await,
        Err(e) => Err(unavailable(e)),
    };
    let outcome = match outcome {
        Ok(()) => conn.execute("COMMIT").await.map(drop).map_err(unavailable),
        Err(e) => Err(e),
    };
    if outcome.is_err() {
        conn.close_on_drop();
    }
    outcome
}

/// The body of [`migrate`], inside its transaction.
async fn apply(conn: &mut PgConnection, schema: &str) -> Result<(), PgError> {
    let unavailable = |e: sqlx::Error| PgError::Unavailable(classify(e).error.to_string());
    let q = quoted(schema);
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("tenantry.migrations.{schema}"))
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    let setup = format!(
        "CREATE SCHEMA IF NOT EXISTS {q};
         CREATE TABLE IF NOT EXISTS {q}.tenantry_migrations (
             version     INTEGER PRIMARY KEY,
             description TEXT NOT NULL,
             applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
         );"
    );
    conn.execute(setup.as_str()).await.map_err(unavailable)?;
    let applied_sql = format!("SELECT coalesce(max(version), 0) FROM {q}.tenantry_migrations");
    let applied: i32 = sqlx::query_scalar(&applied_sql)
        .persistent(false)
        .fetch_one(&mut *conn)
        .await
        .map_err(unavailable)?;
    if applied > SCHEMA_VERSION {
        return Err(PgError::SchemaTooNew {
            found: applied,
            supported: SCHEMA_VERSION,
        });
    }
    let record_sql =
        format!("INSERT INTO {q}.tenantry_migrations (version, description) VALUES ($1, $2)");
    for m in MIGRATIONS.iter().filter(|m| m.version > applied) {
        let failed = |e: sqlx::Error| PgError::Migration {
            version: m.version,
            reason: e.to_string(),
        };
        let sql = m.sql.replace("{schema}", &q);
        conn.execute(sql.as_str()).await.map_err(failed)?;
        sqlx::query(&record_sql)
            .persistent(false)
            .bind(m.version)
            .bind(m.description)
            .execute(&mut *conn)
            .await
            .map_err(failed)?;
        tracing::info!(
            schema,
            version = m.version,
            description = m.description,
            "applied store migration"
        );
    }
    Ok(())
}

/// The statements the store runs, with the table name filled in once.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) get_batch: String,
    pub(crate) put_batch: String,
    pub(crate) versions: String,
    pub(crate) version_one: String,
    pub(crate) delete: String,
    pub(crate) list: String,
    pub(crate) purge: String,
    pub(crate) usage: String,
    pub(crate) take_shard: String,
    pub(crate) shard_fence: String,
}

impl Statements {
    pub(crate) fn new(schema: &str) -> Self {
        let t = format!("{}.checkpoints", quoted(schema));
        let f = format!("{}.shard_fences", quoted(schema));
        // The keys of a batch, numbered from 1 in the order given.
        let keys = "unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY \
                    AS i(partition, manager, key, ord)";
        let join = "c.partition = i.partition AND c.manager = i.manager AND c.key = i.key";
        Self {
            get_batch: format!(
                "SELECT i.ord, c.version, c.bytes FROM {keys} JOIN {t} AS c ON {join}"
            ),
            versions: format!("SELECT i.ord, c.version FROM {keys} JOIN {t} AS c ON {join}"),
            version_one: format!(
                "SELECT version FROM {t} WHERE partition = $1 AND manager = $2 AND key = $3"
            ),
            // One statement for a whole batch of compare-and-set puts (each key at most
            // once): new records are inserted unless they exist, the others updated only
            // where the version is the one expected. The side writes of the puts that
            // took effect are applied in the same statement (so atomically with them);
            // those of the others are not. A put with a fence (cluster, shard, epoch) is
            // admitted only if its shard's epoch is still that one, with the fence row
            // locked FOR SHARE: a node taking the shard waits for this statement's commit,
            // or this statement sees the new epoch and leaves the put out. Returns the
            // number and new version of every put that took effect, and version 0 for
            // every put its fence kept out; the rest lost their compare-and-set.
            put_batch: format!(
                "WITH input AS (
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::bytea[],
                                          $11::text[], $12::int4[], $13::int8[])
                         WITH ORDINALITY AS i(partition, manager, key, expected, bytes,
                                              cluster, shard, epoch, ord)
                 ),
                 held AS (
                     SELECT i.ord FROM input AS i JOIN {f} AS f
                         ON f.cluster = i.cluster AND f.shard = i.shard AND f.epoch = i.epoch
                     FOR SHARE OF f
                 ),
                 admitted AS (
                     SELECT * FROM input WHERE cluster IS NULL OR ord IN (SELECT ord FROM held)
                 ),
                 inserted AS (
                     INSERT INTO {t} AS c (partition, manager, key, version, bytes)
                     SELECT partition, manager, key, 1, bytes FROM admitted WHERE expected IS NULL
                     ON CONFLICT (partition, manager, key) DO NOTHING
                     RETURNING c.partition, c.manager, c.key, c.version
                 ),
                 updated AS (
                     UPDATE {t} AS c SET version = c.version + 1, bytes = i.bytes
                     FROM admitted AS i
                     WHERE i.expected IS NOT NULL AND {join} AND c.version = i.expected
                     RETURNING i.ord, c.version
                 ),
                 won AS (
                     SELECT i.ord, c.version FROM inserted AS c JOIN admitted AS i ON {join}
                     UNION ALL
                     SELECT ord, version FROM updated
                 ),
                 side AS (
                     SELECT * FROM unnest($6::text[], $7::text[], $8::text[], $9::bytea[], $10::int8[])
                         AS s(partition, manager, key, bytes, owner)
                     WHERE s.owner IN (SELECT ord FROM won)
                 ),
                 side_put AS (
                     INSERT INTO {t} AS c (partition, manager, key, version, bytes)
                     SELECT partition, manager, key, 1, bytes FROM side WHERE bytes IS NOT NULL
                     ON CONFLICT (partition, manager, key)
                     DO UPDATE SET version = c.version + 1, bytes = EXCLUDED.bytes
                 ),
                 side_delete AS (
                     DELETE FROM {t} AS c USING side AS s
                     WHERE s.bytes IS NULL AND c.partition = s.partition
                       AND c.manager = s.manager AND c.key = s.key
                 )
                 SELECT ord, version FROM won
                 UNION ALL
                 SELECT ord, 0 FROM input WHERE ord NOT IN (SELECT ord FROM admitted)"
            ),
            // A fenced delete ($5 the cluster, $6 the shard, $7 the epoch) passes the same
            // check as a fenced put.
            delete: format!(
                "WITH held AS (
                     SELECT 1 FROM {f} WHERE cluster = $5 AND shard = $6 AND epoch = $7
                     FOR SHARE
                 )
                 DELETE FROM {t} WHERE partition = $1 AND manager = $2 AND key = $3
                 AND ($4::int8 IS NULL OR version = $4)
                 AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM held)) RETURNING version"
            ),
            // Raises a shard's epoch (1 for a shard nobody took yet) and names the taker.
            take_shard: format!(
                "INSERT INTO {f} AS f (cluster, shard, epoch, holder) VALUES ($1, $2, 1, $3)
                 ON CONFLICT (cluster, shard)
                 DO UPDATE SET epoch = f.epoch + 1, holder = EXCLUDED.holder
                 RETURNING epoch"
            ),
            shard_fence: format!("SELECT epoch, holder FROM {f} WHERE cluster = $1 AND shard = $2"),
            list: format!(
                "SELECT key, version FROM {t} WHERE partition = $1 AND manager = $2 ORDER BY key"
            ),
            purge: format!("DELETE FROM {t} WHERE partition = $1"),
            usage: format!(
                "SELECT coalesce(sum(bytes), 0)::int8, coalesce(sum(records), 0)::int8
                 FROM {}.partition_usage WHERE partition = $1",
                quoted(schema)
            ),
        }
    }
}
