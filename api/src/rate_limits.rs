//! Rate limits at the API's edge: per user on creating generations and uploads, per
//! client address on the routes that need no sign-in. A refusal is a 429 problem with
//! `Retry-After` and the IETF draft's `RateLimit` / `RateLimit-Policy` fields.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use petportrait_core::config::IpBlock;
use petportrait_core::rate_limit::{Decision, Rate};

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Counts one request of `subject` against the limit `policy` (`generations`,
/// `uploads`, `anonymous`); `None` is no limit. A store that does not answer lets the
/// request through (and says so in the log): the limits guard the service, and an
/// outage of their store should not become an outage of the service.
pub async fn check(state: &AppState, policy: &'static str, subject: &str, rate: Option<Rate>) -> ApiResult<()> {
    let Some(rate) = rate else { return Ok(()) };
    match state.services.limiter.check(&format!("{policy}:{subject}"), rate).await {
        Ok(decision) if decision.allowed => Ok(()),
        Ok(decision) => Err(refusal(policy, rate, decision)),
        Err(error) => {
            tracing::warn!(
                error = %petportrait_core::errors::error_chain(&error),
                rate_limit.policy = policy,
                "the rate limit store did not answer; the request is let through"
            );
            Ok(())
        }
    }
}

fn refusal(policy: &'static str, rate: Rate, decision: Decision) -> ApiError {
    let retry_after = u32::try_from(decision.retry_after.as_millis().div_ceil(1000)).unwrap_or(u32::MAX).max(1);
    let reset = decision.reset.as_millis().div_ceil(1000);
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "at most {} requests per {} s ({policy}); try again in {retry_after} s",
            rate.limit,
            rate.period.as_secs()
        ),
    );
    error.retry_after = Some(retry_after);
    let policy_field = format!("\"{policy}\";q={};w={}", rate.limit, rate.period.as_secs().max(1));
    let state_field = format!("\"{policy}\";r={};t={reset}", decision.remaining);
    for (name, value) in [("ratelimit-policy", policy_field), ("ratelimit", state_field)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            error.headers.push((axum::http::HeaderName::from_static(name), value));
        }
    }
    error
}

/// The layer of the routes that need no sign-in: one allowance per client address.
pub async fn limit_anonymous(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
    if let Some(peer) = peer {
        let client = client_address(peer, request.headers(), &state.limits.trusted_proxies);
        if let Err(refused) = check(&state, "anonymous", &client.to_string(), state.limits.anonymous).await {
            return refused.into_response();
        }
    }
    next.run(request).await
}

/// The client's address: the peer's, unless the peer is a trusted proxy; then the
/// nearest address in `X-Forwarded-For` (or `Forwarded`'s `for=`) that is not itself a
/// trusted proxy. What a client writes there itself is never believed, since only the
/// entries our proxies appended are read, from the right.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpBlock]) -> IpAddr {
    let is_trusted = |address: IpAddr| trusted.iter().any(|block| block.contains(address));
    if !is_trusted(peer) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else { return peer };
        chain.extend(text.split(',').filter_map(|entry| entry.trim().parse::<IpAddr>().ok()));
    }
    if chain.is_empty() {
        for value in headers.get_all("forwarded") {
            let Ok(text) = value.to_str() else { return peer };
            chain.extend(text.split(',').filter_map(forwarded_for));
        }
    }
    chain.into_iter().rev().find(|address| !is_trusted(*address)).unwrap_or(peer)
}

/// The address of one `Forwarded` element's `for=` (RFC 7239): `for=192.0.2.60`,
/// `for="[2001:db8::1]:4711"`; an obfuscated or unknown one is skipped.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then_some(value.trim().trim_matches('"'))
    })?;
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    value.parse().ok().or_else(|| value.rsplit_once(':').and_then(|(host, _)| host.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.5".parse().expect("ip");
        let trusted = [IpBlock::parse("10.0.0.0/24").expect("block")];
        let forged = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7")]);
        // A direct client's header is ignored.
        let direct: IpAddr = "198.51.100.1".parse().expect("ip");
        assert_eq!(client_address(direct, &forged, &trusted), direct);
        // Behind our proxy, the rightmost entry it appended is the client; the forged
        // entry to its left is not read.
        assert_eq!(client_address(proxy, &forged, &trusted), "198.51.100.7".parse::<IpAddr>().expect("ip"));
        // Two proxies of ours in the chain are skipped.
        let chained = headers(&[("x-forwarded-for", "198.51.100.7, 10.0.0.9")]);
        assert_eq!(client_address(proxy, &chained, &trusted), "198.51.100.7".parse::<IpAddr>().expect("ip"));
        let rfc7239 = headers(&[("forwarded", "for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\";proto=https")]);
        assert_eq!(client_address(proxy, &rfc7239, &trusted), "2001:db8:cafe::17".parse::<IpAddr>().expect("ip"));
        // Nothing forwarded: the proxy itself.
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
    }
}
