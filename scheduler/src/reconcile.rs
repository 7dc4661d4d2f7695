//! The reconciliation (daily by default, one scheduler at a time): every account's
//! balance and held credits are recomputed from its ledger and any difference is
//! reported, and the Checkout Sessions Stripe reports as paid are compared with our
//! payments, so a purchase whose event never arrived is applied then. Applying is
//! idempotent: a session is fulfilled once, by its event or by this, whichever is first.

use petportrait_core::config::Config;
use petportrait_core::db::{Db, EventOutcome, ReconciliationRow};
use petportrait_core::errors::error_chain;
use petportrait_core::stripe::{NotOurs, StripeClient, StripeError, purchase_for};
use petportrait_core::time::{Millis, duration_ms};

use crate::SchedulerError;

/// The periodic task's name in the database.
const TASK: &str = "reconciliation";
/// A run that failed is tried again this soon (or at its usual time, if sooner).
const RETRY_AFTER_FAILURE_MS: Millis = 3_600_000;
/// Accounts read per query.
const USERS_PER_PAGE: i64 = 500;
/// Pages of 100 sessions read per run, at most.
const MAX_SESSION_PAGES: usize = 100;
/// Stripe retries an event for up to three days: sessions that much older than the
/// previous run are looked at again.
const SESSION_LOOKBACK_MARGIN_MS: Millis = 3 * 24 * 3_600_000;
/// Prefix of the event id a fulfilment by reconciliation is recorded under.
const EVENT_PREFIX: &str = "reconciliation:";

/// Runs the reconciliation if it is due at `now` (and no other scheduler ran it).
pub async fn reconcile_if_due(
    config: &Config,
    db: &Db,
    now: Millis,
) -> Result<Option<ReconciliationRow>, SchedulerError> {
    let every = duration_ms(config.scheduler.reconcile_every);
    if !db.claim_due_task(TASK, now, now + every).await? {
        return Ok(None);
    }
    let stripe = config.payments.stripe.clone().map(StripeClient::new);
    let outcome = reconcile(config, db, stripe.as_ref(), now).await;
    let failed = match &outcome {
        Ok(report) => report.stripe_error.is_some(),
        Err(_) => true,
    };
    if failed {
        db.reschedule_task(TASK, now + RETRY_AFTER_FAILURE_MS.min(every)).await?;
    }
    outcome.map(Some)
}

/// One reconciliation at `now`, recorded and logged; `stripe` is `None` when purchases
/// are off.
pub async fn reconcile(
    config: &Config,
    db: &Db,
    stripe: Option<&StripeClient>,
    now: Millis,
) -> Result<ReconciliationRow, SchedulerError> {
    let mut report = ReconciliationRow { ran_at: now, ..ReconciliationRow::default() };
    check_balances(db, &mut report).await?;
    if let Some(stripe) = stripe {
        let since_secs = (now - duration_ms(config.scheduler.reconcile_every) - SESSION_LOOKBACK_MARGIN_MS) / 1000;
        match apply_paid_sessions(config, db, stripe, since_secs, now, &mut report).await {
            Ok(()) => {}
            Err(SessionsError::Stripe(error)) => report.stripe_error = Some(error_chain(&error)),
            Err(SessionsError::Db(error)) => return Err(error.into()),
        }
    }
    db.insert_reconciliation(&report).await?;
    let clean = report.balance_differences == 0 && report.sessions_applied == 0 && report.stripe_error.is_none();
    if clean {
        tracing::info!(
            users = report.users_checked,
            sessions = report.sessions_checked,
            "reconciliation found nothing to report"
        );
    } else {
        tracing::error!(
            users = report.users_checked,
            balance_differences = report.balance_differences,
            sessions = report.sessions_checked,
            sessions_applied = report.sessions_applied,
            stripe_error = report.stripe_error.as_deref().unwrap_or(""),
            "reconciliation needs attention"
        );
    }
    Ok(report)
}

/// Compares each cached balance with its ledger, a page of accounts at a time. A
/// difference is reported, never corrected: it means a bug to find, and the ledger is
/// what an operator corrects (`petportrait credits grant|revoke`).
async fn check_balances(db: &Db, report: &mut ReconciliationRow) -> Result<(), SchedulerError> {
    let mut after = String::new();
    loop {
        let page = db.ledger_checks(&after, USERS_PER_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.user_id.clone();
        report.users_checked += page.len() as i64;
        for check in page.iter().filter(|c| !c.agrees()) {
            report.balance_differences += 1;
            tracing::error!(
                user.id = %check.user_id,
                balance = check.balance,
                ledger_balance = check.ledger_balance,
                held = check.held,
                ledger_held = check.ledger_held,
                "an account's credits differ from its ledger"
            );
        }
        if (page.len() as i64) < USERS_PER_PAGE {
            break;
        }
    }
    Ok(())
}

enum SessionsError {
    Stripe(StripeError),
    Db(petportrait_core::db::DbError),
}

impl From<petportrait_core::db::DbError> for SessionsError {
    fn from(error: petportrait_core::db::DbError) -> Self {
        SessionsError::Db(error)
    }
}

/// Applies every paid session created since `since_secs` that has no payment record.
async fn apply_paid_sessions(
    config: &Config,
    db: &Db,
    stripe: &StripeClient,
    since_secs: i64,
    now: Millis,
    report: &mut ReconciliationRow,
) -> Result<(), SessionsError> {
    let mut starting_after: Option<String> = None;
    for _ in 0..MAX_SESSION_PAGES {
        let page = stripe
            .list_completed_sessions(since_secs, starting_after.as_deref())
            .await
            .map_err(SessionsError::Stripe)?;
        starting_after = page.data.last().map(|s| s.id.clone());
        let paid: Vec<_> = page.data.iter().filter(|s| s.is_paid()).collect();
        report.sessions_checked += paid.len() as i64;
        let ids: Vec<String> = paid.iter().map(|s| s.id.clone()).collect();
        let fulfilled = db.fulfilled_checkout_sessions(&ids).await?;
        for session in paid.into_iter().filter(|s| !fulfilled.contains(&s.id)) {
            let purchase = match purchase_for(&config.payments.packs, session) {
                Ok(purchase) => purchase,
                // Another product sold on the same Stripe account.
                Err(NotOurs::Unknown) => continue,
                Err(not_ours @ NotOurs::WrongAmount { .. }) => {
                    tracing::error!(stripe.session = %session.id, reason = %not_ours, "a paid session buys nothing here");
                    continue;
                }
            };
            let event_id = format!("{EVENT_PREFIX}{}", session.id);
            let outcome = db.apply_purchase(&event_id, "reconciliation", &purchase, now).await?;
            if outcome == EventOutcome::Applied {
                report.sessions_applied += 1;
            }
            tracing::warn!(
                stripe.session = %session.id,
                user.id = %purchase.user_id,
                outcome = ?outcome,
                "a paid session no event had applied was reconciled"
            );
        }
        if !page.has_more || starting_after.is_none() {
            return Ok(());
        }
    }
    tracing::warn!(pages = MAX_SESSION_PAGES, "reconciliation stopped listing Stripe's sessions at its page limit");
    Ok(())
}
