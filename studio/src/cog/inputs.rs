//! A style's input template (`COG_INPUT_*`) filled in for one request.

use serde_json::{Map, Value};

use crate::RenderRequest;

/// The template with every placeholder string replaced by the request's value:
/// `{photo}` the prepared photo's data URL, `{style}`, `{kind}`, `{format}` strings,
/// `{max_side}` a number. The configuration refused unknown placeholders.
pub(super) fn fill(template: &Map<String, Value>, request: &RenderRequest, photo: &str) -> Value {
    fn walk(value: &Value, request: &RenderRequest, photo: &str) -> Value {
        match value {
            Value::String(s) => match s.as_str() {
                "{photo}" => Value::from(photo),
                "{style}" => Value::from(request.style.as_str()),
                "{kind}" => Value::from(request.kind.as_str()),
                "{format}" => Value::from(request.options.format.as_str()),
                "{max_side}" => Value::from(request.options.max_side),
                _ => value.clone(),
            },
            Value::Array(items) => Value::Array(items.iter().map(|v| walk(v, request, photo)).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), walk(v, request, photo))).collect())
            }
            other => other.clone(),
        }
    }
    walk(&Value::Object(template.clone()), request, photo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use petportrait_core::domain::GenerationKind;
    use petportrait_core::output_options::OutputOptions;
    use serde_json::json;

    #[test]
    fn placeholders_become_the_requests_values_and_literals_stay() {
        let request = RenderRequest {
            kind: GenerationKind::Portrait,
            style: "oil_paint".into(),
            input: bytes::Bytes::new(),
            orientation: None,
            options: OutputOptions::default(),
            idempotency_key: "gen_1-a1".into(),
            pending_prediction: None,
        };
        let template = json!({"image": "{photo}", "prompt": "an oil painting of a pet", "style": "{style}",
            "size": "{max_side}", "nested": [{"kind": "{kind}"}], "strength": 0.6});
        let filled = fill(template.as_object().expect("object"), &request, "data:image/jpeg;base64,AA==");
        assert_eq!(filled["image"], "data:image/jpeg;base64,AA==");
        assert_eq!(filled["style"], "oil_paint");
        assert_eq!(filled["prompt"], "an oil painting of a pet");
        assert_eq!(filled["size"], json!(OutputOptions::default().max_side));
        assert_eq!(filled["nested"][0]["kind"], "portrait");
        assert_eq!(filled["strength"], 0.6);
    }
}
