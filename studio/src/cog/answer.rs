//! What a Cog server's answer to a synchronous prediction means: the files, another
//! try (409, a lost or unready server), or the error that ends the render.

use bytes::Bytes;
use reqwest::StatusCode;

use super::protocol::{CogPrediction, Health};
use super::{CogError, Inner, MAX_OUTPUTS, Server, Setback};
use crate::remote::{Failure, classify_failure, decode_data_uri, excerpt, output_filename, output_type, output_urls};
use crate::{RenderRequest, RenderedFile, StudioError};

impl Inner {
    /// What the server's answer (or its absence) means.
    pub(super) fn read_answer(
        &self,
        server: &Server,
        id: &str,
        answer: Option<Result<(StatusCode, Option<Bytes>), reqwest::Error>>,
        stopped: Option<StudioError>,
        request: &RenderRequest,
        predict_time: &mut Option<f64>,
    ) -> Result<Vec<RenderedFile>, Result<Setback, StudioError>> {
        let url = || server.url.clone();
        let (status, body) = match answer {
            // We stopped it and gave up waiting for the answer.
            None => return Err(Err(stopped.expect("only a stopped prediction is given up"))),
            Some(Err(source)) => {
                if let Some(reason) = stopped {
                    return Err(Err(reason));
                }
                server.set_health(Health::Unreachable("the connection failed mid-prediction".into()));
                let error = CogError::Transport { server: url(), source };
                return Err(Ok(Setback::ServerLost(StudioError::Unavailable(Box::new(error)))));
            }
            Some(Ok((status, None))) => {
                let detail = format!("HTTP {status}, larger than COG_MAX_OUTPUT_BYTES");
                return Err(Err(StudioError::ModelFailed(Box::new(CogError::BadAnswer { server: url(), detail }))));
            }
            Some(Ok((status, Some(body)))) => (status, body),
        };
        let status_error = || CogError::Status {
            server: url(),
            status: status.as_u16(),
            body: excerpt(&String::from_utf8_lossy(&body)),
        };
        match status.as_u16() {
            200 => {}
            202 | 409 if stopped.is_none() => return Err(Ok(Setback::AtCapacity)),
            503 if stopped.is_none() => {
                // Setup not finished, or failed: the health check will tell which.
                server.set_health(Health::Starting);
                return Err(Ok(Setback::ServerLost(StudioError::Unavailable(Box::new(status_error())))));
            }
            // A proxy in front of the server turning us away for now.
            408 | 425 | 429 => return Err(Err(StudioError::Unavailable(Box::new(status_error())))),
            422 => {
                tracing::error!(cog.server = %server.url, error = %status_error(), "the Cog server rejected our input: check COG_INPUT_*");
                return Err(Err(StudioError::RequestRejected(Box::new(status_error()))));
            }
            _ if stopped.is_some() => return Err(Err(stopped.expect("checked"))),
            500..=599 => {
                return Err(Ok(Setback::ServerLost(StudioError::Unavailable(Box::new(status_error())))));
            }
            _ => return Err(Err(StudioError::RequestRejected(Box::new(status_error())))),
        }
        let prediction: CogPrediction = serde_json::from_slice(&body).map_err(|e| {
            let detail = format!("not a prediction: {e}");
            Err(StudioError::Unavailable(Box::new(CogError::BadAnswer { server: url(), detail })))
        })?;
        drop(body);
        *predict_time = prediction.metrics.predict_time;
        if prediction.id.as_deref().is_some_and(|answered| answered != id) {
            let detail = format!("asked for prediction {id}, got {:?}", prediction.id);
            return Err(Err(StudioError::Unavailable(Box::new(CogError::BadAnswer { server: url(), detail }))));
        }
        match (prediction.status.as_str(), stopped) {
            ("succeeded", _) => self.outputs(server, id, &prediction, request).map_err(Err),
            (_, Some(reason)) => Err(Err(reason)),
            ("failed", None) => {
                let text = prediction.error.as_deref().unwrap_or("no error message");
                let error = Box::new(CogError::Failed { server: url(), id: id.into(), error: excerpt(text) });
                // The model's words decide: "please retry" is an outage, a safety
                // checker's verdict is a refusal, anything else the model failing.
                Err(Err(match classify_failure(text) {
                    Failure::Transient => StudioError::Unavailable(error),
                    Failure::ContentPolicy => StudioError::ContentPolicy(error),
                    Failure::Model => StudioError::ModelFailed(error),
                }))
            }
            ("canceled", None) => {
                let error = CogError::CanceledByServer { server: url(), id: id.into() };
                Err(Err(StudioError::Unavailable(Box::new(error))))
            }
            (other, None) => {
                let detail = format!("a synchronous prediction answered status {:?}", excerpt(other));
                Err(Err(StudioError::Unavailable(Box::new(CogError::BadAnswer { server: url(), detail }))))
            }
        }
    }

    /// The prediction's files: data URLs, each typed by its bytes.
    fn outputs(
        &self,
        server: &Server,
        id: &str,
        prediction: &CogPrediction,
        request: &RenderRequest,
    ) -> Result<Vec<RenderedFile>, StudioError> {
        let bad = |index: usize, detail: String| {
            let error = CogError::BadOutput { server: server.url.clone(), id: id.into(), index, detail };
            StudioError::ModelFailed(Box::new(error))
        };
        let urls = output_urls(&prediction.output);
        if urls.is_empty() {
            return Err(bad(0, "the prediction succeeded without a file".into()));
        }
        if urls.len() > MAX_OUTPUTS {
            return Err(bad(MAX_OUTPUTS, format!("{} outputs; at most {MAX_OUTPUTS} are accepted", urls.len())));
        }
        let mut files = Vec::with_capacity(urls.len());
        for (index, url) in urls.iter().enumerate() {
            let Some(data) = url.strip_prefix("data:") else {
                return Err(bad(
                    index,
                    "an output URL, not a data URL: run the Cog server without --upload-url".into(),
                ));
            };
            let (declared, bytes) =
                decode_data_uri(data, self.config.max_output_bytes).map_err(|detail| bad(index, detail))?;
            let (content_type, extension) =
                output_type(request.kind, &bytes, declared.as_deref(), "").ok_or_else(|| {
                    let declared = declared.as_deref().unwrap_or("no type");
                    bad(index, format!("{declared} is not a file {} generations produce", request.kind.as_str()))
                })?;
            let filename = output_filename(request, index, urls.len(), extension);
            files.push(RenderedFile { filename, content_type, bytes });
        }
        Ok(files)
    }
}
