//! `COG_*`: self-hosted Cog model servers, for the kinds whose `MODEL_*` is `cog`.
//!
//! Every style of a `cog` kind gets one resolved [`CogRoute`]: the servers that run it
//! (`COG_URL_<KIND>_<STYLE>`, else `COG_URL_<KIND>`) and how the style becomes the
//! model's input (`COG_INPUT_<KIND>_<STYLE>`, else `COG_INPUT_<KIND>`, else
//! `{"image": "{photo}", "style": "{style}"}`).

use std::time::Duration;

use super::{Reader, WorkerConfig};
use crate::domain::{CATALOGUE, GenerationKind};

/// The placeholders an input template may use, each as a whole JSON string value.
pub const INPUT_PLACEHOLDERS: [&str; 5] = ["{photo}", "{style}", "{kind}", "{max_side}", "{format}"];

/// How long a prediction we asked to stop may take to answer before its connection is
/// dropped (which ends it too): an attempt lasts at most `COG_TIMEOUT` plus this.
pub const COG_CANCEL_GRACE: Duration = Duration::from_secs(5);

/// The input template used when a kind names none.
const DEFAULT_INPUT: &str = r#"{"image": "{photo}", "style": "{style}"}"#;

/// The Cog servers of every `cog` kind and the settings they share.
#[derive(Clone, Debug)]
pub struct CogConfig {
    /// One per style of every `cog` kind.
    pub routes: Vec<CogRoute>,
    /// Every server named by a route, once.
    pub servers: Vec<CogServer>,
    /// The longest one prediction may take, from the start of the render (waiting for
    /// a free server included); then it is canceled and the attempt retried.
    pub timeout: Duration,
    /// Each call other than the prediction itself (health check, schema, cancel).
    pub request_timeout: Duration,
    /// How often every server's `/health-check` is read.
    pub health_interval: Duration,
    /// The largest prediction answer read (its outputs are data URLs in it).
    pub max_output_bytes: usize,
}

impl CogConfig {
    pub fn route(&self, kind: GenerationKind, style: &str) -> Option<&CogRoute> {
        self.routes.iter().find(|r| r.kind == kind && r.style == style)
    }
}

/// One Cog server and the predictions it runs at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CogServer {
    /// Base URL without a trailing slash; predictions go to `{url}/predictions/{id}`.
    pub url: String,
    /// `#concurrency=N` after its URL, else `COG_CONCURRENCY`: Cog runs one prediction
    /// at a time unless started with `COG_MAX_CONCURRENCY`, and does not say over HTTP.
    pub slots: usize,
}

/// Where one style runs and what its model is given.
#[derive(Clone, Debug)]
pub struct CogRoute {
    pub kind: GenerationKind,
    pub style: &'static str,
    /// The URLs of its servers (see `CogConfig::servers`).
    pub servers: Vec<String>,
    /// A JSON object whose string values equal to a placeholder (`{photo}`, …) are
    /// replaced by the request's values.
    pub input: serde_json::Map<String, serde_json::Value>,
}

/// `COG_*`, read only when some kind is `cog`.
pub(super) fn read_cog(r: &mut Reader<'_>, kinds: &[GenerationKind], worker: &WorkerConfig) -> Option<CogConfig> {
    if kinds.is_empty() {
        return None;
    }
    let default_concurrency: usize = r.parsed("COG_CONCURRENCY", 1, "a positive number");
    if default_concurrency == 0 {
        r.problem("COG_CONCURRENCY", "must be at least 1");
    }
    let mut routes = Vec::new();
    let mut all: Vec<(String, CogServer)> = Vec::new();
    for &kind in kinds {
        let kind_name = kind.as_str().to_ascii_uppercase();
        let kind_servers = servers(r, &format!("COG_URL_{kind_name}"), default_concurrency, &mut all);
        let kind_input = template(r, &format!("COG_INPUT_{kind_name}"));
        for style in CATALOGUE.iter().filter(|s| s.kind == kind) {
            let suffix = format!("{kind_name}_{}", style.id.to_ascii_uppercase().replace('-', "_"));
            let style_servers = servers(r, &format!("COG_URL_{suffix}"), default_concurrency, &mut all);
            let style_input = template(r, &format!("COG_INPUT_{suffix}"));
            let servers = match (style_servers, &kind_servers) {
                (Some(own), _) => own,
                (None, Some(shared)) => shared.clone(),
                (None, None) => {
                    r.problem(
                        format!("COG_URL_{kind_name}"),
                        format!("MODEL_{kind_name}=cog needs its servers (or COG_URL_{suffix} for this style)"),
                    );
                    Vec::new()
                }
            };
            let input = style_input
                .or_else(|| kind_input.clone())
                .unwrap_or_else(|| serde_json::from_str(DEFAULT_INPUT).expect("the default template is JSON"));
            routes.push(CogRoute { kind, style: style.id, servers, input });
        }
    }

    // 90% of JOB_TIMEOUT leaves the rest of the attempt to cancel a late prediction and
    // store the outputs.
    let default_timeout = worker.job_timeout.mul_f64(0.9).min(worker.job_timeout.saturating_sub(COG_CANCEL_GRACE * 2));
    let timeout = r.duration("COG_TIMEOUT", default_timeout.max(Duration::from_secs(1)));
    if timeout + COG_CANCEL_GRACE >= worker.job_timeout {
        r.problem(
            "COG_TIMEOUT",
            format!(
                "must end at least {COG_CANCEL_GRACE:?} before JOB_TIMEOUT ({:?}), which abandons the whole attempt",
                worker.job_timeout
            ),
        );
    }
    let request_timeout = r.duration("COG_REQUEST_TIMEOUT", Duration::from_secs(10));
    let health_interval = r.duration("COG_HEALTH_INTERVAL", Duration::from_secs(5));
    let max_output_bytes: usize = r.parsed("COG_MAX_OUTPUT_BYTES", 64 << 20, "a number of bytes");
    if max_output_bytes == 0 {
        r.problem("COG_MAX_OUTPUT_BYTES", "must be at least 1");
    }
    let servers = all.into_iter().map(|(_, server)| server).collect();
    Some(CogConfig { routes, servers, timeout, request_timeout, health_interval, max_output_bytes })
}

/// A comma-separated list of `http(s)://host[:port][/prefix][#concurrency=N]`; each
/// server is added to `all` (named by the variable that first listed it), and one
/// listed again must say the same concurrency.
fn servers(
    r: &mut Reader<'_>,
    name: &str,
    default_slots: usize,
    all: &mut Vec<(String, CogServer)>,
) -> Option<Vec<String>> {
    let raw = r.raw(name)?;
    let mut urls = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (base, slots) = match item.split_once("#concurrency=") {
            Some((base, n)) => match n.parse::<usize>() {
                Ok(n) if n >= 1 => (base, n),
                _ => {
                    r.problem(name.to_owned(), format!("{item:?}: #concurrency= takes a positive number"));
                    continue;
                }
            },
            None => (item, default_slots),
        };
        match check_server_url(base) {
            Ok(url) if urls.contains(&url) => r.problem(name.to_owned(), format!("{url} is listed twice")),
            Ok(url) => {
                match all.iter().find(|(_, s)| s.url == url) {
                    Some((first, known)) if known.slots != slots => r.problem(
                        name.to_owned(),
                        format!("{url} has concurrency {slots} here and {} in {first}", known.slots),
                    ),
                    Some(_) => {}
                    None => all.push((name.to_owned(), CogServer { url: url.clone(), slots })),
                }
                urls.push(url);
            }
            Err(why) => r.problem(name.to_owned(), format!("{item:?}: {why}")),
        }
    }
    if urls.is_empty() {
        r.problem(name.to_owned(), "names no server");
    }
    Some(urls)
}

/// A Cog server's base URL. Cog has no authentication of its own, so the operator's
/// network protects it: plain http is accepted on any host, but no credentials, query
/// or other fragment, which the server would never see as intended.
fn check_server_url(item: &str) -> Result<String, &'static str> {
    let (scheme, rest) = item.split_once("://").ok_or("not a URL")?;
    if !matches!(scheme, "http" | "https") {
        return Err("must start with http:// or https://");
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err("has no host");
    }
    if authority.contains('@') {
        return Err("must not carry credentials");
    }
    if rest.contains(['?', '#']) {
        return Err("must not have a query or fragment");
    }
    Ok(item.trim_end_matches('/').to_owned())
}

/// A JSON object template; every placeholder-looking value must be a known one, and
/// the photo must go in somewhere.
fn template(r: &mut Reader<'_>, name: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let raw = r.raw(name)?;
    let value: serde_json::Value = match serde_json::from_str(raw) {
        Ok(value) => value,
        Err(e) => {
            r.problem(name.to_owned(), format!("not JSON: {e}"));
            return None;
        }
    };
    let serde_json::Value::Object(map) = value else {
        r.problem(name.to_owned(), "must be a JSON object of the model's inputs");
        return None;
    };
    let mut placeholders = Vec::new();
    collect_placeholders(&serde_json::Value::Object(map.clone()), &mut placeholders);
    for unknown in placeholders.iter().filter(|p| !INPUT_PLACEHOLDERS.contains(&p.as_str())) {
        r.problem(
            name.to_owned(),
            format!("unknown placeholder {unknown}; the known ones are {}", INPUT_PLACEHOLDERS.join(", ")),
        );
    }
    if !placeholders.iter().any(|p| p == "{photo}") {
        r.problem(name.to_owned(), "never uses {photo}: the model would not see the pet");
    }
    Some(map)
}

/// Strings shaped like `{word}`, anywhere in the value.
fn collect_placeholders(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) if is_placeholder(s) => found.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_placeholders(v, found)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_placeholders(v, found)),
        _ => {}
    }
}

pub fn is_placeholder(s: &str) -> bool {
    s.len() > 2
        && s.starts_with('{')
        && s.ends_with('}')
        && s[1..s.len() - 1].chars().all(|c| c.is_ascii_lowercase() || c == '_')
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use crate::domain::GenerationKind;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn names(err: &ConfigError) -> Vec<&str> {
        err.problems.iter().map(|p| p.variable.as_ref()).collect()
    }

    #[test]
    fn every_style_of_a_cog_kind_gets_its_servers_and_inputs() {
        let c = parse(&[
            ("MODEL_PORTRAIT", "cog"),
            ("COG_URL_PORTRAIT", "http://gpu-1:5000/, http://gpu-2:5000#concurrency=2"),
            ("COG_URL_PORTRAIT_OIL_PAINT", "http://gpu-3:5000"),
            ("COG_INPUT_PORTRAIT_OIL_PAINT", r#"{"image": "{photo}", "prompt": "oil", "size": "{max_side}"}"#),
        ])
        .expect("valid");
        let cog = c.models.cog.as_ref().expect("cog");
        let watercolor = cog.route(GenerationKind::Portrait, "watercolor").expect("a route");
        assert_eq!(watercolor.servers, ["http://gpu-1:5000", "http://gpu-2:5000"]);
        assert_eq!(
            serde_json::Value::Object(watercolor.input.clone()),
            serde_json::json!({"image": "{photo}", "style": "{style}"})
        );
        let oil = cog.route(GenerationKind::Portrait, "oil_paint").expect("a route");
        assert_eq!(
            (oil.servers.as_slice(), oil.input["prompt"].as_str()),
            (&["http://gpu-3:5000".to_owned()][..], Some("oil"))
        );
        let slots: Vec<(&str, usize)> = cog.servers.iter().map(|s| (s.url.as_str(), s.slots)).collect();
        assert_eq!(slots, [("http://gpu-1:5000", 1), ("http://gpu-2:5000", 2), ("http://gpu-3:5000", 1)]);
        assert!(cog.route(GenerationKind::Music, "pet_theme").is_none(), "music stays local");
        assert_eq!(cog.timeout, std::time::Duration::from_secs(540), "90% of the default JOB_TIMEOUT");
    }

    #[test]
    fn bad_servers_and_templates_are_named() {
        let err = parse(&[("MODEL_MUSIC", "cog")]).expect_err("no servers");
        assert_eq!(names(&err), ["COG_URL_MUSIC"]);
        let err = parse(&[
            ("MODEL_PORTRAIT", "cog"),
            ("COG_URL_PORTRAIT", "gpu-1:5000,http://u:p@gpu-2:5000,http://gpu-3:5000#concurrency=0"),
            ("COG_INPUT_PORTRAIT", r#"{"image": "{picture}"}"#),
            ("COG_INPUT_PORTRAIT_WATERCOLOR", "[1]"),
            ("COG_URL_PORTRAIT_POP_ART", "http://gpu-4:5000#concurrency=2"),
            ("COG_URL_PORTRAIT_PIXEL_ART", "http://gpu-4:5000"),
        ])
        .expect_err("invalid");
        let messages: Vec<String> = err.problems.iter().map(|p| format!("{}: {}", p.variable, p.message)).collect();
        for expected in [
            "COG_URL_PORTRAIT: \"gpu-1:5000\": not a URL",
            "COG_URL_PORTRAIT: \"http://u:p@gpu-2:5000\": must not carry credentials",
            "#concurrency= takes a positive number",
            "COG_INPUT_PORTRAIT: unknown placeholder {picture}",
            "COG_INPUT_PORTRAIT: never uses {photo}",
            "COG_INPUT_PORTRAIT_WATERCOLOR: must be a JSON object",
            "COG_URL_PORTRAIT_PIXEL_ART: http://gpu-4:5000 has concurrency 1 here and 2 in COG_URL_PORTRAIT_POP_ART",
        ] {
            assert!(messages.iter().any(|m| m.contains(expected)), "{expected:?} not in {messages:#?}");
        }
    }
}
