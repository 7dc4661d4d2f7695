//! Stripe events applied once, and the purchases they fulfil.

use crate::domain::LedgerKind;
use crate::ids::{PaymentId, UserId};
use crate::time::Millis;

use super::credits::insert_ledger_entry;
use super::{Db, DbResult};

/// A paid Checkout Session as Stripe reported it, for a pack of ours.
pub struct Purchase<'a> {
    /// `client_reference_id`: the user who started the checkout.
    pub user_id: &'a str,
    pub pack_id: &'a str,
    pub credits: i64,
    pub amount: i64,
    pub currency: &'a str,
    pub checkout_session_id: &'a str,
    pub payment_intent_id: Option<&'a str>,
}

/// What applying an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// The event was applied now (for a purchase: the credits granted).
    Applied,
    /// The event was applied before; nothing changed.
    Duplicate,
    /// New event, but its session had been fulfilled by another event already.
    AlreadyFulfilled,
    /// New event for a user that no longer exists: recorded, nothing granted.
    NoSuchUser,
    /// New refund event for a payment we do not know: recorded, nothing taken.
    NoSuchPayment,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: String,
    pub pack_id: String,
    pub credits: i64,
    pub amount: i64,
    pub currency: String,
    pub checkout_session_id: String,
    pub status: String,
    pub created_at: Millis,
}

/// Records a Stripe event by its id; `false` when it was recorded before (a
/// redelivery), which is how every event is applied once.
async fn insert_event<'e, E>(executor: E, event_id: &str, event_type: &str, now: Millis) -> DbResult<bool>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(sqlx::query(
        "INSERT INTO stripe_events (event_id, event_type, received_at) VALUES ($1, $2, $3) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(event_type)
    .bind(now)
    .execute(executor)
    .await?
    .rows_affected()
        == 1)
}

/// What a refund needs to know of the payment it refunds.
#[derive(sqlx::FromRow)]
struct RefundState {
    id: String,
    user_id: Option<String>,
    credits: i64,
    amount: i64,
    refunded_amount: i64,
    credits_revoked: i64,
    credits_unrecovered: i64,
}

impl Db {
    /// Records a Stripe event that changes nothing of ours (an unpaid completion, a
    /// type we do not handle). `Duplicate` when it was recorded before.
    pub async fn record_stripe_event(&self, event_id: &str, event_type: &str, now: Millis) -> DbResult<EventOutcome> {
        let inserted = insert_event(&self.pool, event_id, event_type, now).await?;
        Ok(if inserted { EventOutcome::Applied } else { EventOutcome::Duplicate })
    }

    /// Applies the event `event_id` that says `purchase` was paid: in one transaction
    /// the event is recorded, the payment inserted (once per Checkout Session) and the
    /// credits granted through a `purchase` ledger entry. Concurrent deliveries of the
    /// same event, or two events for one session, grant once.
    pub async fn apply_purchase(
        &self,
        event_id: &str,
        event_type: &str,
        purchase: &Purchase<'_>,
        now: Millis,
    ) -> DbResult<EventOutcome> {
        let mut tx = self.pool.begin().await?;
        let new_event = insert_event(&mut *tx, event_id, event_type, now).await?;
        if !new_event {
            tx.rollback().await?;
            return Ok(EventOutcome::Duplicate);
        }
        // A closed account (its deletion requested) is credited nothing: the payment is
        // recorded without an owner, as for an unknown user, and reported for a refund.
        let credited =
            sqlx::query("UPDATE users SET credits_balance = credits_balance + $2 WHERE id = $1 AND deleted_at IS NULL")
                .bind(purchase.user_id)
                .bind(purchase.credits)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        let owner = credited.then_some(purchase.user_id);
        let inserted = sqlx::query(
            "INSERT INTO payments (id, user_id, pack_id, credits, amount, currency, checkout_session_id, \
             payment_intent_id, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'paid', $9) \
             ON CONFLICT (checkout_session_id) DO NOTHING",
        )
        .bind(PaymentId::generate().as_str())
        .bind(owner)
        .bind(purchase.pack_id)
        .bind(purchase.credits)
        .bind(purchase.amount)
        .bind(purchase.currency)
        .bind(purchase.checkout_session_id)
        .bind(purchase.payment_intent_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            // Fulfilled by another event already: keep only this event's record.
            tx.rollback().await?;
            self.record_stripe_event(event_id, event_type, now).await?;
            return Ok(EventOutcome::AlreadyFulfilled);
        }
        if !credited {
            tx.commit().await?;
            return Ok(EventOutcome::NoSuchUser);
        }
        insert_ledger_entry(&mut tx, purchase.user_id, LedgerKind::Purchase, purchase.credits, None, now).await?;
        tx.commit().await?;
        Ok(EventOutcome::Applied)
    }

    /// Applies `charge.refunded` for the payment of `payment_intent_id`: Stripe says
    /// `refunded_amount` (cumulative, minor units) of it was refunded. The credits that
    /// amount bought are taken back through a negative `purchase` entry, as far as the
    /// user's available balance allows; the rest is recorded as unrecovered. Once per
    /// event; a later, larger refund takes back only the difference.
    pub async fn apply_refund(
        &self,
        event_id: &str,
        event_type: &str,
        payment_intent_id: &str,
        refunded_amount: i64,
        now: Millis,
    ) -> DbResult<EventOutcome> {
        let mut tx = self.pool.begin().await?;
        let new_event = insert_event(&mut *tx, event_id, event_type, now).await?;
        if !new_event {
            tx.rollback().await?;
            return Ok(EventOutcome::Duplicate);
        }
        let payment: Option<RefundState> = sqlx::query_as(
            "SELECT id, user_id, credits, amount, refunded_amount, credits_revoked, credits_unrecovered \
             FROM payments WHERE payment_intent_id = $1",
        )
        .bind(payment_intent_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(RefundState {
            id,
            user_id: user,
            credits,
            amount,
            refunded_amount: already_refunded,
            credits_revoked: revoked,
            credits_unrecovered: unrecovered,
        }) = payment
        else {
            tx.commit().await?;
            return Ok(EventOutcome::NoSuchPayment);
        };
        let refunded = refunded_amount.clamp(already_refunded, amount);
        // Credits the refunded share bought, rounded up: a refund never leaves credits paid back.
        let owed = (credits * refunded + amount - 1) / amount.max(1);
        let to_take = (owed - revoked - unrecovered).max(0);
        let mut taken = 0;
        if let Some(user) = user.as_deref()
            && to_take > 0
        {
            let available: Option<i64> =
                sqlx::query_scalar("SELECT credits_balance - credits_held FROM users WHERE id = $1")
                    .bind(user)
                    .fetch_optional(&mut *tx)
                    .await?;
            taken = to_take.min(available.unwrap_or(0).max(0));
            if taken > 0 {
                sqlx::query("UPDATE users SET credits_balance = credits_balance - $2 WHERE id = $1")
                    .bind(user)
                    .bind(taken)
                    .execute(&mut *tx)
                    .await?;
                insert_ledger_entry(&mut tx, user, LedgerKind::Purchase, -taken, None, now).await?;
            }
        }
        let status = if refunded >= amount { "refunded" } else { "partially_refunded" };
        sqlx::query(
            "UPDATE payments SET refunded_amount = $2, credits_revoked = credits_revoked + $3, \
             credits_unrecovered = credits_unrecovered + $4, status = $5 WHERE id = $1",
        )
        .bind(&id)
        .bind(refunded)
        .bind(taken)
        .bind(to_take - taken)
        .bind(status)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(EventOutcome::Applied)
    }

    /// The user's payments, newest first, after the cursor.
    pub async fn list_payments(
        &self,
        user: &UserId,
        after: Option<(Millis, &str)>,
        limit: i64,
    ) -> DbResult<Vec<PaymentRow>> {
        let (after_at, after_id) = after.unwrap_or((Millis::MAX, ""));
        Ok(sqlx::query_as(
            "SELECT id, pack_id, credits, amount, currency, checkout_session_id, status, created_at FROM payments \
             WHERE user_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(user.as_str())
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The retention: deletes at most `limit` payment records created before `before`
    /// (the end of their legal period). Nothing references a payment row: refunds are
    /// kept on the row itself and ledger entries name no payment.
    pub async fn delete_payments_before(&self, before: Millis, limit: i64) -> DbResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM payments WHERE id IN \
             (SELECT id FROM payments WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
