//! The predictions protocol as we read it (Replicate's shape: `{id, status, input,
//! output, error, logs, urls: {get, cancel}}`), tolerant of fields and states we do not
//! know, and what our studio makes of a prediction: how far it got, why it failed,
//! which files it produced.

use serde::Deserialize;
use serde_json::Value;

use petportrait_core::domain::GenerationKind;

/// A prediction as the provider reports it.
#[derive(Clone, Debug, Deserialize)]
pub(super) struct Prediction {
    pub id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub output: Value,
    #[serde(default)]
    pub error: Value,
    #[serde(default)]
    pub logs: Option<String>,
    #[serde(default)]
    pub urls: Urls,
    /// Not part of Replicate's protocol (its SDKs read tqdm bars from `logs`); some
    /// providers report it: a fraction of one or a percentage.
    #[serde(default)]
    pub progress: Option<f64>,
    /// What the prediction was given (compared when a lost create is looked for).
    #[serde(default)]
    pub input: Value,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// One page of `GET /v1/predictions` (newest first).
#[derive(Debug, Deserialize)]
pub(super) struct PredictionPage {
    #[serde(default)]
    pub results: Vec<Prediction>,
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct Urls {
    #[serde(default)]
    pub get: Option<String>,
    #[serde(default)]
    pub cancel: Option<String>,
}

/// Where a prediction is. Unknown states are treated as still running: the protocol
/// has grown states before (`aborted`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Starting,
    Processing,
    Succeeded,
    Failed,
    /// `canceled`, or `aborted` (its deadline passed before it started).
    Ended,
    Unknown,
}

impl Prediction {
    pub fn phase(&self) -> Phase {
        match self.status.as_str() {
            "starting" => Phase::Starting,
            "processing" => Phase::Processing,
            "succeeded" => Phase::Succeeded,
            "failed" => Phase::Failed,
            "canceled" | "aborted" => Phase::Ended,
            _ => Phase::Unknown,
        }
    }

    /// The model's own progress in percent: the `progress` field, else the last
    /// percentage printed in `logs` (a tqdm bar: ` 45%|████▌     | 9/20`).
    pub fn percent(&self) -> Option<u8> {
        if let Some(p) = self.progress.filter(|p| p.is_finite() && *p >= 0.0) {
            let percent = if p <= 1.0 { p * 100.0 } else { p };
            return Some(percent.min(100.0) as u8);
        }
        last_percentage(self.logs.as_deref()?)
    }

    /// The provider's error, as text for our logs (bounded, no data URIs).
    pub fn error_text(&self) -> String {
        match &self.error {
            Value::Null => "no error given".to_owned(),
            Value::String(text) => excerpt(text),
            other => excerpt(&other.to_string()),
        }
    }

    /// What kind of failure the whole error describes.
    pub fn failure(&self) -> Failure {
        match &self.error {
            Value::String(text) => classify_failure(text),
            other => classify_failure(&other.to_string()),
        }
    }
}

/// The last `NN%` (0-100, decimals allowed) in the tail of a log.
fn last_percentage(logs: &str) -> Option<u8> {
    let bytes = logs.as_bytes();
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    let mut end = tail.len();
    while let Some(at) = tail[..end].iter().rposition(|b| *b == b'%') {
        end = at;
        let start = tail[..at].iter().rposition(|b| !(b.is_ascii_digit() || *b == b'.')).map_or(0, |i| i + 1);
        let number = std::str::from_utf8(&tail[start..at]).ok().and_then(|t| t.parse::<f64>().ok());
        if let Some(n) = number.filter(|n| (0.0..=100.0).contains(n)) {
            return Some(n as u8);
        }
    }
    None
}

/// How a failed prediction (or a refused request) reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Refused under the provider's content policy: permanent.
    ContentPolicy,
    /// Interrupted on the provider's side; another prediction may work.
    Transient,
    /// The model failed on this input.
    Model,
}

/// Words that mark a content-policy refusal, matched as whole words (so an id holding
/// `e005` does not count), case-insensitively, anywhere in the error: a string, or an
/// object whose `code`, `type`, `message` or `detail` says so. They cover Replicate
/// (`E005`, "flagged as sensitive", models' "NSFW content detected"), fal.ai
/// (`content_policy_violation`), OpenAI-style `content_policy_violation` codes and
/// safety checkers' wording.
const CONTENT_POLICY_WORDS: &[&str] = &[
    "content_policy",
    "content_policy_violation",
    "content policy",
    "nsfw",
    "e005",
    "flagged as sensitive",
    "sensitive content",
    "safety checker",
    "safety_checker",
    "safety filter",
    "safety system",
    "moderation",
    "unsafe content",
];

/// Replicate's "Prediction interrupted; please retry (code: PA)" and the like, and a
/// safety service that failed rather than judged ("safety checker timed out").
const TRANSIENT_WORDS: &[&str] =
    &["please retry", "interrupted", "try again later", "timed out", "timeout", "unavailable", "temporarily"];

/// Transient wording wins over a content-policy word: "the moderation service is
/// unavailable, please retry" is an outage to retry, not a verdict on the photo, and
/// calling it a refusal would tell the user their photo broke the policy.
pub(crate) fn classify_failure(error: &str) -> Failure {
    let text = error.to_ascii_lowercase();
    if TRANSIENT_WORDS.iter().any(|w| contains_word(&text, w)) {
        Failure::Transient
    } else if CONTENT_POLICY_WORDS.iter().any(|w| contains_word(&text, w)) {
        Failure::ContentPolicy
    } else {
        Failure::Model
    }
}

/// `needle` in `haystack` with no letter or digit right before or after it.
fn contains_word(haystack: &str, needle: &str) -> bool {
    let bytes = haystack.as_bytes();
    haystack.match_indices(needle).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + needle.len()).copied();
        !before.is_some_and(|b| b.is_ascii_alphanumeric()) && !after.is_some_and(|b| b.is_ascii_alphanumeric())
    })
}

/// A provider's text for our logs: at most 300 characters, cut before any base64
/// payload (an error may echo the input, which holds the user's photo).
pub(crate) fn excerpt(text: &str) -> String {
    let text = text.split("base64,").next().unwrap_or_default();
    let mut out: String = text.chars().take(300).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// The output URLs of a succeeded prediction, in order: `output` may be one URL, a
/// list of them, or an object holding them (at most a few levels deep).
pub(crate) fn output_urls(output: &Value) -> Vec<String> {
    fn walk(value: &Value, depth: u8, out: &mut Vec<String>) {
        match value {
            Value::String(s) if s.starts_with("https://") || s.starts_with("http://") || s.starts_with("data:") => {
                out.push(s.clone())
            }
            Value::Array(items) if depth < 4 => items.iter().for_each(|v| walk(v, depth + 1, out)),
            Value::Object(map) if depth < 4 => map.values().for_each(|v| walk(v, depth + 1, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(output, 0, &mut out);
    out
}

/// The content types each kind may produce, with their file extensions.
fn allowed_types(kind: GenerationKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        GenerationKind::Portrait => &[("image/jpeg", "jpg"), ("image/png", "png"), ("image/webp", "webp")],
        GenerationKind::Music => {
            &[("audio/mpeg", "mp3"), ("audio/wav", "wav"), ("audio/ogg", "ogg"), ("audio/flac", "flac")]
        }
        // A model, and optionally a rendered preview of it.
        GenerationKind::Sculpture => &[
            ("model/gltf-binary", "glb"),
            ("model/gltf+json", "gltf"),
            ("model/stl", "stl"),
            ("model/obj", "obj"),
            ("image/png", "png"),
        ],
    }
}

/// The type of an output: what its bytes say when they say it (images, audio, glb),
/// else the declared `Content-Type`, else the URL's extension. `None` when the kind
/// does not produce it.
pub(crate) fn output_type(
    kind: GenerationKind,
    bytes: &[u8],
    declared: Option<&str>,
    url_path: &str,
) -> Option<(&'static str, &'static str)> {
    let allowed = allowed_types(kind);
    let by_name = |name: &str| allowed.iter().copied().find(|(t, _)| *t == name);
    if let Some(sniffed) = sniff(bytes) {
        return by_name(sniffed);
    }
    let declared = declared
        .map(|d| d.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty() && d != "application/octet-stream" && d != "binary/octet-stream");
    if let Some(declared) = declared {
        return by_name(normalise(&declared));
    }
    let extension = url_path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    let extension = if extension == "jpeg" { "jpg".to_owned() } else { extension };
    allowed.iter().copied().find(|(_, e)| *e == extension)
}

fn normalise(content_type: &str) -> &str {
    match content_type {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "audio/mp3" | "audio/mpeg3" => "audio/mpeg",
        "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "audio/wav",
        "audio/x-flac" => "audio/flac",
        "application/sla" | "model/x.stl-binary" | "model/x.stl-ascii" => "model/stl",
        other => other,
    }
}

fn sniff(bytes: &[u8]) -> Option<&'static str> {
    match image::guess_format(bytes) {
        Ok(image::ImageFormat::Jpeg) => return Some("image/jpeg"),
        Ok(image::ImageFormat::Png) => return Some("image/png"),
        Ok(image::ImageFormat::WebP) => return Some("image/webp"),
        _ => {}
    }
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
        Some("audio/wav")
    } else if starts(b"OggS") {
        Some("audio/ogg")
    } else if starts(b"fLaC") {
        Some("audio/flac")
    } else if starts(b"ID3") || (bytes.len() > 1 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0) {
        Some("audio/mpeg")
    } else if starts(b"glTF") {
        Some("model/gltf-binary")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prediction(value: Value) -> Prediction {
        serde_json::from_value(value).expect("a prediction")
    }

    #[test]
    fn unknown_fields_and_states_are_tolerated() {
        let p =
            prediction(json!({"id": "p1", "status": "queued_somewhere", "metrics": {"x": 1}, "data_removed": false}));
        assert_eq!(p.phase(), Phase::Unknown);
        assert_eq!(prediction(json!({"id": "p", "status": "aborted"})).phase(), Phase::Ended);
        assert!(p.urls.get.is_none());
    }

    #[test]
    fn progress_comes_from_the_field_or_the_last_tqdm_bar() {
        assert_eq!(prediction(json!({"id": "p", "progress": 0.42})).percent(), Some(42));
        assert_eq!(prediction(json!({"id": "p", "progress": 73})).percent(), Some(73));
        let logs = "loading\n  5%|▌         | 1/20\n 45%|████▌     | 9/20 [00:03<00:04]\nusing 120% of RAM?";
        assert_eq!(prediction(json!({"id": "p", "logs": logs})).percent(), Some(45));
        assert_eq!(prediction(json!({"id": "p", "logs": "warming up"})).percent(), None);
    }

    #[test]
    fn content_policy_errors_are_recognised_in_strings_and_codes() {
        for error in [
            "NSFW content detected. Try running it again, or try a different prompt.",
            "Your input was flagged as sensitive (E005)",
            r#"{"code":"content_policy_violation","message":"refused"}"#,
            r#"{"detail":[{"type":"content_policy_violation","msg":"x"}]}"#,
            "Potential NSFW content was detected by the safety checker",
        ] {
            assert_eq!(classify_failure(error), Failure::ContentPolicy, "{error}");
        }
        for error in [
            "Prediction interrupted; please retry (code: PA)",
            "safety checker timed out, please retry",
            "moderation service unavailable",
        ] {
            assert_eq!(classify_failure(error), Failure::Transient, "{error}: an outage, not a verdict");
        }
        for error in ["CUDA out of memory", "file e0051234 not found", "unsafe_contentious", "nsfwish"] {
            assert_eq!(classify_failure(error), Failure::Model, "{error}");
        }
    }

    #[test]
    fn excerpts_are_short_and_drop_payloads() {
        let text = format!("invalid input.image: data:image/jpeg;base64,{}", "A".repeat(5000));
        assert_eq!(excerpt(&text), "invalid input.image: data:image/jpeg;");
        assert!(excerpt(&"x".repeat(1000)).chars().count() <= 301);
    }

    #[test]
    fn output_urls_are_found_in_any_shape() {
        assert_eq!(output_urls(&json!("https://cdn/x.png")), ["https://cdn/x.png"]);
        assert_eq!(
            output_urls(&json!({"image": "https://cdn/a.png", "seed": 4, "more": ["https://cdn/b.png", "text"]})),
            ["https://cdn/a.png", "https://cdn/b.png"]
        );
        assert!(output_urls(&Value::Null).is_empty());
    }

    #[test]
    fn output_types_follow_the_bytes_then_the_header_then_the_name() {
        let png = b"\x89PNG\r\n\x1a\n0000";
        let kind = GenerationKind::Portrait;
        assert_eq!(output_type(kind, png, Some("image/jpeg"), "/x.jpg"), Some(("image/png", "png")));
        assert_eq!(output_type(kind, b"??", Some("image/jpg; q=1"), "/x"), Some(("image/jpeg", "jpg")));
        assert_eq!(
            output_type(kind, b"??", Some("application/octet-stream"), "/out.JPEG"),
            Some(("image/jpeg", "jpg"))
        );
        assert_eq!(output_type(kind, b"??", Some("text/html"), "/x.png"), None);
        assert_eq!(output_type(kind, b"RIFF\0\0\0\0WAVE", None, "/x.png"), None, "audio is no portrait");
        assert_eq!(output_type(GenerationKind::Music, b"RIFF\0\0\0\0WAVEfmt ", None, "/x"), Some(("audio/wav", "wav")));
        assert_eq!(output_type(GenerationKind::Sculpture, b"solid pet", None, "/pet.stl"), Some(("model/stl", "stl")));
    }
}
