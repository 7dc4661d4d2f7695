//! What a user may choose about a portrait's file, within limits: its longest side and
//! its format. Parsed from the request's `options` at the API's edge, stored as given,
//! and parsed again by the worker.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::GenerationKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Jpeg,
    Png,
    /// Lossless WebP (the pure-Rust encoder writes lossless only).
    Webp,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 3] = [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp];

    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
        }
    }
}

/// The longest side of a portrait is at most `max_side` (a smaller photo is not
/// enlarged: that would add pixels, not detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputOptions {
    pub max_side: u32,
    pub format: OutputFormat,
}

pub const MAX_SIDE_MIN: u32 = 256;
pub const MAX_SIDE_MAX: u32 = 2048;
pub const MAX_SIDE_DEFAULT: u32 = 1024;

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions { max_side: MAX_SIDE_DEFAULT, format: OutputFormat::Jpeg }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOptions(String);

impl OutputOptions {
    /// Parses the `options` of a request for `kind`: only a portrait's file can be
    /// chosen today, so music and sculptures take none.
    pub fn parse_for(kind: GenerationKind, options: &Map<String, Value>) -> Result<OutputOptions, InvalidOptions> {
        match (kind, options.keys().next()) {
            (GenerationKind::Portrait, _) | (_, None) => OutputOptions::parse(options),
            (other, Some(name)) => {
                Err(InvalidOptions(format!("{} generations take no options (got {name:?})", other.as_str())))
            }
        }
    }

    /// Parses a request's `options`. Unknown keys are refused, so a misspelt option is
    /// an error rather than silently ignored.
    pub fn parse(options: &Map<String, Value>) -> Result<OutputOptions, InvalidOptions> {
        let mut parsed = OutputOptions::default();
        for (key, value) in options {
            match key.as_str() {
                "max_side" => {
                    parsed.max_side = value
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| (MAX_SIDE_MIN..=MAX_SIDE_MAX).contains(n))
                        .ok_or_else(|| {
                            InvalidOptions(format!(
                                "max_side must be a whole number from {MAX_SIDE_MIN} to {MAX_SIDE_MAX}"
                            ))
                        })?;
                }
                "format" => {
                    parsed.format = value
                        .as_str()
                        .and_then(|f| OutputFormat::ALL.into_iter().find(|known| known.as_str() == f))
                        .ok_or_else(|| InvalidOptions("format must be \"jpeg\", \"png\" or \"webp\"".into()))?;
                }
                other => {
                    return Err(InvalidOptions(format!("unknown option {other:?}; options are max_side and format")));
                }
            }
        }
        Ok(parsed)
    }

    /// Parses the options as stored with a generation (JSON text).
    pub fn parse_stored(text: &str) -> Result<OutputOptions, InvalidOptions> {
        let map: Map<String, Value> =
            serde_json::from_str(text).map_err(|e| InvalidOptions(format!("stored options are not an object: {e}")))?;
        OutputOptions::parse(&map)
    }

    /// How the catalogue describes the choices.
    pub fn catalogue() -> Value {
        serde_json::json!({
            "max_side": {"min": MAX_SIDE_MIN, "max": MAX_SIDE_MAX, "default": MAX_SIDE_DEFAULT},
            "format": {"values": OutputFormat::ALL.map(OutputFormat::as_str), "default": "jpeg"},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<OutputOptions, InvalidOptions> {
        OutputOptions::parse_stored(json)
    }

    #[test]
    fn defaults_choices_and_refusals() {
        assert_eq!(parse("{}").expect("empty"), OutputOptions::default());
        assert_eq!(
            parse(r#"{"max_side": 512, "format": "png"}"#).expect("valid"),
            OutputOptions { max_side: 512, format: OutputFormat::Png }
        );
        for bad in [
            r#"{"max_side": 100}"#,
            r#"{"max_side": 4096}"#,
            r#"{"max_side": "big"}"#,
            r#"{"format": "gif"}"#,
            r#"{"size": 512}"#,
            "[]",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(parse(r#"{"colour": 1}"#).expect_err("unknown").to_string().contains("colour"));
    }
}
