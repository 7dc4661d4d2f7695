//! Where the data lives: the database, the queue and the object store. `Debug` of
//! each hides its passwords.

use std::fmt;

use super::models::Secret;

/// Which database holds the system of record. `Debug` hides the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite { url: String },
    Postgres { url: String },
}

impl DatabaseTarget {
    pub fn url(&self) -> &str {
        match self {
            DatabaseTarget::Sqlite { url } | DatabaseTarget::Postgres { url } => url,
        }
    }
}

/// Where jobs are dispatched from. `Debug` hides the Redis URL's password.
#[derive(Clone)]
pub struct QueueLocation {
    /// `None` keeps the queue in the SQLite database (embedded mode).
    pub redis_url: Option<String>,
    /// `REDIS_URL` names a Redis Cluster (`REDIS_CLUSTER=true`, or a
    /// `redis+cluster://host:port[,host:port…]` URL).
    pub redis_cluster: bool,
    /// Prefix of every queue name, so that several deployments or tests share one Redis.
    pub prefix: String,
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (dialect, url) = match self {
            DatabaseTarget::Sqlite { url } => ("Sqlite", url),
            DatabaseTarget::Postgres { url } => ("Postgres", url),
        };
        f.debug_struct(dialect).field("url", &without_password(url)).finish()
    }
}

impl fmt::Debug for QueueLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueLocation")
            .field("redis_url", &self.redis_url.as_deref().map(without_password))
            .field("redis_cluster", &self.redis_cluster)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// A URL with the password of its user info replaced, for logs and debug output.
pub(super) fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:[redacted]@{host}{}", &rest[authority_end..])
        }
        _ => url.to_owned(),
    }
}

#[derive(Clone, Debug)]
pub struct S3Config {
    /// `None` runs the S3 server in-process over `DATA_DIR/objects`.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// `None` in embedded mode: credentials are generated for the in-process server.
    /// The access key id and its secret (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
    pub credentials: Option<(String, Secret)>,
    pub force_path_style: bool,
    /// `S3_PUBLIC_ENDPOINT`: the same server as browsers reach it. When set, downloads
    /// answer 302 to a short-lived presigned URL there instead of passing the bytes
    /// through the API.
    pub public_endpoint: Option<String>,
}

pub(super) fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
}
