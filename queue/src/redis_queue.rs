//! The Redis store: each operation is one Lua script (in `queue/lua/`) or pipeline, on
//! one server or a Redis Cluster alike: every key of one call shares the queue's hash
//! tag, and every key a script touches is passed in `KEYS` (see `keys.rs`).

use std::sync::Arc;
use std::time::Duration;

use redis::{Script, ScriptInvocation, Value};

use crate::config::QueueConfig;
use crate::connection::{RedisConnection, RedisTarget};
use crate::keys::{ERROR, JOBS, Keys, PAYLOAD};
use crate::store::{
    Counts, DeadJob, Delivery, Fetched, JobState, NewJob, Outcome, Pushed, QueueError, Settlement, Store,
};

struct Scripts {
    push: Script,
    fetch: Script,
    settle: Script,
    renew: Script,
    dead: Script,
    forget: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("../lua/now.lua")))
}

impl Scripts {
    fn load() -> Scripts {
        Scripts {
            push: script(include_str!("../lua/push.lua")),
            fetch: script(include_str!("../lua/fetch.lua")),
            settle: script(include_str!("../lua/settle.lua")),
            renew: script(include_str!("../lua/renew.lua")),
            dead: script(include_str!("../lua/dead.lua")),
            forget: script(include_str!("../lua/forget.lua")),
        }
    }
}

/// A handle on one queue, cheap to clone. Commands share one multiplexed connection
/// (to a server or a cluster) that reconnects by itself; a failed call returns an error
/// and the next one retries.
#[derive(Clone)]
pub struct RedisQueue {
    inner: Arc<Inner>,
}

struct Inner {
    target: RedisTarget,
    conn: RedisConnection,
    config: QueueConfig,
    keys: Keys,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue").field("name", &self.inner.config.name).finish()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl RedisQueue {
    /// Connects to the server or cluster `url` names (see [`RedisTarget::parse`]).
    pub async fn connect(url: &str, config: QueueConfig) -> Result<RedisQueue, QueueError> {
        RedisQueue::connect_to(RedisTarget::parse(url, false)?, config).await
    }

    pub async fn connect_to(target: RedisTarget, config: QueueConfig) -> Result<RedisQueue, QueueError> {
        let conn = target.connect(config.response_timeout).await?;
        let keys = Keys::new(&config.name);
        Ok(RedisQueue { inner: Arc::new(Inner { target, conn, config, keys, scripts: Scripts::load() }) })
    }

    /// The server or cluster this queue is on.
    pub fn target(&self) -> &RedisTarget {
        &self.inner.target
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    fn conn(&self) -> RedisConnection {
        self.inner.conn.clone()
    }

    /// A connection of its own for blocking waits, which would hold up every other
    /// command sharing a multiplexed connection.
    pub(crate) async fn blocking_connection(&self) -> Result<RedisConnection, QueueError> {
        let config = &self.inner.config;
        Ok(self.inner.target.connect(config.max_idle_wait + config.response_timeout).await?)
    }

    /// Starts a call of `script` with the job hashes, which every script that touches
    /// jobs takes first in `KEYS`.
    fn invocation<'a>(&'a self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for hash in &self.keys().jobs {
            invocation.key(hash);
        }
        invocation
    }

    async fn drain_dead(&self, action: &str) -> Result<u64, QueueError> {
        let mut total = 0;
        loop {
            let n = self.dead_action(action, 1_000, &[]).await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    async fn dead_action(&self, action: &str, limit: usize, ids: &[String]) -> Result<u64, QueueError> {
        let keys = self.keys();
        let mut invocation = self.invocation(&self.inner.scripts.dead);
        invocation.key(&keys.ready).key(&keys.marker).key(&keys.dead);
        invocation.arg(action).arg(limit);
        for id in ids {
            invocation.arg(id);
        }
        Ok(invocation.invoke_async(&mut self.conn()).await?)
    }
}

/// Deletes every key that starts with `prefix`, on every master of a cluster, a
/// thousand per round trip (SCAN, never KEYS, so Redis is not blocked).
pub async fn remove_keys_with_prefix(conn: &mut RedisConnection, prefix: &str) -> Result<u64, QueueError> {
    let escaped: String = prefix
        .chars()
        .flat_map(|c| if matches!(c, '\\' | '[' | ']' | '?' | '*') { vec!['\\', c] } else { vec![c] })
        .collect();
    let pattern = format!("{escaped}*");
    let mut removed = 0;
    for node in conn.masters().await? {
        let mut cursor = 0u64;
        loop {
            let scan = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1_000).clone();
            let (next, batch): (u64, Vec<String>) = conn.query_on(&node, scan).await?;
            removed += conn.unlink(&batch).await?;
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(removed)
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

fn parse_fetched(reply: Vec<Value>) -> Result<Fetched, QueueError> {
    let (Some(wake), Some(left)) = (reply.first().and_then(int), reply.get(1).and_then(int)) else {
        return Err(QueueError::Reply("fetch: wake-up and backlog first"));
    };
    let mut jobs = Vec::with_capacity((reply.len().saturating_sub(2)) / 4);
    let mut rest = reply.into_iter().skip(2);
    while let Some(id) = rest.next() {
        let (Some(payload), Some(attempt), Some(max)) = (rest.next(), rest.next(), rest.next()) else {
            return Err(QueueError::Reply("fetch: four values per job"));
        };
        let id = bytes(id).and_then(|b| String::from_utf8(b).ok()).ok_or(QueueError::Reply("fetch: job id"))?;
        jobs.push(Delivery {
            id,
            payload: bytes(payload).ok_or(QueueError::Reply("fetch: payload"))?,
            attempt: int(&attempt).and_then(|a| u32::try_from(a).ok()).ok_or(QueueError::Reply("fetch: attempt"))?,
            max_attempts: int(&max).and_then(|a| u32::try_from(a).ok()).unwrap_or(1),
        });
    }
    Ok(Fetched {
        jobs,
        wake_in: u64::try_from(wake).ok().map(Duration::from_millis),
        ready_left: u64::try_from(left).unwrap_or(0),
    })
}

impl Store for RedisQueue {
    type Waiter = RedisConnection;

    fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    async fn waiter(&self) -> Result<RedisConnection, QueueError> {
        self.blocking_connection().await
    }

    /// Pushes jobs in one round trip. Jobs whose id or idempotency key already exists
    /// are skipped and reported as not added.
    async fn push(&self, jobs: Vec<NewJob>) -> Result<Vec<Pushed>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys();
        let config = self.config();
        let mut invocation = self.invocation(&self.inner.scripts.push);
        invocation.key(&keys.ready).key(&keys.delayed).key(&keys.marker);
        invocation.arg(millis(config.idempotency_ttl).max(1));
        // The idempotency keys follow the seven fixed keys; a job names its own by its
        // position in KEYS (1-based, as Lua counts).
        let mut idempotency_keys = 0;
        let mut ids = Vec::with_capacity(jobs.len());
        for job in jobs {
            let id = job.id.unwrap_or_else(|| ulid::Ulid::generate().to_string());
            let idempotency_key = match job.idempotency_key {
                Some(key) => {
                    invocation.key(keys.idempotency(&key));
                    idempotency_keys += 1;
                    keys.jobs.len() + 3 + idempotency_keys
                }
                None => 0,
            };
            invocation
                .arg(&id)
                .arg(job.payload)
                .arg(millis(job.delay))
                .arg(job.max_attempts.unwrap_or(config.max_attempts).max(1))
                .arg(idempotency_key);
            ids.push(id);
        }
        let added: Vec<i64> = invocation.invoke_async(&mut self.conn()).await?;
        if added.len() != ids.len() {
            return Err(QueueError::Reply("push: one answer per job"));
        }
        Ok(ids.into_iter().zip(added).map(|(id, added)| Pushed { id, added: added == 1 }).collect())
    }

    /// [`Store::fetch`] under a fetch id: calling it again with the same id after
    /// an error returns the jobs the first call leased, if its answer was lost (an empty
    /// id: not remembered, for a fetch that will not be retried).
    /// `answered` (the caller's previous fetch, whose answer arrived) is forgotten.
    async fn fetch_once(
        &self,
        owner: &str,
        count: usize,
        fetch_id: &str,
        answered: Option<&str>,
    ) -> Result<Fetched, QueueError> {
        let keys = self.keys();
        let config = self.config();
        let answered = answered.unwrap_or("");
        let mut invocation = self.invocation(&self.inner.scripts.fetch);
        invocation
            .key(&keys.ready)
            .key(&keys.delayed)
            .key(&keys.active)
            .key(&keys.marker)
            .key(&keys.dead)
            .key(keys.fetch_record(fetch_id))
            .key(keys.fetch_record(answered));
        invocation
            .arg(count.max(1))
            .arg(millis(config.lease))
            .arg(owner)
            .arg(config.promote_batch)
            .arg(config.reap_batch)
            .arg(if fetch_id.is_empty() { "" } else { "1" })
            .arg(if answered.is_empty() { "" } else { "1" });
        let reply: Vec<Value> = invocation.invoke_async(&mut self.conn()).await?;
        parse_fetched(reply)
    }

    /// Records outcomes in one round trip; `false` for a delivery whose lease `owner`
    /// no longer holds (its outcome is ignored).
    async fn settle(&self, owner: &str, settlements: &[Settlement]) -> Result<Vec<bool>, QueueError> {
        if settlements.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys();
        let config = self.config();
        let mut invocation = self.invocation(&self.inner.scripts.settle);
        invocation
            .key(&keys.ready)
            .key(&keys.delayed)
            .key(&keys.active)
            .key(&keys.marker)
            .key(&keys.dead)
            .key(&keys.done)
            .key(&keys.results);
        invocation
            .arg(owner)
            .arg(config.keep_done.count)
            .arg(millis(config.keep_done.age).max(1))
            .arg(config.keep_dead.count)
            .arg(millis(config.keep_dead.age).max(1));
        for settlement in settlements {
            let (kind, delay, text) = match &settlement.outcome {
                Outcome::Done(result) => ("done", 0, result.as_str()),
                Outcome::Retry { after, error } => ("retry", millis(*after), error.as_str()),
                Outcome::Dead(error) => ("dead", 0, error.as_str()),
                Outcome::Release => ("release", 0, ""),
            };
            invocation.arg(&settlement.id).arg(settlement.attempt).arg(kind).arg(delay).arg(text);
        }
        let recorded: Vec<i64> = invocation.invoke_async(&mut self.conn()).await?;
        Ok(recorded.into_iter().map(|r| r == 1).collect())
    }

    /// Extends the leases `owner` holds; returns the ids it no longer holds.
    async fn renew(&self, owner: &str, held: &[(String, u32)]) -> Result<Vec<String>, QueueError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys();
        let mut invocation = self.invocation(&self.inner.scripts.renew);
        invocation.key(&keys.active).arg(owner).arg(millis(self.config().lease));
        for (id, attempt) in held {
            invocation.arg(id).arg(*attempt);
        }
        Ok(invocation.invoke_async(&mut self.conn()).await?)
    }

    /// Blocks on `conn` until a push (or a fetch that left work behind) signals work,
    /// or `timeout` passes. Returns whether it was signalled.
    async fn wait_for_work(&self, conn: &mut RedisConnection, timeout: Duration) -> Result<bool, QueueError> {
        // BZPOPMIN treats 0 as "forever"; the caller never asks for less than 1 ms.
        let seconds = timeout.max(Duration::from_millis(1)).as_secs_f64();
        let reply: Value = redis::cmd("BZPOPMIN").arg(&self.keys().marker).arg(seconds).query_async(conn).await?;
        Ok(!matches!(reply, Value::Nil))
    }

    /// Where a job is, or `None` when it finished longer ago than the retention (or was
    /// never pushed).
    async fn state(&self, id: &str) -> Result<Option<JobState>, QueueError> {
        let keys = self.keys();
        let (job, finished): (Option<String>, Option<f64>) =
            redis::pipe().hget(&keys.jobs[JOBS], id).zscore(&keys.done, id).query_async(&mut self.conn()).await?;
        Ok(match job {
            Some(job) => job.split(' ').next().and_then(JobState::parse),
            None => finished.map(|_| JobState::Done),
        })
    }

    /// A finished job's result, while its record is retained.
    async fn result(&self, id: &str) -> Result<Option<String>, QueueError> {
        Ok(redis::cmd("HGET").arg(&self.keys().results).arg(id).query_async(&mut self.conn()).await?)
    }

    async fn counts(&self) -> Result<Counts, QueueError> {
        let keys = self.keys();
        let (ready, delayed, active, dead, done): (u64, u64, u64, u64, u64) = redis::pipe()
            .llen(&keys.ready)
            .zcard(&keys.delayed)
            .zcard(&keys.active)
            .zcard(&keys.dead)
            .zcard(&keys.done)
            .query_async(&mut self.conn())
            .await?;
        Ok(Counts { ready, delayed, active, dead, done })
    }

    /// The dead set, oldest first.
    async fn dead_jobs(&self, offset: usize, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let keys = self.keys();
        if limit == 0 {
            return Ok(Vec::new());
        }
        let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&keys.dead)
            .arg(offset)
            .arg(offset + limit - 1)
            .arg("WITHSCORES")
            .query_async(&mut self.conn())
            .await?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&String> = entries.iter().map(|(id, _)| id).collect();
        let mut pipe = redis::pipe();
        for hash in [JOBS, ERROR, PAYLOAD] {
            pipe.cmd("HMGET").arg(&keys.jobs[hash]).arg(&ids);
        }
        type Details = (Vec<Option<String>>, Vec<Option<String>>, Vec<Option<Vec<u8>>>);
        let (jobs, errors, payloads): Details = pipe.query_async(&mut self.conn()).await?;
        // `state attempt maximum`: the attempts are the second word.
        let attempts = jobs.into_iter().map(|job| job.and_then(|j| j.split(' ').nth(1)?.parse::<u32>().ok()));
        let details = attempts.zip(errors).zip(payloads);
        Ok(entries
            .into_iter()
            .zip(details)
            .map(|((id, died), ((attempts, error), payload))| DeadJob {
                id,
                attempts: attempts.unwrap_or(0),
                error: error.unwrap_or_default(),
                died_at_ms: died as i64,
                payload: payload.unwrap_or_default(),
            })
            .collect())
    }

    /// Puts dead jobs back in the ready list with their attempts reset.
    async fn replay(&self, ids: &[String]) -> Result<u64, QueueError> {
        self.dead_action("replay", ids.len().max(1), ids).await
    }

    /// Replays the whole dead set, a thousand jobs per round trip.
    async fn replay_all(&self) -> Result<u64, QueueError> {
        self.drain_dead("replay").await
    }

    /// Deletes the whole dead set, a thousand jobs per round trip.
    async fn purge_dead(&self) -> Result<u64, QueueError> {
        self.drain_dead("purge").await
    }

    /// Forgets jobs that finished more than `older_than` ago (a thousand per round
    /// trip); returns how many.
    async fn forget_finished(&self, older_than: Duration) -> Result<u64, QueueError> {
        let keys = self.keys();
        let mut total = 0;
        loop {
            let mut conn = self.conn();
            let mut invocation = self.invocation(&self.inner.scripts.forget);
            invocation.key(&keys.done).key(&keys.results).arg(millis(older_than)).arg(1_000);
            let n: u64 = invocation.invoke_async(&mut conn).await?;
            total += n;
            if n < 1_000 {
                return Ok(total);
            }
        }
    }

    async fn ping(&self) -> Result<(), QueueError> {
        // At the queue's own node: on a cluster that is the one its calls need.
        let _: String = self.conn().query_at_key(&self.keys().ready, redis::cmd("PING")).await?;
        Ok(())
    }

    /// Deletes every key of this queue (tests and benchmarks start from nothing).
    async fn remove_all(&self) -> Result<u64, QueueError> {
        remove_keys_with_prefix(&mut self.conn(), &self.keys().prefix).await
    }
}
