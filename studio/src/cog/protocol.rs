//! Cog's HTTP protocol as its server (coglet 0.23) speaks it: the health check, the
//! prediction answer, and the input schema of `/openapi.json`, which we check our
//! input templates against.

use serde::Deserialize;
use serde_json::{Map, Value};

/// What `GET /health-check` says (`status` only; the rest is for Cog's own tools).
#[derive(Debug, Deserialize)]
pub(super) struct HealthAnswer {
    #[serde(default)]
    pub status: String,
}

/// A server's state, as the health check and our calls saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Health {
    /// Not asked yet.
    Unknown,
    /// Setup still running: predictions answer 503.
    Starting,
    /// Accepting predictions.
    Ready,
    /// Every prediction slot in use (by us or another worker process).
    Busy,
    /// `setup()` failed; the server stays up and answers 503 to predictions.
    SetupFailed,
    /// No answer (refused, reset, timed out), or a broken one.
    Unreachable(String),
    /// Its input schema does not accept our template: never used by this process.
    Misconfigured(String),
    /// A state this client does not know.
    Other(String),
}

impl Health {
    pub fn from_answer(answer: &HealthAnswer) -> Health {
        match answer.status.as_str() {
            "READY" => Health::Ready,
            "BUSY" => Health::Busy,
            "STARTING" => Health::Starting,
            "SETUP_FAILED" | "DEFUNCT" => Health::SetupFailed,
            other => Health::Other(other.chars().take(40).collect()),
        }
    }

    /// Whether a prediction may be sent: a busy server may free a slot any moment (and
    /// answers 409 if not), an unknown one is tried.
    pub fn accepts_predictions(&self) -> bool {
        matches!(self, Health::Ready | Health::Busy | Health::Unknown)
    }

    /// Whether the style is worth offering to users.
    pub fn is_serving(&self) -> bool {
        matches!(self, Health::Ready | Health::Busy)
    }

    pub fn describe(&self) -> String {
        match self {
            Health::Unknown => "unknown".into(),
            Health::Starting => "starting".into(),
            Health::Ready => "ready".into(),
            Health::Busy => "busy".into(),
            Health::SetupFailed => "setup failed".into(),
            Health::Unreachable(why) => format!("unreachable ({why})"),
            Health::Misconfigured(why) => format!("misconfigured ({why})"),
            Health::Other(status) => format!("status {status}"),
        }
    }
}

/// A prediction as a synchronous `PUT /predictions/{id}` returns it.
#[derive(Debug, Deserialize)]
pub(super) struct CogPrediction {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub output: Value,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub metrics: Metrics,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Metrics {
    /// Seconds the predictor ran.
    #[serde(default)]
    pub predict_time: Option<f64>,
}

/// Where the JSON schema of a server's inputs says our template is wrong: unknown
/// names (Cog drops them silently, so the model would run without them), required
/// inputs left out, literal values of the wrong type or outside an enum. Empty when
/// the template fits.
pub(super) fn template_mismatches(openapi: &Value, template: &Map<String, Value>) -> Result<Vec<String>, String> {
    let input = input_schema(openapi).ok_or("the document has no components.schemas.Input")?;
    let properties = input.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut problems = Vec::new();
    for (name, value) in template {
        let Some(property) = properties.get(name) else {
            let known: Vec<&str> = properties.keys().map(String::as_str).collect();
            problems.push(format!("input {name:?} is not an input of this model (it has {})", known.join(", ")));
            continue;
        };
        if let Some(problem) = value_problem(openapi, name, property, value) {
            problems.push(problem);
        }
    }
    for required in input.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(required) = required.as_str().filter(|r| !template.contains_key(*r)) {
            problems.push(format!("the model requires input {required:?}, which the template does not give"));
        }
    }
    Ok(problems)
}

fn input_schema(openapi: &Value) -> Option<&Map<String, Value>> {
    openapi.pointer("/components/schemas/Input").and_then(Value::as_object)
}

/// A literal (or a placeholder's known type) the property cannot take.
fn value_problem(openapi: &Value, name: &str, property: &Value, value: &Value) -> Option<String> {
    let property = resolve(openapi, property);
    // What the value will be once filled in: placeholders have known types.
    let kind = match value.as_str() {
        Some("{max_side}") => "integer",
        Some(s) if petportrait_core::config::is_placeholder(s) => "string",
        _ => json_type(value),
    };
    if let Some(expected) = property.get("type").and_then(Value::as_str) {
        let fits = expected == kind || (expected == "number" && kind == "integer");
        if !fits {
            return Some(format!("input {name:?} takes a {expected}, the template gives a {kind}"));
        }
    }
    let choices = property.get("enum").and_then(Value::as_array);
    let literal = value.as_str().is_none_or(|s| !petportrait_core::config::is_placeholder(s));
    if let Some(choices) = choices.filter(|_| literal)
        && !choices.contains(value)
    {
        return Some(format!(
            "input {name:?} takes one of {}, the template gives {value}",
            Value::from(choices.clone())
        ));
    }
    None
}

/// A property as its schema is: Cog writes enums as `allOf: [{$ref}]`.
fn resolve<'a>(openapi: &'a Value, property: &'a Value) -> &'a Value {
    let reference = property
        .get("$ref")
        .or_else(|| property.pointer("/allOf/0/$ref"))
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'));
    reference.and_then(|pointer| openapi.pointer(pointer)).unwrap_or(property)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shape Cog's schema generator writes (see `tests/cog/portrait/.cog`).
    fn openapi() -> Value {
        json!({"components": {"schemas": {
            "Input": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "format": "uri"},
                "prompt": {"type": "string", "default": "x"},
                "strength": {"type": "number", "minimum": 0, "maximum": 1},
                "steps": {"type": "integer"},
                "style": {"allOf": [{"$ref": "#/components/schemas/style"}]}
            }},
            "style": {"type": "string", "enum": ["watercolor", "pencil_sketch"]}
        }}})
    }

    fn template(value: Value) -> Map<String, Value> {
        value.as_object().expect("an object").clone()
    }

    #[test]
    fn a_fitting_template_has_no_mismatch() {
        let t = template(json!({"image": "{photo}", "style": "{style}", "strength": 0.6, "steps": 20}));
        assert_eq!(template_mismatches(&openapi(), &t), Ok(vec![]));
    }

    #[test]
    fn unknown_names_missing_required_inputs_and_wrong_literals_are_named() {
        let t = template(json!({"photo": "{photo}", "strength": "strong", "steps": "{max_side}", "style": "oil"}));
        let problems = template_mismatches(&openapi(), &t).expect("a schema");
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("\"photo\" is not an input")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("\"strength\" takes a number")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("\"style\" takes one of")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("requires input \"image\"")), "{problems:?}");
    }

    #[test]
    fn a_document_without_an_input_schema_is_an_error() {
        assert!(template_mismatches(&json!({"openapi": "3.0.2"}), &Map::new()).is_err());
    }
}
