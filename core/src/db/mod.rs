//! The one module that holds SQL.
//!
//! Every query is written once, with `$n` placeholders, and runs on SQLite and
//! PostgreSQL through sqlx's `Any` driver. Timestamps are BIGINT milliseconds, so no
//! query depends on a dialect's date functions. Two rules keep SQLite's single writer
//! happy: a transaction starts with its write (never read-then-write, which SQLite
//! cannot upgrade without `SQLITE_BUSY`), and conditional state changes are single
//! `UPDATE ... WHERE` statements rather than check-then-act.

mod audit;
mod cancel;
mod checkout;
mod credits;
mod deliveries;
mod fairness;
mod gallery;
mod gauges;
mod generations;
mod leases;
mod maintenance;
mod models;
mod objects;
mod operator;
mod payments;
mod personal_data;
mod policy;
mod privacy;
mod reconcile;
mod rows;
mod runs;
mod schema;
mod sessions;
mod sweep;
mod users;
mod webhooks;

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

pub use audit::AuditRow;
pub use cancel::CancelOutcome;
pub use checkout::CheckoutClaim;
pub use credits::Adjustment;
pub use deliveries::{
    AttemptRecord, AttemptRow, ClaimedDelivery, DeliveryClaim, DeliveryRow, RedeliverOutcome, Verdict,
};
pub use gallery::KeepOutcome;
pub use gauges::Backlog;
pub use generations::{CreateOutcome, GenerationFilter, NewGeneration};
pub use objects::{DueObject, NewObject};
pub use operator::AccountSummary;
pub use payments::{EventOutcome, PaymentRow, Purchase};
pub use personal_data::DELETION_ORDER;
pub use policy::PolicyVersionRow;
pub use privacy::{
    AccountClosed, CompletedExport, ExportCompletion, NewPrivacyRequest, PrivacyClaim, PrivacyRequestRow,
    RequestOutcome,
};
pub use reconcile::{LedgerCheck, ReconciliationRow};
pub use rows::*;
pub use runs::{ChargeOutcome, ClaimOutcome};
pub use sessions::{ApiTokenRow, SessionUser, SignInAttempt, TokenUser};
pub use sweep::StalledGeneration;
pub use users::{NewUser, SealedUserFields};
pub use webhooks::{
    ENDPOINT_ACCOUNT, ENDPOINT_GENERATION, NewDelivery, SealedWebhookSecret, Subscriber, WebhookEndpointRow,
    WebhookSecretRow,
};

use crate::config::DatabaseTarget;

/// Which SQL dialect the pool speaks; only migrations and marked queries care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Errors of the database layer; the cause chain is kept for the logs.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database schema is behind this build (run the release/migrate step first)")]
    SchemaBehind,
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
}

impl DbError {
    /// True when a stored value cannot be decoded (an unknown kind or status): running
    /// again will read the same row.
    pub fn is_corrupt_row(&self) -> bool {
        matches!(self, DbError::Query(sqlx::Error::ColumnDecode { .. }))
    }

    /// True for a violated unique constraint (a duplicate that the caller can resolve).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Query(sqlx::Error::Database(e)) => e.is_unique_violation(),
            _ => false,
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// One migration of this build and whether the database has applied it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

/// Our migrations table; `_sqlx_migrations` may exist in older SQLite files, owned by apalis-sqlite.
const MIGRATIONS_TABLE: &str = "_petportrait_migrations";

/// A pool on the system of record.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
}

impl Db {
    /// Connects (creating the SQLite file if needed); does not migrate.
    pub async fn connect(target: &DatabaseTarget) -> DbResult<Db> {
        sqlx::any::install_default_drivers();
        let dialect = match target {
            DatabaseTarget::Sqlite { .. } => Dialect::Sqlite,
            DatabaseTarget::Postgres { .. } => Dialect::Postgres,
        };
        let options = AnyPoolOptions::new()
            .max_connections(if dialect == Dialect::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(10));
        let options = if dialect == Dialect::Sqlite {
            options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers proceed during a write; FULL keeps a committed charge
                    // through a power loss; the busy timeout queues writers instead of failing.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    // Deleted and overwritten content is zeroed, so the file keeps no copy
                    // of a value once it is rewritten (a legacy plaintext, a deleted account).
                    conn.execute("PRAGMA secure_delete = ON").await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options.connect(target.url()).await?;
        Ok(Db { pool, dialect })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    fn migrator(&self) -> sqlx::migrate::Migrator {
        let mut migrator = match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("../migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("../migrations/postgres"),
        };
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator
    }

    /// Applies pending migrations (the `release` step, and embedded start-up).
    pub async fn migrate(&self) -> DbResult<()> {
        self.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// Fails when this build expects migrations the database has not applied.
    pub async fn ensure_schema_current(&self) -> DbResult<()> {
        let migrator = self.migrator();
        let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        // The table name is a constant of ours, so building this statement is safe.
        let sql = format!("SELECT COALESCE(MAX(version), 0) FROM {MIGRATIONS_TABLE} WHERE success = TRUE");
        let applied: Result<i64, sqlx::Error> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&self.pool).await;
        match applied {
            Ok(v) if v >= latest => Ok(()),
            _ => Err(DbError::SchemaBehind),
        }
    }

    /// Every migration this build knows, oldest first, and whether the database has
    /// applied it (`petportrait migrate --status`).
    pub async fn migration_status(&self) -> DbResult<Vec<MigrationState>> {
        let sql = format!("SELECT version FROM {MIGRATIONS_TABLE} WHERE success = TRUE");
        // Before the first migration the table does not exist: nothing is applied.
        let applied: Vec<i64> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await.unwrap_or_default();
        Ok(self
            .migrator()
            .iter()
            .map(|m| MigrationState {
                version: m.version,
                description: m.description.to_string(),
                applied: applied.contains(&m.version),
            })
            .collect())
    }

    /// A trivial round trip, for readiness checks.
    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
