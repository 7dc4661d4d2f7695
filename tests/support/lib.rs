//! Test support: start the real app on a random port, in embedded mode (SQLite, the
//! SQLite queue, in-process S3) or distributed mode (PostgreSQL, Redis, in-process
//! S3), each test with its own data folder, database, queue prefix and bucket.
//!
//! Distributed tests need PostgreSQL and Redis; cluster tests (distributed mode on a
//! Redis Cluster) need PostgreSQL and the cluster at `TEST_REDIS_CLUSTER_URL`. They never
//! skip themselves: without the servers they fail with a message saying so.
//! `scripts/test` leaves those suites out (and says so) on a machine without the
//! servers, unless `PETPORTRAIT_REQUIRE_SERVICES=1` (set by CI), in which case the
//! servers are mandatory.

pub mod client;
pub mod cog;
pub mod cookies;
pub mod fake_provider;
pub mod fake_stripe;
pub mod fixtures;
pub mod logs;
pub mod media;
pub mod oidc_provider;
pub mod receiver;
pub mod studios;
pub mod verifier;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use petportrait_core::config::Config;
use petportrait_core::queue::{RedisTarget, remove_keys_with_prefix};
use petportrait_core::services::{SchemaPolicy, Services};
use petportrait_studio::Studio;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use client::Client;

/// Which deployment shape a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Distributed,
    /// Distributed mode with the queue and the change feed on a Redis Cluster.
    Cluster,
}

/// `postgres://` URL of a database this test may create databases from.
fn admin_database_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis server of the distributed tests (`TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The Redis Cluster of the cluster-mode tests (`scripts/redis-cluster` prints its URL).
fn redis_cluster_url() -> String {
    std::env::var("TEST_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
        panic!("the cluster-mode tests need a Redis Cluster: set TEST_REDIS_CLUSTER_URL (scripts/redis-cluster starts one and prints it)")
    })
}

/// Everything a test needs to isolate itself, removed when dropped.
pub struct Isolation {
    pub tag: String,
    pub data_dir: PathBuf,
    pub vars: Vec<(String, String)>,
    database: Option<String>,
    /// The Redis (server or cluster) of a distributed test, whose keys it removes.
    redis: Option<String>,
}

impl Isolation {
    /// The PostgreSQL URL of a distributed test; `None` in embedded mode.
    pub fn database_url(&self) -> Option<String> {
        self.vars.iter().find(|(k, _)| k == "DATABASE_URL").map(|(_, v)| v.clone())
    }

    /// A fresh data folder and, in distributed mode, a fresh PostgreSQL database,
    /// Redis key prefix and bucket.
    pub async fn new(mode: Mode) -> Isolation {
        let tag = ulid::Ulid::generate().to_string().to_ascii_lowercase();
        let data_dir = std::env::temp_dir().join(format!("petportrait-test-{tag}"));
        std::fs::create_dir_all(&data_dir).expect("create the test data folder");
        let mut vars = vec![
            ("DATA_DIR".to_owned(), data_dir.display().to_string()),
            ("S3_BUCKET".to_owned(), format!("pp-{tag}")),
            ("QUEUE_PREFIX".to_owned(), format!("pp-test-{tag}")),
        ];
        let mut database = None;
        let mut redis = None;
        if mode != Mode::Embedded {
            let name = format!("pp_test_{tag}");
            let admin = admin_database_url();
            sqlx::any::install_default_drivers();
            let mut conn = connect_admin(&admin).await;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create the test database");
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
            vars.push(("DATABASE_URL".into(), format!("{base}/{name}")));
            let url = if mode == Mode::Cluster { redis_cluster_url() } else { redis_url() };
            check_redis(&url).await;
            vars.push(("REDIS_URL".into(), url.clone()));
            redis = Some(url);
            // Outside embedded mode the key is given, never generated: a key per test.
            let key: [u8; 32] = rand_key();
            vars.push(("ENCRYPTION_KEY".into(), base64::engine::general_purpose::STANDARD.encode(key)));
            database = Some(name);
        }
        Isolation { tag, data_dir, vars, database, redis }
    }
}

fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for chunk in key.chunks_mut(16) {
        chunk.copy_from_slice(&ulid::Ulid::generate().0.to_le_bytes());
    }
    key
}

async fn connect_admin(url: &str) -> sqlx::AnyConnection {
    use sqlx::Connection;
    match sqlx::AnyConnection::connect(url).await {
        Ok(conn) => conn,
        Err(error) => panic!(
            "the distributed-mode tests need PostgreSQL at {url} (set TEST_POSTGRES_URL); \
             it could not be reached: {error}"
        ),
    }
}

async fn check_redis(url: &str) {
    let reached = async {
        let mut conn = RedisTarget::parse(url, false)?.connect(Duration::from_secs(5)).await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    if let Err(error) = tokio::time::timeout(Duration::from_secs(5), reached)
        .await
        .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "timed out"))))
    {
        panic!(
            "the distributed-mode tests need Redis at {url} (set TEST_REDIS_URL, or TEST_REDIS_CLUSTER_URL for a cluster); \
             it could not be reached: {error}"
        );
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some(name) = self.database.take() {
            let prefix = format!("pp-test-{}", self.tag);
            let redis = self.redis.take();
            // Dropping needs its own runtime: Drop cannot await, and the test's runtime
            // may be shutting down.
            let admin = admin_database_url();
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                                .execute(&mut conn)
                                .await;
                    }
                    if let Some(url) = redis {
                        remove_redis_keys(&url, &prefix).await;
                    }
                });
            })
            .join();
        }
    }
}

/// Deletes every Redis key of a test's queue prefix (the queue engine's keys start with
/// the hash tag `{prefix:…}`), on every master of a cluster, so repeated runs do not
/// fill a Redis that keeps no data.
async fn remove_redis_keys(url: &str, prefix: &str) {
    let Ok(target) = RedisTarget::parse(url, false) else { return };
    let Ok(mut conn) = target.connect(Duration::from_secs(5)).await else { return };
    for start in [format!("{prefix}:"), format!("{{{prefix}:")] {
        if remove_keys_with_prefix(&mut conn, &start).await.is_err() {
            return;
        }
    }
}

/// Builds a configuration for a test: fast heartbeats and short leases so recovery is
/// quick, plus the isolation variables and the test's own overrides.
pub fn test_config(isolation: &Isolation, overrides: &[(&str, &str)]) -> Config {
    let mut vars: Vec<(String, String)> = vec![
        ("PORT".into(), "0".into()),
        ("WORKER_HEARTBEAT".into(), "1s".into()),
        ("JOB_LEASE".into(), "3s".into()),
        ("WORKER_POLL_INTERVAL".into(), "50ms".into()),
        ("RETRY_BASE_DELAY".into(), "1s".into()),
        ("RETRY_MAX_DELAY".into(), "1s".into()),
        ("SCHEDULER_TICK".into(), "1h".into()),
        ("WORKER_CONCURRENCY".into(), "2".into()),
        ("DEV_LOGIN".into(), "true".into()),
        // No test reaches the real Stripe (the scheduler's reconciliation lists sessions
        // whenever a secret key is set): a refused local port unless a test's fake is named.
        ("STRIPE_API_BASE".into(), "http://127.0.0.1:9".into()),
        ("RUST_LOG".into(), std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into())),
    ];
    vars.extend(isolation.vars.iter().cloned());
    vars.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars(vars).unwrap_or_else(|e| panic!("test configuration is invalid: {e}"))
}

/// The app under test: every role, or a chosen subset, in this process.
pub struct TestApp {
    pub config: Config,
    pub services: Services,
    pub base_url: String,
    pub shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Dropped last: the data folder and database outlive the app.
    pub isolation: Isolation,
}

impl TestApp {
    /// Every role with the studios the configuration chooses (local unless a
    /// `MODEL_*` override says remote).
    pub async fn spawn(mode: Mode, overrides: &[(&str, &str)]) -> TestApp {
        TestApp::spawn_with(mode, overrides, petportrait::Roles::ALL, None).await
    }

    pub async fn spawn_with(
        mode: Mode,
        overrides: &[(&str, &str)],
        roles: petportrait::Roles,
        studio: Option<Arc<dyn Studio>>,
    ) -> TestApp {
        TestApp::spawn_customized(mode, overrides, roles, studio, |_| {}).await
    }

    /// Like `spawn_with`, with a change to the connected services before the roles
    /// start (a webhook client that resolves test host names, say).
    pub async fn spawn_customized(
        mode: Mode,
        overrides: &[(&str, &str)],
        roles: petportrait::Roles,
        studio: Option<Arc<dyn Studio>>,
        customize: impl FnOnce(&mut Services),
    ) -> TestApp {
        TestApp::spawn_inner(mode, overrides, roles, studio, customize, false).await
    }

    /// Every role, with `PUBLIC_URL` naming the port the app really listens on (the
    /// other tests' names port 0), as a real browser needs: its redirects (Google's
    /// callback, Stripe's return) and the links in the answers must lead back here.
    pub async fn spawn_reachable(
        mode: Mode,
        overrides: &[(&str, &str)],
        studio: Option<Arc<dyn Studio>>,
        customize: impl FnOnce(&mut Services),
    ) -> TestApp {
        TestApp::spawn_inner(mode, overrides, petportrait::Roles::ALL, studio, customize, true).await
    }

    async fn spawn_inner(
        mode: Mode,
        overrides: &[(&str, &str)],
        roles: petportrait::Roles,
        studio: Option<Arc<dyn Studio>>,
        customize: impl FnOnce(&mut Services),
        public_url_is_the_listener: bool,
    ) -> TestApp {
        init_logs();
        let isolation = Isolation::new(mode).await;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind a port");
        let base_url = format!("http://{}", listener.local_addr().expect("local addr"));
        let mut overrides = overrides.to_vec();
        if public_url_is_the_listener {
            overrides.push(("PUBLIC_URL", base_url.as_str()));
        }
        let config = test_config(&isolation, &overrides);
        let mut services = Services::connect(&config, SchemaPolicy::Migrate).await.expect("services connect");
        customize(&mut services);
        let studio = match studio {
            Some(studio) => studio,
            None => petportrait_studio::from_config(&config)
                .await
                .unwrap_or_else(|e| panic!("studios: {}", petportrait_core::errors::error_chain(&e))),
        };
        let shutdown = CancellationToken::new();
        let task =
            tokio::spawn(petportrait::run(config.clone(), services.clone(), studio, listener, roles, shutdown.clone()));
        TestApp { config, services, base_url, shutdown, task: Some(task), isolation }
    }

    /// A signed-in client of a new user.
    pub async fn user(&self, name: &str) -> Client {
        Client::sign_in(&self.base_url, name).await
    }

    /// Stops every role, waits for them to drain, and fails the test if a role had
    /// stopped with an error or does not drain in time.
    pub async fn stop(mut self) {
        cookies::check_all_seen();
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(Duration::from_secs(15), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => panic!("a role of the app failed: {error:#}"),
                Ok(Err(join)) => panic!("the app panicked: {join}"),
                Err(_) => panic!("the app did not drain within 15 s"),
            }
        }
        self.services.close().await;
    }
}

impl TestApp {
    /// Everything the database holds, as text a test can search: the SQLite file (and
    /// its write-ahead log) byte for byte, or every row of every PostgreSQL table as
    /// JSON. Test-only SQL, reading what the app wrote without the app's code.
    pub async fn raw_database_text(&self) -> String {
        use sqlx::Connection;
        match self.isolation.database_url() {
            None => {
                let mut text = String::new();
                for suffix in ["", "-wal"] {
                    let path = self.isolation.data_dir.join(format!("petportrait.db{suffix}"));
                    if let Ok(bytes) = std::fs::read(&path) {
                        text.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
                assert!(!text.is_empty(), "the SQLite file was not found");
                text
            }
            Some(url) => {
                let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect to the test database");
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
                )
                .fetch_all(&mut conn)
                .await
                .expect("list tables");
                let mut text = String::new();
                for table in tables {
                    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT row_to_json(t)::text FROM \"{table}\" t"
                    )))
                    .fetch_all(&mut conn)
                    .await
                    .expect("read rows");
                    text.push_str(&rows.join("\n"));
                }
                text
            }
        }
    }

    /// A watercolor portrait (4 credits) of `upload` for `user` whose row is written but
    /// whose job never reached the queue (an enqueue that failed, Redis restarted without
    /// persistence): only the scheduler's sweep can dispatch it.
    pub async fn create_unqueued_generation(
        &self,
        user: &petportrait_core::ids::UserId,
        upload: &str,
    ) -> petportrait_core::ids::GenerationId {
        use petportrait_core::db::{CreateOutcome, NewGeneration};
        let id = petportrait_core::ids::GenerationId::generate();
        let never_pushed = petportrait_core::queue::Dispatch::Create.plan(&id).task().to_string();
        let new = NewGeneration {
            id: &id,
            user_id: user,
            kind: petportrait_core::domain::GenerationKind::Portrait,
            style: "watercolor",
            options: "{}",
            upload_id: upload,
            cost: 4,
            idempotency_key: None,
            request_fingerprint: None,
            dispatch_task: &never_pushed,
            webhook: None,
            request_id: None,
        };
        let created = self.services.db.create_generation(&new, petportrait_core::time::now_ms()).await;
        assert!(matches!(created.expect("create"), CreateOutcome::Created(_)));
        id
    }

    /// Runs one statement on the app's database behind its back (test-only SQL, to set
    /// up states the app itself never writes).
    pub async fn raw_execute(&self, sql: &str, binds: &[&str]) {
        if let Err(error) = self.try_raw_execute(sql, binds).await {
            panic!("raw statement: {error}");
        }
    }

    /// Runs `sql` outside the application's code; the database's error as text when it
    /// refuses (a trigger, a constraint).
    pub async fn try_raw_execute(&self, sql: &str, binds: &[&str]) -> Result<u64, String> {
        use sqlx::Connection;
        let mut conn =
            sqlx::AnyConnection::connect(self.config.database.url()).await.expect("connect to the test database");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
        for value in binds {
            query = query.bind(value.to_string());
        }
        query.execute(&mut conn).await.map(|done| done.rows_affected()).map_err(|error| error.to_string())
    }
}

/// A worker in a runtime of its own, as a separate process would have: it can be
/// killed by dropping that runtime mid-job.
pub struct DetachedWorker {
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DetachedWorker {
    pub fn start(config: Config, studio: Arc<dyn Studio>) -> DetachedWorker {
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("worker runtime");
            rt.spawn(async move {
                let services =
                    Services::connect(&config, SchemaPolicy::RequireCurrent).await.expect("worker services connect");
                let _ = petportrait_worker::run(config, services, studio, CancellationToken::new()).await;
            });
            // Wait for the kill order (or the test ending), then drop everything at once:
            // no graceful drain, no acknowledgement, no lease renewal.
            let _ = killed.recv();
            rt.shutdown_background();
        });
        DetachedWorker { kill: Some(kill), thread: Some(thread) }
    }

    /// Kills the worker as `kill -9` would: its runtime disappears mid-job.
    pub fn kill(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DetachedWorker {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut every = tokio::time::interval(Duration::from_millis(25));
    loop {
        every.tick().await;
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
    }
}

fn init_logs() {
    let filter = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into());
    petportrait_core::telemetry::init(&petportrait_core::config::LogConfig { filter, json: false });
}
