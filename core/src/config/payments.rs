//! `CREDIT_PACKS` and `STRIPE_*`: what can be bought, and through which Stripe account.

use super::models::Secret;
use super::{Reader, url_host_is_loopback};

/// One pack of credits for sale.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CreditPack {
    pub id: String,
    pub credits: i64,
    /// In the currency's minor units (cents).
    pub price: i64,
    /// ISO 4217, lowercase as Stripe writes it.
    pub currency: String,
}

/// The Stripe account purchases go through. `Debug` hides the keys.
#[derive(Clone, Debug)]
pub struct StripeConfig {
    pub secret_key: Secret,
    /// `STRIPE_WEBHOOK_SECRET`, comma-separated while a secret is rolled.
    pub webhook_secrets: Vec<Secret>,
    /// `STRIPE_API_BASE`, without a trailing slash.
    pub api_base: String,
}

#[derive(Clone, Debug)]
pub struct PaymentsConfig {
    pub packs: Vec<CreditPack>,
    /// `None`: purchases are off.
    pub stripe: Option<StripeConfig>,
}

pub const DEFAULT_CREDIT_PACKS: &str = "starter:20:500:usd,studio:60:1200:usd,pro:150:2500:usd";

fn parse_pack(text: &str) -> Option<CreditPack> {
    let mut parts = text.trim().split(':');
    let (id, credits, price, currency) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid_id = !id.is_empty()
        && id.len() <= 32
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let currency = currency.to_ascii_lowercase();
    let pack = CreditPack { id: id.to_owned(), credits: credits.parse().ok()?, price: price.parse().ok()?, currency };
    let valid = valid_id
        && parts.next().is_none()
        && pack.credits > 0
        && pack.price > 0
        && pack.currency.len() == 3
        && pack.currency.bytes().all(|b| b.is_ascii_lowercase());
    valid.then_some(pack)
}

pub(super) fn read_payments(r: &mut Reader<'_>) -> PaymentsConfig {
    let text = r.string("CREDIT_PACKS", DEFAULT_CREDIT_PACKS);
    let packs: Option<Vec<CreditPack>> = text.split(',').filter(|p| !p.trim().is_empty()).map(parse_pack).collect();
    let packs = match packs {
        Some(packs) if !packs.is_empty() => {
            let mut ids: Vec<&str> = packs.iter().map(|p| p.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() != packs.len() {
                r.problem("CREDIT_PACKS", "each pack id must appear once");
            }
            packs
        }
        _ => {
            r.problem("CREDIT_PACKS", "expected id:credits:price-in-minor-units:currency, comma-separated");
            Vec::new()
        }
    };
    let api_base = r.string("STRIPE_API_BASE", "https://api.stripe.com").trim_end_matches('/').to_owned();
    if !(api_base.starts_with("https://") || (api_base.starts_with("http://") && url_host_is_loopback(&api_base))) {
        r.problem("STRIPE_API_BASE", "must be an https URL (plain http only on a loopback host)");
    }
    let stripe = match (r.raw("STRIPE_SECRET_KEY"), r.raw("STRIPE_WEBHOOK_SECRET")) {
        (Some(key), Some(secrets)) => Some(StripeConfig {
            secret_key: Secret::new(key),
            webhook_secrets: secrets.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Secret::new).collect(),
            api_base,
        }),
        (None, None) => None,
        _ => {
            r.problem("STRIPE_WEBHOOK_SECRET", "STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET must be set together");
            None
        }
    };
    PaymentsConfig { packs, stripe }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_pack("starter:20:500:USD"),
            Some(CreditPack { id: "starter".into(), credits: 20, price: 500, currency: "usd".into() })
        );
        for bad in [
            "starter:20:500",
            "starter:0:500:usd",
            "starter:20:-1:usd",
            "Starter:20:500:usd",
            "s:20:500:dollars",
            "s:20:500:usd:x",
        ] {
            assert_eq!(parse_pack(bad), None, "{bad}");
        }
    }
}
