//! The OpenID Connect client of Google sign-in, on `openidconnect`: discovery (lazily,
//! cached), the authorization URL with PKCE (S256), `state` and `nonce`, and the code
//! exchange whose ID token is verified: signature against the provider's JWKS (an
//! unknown key id refetches the JWKS, at most once per `JWKS_REFETCH_EVERY`), issuer
//! (both of Google's spellings), audience, expiry with a minute of leeway, nonce.
//! The provider's access and refresh tokens are dropped here, never stored.
//!
//! Its HTTP client follows no redirects (a redirect is how a discovery document or a
//! token endpoint would be bent towards an internal address) and gives up after 10 s.

use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError, TokenResponse,
};
use petportrait_core::config::GoogleSignIn;
use petportrait_core::errors::error_chain;
use tokio::sync::{Mutex, RwLock};

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an unknown key id may make us fetch the provider's keys again: a rotation
/// is picked up at once, a flood of forged tokens costs the provider one fetch a minute.
const JWKS_REFETCH_EVERY: Duration = Duration::from_secs(60);
/// Clock skew tolerated on the ID token's expiry.
const EXPIRY_LEEWAY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Why a sign-in did not complete.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered with a server error: try later.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the code, or its answer failed a check: not signed in.
    #[error("the sign-in was refused: {0}")]
    Rejected(String),
    #[error("the identity provider has not verified this e-mail address")]
    EmailNotVerified,
}

/// Who the provider says signed in, after every check.
pub struct VerifiedIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: String,
    pub name: String,
    pub picture: Option<String>,
}

/// What the start of a sign-in hands to the browser (the URL) and keeps (the rest).
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

pub struct Oidc {
    client_id: ClientId,
    client_secret: ClientSecret,
    issuer: IssuerUrl,
    /// Issuer values accepted in an ID token: the configured one, and for Google also
    /// `accounts.google.com` without the scheme (Google issues both).
    accepted_issuers: Vec<String>,
    redirect: RedirectUrl,
    http: reqwest::Client,
    metadata: RwLock<Option<CoreProviderMetadata>>,
    last_jwks_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc").field("issuer", &self.issuer.as_str()).finish_non_exhaustive()
    }
}

impl Oidc {
    pub fn new(config: &GoogleSignIn, public_url: &str) -> Result<Oidc, String> {
        let issuer = IssuerUrl::new(config.issuer_url.clone()).map_err(|e| format!("OIDC_ISSUER_URL: {e}"))?;
        let redirect =
            RedirectUrl::new(format!("{public_url}/auth/google/callback")).map_err(|e| format!("PUBLIC_URL: {e}"))?;
        let mut accepted_issuers = vec![config.issuer_url.clone()];
        if config.issuer_url == "https://accounts.google.com" {
            accepted_issuers.push("accounts.google.com".to_owned());
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| error_chain(&e))?;
        Ok(Oidc {
            client_id: ClientId::new(config.client_id.clone()),
            client_secret: ClientSecret::new(config.client_secret.expose().to_owned()),
            issuer,
            accepted_issuers,
            redirect,
            http,
            metadata: RwLock::new(None),
            last_jwks_fetch: Mutex::new(None),
        })
    }

    /// The provider's discovery document (with its keys), fetched on first use.
    async fn metadata(&self) -> Result<CoreProviderMetadata, OidcError> {
        if let Some(metadata) = self.metadata.read().await.as_ref() {
            return Ok(metadata.clone());
        }
        let mut slot = self.metadata.write().await;
        if let Some(metadata) = slot.as_ref() {
            return Ok(metadata.clone());
        }
        let discovered = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| OidcError::Unavailable(format!("discovery: {}", error_chain(&e))))?;
        *slot = Some(discovered.clone());
        Ok(discovered)
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
    ) -> openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(metadata, self.client_id.clone(), Some(self.client_secret.clone()))
            .set_redirect_uri(self.redirect.clone())
    }

    /// A new authorization request: the URL to send the browser to, and the `state`,
    /// `nonce` and PKCE verifier the callback needs.
    pub async fn authorize(&self) -> Result<Authorization, OidcError> {
        let client = self.client(self.metadata().await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the callback's code (with the PKCE verifier) and verifies the ID token.
    pub async fn finish(&self, code: &str, pkce_verifier: &str, nonce: &str) -> Result<VerifiedIdentity, OidcError> {
        let metadata = self.metadata().await?;
        let client = self.client(metadata.clone());
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Unavailable(format!("the provider names no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()));
        let token = request.request_async(&self.http).await.map_err(|e| match e {
            openidconnect::RequestTokenError::ServerResponse(refusal) => {
                OidcError::Rejected(format!("token endpoint: {}", refusal.error()))
            }
            other => OidcError::Unavailable(format!("token endpoint: {}", error_chain(&other))),
        })?;
        let id_token = token.id_token().ok_or_else(|| OidcError::Rejected("no ID token in the answer".into()))?;
        let nonce = Nonce::new(nonce.to_owned());

        let mut keys = metadata.jwks().clone();
        let claims = loop {
            match id_token.claims(&self.verifier(keys.clone()), &nonce) {
                Ok(claims) => break claims.clone(),
                Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                    // A key we do not know: the provider may have rotated its keys.
                    match self.refetch_keys(&metadata).await? {
                        Some(fresh) => keys = fresh,
                        None => return Err(OidcError::Rejected("signed with an unknown key".into())),
                    }
                }
                Err(e) => return Err(OidcError::Rejected(format!("ID token: {e}"))),
            }
        };
        if !self.accepted_issuers.iter().any(|i| i == claims.issuer().as_str()) {
            return Err(OidcError::Rejected(format!("ID token from issuer {}", claims.issuer().as_str())));
        }
        let email = claims.email().map(|e| e.as_str().trim().to_ascii_lowercase());
        let Some(email) = email.filter(|e| !e.is_empty()) else {
            return Err(OidcError::Rejected("the ID token carries no e-mail (scope email)".into()));
        };
        if claims.email_verified() != Some(true) {
            return Err(OidcError::EmailNotVerified);
        }
        let name = claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().trim().to_owned());
        let name = name.filter(|n| !n.is_empty()).unwrap_or_else(|| email.split('@').next().unwrap_or("").to_owned());
        Ok(VerifiedIdentity {
            // The configured spelling, so both of Google's name one account.
            issuer: self.issuer.as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email,
            name: name.chars().take(100).collect(),
            picture: claims.picture().and_then(|p| p.get(None)).map(|p| p.as_str().to_owned()),
        })
    }

    fn verifier(&self, keys: CoreJsonWebKeySet) -> CoreIdTokenVerifier<'static> {
        CoreIdTokenVerifier::new_confidential_client(
            self.client_id.clone(),
            self.client_secret.clone(),
            self.issuer.clone(),
            keys,
        )
        // The issuer is checked against both of Google's spellings after verification.
        .require_issuer_match(false)
        .set_time_fn(|| chrono::Utc::now() - EXPIRY_LEEWAY)
    }

    /// The provider's keys fetched again, unless they were fetched within
    /// `JWKS_REFETCH_EVERY`; the cached discovery document gets them too.
    async fn refetch_keys(&self, metadata: &CoreProviderMetadata) -> Result<Option<CoreJsonWebKeySet>, OidcError> {
        let mut last = self.last_jwks_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < JWKS_REFETCH_EVERY) {
            return Ok(None);
        }
        *last = Some(Instant::now());
        let keys = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| OidcError::Unavailable(format!("JWKS: {}", error_chain(&e))))?;
        if let Some(cached) = self.metadata.write().await.as_mut() {
            *cached = cached.clone().set_jwks(keys.clone());
        }
        Ok(Some(keys))
    }
}

#[cfg(test)]
mod tests {
    use petportrait_core::config::Secret;

    use super::*;

    fn google(issuer: &str) -> GoogleSignIn {
        GoogleSignIn { client_id: "id".into(), client_secret: Secret::new("secret"), issuer_url: issuer.into() }
    }

    #[test]
    fn google_tokens_may_name_either_issuer_spelling() {
        let oidc = Oidc::new(&google("https://accounts.google.com"), "https://pets.example.org").expect("client");
        assert_eq!(oidc.accepted_issuers, ["https://accounts.google.com", "accounts.google.com"]);
        assert_eq!(oidc.redirect.as_str(), "https://pets.example.org/auth/google/callback");
        // Any other provider: exactly its own issuer.
        let other = Oidc::new(&google("https://idp.example.org"), "https://pets.example.org").expect("client");
        assert_eq!(other.accepted_issuers, ["https://idp.example.org"]);
        assert!(!format!("{oidc:?}").contains("secret"));
    }
}
