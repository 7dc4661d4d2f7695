//! Opaque identifiers. Each kind of id is its own type, so a generation id can never
//! be passed where an upload id is expected; all are ULIDs with a readable prefix.

use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Ids made in this process sort in the order they were made, even within one
/// millisecond, so lists ordered by `(created_at, id)` follow creation order.
static MONOTONIC: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());

fn next_ulid() -> ulid::Ulid {
    match MONOTONIC.lock() {
        Ok(mut generator) => generator.generate().unwrap_or_else(|_| ulid::Ulid::generate()),
        Err(_) => ulid::Ulid::generate(),
    }
}

/// Every id type: parsed from untrusted text at the edge.
pub trait Id: Sized {
    /// Accepts only well-formed ids of this kind; anything else is `None`.
    fn parse(text: &str) -> Option<Self>;
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, next_ulid().to_string().to_ascii_lowercase()))
            }

            /// Accepts only well-formed ids of this kind; anything else is `None`.
            pub fn parse(text: &str) -> Option<Self> {
                let rest = text.strip_prefix($prefix)?.strip_prefix('_')?;
                (rest.len() == 26 && rest.chars().all(|c| c.is_ascii_alphanumeric()))
                    .then(|| Self(text.to_owned()))
            }

            /// Wraps a value read from our own database.
            pub fn from_db(text: String) -> Self {
                Self(text)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Id for $name {
            fn parse(text: &str) -> Option<Self> {
                $name::parse(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A user account.
    UserId, "usr");
id_type!(
    /// An uploaded photo.
    UploadId, "upl");
id_type!(
    /// A generation (one job).
    GenerationId, "gen");
id_type!(
    /// A stored object: an upload's bytes, an output file or a gallery copy.
    ObjectId, "obj");
id_type!(
    /// An item of a user's gallery.
    GalleryItemId, "gal");
id_type!(
    /// A credit ledger entry.
    LedgerEntryId, "led");
id_type!(
    /// A payment record (one paid Checkout Session).
    PaymentId, "pay");
id_type!(
    /// A personal API token (its id, not its secret).
    ApiTokenId, "tok");
id_type!(
    /// One run of the daily reconciliation.
    ReconciliationId, "rec");
id_type!(
    /// A webhook endpoint (registered, or a generation's own `webhook` URL).
    WebhookEndpointId, "whe");
id_type!(
    /// One webhook message to one endpoint: the `webhook-id` its attempts share.
    DeliveryId, "msg");
id_type!(
    /// A privacy request (an access export or an account deletion).
    PrivacyRequestId, "prq");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_creation_order() {
        let ids: Vec<GenerationId> = (0..1000).map(|_| GenerationId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn parse_accepts_only_its_own_kind() {
        let id = GenerationId::generate();
        assert_eq!(GenerationId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(UploadId::parse(id.as_str()), None);
        assert_eq!(GenerationId::parse("gen_../../etc/passwd"), None);
        assert_eq!(GenerationId::parse(""), None);
    }
}
