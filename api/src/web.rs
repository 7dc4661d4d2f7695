//! The web app people use (`api/web/`): its files are compiled into the binary, so the
//! server needs nothing else at run time and loads nothing from another host. `GET /`
//! is the page, with the sign-in methods this server offers written into it;
//! `GET /assets/{path}` serves the rest, gzipped when the browser accepts it, with an
//! `ETag` so a returning browser revalidates with a 304 instead of loading them again.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// One file of the app.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:literal) => {
        Asset { path: $path, content_type: $content_type, bytes: include_bytes!(concat!("../web/", $path)) }
    };
}

/// Every file under `/assets/`. A file missing from this list is a 404, so nothing in
/// the folder is served by accident.
const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("js/account.js", "text/javascript; charset=utf-8"),
    asset!("js/api.js", "text/javascript; charset=utf-8"),
    asset!("js/app.js", "text/javascript; charset=utf-8"),
    asset!("js/create.js", "text/javascript; charset=utf-8"),
    asset!("js/credits.js", "text/javascript; charset=utf-8"),
    asset!("js/dom.js", "text/javascript; charset=utf-8"),
    asset!("js/gallery.js", "text/javascript; charset=utf-8"),
    asset!("js/generation.js", "text/javascript; charset=utf-8"),
    asset!("js/history.js", "text/javascript; charset=utf-8"),
    asset!("js/list.js", "text/javascript; charset=utf-8"),
    asset!("js/model.js", "text/javascript; charset=utf-8"),
    asset!("js/signin.js", "text/javascript; charset=utf-8"),
    asset!("vendor/viewer.js", "text/javascript; charset=utf-8"),
];

const INDEX: &str = include_str!("../web/index.html");

/// An asset ready to send: its tag and its gzipped form, made once (`warm`).
struct Prepared {
    asset: &'static Asset,
    etag: HeaderValue,
    gzipped: Vec<u8>,
}

fn prepared() -> &'static HashMap<&'static str, Prepared> {
    static PREPARED: OnceLock<HashMap<&'static str, Prepared>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let digest = Sha256::digest(asset.bytes);
                let tag = digest.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>();
                let etag = HeaderValue::from_str(&format!("\"{tag}\"")).expect("hex is a valid header value");
                (asset.path, Prepared { asset, etag, gzipped: gzip(asset.bytes) })
            })
            .collect()
    })
}

/// Tags and gzips every file now (a few tens of milliseconds for the 3D viewer at the
/// best compression), so the first visitor after a start does not wait for it.
pub fn warm() {
    prepared();
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("writing to memory does not fail");
    encoder.finish().expect("writing to memory does not fail")
}

/// Whether the request's `Accept-Encoding` takes gzip (and does not refuse it with q=0).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.replace(' ', "").eq_ignore_ascii_case("q=0") || p.starts_with("q=0.0"));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        },
    )
}

/// `GET /assets/{path}`.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(file) = prepared().get(path.as_str()) else {
        return ApiError::not_found().into_response();
    };
    let mut response = if headers.get(header::IF_NONE_MATCH).is_some_and(|tag| tag == file.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(&headers) && file.gzipped.len() < file.asset.bytes.len() {
        let mut response = file.gzipped.clone().into_response();
        response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        file.asset.bytes.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.asset.content_type));
    headers.insert(header::ETAG, file.etag.clone());
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    // Revalidated on every load: a new release is picked up at once, an unchanged file
    // costs a 304.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`: the app's page, naming the sign-in methods on offer (`google`, `dev`) and
/// the upload limit, so it can explain a too-large photo before sending it.
pub async fn index(State(state): State<AppState>, dev_login: bool) -> Response {
    let mut methods = Vec::new();
    if state.oidc.is_some() {
        methods.push("google");
    }
    if dev_login {
        methods.push("dev");
    }
    let page = INDEX
        .replace("{{SIGN_IN}}", &methods.join(","))
        .replace("{{UPLOAD_MAX_BYTES}}", &state.uploads.max_bytes.to_string());
    let mut response = axum::response::Html(page).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_app_is_listed_and_every_listed_file_is_there() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk = Vec::new();
        let mut pending = vec![folder.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).expect("web folder") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    on_disk.push(path.strip_prefix(&folder).expect("inside").to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.retain(|path| path != "index.html");
        on_disk.sort();
        let listed: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        assert_eq!(on_disk, listed, "api/web/ and ASSETS differ");
    }

    #[test]
    fn gzip_is_taken_unless_refused() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
            accepts_gzip(&headers)
        };
        assert!(with("gzip, deflate, br, zstd"));
        assert!(with("br;q=1.0, gzip;q=0.8"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
