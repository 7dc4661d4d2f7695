//! PetPortrait's job queue engine, an apalis 1.0 backend built for backlogs, over Redis
//! (distributed mode) or SQLite (embedded mode). Both stores implement [`Store`] with
//! the same meaning; the apalis backend, the fetch/settle/renew driver and the retry
//! decisions (backoff with jitter, attempts, dead set) are one code for both.
//!
//! Layout in Redis (every key starts with the hash tag `{name}:`, so a queue lives in one
//! Redis Cluster slot, and every key a script touches is passed to it in `KEYS`):
//! - `payload`, `jobs` (`state attempt maximum`, e.g. `ready 0 5`), `owner` (while
//!   active) and `error`: hashes keyed by job id, for live and dead jobs (a script
//!   learns most ids it touches only as it runs, so per-job keys could not be passed in
//!   `KEYS`); a finished job's fields are deleted when it finishes;
//! - `ready`: a list of ids waiting to run, in push order;
//! - `delayed`: a sorted set of ids by due time in milliseconds (retries wait here too);
//! - `active`: a sorted set of ids by lease deadline — a lease is per job, so a worker
//!   that stops renewing loses only its own jobs, each one `lease` after its last renewal;
//! - `done` (ids of finished jobs), `results` (their non-empty results) and `dead`:
//!   trimmed to the configured retention (count and age) as outcomes are recorded;
//! - `marker`: a one-member sorted set that pushes set and idle workers block on
//!   (`BZPOPMIN`), so a push wakes one idle worker at once, with no polling;
//! - `idem:<key>`: idempotency keys, each expiring after `idempotency_ttl`;
//! - `fetch:<id>`: the ids a fetch leased, kept for a retry of it while the lease lasts.
//!
//! Every operation is one Lua script or pipeline (one round trip), and every script does
//! work bounded by its arguments or a configured batch, never by the queue's size.
//! Times come from the Redis server's clock, so hosts with skewed clocks agree.

mod backend;
mod backoff;
mod config;
mod connection;
mod driver;
mod errors;
mod keys;
mod redis_queue;
mod settle_layer;
mod sqlite_queue;
mod store;

pub use backend::{QueueBackend, RedisBackend, SqliteBackend};
pub use backoff::backoff_delay;
pub use config::{Backoff, QueueConfig, Retention};
pub use connection::{Node, RedisConnection, RedisTarget};
pub use driver::DeliveryInfo;
pub use errors::error_chain;
pub use redis_queue::{RedisQueue, remove_keys_with_prefix};
pub use settle_layer::{SettleLayer, SettleService, failure_outcome};
pub use sqlite_queue::SqliteQueue;
pub use store::{Counts, DeadJob, Delivery, Fetched, JobState, NewJob, Outcome, Pushed, QueueError, Settlement, Store};
