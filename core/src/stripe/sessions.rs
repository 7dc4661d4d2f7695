//! What a paid Checkout Session buys, decided from what Stripe reports (an event or
//! the API), never from the browser.

use std::collections::HashMap;

use crate::config::CreditPack;
use crate::db::Purchase;

/// The fields of a Checkout Session we read; the rest is Stripe's business.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub client_reference_id: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub payment_status: Option<String>,
    pub payment_intent: Option<String>,
}

impl CheckoutSession {
    pub fn is_paid(&self) -> bool {
        self.payment_status.as_deref() == Some("paid")
    }
}

/// Why a paid session buys nothing here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotOurs {
    #[error("the session names no pack or user of ours")]
    Unknown,
    #[error("the session paid {paid:?} {currency}, not its pack's price")]
    WrongAmount { paid: Option<i64>, currency: String },
}

/// The purchase a paid `session` stands for: the pack named in its metadata, only if
/// the amount and currency paid are that pack's.
pub fn purchase_for<'a>(packs: &'a [CreditPack], session: &'a CheckoutSession) -> Result<Purchase<'a>, NotOurs> {
    let pack = session.metadata.get("pack_id").and_then(|id| packs.iter().find(|p| &p.id == id));
    let (Some(pack), Some(user_id)) = (pack, session.client_reference_id.as_deref()) else {
        return Err(NotOurs::Unknown);
    };
    let currency = session.currency.as_deref().unwrap_or_default().to_ascii_lowercase();
    if session.amount_total != Some(pack.price) || currency != pack.currency {
        return Err(NotOurs::WrongAmount { paid: session.amount_total, currency });
    }
    Ok(Purchase {
        user_id,
        pack_id: &pack.id,
        credits: pack.credits,
        amount: pack.price,
        currency: &pack.currency,
        checkout_session_id: &session.id,
        payment_intent_id: session.payment_intent.as_deref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack() -> CreditPack {
        CreditPack { id: "mini".into(), credits: 5, price: 199, currency: "eur".into() }
    }

    fn session(pack_id: &str, amount: i64, currency: &str) -> CheckoutSession {
        CheckoutSession {
            id: "cs_1".into(),
            client_reference_id: Some("usr_1".into()),
            metadata: HashMap::from([("pack_id".to_owned(), pack_id.to_owned())]),
            amount_total: Some(amount),
            currency: Some(currency.into()),
            payment_status: Some("paid".into()),
            payment_intent: None,
        }
    }

    #[test]
    fn the_pack_paid_for_is_granted_and_nothing_else() {
        let packs = [pack()];
        let paid = session("mini", 199, "EUR");
        let purchase = purchase_for(&packs, &paid).expect("ours");
        assert_eq!((purchase.user_id, purchase.credits, purchase.currency), ("usr_1", 5, "eur"));
        assert_eq!(
            purchase_for(&packs, &session("mini", 1, "eur")).err(),
            Some(NotOurs::WrongAmount { paid: Some(1), currency: "eur".into() })
        );
        assert!(matches!(purchase_for(&packs, &session("mini", 199, "usd")), Err(NotOurs::WrongAmount { .. })));
        assert_eq!(purchase_for(&packs, &session("giant", 199, "eur")).err(), Some(NotOurs::Unknown));
    }
}
