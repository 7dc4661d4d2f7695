//! Never paying twice for one prediction. Replicate honours no idempotency key, so:
//!
//! - **A lost create answer** (a 500/502/504 or a connection lost after the request
//!   went out) is not retried blindly: the provider's list of predictions
//!   (`GET /v1/predictions`, newest first) is searched for one created since just
//!   before our request with exactly our input (the photo included, so only this
//!   user's identical request can match) that this process does not already follow.
//!   Found, it is followed; not found, the create is sent again; the list unreadable,
//!   the attempt fails as unavailable rather than risk a duplicate.
//! - **An attempt that ended without its result** (a crashed or stopped worker, a lost
//!   lease) left its prediction's id on the generation (`RenderContext::record_prediction`):
//!   the next attempt follows that prediction if it still runs or has succeeded, and
//!   creates another only when it ended otherwise or the provider no longer knows it.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;

use super::client::{Gate, Retries};
use super::protocol::{Phase, Prediction, PredictionPage};
use super::{API_BODY_LIMIT, ProviderError, RemoteStudio, is_prediction_id, read_prediction};
use crate::{RenderRequest, StudioError};

/// Pages of the list read when looking for a lost prediction.
const LOOKUP_PAGES: usize = 3;
/// How far before our request a prediction's `created_at` may be (clock skew).
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::seconds(30);
/// Predictions this process followed, remembered so a lookup never takes one of them.
const REMEMBERED: usize = 4096;

/// The predictions this process has followed, newest last.
#[derive(Debug, Default)]
pub(super) struct Followed(Mutex<VecDeque<String>>);

impl Followed {
    pub fn remember(&self, id: &str) {
        let mut ids = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ids.len() == REMEMBERED {
            ids.pop_front();
        }
        ids.push_back(id.to_owned());
    }

    fn contains(&self, id: &str) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|known| known == id)
    }
}

impl RemoteStudio {
    /// The prediction an earlier attempt of this generation recorded, when it is worth
    /// following: still running, or succeeded (or failed: the model's verdict on this
    /// input). `None` when there is none, it ended otherwise, or the provider has
    /// forgotten it.
    pub(super) async fn resume(
        &self,
        request: &RenderRequest,
        deadline: Instant,
    ) -> Result<Option<Prediction>, StudioError> {
        let Some(id) = request.pending_prediction.as_deref().filter(|id| is_prediction_id(id)) else {
            return Ok(None);
        };
        let url = self.provider.own_url(None, &format!("v1/predictions/{id}"));
        let reply = self
            .provider
            .call("resume", Gate::Breaker, Retries::All, deadline, API_BODY_LIMIT, || {
                self.provider.request(Method::GET, url.clone())
            })
            .await;
        let prediction = match reply {
            Ok(reply) => read_prediction("resume", &reply)?,
            Err(ProviderError::Status { status: 404 | 410, .. }) => return Ok(None),
            // Whether it still runs is unknown: another attempt later, rather than a
            // second prediction now.
            Err(error) => return Err(self.transient(error)),
        };
        if prediction.id != id || prediction.phase() == Phase::Ended {
            tracing::info!(prediction.id = %id, status = %prediction.status, "the earlier attempt's prediction ended; creating another");
            return Ok(None);
        }
        tracing::info!(prediction.id = %id, status = %prediction.status, "following the prediction an earlier attempt created");
        Ok(Some(prediction))
    }

    /// The prediction a create whose answer was lost made, if the provider lists one:
    /// created since `sent_at` (less the clock skew), with exactly `input`, not followed
    /// by this process already.
    pub(super) async fn find_lost(
        &self,
        input: &Value,
        sent_at: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<Option<Prediction>, ProviderError> {
        let since = sent_at - CLOCK_SKEW;
        let mut url = self.provider.predictions_url();
        for _ in 0..LOOKUP_PAGES {
            let reply = self
                .provider
                .call("lookup", Gate::Breaker, Retries::All, deadline, API_BODY_LIMIT, || {
                    self.provider.request(Method::GET, url.clone())
                })
                .await?;
            let page: PredictionPage = serde_json::from_slice(&reply.body).map_err(|e| ProviderError::BadAnswer {
                call: "lookup",
                detail: format!("not a list of predictions: {e}"),
            })?;
            let mut reached_older = false;
            for prediction in page.results {
                let created = prediction.created_at.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                let Some(created) = created else { continue };
                if created < since {
                    reached_older = true;
                    continue;
                }
                if prediction.input == *input
                    && is_prediction_id(&prediction.id)
                    && !self.followed.contains(&prediction.id)
                {
                    return Ok(Some(prediction));
                }
            }
            // Newest first: a page reaching back before our request ends the search.
            let next = page.next.and_then(|n| reqwest::Url::parse(&n).ok());
            match next.filter(|n| !reached_older && n.origin() == url.origin()) {
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(None)
    }
}
