//! How a step of a job failed: worth another attempt, or not.

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A failed step, classified at the place it happened.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A transient problem (database, object store, a stopping worker): try again later.
    #[error("retryable failure ({code})")]
    Retry {
        code: &'static str,
        #[source]
        source: Cause,
    },
    /// The input or the code is at fault: another attempt would fail the same way.
    #[error("permanent failure ({code})")]
    Abort {
        code: &'static str,
        #[source]
        source: Cause,
    },
    /// This worker no longer holds the generation (its lease lapsed and was taken over,
    /// or the generation ended): stop without touching it.
    #[error("the lease on the generation was lost")]
    LostLease,
}

impl JobError {
    /// `map_err(JobError::retry("storage"))`.
    pub fn retry<E: std::error::Error + Send + Sync + 'static>(code: &'static str) -> impl FnOnce(E) -> JobError {
        move |e| JobError::Retry { code, source: Box::new(e) }
    }

    /// `map_err(JobError::abort("invalid_input"))`.
    pub fn abort<E: std::error::Error + Send + Sync + 'static>(code: &'static str) -> impl FnOnce(E) -> JobError {
        move |e| JobError::Abort { code, source: Box::new(e) }
    }
}
