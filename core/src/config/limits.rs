//! `RATE_LIMIT_*` and `TRUSTED_PROXIES`: how often one user may create generations and
//! upload photos, how often one client address may call the routes that need no
//! sign-in, and which peers may say who the client is.

use std::net::IpAddr;

use super::Reader;
use crate::rate_limit::Rate;

#[derive(Clone, Debug)]
pub struct RateLimits {
    /// `POST /v1/generations` per user (`RATE_LIMIT_GENERATIONS`); `None` is no limit.
    pub generations: Option<Rate>,
    /// `POST /v1/uploads` per user (`RATE_LIMIT_UPLOADS`).
    pub uploads: Option<Rate>,
    /// Every route that needs no sign-in, per client address (`RATE_LIMIT_ANONYMOUS`).
    pub anonymous: Option<Rate>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` name the client (`TRUSTED_PROXIES`):
    /// addresses or CIDR blocks. Anyone else's are ignored: a client could forge them.
    pub trusted_proxies: Vec<IpBlock>,
    /// Which header those proxies write (`FORWARDED_HEADER`); the other is never read.
    pub forwarded_header: ForwardedHeader,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardedHeader {
    XForwardedFor,
    Forwarded,
}

/// An address block: `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpBlock {
    network: IpAddr,
    prefix: u8,
}

impl IpBlock {
    pub fn parse(text: &str) -> Option<IpBlock> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address.parse::<IpAddr>().ok()?, Some(prefix.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(IpBlock { network: address, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match (self.network, address) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            _ => address,
        };
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

fn rate(r: &mut Reader<'_>, name: &'static str, default: &str) -> Option<Rate> {
    let text = r.raw(name).unwrap_or(default);
    match Rate::parse(text) {
        Ok(rate) => rate,
        Err(message) => {
            r.problem(name, message);
            None
        }
    }
}

pub(super) fn read_limits(r: &mut Reader<'_>) -> RateLimits {
    let mut trusted_proxies = Vec::new();
    for entry in r.raw("TRUSTED_PROXIES").unwrap_or("").split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match IpBlock::parse(entry) {
            Some(block) => trusted_proxies.push(block),
            None => r.problem("TRUSTED_PROXIES", format!("{entry:?} is not an address or a CIDR block")),
        }
    }
    RateLimits {
        generations: rate(r, "RATE_LIMIT_GENERATIONS", "120/1m"),
        uploads: rate(r, "RATE_LIMIT_UPLOADS", "60/1m"),
        anonymous: rate(r, "RATE_LIMIT_ANONYMOUS", "300/1m"),
        trusted_proxies,
        forwarded_header: match r.raw("FORWARDED_HEADER").map(str::to_ascii_lowercase).as_deref() {
            None | Some("x-forwarded-for") => ForwardedHeader::XForwardedFor,
            Some("forwarded") => ForwardedHeader::Forwarded,
            Some(other) => {
                r.problem("FORWARDED_HEADER", format!("expected x-forwarded-for or forwarded, got {other:?}"));
                ForwardedHeader::XForwardedFor
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_match_their_addresses_only() {
        let block = IpBlock::parse("10.1.0.0/16").expect("a block");
        assert!(block.contains("10.1.200.3".parse().expect("ip")));
        assert!(!block.contains("10.2.0.1".parse().expect("ip")));
        assert!(block.contains("::ffff:10.1.0.9".parse().expect("mapped")));
        let one = IpBlock::parse("2001:db8::1").expect("an address");
        assert!(one.contains("2001:db8::1".parse().expect("ip")));
        assert!(!one.contains("2001:db8::2".parse().expect("ip")));
        assert!(IpBlock::parse("0.0.0.0/0").expect("all").contains("192.0.2.1".parse().expect("ip")));
        assert!(IpBlock::parse("10.0.0.0/33").is_none());
        assert!(IpBlock::parse("proxy.internal").is_none());
    }
}
