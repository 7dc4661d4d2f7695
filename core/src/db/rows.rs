//! Rows as the database returns them. They are not DTOs: the API builds its own
//! response types from them.

use crate::domain::{GenerationError, GenerationKind, GenerationStatus, LedgerKind, ObjectState, StoredObjectKind};
use crate::ids::UserId;
use crate::time::Millis;

/// An account as stored: its personal fields sealed (`sealing::Keyring::open` with the
/// row's id), so a `Debug` of the row shows ciphertext only.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    #[sqlx(rename = "email")]
    pub sealed_email: String,
    #[sqlx(rename = "name")]
    pub sealed_name: String,
    /// The provider's picture URL it was copied from (sealed).
    #[sqlx(rename = "picture_url")]
    pub sealed_picture: Option<String>,
    /// Our copy of the picture (a `picture` stored object), served at `/v1/files/{id}`.
    pub picture_object_id: Option<String>,
    pub preferences: String,
    pub credits_balance: i64,
    pub credits_held: i64,
    pub created_at: Millis,
}

impl UserRow {
    pub fn user_id(&self) -> UserId {
        UserId::from_db(self.id.clone())
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredObjectRow {
    pub id: String,
    pub user_id: String,
    #[sqlx(try_from = "String")]
    pub kind: StoredObjectKind,
    pub object_key: String,
    pub content_type: String,
    pub bytes: i64,
    #[sqlx(try_from = "String")]
    pub state: ObjectState,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
}

impl StoredObjectRow {
    /// Whether the bytes can still be served at `now`.
    pub fn is_available(&self, now: Millis) -> bool {
        self.state == ObjectState::Active && self.expires_at.is_none_or(|t| t > now)
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UploadRow {
    pub id: String,
    pub user_id: String,
    pub object_id: String,
    pub content_type: String,
    pub width: i64,
    pub height: i64,
    /// The EXIF orientation (1-8) of the stored pixels; `None` when the stored file
    /// still carries its own (uploads from before metadata was stripped).
    pub orientation: Option<i64>,
    pub bytes: i64,
    pub created_at: Millis,
    pub expires_at: Millis,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct GenerationRow {
    pub id: String,
    pub user_id: String,
    #[sqlx(try_from = "String")]
    pub kind: GenerationKind,
    pub style: String,
    pub options: String,
    pub upload_id: String,
    #[sqlx(try_from = "String")]
    pub status: GenerationStatus,
    pub cost: i64,
    pub charged: i64,
    pub refunded: i64,
    pub attempts: i64,
    pub progress_percent: i64,
    pub progress_stage: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub error_retryable: Option<i64>,
    pub version: i64,
    pub idempotency_key: Option<String>,
    pub request_fingerprint: Option<String>,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub updated_at: Millis,
    /// The remote provider's prediction the latest attempt followed (`model_prediction`).
    pub model_prediction: Option<String>,
    /// The API request that created it (`X-Request-Id`).
    pub request_id: Option<String>,
}

impl GenerationRow {
    pub fn error(&self) -> Option<GenerationError> {
        self.error_code.as_ref().map(|code| GenerationError {
            code: code.clone(),
            message: self.error_message.clone().unwrap_or_default(),
            retryable: self.error_retryable.unwrap_or(0) != 0,
        })
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutputRow {
    pub id: String,
    pub generation_id: String,
    pub position: i64,
    pub object_id: String,
    pub filename: String,
    pub content_type: String,
    pub bytes: i64,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// The state of the stored object behind the output.
    #[sqlx(try_from = "String")]
    pub object_state: ObjectState,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LedgerRow {
    pub id: String,
    pub user_id: String,
    #[sqlx(try_from = "String")]
    pub kind: LedgerKind,
    pub amount: i64,
    pub generation_id: Option<String>,
    pub created_at: Millis,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct GalleryItemRow {
    pub id: String,
    pub user_id: String,
    pub generation_id: String,
    pub source_output_id: String,
    pub object_id: String,
    #[sqlx(try_from = "String")]
    pub kind: GenerationKind,
    pub style: String,
    pub filename: String,
    pub content_type: String,
    pub bytes: i64,
    pub created_at: Millis,
}
