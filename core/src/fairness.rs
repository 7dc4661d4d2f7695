//! Dispatching a parked generation (see `db/fairness.rs`): the worker calls this when
//! one of the user's runs ends or after parking one, the scheduler's sweep for every
//! user with a parked generation and a free slot.

use std::time::Duration;

use crate::db::{Db, DbError};
use crate::ids::GenerationId;
use crate::queue::{Dispatch, JobQueue, JobQueueError};
use crate::time::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum UnparkError {
    #[error("cannot read or record the parked generation")]
    Db(#[from] DbError),
    #[error("cannot dispatch the parked generation")]
    Queue(#[from] JobQueueError),
}

/// Dispatches `user`'s oldest parked generation if the user runs fewer than `cap`.
/// Returns whether it dispatched one. The row is unparked (with the new dispatch
/// recorded) before the push, so two callers never both push it; a push that fails
/// leaves a queued generation with a dispatch the queue does not hold, which the
/// stalled-generation sweep dispatches again.
pub async fn dispatch_next_parked(db: &Db, queue: &JobQueue, user: &str, cap: u32) -> Result<bool, UnparkError> {
    let Some(next) = db.next_parked(user, now_ms(), cap).await? else { return Ok(false) };
    let Some(generation) = GenerationId::parse(&next) else { return Ok(false) };
    let dispatch = Dispatch::LookAgain.plan(&generation);
    if !db.unpark(&next, now_ms(), &dispatch.task().to_string()).await? {
        return Ok(false);
    }
    queue.dispatch(&dispatch, Duration::ZERO).await?;
    tracing::info!(generation.id = %next, "parked generation dispatched");
    Ok(true)
}
