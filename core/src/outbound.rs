//! The one HTTP client for URLs that come from outside (a profile picture's URL in an
//! ID token; webhooks later): only to public addresses, checked where it matters, after
//! name resolution (a name that resolves to an internal address is refused, so DNS
//! rebinding cannot reach the metadata service or the database), no redirects, a total
//! deadline, and a cap on the bytes read.

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

/// Resolves names like the system does, then keeps public addresses only.
struct PublicOnly {
    allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found.into_iter().filter(|a| allow_private || is_public_ip(a.ip())).collect();
            if kept.is_empty() {
                let refused: Box<dyn std::error::Error + Send + Sync> =
                    format!("{} resolves to no public address", name.as_str()).into();
                return Err(refused);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// Outbound requests to URLs we did not choose. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbound {
    http: reqwest::Client,
    allow_private: bool,
}

impl Outbound {
    /// `allow_private` lets requests reach loopback and private addresses, and plain
    /// http: for tests only (`OUTBOUND_ALLOW_PRIVATE`).
    pub fn new(allow_private: bool) -> Outbound {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicOnly { allow_private }))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent("PetPortrait")
            .build()
            .expect("a client with rustls and a resolver builds");
        Outbound { http, allow_private }
    }

    /// Whether a URL may be requested at all: https (http only when private addresses
    /// are allowed), no credentials in it, and an IP literal only if public (literals
    /// skip the resolver).
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, OutboundError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| OutboundError::Refused(e.to_string()))?;
        let scheme_ok = parsed.scheme() == "https" || (self.allow_private && parsed.scheme() == "http");
        if !scheme_ok {
            return Err(OutboundError::Refused(format!("scheme {}", parsed.scheme())));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(OutboundError::Refused("credentials in the URL".into()));
        }
        let host = parsed.host_str().ok_or_else(|| OutboundError::Refused("no host".into()))?;
        let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>();
        if let Ok(ip) = literal
            && !self.allow_private
            && !is_public_ip(ip)
        {
            return Err(OutboundError::Refused(format!("{ip} is not a public address")));
        }
        if !self.allow_private && (host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost")) {
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

    #[tokio::test]
    async fn a_name_resolving_to_an_internal_address_is_refused() {
        // The name check stops `localhost` before any request; here the resolver is
        // asked directly, as it would be for any name that resolves to loopback.
        use std::str::FromStr;
        let strict = PublicOnly { allow_private: false };
        let refused = strict.resolve(Name::from_str("localhost").expect("name")).await.err().expect("refused");
        assert!(refused.to_string().contains("no public address"), "{refused}");
        let lenient = PublicOnly { allow_private: true };
        let found: Vec<SocketAddr> =
            lenient.resolve(Name::from_str("localhost").expect("name")).await.expect("resolves").collect();
        assert!(found.iter().all(|a| a.ip().is_loopback()) && !found.is_empty());
    }
}
