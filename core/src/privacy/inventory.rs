//! The personal-data inventory: every table and column of both schemas, and every
//! object key prefix, with what it holds about a person, whether an export carries it,
//! and what deleting the account does to it. `tests/it/privacy_inventory.rs` compares it
//! with the live schema of both backends, so a new table or column cannot be added
//! without deciding here how export and deletion treat it.

/// What a column holds, in the privacy policy's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Name, e-mail address, profile picture (from Google sign-in), and their indexes.
    Account,
    /// Pet photos uploaded for generation, and what was made from them.
    Content,
    /// Generation history, credit usage, feature preferences.
    Usage,
    /// Purchases and their payment references (never card details).
    Payment,
    /// Sessions and API tokens (as hashes).
    Authentication,
    /// Webhook endpoints, secrets and delivery logs the user configured.
    Integration,
    /// Which policy version the user accepted, and when.
    Consent,
    /// The platform's own bookkeeping: ids, states, timings. About a person only
    /// through the row's owner, and exported with it where the row is.
    Operational,
    /// Not about any person.
    None,
}

/// What deleting the account does to a table's rows of that user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Deletion {
    /// The rows are deleted.
    Delete,
    /// The rows are kept for a legal reason, detached from the account (no user id,
    /// name or e-mail left; a payment provider's references stay, which that provider can
    /// link to its own customer record), until `retained_days` after their creation.
    Detach { reason: &'static str, retained_days: u32 },
    /// The rows name a person only by a pseudonym that no table links back once the
    /// account is gone (the audit log); kept until `retained_days` after creation.
    Pseudonymous { reason: &'static str, retained_days: u32 },
    /// The table holds nothing about a person.
    NotPersonal,
}

/// How a table's rows belong to a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Owner {
    /// The column holding the user id (`maintenance_cursors.cursor` holds an object key,
    /// which begins with the user's `u/{user}/`).
    User { column: &'static str },
    /// Through another table's row (`column` references `table`'s id).
    Through { column: &'static str, table: &'static str },
    /// A pseudonym of the user in `column` (a keyed hash of the user id, which
    /// `privacy::audit::subjects` computes for an export).
    Pseudonym { column: &'static str },
    /// Nobody.
    Nobody,
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Column {
    pub name: &'static str,
    pub category: Category,
    /// Whether the access export carries it (secrets and hashes never are).
    pub exported: bool,
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Table {
    pub name: &'static str,
    pub owner: Owner,
    pub deletion: Deletion,
    pub columns: &'static [Column],
}

/// An object key prefix in the bucket and what lives under it.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct ObjectPrefix {
    pub prefix: &'static str,
    pub category: Category,
    pub exported: bool,
    pub deletion: Deletion,
}

const fn c(name: &'static str, category: Category, exported: bool) -> Column {
    Column { name, category, exported }
}

use Category::{Account, Authentication, Consent, Content, Integration, None as NotAbout, Operational, Payment, Usage};

const DELETE: Deletion = Deletion::Delete;

/// A table about nobody: every column registered (so a new one still fails the schema
/// test until someone says what it holds), none exported, nothing to delete.
macro_rules! not_personal {
    ($name:literal: $($column:literal),+ $(,)?) => {
        Table {
            name: $name,
            owner: Owner::Nobody,
            deletion: Deletion::NotPersonal,
            columns: &[$(c($column, NotAbout, false)),+],
        }
    };
}
const fn user(column: &'static str) -> Owner {
    Owner::User { column }
}

/// Payment records are kept for the bookkeeping law's period (ten years covers the
/// longest of the EU member states' commercial retention periods), detached.
pub const PAYMENT_RETENTION_DAYS: u32 = 3_650;

pub const TABLES: &[Table] = &[
    Table {
        name: "users",
        owner: user("id"),
        deletion: DELETE,
        columns: &[
            c("id", Operational, true),
            c("email", Account, true),
            c("name", Account, true),
            c("picture_url", Account, true),
            c("picture_object_id", Account, true),
            c("preferences", Usage, true),
            c("credits_balance", Usage, true),
            c("credits_held", Usage, true),
            c("created_at", Operational, true),
            c("subject", Account, false),
            c("subject_index", Account, false),
            c("email_index", Account, false),
            c("name_edited_at", Account, true),
            c("deleted_at", Account, false),
        ],
    },
    Table {
        name: "sessions",
        owner: user("user_id"),
        deletion: DELETE,
        columns: &[
            c("token_hash", Authentication, false),
            c("user_id", Operational, false),
            c("created_at", Authentication, true),
            c("expires_at", Authentication, true),
            c("last_seen_at", Authentication, true),
        ],
    },
    Table {
        name: "api_tokens",
        owner: user("user_id"),
        deletion: DELETE,
        columns: &[
            c("id", Operational, true),
            c("user_id", Operational, false),
            c("name", Authentication, true),
            c("token_hash", Authentication, false),
            c("created_at", Authentication, true),
            c("last_used_at", Authentication, true),
        ],
    },
    not_personal!("sign_in_attempts": "id_hash", "state", "nonce", "pkce_verifier", "expires_at"),
    Table {
        name: "uploads",
        owner: user("user_id"),
        deletion: DELETE,
        columns: &[
            c("id", Operational, true),
            c("user_id", Operational, false),
            c("object_id", Operational, false),
            c("content_type", Content, true),
            c("width", Content, true),
            c("height", Content, true),
            c("bytes", Content, true),
            c("orientation", Content, true),
            c("created_at", Content, true),
            c("expires_at", Content, true),
        ],
    },
    Table {
        name: "stored_objects",
        owner: user("user_id"),
        deletion: DELETE,
        columns: &[
            c("id", Operational, true),
            c("user_id", Operational, false),
            c("kind", Content, true),
            c("object_key", Operational, false),
            c("content_type", Content, true),
            c("bytes", Content, true),
            c("state", Operational, true),
            c("created_at", Content, true),
            c("expires_at", Content, true),
            c("deleted_at", Operational, true),
        ],
    },
    Table {
        name: "generations",
        owner: user("user_id"),
        deletion: DELETE,
        columns: &[
            c("id", Operational, true),
            c("user_id", Operational, false),
            c("kind", Usage, true),
            c("style", Usage, true),
            c("options", Usage, true),
            c("upload_id", Operational, true),
            c("status", Usage, true),
            c("cost", Usage, true),
            c("charged", Usage, true),
            c("refunded", Usage, true),
            c("attempts", Operational, true),
            c("progress_percent", Operational, true),
            c("progress_stage", Operational, true),
            c("error_code", Usage, true),
            c("error_message", Usage, true),
            c("error_retryable", Usage, true),
            c("lease_owner", Operational, false),
            c("lease_until", Operational, false),
            c("not_before", Operational, false),
            c("dispatch_task", Operational, false),
            c("version", Operational, false),
            c("idempotency_key", Usage, true),
            c("request_fingerprint", Operational, false),
            c("created_at", Usage, true),
            c("started_at", Usage, true),
            c("completed_at", Usage, true),
            c("updated_at", Operational, true),
            c("webhook_stage", Operational, false),
            c("webhook_progress_at", Operational, false),
            c("model_prediction", Operational, true),
            c("request_id", Operational, true),
            c("parked_at", Operational, false),
        ],
    },
    Table {
        name: "generation_outputs",
        owner: Owner::Through { column: "generation_id", table: "generations" },
        deletion: DELETE,
        columns: &[
            c("id", Operational, true),
            c("generation_id", Operational, true),
            c("position", Content, true),
            c("object_id", Operational, false),
            c("filename", Content, true),
            c("content_type", Content, true),
            c("bytes", Content, true),
            c("created_at", Content, true),
            c("expires_at", Content, true),
        ],
    },
    Table {
        name: "gallery_items",
        owner: user("user_id"),
        deletion: DELETE,
        columns: &[
            c("id", Operational, true),
            c("user_id", Operational, false),
            c("generation_id", Operational, true),
            c("source_output_id", Operational, true),
            c("object_id", Operational, false),
            c("kind", Content, true),
            c("style", Content, true),
            c("filename", Content, true),
            c("content_type", Content, true),
            c("bytes", Content, true),
            c("created_at", Content, true),
        ],
    },
    Table {
        name: "credit_ledger",
        owner: user("user_id"),
        deletion: DELETE,
        columns: &[
            c("id", Operational, true),
            c("user_id", Operational, false),
            c("kind", Usage, true),
            c("amount", Usage, true),
            c("generation_id", Usage, true),
            c("reason", Usage, true),
            c("created_at", Usage, true),
        ],
    },
    Table {
        name: "payments",
        owner: user("user_id"),
        deletion: Deletion::Detach {
            reason: "bookkeeping law: records of sales are kept for the statutory period",
            retained_days: PAYMENT_RETENTION_DAYS,
        },
        columns: &[
            c("id", Payment, true),
            c("user_id", Operational, false),
            c("pack_id", Payment, true),
            c("credits", Payment, true),
            c("amount", Payment, true),
            c("currency", Payment, true),
            c("checkout_session_id", Payment, true),
            c("payment_intent_id", Payment, true),
            c("status", Payment, true),
            c("created_at", Payment, true),
            c("refunded_amount", Payment, true),
            c("credits_revoked", Payment, true),
            c("credits_unrecovered", Payment, true),
        ],
    },
    Table {
        name: "checkout_requests",
        owner: user("user_id"),
        deletion: DELETE,
        columns: &[
            c("user_id", Operational, false),
            c("idempotency_key", Payment, true),
            c("request_fingerprint", Operational, false),
            c("session_id", Payment, true),
            c("checkout_url", Payment, true),
            c("created_at", Payment, true),
        ],
    },
    not_personal!("stripe_events": "event_id", "event_type", "received_at"),
    not_personal!("policy_versions": "version", "effective_at", "url", "published_at"),
    Table {
        name: "policy_acceptances",
        owner: user("user_id"),
        deletion: DELETE,
        columns: &[c("user_id", Operational, false), c("version", Consent, true), c("accepted_at", Consent, true)],
    },
    Table {
        name: "webhook_secrets",
        owner: user("user_id"),
        deletion: DELETE,
        columns: &[
            c("id", Operational, true),
            c("user_id", Operational, false),
            c("secret", Integration, false),
            c("created_at", Integration, true),
            c("expires_at", Integration, true),
        ],
    },
    Table {
        name: "webhook_endpoints",
        owner: user("user_id"),
        deletion: DELETE,
        columns: &[
            c("id", Operational, true),
            c("user_id", Operational, false),
            c("kind", Integration, true),
            c("url", Integration, true),
            c("events", Integration, true),
            c("secret", Integration, false),
            c("enabled", Integration, true),
            c("disabled_reason", Integration, true),
            c("disabled_at", Integration, true),
            c("failing_since", Integration, true),
            c("last_success_at", Integration, true),
            c("created_at", Integration, true),
        ],
    },
    Table {
        name: "generation_webhooks",
        owner: Owner::Through { column: "generation_id", table: "generations" },
        deletion: DELETE,
        columns: &[
            c("generation_id", Operational, true),
            c("endpoint_id", Operational, true),
            c("events", Integration, true),
        ],
    },
    Table {
        name: "webhook_deliveries",
        owner: Owner::Through { column: "endpoint_id", table: "webhook_endpoints" },
        deletion: DELETE,
        columns: &[
            c("id", Operational, true),
            c("endpoint_id", Operational, true),
            c("generation_id", Operational, true),
            c("event_type", Integration, true),
            c("body", Integration, true),
            c("status", Integration, true),
            c("attempts", Integration, true),
            c("manual", Integration, true),
            c("next_attempt_at", Integration, true),
            c("lease_until", Operational, false),
            c("last_status_code", Integration, true),
            c("last_error", Integration, true),
            c("created_at", Integration, true),
            c("completed_at", Integration, true),
        ],
    },
    Table {
        name: "webhook_attempts",
        owner: Owner::Through { column: "delivery_id", table: "webhook_deliveries" },
        deletion: DELETE,
        columns: &[
            c("delivery_id", Operational, true),
            c("attempt", Integration, true),
            c("started_at", Integration, true),
            c("duration_ms", Integration, true),
            c("status_code", Integration, true),
            c("error", Integration, true),
            c("response_excerpt", Integration, true),
        ],
    },
    Table {
        name: "audit_log",
        owner: Owner::Pseudonym { column: "subject" },
        deletion: Deletion::Pseudonymous {
            reason: "accountability: a record that privacy requests were received and carried out",
            retained_days: crate::privacy::audit::AUDIT_RETENTION_DAYS,
        },
        columns: &[
            c("id", Operational, true),
            c("subject", Operational, false),
            c("action", Consent, true),
            c("detail", Consent, true),
            c("created_at", Consent, true),
            c("retain_until", Consent, true),
        ],
    },
    Table {
        name: "privacy_requests",
        owner: user("user_id"),
        // Deleted with the account: the audit log keeps, under the pseudonym, that each
        // request was received and carried out, and the deletion's receipt.
        deletion: DELETE,
        columns: &[
            c("id", Operational, true),
            c("user_id", Operational, false),
            c("kind", Consent, true),
            c("status", Consent, true),
            c("step", Operational, true),
            c("attempts", Operational, false),
            c("lease_owner", Operational, false),
            c("lease_until", Operational, false),
            c("error_code", Consent, true),
            c("object_id", Operational, false),
            c("receipt", Consent, true),
            c("created_at", Consent, true),
            c("updated_at", Operational, true),
            c("due_at", Consent, true),
            c("completed_at", Consent, true),
            c("expires_at", Consent, true),
        ],
    },
    not_personal!("model_availability": "kind", "style", "reporter", "available", "detail", "checked_at"),
    not_personal!("reconciliation_runs": "id", "ran_at", "users_checked", "balance_differences", "sessions_checked", "sessions_applied", "stripe_error"),
    not_personal!("scheduler_leases": "name", "holder", "expires_at"),
    // Where the scheduler's walk of the object store stopped: `cursor` is the last object
    // key it handled, and keys begin with the owner's `u/{user}/`, so the row names one
    // user at a time, for about a tick (the walk moves on and overwrites it). Not about
    // the user in any other way, and not worth an export; the account's deletion resets
    // a cursor under the user's prefix (`Db::reset_maintenance_cursors_under`).
    Table {
        name: "maintenance_cursors",
        owner: user("cursor"),
        deletion: DELETE,
        columns: &[c("name", NotAbout, false), c("cursor", Operational, false), c("updated_at", NotAbout, false)],
    },
    not_personal!("_petportrait_migrations": "version", "description", "installed_on", "success", "checksum", "execution_time"),
    // The embedded queue store (SQLite only; distributed mode keeps the queue in
    // Redis). Its payloads carry a generation's id and nothing else.
    not_personal!("pp_queue_jobs": "queue", "id", "payload", "attempts", "max_attempts", "state", "at", "owner", "error", "result"),
    not_personal!("pp_queue_idempotency": "queue", "key", "id", "expires_at"),
];

/// The bucket's key prefixes under a user's own `u/{user}/` (`objects.rs`'s `Placement`,
/// whose test checks the same names): everything of a user is under that one prefix.
pub const OBJECT_PREFIXES: &[ObjectPrefix] = &[
    ObjectPrefix { prefix: "u/{user}/uploads/", category: Content, exported: true, deletion: DELETE },
    ObjectPrefix { prefix: "u/{user}/generated/", category: Content, exported: true, deletion: DELETE },
    ObjectPrefix { prefix: "u/{user}/gallery/", category: Content, exported: true, deletion: DELETE },
    ObjectPrefix { prefix: "u/{user}/profile/", category: Account, exported: true, deletion: DELETE },
    // An export is not exported again: it is a copy of the rest.
    ObjectPrefix { prefix: "u/{user}/exports/", category: Account, exported: false, deletion: DELETE },
];

/// The registered table named `name`.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// A kind of key Redis holds in distributed mode, and what it says about a person.
/// Nothing here is exported or deleted by a request: every key about a person expires
/// on its own within the period named.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct RedisKey {
    pub pattern: &'static str,
    pub category: Category,
    pub holds: &'static str,
    pub lifetime: &'static str,
}

pub const REDIS_KEYS: &[RedisKey] = &[
    RedisKey {
        pattern: "{QUEUE_PREFIX}:ratelimit:generations:{user}",
        category: Usage,
        holds: "the user's id (in the key) and one number: when their next generation request is due",
        lifetime: "one window of RATE_LIMIT_GENERATIONS (a minute by default)",
    },
    RedisKey {
        pattern: "{QUEUE_PREFIX}:ratelimit:uploads:{user}",
        category: Usage,
        holds: "the user's id (in the key) and one number: when their next upload is due",
        lifetime: "one window of RATE_LIMIT_UPLOADS (a minute by default)",
    },
    RedisKey {
        pattern: "{QUEUE_PREFIX}:ratelimit:anonymous:{address}",
        category: Operational,
        holds: "a client's IP address (IPv6 as its /64) in the key, on routes that need no sign-in",
        lifetime: "one window of RATE_LIMIT_ANONYMOUS (a minute by default)",
    },
    RedisKey {
        pattern: "{QUEUE_PREFIX}:{generation,webhook,privacy}.v1 queue keys",
        category: NotAbout,
        holds: "jobs whose payloads name a generation, delivery or privacy request id, never a person",
        lifetime: "finished jobs an hour; dead jobs until an operator replays or purges them",
    },
    RedisKey {
        pattern: "{QUEUE_PREFIX}:changes (pub/sub channel)",
        category: NotAbout,
        holds: "\"generation X changed\" notices (ids only), not stored",
        lifetime: "none: published, not kept",
    },
];
