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
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                // Carrier-grade NAT (100.64/10), benchmarking (198.18/15), reserved and
                // broadcast (240/4), IETF protocol assignments (192.0.0/24), the 6to4
                // relay anycast (192.88.99/24) and the documentation ranges.
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
                || (a == 192 && b == 0 && (c == 0 || c == 2))
                || (a == 192 && b == 88 && c == 99)
                || (a == 198 && b == 51 && c == 100)
                || (a == 203 && b == 0 && c == 113))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // IPv4-compatible (::/96, deprecated but still routed by some stacks).
                || s[..6] == [0; 6]
                // NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48), which reach IPv4
                // addresses we would refuse, and 6to4 (2002::/16) likewise.
                || (s[0] == 0x64 && s[1] == 0xff9b)
                || s[0] == 0x2002
                // Teredo (2001::/32), documentation (2001:db8::/32), discard (100::/64).
                || (s[0] == 0x2001 && (s[1] == 0 || s[1] == 0xdb8))
                || (s[0] == 0x100 && s[1..4] == [0; 3])
                // Unique-local (fc00::/7, which holds cloud metadata such as fd00:ec2::254),
                // link-local (fe80::/10) and the old site-local (fec0::/10).
                || s[0] & 0xfe00 == 0xfc00
                || s[0] & 0xffc0 == 0xfe80
                || s[0] & 0xffc0 == 0xfec0)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn public_means_reachable_from_the_internet_only() {
        for public in ["8.8.8.8", "142.250.74.14", "198.20.0.1", "100.128.0.1", "2a00:1450:4001::200e", "2600::1"] {
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
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "203.0.113.9",
            "64:ff9b::7f00:1",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::1",
            "2001:0:4136:e378::1",
            "2001:db8::1",
            "fd00:ec2::254",
            "fec0::1",
            "ff02::1",
            "::",
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
