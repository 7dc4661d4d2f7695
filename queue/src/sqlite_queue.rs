//! The SQLite store, for embedded mode: the same states and rules as the Redis store,
//! one `BEGIN IMMEDIATE` transaction per operation, its own two tables in the service's
//! database. Embedded mode is one process, so a push wakes idle workers through an
//! in-process notification instead of a blocking Redis command.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::SqlitePool;
use sqlx::{Row, SqliteConnection};
use tokio::sync::Notify;

use crate::config::QueueConfig;
use crate::store::{
    Counts, DeadJob, Delivery, Fetched, JobState, NewJob, Outcome, Pushed, QueueError, Settlement, Store,
};

const SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS pp_queue_jobs (
        queue TEXT NOT NULL,
        id TEXT NOT NULL,
        payload BLOB,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        -- ready | delayed | active | done | dead, as in the Redis store
        state TEXT NOT NULL,
        -- ready: in line since; delayed: due; active: lease deadline; done/dead: ended
        at INTEGER NOT NULL,
        owner TEXT,
        error TEXT,
        result TEXT,
        PRIMARY KEY (queue, id)
    )",
    "CREATE INDEX IF NOT EXISTS pp_queue_jobs_line ON pp_queue_jobs (queue, state, at)",
    "CREATE TABLE IF NOT EXISTS pp_queue_idempotency (
        queue TEXT NOT NULL,
        key TEXT NOT NULL,
        id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (queue, key)
    )",
];

/// A handle on one queue in a SQLite database, cheap to clone.
#[derive(Clone)]
pub struct SqliteQueue {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    config: QueueConfig,
    pushed: Notify,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue").field("name", &self.inner.config.name).finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// When a job delayed by `delay` from `now` is due. The clock reads whole milliseconds,
/// so up to one has already passed since `now` began; counting from the next one means
/// a delayed job never runs early.
fn due_at(now: i64, delay: Duration) -> i64 {
    now.saturating_add(1).saturating_add(ms(delay))
}

impl SqliteQueue {
    /// Creates the queue's tables if missing. The pool should have a busy timeout: the
    /// transactions take the write lock up front and wait for it.
    pub async fn connect(pool: SqlitePool, config: QueueConfig) -> Result<SqliteQueue, QueueError> {
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        Ok(SqliteQueue { inner: Arc::new(Inner { pool, config, pushed: Notify::new() }) })
    }

    pub fn backend<Args>(&self, concurrency: usize) -> crate::SqliteBackend<Args> {
        crate::QueueBackend::new(self.clone(), concurrency)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    fn name(&self) -> &str {
        &self.inner.config.name
    }

    async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, QueueError> {
        Ok(self.inner.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Moves lapsed leases and due delayed jobs to the ready line, a bounded batch of each.
async fn return_to_line(conn: &mut SqliteConnection, queue: &SqliteQueue, now: i64) -> Result<(), QueueError> {
    let config = &queue.inner.config;
    sqlx::query(
        "UPDATE pp_queue_jobs SET owner = NULL,
             state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'ready' END,
             error = CASE WHEN attempts >= max_attempts THEN 'lease lapsed on the last attempt' ELSE 'lease lapsed' END,
             at = ?3
         WHERE rowid IN (SELECT rowid FROM pp_queue_jobs
                         WHERE queue = ?1 AND state = 'active' AND at <= ?3 ORDER BY at LIMIT ?2)",
    )
    .bind(queue.name())
    .bind(config.reap_batch as i64)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE pp_queue_jobs SET state = 'ready'
         WHERE rowid IN (SELECT rowid FROM pp_queue_jobs
                         WHERE queue = ?1 AND state = 'delayed' AND at <= ?3 ORDER BY at LIMIT ?2)",
    )
    .bind(queue.name())
    .bind(config.promote_batch as i64)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Keeps at most `keep` records in `state`, none older than `age`.
async fn trim(
    conn: &mut SqliteConnection,
    queue: &SqliteQueue,
    state: &str,
    keep: usize,
    age: Duration,
    now: i64,
) -> Result<(), QueueError> {
    sqlx::query(
        "DELETE FROM pp_queue_jobs WHERE rowid IN (
             SELECT rowid FROM pp_queue_jobs WHERE queue = ?1 AND state = ?2 ORDER BY at DESC LIMIT -1 OFFSET ?3)
         OR (queue = ?1 AND state = ?2 AND at < ?4)",
    )
    .bind(queue.name())
    .bind(state)
    .bind(keep as i64)
    .bind(now - ms(age))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store for SqliteQueue {
    type Waiter = ();

    fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    async fn push(&self, jobs: Vec<NewJob>) -> Result<Vec<Pushed>, QueueError> {
        let now = now_ms();
        let config = &self.inner.config;
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM pp_queue_idempotency WHERE queue = ?1 AND expires_at <= ?2")
            .bind(self.name())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let mut pushed = Vec::with_capacity(jobs.len());
        for job in jobs {
            let id = job.id.unwrap_or_else(|| ulid::Ulid::generate().to_string());
            let exists = sqlx::query("SELECT 1 FROM pp_queue_jobs WHERE queue = ?1 AND id = ?2")
                .bind(self.name())
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            let mut added = !exists;
            if added && let Some(key) = &job.idempotency_key {
                let claimed = sqlx::query(
                    "INSERT INTO pp_queue_idempotency (queue, key, id, expires_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (queue, key) DO NOTHING",
                )
                .bind(self.name())
                .bind(key)
                .bind(&id)
                .bind(now + ms(config.idempotency_ttl))
                .execute(&mut *tx)
                .await?;
                added = claimed.rows_affected() == 1;
            }
            if added {
                let (state, at) =
                    if job.delay.is_zero() { ("ready", now) } else { ("delayed", due_at(now, job.delay)) };
                sqlx::query(
                    "INSERT INTO pp_queue_jobs (queue, id, payload, attempts, max_attempts, state, at)
                     VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6)",
                )
                .bind(self.name())
                .bind(&id)
                .bind(job.payload)
                .bind(i64::from(job.max_attempts.unwrap_or(config.max_attempts).max(1)))
                .bind(state)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            pushed.push(Pushed { id, added });
        }
        tx.commit().await?;
        if pushed.iter().any(|p| p.added) {
            self.inner.pushed.notify_one();
        }
        Ok(pushed)
    }

    /// SQLite answers in-process: a failed transaction leased nothing (it rolled back),
    /// so a retry needs no memory of the fetch id.
    async fn fetch_once(
        &self,
        owner: &str,
        count: usize,
        _fetch_id: &str,
        _answered: Option<&str>,
    ) -> Result<Fetched, QueueError> {
        let now = now_ms();
        let config = &self.inner.config;
        let mut tx = self.write().await?;
        return_to_line(&mut tx, self, now).await?;
        let rows = sqlx::query(
            "UPDATE pp_queue_jobs SET state = 'active', attempts = attempts + 1, owner = ?1, at = ?2
             WHERE rowid IN (SELECT rowid FROM pp_queue_jobs
                             WHERE queue = ?3 AND state = 'ready' ORDER BY at, rowid LIMIT ?4)
             RETURNING id, payload, attempts, max_attempts, rowid",
        )
        .bind(owner)
        .bind(now + ms(config.lease))
        .bind(self.name())
        .bind(count.max(1) as i64)
        .fetch_all(&mut *tx)
        .await?;
        let left: i64 =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pp_queue_jobs WHERE queue = ?1 AND state = 'ready')")
                .bind(self.name())
                .fetch_one(&mut *tx)
                .await?;
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(at) FROM pp_queue_jobs WHERE queue = ?1 AND state IN ('delayed', 'active')")
                .bind(self.name())
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        let mut jobs: Vec<(i64, Delivery)> = rows
            .into_iter()
            .map(|row| {
                let delivery = Delivery {
                    id: row.get(0),
                    payload: row.get::<Option<Vec<u8>>, _>(1).unwrap_or_default(),
                    attempt: u32::try_from(row.get::<i64, _>(2)).unwrap_or(u32::MAX),
                    max_attempts: u32::try_from(row.get::<i64, _>(3)).unwrap_or(1),
                };
                (row.get(4), delivery)
            })
            .collect();
        // RETURNING gives no order; the line's order is by rowid within one instant.
        jobs.sort_by_key(|(rowid, _)| *rowid);
        Ok(Fetched {
            jobs: jobs.into_iter().map(|(_, d)| d).collect(),
            wake_in: next.map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0))),
            ready_left: u64::try_from(left).unwrap_or(0),
        })
    }

    async fn settle(&self, owner: &str, settlements: &[Settlement]) -> Result<Vec<bool>, QueueError> {
        let now = now_ms();
        let config = &self.inner.config;
        let mut tx = self.write().await?;
        let mut recorded = Vec::with_capacity(settlements.len());
        let mut woke = false;
        for settlement in settlements {
            let (state, at, attempts_change, text): (&str, i64, i64, Option<&str>) = match &settlement.outcome {
                Outcome::Done(result) => ("done", now, 0, Some(result.as_str())),
                Outcome::Retry { after, error } => ("delayed", due_at(now, *after), 0, Some(error.as_str())),
                Outcome::Dead(error) => ("dead", now, 0, Some(error.as_str())),
                Outcome::Release => ("ready", now, -1, None),
            };
            woke |= matches!(settlement.outcome, Outcome::Retry { .. } | Outcome::Release);
            let done = matches!(settlement.outcome, Outcome::Done(_));
            let changed = sqlx::query(
                "UPDATE pp_queue_jobs SET state = ?1, at = ?2, attempts = attempts + ?3, owner = NULL,
                     result = CASE WHEN ?1 = 'done' THEN ?4 ELSE result END,
                     error = CASE WHEN ?1 IN ('delayed', 'dead') THEN ?4 ELSE error END,
                     payload = CASE WHEN ?1 = 'done' THEN NULL ELSE payload END
                 WHERE queue = ?5 AND id = ?6 AND owner = ?7 AND attempts = ?8 AND state = 'active'",
            )
            .bind(state)
            .bind(at)
            .bind(attempts_change)
            .bind(text)
            .bind(self.name())
            .bind(&settlement.id)
            .bind(owner)
            .bind(i64::from(settlement.attempt))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if changed && done && config.keep_done.count == 0 {
                sqlx::query("DELETE FROM pp_queue_jobs WHERE queue = ?1 AND id = ?2")
                    .bind(self.name())
                    .bind(&settlement.id)
                    .execute(&mut *tx)
                    .await?;
            }
            recorded.push(changed);
        }
        trim(&mut tx, self, "done", config.keep_done.count, config.keep_done.age, now).await?;
        trim(&mut tx, self, "dead", config.keep_dead.count, config.keep_dead.age, now).await?;
        tx.commit().await?;
        if woke {
            self.inner.pushed.notify_one();
        }
        Ok(recorded)
    }

    async fn renew(&self, owner: &str, held: &[(String, u32)]) -> Result<Vec<String>, QueueError> {
        let deadline = now_ms() + ms(self.inner.config.lease);
        let mut tx = self.write().await?;
        let mut lost = Vec::new();
        for (id, attempt) in held {
            let renewed = sqlx::query(
                "UPDATE pp_queue_jobs SET at = ?1
                 WHERE queue = ?2 AND id = ?3 AND owner = ?4 AND attempts = ?5 AND state = 'active'",
            )
            .bind(deadline)
            .bind(self.name())
            .bind(id)
            .bind(owner)
            .bind(i64::from(*attempt))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if renewed == 0 {
                lost.push(id.clone());
            }
        }
        tx.commit().await?;
        Ok(lost)
    }

    async fn waiter(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn wait_for_work(&self, _: &mut (), timeout: Duration) -> Result<bool, QueueError> {
        Ok(tokio::time::timeout(timeout, self.inner.pushed.notified()).await.is_ok())
    }

    async fn state(&self, id: &str) -> Result<Option<JobState>, QueueError> {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM pp_queue_jobs WHERE queue = ?1 AND id = ?2")
            .bind(self.name())
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await?;
        Ok(state.as_deref().and_then(JobState::parse))
    }

    async fn result(&self, id: &str) -> Result<Option<String>, QueueError> {
        let result: Option<Option<String>> =
            sqlx::query_scalar("SELECT result FROM pp_queue_jobs WHERE queue = ?1 AND id = ?2 AND state = 'done'")
                .bind(self.name())
                .bind(id)
                .fetch_optional(&self.inner.pool)
                .await?;
        Ok(result.flatten().filter(|r| !r.is_empty()))
    }

    async fn counts(&self) -> Result<Counts, QueueError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM pp_queue_jobs WHERE queue = ?1 GROUP BY state")
            .bind(self.name())
            .fetch_all(&self.inner.pool)
            .await?;
        let mut counts = Counts::default();
        for row in rows {
            let n = u64::try_from(row.get::<i64, _>(1)).unwrap_or(0);
            match JobState::parse(row.get(0)) {
                Some(JobState::Ready) => counts.ready = n,
                Some(JobState::Delayed) => counts.delayed = n,
                Some(JobState::Active) => counts.active = n,
                Some(JobState::Done) => counts.done = n,
                Some(JobState::Dead) => counts.dead = n,
                None => {}
            }
        }
        Ok(counts)
    }

    async fn dead_jobs(&self, offset: usize, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let rows = sqlx::query(
            "SELECT id, attempts, error, at, payload FROM pp_queue_jobs
             WHERE queue = ?1 AND state = 'dead' ORDER BY at, rowid LIMIT ?2 OFFSET ?3",
        )
        .bind(self.name())
        .bind(limit as i64)
        .bind(offset as i64)
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| DeadJob {
                id: row.get(0),
                attempts: u32::try_from(row.get::<i64, _>(1)).unwrap_or(0),
                error: row.get::<Option<String>, _>(2).unwrap_or_default(),
                died_at_ms: row.get(3),
                payload: row.get::<Option<Vec<u8>>, _>(4).unwrap_or_default(),
            })
            .collect())
    }

    async fn replay(&self, ids: &[String]) -> Result<u64, QueueError> {
        let now = now_ms();
        let mut tx = self.write().await?;
        let mut replayed = 0;
        for id in ids {
            replayed += sqlx::query(
                "UPDATE pp_queue_jobs SET state = 'ready', attempts = 0, at = ?1
                 WHERE queue = ?2 AND id = ?3 AND state = 'dead'",
            )
            .bind(now)
            .bind(self.name())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        if replayed > 0 {
            self.inner.pushed.notify_one();
        }
        Ok(replayed)
    }

    async fn replay_all(&self) -> Result<u64, QueueError> {
        let replayed = sqlx::query(
            "UPDATE pp_queue_jobs SET state = 'ready', attempts = 0, at = ?1 WHERE queue = ?2 AND state = 'dead'",
        )
        .bind(now_ms())
        .bind(self.name())
        .execute(&self.inner.pool)
        .await?
        .rows_affected();
        if replayed > 0 {
            self.inner.pushed.notify_one();
        }
        Ok(replayed)
    }

    async fn purge_dead(&self) -> Result<u64, QueueError> {
        let purged = sqlx::query("DELETE FROM pp_queue_jobs WHERE queue = ?1 AND state = 'dead'")
            .bind(self.name())
            .execute(&self.inner.pool)
            .await?;
        Ok(purged.rows_affected())
    }

    async fn forget_finished(&self, older_than: Duration) -> Result<u64, QueueError> {
        let forgotten = sqlx::query("DELETE FROM pp_queue_jobs WHERE queue = ?1 AND state = 'done' AND at <= ?2")
            .bind(self.name())
            .bind(now_ms() - ms(older_than))
            .execute(&self.inner.pool)
            .await?;
        Ok(forgotten.rows_affected())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1").execute(&self.inner.pool).await?;
        Ok(())
    }

    async fn remove_all(&self) -> Result<u64, QueueError> {
        let jobs = sqlx::query("DELETE FROM pp_queue_jobs WHERE queue = ?1")
            .bind(self.name())
            .execute(&self.inner.pool)
            .await?;
        sqlx::query("DELETE FROM pp_queue_idempotency WHERE queue = ?1")
            .bind(self.name())
            .execute(&self.inner.pool)
            .await?;
        Ok(jobs.rows_affected())
    }
}
