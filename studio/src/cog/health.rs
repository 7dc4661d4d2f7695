//! The Cog servers' health checks (`GET /health-check`, every `COG_HEALTH_INTERVAL`)
//! and the check of our input templates against each server's `GET /openapi.json`,
//! made the first time the server answers: at start-up, where a mismatch stops the
//! worker, or later for a server that was down then, which is then never used.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::Value;

use super::protocol::{self, Health, HealthAnswer};
use super::{Inner, Server, read_capped};

/// The largest health answer or schema read.
const SMALL_BODY: usize = 1 << 20;

/// Why a `CogStudio` could not start.
#[derive(Debug, thiserror::Error)]
pub enum CogSetupError {
    #[error("the HTTP client could not be built")]
    Client(#[source] reqwest::Error),
    #[error("the inputs configured for {server} do not fit its model:\n  {}", problems.join("\n  "))]
    InputMismatch { server: String, problems: Vec<String> },
}

/// What one read of a small JSON document found.
enum Fetched {
    Json(Value),
    /// The server answered with this status, or with something that is not JSON.
    Other {
        status: u16,
        what: String,
    },
    Unreachable(String),
}

impl Inner {
    /// Health and (once per server) schema checks of every server, at once.
    pub(super) async fn check_all(&self) -> Result<(), CogSetupError> {
        let checks = self.pool.servers.iter().map(|server| self.check(server));
        let results = futures::future::join_all(checks).await;
        results.into_iter().collect()
    }

    async fn check(&self, server: &Arc<Server>) -> Result<(), CogSetupError> {
        let health = match self.fetch(server, "health-check").await {
            Fetched::Json(answer) => match serde_json::from_value::<HealthAnswer>(answer) {
                Ok(answer) => Health::from_answer(&answer),
                Err(_) => Health::Unreachable("the health check is not Cog's".into()),
            },
            Fetched::Other { what, .. } => Health::Unreachable(what),
            Fetched::Unreachable(why) => Health::Unreachable(why),
        };
        let answered = !matches!(health, Health::Unreachable(_));
        let mut outcome = Ok(());
        let health = if answered && !server.schema_checked() {
            match self.check_schema(server).await {
                Ok(()) => health,
                Err(error) => {
                    let summary = error.to_string();
                    outcome = Err(error);
                    Health::Misconfigured(summary)
                }
            }
        } else {
            health
        };
        if let Some(before) = server.set_health(health.clone()) {
            let (was, now) = (before.describe(), health.describe());
            match (before.is_serving(), health.is_serving()) {
                // Ready and busy alternate all day on a working server.
                (true, true) => {
                    tracing::debug!(cog.server = %server.url, was = %was, now = %now, "Cog server health changed")
                }
                (_, true) => {
                    tracing::info!(cog.server = %server.url, was = %was, now = %now, "Cog server health changed")
                }
                (_, false) => {
                    tracing::warn!(cog.server = %server.url, was = %was, now = %now, "Cog server health changed")
                }
            }
        }
        outcome
    }

    /// Checks the templates of every route on `server` against its input schema, when
    /// it serves one (Cog serves the file `cog build` wrote; a server run without it
    /// answers 503 and is not checked).
    async fn check_schema(&self, server: &Arc<Server>) -> Result<(), CogSetupError> {
        let document = match self.fetch(server, "openapi.json").await {
            Fetched::Json(document) => document,
            // Cog answers 503 (404 from older servers) when it has no schema; anything
            // else (a proxy's 502, a half-started server) is asked again next time.
            Fetched::Unreachable(_) => return Ok(()),
            Fetched::Other { status, what } if !matches!(status, 503 | 404) => {
                tracing::debug!(cog.server = %server.url, answer = %what, "the Cog server's schema could not be read; asking again later");
                return Ok(());
            }
            Fetched::Other { what, .. } => {
                tracing::info!(cog.server = %server.url, answer = %what, "the Cog server serves no input schema; inputs are not checked before use");
                server.mark_schema_checked();
                return Ok(());
            }
        };
        server.mark_schema_checked();
        let mut problems = Vec::new();
        for route in self.config.routes.iter().filter(|r| r.servers.contains(&server.url)) {
            match protocol::template_mismatches(&document, &route.input) {
                Ok(found) => {
                    problems.extend(found.into_iter().map(|p| format!("{}/{}: {p}", route.kind.as_str(), route.style)))
                }
                Err(why) => problems.push(format!("its /openapi.json cannot be used: {why}")),
            }
        }
        problems.dedup();
        if problems.is_empty() {
            tracing::info!(cog.server = %server.url, "the Cog server's input schema accepts our inputs");
            return Ok(());
        }
        let error = CogSetupError::InputMismatch { server: server.url.clone(), problems };
        tracing::error!(cog.server = %server.url, error = %error, "the Cog server's model does not take our inputs; it will not be used");
        Err(error)
    }

    async fn fetch(&self, server: &Server, path: &str) -> Fetched {
        let request = self.http.get(format!("{}/{path}", server.url)).timeout(self.config.request_timeout);
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Fetched::Unreachable(short_reason(&error)),
        };
        let status = response.status();
        match read_capped(response, SMALL_BODY).await {
            Ok(Some(body)) if status.is_success() => match serde_json::from_slice(&body) {
                Ok(value) => Fetched::Json(value),
                Err(_) => Fetched::Other { status: status.as_u16(), what: format!("HTTP {status}, not JSON") },
            },
            Ok(_) => Fetched::Other { status: status.as_u16(), what: format!("HTTP {status}") },
            Err(error) => Fetched::Unreachable(short_reason(&error)),
        }
    }
}

/// Runs the health checks every `interval` while the studio lives.
pub(super) fn watch(inner: Weak<Inner>, interval: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(inner) = inner.upgrade() else { return };
            // A mismatch found now is logged and marks the server; the process goes on.
            let _ = inner.check_all().await;
        }
    });
}

fn short_reason(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection refused or failed".into()
    } else {
        "the connection failed".into()
    }
}
