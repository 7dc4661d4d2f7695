//! Host names as the API and the configuration compare them: the host of a URL or of a
//! `Host` header, without port or IPv6 brackets, and whether it is loopback.

use std::net::IpAddr;

/// The host of an authority (`name`, `name:port`, `[v6]` or `[v6]:port`).
pub fn authority_host(authority: &str) -> &str {
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    }
}

/// The host of an absolute URL such as `https://pets.example.org:8443/path`.
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    authority_host(authority)
}

/// `localhost` or a loopback IP literal (127.0.0.0/8, ::1).
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_found_without_ports_and_brackets() {
        assert_eq!(authority_host("evil.example:18080"), "evil.example");
        assert_eq!(authority_host("[::1]:8080"), "::1");
        assert_eq!(authority_host("127.0.0.1"), "127.0.0.1");
        assert_eq!(url_host("https://pets.example.org:8443/x?y"), "pets.example.org");
        assert_eq!(url_host("http://user@[::1]:8080"), "::1");
        assert_eq!(url_host("http://127.0.0.1:8080"), "127.0.0.1");
    }

    #[test]
    fn loopback_means_localhost_or_a_loopback_literal() {
        for host in ["localhost", "LocalHost", "127.0.0.1", "127.8.9.10", "::1"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example", "10.0.0.1", "0.0.0.0", "localhost.evil.example", "::ffff:127.0.0.1", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
