//! The studio of each kind, chosen by configuration (`MODEL_PORTRAIT`, `MODEL_MUSIC`,
//! `MODEL_SCULPTURE`: `local` by default, `remote` or `cog`).

use std::sync::Arc;

use super::{
    CogSetupError, CogStudio, LocalStudio, RemoteSetupError, RemoteStudio, RenderContext, RenderRequest, RenderedFile,
    Studio, StudioError,
};
use petportrait_core::config::{Config, ModelBackend};
use petportrait_core::domain::{GenerationKind, ModelAvailability};

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

    /// Each kind's entries from its own studio (one studio may serve several kinds).
    fn availability(&self) -> Vec<ModelAvailability> {
        GenerationKind::ALL
            .into_iter()
            .flat_map(|kind| self.for_kind(kind).availability().into_iter().filter(move |a| a.kind == kind))
            .collect()
    }
}

/// Why the studios could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StudioSetupError {
    #[error("the remote model provider")]
    Remote(#[from] RemoteSetupError),
    #[error("the Cog model servers")]
    Cog(#[from] CogSetupError),
}

/// The studios the configuration asks for: one `LocalStudio`, one `RemoteStudio` shared
/// by every remote kind (so its concurrency limit and circuit breaker cover the provider
/// as a whole) and one `CogStudio` for every `cog` kind (its servers' slots are shared
/// by the kinds and styles they serve). Call it inside the multi-threaded runtime whose
/// threads will carry the remote studios' HTTP.
pub async fn from_config(config: &Config) -> Result<Arc<dyn Studio>, StudioSetupError> {
    let local: Arc<dyn Studio> = Arc::new(LocalStudio::new(config.uploads.clone()));
    let remote: Option<Arc<dyn Studio>> = match &config.models.provider {
        Some(provider) => {
            let runtime = tokio::runtime::Handle::current();
            let outputs = petportrait_core::outbound::Outbound::new(config.outbound_allow_private);
            Some(Arc::new(RemoteStudio::new(provider, config.uploads.clone(), runtime, outputs)?))
        }
        None => None,
    };
    let cog: Option<Arc<dyn Studio>> = match &config.models.cog {
        Some(cog) => Some(Arc::new(CogStudio::connect(cog, config.uploads.clone()).await?)),
        None => None,
    };
    let pick = |kind| match (config.models.backend(kind), &remote, &cog) {
        (ModelBackend::Remote, Some(remote), _) => remote.clone(),
        (ModelBackend::Cog, _, Some(cog)) => cog.clone(),
        _ => local.clone(),
    };
    Ok(Arc::new(StudioSet::new(
        pick(GenerationKind::Portrait),
        pick(GenerationKind::Music),
        pick(GenerationKind::Sculpture),
    )))
}
