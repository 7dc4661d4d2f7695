//! The generation object of the API contract, built from its rows: the API answers
//! with it, streams it and webhooks carry it.

use serde::Serialize;

use crate::db::{Db, DbResult, GenerationRow, OutputRow};
use crate::domain::{GenerationError, GenerationKind, GenerationStatus, ObjectState};
use crate::time::rfc3339;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProgressView {
    pub percent: i64,
    pub stage: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CostView {
    pub credits: i64,
    pub charged: i64,
    pub refunded: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OutputView {
    pub id: String,
    pub filename: String,
    pub content_type: String,
    pub bytes: i64,
    /// `null` once the content has been purged.
    pub url: Option<String>,
    pub expires_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GenerationUrls {
    #[serde(rename = "self")]
    pub self_: String,
    pub cancel: String,
    pub events: String,
}

#[derive(Serialize, utoipa::ToSchema)]
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
    /// `base` prefixes the links: empty for the API's relative ones, `PUBLIC_URL` for
    /// webhooks, whose receivers have no page to resolve a relative link against.
    pub fn build(
        row: &GenerationRow,
        outputs: &[OutputRow],
        queue_position: Option<i64>,
        base: &str,
    ) -> GenerationView {
        let self_url = format!("{base}/v1/generations/{}", row.id);
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
                    url: (o.object_state == ObjectState::Active).then(|| format!("{base}/v1/files/{}", o.object_id)),
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

impl GenerationView {
    /// Reads what the object shows beside the row (its outputs, its place in the queue).
    pub async fn load(db: &Db, row: &GenerationRow, base: &str) -> DbResult<GenerationView> {
        let outputs = db.list_outputs(&row.id).await?;
        let position =
            if row.status == GenerationStatus::Queued { Some(db.queue_position(row.created_at).await?) } else { None };
        Ok(GenerationView::build(row, &outputs, position, base))
    }
}

/// A privacy request as the contract shows it (`GET /v1/privacy/requests/{id}`, and the
/// `privacy_export.ready` webhook's data).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PrivacyRequestView {
    pub id: String,
    pub kind: crate::domain::PrivacyKind,
    pub status: crate::domain::PrivacyStatus,
    pub created_at: String,
    pub completed_at: Option<String>,
    /// One month after the request was received: when it must be carried out by.
    pub due_at: String,
    /// A completed export's archive, for its owner, until `expires_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Why a failed request failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

impl PrivacyRequestView {
    /// The view at `now`; links start with `base` (empty for the API's relative links,
    /// `PUBLIC_URL` for webhooks). An expired export has no link.
    pub fn new(row: &crate::db::PrivacyRequestRow, base: &str, now: crate::time::Millis) -> PrivacyRequestView {
        let live = row.object_id.is_some() && row.expires_at.is_some_and(|at| at > now);
        PrivacyRequestView {
            id: row.id.clone(),
            kind: row.kind,
            status: row.status,
            created_at: rfc3339(row.created_at),
            completed_at: row.completed_at.map(rfc3339),
            due_at: rfc3339(row.due_at),
            download_url: live.then(|| format!("{base}/v1/privacy/requests/{}/download", row.id)),
            expires_at: row.expires_at.map(rfc3339),
            error_code: row.error_code.clone(),
        }
    }
}
