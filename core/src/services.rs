//! The outside world every role needs: the database, the queue and the object store,
//! connected from the configuration. Embedded mode also starts the in-process S3 server.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::accounts::{AccountError, Accounts};
use crate::changes::ChangeFeed;
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::memory::MemoryBudget;
use crate::objects::ObjectWriter;
use crate::outbound::Outbound;
use crate::queue::{JobQueue, JobQueueError};
use crate::sealing::{Keyring, SealError};
use crate::storage::{self, EmbeddedS3, ObjectStore, StorageError};
use crate::webhooks::Webhooks;

/// Why the services could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("cannot use the database")]
    Db(#[from] DbError),
    #[error("cannot use the job queue")]
    Queue(#[from] JobQueueError),
    #[error("cannot use the object store")]
    Storage(#[from] StorageError),
    #[error("cannot bind the in-process S3 server")]
    Bind(#[source] std::io::Error),
    #[error("cannot load the encryption keys")]
    Keys(#[from] SealError),
    #[error("cannot seal the accounts written before encryption at rest")]
    Reseal(#[from] AccountError),
    #[error("cannot use the change feed")]
    Changes(#[from] crate::changes::ChangeFeedError),
    #[error("cannot use the rate limit store")]
    RateLimits(#[from] crate::rate_limit::RateLimitError),
}

/// Whether this process applies migrations or expects them applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaPolicy {
    /// Embedded mode and the `release` step.
    Migrate,
    /// `web`, `worker` and `scheduler` of the distributed mode.
    RequireCurrent,
}

/// Connected services, cheap to clone.
#[derive(Clone, Debug)]
pub struct Services {
    pub db: Db,
    pub queue: JobQueue,
    pub store: ObjectStore,
    /// The one way to write an object: its row first, then the bytes, then the state.
    pub objects: ObjectWriter,
    /// What upload bodies, decodes and renders of this process may hold at once.
    pub memory: MemoryBudget,
    /// Accounts, with their personal fields sealed under the key ring.
    pub accounts: Accounts,
    /// The one client for URLs from outside: public addresses only.
    pub outbound: Outbound,
    /// "Generation X changed", published after each change commits.
    pub changes: ChangeFeed,
    /// Webhook secrets, announcements and delivery jobs.
    pub webhooks: Webhooks,
    /// Request counts per user and per address: in this process (embedded mode) or in
    /// Redis, shared by every API process (distributed mode).
    pub limiter: crate::rate_limit::RateLimiter,
    embedded_s3: Option<Arc<EmbeddedS3>>,
}

impl Services {
    pub async fn connect(config: &Config, schema: SchemaPolicy) -> Result<Services, ServicesError> {
        config.prepare_data_dir().map_err(|e| ServicesError::Storage(StorageError::Embedded(Box::new(e))))?;
        let db = Db::connect(&config.database).await?;
        let keyring = Arc::new(load_keyring(config)?);
        let accounts = Accounts::new(db.clone(), keyring.clone());
        match schema {
            SchemaPolicy::Migrate => {
                db.migrate().await?;
                accounts.reseal_all().await?;
            }
            SchemaPolicy::RequireCurrent => db.ensure_schema_current().await?,
        }
        let queue = JobQueue::connect(config).await?;

        let (store, embedded_s3) = match (&config.s3.endpoint, &config.s3.credentials) {
            (Some(endpoint), Some((access, secret))) => {
                (ObjectStore::new(&config.s3, Some(endpoint), access, secret), None)
            }
            _ => {
                let (access, secret) = config.s3.credentials.clone().unwrap_or_else(storage::generated_credentials);
                let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(ServicesError::Bind)?;
                let server = EmbeddedS3::start(&config.data_dir.join("objects"), listener, access, secret)?;
                let store =
                    ObjectStore::new(&config.s3, Some(&server.endpoint()), &server.access_key, &server.secret_key);
                (store, Some(Arc::new(server)))
            }
        };
        store.ensure_bucket().await?;
        let objects = ObjectWriter::new(db.clone(), store.clone(), config.lifetimes.clone());
        let memory = MemoryBudget::new(config.memory_budget);
        let outbound = Outbound::new(config.outbound_allow_private);
        let (changes, limiter) = match &config.queue.redis_url {
            Some(url) => {
                let target = crate::queue::redis_target(url, config.queue.redis_cluster)?;
                (
                    ChangeFeed::redis(&target, &config.queue.prefix).await?,
                    crate::rate_limit::RateLimiter::redis(&target, &config.queue.prefix).await?,
                )
            }
            None => (ChangeFeed::in_process(), crate::rate_limit::RateLimiter::local()),
        };
        let webhooks = Webhooks::new(
            db.clone(),
            queue.clone(),
            keyring,
            outbound.clone(),
            config.public_url.clone(),
            config.webhooks.clone(),
        );
        Ok(Services { db, queue, store, objects, memory, accounts, outbound, changes, webhooks, limiter, embedded_s3 })
    }

    /// Stops the in-process S3 server (if any) and closes the pools.
    pub async fn close(&self) {
        if let Some(s3) = &self.embedded_s3 {
            s3.stop().await;
        }
        self.queue.close().await;
        self.db.close().await;
    }
}

/// The key ring of the configuration: `ENCRYPTION_KEY` (and the previous keys), or in
/// embedded mode the key generated once into `DATA_DIR`.
pub fn load_keyring(config: &Config) -> Result<Keyring, SealError> {
    let keys = &config.encryption;
    match &keys.current {
        Some(current) => Keyring::from_base64(current, &keys.previous),
        None => Keyring::from_key_file(&config.data_dir, &keys.previous),
    }
}
