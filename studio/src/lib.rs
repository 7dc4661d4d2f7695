//! The studio: the model interface the worker calls, the local studio that implements
//! it with real image algorithms (no downloads, deterministic for a given input), the
//! remote studio that calls a model provider over HTTP (`remote/`), and the router that
//! picks one of them per kind from the configuration (`router.rs`).
//!
//! A crate of its own so that "the API never calls a model" is a dependency rule that
//! `scripts/check-boundaries` checks: the worker, the one binary that can run it, the
//! system tests and the studio benchmark depend on it; the API and the scheduler do not.

mod cog;
mod filters;
mod music;
mod painterly;
mod portrait;
mod remote;
mod router;
mod sculpture;

pub use cog::{CogError, CogSetupError, CogStudio};
pub use remote::{ProviderError, RemoteSetupError, RemoteStudio};
pub use router::{StudioSet, StudioSetupError, from_config};

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use image::{DynamicImage, ImageFormat, RgbImage};

use petportrait_core::config::UploadLimits;
use petportrait_core::domain::{GenerationKind, find_style};
use petportrait_core::imaging::{self, DecodePlan, Target};
use petportrait_core::memory::{MemoryBudget, Reservation};
use petportrait_core::output_options::{OutputFormat, OutputOptions};

/// The input of one generation.
#[derive(Clone, Debug)]
pub struct RenderRequest {
    pub kind: GenerationKind,
    pub style: String,
    pub input: bytes::Bytes,
    /// The orientation recorded at upload (the stored photo has no EXIF any more);
    /// `None`: the file's own, for uploads stored before metadata was stripped.
    pub orientation: Option<imaging::Orientation>,
    /// The file the user asked for (longest side, format).
    pub options: OutputOptions,
    /// Unique per attempt of a generation (the worker uses `{generation}-a{attempt}`):
    /// a remote provider's idempotency key, so a retried call never starts a second
    /// prediction for one attempt.
    pub idempotency_key: String,
    /// The remote prediction an earlier attempt created and recorded
    /// (`RenderContext::record_prediction`): followed again if it still runs or has
    /// succeeded, instead of paying for another.
    pub pending_prediction: Option<String>,
}

/// One file a generation produced.
#[derive(Clone, Debug)]
pub struct RenderedFile {
    pub filename: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// How a render reports progress and learns that it should stop.
pub struct RenderContext {
    progress: Box<dyn Fn(u8, &'static str) + Send + Sync>,
    cancel: Arc<AtomicBool>,
    memory: MemoryBudget,
    prediction: Box<dyn Fn(&str) + Send + Sync>,
}

impl RenderContext {
    /// A context whose renders may use any amount of memory; see `with_memory`.
    pub fn new(progress: impl Fn(u8, &'static str) + Send + Sync + 'static, cancel: Arc<AtomicBool>) -> Self {
        RenderContext {
            progress: Box::new(progress),
            cancel,
            memory: MemoryBudget::unlimited(),
            prediction: Box::new(|_| {}),
        }
    }

    /// Where a remote studio reports the prediction it created (the worker records it
    /// on the generation for the next attempt); nowhere by default.
    pub fn with_prediction_recorder(self, record: impl Fn(&str) + Send + Sync + 'static) -> Self {
        RenderContext { prediction: Box::new(record), ..self }
    }

    /// Reports the prediction this render follows at a remote provider.
    pub fn record_prediction(&self, id: &str) {
        (self.prediction)(id)
    }

    /// Renders reserve what they will hold from this budget before decoding, and wait
    /// for it when it is spent.
    pub fn with_memory(self, memory: MemoryBudget) -> Self {
        RenderContext { memory, ..self }
    }

    /// A context that reports nowhere and never cancels (tests, benchmarks).
    pub fn detached() -> Self {
        RenderContext::new(|_, _| {}, Arc::new(AtomicBool::new(false)))
    }

    /// Reports progress and stops the render when cancellation was asked for.
    pub fn checkpoint(&self, percent: u8, stage: &'static str) -> Result<(), StudioError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(StudioError::Canceled);
        }
        (self.progress)(percent, stage);
        Ok(())
    }

    pub fn memory(&self) -> &MemoryBudget {
        &self.memory
    }

    /// Whether cancellation was asked for, without reporting progress.
    pub fn is_canceled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Why a render did not produce files.
#[derive(Debug, thiserror::Error)]
pub enum StudioError {
    /// The input cannot be used; running again will not help.
    #[error("the input cannot be used")]
    InvalidInput(#[source] imaging::ImageRejection),
    #[error("{kind} generations are not available in this studio")]
    Unsupported { kind: &'static str },
    #[error("unknown style {0:?}")]
    UnknownStyle(String),
    #[error("the render was canceled")]
    Canceled,
    /// The model could not be reached or did not answer in time; another attempt may work.
    #[error("the model is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The model did not finish within its deadline and was canceled; another attempt may work.
    #[error("the model did not finish within {after:?}")]
    TimedOut { after: std::time::Duration },
    /// The model refused the input or its output under its content policy: permanent.
    #[error("the model refused the input under its content policy")]
    ContentPolicy(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The model ran and failed, or produced nothing usable: permanent for this input.
    #[error("the model failed")]
    ModelFailed(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The model's provider rejected our request as malformed: our bug or a
    /// misconfiguration, permanent.
    #[error("the model provider rejected the request")]
    RequestRejected(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("encoding the output failed")]
    Encode(#[source] image::ImageError),
}

impl StudioError {
    /// The stable code a generation records when this error ends an attempt.
    pub fn code(&self) -> &'static str {
        match self {
            StudioError::InvalidInput(_) | StudioError::Unsupported { .. } | StudioError::UnknownStyle(_) => {
                "invalid_input"
            }
            StudioError::Canceled => "canceled",
            StudioError::Unavailable(_) => "model_unavailable",
            StudioError::TimedOut { .. } => "timeout",
            StudioError::ContentPolicy(_) => "content_policy",
            StudioError::ModelFailed(_) => "model_failed",
            StudioError::RequestRejected(_) => "model_rejected_request",
            StudioError::Encode(_) => "internal_error",
        }
    }

    /// Whether another attempt may succeed: an unreachable or slow model may recover;
    /// a refused or unusable photo, a failing model and our own bugs do not change.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StudioError::Unavailable(_) | StudioError::TimedOut { .. })
    }
}

/// Something that turns a pet photo into generated files. Implementations are called
/// from a blocking thread.
pub trait Studio: Send + Sync + 'static {
    fn render(&self, request: &RenderRequest, ctx: &RenderContext) -> Result<Vec<RenderedFile>, StudioError>;

    /// Which styles served by model servers can run now, as the latest health checks
    /// saw them; empty for studios that are always there (the local one, a provider).
    fn availability(&self) -> Vec<petportrait_core::domain::ModelAvailability> {
        Vec::new()
    }
}

/// Working memory of a style per pixel of its picture: a few RGB and floating-point
/// planes at the output size, and the encoded file. An allowance, not a measurement of
/// each style.
const RENDER_BYTES_PER_PIXEL: u64 = 48;

/// A photo decoded for a render, with the memory it and the render may hold.
pub(crate) struct LoadedPhoto {
    pub photo: RgbImage,
    /// Held until the render ends.
    pub _memory: Reservation,
}

/// Decodes an upload (checked again: a studio trusts nothing it did not check itself),
/// upright, no larger than `max_side` on its longest side (a smaller photo is not
/// enlarged), decoded straight to about that size where the format allows. Reserves the
/// input, the decode and the render's working memory from the budget first. Shared by
/// the local studio and the remote one.
pub(crate) fn load_photo(
    request: &RenderRequest,
    limits: &UploadLimits,
    max_side: u32,
    memory: &MemoryBudget,
) -> Result<LoadedPhoto, StudioError> {
    let input = &request.input[..];
    let info = imaging::inspect(input, limits).map_err(StudioError::InvalidInput)?;
    let plan = DecodePlan::new(input, &info, Target::Fit { max_side }).map_err(StudioError::InvalidInput)?;
    let (width, height) = imaging::fit_within(info.width, info.height, max_side);
    let render = u64::from(width) * u64::from(height) * RENDER_BYTES_PER_PIXEL;
    let held = memory
        .reserve_blocking(input.len() as u64 + plan.peak_bytes() + render)
        .map_err(|e| StudioError::InvalidInput(e.into()))?;
    let orientation = match request.orientation {
        Some(orientation) => orientation,
        None => imaging::orientation(input, &info).map_err(StudioError::InvalidInput)?,
    };
    let photo = plan.run(input).map_err(StudioError::InvalidInput)?;
    Ok(LoadedPhoto { photo: imaging::apply_orientation(photo, orientation), _memory: held })
}

/// The built-in studio.
#[derive(Clone, Debug)]
pub struct LocalStudio {
    limits: UploadLimits,
}

impl LocalStudio {
    pub fn new(limits: UploadLimits) -> Self {
        LocalStudio { limits }
    }

    /// `load_photo` between two checkpoints (progress, and a chance to stop).
    fn load_photo(
        &self,
        request: &RenderRequest,
        max_side: u32,
        ctx: &RenderContext,
    ) -> Result<LoadedPhoto, StudioError> {
        ctx.checkpoint(5, "decoding")?;
        let photo = load_photo(request, &self.limits, max_side, ctx.memory())?;
        ctx.checkpoint(15, "preparing")?;
        Ok(photo)
    }
}

impl Studio for LocalStudio {
    fn render(&self, request: &RenderRequest, ctx: &RenderContext) -> Result<Vec<RenderedFile>, StudioError> {
        if find_style(request.kind, &request.style).is_none() {
            return Err(StudioError::UnknownStyle(request.style.clone()));
        }
        match request.kind {
            GenerationKind::Portrait => {
                let loaded = self.load_photo(request, request.options.max_side, ctx)?;
                let art = portrait::render(&request.style, loaded.photo, ctx)?;
                ctx.checkpoint(90, "encoding")?;
                let format = request.options.format;
                let bytes = encode(DynamicImage::ImageRgb8(art), format)?;
                Ok(vec![RenderedFile {
                    filename: format!("portrait-{}.{}", request.style, format.extension()),
                    content_type: format.content_type(),
                    bytes,
                }])
            }
            GenerationKind::Music => {
                let loaded = self.load_photo(request, 512, ctx)?;
                let piece = music::compose(&loaded.photo, ctx)?;
                tracing::info!(
                    key = %piece.key,
                    tempo_bpm = piece.tempo_bpm,
                    mood = piece.mood,
                    seconds = piece.duration_seconds,
                    "composed"
                );
                Ok(vec![RenderedFile {
                    filename: format!("music-{}.wav", request.style),
                    content_type: "audio/wav",
                    bytes: piece.wav,
                }])
            }
            GenerationKind::Sculpture => {
                let loaded = self.load_photo(request, 512, ctx)?;
                let sculpture = sculpture::sculpt(&loaded.photo, ctx)?;
                tracing::debug!(triangles = sculpture.triangles, size_mm = ?sculpture.size_mm, "sculpture built");
                Ok(vec![
                    RenderedFile {
                        filename: format!("sculpture-{}.stl", request.style),
                        content_type: "model/stl",
                        bytes: sculpture.stl,
                    },
                    RenderedFile {
                        filename: format!("sculpture-{}.glb", request.style),
                        content_type: "model/gltf-binary",
                        bytes: sculpture.glb,
                    },
                ])
            }
        }
    }
}

fn encode(image: DynamicImage, format: OutputFormat) -> Result<Vec<u8>, StudioError> {
    let format = match format {
        OutputFormat::Jpeg => ImageFormat::Jpeg,
        OutputFormat::Png => ImageFormat::Png,
        OutputFormat::Webp => ImageFormat::WebP,
    };
    let mut out = Vec::new();
    image.write_to(&mut Cursor::new(&mut out), format).map_err(StudioError::Encode)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo() -> bytes::Bytes {
        let img = image::RgbImage::from_fn(160, 120, |x, y| {
            let d = ((x as i32 - 80).pow(2) + (y as i32 - 60).pow(2)) as f32;
            if d < 1600.0 { image::Rgb([200, 140, 60]) } else { image::Rgb([40, 90 + (y / 2) as u8, 160]) }
        });
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).expect("encode");
        out.into()
    }

    fn limits() -> UploadLimits {
        UploadLimits { max_bytes: 1 << 24, max_pixels: 10_000_000, max_side: 5_000 }
    }

    #[test]
    fn every_portrait_style_renders_a_jpeg_of_the_photo_size() {
        let studio = LocalStudio::new(limits());
        for style in petportrait_core::domain::CATALOGUE.iter().filter(|s| s.kind == GenerationKind::Portrait) {
            let req = RenderRequest {
                orientation: None,
                kind: GenerationKind::Portrait,
                style: style.id.into(),
                input: photo(),
                options: OutputOptions::default(),
                idempotency_key: "test".into(),
                pending_prediction: None,
            };
            let files = studio.render(&req, &RenderContext::detached()).expect("renders");
            assert_eq!(files.len(), 1);
            let out = image::load_from_memory(&files[0].bytes).expect("decodes");
            assert_eq!(image::guess_format(&files[0].bytes).expect("format"), ImageFormat::Jpeg);
            assert_eq!((out.width(), out.height()), (160, 120), "style {}", style.id);
        }
    }

    #[test]
    fn the_chosen_format_and_longest_side_are_honoured() {
        let studio = LocalStudio::new(limits());
        let big = image::RgbImage::from_fn(640, 480, |x, y| image::Rgb([(x / 3) as u8, (y / 2) as u8, 90]));
        let mut input = Vec::new();
        big.write_to(&mut Cursor::new(&mut input), ImageFormat::Png).expect("encode");
        for (format, expected) in [(OutputFormat::Png, ImageFormat::Png), (OutputFormat::Webp, ImageFormat::WebP)] {
            let options = OutputOptions { max_side: 320, format };
            let req = RenderRequest {
                orientation: None,
                kind: GenerationKind::Portrait,
                style: "oil_paint".into(),
                input: input.clone().into(),
                options,
                idempotency_key: "test".into(),
                pending_prediction: None,
            };
            let files = studio.render(&req, &RenderContext::detached()).expect("renders");
            assert_eq!(image::guess_format(&files[0].bytes).expect("format"), expected);
            assert_eq!(files[0].content_type, format.content_type());
            assert!(files[0].filename.ends_with(format.extension()), "{}", files[0].filename);
            let out = image::load_from_memory(&files[0].bytes).expect("decodes");
            assert_eq!((out.width(), out.height()), (320, 240));
        }
    }

    #[test]
    fn sculpture_renders_an_stl_and_a_glb() {
        let studio = LocalStudio::new(limits());
        let req = RenderRequest {
            orientation: None,
            kind: GenerationKind::Sculpture,
            style: "relief".into(),
            input: photo(),
            options: OutputOptions::default(),
            idempotency_key: "test".into(),
            pending_prediction: None,
        };
        let files = studio.render(&req, &RenderContext::detached()).expect("renders");
        let names: Vec<_> = files.iter().map(|f| (f.filename.as_str(), f.content_type)).collect();
        assert_eq!(names, [("sculpture-relief.stl", "model/stl"), ("sculpture-relief.glb", "model/gltf-binary")]);
        assert_eq!(
            files[0].bytes.len(),
            84 + 50 * u32::from_le_bytes(files[0].bytes[80..84].try_into().expect("a count")) as usize
        );
        assert!(files[1].bytes.starts_with(b"glTF"));
    }

    #[test]
    fn cancellation_stops_at_the_next_checkpoint() {
        let studio = LocalStudio::new(limits());
        let cancel = Arc::new(AtomicBool::new(true));
        let ctx = RenderContext::new(|_, _| {}, cancel);
        let req = RenderRequest {
            orientation: None,
            kind: GenerationKind::Portrait,
            style: "watercolor".into(),
            input: photo(),
            options: OutputOptions::default(),
            idempotency_key: "test".into(),
            pending_prediction: None,
        };
        assert!(matches!(studio.render(&req, &ctx), Err(StudioError::Canceled)));
    }

    #[test]
    fn the_pet_theme_is_one_wav() {
        let studio = LocalStudio::new(limits());
        let req = RenderRequest {
            orientation: None,
            kind: GenerationKind::Music,
            style: "pet_theme".into(),
            input: photo(),
            options: OutputOptions::default(),
            idempotency_key: "test".into(),
            pending_prediction: None,
        };
        let files = studio.render(&req, &RenderContext::detached()).expect("renders");
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].filename.as_str(), files[0].content_type), ("music-pet_theme.wav", "audio/wav"));
        assert_eq!((&files[0].bytes[..4], &files[0].bytes[8..12]), (&b"RIFF"[..], &b"WAVE"[..]));
    }

    #[test]
    fn only_an_unreachable_or_slow_model_is_worth_another_attempt() {
        let cause = || -> Box<dyn std::error::Error + Send + Sync> { "cause".into() };
        let cases = [
            (StudioError::InvalidInput(imaging::ImageRejection::UnsupportedFormat), "invalid_input", false),
            (StudioError::Unsupported { kind: "music" }, "invalid_input", false),
            (StudioError::UnknownStyle("cubism".into()), "invalid_input", false),
            (StudioError::Canceled, "canceled", false),
            (StudioError::Unavailable(cause()), "model_unavailable", true),
            (StudioError::TimedOut { after: std::time::Duration::from_secs(1) }, "timeout", true),
            (StudioError::ContentPolicy(cause()), "content_policy", false),
            (StudioError::ModelFailed(cause()), "model_failed", false),
            (StudioError::RequestRejected(cause()), "model_rejected_request", false),
            (StudioError::Encode(image::ImageError::IoError(std::io::Error::other("disk"))), "internal_error", false),
        ];
        for (error, code, retryable) in cases {
            assert_eq!((error.code(), error.is_retryable()), (code, retryable), "{error:?}");
        }
    }

    #[test]
    fn text_is_invalid_input() {
        let studio = LocalStudio::new(limits());
        let req = RenderRequest {
            orientation: None,
            kind: GenerationKind::Portrait,
            style: "watercolor".into(),
            input: "not an image".into(),
            options: OutputOptions::default(),
            idempotency_key: "test".into(),
            pending_prediction: None,
        };
        assert!(matches!(studio.render(&req, &RenderContext::detached()), Err(StudioError::InvalidInput(_))));
    }
}
