//! Rate limits at the API's edge: per user on creating generations and uploads, per
//! client address on the routes that need no sign-in. A refusal is a 429 problem with
//! `Retry-After` and the IETF draft's `RateLimit` / `RateLimit-Policy` fields.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use petportrait_core::config::{ForwardedHeader, IpBlock};
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

/// The layer of the routes that need no sign-in: one allowance per client address (per
/// /64 for IPv6, where one subscriber holds a whole /64 to rotate through).
pub async fn limit_anonymous(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
    if let Some(peer) = peer {
        let limits = &state.limits;
        let client = client_address(peer, request.headers(), &limits.trusted_proxies, limits.forwarded_header);
        if let Err(refused) = check(&state, "anonymous", &limit_key(client), limits.anonymous).await {
            return refused.into_response();
        }
    }
    next.run(request).await
}

fn limit_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("{}/64", std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        },
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy; then the
/// nearest entry of the configured header (`FORWARDED_HEADER`) that is not itself a
/// trusted proxy, read from the right (the entries our proxies appended). An entry that
/// cannot be read ends the walk at the peer: what lies left of it may be the client's
/// own writing. The other header is never read, since our proxies leave it as the
/// client sent it.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpBlock], header: ForwardedHeader) -> IpAddr {
    let is_trusted = |address: IpAddr| trusted.iter().any(|block| block.contains(address));
    if !is_trusted(peer) {
        return peer;
    }
    let (name, read): (&str, fn(&str) -> Option<IpAddr>) = match header {
        ForwardedHeader::XForwardedFor => ("x-forwarded-for", address_with_port),
        ForwardedHeader::Forwarded => ("forwarded", forwarded_for),
    };
    let mut chain = Vec::new();
    for value in headers.get_all(name) {
        let Ok(text) = value.to_str() else { return peer };
        chain.extend(text.split(',').map(read));
    }
    for entry in chain.into_iter().rev() {
        match entry {
            None => return peer,
            Some(address) if is_trusted(address) => {}
            Some(address) => return address,
        }
    }
    peer
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn address_with_port(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.parse().ok().or_else(|| {
        let (host, port) = text.rsplit_once(':')?;
        // One colon only: an IPv4 address with a port (IPv6 ports need brackets).
        (!host.contains(':') && port.parse::<u16>().is_ok()).then(|| host.parse().ok()).flatten()
    })
}

/// The address of one `Forwarded` element's `for=` (RFC 7239): `for=192.0.2.60`,
/// `for="[2001:db8::1]:4711"`; an obfuscated or unknown one cannot be read.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then_some(value)
    })?;
    address_with_port(value)
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
        let xff = ForwardedHeader::XForwardedFor;
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        let forged = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7")]);
        // A direct client's header is ignored.
        let direct = ip("198.51.100.1");
        assert_eq!(client_address(direct, &forged, &trusted, xff), direct);
        // Behind our proxy, the rightmost entry it appended is the client; the forged
        // entry to its left is not read.
        assert_eq!(client_address(proxy, &forged, &trusted, xff), ip("198.51.100.7"));
        // Two proxies of ours in the chain are skipped; ports are read past.
        let chained = headers(&[("x-forwarded-for", "198.51.100.7:5123, 10.0.0.9")]);
        assert_eq!(client_address(proxy, &chained, &trusted, xff), ip("198.51.100.7"));
        let bracketed = headers(&[("x-forwarded-for", "203.0.113.9, [2001:db8::5]:443")]);
        assert_eq!(client_address(proxy, &bracketed, &trusted, xff), ip("2001:db8::5"));
        // An entry that cannot be read stops the walk at the peer: the forged address
        // left of it is never believed.
        let garbled = headers(&[("x-forwarded-for", "203.0.113.9, unknown")]);
        assert_eq!(client_address(proxy, &garbled, &trusted, xff), proxy);
        // Only the configured header counts: a Forwarded the client wrote is ignored.
        assert_eq!(client_address(proxy, &headers(&[("forwarded", "for=203.0.113.9")]), &trusted, xff), proxy);
        let rfc7239 = headers(&[("forwarded", "for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\";proto=https")]);
        let fwd = ForwardedHeader::Forwarded;
        assert_eq!(client_address(proxy, &rfc7239, &trusted, fwd), ip("2001:db8:cafe::17"));
        assert_eq!(client_address(proxy, &forged, &trusted, fwd), proxy);
        // Nothing forwarded: the proxy itself.
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted, xff), proxy);
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        assert_eq!(limit_key("2001:db8:1:2:aaaa::1".parse().expect("ip")), "2001:db8:1:2::/64");
        assert_eq!(limit_key("2001:db8:1:2:bbbb::9".parse().expect("ip")), "2001:db8:1:2::/64");
        assert_eq!(limit_key("::ffff:192.0.2.1".parse().expect("ip")), "192.0.2.1");
        assert_eq!(limit_key("192.0.2.1".parse().expect("ip")), "192.0.2.1");
    }
}
