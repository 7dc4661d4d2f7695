//! Configuration from the environment.
//!
//! The names of the product's variables (`HOST`, `DATABASE_URL`, `S3_*`, …) are fixed:
//! operators and deployment scripts rely on them. The extra tuning knobs are ours; all
//! are documented in README.md and `.env.example`. Parsing collects every problem
//! before failing, so an operator fixes a broken deployment in one go.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

mod accounts;
mod cog;
mod http;
mod limits;
mod models;
mod payments;
mod stores;
mod webhooks;

pub use accounts::{EncryptionKeys, GoogleSignIn};
use accounts::{read_encryption_keys, read_google};
pub use cog::{COG_CANCEL_GRACE, CogConfig, CogRoute, CogServer, is_placeholder};
pub use http::{HttpLimits, SessionConfig};
use http::{read_http, read_sessions};
use limits::read_limits;
pub use limits::{ForwardedHeader, IpBlock, RateLimits};
pub use models::{ModelBackend, ModelsConfig, ProviderConfig, Secret};
use models::{backend_text, read_models};
use payments::read_payments;
pub use payments::{CreditPack, PaymentsConfig, StripeConfig};
use stores::valid_bucket_name;
#[cfg(test)]
use stores::without_password;
pub use stores::{DatabaseTarget, QueueLocation, S3Config};
use webhooks::read_webhooks;
pub use webhooks::{DEFAULT_RETRY_SCHEDULE, WebhookConfig, parse_schedule};

/// Everything the processes need to know, already parsed and validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// `METRICS_PORT`: where a `worker` or `scheduler` process serves `/metrics` (on
    /// `HOST`); the API serves it on its own port.
    pub metrics_port: Option<u16>,
    /// Where users reach the service, without a trailing slash.
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database: DatabaseTarget,
    pub queue: QueueLocation,
    pub s3: S3Config,
    pub dev_login: bool,
    /// Google sign-in (OpenID Connect), when `GOOGLE_CLIENT_ID` and `_SECRET` are set.
    pub google: Option<GoogleSignIn>,
    /// `WEBHOOK_ALLOW_PRIVATE`: outbound requests to URLs from outside (webhook
    /// endpoints, a remote model's outputs, a profile picture) may reach loopback and
    /// private addresses, and plain http. Tests only.
    pub outbound_allow_private: bool,
    /// How webhooks are delivered (`WEBHOOK_*`).
    pub webhooks: WebhookConfig,
    /// The keys that seal personal fields (`ENCRYPTION_KEY`, `ENCRYPTION_PREVIOUS_KEYS`).
    pub encryption: EncryptionKeys,
    pub starter_credits: i64,
    /// Credit packs for sale and the Stripe account (`CREDIT_PACKS`, `STRIPE_*`).
    pub payments: PaymentsConfig,
    pub lifetimes: ObjectLifetimes,
    pub uploads: UploadLimits,
    /// Bytes that upload bodies, image decodes and renders of this process may hold at
    /// once (`MEMORY_BUDGET`); see `memory::MemoryBudget`.
    pub memory_budget: u64,
    pub worker: WorkerConfig,
    pub scheduler: SchedulerConfig,
    pub log: LogConfig,
    /// Slow clients, connection cap, shutdown deadline.
    pub http: HttpLimits,
    /// Idle and absolute session timeouts.
    pub sessions: SessionConfig,
    /// Which model makes each kind, and the remote provider when one is used.
    pub models: ModelsConfig,
    /// Per-user and per-address request limits, and the trusted proxies.
    pub limits: RateLimits,
}

/// How long each kind of object lives before the purge deletes it (`UPLOAD_TTL`,
/// `OUTPUT_TTL`, `EXPORT_TTL`).
#[derive(Clone, Debug)]
pub struct ObjectLifetimes {
    pub upload_ttl: Duration,
    pub output_ttl: Duration,
    pub export_ttl: Duration,
}

/// 1 GiB: a whole 40-megapixel WebP decode (the most expensive upload there is) with
/// room beside it for the uploads and renders of a 2-core machine.
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;

#[derive(Clone, Debug)]
pub struct UploadLimits {
    pub max_bytes: usize,
    pub max_pixels: u64,
    pub max_side: u32,
}

impl Default for UploadLimits {
    /// 20 MiB, 40 megapixels (a 12 MP phone photo with room to spare), 12000 a side.
    fn default() -> Self {
        UploadLimits { max_bytes: 20 * 1024 * 1024, max_pixels: 40_000_000, max_side: 12_000 }
    }
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub concurrency: usize,
    /// How often a running generation renews its database lease (`WORKER_HEARTBEAT`);
    /// progress reports renew it too. The queue engine renews its own job leases.
    pub heartbeat: Duration,
    /// How long a generation stays claimed by a worker that stopped renewing its lease.
    pub job_lease: Duration,
    pub max_attempts: u32,
    /// How long one attempt may run before it is abandoned and retried.
    pub job_timeout: Duration,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    /// How often an idle worker looks for new jobs.
    pub poll_interval: Duration,
    /// How many generations of one user may run at once across every worker
    /// (`USER_MAX_RUNNING`; `None` when 0: no cap). The others wait their turn, so one
    /// user's backlog cannot take every worker while other users wait.
    pub user_max_running: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub tick: Duration,
    pub purge_batch: u32,
    /// A generation that has not moved for this long is dispatched again.
    pub stalled_after: Duration,
    /// How often balances are checked against the ledger and Stripe's paid sessions
    /// against our payments.
    pub reconcile_every: Duration,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub filter: String,
    pub json: bool,
}

/// One thing wrong with one variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The variable's name (a `Cow`: per-style names such as `COG_URL_PORTRAIT_OIL_PAINT`
    /// are made at run time).
    pub variable: std::borrow::Cow<'static, str>,
    pub message: String,
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problems):", self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  {}: {}", p.variable, p.message)?;
        }
        Ok(())
    }
}

/// Reads variables and remembers what was wrong with them.
struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    fn raw(&self, name: &str) -> Option<&'a str> {
        self.vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn problem(&mut self, variable: impl Into<std::borrow::Cow<'static, str>>, message: impl Into<String>) {
        self.problems.push(Problem { variable: variable.into(), message: message.into() });
    }

    fn string(&self, name: &'static str, default: &str) -> String {
        self.raw(name).unwrap_or(default).to_owned()
    }

    fn parsed<T: std::str::FromStr>(&mut self, name: &'static str, default: T, what: &str) -> T {
        match self.raw(name) {
            None => default,
            Some(v) => match v.parse() {
                Ok(x) => x,
                Err(_) => {
                    self.problem(name, format!("expected {what}, got {v:?}"));
                    default
                }
            },
        }
    }

    fn boolean(&mut self, name: &'static str, default: bool) -> bool {
        match self.raw(name).map(str::to_ascii_lowercase).as_deref() {
            None => default,
            Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(v) => {
                self.problem(name, format!("expected true or false, got {v:?}"));
                default
            }
        }
    }

    fn duration(&mut self, name: &'static str, default: Duration) -> Duration {
        match self.raw(name) {
            None => default,
            Some(v) => match parse_duration(v) {
                Some(d) if !d.is_zero() => d,
                _ => {
                    self.problem(name, format!("expected a duration such as 500ms, 30s, 15m, 24h or 7d, got {v:?}"));
                    default
                }
            },
        }
    }
}

/// Parses `500ms`, `30s`, `15m`, `24h`, `7d` (one number, one unit).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let millis = match unit {
        "ms" => n,
        "s" => n.checked_mul(1_000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(millis))
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(std::env::vars())
    }

    /// Reads the given variables; tests pass their own instead of touching the process.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: HashMap<String, String> = vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let mut r = Reader { vars: &vars, problems: Vec::new() };

        let host: IpAddr = r.parsed("HOST", IpAddr::from([127, 0, 0, 1]), "an IP address");
        let port: u16 = r.parsed("PORT", 8080, "a port number");
        let metrics_port: Option<u16> = match r.raw("METRICS_PORT") {
            None => None,
            Some(text) => match text.parse() {
                Ok(p) => Some(p),
                Err(_) => {
                    r.problem("METRICS_PORT", format!("expected a port number, got {text:?}"));
                    None
                }
            },
        };
        let public_url = r.string("PUBLIC_URL", &format!("http://{}", socket_text(host, port)));
        let public_url = public_url.trim_end_matches('/').to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            r.problem("PUBLIC_URL", "must start with http:// or https://");
        } else if crate::hosts::url_host(&public_url).parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
            // The default when HOST is 0.0.0.0 or ::; no client names that host, and the API
            // answers only requests naming PUBLIC_URL's host or a loopback address.
            r.problem(
                "PUBLIC_URL",
                format!("set it to the URL users reach the service at ({public_url} names no host)"),
            );
        }
        let data_dir = PathBuf::from(r.string("DATA_DIR", "./data"));

        let database = match r.raw("DATABASE_URL") {
            None => DatabaseTarget::Sqlite {
                url: format!("sqlite://{}?mode=rwc", data_dir.join("petportrait.db").display()),
            },
            Some(url) if url.starts_with("sqlite:") => DatabaseTarget::Sqlite { url: url.to_owned() },
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                DatabaseTarget::Postgres { url: url.to_owned() }
            }
            Some(_) => {
                r.problem("DATABASE_URL", "must start with sqlite:, postgres:// or postgresql://");
                DatabaseTarget::Sqlite { url: String::new() }
            }
        };

        let redis_url = r.raw("REDIS_URL").map(str::to_owned);
        if let Some(url) = &redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("redis+cluster://"))
        {
            r.problem("REDIS_URL", "must start with redis://, rediss:// or redis+cluster://");
        }
        // A `redis+cluster://` URL names a cluster by itself; the flag makes a plain URL
        // the cluster's first node.
        let redis_cluster = r.boolean("REDIS_CLUSTER", false)
            || redis_url.as_deref().is_some_and(|url| url.starts_with("redis+cluster://"));
        if redis_cluster && redis_url.is_none() {
            r.problem("REDIS_CLUSTER", "needs REDIS_URL (a node of the cluster)");
        }
        if matches!(database, DatabaseTarget::Postgres { .. }) && redis_url.is_none() {
            r.problem("REDIS_URL", "is required when DATABASE_URL is PostgreSQL (the queue runs on Redis there)");
        }
        let queue_prefix = r.string("QUEUE_PREFIX", "petportrait");
        if !queue_prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')) {
            r.problem("QUEUE_PREFIX", "may hold only letters, digits and - _ . :");
        }
        let embedded = redis_url.is_none() && matches!(database, DatabaseTarget::Sqlite { .. });

        let endpoint = r.raw("S3_ENDPOINT").map(|s| s.trim_end_matches('/').to_owned());
        let bucket = r.string("S3_BUCKET", "petportrait");
        if !valid_bucket_name(&bucket) {
            r.problem("S3_BUCKET", "must be 3-63 lowercase letters, digits, dots or hyphens");
        }
        let region = r.string("S3_REGION", "us-east-1");
        let credentials = match (r.raw("AWS_ACCESS_KEY_ID"), r.raw("AWS_SECRET_ACCESS_KEY")) {
            (Some(a), Some(s)) => Some((a.to_owned(), Secret::new(s))),
            (None, None) => None,
            (Some(_), None) => {
                r.problem("AWS_SECRET_ACCESS_KEY", "must be set together with AWS_ACCESS_KEY_ID");
                None
            }
            (None, Some(_)) => {
                r.problem("AWS_ACCESS_KEY_ID", "must be set together with AWS_SECRET_ACCESS_KEY");
                None
            }
        };
        if endpoint.is_some() && credentials.is_none() {
            r.problem("AWS_ACCESS_KEY_ID", "S3 credentials are required when S3_ENDPOINT is set");
        }
        let force_path_style = r.boolean("S3_FORCE_PATH_STYLE", true);
        let public_endpoint = r.raw("S3_PUBLIC_ENDPOINT").map(|s| s.trim_end_matches('/').to_owned());
        if let Some(public) = &public_endpoint {
            if !(public.starts_with("https://") || public.starts_with("http://")) {
                r.problem("S3_PUBLIC_ENDPOINT", "must be an http(s) URL");
            }
            if credentials.is_none() {
                r.problem("S3_PUBLIC_ENDPOINT", "needs an S3 server of its own (S3_ENDPOINT and credentials)");
            }
        }

        let google = read_google(&mut r);
        let google_client_id = google.as_ref().map(|g| g.client_id.clone());
        let dev_login = r.boolean("DEV_LOGIN", embedded && google_client_id.is_none());
        if dev_login && !host.is_loopback() {
            r.problem("DEV_LOGIN", format!("refused: the API binds {host}, which is not a loopback address"));
        } else if dev_login && !url_host_is_loopback(&public_url) {
            r.problem("DEV_LOGIN", format!("refused: PUBLIC_URL {public_url} is not a loopback address"));
        }
        if dev_login && google_client_id.is_some() {
            r.problem("DEV_LOGIN", "refused: Google sign-in is configured");
        }

        let encryption = read_encryption_keys(&mut r, embedded);
        let outbound_allow_private = r.boolean("WEBHOOK_ALLOW_PRIVATE", false);
        let webhooks = read_webhooks(&mut r);

        let starter_credits: i64 = r.parsed("STARTER_CREDITS", 10, "a whole number of credits");
        if starter_credits < 0 {
            r.problem("STARTER_CREDITS", "must not be negative");
        }

        let payments = read_payments(&mut r);

        let lifetimes = ObjectLifetimes {
            upload_ttl: r.duration("UPLOAD_TTL", Duration::from_secs(24 * 3600)),
            output_ttl: r.duration("OUTPUT_TTL", Duration::from_secs(7 * 86_400)),
            export_ttl: r.duration("EXPORT_TTL", Duration::from_secs(5 * 86_400)),
        };
        let default_limits = UploadLimits::default();
        let uploads = UploadLimits {
            max_bytes: r.parsed("UPLOAD_MAX_BYTES", default_limits.max_bytes, "a number of bytes"),
            max_pixels: r.parsed("UPLOAD_MAX_PIXELS", default_limits.max_pixels, "a number of pixels"),
            max_side: r.parsed("UPLOAD_MAX_SIDE", default_limits.max_side, "a number of pixels"),
        };
        let memory_budget: u64 = r.parsed("MEMORY_BUDGET", DEFAULT_MEMORY_BUDGET, "a number of bytes");
        // An upload's body and its stripped copy must fit at once, or every upload fails.
        let least_budget = (uploads.max_bytes as u64).saturating_mul(2).saturating_add(16 << 20);
        if memory_budget < least_budget {
            r.problem(
                "MEMORY_BUDGET",
                format!("must be at least {least_budget} bytes (twice UPLOAD_MAX_BYTES and 16 MiB)"),
            );
        }

        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let worker = WorkerConfig {
            concurrency: r.parsed("WORKER_CONCURRENCY", cores, "a positive number"),
            heartbeat: r.duration("WORKER_HEARTBEAT", Duration::from_secs(5)),
            job_lease: r.duration("JOB_LEASE", Duration::from_secs(30)),
            max_attempts: r.parsed("JOB_MAX_ATTEMPTS", 5, "a positive number"),
            job_timeout: r.duration("JOB_TIMEOUT", Duration::from_secs(600)),
            retry_base_delay: r.duration("RETRY_BASE_DELAY", Duration::from_secs(2)),
            retry_max_delay: r.duration("RETRY_MAX_DELAY", Duration::from_secs(600)),
            poll_interval: r.duration("WORKER_POLL_INTERVAL", Duration::from_millis(50)),
            user_max_running: Some(r.parsed("USER_MAX_RUNNING", 4u32, "a number of generations (0: no cap)"))
                .filter(|cap| *cap > 0),
        };
        if worker.concurrency == 0 {
            r.problem("WORKER_CONCURRENCY", "must be at least 1");
        }
        if worker.max_attempts == 0 {
            r.problem("JOB_MAX_ATTEMPTS", "must be at least 1");
        }
        if worker.job_lease <= worker.heartbeat {
            r.problem("JOB_LEASE", "must be longer than WORKER_HEARTBEAT, or live jobs would be taken away");
        }
        let scheduler = SchedulerConfig {
            tick: r.duration("SCHEDULER_TICK", Duration::from_secs(30)),
            purge_batch: r.parsed("PURGE_BATCH", 500, "a positive number"),
            stalled_after: r.duration("STALLED_AFTER", Duration::from_secs(300)),
            reconcile_every: r.duration("RECONCILE_INTERVAL", Duration::from_secs(24 * 3600)),
        };
        if scheduler.reconcile_every < Duration::from_secs(60) {
            r.problem("RECONCILE_INTERVAL", "must be at least 1m");
        }
        if scheduler.purge_batch == 0 || scheduler.purge_batch > 1000 {
            r.problem("PURGE_BATCH", "must be between 1 and 1000 (the S3 DeleteObjects limit)");
        }

        let models = read_models(&mut r, &worker);
        let http = read_http(&mut r);
        let sessions = read_sessions(&mut r);
        let limits = read_limits(&mut r);

        let log = LogConfig {
            filter: r.string("RUST_LOG", "info"),
            json: match r.raw("LOG_FORMAT").map(str::to_ascii_lowercase).as_deref() {
                None | Some("pretty") => false,
                Some("json") => true,
                Some(other) => {
                    r.problem("LOG_FORMAT", format!("expected json or pretty, got {other:?}"));
                    false
                }
            },
        };

        if !r.problems.is_empty() {
            return Err(ConfigError { problems: r.problems });
        }
        Ok(Config {
            host,
            port,
            metrics_port,
            public_url,
            data_dir,
            database,
            queue: QueueLocation { redis_url, redis_cluster, prefix: queue_prefix },
            s3: S3Config { endpoint, bucket, region, credentials, force_path_style, public_endpoint },
            dev_login,
            google,
            encryption,
            outbound_allow_private,
            webhooks,
            starter_credits,
            payments,
            lifetimes,
            uploads,
            memory_budget,
            worker,
            scheduler,
            log,
            models,
            http,
            sessions,
            limits,
        })
    }

    /// Creates `DATA_DIR` when the database is a SQLite file there: SQLite creates its
    /// file but not the folder it lives in.
    pub fn prepare_data_dir(&self) -> std::io::Result<()> {
        match self.database {
            DatabaseTarget::Sqlite { .. } => std::fs::create_dir_all(&self.data_dir),
            DatabaseTarget::Postgres { .. } => Ok(()),
        }
    }

    /// True when nothing outside the process is needed: SQLite, the SQLite queue, in-process S3.
    pub fn is_embedded(&self) -> bool {
        self.queue.redis_url.is_none() && matches!(self.database, DatabaseTarget::Sqlite { .. })
    }

    /// A one-line, secret-free description for the start-up log.
    pub fn summary(&self) -> String {
        format!(
            "database={} queue={} s3={} bucket={} models=portrait:{},music:{},sculpture:{}",
            match self.database {
                DatabaseTarget::Sqlite { .. } => "sqlite",
                DatabaseTarget::Postgres { .. } => "postgres",
            },
            if self.queue.redis_url.is_some() { "redis" } else { "sqlite" },
            self.s3.endpoint.as_deref().unwrap_or("in-process"),
            self.s3.bucket,
            backend_text(self.models.portrait),
            backend_text(self.models.music),
            backend_text(self.models.sculpture),
        )
    }
}

fn socket_text(host: IpAddr, port: u16) -> String {
    match host {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Whether the host of an `http(s)://host[:port]/...` URL is loopback.
fn url_host_is_loopback(url: &str) -> bool {
    crate::hosts::is_loopback_host(crate::hosts::url_host(url))
}

#[cfg(test)]
mod tests;
