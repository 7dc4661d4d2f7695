//! Operator commands on generations, accounts and the scheduler's work, as functions over the
//! services that return what they did as JSON (the command line prints it as text or,
//! with `--json`, as is; the system tests call them directly).

use std::time::Duration;

use anyhow::Context;
use petportrait_core::config::Config;
use petportrait_core::db::{CancelOutcome, GenerationRow};
use petportrait_core::ids::{GenerationId, UserId};
use petportrait_core::queue::Dispatch;
use petportrait_core::services::Services;
use petportrait_core::time::{now_ms, rfc3339};
use serde_json::{Value, json};

/// Everything an operator may need about one generation: its state, attempts, error,
/// credits, times, the request that created it and the remote prediction it followed.
/// Ids only: the owner is named by id, never by name or address.
pub async fn generation_show(services: &Services, id: &str) -> anyhow::Result<Value> {
    let row = find(services, id).await?;
    let outputs = services.db.list_outputs(&row.id).await.context("reading the outputs")?;
    Ok(json!({
        "id": row.id,
        "user_id": row.user_id,
        "kind": row.kind.as_str(),
        "style": row.style,
        "status": row.status.as_str(),
        "attempts": row.attempts,
        "progress": {"percent": row.progress_percent, "stage": row.progress_stage},
        "error": row.error().map(|e| json!({"code": e.code, "message": e.message, "retryable": e.retryable})),
        "credits": {"cost": row.cost, "charged": row.charged, "refunded": row.refunded},
        "created_at": rfc3339(row.created_at),
        "started_at": row.started_at.map(rfc3339),
        "completed_at": row.completed_at.map(rfc3339),
        "request_id": row.request_id,
        "model_prediction": row.model_prediction,
        "outputs": outputs.len(),
    }))
}

/// Cancels an unfinished generation as its owner would: credits released or refunded,
/// watchers and webhooks told.
pub async fn generation_cancel(services: &Services, id: &str) -> anyhow::Result<Value> {
    let row = find(services, id).await?;
    let user = UserId::from_db(row.user_id.clone());
    let outcome = services.db.cancel_generation(&row.id, &user, now_ms()).await.context("canceling")?;
    let result = match outcome {
        CancelOutcome::Canceled => {
            services.changes.publish(&row.id).await;
            services.webhooks.announce(&row.id).await;
            "canceled"
        }
        CancelOutcome::AlreadyEnded => "already_ended",
        CancelOutcome::NotFound => anyhow::bail!("no generation {id}"),
    };
    Ok(json!({"id": row.id, "result": result}))
}

/// Runs an unfinished generation again now: a retry waiting for its backoff starts at
/// once, a parked one (its user at `USER_MAX_RUNNING`) is dispatched (and parked again if
/// the user is still at the cap), one the queue lost is dispatched. A generation that a
/// worker holds is left to it, and an ended one stays ended (terminal states never change:
/// its owner makes a new one).
pub async fn generation_retry(services: &Services, id: &str) -> anyhow::Result<Value> {
    let row = find(services, id).await?;
    anyhow::ensure!(
        !row.status.is_terminal(),
        "generation {id} has ended ({}); ended generations never change",
        row.status.as_str()
    );
    let now = now_ms();
    let generation = GenerationId::parse(&row.id).context("the stored id")?;
    let dispatch = Dispatch::Sweep { at: now }.plan(&generation);
    let recorded = services
        .db
        .make_runnable_now(&row.id, now, &dispatch.task().to_string())
        .await
        .context("recording the retry")?;
    anyhow::ensure!(recorded, "generation {id} is held by a worker now (or changed meanwhile); look at it again");
    services.queue.dispatch(&dispatch, Duration::ZERO).await.context("dispatching")?;
    Ok(json!({"id": row.id, "result": "dispatched", "status": row.status.as_str(), "attempts": row.attempts}))
}

/// One account, by id (`usr_…`) or e-mail address (found by its blind index): its
/// credits and counts of what it holds. Name and address only with `personal`: an
/// operator's report is no place for them unless asked.
pub async fn user_show(services: &Services, who: &str, personal: bool) -> anyhow::Result<Value> {
    let user = if who.contains('@') {
        services.accounts.find_by_email(who).await.context("looking the address up")?
    } else {
        let id = UserId::parse(who)
            .with_context(|| format!("{who:?} is neither a user id (usr_…) nor an e-mail address"))?;
        services.db.get_user(&id).await.context("reading the account")?
    };
    let user = user.with_context(|| format!("no account {who}"))?;
    let summary = services.db.account_summary(&user.id).await.context("counting what the account holds")?;
    let mut report = json!({
        "id": user.id,
        "created_at": rfc3339(user.created_at),
        "credits": {"balance": user.credits_balance, "held": user.credits_held},
        "generations": summary.generations,
        "sessions": summary.sessions,
        "api_tokens": summary.api_tokens,
        "gallery_items": summary.gallery_items,
        "payments": summary.payments,
        "webhook_endpoints": summary.webhook_endpoints,
        "accepted_policy": summary.accepted_policy,
    });
    if personal {
        let profile = services.accounts.profile(&user).context("opening the sealed profile")?;
        report["name"] = json!(profile.name);
        report["email"] = json!(profile.email);
    }
    Ok(report)
}

/// Purges every expired object now, in the scheduler's batches, until none is due.
pub async fn purge_now(config: &Config, services: &Services) -> anyhow::Result<Value> {
    let batch = i64::from(config.scheduler.purge_batch);
    let mut purged = 0;
    loop {
        let done = petportrait_scheduler::purge_expired_objects(services, now_ms(), batch).await?;
        purged += done;
        if done < batch as u64 {
            break;
        }
    }
    Ok(json!({"objects_purged": purged}))
}

/// Dispatches again, now, every generation that has not moved for `STALLED_AFTER`
/// and that the queue no longer holds, and parked generations whose users have room
/// (the scheduler's sweep).
pub async fn sweep_now(config: &Config, services: &Services) -> anyhow::Result<Value> {
    let now = now_ms();
    let quiet_since = now - petportrait_core::time::duration_ms(config.scheduler.stalled_after);
    let redispatched = petportrait_scheduler::redispatch_stalled(services, now, quiet_since).await?;
    let unparked = petportrait_scheduler::dispatch_parked(services, now, config.worker.user_max_running).await?;
    Ok(json!({"generations_redispatched": redispatched, "parked_dispatched": unparked}))
}

async fn find(services: &Services, id: &str) -> anyhow::Result<GenerationRow> {
    let parsed = GenerationId::parse(id).with_context(|| format!("{id:?} is not a generation id (gen_…)"))?;
    services
        .db
        .get_generation(&parsed)
        .await
        .context("reading the generation")?
        .with_context(|| format!("no generation {id}"))
}
