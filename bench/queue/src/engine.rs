//! The three engines behind one small interface: a [`Client`] that pushes, counts and
//! cleans (workers are in worker.rs).
//!
//! - `ours`: petportrait-queue with its defaults (`--batch-size`, `--prefetch` override).
//! - `ours-prefetch`: the same with `prefetch = 100`: each worker fetches up to 100 jobs
//!   beyond its free handler slots, which pays off for short jobs (the platform keeps
//!   the default 0, since a render can take seconds and must not hold jobs back).
//! - `apalis-redis`: apalis-redis 1.0 with its `Config::default()`, plus only what it
//!   needs to work at all: a 5 s response timeout (one slow reply past the 500 ms default
//!   kills the worker) and a 20 ms poll (a push never wakes an idle worker otherwise).
//! - `apalis-redis-tuned`: as above with `lock_tasks(false)` (its lease script is O(n²)),
//!   no pub/sub events, a larger fetch batch, a 5 ms poll and a heartbeat derived from
//!   `--lease-ms` so that a dead worker's jobs are recovered about as fast as ours.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use apalis::prelude::*;
use apalis_redis::RedisStorage;
use petportrait_queue::{NewJob, QueueConfig, RedisConnection, RedisQueue, Store, remove_keys_with_prefix};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use crate::args::Args;

/// Pads a job's JSON to about 100 bytes, the size the BullMQ runner uses.
const PAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// A benchmark job. `t` is an epoch time in nanoseconds (the intended or actual send
/// time), so a worker in another process can compare it with its own clock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub i: u64,
    pub t: u64,
    /// Whether the job counts in the measurement (false during a warm-up).
    pub m: bool,
    pub p: String,
}

impl Job {
    pub fn new(i: u64, t: u64, measured: bool) -> Job {
        Job { i, t, m: measured, p: PAD.to_owned() }
    }
}

pub fn epoch_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or_default()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Ours,
    OursPrefetch,
    Apalis,
    ApalisTuned,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Ours => "ours",
            Engine::OursPrefetch => "ours-prefetch",
            Engine::Apalis => "apalis-redis",
            Engine::ApalisTuned => "apalis-redis-tuned",
        }
    }
}

/// Everything that decides how an engine is set up, shared by parent and child processes.
#[derive(Clone, Debug)]
pub struct Setup {
    pub engine: Engine,
    pub url: String,
    pub queue: String,
    pub concurrency: usize,
    pub lease: Duration,
    /// 0: the engine's own choice.
    pub batch_size: usize,
    pub prefetch: usize,
    /// Zero: the engine's own choice.
    pub poll: Duration,
}

impl Setup {
    pub fn from_args(args: &Args) -> anyhow::Result<Setup> {
        let engine = match args.text("engine") {
            "ours" => Engine::Ours,
            "ours-prefetch" => Engine::OursPrefetch,
            "apalis-redis" => Engine::Apalis,
            "apalis-redis-tuned" => Engine::ApalisTuned,
            other => bail!("unknown engine {other:?} (ours, ours-prefetch, apalis-redis, apalis-redis-tuned)"),
        };
        let url = match args.text("url") {
            "" => std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            url => url.to_owned(),
        };
        let number =
            |key: &str| -> anyhow::Result<u64> { if args.text(key).is_empty() { Ok(0) } else { args.number(key) } };
        Ok(Setup {
            engine,
            url,
            queue: args.text("queue").to_owned(),
            concurrency: (number("concurrency")? as usize).max(1),
            lease: Duration::from_millis(match number("lease-ms")? {
                0 => 30_000,
                ms => ms,
            }),
            batch_size: number("batch-size")? as usize,
            prefetch: number("prefetch")? as usize,
            poll: Duration::from_millis(number("poll-ms")?),
        })
    }

    pub(crate) fn queue_config(&self) -> QueueConfig {
        let mut config = QueueConfig::new(&self.queue);
        config.lease = self.lease;
        config.prefetch = match (self.engine, self.prefetch) {
            (Engine::OursPrefetch, 0) => 100,
            (_, prefetch) => prefetch,
        };
        if self.batch_size > 0 {
            config.fetch_batch = self.batch_size;
        }
        config
    }

    pub(crate) fn apalis_config(&self) -> apalis_redis::Config {
        let config = apalis_redis::Config::default().queue(&self.queue);
        let config = match self.engine {
            // A batch of 100 drained fastest at concurrency 1, 10 and 50 (10 to 200 tried);
            // heartbeats every third of the lease, three missed, recover a dead worker's
            // jobs about one lease after its last heartbeat, as ours does.
            Engine::ApalisTuned => config
                .lock_tasks(false)
                .emit_events(false)
                .batch_size(100)
                .heartbeat_interval(self.lease / 3)
                .missed_heartbeats(3),
            _ => config,
        };
        if self.batch_size > 0 { config.batch_size(self.batch_size) } else { config }
    }

    pub(crate) fn poll(&self) -> Duration {
        match (self.poll.is_zero(), self.engine) {
            (false, _) => self.poll,
            (true, Engine::ApalisTuned) => Duration::from_millis(5),
            (true, _) => Duration::from_millis(20),
        }
    }
}

/// A plain Redis connection with a response timeout long enough for a slow script.
pub async fn connection(url: &str) -> anyhow::Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    let client = redis::Client::open(url).context("bad Redis URL")?;
    Ok(client.get_connection_manager_with_config(config).await?)
}

/// The producer's and the orchestrator's view of a queue.
pub enum Client {
    Ours { queue: RedisQueue, conn: ConnectionManager },
    Apalis { storage: Box<RedisStorage<Job>>, conn: ConnectionManager, name: String },
}

impl Client {
    pub async fn connect(setup: &Setup) -> anyhow::Result<Client> {
        let conn = connection(&setup.url).await?;
        Ok(match setup.engine {
            Engine::Ours | Engine::OursPrefetch => {
                Client::Ours { queue: RedisQueue::connect(&setup.url, setup.queue_config()).await?, conn }
            }
            Engine::Apalis | Engine::ApalisTuned => Client::Apalis {
                storage: Box::new(RedisStorage::new(conn.clone()).with_config(setup.apalis_config())),
                conn,
                name: setup.queue.clone(),
            },
        })
    }

    /// A connection for commands of the benchmark's own (the crash workload's hashes).
    pub fn redis(&self) -> ConnectionManager {
        match self {
            Client::Ours { conn, .. } | Client::Apalis { conn, .. } => conn.clone(),
        }
    }

    /// Pushes jobs in one round trip.
    pub async fn push(&mut self, jobs: Vec<Job>) -> anyhow::Result<()> {
        match self {
            Client::Ours { queue, .. } => {
                let jobs =
                    jobs.iter().map(|job| Ok(NewJob::new(serde_json::to_vec(job)?))).collect::<anyhow::Result<_>>()?;
                queue.push(jobs).await?;
            }
            Client::Apalis { storage, .. } => storage.push_bulk(jobs).await.map_err(|e| anyhow!("apalis push: {e}"))?,
        }
        Ok(())
    }

    /// Deletes every key of the queue.
    pub async fn clean(&self) -> anyhow::Result<u64> {
        match self {
            Client::Ours { queue, .. } => Ok(queue.remove_all().await?),
            Client::Apalis { conn, name, .. } => {
                let mut conn = conn.clone();
                let mut server = RedisConnection::Server(conn.clone());
                let removed = remove_keys_with_prefix(&mut server, &format!("{name}:")).await?;
                // Workers register their queue in a list shared by all queues.
                let _: u64 = redis::cmd("ZREM")
                    .arg("core:apalis:queues:list")
                    .arg(format!("{name}:workers"))
                    .query_async(&mut conn)
                    .await?;
                Ok(removed)
            }
        }
    }

    /// Jobs not yet handed to a worker.
    pub async fn waiting(&self) -> anyhow::Result<u64> {
        match self {
            Client::Ours { queue, .. } => {
                let counts = queue.counts().await?;
                Ok(counts.ready + counts.delayed)
            }
            Client::Apalis { conn, name, .. } => {
                let (active, scheduled): (u64, u64) = redis::pipe()
                    .llen(format!("{name}:active"))
                    .zcard(format!("{name}:scheduled"))
                    .query_async(&mut conn.clone())
                    .await?;
                Ok(active + scheduled)
            }
        }
    }

    /// Jobs not yet finished and acknowledged: waiting, or held by a worker.
    pub async fn unsettled(&self) -> anyhow::Result<u64> {
        match self {
            Client::Ours { queue, .. } => {
                let counts = queue.counts().await?;
                Ok(counts.ready + counts.delayed + counts.active)
            }
            Client::Apalis { conn, name, .. } => {
                let mut conn = conn.clone();
                let workers: Vec<String> =
                    redis::cmd("ZRANGE").arg(format!("{name}:workers")).arg(0).arg(-1).query_async(&mut conn).await?;
                let mut pipe = redis::pipe();
                for worker in &workers {
                    pipe.scard(format!("{name}:inflight:{worker}"));
                }
                let held: Vec<u64> = if workers.is_empty() { Vec::new() } else { pipe.query_async(&mut conn).await? };
                Ok(self.waiting().await? + held.iter().sum::<u64>())
            }
        }
    }

    /// apalis-redis only: ids in its scheduled set, which its fetch promotes all at once
    /// with one `unpack` that fails from 8,000 ids on.
    pub async fn scheduled(&self) -> anyhow::Result<u64> {
        match self {
            Client::Ours { .. } => Ok(0),
            Client::Apalis { conn, name, .. } => {
                Ok(redis::cmd("ZCARD").arg(format!("{name}:scheduled")).query_async(&mut conn.clone()).await?)
            }
        }
    }

    /// Jobs that failed for good.
    pub async fn dead(&self) -> anyhow::Result<u64> {
        match self {
            Client::Ours { queue, .. } => Ok(queue.counts().await?.dead),
            Client::Apalis { conn, name, .. } => {
                Ok(redis::cmd("SCARD").arg(format!("{name}:dead")).query_async(&mut conn.clone()).await?)
            }
        }
    }
}
