//! The studio of each kind, chosen by configuration (`MODEL_PORTRAIT`, `MODEL_MUSIC`,
//! `MODEL_SCULPTURE`: `local` by default, or `remote`).

use std::sync::Arc;

use super::{
    LocalStudio, RemoteSetupError, RemoteStudio, RenderContext, RenderRequest, RenderedFile, Studio, StudioError,
};
use petportrait_core::config::{Config, ModelBackend};
use petportrait_core::domain::GenerationKind;

/// Dispatches each kind to its studio.
pub struct StudioSet {
    portrait: Arc<dyn Studio>,
    music: Arc<dyn Studio>,
    sculpture: Arc<dyn Studio>,
}

impl StudioSet {
    pub fn new(portrait: Arc<dyn Studio>, music: Arc<dyn Studio>, sculpture: Arc<dyn Studio>) -> StudioSet {
        StudioSet { portrait, music, sculpture }
    }

    pub fn for_kind(&self, kind: GenerationKind) -> &Arc<dyn Studio> {
        match kind {
            GenerationKind::Portrait => &self.portrait,
            GenerationKind::Music => &self.music,
            GenerationKind::Sculpture => &self.sculpture,
        }
    }
}

impl Studio for StudioSet {
    fn render(&self, request: &RenderRequest, ctx: &RenderContext) -> Result<Vec<RenderedFile>, StudioError> {
        self.for_kind(request.kind).render(request, ctx)
    }
}

/// The studios the configuration asks for: one `LocalStudio`, and one `RemoteStudio`
/// shared by every remote kind (so its concurrency limit and circuit breaker cover the
/// provider as a whole). Call it inside the multi-threaded runtime whose threads will
/// carry the remote studio's HTTP.
pub fn from_config(config: &Config) -> Result<Arc<dyn Studio>, RemoteSetupError> {
    let local: Arc<dyn Studio> = Arc::new(LocalStudio::new(config.uploads.clone()));
    let remote: Option<Arc<dyn Studio>> = match &config.models.provider {
        Some(provider) => {
            let runtime = tokio::runtime::Handle::current();
            let outputs = petportrait_core::outbound::Outbound::new(config.outbound_allow_private);
            Some(Arc::new(RemoteStudio::new(provider, config.uploads.clone(), runtime, outputs)?))
        }
        None => None,
    };
    let pick = |kind| match (config.models.backend(kind), &remote) {
        (ModelBackend::Remote, Some(remote)) => remote.clone(),
        _ => local.clone(),
    };
    Ok(Arc::new(StudioSet::new(
        pick(GenerationKind::Portrait),
        pick(GenerationKind::Music),
        pick(GenerationKind::Sculpture),
    )))
}
