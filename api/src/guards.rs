//! Layers every response goes through: the `Host` check that keeps a DNS-rebinding page
//! out, and the security headers.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use petportrait_core::hosts::{authority_host, is_loopback_host, url_host};

use crate::error::ApiError;

/// Which `Host` a request may name, what the public URL's scheme asks for, and the
/// content security policy of our pages.
#[derive(Clone, Debug)]
pub struct HostPolicy {
    /// `PUBLIC_URL`'s host, lowercase.
    public_host: String,
    /// HSTS when the service is reached over https.
    https: bool,
    content_security_policy: HeaderValue,
}

/// Probes of an orchestrator and Prometheus's scrapes use the machine's own address;
/// they reveal nothing personal (keep `/metrics` off the public internet at the proxy).
pub(crate) const ANY_HOST_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Our own scripts only (no inline script, no eval), our own styles and no other host,
/// not even in a frame. `object_links` is the origin file downloads redirect to
/// (`S3_PUBLIC_ENDPOINT`), from which pictures, music and 3D models load.
fn content_security_policy(object_links: Option<&str>) -> HeaderValue {
    let links = object_links.map(|url| format!(" {}", origin(url))).unwrap_or_default();
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:{links}; \
         media-src 'self' blob:{links}; connect-src 'self'{links}; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).expect("the policy is ASCII without control characters")
}

/// `scheme://host[:port]` of a URL (the configuration checked it is http(s)).
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..].find('/').map_or(url, |slash| &url[..after_scheme + slash])
}

impl HostPolicy {
    pub fn new(public_url: &str, object_links: Option<&str>) -> HostPolicy {
        let public_host = url_host(public_url).trim_end_matches('.').to_ascii_lowercase();
        HostPolicy {
            public_host,
            https: public_url.starts_with("https://"),
            content_security_policy: content_security_policy(object_links),
        }
    }

    /// Whether a request naming `host` is for us: the public URL's host or a loopback
    /// literal. A DNS-rebinding page reaches our address under its own name, which is
    /// neither.
    fn allows(&self, host: &str) -> bool {
        // A fully qualified name may end in a dot; an IP address may be written in
        // several ways (`::1`, `0:0::1`), so addresses are compared parsed.
        let host = host.strip_suffix('.').unwrap_or(host);
        host.eq_ignore_ascii_case(&self.public_host)
            || is_loopback_host(host)
            || matches!((host.parse::<IpAddr>(), self.public_host.parse::<IpAddr>()), (Ok(a), Ok(b)) if a == b)
    }
}

/// The host a request names: HTTP/2's `:authority` (in the URI), else `Host`.
fn requested_host(request: &Request) -> Option<String> {
    if let Some(host) = request.uri().host() {
        return Some(host.trim_start_matches('[').trim_end_matches(']').to_owned());
    }
    let value = request.headers().get(header::HOST)?.to_str().ok()?;
    Some(authority_host(value.trim()).to_owned())
}

/// Refuses requests for another host (421) or naming none (400), except the probes;
/// adds the security headers to every response, refusals included.
pub async fn check_host(State(policy): State<HostPolicy>, request: Request, next: Next) -> Response {
    let mut response = match refusal(&policy, &request) {
        Some(refusal) => refusal.into_response(),
        None => next.run(request).await,
    };
    add_security_headers(response.headers_mut(), &policy);
    response
}

/// Why a request may not be served here, if it may not.
fn refusal(policy: &HostPolicy, request: &Request) -> Option<ApiError> {
    if ANY_HOST_PATHS.contains(&request.uri().path()) {
        return None;
    }
    match requested_host(request) {
        None => Some(ApiError::new(StatusCode::BAD_REQUEST, "missing_host", "the request names no host")),
        Some(host) if !policy.allows(&host) => Some(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            "this server does not serve that host",
        )),
        Some(_) => None,
    }
}

fn add_security_headers(headers: &mut HeaderMap, policy: &HostPolicy) {
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    let is_html =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy.content_security_policy.clone());
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if policy.https {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_public_host_and_loopback_are_served() {
        let policy = HostPolicy::new("https://Pets.Example.org", None);
        for host in ["pets.example.org", "PETS.example.org", "pets.example.org.", "127.0.0.1", "localhost", "::1"] {
            assert!(policy.allows(host), "{host}");
        }
        for host in ["evil.example", "pets.example.org.evil.example", "10.0.0.1", ""] {
            assert!(!policy.allows(host), "{host}");
        }
        assert!(policy.https);
        assert!(!HostPolicy::new("http://127.0.0.1:8080", None).https);
        let v6 = HostPolicy::new("http://[2001:db8::10]:8080", None);
        assert!(v6.allows("2001:db8:0::10") && v6.allows("2001:DB8::10") && !v6.allows("2001:db8::11"));
    }

    #[test]
    fn the_page_may_load_files_from_the_download_origin_only() {
        let own = HostPolicy::new("https://pets.example.org", None).content_security_policy;
        let own = own.to_str().expect("ascii");
        assert!(own.contains("script-src 'self';") && !own.contains("http"), "{own}");
        let links = HostPolicy::new("https://pets.example.org", Some("https://files.example.org:9000/bucket"));
        let links = links.content_security_policy;
        let links = links.to_str().expect("ascii");
        for directive in ["img-src", "media-src", "connect-src"] {
            let value = links.split(';').find(|d| d.trim().starts_with(directive)).expect("directive");
            assert!(value.ends_with(" https://files.example.org:9000"), "{value}");
        }
        assert!(links.contains("script-src 'self';"), "{links}");
    }
}
