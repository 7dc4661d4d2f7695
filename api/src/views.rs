//! Response bodies of the API, built from database rows. Field names are fixed by the
//! API contract.

use petportrait_core::accounts::Profile;
use petportrait_core::db::{UploadRow, UserRow};
use petportrait_core::time::rfc3339;
use serde::Serialize;

/// The generation object is built in the shared crate: webhooks carry it too.
pub use petportrait_core::views::GenerationView;

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreditsView {
    pub balance: i64,
    pub held: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyStatusView {
    pub accepted_version: Option<String>,
    pub current_version: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeView {
    pub id: String,
    pub name: String,
    pub email: String,
    pub picture_url: Option<String>,
    pub preferences: serde_json::Value,
    pub credits: CreditsView,
    pub policy: PolicyStatusView,
    pub created_at: String,
}

impl MeView {
    /// `public_url` makes the picture's URL: our copy, never the provider's.
    pub fn new(user: &UserRow, profile: Profile, policy: PolicyStatusView, public_url: &str) -> MeView {
        MeView {
            id: user.id.clone(),
            name: profile.name,
            email: profile.email,
            picture_url: user.picture_object_id.as_ref().map(|id| format!("{public_url}/v1/files/{id}")),
            preferences: serde_json::from_str(&user.preferences).unwrap_or_else(|_| serde_json::json!({})),
            credits: CreditsView { balance: user.credits_balance, held: user.credits_held },
            policy,
            created_at: rfc3339(user.created_at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadView {
    pub id: String,
    pub content_type: String,
    pub width: i64,
    pub height: i64,
    pub bytes: i64,
    pub created_at: String,
    pub expires_at: String,
}

impl UploadView {
    pub fn from_row(upload: &UploadRow) -> UploadView {
        UploadView {
            id: upload.id.clone(),
            content_type: upload.content_type.clone(),
            width: upload.width,
            height: upload.height,
            bytes: upload.bytes,
            created_at: rfc3339(upload.created_at),
            expires_at: rfc3339(upload.expires_at),
        }
    }
}

/// A page of a list: `{data, next_cursor}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}
