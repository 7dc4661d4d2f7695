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

/// Whether an address is on the public internet: not private, loopback, link-local
/// (cloud metadata lives there), unspecified, broadcast, multicast, CGNAT or unique
/// local, including IPv4 addresses mapped into IPv6. Outbound requests to users' or
/// providers' URLs go only to these.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 0
                || (v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1])))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn public_means_reachable_from_the_internet_only() {
        for public in ["8.8.8.8", "142.250.74.14", "2a00:1450:4001::200e"] {
            assert!(is_public_ip(public.parse().expect("ip")), "{public}");
        }
        for internal in [
            "10.0.0.7",
            "172.16.1.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public_ip(internal.parse().expect("ip")), "{internal}");
        }
    }

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
