//! The middleware the backend puts around the worker's service: it watches each
//! task's result and tells the settler what became of it. Retry or dead is decided
//! here, once, for every handler: an `AbortError` or the last attempt goes to the dead
//! set, a `RetryAfterError` waits as long as it asks, any other error waits for the
//! exponential backoff with jitter.

use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use apalis_core::error::{AbortError, BoxDynError, RetryAfterError};
use apalis_core::task::Task;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tower::{Layer, Service};

use crate::backoff::backoff_delay;
use crate::config::Backoff;
use crate::driver::{DeliveryInfo, SettleMessage};
use crate::store::{Outcome, Settlement};

#[derive(Clone, Debug)]
pub struct SettleLayer {
    settle: mpsc::UnboundedSender<SettleMessage>,
    backoff: Backoff,
}

impl SettleLayer {
    pub(crate) fn new(settle: mpsc::UnboundedSender<SettleMessage>, backoff: Backoff) -> SettleLayer {
        SettleLayer { settle, backoff }
    }
}

impl<S> Layer<S> for SettleLayer {
    type Service = SettleService<S>;

    fn layer(&self, inner: S) -> SettleService<S> {
        SettleService { inner, settle: self.settle.clone(), backoff: self.backoff }
    }
}

#[derive(Clone, Debug)]
pub struct SettleService<S> {
    inner: S,
    settle: mpsc::UnboundedSender<SettleMessage>,
    backoff: Backoff,
}

/// What becomes of a delivery whose handler failed.
pub fn failure_outcome(error: &BoxDynError, attempt: u32, max_attempts: u32, backoff: Backoff) -> Outcome {
    let text = crate::errors::error_chain(error.as_ref());
    if error.downcast_ref::<AbortError>().is_some() || attempt >= max_attempts {
        return Outcome::Dead(text);
    }
    let after = match error.downcast_ref::<RetryAfterError>() {
        Some(retry) => retry.get_duration(),
        None => backoff_delay(attempt, backoff.base, backoff.max, &mut rand::rng()),
    };
    Outcome::Retry { after, error: text }
}

/// The handler's result as JSON, recorded with the outcome in the same round trip; a
/// handler that returns nothing (`()`) records nothing.
fn result_text(response: &impl serde::Serialize) -> String {
    match serde_json::to_string(response) {
        Ok(json) if json != "null" => json,
        Ok(_) => String::new(),
        Err(error) => format!("(the result could not be encoded: {error})"),
    }
}

impl<S, Args> Service<Task<Args>> for SettleService<S>
where
    S: Service<Task<Args>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
    S::Response: serde::Serialize + Send + 'static,
    Args: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<S::Response, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxDynError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let info = task.ctx().data().get::<DeliveryInfo>().cloned();
        let settle = self.settle.clone();
        let backoff = self.backoff;
        let running = self.inner.call(task);
        async move {
            let result = match AssertUnwindSafe(running).catch_unwind().await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(AbortError::new("the handler panicked").into()),
            };
            if let Some(info) = info {
                let outcome = match &result {
                    Ok(response) => Outcome::Done(result_text(response)),
                    Err(error) => failure_outcome(error, info.attempt, info.max_attempts, backoff),
                };
                let settlement = Settlement { id: info.id, attempt: info.attempt, outcome };
                // The settler only stops when the worker does; a lost outcome means the
                // lease lapses and the job runs again, never that it is lost.
                let _ = settle.send(SettleMessage::Outcome(settlement));
            }
            result
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const BACKOFF: Backoff = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) };

    #[test]
    fn failures_retry_with_backoff_until_the_last_attempt() {
        let error: BoxDynError = "model unavailable".into();
        match failure_outcome(&error, 1, 3, BACKOFF) {
            Outcome::Retry { after, error } => {
                assert!(after >= Duration::from_millis(500) && after <= Duration::from_secs(1), "{after:?}");
                assert_eq!(error, "model unavailable");
            }
            other => panic!("expected a retry, got {other:?}"),
        }
        assert_eq!(failure_outcome(&error, 3, 3, BACKOFF), Outcome::Dead("model unavailable".into()));
    }

    #[test]
    fn aborts_are_dead_and_retry_after_is_honoured() {
        let abort: BoxDynError = AbortError::new("bad payload").into();
        assert!(matches!(failure_outcome(&abort, 1, 5, BACKOFF), Outcome::Dead(text) if text.contains("bad payload")));
        let later: BoxDynError = RetryAfterError::new("busy", Duration::from_millis(1_234)).into();
        assert!(
            matches!(failure_outcome(&later, 1, 5, BACKOFF), Outcome::Retry { after, .. } if after == Duration::from_millis(1_234))
        );
    }
}
