//! The profile picture is served by us: at sign-in the provider's picture is fetched
//! once (through the outbound client: public https addresses only, 2 MiB at most, an
//! image type), checked and stripped like an upload, and stored as the user's own
//! object, served at `/v1/files/{id}`. No page we serve makes a browser contact the
//! identity provider. A picture that cannot be copied leaves the user without one; the
//! sign-in goes on.

use bytes::Bytes;
use petportrait_core::config::UploadLimits;
use petportrait_core::db::UserRow;
use petportrait_core::domain::StoredObjectKind;
use petportrait_core::errors::error_chain;
use petportrait_core::imaging;
use petportrait_core::objects::{Placement, Source};
use petportrait_core::sealing::USER_PICTURE;
use petportrait_core::time::now_ms;

use crate::AppState;

/// Google's pictures are a few KB; a profile picture never needs more than this.
const MAX_PICTURE_BYTES: usize = 2 << 20;
const PICTURE_LIMITS: UploadLimits =
    UploadLimits { max_bytes: MAX_PICTURE_BYTES, max_pixels: 4_000_000, max_side: 4096 };
const PICTURE_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

#[derive(Debug, thiserror::Error)]
enum PictureError {
    #[error("fetching the picture failed")]
    Fetch(#[from] petportrait_core::outbound::OutboundError),
    #[error("the picture is not a usable image: {0}")]
    Image(String),
    #[error("checking the picture failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("storing the picture failed")]
    Store(#[from] petportrait_core::objects::ObjectWriteError),
}

/// Copies the provider's picture `source` for `user`, unless our copy is of that same
/// URL already. Failures are logged (without the URL: it identifies the person) and
/// leave the previous picture in place.
pub async fn copy_picture(state: &AppState, user: &UserRow, source: Option<&str>) {
    let Some(source) = source else { return };
    let keyring = state.services.accounts.keyring();
    let copied_from = user.sealed_picture.as_deref().and_then(|s| keyring.open(USER_PICTURE, &user.id, s).ok());
    if user.picture_object_id.is_some() && copied_from.as_deref() == Some(source) {
        return;
    }
    match fetch_and_store(state, user, source).await {
        Ok(()) => tracing::info!(user.id = %user.id, "profile picture copied"),
        Err(error) => tracing::warn!(user.id = %user.id, error = %error_chain(&error), "profile picture not copied"),
    }
}

async fn fetch_and_store(state: &AppState, user: &UserRow, source: &str) -> Result<(), PictureError> {
    let services = &state.services;
    let (bytes, _) = services.outbound.fetch(source, MAX_PICTURE_BYTES, &PICTURE_TYPES).await?;
    let memory = services.memory.clone();
    let prepared = tokio::task::spawn_blocking(move || imaging::prepare_upload(&bytes, &PICTURE_LIMITS, &memory))
        .await?
        .map_err(|rejection| PictureError::Image(rejection.code().to_owned()))?;
    let version = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    let sealed_source = services.accounts.keyring().seal(USER_PICTURE, &user.id, source);
    let user_id = user.user_id();
    let now = now_ms();
    let lasting = services.objects.lasting_expiry(StoredObjectKind::Picture, now);
    services
        .objects
        .write(
            &user_id,
            Placement::Picture { version: &version },
            prepared.info.format.content_type(),
            Source::Bytes(Bytes::from(prepared.stored)),
            now,
            |written| {
                let owner = user_id.clone();
                async move {
                    services.db.set_user_picture(&owner, written.id.as_str(), &sealed_source, lasting, now).await
                }
            },
        )
        .await?;
    Ok(())
}
