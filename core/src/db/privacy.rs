//! Privacy requests: received by the API (a deletion also ends the account's use in the
//! same transaction), carried out by the privacy job in checkpointed steps under a lease,
//! and kept, detached, as the record that they were carried out.

use crate::domain::{PrivacyKind, PrivacyStatus};
use crate::time::Millis;

use super::audit::insert_audit;
use super::credits::give_credits_back;
use super::{AuditRow, Db, DbResult, NewDelivery};

/// A request as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PrivacyRequestRow {
    pub id: String,
    pub user_id: String,
    #[sqlx(try_from = "String")]
    pub kind: PrivacyKind,
    #[sqlx(try_from = "String")]
    pub status: PrivacyStatus,
    /// The last step finished (the job resumes after it).
    pub step: String,
    pub attempts: i64,
    pub error_code: Option<String>,
    /// The export's archive (a `stored_objects` row).
    pub object_id: Option<String>,
    /// JSON: what a deletion removed and what it kept, naming no person.
    pub receipt: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub due_at: Millis,
    pub completed_at: Option<Millis>,
    pub expires_at: Option<Millis>,
}

const COLUMNS: &str = "id, user_id, kind, status, step, attempts, error_code, object_id, receipt, \
                       created_at, updated_at, due_at, completed_at, expires_at";

/// A request about to be recorded.
#[derive(Clone, Debug)]
pub struct NewPrivacyRequest<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub kind: PrivacyKind,
    pub due_at: Millis,
}

/// What recording a request found.
#[derive(Clone, Debug)]
pub enum RequestOutcome {
    /// Recorded now.
    Created(PrivacyRequestRow),
    /// The user already has an open request of this kind: that one.
    AlreadyOpen(PrivacyRequestRow),
}

impl RequestOutcome {
    pub fn row(&self) -> &PrivacyRequestRow {
        match self {
            RequestOutcome::Created(row) | RequestOutcome::AlreadyOpen(row) => row,
        }
    }
}

/// What the API's deletion transaction ended at once.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AccountClosed {
    pub sessions: u64,
    pub tokens: u64,
    /// Generations canceled (their held credits released or charges refunded).
    pub generations_canceled: Vec<String>,
    /// Open export requests that will not be carried out.
    pub exports_abandoned: u64,
}

/// What the job's claim found.
#[derive(Clone, Debug)]
pub enum PrivacyClaim {
    /// This job holds the request until the lease ends.
    Claimed(Box<PrivacyRequestRow>),
    /// Another job holds it, or it has ended: nothing to do.
    Busy,
    Ended,
    NotFound,
}

impl Db {
    /// Records a request of `new.kind` unless one is open (the unique index decides, so
    /// two concurrent requests make one), with its audit entry.
    pub async fn create_privacy_request(
        &self,
        new: &NewPrivacyRequest<'_>,
        audit: &AuditRow,
        now: Millis,
    ) -> DbResult<RequestOutcome> {
        // The open request that refused the insert may end before it is read (a small
        // export finishes in a moment): then a new one may be made, so try again. Three
        // rounds lost that way in a row would take three requests ending in between.
        for _ in 0..3 {
            let mut tx = self.pool.begin().await?;
            let inserted = insert_request(&mut tx, new, now).await?;
            if !inserted {
                tx.rollback().await?;
                match self.open_request(new.user_id, new.kind).await? {
                    Some(open) => return Ok(RequestOutcome::AlreadyOpen(open)),
                    None => continue,
                }
            }
            insert_audit(&mut tx, audit).await?;
            tx.commit().await?;
            let row = self.privacy_request(new.id).await?.ok_or(sqlx::Error::RowNotFound)?;
            return Ok(RequestOutcome::Created(row));
        }
        Err(sqlx::Error::RowNotFound.into())
    }

    async fn open_request(&self, user: &str, kind: PrivacyKind) -> DbResult<Option<PrivacyRequestRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM privacy_requests WHERE user_id = $1 AND kind = $2 \
             AND status IN ('received', 'in_progress')"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(user).bind(kind.as_str()).fetch_optional(&self.pool).await?)
    }

    /// The deletion request and the account's immediate end, in one transaction: the
    /// request (or the open one), sessions and tokens deleted, the blind indexes cleared
    /// (the next sign-in with the same Google account makes a new account), webhook
    /// endpoints disabled, unfinished generations canceled with their credits given back
    /// through the ledger, open exports failed, and the audit entry.
    pub async fn request_account_deletion(
        &self,
        new: &NewPrivacyRequest<'_>,
        audit: &AuditRow,
        now: Millis,
    ) -> DbResult<(RequestOutcome, AccountClosed)> {
        let mut tx = self.pool.begin().await?;
        // The user row is written first, so concurrent requests of this account queue
        // behind this transaction (SQLite transactions start with their write).
        sqlx::query(
            "UPDATE users SET deleted_at = COALESCE(deleted_at, $2), subject_index = NULL, email_index = NULL \
             WHERE id = $1",
        )
        .bind(new.user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let created = insert_request(&mut tx, new, now).await?;
        if created {
            insert_audit(&mut tx, audit).await?;
        }
        let sessions = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(new.user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let tokens = sqlx::query("DELETE FROM api_tokens WHERE user_id = $1")
            .bind(new.user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE webhook_endpoints SET enabled = 0, disabled_reason = 'account_deleted', disabled_at = $2 WHERE user_id = $1 AND enabled = 1")
            .bind(new.user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let unfinished: Vec<(String, i64, i64)> = sqlx::query_as(
            "UPDATE generations SET status = 'canceled', progress_stage = 'canceled', completed_at = $2, \
             updated_at = $2, lease_owner = NULL, lease_until = NULL, parked_at = NULL, version = version + 1 \
             WHERE user_id = $1 AND status IN ('queued', 'starting', 'processing') \
             RETURNING id, cost, charged",
        )
        .bind(new.user_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for (id, cost, charged) in &unfinished {
            give_credits_back(&mut tx, id, new.user_id, *cost, *charged, now).await?;
        }
        let generations_canceled: Vec<String> = unfinished.into_iter().map(|(id, _, _)| id).collect();
        let exports_abandoned = sqlx::query(
            "UPDATE privacy_requests SET status = 'failed', error_code = 'account_deleted', updated_at = $2, \
             completed_at = $2, lease_owner = NULL, lease_until = NULL \
             WHERE user_id = $1 AND kind = 'export' AND status IN ('received', 'in_progress')",
        )
        .bind(new.user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        let closed = AccountClosed { sessions, tokens, generations_canceled, exports_abandoned };
        let outcome = if created {
            RequestOutcome::Created(self.privacy_request(new.id).await?.ok_or(sqlx::Error::RowNotFound)?)
        } else {
            let open = self.open_request(new.user_id, PrivacyKind::Deletion).await?;
            RequestOutcome::AlreadyOpen(open.ok_or(sqlx::Error::RowNotFound)?)
        };
        Ok((outcome, closed))
    }

    pub async fn privacy_request(&self, id: &str) -> DbResult<Option<PrivacyRequestRow>> {
        let sql = format!("SELECT {COLUMNS} FROM privacy_requests WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?)
    }

    pub async fn privacy_request_of_user(&self, id: &str, user: &str) -> DbResult<Option<PrivacyRequestRow>> {
        let sql = format!("SELECT {COLUMNS} FROM privacy_requests WHERE id = $1 AND user_id = $2");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(user).fetch_optional(&self.pool).await?)
    }

    /// The user's requests, newest first, after the cursor `(created_at, id)`.
    pub async fn privacy_requests_of_user(
        &self,
        user: &str,
        before: Option<(Millis, &str)>,
        limit: i64,
    ) -> DbResult<Vec<PrivacyRequestRow>> {
        let (at, id) = before.unwrap_or((Millis::MAX, ""));
        let sql = format!(
            "SELECT {COLUMNS} FROM privacy_requests WHERE user_id = $1 \
             AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(user)
            .bind(at)
            .bind(if before.is_some() { id } else { "\u{10FFFF}" })
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Takes the request for one job until `lease_until`, if it is open and no other
    /// job's lease is live; counts an attempt.
    pub async fn claim_privacy_request(
        &self,
        id: &str,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> DbResult<PrivacyClaim> {
        let sql = format!(
            "UPDATE privacy_requests SET status = 'in_progress', lease_owner = $2, lease_until = $4, \
             attempts = attempts + 1, updated_at = $3 \
             WHERE id = $1 AND status IN ('received', 'in_progress') AND (lease_until IS NULL OR lease_until < $3) \
             RETURNING {COLUMNS}"
        );
        let claimed: Option<PrivacyRequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(owner)
            .bind(now)
            .bind(lease_until)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = claimed {
            return Ok(PrivacyClaim::Claimed(Box::new(row)));
        }
        Ok(match self.privacy_request(id).await? {
            None => PrivacyClaim::NotFound,
            Some(row) if matches!(row.status, PrivacyStatus::Completed | PrivacyStatus::Failed) => PrivacyClaim::Ended,
            Some(_) => PrivacyClaim::Busy,
        })
    }

    /// Records that step `step` is done (with the receipt so far), only for the lease
    /// holder, with its audit entry. `false` when the lease was lost.
    pub async fn checkpoint_privacy_request(
        &self,
        id: &str,
        owner: &str,
        step: &str,
        receipt: Option<&str>,
        audit: &AuditRow,
        now: Millis,
    ) -> DbResult<bool> {
        let update = sqlx::query(
            "UPDATE privacy_requests SET step = $3, receipt = COALESCE($4, receipt), updated_at = $5 \
             WHERE id = $1 AND lease_owner = $2 AND status = 'in_progress'",
        )
        .bind(id)
        .bind(owner)
        .bind(step)
        .bind(receipt)
        .bind(now);
        self.as_holder_with_audit(update, audit).await
    }

    /// Completes an export: its archive, its expiry, the audit entry and the
    /// `privacy_export.ready` deliveries, in one transaction, only for the lease holder.
    pub async fn complete_export(
        &self,
        done: &CompletedExport<'_>,
        audit: &AuditRow,
        deliveries: &[NewDelivery],
        now: Millis,
    ) -> DbResult<ExportCompletion> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE privacy_requests SET status = 'completed', step = 'completed', object_id = $3, \
             expires_at = $4, completed_at = $5, updated_at = $5, lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'in_progress'",
        )
        .bind(done.id)
        .bind(done.owner)
        .bind(done.object_id)
        .bind(done.expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            tx.rollback().await?;
            return Ok(ExportCompletion::LeaseLost);
        }
        // The archive lives until the request's link expires (it was written with a
        // provisional expiry, so an export that never completes is purged anyway).
        // Only if the archive is still there (an attempt slower than its provisional hour
        // may find it purged): then nothing is recorded and the job tries again.
        let kept = sqlx::query("UPDATE stored_objects SET expires_at = $2 WHERE id = $1 AND state = 'active'")
            .bind(done.object_id)
            .bind(done.expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if kept != 1 {
            tx.rollback().await?;
            return Ok(ExportCompletion::ArchiveGone);
        }
        insert_audit(&mut tx, audit).await?;
        super::webhooks::insert_deliveries(&mut tx, deliveries, now).await?;
        tx.commit().await?;
        Ok(ExportCompletion::Completed)
    }

    /// Ends a request as failed (out of attempts, or a permanent error), only for the
    /// lease holder.
    pub async fn fail_privacy_request(
        &self,
        id: &str,
        owner: &str,
        code: &str,
        audit: &AuditRow,
        now: Millis,
    ) -> DbResult<bool> {
        let update = sqlx::query(
            "UPDATE privacy_requests SET status = 'failed', error_code = $3, completed_at = $4, updated_at = $4, \
             lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'in_progress'",
        )
        .bind(id)
        .bind(owner)
        .bind(code)
        .bind(now);
        self.as_holder_with_audit(update, audit).await
    }

    /// Runs `update` (a statement conditional on the lease holder) and, if it changed the
    /// request, appends `audit` in the same transaction; `false` when the lease was lost.
    async fn as_holder_with_audit<'q>(
        &self,
        update: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        audit: &AuditRow,
    ) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        if update.execute(&mut *tx).await?.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Extends the holder's lease while its job runs; `false` once it is not the holder.
    pub async fn renew_privacy_lease(&self, id: &str, owner: &str, lease_until: Millis) -> DbResult<bool> {
        Ok(sqlx::query(
            "UPDATE privacy_requests SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'in_progress'",
        )
        .bind(id)
        .bind(owner)
        .bind(lease_until)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Lets another job take the request at once (a retryable failure): the lease ends,
    /// the step stays.
    pub async fn release_privacy_request(&self, id: &str, owner: &str, now: Millis) -> DbResult<()> {
        sqlx::query(
            "UPDATE privacy_requests SET lease_owner = NULL, lease_until = NULL, updated_at = $3 \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Open requests nobody works on: received or in progress, no live lease, quiet
    /// since `quiet_since` (the scheduler dispatches them again).
    pub async fn stalled_privacy_requests(
        &self,
        now: Millis,
        quiet_since: Millis,
        limit: i64,
    ) -> DbResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM privacy_requests WHERE status IN ('received', 'in_progress') \
             AND (lease_until IS NULL OR lease_until < $1) AND updated_at < $2 ORDER BY updated_at LIMIT $3",
        )
        .bind(now)
        .bind(quiet_since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks a stalled request as looked at, so the next tick waits its turn again.
    pub async fn touch_privacy_request(&self, id: &str, now: Millis) -> DbResult<()> {
        sqlx::query(
            "UPDATE privacy_requests SET updated_at = $2 WHERE id = $1 AND status IN ('received', 'in_progress')",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// What recording an export's completion found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportCompletion {
    Completed,
    /// Another job holds the request, or it ended (the account's deletion failed it).
    LeaseLost,
    /// The archive was purged before it could be recorded (an attempt slower than its
    /// provisional hour): the job tries again.
    ArchiveGone,
}

/// What a completed export records.
#[derive(Clone, Debug)]
pub struct CompletedExport<'a> {
    pub id: &'a str,
    pub owner: &'a str,
    pub object_id: &'a str,
    pub expires_at: Millis,
}

/// Inserts the request unless the user has an open one of its kind; `false` then.
async fn insert_request(tx: &mut sqlx::AnyConnection, new: &NewPrivacyRequest<'_>, now: Millis) -> DbResult<bool> {
    // A conflict on the partial unique index means an open request of this kind exists.
    Ok(sqlx::query(
        "INSERT INTO privacy_requests (id, user_id, kind, status, step, created_at, updated_at, due_at) \
         VALUES ($1, $2, $3, 'received', 'received', $4, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(new.id)
    .bind(new.user_id)
    .bind(new.kind.as_str())
    .bind(now)
    .bind(new.due_at)
    .execute(tx)
    .await?
    .rows_affected()
        == 1)
}
