//! The one HTTP client for URLs that come from outside (a profile picture's URL in an
//! ID token, a remote model's output URLs, webhook endpoints): only http(s) (plain http
//! only where private targets are allowed), no credentials in the URL, IP literals
//! checked, and every name resolved once by our own resolver, which refuses it when any
//! of its addresses is internal and hands reqwest exactly the addresses it checked, so
//! the connection goes to a checked address (no second lookup a DNS rebinding could
//! answer differently). No redirects, a total deadline, and a cap on the bytes read.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::hosts::is_public_ip;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("the URL is not allowed: {0}")]
    Refused(String),
    #[error("the request failed")]
    Request(#[source] reqwest::Error),
    #[error("the answer was {0}")]
    Status(u16),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the answer's type {0:?} is not one asked for")]
    WrongType(String),
}

/// Whether `error` (or one of its causes) is our refusal of a target: a request that
/// failed because the host resolved to an internal address, which retrying cannot fix.
pub fn is_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(current) = next {
        if matches!(current.downcast_ref::<OutboundError>(), Some(OutboundError::Refused(_))) {
            return true;
        }
        next = current.source();
    }
    false
}

/// Resolves names like the system does (or from a fixed table, in tests), then
/// refuses a name any of whose addresses is not public.
#[derive(Clone, Debug, Default)]
struct PublicOnly {
    allow_private: bool,
    fixed: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl PublicOnly {
    async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, OutboundError> {
        let found: Vec<SocketAddr> = match self.fixed.get(&host.to_ascii_lowercase()) {
            Some(ips) => ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect(),
            None => tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| OutboundError::Refused(format!("{host} does not resolve: {e}")))?
                .collect(),
        };
        if found.is_empty() {
            return Err(OutboundError::Refused(format!("{host} resolves to nothing")));
        }
        if let Some(internal) = found.iter().find(|a| !self.allow_private && !is_public_ip(a.ip())) {
            return Err(OutboundError::Refused(format!("{host} resolves to {}, not a public address", internal.ip())));
        }
        Ok(found)
    }
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            match resolver.lookup(name.as_str()).await {
                Ok(found) => Ok(Box::new(found.into_iter()) as Addrs),
                Err(refused) => Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

/// Outbound requests to URLs we did not choose. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbound {
    http: reqwest::Client,
    resolver: PublicOnly,
}

impl Outbound {
    /// `allow_private` lets requests reach loopback and private addresses, and plain
    /// http: for tests only (`WEBHOOK_ALLOW_PRIVATE`).
    pub fn new(allow_private: bool) -> Outbound {
        Outbound::with_resolver(PublicOnly { allow_private, fixed: Arc::default() })
    }

    /// A client that resolves the names in `hosts` to the addresses given (and others
    /// as usual), so tests can name hosts that resolve to internal addresses.
    pub fn with_fixed_hosts(allow_private: bool, hosts: HashMap<String, Vec<IpAddr>>) -> Outbound {
        Outbound::with_resolver(PublicOnly { allow_private, fixed: Arc::new(hosts) })
    }

    fn with_resolver(resolver: PublicOnly) -> Outbound {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver.clone()))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent("PetPortrait")
            .build()
            .expect("a client with rustls and a resolver builds");
        Outbound { http, resolver }
    }

    /// A request to `url`, which `check_url` accepted. Its connection is made only to
    /// addresses the resolver checked; redirects are answers, never followed. The
    /// default deadline (10 s) can be changed per request with `timeout`.
    pub fn request(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// `check_url`, and the host resolved now with every address checked: for a URL
    /// that is stored to be requested later (a webhook endpoint), so a bad one is
    /// refused when it is registered. Each request checks again.
    pub async fn check_reachable(&self, url: &str) -> Result<reqwest::Url, OutboundError> {
        let parsed = self.check_url(url)?;
        let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        if host.parse::<IpAddr>().is_err() {
            self.resolver.lookup(host).await?;
        }
        Ok(parsed)
    }

    /// Whether a URL may be requested at all: https (http only when private addresses
    /// are allowed), no credentials in it, and an IP literal only if public (literals
    /// skip the resolver).
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, OutboundError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| OutboundError::Refused(e.to_string()))?;
        let allow_private = self.resolver.allow_private;
        let scheme_ok = parsed.scheme() == "https" || (allow_private && parsed.scheme() == "http");
        if !scheme_ok {
            return Err(OutboundError::Refused(format!("scheme {}", parsed.scheme())));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(OutboundError::Refused("credentials in the URL".into()));
        }
        let host = parsed.host_str().ok_or_else(|| OutboundError::Refused("no host".into()))?;
        let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>();
        if let Ok(ip) = literal
            && !allow_private
            && !is_public_ip(ip)
        {
            return Err(OutboundError::Refused(format!("{ip} is not a public address")));
        }
        if !allow_private && (host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost")) {
            return Err(OutboundError::Refused("a local host".into()));
        }
        Ok(parsed)
    }

    /// GETs `url`, reading at most `max_bytes`, and returns the body and its content
    /// type, which must be one of `accept`.
    pub async fn fetch(&self, url: &str, max_bytes: usize, accept: &[&str]) -> Result<(Bytes, String), OutboundError> {
        let url = self.check_url(url)?;
        let response = self.http.get(url).send().await.map_err(OutboundError::Request)?;
        if !response.status().is_success() {
            return Err(OutboundError::Status(response.status().as_u16()));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !accept.contains(&content_type.as_str()) {
            return Err(OutboundError::WrongType(content_type));
        }
        if response.content_length().is_some_and(|n| n > max_bytes as u64) {
            return Err(OutboundError::TooLarge(max_bytes));
        }
        let mut body = BytesMut::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(OutboundError::Request)?;
            if body.len() + chunk.len() > max_bytes {
                return Err(OutboundError::TooLarge(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body.freeze(), content_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_https_urls_pass() {
        let strict = Outbound::new(false);
        assert!(strict.check_url("https://lh3.googleusercontent.com/a/x=s96-c").is_ok());
        for refused in [
            "http://lh3.googleusercontent.com/a/x",
            "https://169.254.169.254/latest/meta-data/",
            "https://127.0.0.1/x",
            "https://[::1]/x",
            "https://10.1.2.3/x",
            "https://localhost/x",
            "https://user:pass@example.org/x",
            "file:///etc/passwd",
        ] {
            assert!(strict.check_url(refused).is_err(), "{refused}");
        }
        assert!(Outbound::new(true).check_url("http://127.0.0.1:8080/x").is_ok());
    }

    #[test]
    fn ip_literals_in_every_spelling_are_checked() {
        let strict = Outbound::new(false);
        // The URL parser normalises decimal, hexadecimal and short IPv4 forms first.
        for refused in [
            "https://2130706433/x",
            "https://0x7f.1/x",
            "https://127.1/x",
            "https://[::ffff:7f00:1]/x",
            "https://[64:ff9b::a9fe:a9fe]/x",
            "https://198.18.0.1/x",
            "https://240.1.2.3/x",
        ] {
            assert!(strict.check_url(refused).is_err(), "{refused}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_an_internal_address_is_refused_before_connecting() {
        let hosts = HashMap::from([
            ("internal.example".to_owned(), vec!["10.0.0.1".parse().expect("ip")]),
            ("mixed.example".to_owned(), vec!["8.8.8.8".parse().expect("ip"), "127.0.0.1".parse().expect("ip")]),
            ("metadata.example".to_owned(), vec!["169.254.169.254".parse().expect("ip")]),
        ]);
        let strict = Outbound::with_fixed_hosts(false, hosts.clone());
        for url in ["https://internal.example/hook", "https://mixed.example/hook", "https://metadata.example/x"] {
            let refused = strict.check_reachable(url).await.expect_err("refused at registration");
            assert!(refused.to_string().contains("not a public address"), "{refused}");
            // And at request time, through reqwest's connector.
            let error = strict.fetch(url, 1024, &["application/json"]).await.expect_err("refused at request time");
            let chain = crate::errors::error_chain(&error);
            assert!(chain.contains("not a public address"), "{chain}");
            assert!(is_refusal(&error), "the refusal is not recognisable in {chain}");
        }
        let lenient = Outbound::with_fixed_hosts(true, hosts);
        assert!(lenient.check_reachable("http://internal.example/hook").await.is_ok());
        // The system resolver is used for names not in the table.
        let system = PublicOnly { allow_private: false, fixed: Arc::default() };
        assert!(system.lookup("localhost").await.is_err(), "localhost resolves to loopback");
    }
}
