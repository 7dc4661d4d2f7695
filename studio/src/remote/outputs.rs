//! Fetching a finished prediction's outputs: data URIs decoded in place, URLs
//! downloaded through the SSRF-safe client (never with the token), each checked to be
//! a file the generation's kind produces.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use tokio::time::Instant;

use super::client::{Gate, Retries};
use super::protocol::{self, Prediction};
use super::{MAX_OUTPUTS, ProviderError, RemoteStudio};
use crate::{RenderContext, RenderRequest, RenderedFile, StudioError};

impl RemoteStudio {
    pub(super) async fn fetch_outputs(
        &self,
        prediction: &Prediction,
        request: &RenderRequest,
        ctx: &RenderContext,
        deadline: Instant,
    ) -> Result<Vec<RenderedFile>, StudioError> {
        let bad = |index: usize, detail: String| {
            StudioError::ModelFailed(Box::new(ProviderError::BadOutput { id: prediction.id.clone(), index, detail }))
        };
        let urls = protocol::output_urls(&prediction.output);
        if urls.is_empty() {
            return Err(bad(0, "the prediction succeeded without an output URL".into()));
        }
        if urls.len() > MAX_OUTPUTS {
            return Err(bad(MAX_OUTPUTS, format!("{} outputs; at most {MAX_OUTPUTS} are accepted", urls.len())));
        }
        let limit = self.config.max_output_bytes;
        // Downloads start once the prediction has ended and share one budget: whatever
        // is left of the prediction's deadline, but at least one request timeout in all
        // (not one per output), so they cannot run the attempt past JOB_TIMEOUT and throw
        // away a paid prediction that succeeded.
        let download_deadline = deadline.max(Instant::now() + self.config.request_timeout);
        let mut files = Vec::with_capacity(urls.len());
        for (index, url) in urls.iter().enumerate() {
            if ctx.is_canceled() {
                return Err(StudioError::Canceled);
            }
            let (bytes, declared, path) = if let Some(data) = url.strip_prefix("data:") {
                let (declared, bytes) = decode_data_uri(data, limit).map_err(|detail| bad(index, detail))?;
                (bytes, declared, String::new())
            } else {
                let parsed = reqwest::Url::parse(url).map_err(|e| bad(index, format!("not a URL: {e}")))?;
                self.provider.check_output_url(&parsed).map_err(|why| bad(index, format!("refused URL: {why}")))?;
                let reply = self
                    .provider
                    .call("download", Gate::Breaker, Retries::All, download_deadline, limit, || {
                        self.provider.request(Method::GET, parsed.clone())
                    })
                    .await
                    .map_err(|error| match error {
                        // What retrying cannot fix: too large, or an answer such as 404 or
                        // a refused redirect left after the retries of 5xx, 408 and 429.
                        ProviderError::TooLarge { .. } => StudioError::ModelFailed(Box::new(error)),
                        // An output on an internal address (the name resolved to one).
                        _ if petportrait_core::outbound::is_refusal(&error) => {
                            StudioError::ModelFailed(Box::new(error))
                        }
                        ProviderError::Status { status, .. } if !(status >= 500 || status == 408 || status == 429) => {
                            StudioError::ModelFailed(Box::new(error))
                        }
                        other => self.transient(other),
                    })?;
                let declared = reply.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
                (reply.body.to_vec(), declared, parsed.path().to_owned())
            };
            let (content_type, extension) = protocol::output_type(request.kind, &bytes, declared.as_deref(), &path)
                .ok_or_else(|| {
                    let declared = declared.as_deref().unwrap_or("no type");
                    bad(
                        index,
                        format!("{declared} ({path}) is not a file {} generations produce", request.kind.as_str()),
                    )
                })?;
            let filename = output_filename(request, index, urls.len(), extension);
            files.push(RenderedFile { filename, content_type, bytes });
        }
        Ok(files)
    }
}

/// `<kind>-<style>.<extension>`, numbered from 1 when the prediction made several files.
pub(crate) fn output_filename(request: &RenderRequest, index: usize, count: usize, extension: &str) -> String {
    match count {
        1 => format!("{}-{}.{extension}", request.kind.as_str(), request.style),
        _ => format!("{}-{}-{}.{extension}", request.kind.as_str(), request.style, index + 1),
    }
}

/// `[<type>][;base64],<data>` (after `data:`), at most `limit` bytes decoded.
pub(crate) fn decode_data_uri(data: &str, limit: usize) -> Result<(Option<String>, Vec<u8>), String> {
    let (meta, payload) = data.split_once(',').ok_or("a data URI without a comma")?;
    let Some(declared) = meta.strip_suffix(";base64") else { return Err("a data URI that is not base64".into()) };
    if payload.len() / 4 * 3 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    let bytes = BASE64.decode(payload.trim()).map_err(|e| format!("bad base64: {e}"))?;
    Ok(((!declared.is_empty()).then(|| declared.to_owned()), bytes))
}
