//! The generation job: claim, charge, render, store, finish. Idempotent: any step may
//! run again after a crash and the result is the same generation, charged once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use petportrait_core::db::{ChargeOutcome, ClaimOutcome, GenerationRow, OutputRow};
use petportrait_core::domain::{ObjectState, StoredObjectKind};
use petportrait_core::ids::{GenerationId, ObjectId, UserId};
use petportrait_core::imaging::Orientation;
use petportrait_core::objects::{ObjectWriteError, Placement, Source};
use petportrait_core::output_options::OutputOptions;
use petportrait_core::queue::{Dispatch, GenerationJob, JobOutcome, backoff_delay};
use petportrait_core::time::{Millis, duration_ms, now_ms};
use petportrait_studio::{RenderContext, RenderRequest, RenderedFile, StudioError};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::WorkerState;
use crate::error::JobError;
use petportrait_core::errors::error_chain;
use petportrait_core::metrics as m;

/// Runs one delivery of a generation job. Every outcome the product knows about is
/// recorded in the database and acknowledged; only failures to record an outcome go
/// back to the queue for it to redeliver.
pub async fn handle(state: Arc<WorkerState>, job: GenerationJob) -> JobOutcome {
    let Some(id) = GenerationId::parse(&job.generation_id) else {
        tracing::error!(job.generation_id = %job.generation_id, "malformed generation id in job payload");
        return JobOutcome::Abort("malformed generation id".into());
    };
    let span = tracing::info_span!(
        "job_run",
        job.kind = "generation",
        generation.id = %id,
        job.attempt = tracing::field::Empty,
        request.id = tracing::field::Empty
    );
    async move {
        match process(&state, &id).await {
            Ok(()) => JobOutcome::Done,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "could not record the outcome; the queue will deliver again");
                JobOutcome::Retry(Box::new(error))
            }
        }
    }
    .instrument(span)
    .await
}

/// Claims the generation and drives it to its next resting state.
async fn process(state: &WorkerState, id: &GenerationId) -> Result<(), petportrait_core::db::DbError> {
    let db = &state.services.db;
    // The lease belongs to this delivery, not to the process: a second delivery of the
    // same generation to this process must not share it.
    let owner = format!("{}/{}", state.worker_id, ulid::Ulid::generate());
    let owner = owner.as_str();
    let mut waited_for_lapse = false;
    let row = loop {
        let now = now_ms();
        let lease_until = now + duration_ms(state.config.worker.job_lease);
        let cap = state.config.worker.user_max_running;
        let claimed = match db.claim_generation(id, owner, now, lease_until, cap).await {
            Err(error) if error.is_corrupt_row() => {
                // The row cannot be read, and never will be: fail it (giving the credits
                // back) rather than claim it again on every delivery.
                tracing::error!(error = %error_chain(&error), "the generation's row cannot be read; failing it");
                db.mark_failed(id, None, "corrupt_row", &public_message("corrupt_row"), false, now_ms()).await?;
                changed(state, id).await;
                return Ok(());
            }
            claimed => claimed?,
        };
        match claimed {
            ClaimOutcome::Claimed(row) => {
                changed(state, id).await;
                break row;
            }
            ClaimOutcome::Terminal | ClaimOutcome::Missing => {
                tracing::info!("generation already ended; nothing to do");
                return Ok(());
            }
            ClaimOutcome::Leased { until } if !waited_for_lapse && until - now_ms() < heartbeat_ms(state) => {
                // A lease that a live holder would already have renewed for longer: its
                // worker has most likely died, and this is the queue handing its job over.
                // The queue's lease and ours have the same length and are renewed at almost
                // the same moment, so that hand-over often arrives a few milliseconds before
                // our lease lapses. Looking again later would be a delayed job, which joins
                // the back of the queue: the generation would wait behind the whole backlog.
                // Waiting out the rest of the lease here keeps its place (at most a heartbeat).
                waited_for_lapse = true;
                let rest = u64::try_from(until - now_ms()).unwrap_or(0) + 1;
                tracing::info!(lease.until = until, "generation held by a lease about to lapse; waiting for it");
                tokio::time::sleep(Duration::from_millis(rest)).await;
            }
            ClaimOutcome::Leased { until } => {
                // Another delivery holds it. Look again once its lease could have lapsed, in
                // case that worker dies; if it finishes, the next delivery is a no-op.
                tracing::info!(lease.until = until, "generation held by another delivery; checking again later");
                look_again_at(state, id, until + 250).await;
                return Ok(());
            }
            ClaimOutcome::UserAtCap => {
                // Its user runs as many as they may: it waits out of the queue, and the
                // end of one of those runs dispatches it (`db/fairness.rs`).
                if let Some(user) = db.park_generation(id, now_ms()).await? {
                    tracing::info!("the user's running generations are at USER_MAX_RUNNING; parked");
                    // One of them may have ended meanwhile, finding nothing parked yet.
                    dispatch_next_parked(state, &user).await;
                }
                return Ok(());
            }
            ClaimOutcome::NotYet { due } => {
                // A delivery of a generation whose retry is not due yet (a replayed dead
                // job, or the scheduler's sweep racing a retry): the retry waits for its backoff.
                tracing::info!(retry.due = due, "retry not due yet; checking again then");
                look_again_at(state, id, due).await;
                return Ok(());
            }
        }
    };
    let user = row.user_id.clone();
    let result = finish_claimed(state, id, owner, *row).await;
    // Whatever became of this run, the user's slot is free again.
    dispatch_next_parked(state, &user).await;
    result
}

/// Runs a claimed generation and records where it ends (or its retry).
async fn finish_claimed(
    state: &WorkerState,
    id: &GenerationId,
    owner: &str,
    row: GenerationRow,
) -> Result<(), petportrait_core::db::DbError> {
    let db = &state.services.db;
    tracing::Span::current().record("job.attempt", row.attempts);
    if let Some(request) = &row.request_id {
        tracing::Span::current().record("request.id", request.as_str());
    }
    let max_attempts = i64::from(state.config.worker.max_attempts);
    if row.attempts > max_attempts {
        tracing::warn!(attempts = row.attempts, "attempts exhausted before this run");
        db.mark_failed(id, Some(owner), "attempts_exhausted", "the generation failed too many times", true, now_ms())
            .await?;
        changed(state, id).await;
        return Ok(());
    }

    // The render has its own deadline; this one also covers loading and storing.
    let budget = state.config.worker.job_timeout + Duration::from_secs(60);
    let started = std::time::Instant::now();
    metrics::counter!(m::GENERATIONS_STARTED, "kind" => row.kind.as_str()).increment(1);
    let outcome = tokio::time::timeout(budget, run_claimed(state, id, owner, &row)).await.unwrap_or_else(|_| {
        Err(JobError::Retry { code: "timeout", source: format!("the attempt did not finish within {budget:?}").into() })
    });
    let result = match &outcome {
        Ok(()) => "succeeded",
        Err(JobError::LostLease) => "lost",
        Err(JobError::Abort { .. }) => "failed",
        Err(JobError::Retry { .. }) if row.attempts < max_attempts => "retried",
        Err(JobError::Retry { .. }) => "failed",
    };
    let labels = [("kind", row.kind.as_str().to_owned()), ("style", row.style.clone()), ("outcome", result.to_owned())];
    metrics::counter!(m::GENERATIONS, &labels).increment(1);
    metrics::histogram!(m::GENERATION_DURATION, &labels).record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(()) => Ok(()),
        Err(JobError::LostLease) => {
            tracing::info!("lease lost or generation ended elsewhere; stopping");
            Ok(())
        }
        Err(JobError::Abort { code, source }) => {
            tracing::warn!(error.code = code, error = %error_chain(source.as_ref()), "generation failed permanently");
            db.mark_failed(id, Some(owner), code, &public_message(code), false, now_ms()).await?;
            changed(state, id).await;
            Ok(())
        }
        Err(JobError::Retry { code, source }) if row.attempts < max_attempts => {
            let attempt = u32::try_from(row.attempts).unwrap_or(u32::MAX);
            let delay = backoff_delay(
                attempt,
                state.config.worker.retry_base_delay,
                state.config.worker.retry_max_delay,
                &mut rand::rng(),
            );
            tracing::warn!(error.code = code, error = %error_chain(source.as_ref()), retry.in_ms = delay.as_millis() as u64, "attempt failed; retrying");
            let now = now_ms();
            let dispatch = Dispatch::Retry { attempt: row.attempts + 1 }.plan(id);
            let task = dispatch.task().to_string();
            if db.mark_waiting_for_retry(id, owner, now, now + duration_ms(delay), &task).await? {
                changed(state, id).await;
                if let Err(error) = state.services.queue.dispatch(&dispatch, delay).await {
                    // The stalled-generation sweep of the scheduler dispatches it again.
                    tracing::error!(error = %error_chain(&error), "could not schedule the retry");
                }
            }
            Ok(())
        }
        Err(JobError::Retry { code, source }) => {
            tracing::error!(error.code = code, error = %error_chain(source.as_ref()), "last attempt failed");
            db.mark_failed(id, Some(owner), "attempts_exhausted", &public_message(code), true, now_ms()).await?;
            changed(state, id).await;
            Ok(())
        }
    }
}

/// The lease-renewal period in milliseconds: a live holder's lease always has more than
/// this left, less than `JOB_LEASE` minus it only if it missed a renewal.
fn heartbeat_ms(state: &WorkerState) -> Millis {
    duration_ms(state.config.worker.heartbeat)
}

/// Announces a change of the generation that just committed: to event streams (which
/// read the row themselves) and to webhook subscribers (the events it owes).
async fn changed(state: &WorkerState, id: &GenerationId) {
    state.services.changes.publish(id.as_str()).await;
    state.services.webhooks.announce(id.as_str()).await;
}

/// Dispatches the user's oldest parked generation if the user has a free slot. A
/// failure is logged: the scheduler's sweep dispatches parked generations too.
async fn dispatch_next_parked(state: &WorkerState, user: &str) {
    // With no cap, a generation parked while there was one still goes back.
    let cap = state.config.worker.user_max_running.unwrap_or(u32::MAX);
    let services = &state.services;
    if let Err(error) = petportrait_core::fairness::dispatch_next_parked(&services.db, &services.queue, user, cap).await
    {
        tracing::warn!(error = %error_chain(&error), "could not dispatch a parked generation; the sweep will");
    }
}

/// Dispatches the generation again at `at` (ms). Each look is a job of its own: a
/// shared name would let the queue drop a later look as a duplicate of an earlier one.
async fn look_again_at(state: &WorkerState, id: &GenerationId, at: Millis) {
    let delay = Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0));
    if let Err(error) = state.services.queue.dispatch(&Dispatch::LookAgain.plan(id), delay).await {
        tracing::warn!(error = %error_chain(&error), "could not schedule the next look; the scheduler's sweep will");
    }
}

/// The work itself, once the lease is held.
async fn run_claimed(state: &WorkerState, id: &GenerationId, owner: &str, row: &GenerationRow) -> Result<(), JobError> {
    let db = &state.services.db;
    let user = UserId::from_db(row.user_id.clone());
    let kind = row.kind;

    match db
        .charge_generation(id, owner, &row.user_id, row.cost, now_ms())
        .await
        .map_err(JobError::retry("database"))?
    {
        ChargeOutcome::Charged => {
            tracing::info!(credits = row.cost, "charged");
            changed(state, id).await;
        }
        ChargeOutcome::AlreadyCharged => tracing::info!("charged by an earlier attempt"),
        ChargeOutcome::NotHeld => return Err(JobError::LostLease),
    }

    let options = OutputOptions::parse_stored(&row.options).map_err(JobError::abort("corrupt_row"))?;
    let (input, orientation) = load_upload(state, &row.upload_id).await?;
    // One key per attempt: a retried call to a remote model within this attempt is the
    // same prediction, the next attempt a new one.
    let idempotency_key = format!("{id}-a{}", row.attempts);
    let request = RenderRequest {
        kind,
        style: row.style.clone(),
        input,
        orientation,
        options,
        idempotency_key,
        pending_prediction: row.model_prediction.clone(),
    };
    let files = render_with_progress(state, id, owner, request).await?;

    let run = OutputRun { user: &user, generation: id, attempt: row.attempts, now: now_ms() };
    let mut outputs = Vec::with_capacity(files.len());
    for (position, file) in files.into_iter().enumerate() {
        outputs.push(store_output(state, &run, position, file).await?);
    }
    // The outputs become visible only together with `succeeded`, in one transaction
    // that only the lease holder can make: a generation canceled while its files were
    // written never lists them.
    let now = now_ms();
    let lasting = state.services.objects.lasting_expiry(StoredObjectKind::Output, now).unwrap_or(now);
    for output in &mut outputs {
        output.expires_at = lasting;
    }
    if db.mark_succeeded(id, owner, &outputs, now).await.map_err(JobError::retry("database"))? {
        tracing::info!("generation succeeded");
        changed(state, id).await;
        return Ok(());
    }
    // This attempt lost the generation: its files are never served and the purge
    // deletes them at its next tick.
    let written: Vec<ObjectId> = outputs.iter().map(|o| ObjectId::from_db(o.object_id.clone())).collect();
    if let Err(error) = db.expire_objects(&written, now_ms()).await {
        tracing::warn!(error = %error_chain(&error), "could not expire a lost attempt's files; they expire within the hour");
    }
    Err(JobError::LostLease)
}

/// The bytes of the photo, if the upload still exists.
/// The upload's stored bytes and the orientation recorded with them.
async fn load_upload(state: &WorkerState, upload_id: &str) -> Result<(Bytes, Option<Orientation>), JobError> {
    let db = &state.services.db;
    let gone =
        || JobError::Abort { code: "upload_expired", source: "the upload expired before the work started".into() };
    let upload = db.get_upload(upload_id).await.map_err(JobError::retry("database"))?.ok_or_else(gone)?;
    let object = db
        .get_object(&ObjectId::from_db(upload.object_id.clone()))
        .await
        .map_err(JobError::retry("database"))?
        .ok_or_else(gone)?;
    if !object.is_available(now_ms()) {
        return Err(gone());
    }
    let orientation = match upload.orientation {
        None => None,
        Some(n) => Some(
            u8::try_from(n)
                .ok()
                .and_then(Orientation::from_exif)
                .ok_or_else(|| JobError::Abort { code: "corrupt_row", source: format!("orientation {n}").into() })?,
        ),
    };
    let bytes =
        state.services.store.get(&object.object_key).await.map_err(JobError::retry("storage"))?.ok_or_else(gone)?;
    Ok((bytes, orientation))
}

/// Runs the studio on a blocking thread while this task records its progress and
/// keeps the lease alive. Losing the lease cancels the render at its next checkpoint.
async fn render_with_progress(
    state: &WorkerState,
    id: &GenerationId,
    owner: &str,
    request: RenderRequest,
) -> Result<Vec<RenderedFile>, JobError> {
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<(u8, &'static str)>();
    let (prediction_tx, mut prediction_rx) = mpsc::unbounded_channel::<String>();
    let cancel = Arc::new(AtomicBool::new(false));
    let ctx = RenderContext::new(
        move |percent, stage| {
            let _ = progress_tx.send((percent, stage));
        },
        cancel.clone(),
    )
    .with_memory(state.services.memory.clone())
    .with_prediction_recorder(move |prediction| {
        let _ = prediction_tx.send(prediction.to_owned());
    });
    let studio = state.studio.clone();
    // The job's span (generation id, attempt) follows the render onto its thread.
    let span = tracing::Span::current();
    let mut render = tokio::task::spawn_blocking(move || span.in_scope(|| studio.render(&request, &ctx)));

    let db = &state.services.db;
    let lease = state.config.worker.job_lease;
    let mut heartbeat = tokio::time::interval(state.config.worker.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A render that hangs must not hold the generation (and the user's credits) for ever.
    let deadline = tokio::time::sleep(state.config.worker.job_timeout);
    tokio::pin!(deadline);
    let result = loop {
        tokio::select! {
            joined = &mut render => break joined,
            () = &mut deadline => {
                // The studio stops at its next checkpoint; its thread's result is dropped.
                cancel.store(true, Ordering::Relaxed);
                return Err(JobError::Retry {
                    code: "timeout",
                    source: format!("the render did not finish within {:?}", state.config.worker.job_timeout).into(),
                });
            }
            Some((percent, stage)) = progress_rx.recv() => {
                let now = now_ms();
                match db.record_progress(id, owner, i64::from(percent), stage, now, now + duration_ms(lease)).await {
                    Ok(true) => changed(state, id).await,
                    Ok(false) => cancel.store(true, Ordering::Relaxed),
                    Err(error) => tracing::warn!(error = %error_chain(&error), "could not record progress"),
                }
            }
            Some(prediction) = prediction_rx.recv() => {
                match db.record_model_prediction(id, owner, &prediction).await {
                    Ok(true) => {}
                    Ok(false) => cancel.store(true, Ordering::Relaxed),
                    Err(error) => tracing::warn!(error = %error_chain(&error), "could not record the model's prediction"),
                }
            }
            _ = heartbeat.tick() => {
                let now = now_ms();
                match db.renew_lease(id, owner, now, now + duration_ms(lease)).await {
                    Ok(true) => {}
                    Ok(false) => cancel.store(true, Ordering::Relaxed),
                    Err(error) => tracing::warn!(error = %error_chain(&error), "could not renew the lease"),
                }
            }
        }
    };
    match result {
        Ok(Ok(files)) => Ok(files),
        Ok(Err(StudioError::Canceled)) => Err(JobError::LostLease),
        Ok(Err(error)) => {
            let code = error.code();
            if let StudioError::RequestRejected(_) = error {
                // Our request is at fault (a bug, a wrong PROVIDER_MODEL): loud, and not retried.
                tracing::error!(error = %error_chain(&error), "the model provider rejected our request");
            }
            if error.is_retryable() {
                Err(JobError::Retry { code, source: Box::new(error) })
            } else {
                Err(JobError::Abort { code, source: Box::new(error) })
            }
        }
        // A panic in an image algorithm is a bug that will recur on the same input.
        Err(join) if join.is_panic() => Err(JobError::Abort { code: "internal_error", source: Box::new(join) }),
        Err(join) => Err(JobError::Retry { code: "worker_stopping", source: Box::new(join) }),
    }
}

/// Writes one file of this attempt through the object writer, with a provisional
/// expiry, and returns its output row for `mark_succeeded` to record. Keys include the
/// attempt, so two runs never write one key at once (the S3 servers we support do not
/// make concurrent overwrites of one key atomic).
async fn store_output(
    state: &WorkerState,
    run: &OutputRun<'_>,
    position: usize,
    file: RenderedFile,
) -> Result<OutputRow, JobError> {
    let OutputRun { user, generation: id, attempt, now } = *run;
    let placement = Placement::Output { generation: id, attempt, position, filename: &file.filename };
    let content_type = file.content_type;
    let written = state
        .services
        .objects
        .write(user, placement, content_type, Source::Bytes(file.bytes.into()), now, |object| async { Ok(object) })
        .await
        .map_err(|error| match error {
            ObjectWriteError::Db(error) | ObjectWriteError::Record(error) => {
                JobError::Retry { code: "database", source: Box::new(error) }
            }
            // `Source` is a streamed write's; this one writes bytes it holds.
            ObjectWriteError::Storage(error)
            | ObjectWriteError::SourceGone(error)
            | ObjectWriteError::Source(error) => JobError::Retry { code: "storage", source: Box::new(error) },
        })?;
    Ok(OutputRow {
        id: format!("out_{}_{position}", id.as_str().trim_start_matches("gen_")),
        generation_id: id.to_string(),
        position: position as i64,
        object_id: written.id.to_string(),
        filename: file.filename,
        content_type: content_type.to_owned(),
        bytes: written.bytes,
        created_at: written.created_at,
        expires_at: written.expires_at,
        object_state: ObjectState::Active,
    })
}

/// Whose outputs these are, and which attempt writes them.
#[derive(Clone, Copy)]
struct OutputRun<'a> {
    user: &'a UserId,
    generation: &'a GenerationId,
    attempt: i64,
    now: Millis,
}

/// The message shown to the user for a failure code; causes stay in the logs.
fn public_message(code: &str) -> String {
    match code {
        "invalid_input" => "the photo could not be used for this generation",
        "content_policy" => "the model refused this photo under its content policy",
        "model_failed" => "the model could not make this generation from this photo",
        "upload_expired" => "the uploaded photo expired before the generation could start",
        "database" | "storage" | "model_unavailable" | "timeout" => {
            "a temporary problem persisted through every attempt"
        }
        _ => "the generation failed because of an internal error",
    }
    .to_owned()
}
