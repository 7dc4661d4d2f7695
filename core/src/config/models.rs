//! Which model runs each kind (`MODEL_*`), and the remote provider's settings
//! (`PROVIDER_*`); the Cog servers' are in `cog.rs`.

use std::fmt;
use std::time::Duration;

use super::cog::{CogConfig, read_cog};
use super::{Reader, WorkerConfig, url_host_is_loopback};
use crate::domain::GenerationKind;

/// Where the model of one kind runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelBackend {
    /// The built-in studio (`LocalStudio`).
    Local,
    /// The remote provider of `PROVIDER_URL` (`RemoteStudio`).
    Remote,
    /// Self-hosted Cog model servers (`COG_URL_*`, `CogStudio`).
    Cog,
}

/// The model chosen per kind (`MODEL_PORTRAIT`, `MODEL_MUSIC`, `MODEL_SCULPTURE`).
#[derive(Clone, Debug)]
pub struct ModelsConfig {
    pub portrait: ModelBackend,
    pub music: ModelBackend,
    pub sculpture: ModelBackend,
    /// Set exactly when at least one kind is remote.
    pub provider: Option<ProviderConfig>,
    /// Set exactly when at least one kind is `cog`.
    pub cog: Option<CogConfig>,
}

impl ModelsConfig {
    pub fn backend(&self, kind: GenerationKind) -> ModelBackend {
        match kind {
            GenerationKind::Portrait => self.portrait,
            GenerationKind::Music => self.music,
            GenerationKind::Sculpture => self.sculpture,
        }
    }
}

/// A remote model provider speaking the Replicate predictions protocol.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// Base URL without a trailing slash; requests go to `{url}/v1/predictions`.
    pub url: String,
    /// Sent as `Authorization: Bearer …` to the provider's own origin only.
    pub token: Option<Secret>,
    /// The model (`owner/name`) or version (`owner/name:version`, a version id) per
    /// remote kind; a kind that is local has none.
    pub portrait_model: Option<String>,
    pub music_model: Option<String>,
    pub sculpture_model: Option<String>,
    /// The longest one prediction may take, from the start of the render (waiting for
    /// a concurrency slot included) to its last output; then it is canceled and the
    /// attempt retried. Shorter than `JOB_TIMEOUT`.
    pub timeout: Duration,
    /// Each HTTP call (create, poll, cancel, one output download).
    pub request_timeout: Duration,
    /// Predictions this process runs at the provider at once.
    pub concurrency: usize,
    /// The first poll interval, growing to `poll_max_interval`.
    pub poll_interval: Duration,
    pub poll_max_interval: Duration,
    /// Retries of one call after a 5xx, 408, 429 or a connection error.
    pub retries: u32,
    /// The backoff base of those retries (`base * 2^(n-1)`, equal jitter, at most 16x).
    pub retry_delay: Duration,
    /// Consecutive failed calls that open the circuit breaker, and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// The largest output file accepted.
    pub max_output_bytes: usize,
}

impl ProviderConfig {
    pub fn model(&self, kind: GenerationKind) -> Option<&str> {
        match kind {
            GenerationKind::Portrait => self.portrait_model.as_deref(),
            GenerationKind::Music => self.music_model.as_deref(),
            GenerationKind::Sculpture => self.sculpture_model.as_deref(),
        }
    }
}

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// `MODEL_*` and `PROVIDER_*`. The provider's variables are checked whenever they are
/// set; `PROVIDER_URL` and a model name are required only for a kind that is remote.
pub(super) fn read_models(r: &mut Reader<'_>, worker: &WorkerConfig) -> ModelsConfig {
    fn backend(r: &mut Reader<'_>, name: &'static str) -> ModelBackend {
        match r.raw(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("local") => ModelBackend::Local,
            Some("remote") => ModelBackend::Remote,
            Some("cog") => ModelBackend::Cog,
            Some(other) => {
                r.problem(name, format!("expected local, remote or cog, got {other:?}"));
                ModelBackend::Local
            }
        }
    }
    let portrait = backend(r, "MODEL_PORTRAIT");
    let music = backend(r, "MODEL_MUSIC");
    let sculpture = backend(r, "MODEL_SCULPTURE");
    let any_remote = [portrait, music, sculpture].contains(&ModelBackend::Remote);

    let url = r.raw("PROVIDER_URL").map(|u| u.trim_end_matches('/').to_owned());
    match &url {
        None if any_remote => r.problem("PROVIDER_URL", "is required when a MODEL_* variable is remote"),
        None => {}
        Some(u) if u.starts_with("https://") => {}
        // The token travels in the clear over http: only to this machine.
        Some(u) if u.starts_with("http://") && url_host_is_loopback(u) => {}
        Some(_) => r.problem("PROVIDER_URL", "must start with https:// (http:// only for a loopback host)"),
    }
    let authority =
        |u: &str| u.split_once("://").map_or("", |(_, rest)| rest).split('/').next().unwrap_or("").to_owned();
    if url.as_deref().is_some_and(|u| authority(u).contains('@')) {
        r.problem("PROVIDER_URL", "must not carry credentials; use PROVIDER_TOKEN");
    }
    let token = r.raw("PROVIDER_TOKEN").map(Secret::new);
    let shared_model = r.raw("PROVIDER_MODEL").map(str::to_owned);
    let model = |r: &mut Reader<'_>, name: &'static str, chosen: ModelBackend| {
        let own = r.raw(name).map(str::to_owned).or_else(|| shared_model.clone());
        if chosen == ModelBackend::Remote && own.is_none() {
            r.problem(name, "a remote kind needs its model: set it, or PROVIDER_MODEL for every remote kind");
        }
        own.filter(|_| chosen == ModelBackend::Remote)
    };
    let portrait_model = model(r, "PROVIDER_MODEL_PORTRAIT", portrait);
    let music_model = model(r, "PROVIDER_MODEL_MUSIC", music);
    let sculpture_model = model(r, "PROVIDER_MODEL_SCULPTURE", sculpture);

    // 90% of JOB_TIMEOUT leaves the rest of the attempt to download the outputs.
    let timeout = r.duration("PROVIDER_TIMEOUT", worker.job_timeout.mul_f64(0.9));
    if timeout >= worker.job_timeout {
        r.problem(
            "PROVIDER_TIMEOUT",
            format!("must be shorter than JOB_TIMEOUT ({:?}), which abandons the whole attempt", worker.job_timeout),
        );
    }
    let request_timeout = r.duration("PROVIDER_REQUEST_TIMEOUT", Duration::from_secs(30));
    let concurrency: usize = r.parsed("PROVIDER_CONCURRENCY", 4, "a positive number");
    if concurrency == 0 {
        r.problem("PROVIDER_CONCURRENCY", "must be at least 1");
    }
    let poll_interval = r.duration("PROVIDER_POLL_INTERVAL", Duration::from_millis(250));
    let poll_max_interval = r.duration("PROVIDER_POLL_MAX_INTERVAL", Duration::from_secs(2));
    if poll_max_interval < poll_interval {
        r.problem("PROVIDER_POLL_MAX_INTERVAL", "must not be shorter than PROVIDER_POLL_INTERVAL");
    }
    let retries: u32 = r.parsed("PROVIDER_RETRIES", 3, "a number of retries");
    if retries > 10 {
        r.problem("PROVIDER_RETRIES", "must be at most 10");
    }
    let retry_delay = r.duration("PROVIDER_RETRY_DELAY", Duration::from_millis(500));
    let breaker_failures: u32 = r.parsed("PROVIDER_BREAKER_FAILURES", 5, "a positive number");
    if breaker_failures == 0 {
        r.problem("PROVIDER_BREAKER_FAILURES", "must be at least 1");
    }
    let breaker_cooldown = r.duration("PROVIDER_BREAKER_COOLDOWN", Duration::from_secs(30));
    let max_output_bytes: usize = r.parsed("PROVIDER_MAX_OUTPUT_BYTES", 64 << 20, "a number of bytes");
    if max_output_bytes == 0 {
        r.problem("PROVIDER_MAX_OUTPUT_BYTES", "must be at least 1");
    }

    let provider = match url {
        Some(url) if any_remote => Some(ProviderConfig {
            url,
            token,
            portrait_model,
            music_model,
            sculpture_model,
            timeout,
            request_timeout,
            concurrency,
            poll_interval,
            poll_max_interval,
            retries,
            retry_delay,
            breaker_failures,
            breaker_cooldown,
            max_output_bytes,
        }),
        _ => None,
    };
    let cog_kinds: Vec<GenerationKind> = GenerationKind::ALL
        .into_iter()
        .zip([portrait, music, sculpture])
        .filter(|(_, backend)| *backend == ModelBackend::Cog)
        .map(|(kind, _)| kind)
        .collect();
    let cog = read_cog(r, &cog_kinds, worker);
    ModelsConfig { portrait, music, sculpture, provider, cog }
}

pub(super) fn backend_text(backend: ModelBackend) -> &'static str {
    match backend {
        ModelBackend::Local => "local",
        ModelBackend::Remote => "remote",
        ModelBackend::Cog => "cog",
    }
}
