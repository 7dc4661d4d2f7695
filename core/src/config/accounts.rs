//! `GOOGLE_*`, `OIDC_ISSUER_URL`, `ENCRYPTION_KEY` and `ENCRYPTION_PREVIOUS_KEYS`: how
//! people sign in and how their personal fields are sealed.

use base64::Engine;

use super::models::Secret;
use super::{Reader, url_host_is_loopback};

/// The OpenID Connect client of Google sign-in (or another issuer's, for tests and
/// self-hosted providers). `Debug` hides the secret.
#[derive(Clone, Debug)]
pub struct GoogleSignIn {
    pub client_id: String,
    pub client_secret: Secret,
    /// `OIDC_ISSUER_URL`, without a trailing slash: discovery is at
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer_url: String,
}

pub(super) fn read_google(r: &mut Reader<'_>) -> Option<GoogleSignIn> {
    let issuer_url = r.string("OIDC_ISSUER_URL", "https://accounts.google.com").trim_end_matches('/').to_owned();
    let issuer_ok =
        issuer_url.starts_with("https://") || (issuer_url.starts_with("http://") && url_host_is_loopback(&issuer_url));
    if !issuer_ok {
        r.problem("OIDC_ISSUER_URL", "must be an https URL (plain http only on a loopback host)");
    }
    match (r.raw("GOOGLE_CLIENT_ID"), r.raw("GOOGLE_CLIENT_SECRET")) {
        (Some(id), Some(secret)) => {
            Some(GoogleSignIn { client_id: id.to_owned(), client_secret: Secret::new(secret), issuer_url })
        }
        (None, None) => None,
        _ => {
            r.problem("GOOGLE_CLIENT_SECRET", "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET must be set together");
            None
        }
    }
}

/// Where the key ring comes from. `Debug` prints no key.
#[derive(Clone, Debug)]
pub struct EncryptionKeys {
    /// `ENCRYPTION_KEY`; `None` in embedded mode, where the key is generated once into
    /// `DATA_DIR` (`sealing::KEY_FILE`).
    pub current: Option<Secret>,
    /// `ENCRYPTION_PREVIOUS_KEYS`: keys that still open values sealed before a rotation.
    pub previous: Vec<Secret>,
}

/// `ENCRYPTION_KEY` (required outside embedded mode) and `ENCRYPTION_PREVIOUS_KEYS`,
/// each a base64 32-byte key.
pub(super) fn read_encryption_keys(r: &mut Reader<'_>, embedded: bool) -> EncryptionKeys {
    let is_key =
        |text: &str| base64::engine::general_purpose::STANDARD.decode(text.trim()).is_ok_and(|bytes| bytes.len() == 32);
    let current = r.raw("ENCRYPTION_KEY").map(Secret::new);
    match &current {
        Some(key) if !is_key(key.expose()) => {
            r.problem("ENCRYPTION_KEY", "must be 32 random bytes in base64 (openssl rand -base64 32)")
        }
        None if !embedded => r.problem(
            "ENCRYPTION_KEY",
            "is required outside embedded mode (32 random bytes in base64: openssl rand -base64 32)",
        ),
        _ => {}
    }
    let previous: Vec<Secret> = r
        .raw("ENCRYPTION_PREVIOUS_KEYS")
        .map(|list| list.split(',').map(str::trim).filter(|k| !k.is_empty()).map(Secret::new).collect())
        .unwrap_or_default();
    if previous.iter().any(|k| !is_key(k.expose())) {
        r.problem("ENCRYPTION_PREVIOUS_KEYS", "must be a comma-separated list of base64 32-byte keys");
    }
    EncryptionKeys { current, previous }
}
