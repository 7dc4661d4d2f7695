//! Calls to Stripe's API: opening a Checkout Session, and listing completed ones for
//! the reconciliation.

use super::CheckoutSession;

/// The Stripe API version every call pins, so an account upgrade never changes what
/// we send or read.
pub const STRIPE_VERSION: &str = "2024-06-20";

/// Stripe's largest page of a list.
const LIST_PAGE_SIZE: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Stripe could not be reached or answered with a server error: try later.
    #[error("Stripe is unavailable")]
    Unavailable(#[source] Option<reqwest::Error>),
    /// Stripe refused the request (a 4xx): our configuration is wrong.
    #[error("Stripe refused the request with {status}: {message}")]
    Refused { status: u16, message: String },
}

/// A Checkout Session as created.
#[derive(Debug, serde::Deserialize)]
pub struct CreatedSession {
    pub id: String,
    pub url: String,
}

/// One page of a list of Checkout Sessions, newest first.
#[derive(Debug, serde::Deserialize)]
pub struct SessionPage {
    pub data: Vec<CheckoutSession>,
    pub has_more: bool,
}

/// What a Checkout Session sells and to whom.
pub struct CheckoutRequest<'a> {
    pub user_id: &'a str,
    pub pack: &'a crate::config::CreditPack,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
    /// Sent as Stripe's `Idempotency-Key`: a retried call never makes a second session.
    pub idempotency_key: &'a str,
}

/// Calls to Stripe's API with our secret key. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StripeClient {
    http: reqwest::Client,
    config: crate::config::StripeConfig,
}

impl StripeClient {
    pub fn new(config: crate::config::StripeConfig) -> StripeClient {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .expect("a client with rustls builds");
        StripeClient { http, config }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.config.api_base))
            .bearer_auth(self.config.secret_key.expose())
            .header("Stripe-Version", STRIPE_VERSION)
    }

    /// Creates a Checkout Session in payment mode for one pack.
    pub async fn create_checkout_session(&self, request: &CheckoutRequest<'_>) -> Result<CreatedSession, StripeError> {
        let pack = request.pack;
        let form = [
            ("mode", "payment".to_owned()),
            ("success_url", request.success_url.to_owned()),
            ("cancel_url", request.cancel_url.to_owned()),
            ("client_reference_id", request.user_id.to_owned()),
            ("metadata[pack_id]", pack.id.clone()),
            ("metadata[user_id]", request.user_id.to_owned()),
            ("line_items[0][quantity]", "1".to_owned()),
            ("line_items[0][price_data][currency]", pack.currency.clone()),
            ("line_items[0][price_data][unit_amount]", pack.price.to_string()),
            ("line_items[0][price_data][product_data][name]", format!("{} PetPortrait credits", pack.credits)),
        ];
        let call = self
            .request(reqwest::Method::POST, "/v1/checkout/sessions")
            .header("Idempotency-Key", request.idempotency_key)
            .form(&form);
        send(call).await
    }

    /// One page of the completed Checkout Sessions created at or after `created_since`
    /// (Unix seconds), newest first, after the session `starting_after`.
    pub async fn list_completed_sessions(
        &self,
        created_since: i64,
        starting_after: Option<&str>,
    ) -> Result<SessionPage, StripeError> {
        let mut query = vec![
            ("status", "complete".to_owned()),
            ("created[gte]", created_since.to_string()),
            ("limit", LIST_PAGE_SIZE.to_string()),
        ];
        if let Some(after) = starting_after {
            query.push(("starting_after", after.to_owned()));
        }
        send(self.request(reqwest::Method::GET, "/v1/checkout/sessions").query(&query)).await
    }
}

/// Sends a call and reads its JSON answer; 429 and 5xx mean "try later".
async fn send<T: serde::de::DeserializeOwned>(call: reqwest::RequestBuilder) -> Result<T, StripeError> {
    let response = call.send().await.map_err(|e| StripeError::Unavailable(Some(e)))?;
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(StripeError::Unavailable(None));
    }
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or("no message").chars().take(200).collect();
        return Err(StripeError::Refused { status: status.as_u16(), message });
    }
    response.json::<T>().await.map_err(|e| StripeError::Unavailable(Some(e)))
}
