//! A person's rows, read and deleted table by table as the personal-data inventory
//! (`privacy/inventory.rs`) says: the export reads every exported column of every table
//! about the user, and the deletion removes every row the inventory marks for deletion.
//! The statements are built from the inventory's static table and column names (never
//! from input), so a table added to the schema and the inventory is exported and
//! deleted without a line here.

use sqlx::{Column as _, Row};

use crate::privacy::inventory::{Owner, Table, table};
use crate::time::Millis;

use super::audit::insert_audit;
use super::{AuditRow, Db, DbResult};

/// Tables in the order the deletion empties them: a table before the ones its rows
/// reference (the schema's foreign keys). `users` comes last. A unit test checks that
/// every table the inventory marks for deletion is here.
pub const DELETION_ORDER: &[&str] = &[
    "webhook_attempts",
    "webhook_deliveries",
    "generation_webhooks",
    "generation_outputs",
    "gallery_items",
    "credit_ledger",
    "checkout_requests",
    "policy_acceptances",
    "privacy_requests",
    "webhook_secrets",
    "webhook_endpoints",
    "generations",
    "uploads",
    "sessions",
    "api_tokens",
    "stored_objects",
    // Its generic statement matches nothing (the cursor is an object key, not the id):
    // the deletion's objects step resets a cursor under the user's prefix instead.
    "maintenance_cursors",
    "users",
];

/// The condition selecting `table`'s rows of the user bound as `$1`, its columns named
/// with `alias` (`"t."` or `""`).
fn owner_condition(table: &Table, alias: &str) -> Option<String> {
    match table.owner {
        Owner::User { column } => Some(format!("{alias}{column} = $1")),
        Owner::Through { column, table: parent } => Some(format!("{alias}{column} IN ({})", owned_ids(parent)?)),
        Owner::Pseudonym { .. } | Owner::Nobody => None,
    }
}

/// `SELECT id FROM parent WHERE <parent's rows of $1>` (nested for a chain of tables).
fn owned_ids(parent: &str) -> Option<String> {
    let parent = table(parent)?;
    let condition = match parent.owner {
        Owner::User { column } => format!("{column} = $1"),
        Owner::Through { column, table: grand } => format!("{column} IN ({})", owned_ids(grand)?),
        Owner::Pseudonym { .. } | Owner::Nobody => return None,
    };
    Some(format!("SELECT id FROM {} WHERE {condition}", parent.name))
}

impl Db {
    /// One page of the user's rows of `table`: its exported columns, as JSON values, in
    /// a stable order. Tables not about the user (or read by pseudonym) give nothing.
    pub async fn exported_rows(
        &self,
        table: &Table,
        user: &str,
        offset: i64,
        limit: i64,
    ) -> DbResult<Vec<serde_json::Map<String, serde_json::Value>>> {
        let Some(condition) = owner_condition(table, "t.") else { return Ok(Vec::new()) };
        let columns: Vec<&str> = table.columns.iter().filter(|c| c.exported).map(|c| c.name).collect();
        if columns.is_empty() {
            return Ok(Vec::new());
        }
        let select: Vec<String> = columns.iter().map(|c| format!("t.{c}")).collect();
        let order: Vec<String> = (1..=columns.len()).map(|i| i.to_string()).collect();
        let sql = format!(
            "SELECT {} FROM {} t WHERE {condition} ORDER BY {} LIMIT $2 OFFSET $3",
            select.join(", "),
            table.name,
            order.join(", ")
        );
        // Safe: names come from the inventory's constants, values are bound.
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user).bind(limit).bind(offset).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(row_to_json).collect())
    }

    /// The user's rows of every table the inventory registers, as counts (the deletion
    /// receipt's "found", and the tests' scan).
    pub async fn count_rows_of_user(&self, table: &Table, user: &str) -> DbResult<i64> {
        let Some(condition) = owner_condition(table, "t.") else { return Ok(0) };
        let sql = format!("SELECT COUNT(*) FROM {} t WHERE {condition}", table.name);
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(user).fetch_one(&self.pool).await?)
    }

    /// The user's object rows after id `after`, in id order, `limit` at a time.
    pub async fn objects_of_user_after(
        &self,
        user: &str,
        after: &str,
        limit: i64,
    ) -> DbResult<Vec<super::StoredObjectRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, kind, object_key, content_type, bytes, state, created_at, expires_at \
             FROM stored_objects WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(user)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks every object row of the user deleted (their bytes are gone).
    pub async fn mark_user_objects_deleted(&self, user: &str, now: Millis) -> DbResult<u64> {
        Ok(sqlx::query(
            "UPDATE stored_objects SET state = 'deleted', deleted_at = $2 WHERE user_id = $1 AND state <> 'deleted'",
        )
        .bind(user)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// The deletion's last step, in one transaction: payment records detached (no user
    /// id left on them), then every row the inventory marks for deletion, table by table
    /// in `DELETION_ORDER`, and the receipt's audit entry (`audit` is made from the
    /// counts by `receipt`). Returns the rows removed per table. Running it again
    /// removes nothing and records nothing.
    pub async fn delete_user_rows<F>(&self, user: &str, receipt: F) -> DbResult<Option<Vec<(&'static str, u64)>>>
    where
        F: FnOnce(&[(&'static str, u64)], u64) -> AuditRow,
    {
        let mut tx = self.pool.begin().await?;
        // The user's row first: it is the write that serializes this with anything else
        // of the account (SQLite transactions start with their write), and its picture
        // no longer references an object about to go.
        let present = sqlx::query("UPDATE users SET picture_object_id = NULL WHERE id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if present == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let detached = sqlx::query("UPDATE payments SET user_id = NULL WHERE user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let mut removed = Vec::with_capacity(DELETION_ORDER.len());
        for name in DELETION_ORDER {
            let Some(table) = table(name) else { continue };
            let Some(condition) = owner_condition(table, "") else { continue };
            let sql = format!("DELETE FROM {} WHERE {condition}", table.name);
            let count = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user).execute(&mut *tx).await?.rows_affected();
            removed.push((table.name, count));
        }
        insert_audit(&mut tx, &receipt(&removed, detached)).await?;
        tx.commit().await?;
        Ok(Some(removed))
    }
}

/// A row's columns as JSON: integers, reals, booleans and text as themselves (text
/// holding a JSON object or array as that JSON), timestamps (`*_at`, `*_until`, in ms)
/// as RFC 3339 strings.
fn row_to_json(row: &sqlx::any::AnyRow) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name().to_owned();
        let value = value_at(row, i);
        let value = match value {
            serde_json::Value::Number(n) if is_timestamp(&name) => {
                n.as_i64().map(crate::time::rfc3339).map(serde_json::Value::String).unwrap_or(serde_json::Value::Null)
            }
            serde_json::Value::String(text) if text.starts_with('{') || text.starts_with('[') => {
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
            }
            other => other,
        };
        out.insert(name, value);
    }
    out
}

fn is_timestamp(name: &str) -> bool {
    name.ends_with("_at") || name.ends_with("_until")
}

fn value_at(row: &sqlx::any::AnyRow, i: usize) -> serde_json::Value {
    use serde_json::Value;
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map_or(Value::Null, Value::from);
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
        return v.map_or(Value::Null, Value::from);
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
        return v.map_or(Value::Null, Value::from);
    }
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v.map_or(Value::Null, Value::from);
    }
    Value::Null
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::inventory::{Deletion, TABLES};

    /// The tables the deletion detaches rather than deletes (kept for a legal period).
    fn detached_tables() -> impl Iterator<Item = &'static Table> {
        TABLES.iter().filter(|t| matches!(t.deletion, Deletion::Detach { .. }))
    }

    #[test]
    fn the_deletion_order_holds_every_table_to_delete() {
        for t in TABLES {
            let listed = DELETION_ORDER.contains(&t.name);
            assert_eq!(listed, t.deletion == Deletion::Delete, "{}: in DELETION_ORDER iff deleted", t.name);
        }
        assert_eq!(DELETION_ORDER.last(), Some(&"users"));
        let detached: Vec<&str> = detached_tables().map(|t| t.name).collect();
        assert_eq!(detached, ["payments"], "only payments are detached (delete_user_rows detaches them)");
    }

    #[test]
    fn rows_reached_through_other_tables_select_by_the_chain() {
        let attempts = table("webhook_attempts").expect("registered");
        assert_eq!(
            owner_condition(attempts, "t.").as_deref(),
            Some(
                "t.delivery_id IN (SELECT id FROM webhook_deliveries WHERE endpoint_id IN \
                 (SELECT id FROM webhook_endpoints WHERE user_id = $1))"
            )
        );
    }
}
