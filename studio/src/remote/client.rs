//! HTTP to one provider: a timeout on every call, retries of 5xx, 408, 429 and
//! connection errors with backoff (honouring `Retry-After`), the circuit breaker, and
//! the rules for where requests and the token may go: calls to the provider's own
//! origin (the operator chose it, so it may be a private address) carry the token;
//! anything else the provider names (output URLs) goes through the SSRF-safe
//! `Outbound` client, without the token.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use tokio::time::Instant;

use super::breaker::Breaker;
use super::protocol::excerpt;
use super::{ProviderError, RemoteSetupError};
use petportrait_core::config::{ProviderConfig, Secret};
use petportrait_core::outbound::{Outbound, is_refusal};

/// The longest `Retry-After` honoured inside one attempt; a provider asking for more
/// is left alone and the attempt fails as unavailable (the worker's own backoff follows).
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);
/// What is read of an error answer's body, for the logs.
const ERROR_BODY_CAP: usize = 16 * 1024;

/// One answer, body read.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Which failures a call retries by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Retries {
    /// 5xx, 408, 429 and connection errors.
    All,
    /// Only failures that show the request did nothing (refused connections, 408, 429,
    /// 503); an ambiguous one (see [`is_ambiguous`]) is returned for the caller to look
    /// up what happened before it tries again (a create that may have created).
    UnlessAmbiguous,
}

/// Whether the provider may have acted on a request that failed: a 500, 502 or 504
/// (a gateway may have passed it on) or a connection lost after it was sent.
pub(super) fn is_ambiguous(error: &ProviderError) -> bool {
    match error {
        ProviderError::Status { status, .. } => matches!(status, 500 | 502 | 504),
        ProviderError::Transport { source, .. } => !source.is_connect(),
        _ => false,
    }
}

/// Whether a call waits for the circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Gate {
    Breaker,
    /// Cancels go out even when the breaker is open: a prediction we abandon must not
    /// run on at our expense.
    Bypass,
}

#[derive(Debug)]
pub(super) struct Provider {
    http: reqwest::Client,
    base: Url,
    token: Option<Secret>,
    /// For every URL not on the provider's origin.
    outputs: Outbound,
    retries: u32,
    retry_delay: Duration,
    request_timeout: Duration,
    breaker: Breaker,
}

impl Provider {
    pub fn new(config: &ProviderConfig, outputs: Outbound) -> Result<Provider, RemoteSetupError> {
        let base = Url::parse(&format!("{}/", config.url.trim_end_matches('/')))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| RemoteSetupError::Url(config.url.clone()))?;
        let local = base.scheme() == "http";
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(!local)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            // The provider's own API never needs a redirect; one would be a misconfiguration.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("petportrait/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RemoteSetupError::Client)?;
        Ok(Provider {
            http,
            base,
            token: config.token.clone(),
            outputs,
            retries: config.retries,
            retry_delay: config.retry_delay,
            request_timeout: config.request_timeout,
            breaker: Breaker::new(config.breaker_failures, config.breaker_cooldown),
        })
    }

    fn endpoint(&self, path: &str) -> Url {
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    pub fn predictions_url(&self) -> Url {
        self.endpoint("v1/predictions")
    }

    /// The URL the provider gave for one of its own endpoints (`urls.get`,
    /// `urls.cancel`) if it is on the provider's origin (the token goes there), else
    /// the protocol's own path.
    pub fn own_url(&self, given: Option<&str>, fallback_path: &str) -> Url {
        given
            .and_then(|u| Url::parse(u).ok())
            .filter(|u| u.origin() == self.base.origin())
            .unwrap_or_else(|| self.endpoint(fallback_path))
    }

    /// Whether an output URL may be fetched: what `Outbound` accepts (public https,
    /// unless `WEBHOOK_ALLOW_PRIVATE`); the name is checked again when it is resolved.
    pub fn check_output_url(&self, url: &Url) -> Result<(), String> {
        self.outputs.check_url(url.as_str()).map(|_| ()).map_err(|e| e.to_string())
    }

    /// A request: to the provider's own origin with the token, anywhere else through
    /// the SSRF-safe client and without it.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        if url.origin() != self.base.origin() {
            return self.outputs.request(method, url);
        }
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {}", token.expose())),
            None => request,
        }
    }

    /// Sends the request `build` makes (again on each retry) and reads the answer's body
    /// (at most `limit` bytes of a success). 2xx answers; other statuses are errors.
    pub async fn call(
        &self,
        call: &'static str,
        gate: Gate,
        retries: Retries,
        deadline: Instant,
        limit: usize,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if gate == Gate::Breaker {
                self.breaker.allow().map_err(|remaining| ProviderError::CircuitOpen { call, remaining })?;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ProviderError::Deadline { call });
            }
            let outcome = self.attempt(call, build().timeout(self.request_timeout.min(remaining)), limit).await;
            let (error, retry_after) = match outcome {
                Ok(reply) if reply.status.is_success() => {
                    self.breaker.record(true);
                    return Ok(reply);
                }
                Ok(reply) => {
                    let status = reply.status;
                    let retryable = status.is_server_error()
                        || status == StatusCode::REQUEST_TIMEOUT
                        || status == StatusCode::TOO_MANY_REQUESTS;
                    let auth = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
                    self.breaker.record(!retryable && !auth);
                    let error = ProviderError::Status {
                        call,
                        status: status.as_u16(),
                        body: excerpt(&String::from_utf8_lossy(&reply.body)),
                    };
                    if !retryable {
                        return Err(error);
                    }
                    (error, retry_after(&reply.headers))
                }
                // The provider answered; the answer is just too big for us.
                Err(error @ ProviderError::TooLarge { .. }) => {
                    self.breaker.record(true);
                    return Err(error);
                }
                // We refused the target (an internal address): not the provider being
                // down, and no retry changes it.
                Err(error) if is_refusal(&error) => {
                    self.breaker.record(true);
                    return Err(error);
                }
                Err(error) => {
                    self.breaker.record(false);
                    (error, None)
                }
            };
            if Instant::now() >= deadline {
                return Err(ProviderError::Deadline { call });
            }
            if attempt > self.retries || (retries == Retries::UnlessAmbiguous && is_ambiguous(&error)) {
                return Err(error);
            }
            let delay = match retry_after {
                Some(wait) if wait > RETRY_AFTER_CAP => return Err(error),
                Some(wait) => wait,
                None => petportrait_core::queue::backoff_delay(
                    attempt,
                    self.retry_delay,
                    self.retry_delay.saturating_mul(16),
                    &mut rand::rng(),
                ),
            };
            if Instant::now() + delay >= deadline {
                return Err(error);
            }
            tracing::warn!(
                call,
                attempt,
                retry.in_ms = delay.as_millis() as u64,
                error = %petportrait_core::errors::error_chain(&error),
                "model provider call failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, call: &'static str, request: RequestBuilder, limit: usize) -> Result<Reply, ProviderError> {
        let transport = |source| ProviderError::Transport { call, source };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let cap = if status.is_success() { limit } else { ERROR_BODY_CAP };
        if status.is_success() && response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(ProviderError::TooLarge { call, limit });
        }
        let headers = response.headers().clone();
        let body = match read_capped(response, cap).await.map_err(transport)? {
            Some(body) => body,
            None if status.is_success() => return Err(ProviderError::TooLarge { call, limit }),
            // An error's excerpt is enough.
            None => Bytes::new(),
        };
        Ok(Reply { status, headers, body })
    }
}

/// The body, or `None` when it is larger than `cap` (read no further than that).
pub(crate) async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Option<Bytes>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.into()))
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        let later = chrono::Utc::now() + chrono::TimeDelta::seconds(30);
        headers.insert(RETRY_AFTER, later.format("%a, %d %b %Y %H:%M:%S GMT").to_string().parse().expect("header"));
        let wait = retry_after(&headers).expect("a date");
        assert!(wait > Duration::from_secs(27) && wait <= Duration::from_secs(30), "{wait:?}");
        headers.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a date in the past");
        headers.insert(RETRY_AFTER, "soon".parse().expect("header"));
        assert_eq!(retry_after(&headers), None);
    }
}
