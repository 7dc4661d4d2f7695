//! Response bodies of the API, built from database rows. Field names are fixed by the
//! API contract.

use petportrait_core::accounts::Profile;
use petportrait_core::db::{GenerationRow, OutputRow, UploadRow, UserRow};
use petportrait_core::domain::{GenerationError, GenerationKind, GenerationStatus, ObjectState};
use petportrait_core::time::rfc3339;
use serde::Serialize;

#[derive(Serialize)]
pub struct CreditsView {
    pub balance: i64,
    pub held: i64,
}

#[derive(Serialize)]
pub struct PolicyStatusView {
    pub accepted_version: Option<String>,
    pub current_version: Option<String>,
}

#[derive(Serialize)]
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

#[derive(Serialize)]
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

#[derive(Serialize)]
pub struct ProgressView {
    pub percent: i64,
    pub stage: String,
}

#[derive(Serialize)]
pub struct CostView {
    pub credits: i64,
    pub charged: i64,
    pub refunded: i64,
}

#[derive(Serialize)]
pub struct OutputView {
    pub id: String,
    pub filename: String,
    pub content_type: String,
    pub bytes: i64,
    /// `null` once the content has been purged.
    pub url: Option<String>,
    pub expires_at: String,
}

#[derive(Serialize)]
pub struct GenerationUrls {
    #[serde(rename = "self")]
    pub self_: String,
    pub cancel: String,
    pub events: String,
}

#[derive(Serialize)]
pub struct GenerationView {
    pub id: String,
    pub kind: GenerationKind,
    pub style: String,
    pub status: GenerationStatus,
    pub upload_id: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub queue_position: Option<i64>,
    pub progress: ProgressView,
    pub cost: CostView,
    pub outputs: Vec<OutputView>,
    pub error: Option<GenerationError>,
    pub urls: GenerationUrls,
}

impl GenerationView {
    pub fn build(row: &GenerationRow, outputs: &[OutputRow], queue_position: Option<i64>) -> GenerationView {
        let self_url = format!("/v1/generations/{}", row.id);
        GenerationView {
            id: row.id.clone(),
            kind: row.kind,
            style: row.style.clone(),
            status: row.status,
            upload_id: row.upload_id.clone(),
            created_at: rfc3339(row.created_at),
            started_at: row.started_at.map(rfc3339),
            completed_at: row.completed_at.map(rfc3339),
            queue_position,
            progress: ProgressView { percent: row.progress_percent, stage: row.progress_stage.clone() },
            cost: CostView { credits: row.cost, charged: row.charged, refunded: row.refunded },
            outputs: outputs
                .iter()
                .map(|o| OutputView {
                    id: o.id.clone(),
                    filename: o.filename.clone(),
                    content_type: o.content_type.clone(),
                    bytes: o.bytes,
                    url: (o.object_state == ObjectState::Active).then(|| format!("/v1/files/{}", o.object_id)),
                    expires_at: rfc3339(o.expires_at),
                })
                .collect(),
            error: row.error(),
            urls: GenerationUrls {
                cancel: format!("{self_url}/cancel"),
                events: format!("{self_url}/events"),
                self_: self_url,
            },
        }
    }
}

/// A page of a list: `{data, next_cursor}`.
#[derive(Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}
