//! What every response carries and which requests the API refuses before any route:
//! the `Host` check that keeps a DNS-rebinding page out, the security headers, and
//! JSON bodies only as `application/json`.

use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HOST, SET_COOKIE};
use serde_json::{Value, json};

all_modes!(a_rebinding_page_cannot_sign_in, a_rebinding_page_cannot_sign_in);
all_modes!(probes_answer_under_any_host, probes_answer_under_any_host);
all_modes!(responses_carry_security_headers, responses_carry_security_headers);
all_modes!(json_bodies_must_say_application_json, json_bodies_must_say_application_json);

/// The port of the app, for `Host` headers that name another host on it.
fn port(app: &TestApp) -> u16 {
    app.base_url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
}

/// A DNS-rebinding page reaches our loopback address under its own name: to the
/// browser it is same-origin, so only the `Host` it names gives it away.
async fn a_rebinding_page_cannot_sign_in(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let http = reqwest::Client::new();
    let evil = format!("evil.example:{}", port(&app));
    let response = http
        .post(format!("{}/auth/dev-login", app.base_url))
        .header(HOST, &evil)
        .header("sec-fetch-site", "same-origin")
        .header("origin", format!("http://{evil}"))
        .json(&json!({"email": "victim@x.org", "name": "x"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(response.headers().get(SET_COOKIE).is_none(), "no session for a foreign host");
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    // The refusal is a response like any other: no sniffing, no referrer.
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let problem: Value = response.json().await.expect("problem+json");
    assert_eq!(problem["code"], "misdirected_request");

    // The same request naming our own address signs in (the positive control).
    for host in [format!("127.0.0.1:{}", port(&app)), format!("localhost:{}", port(&app))] {
        let response = http
            .post(format!("{}/auth/dev-login", app.base_url))
            .header(HOST, &host)
            .json(&json!({"email": "victim@x.org", "name": "x"}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{host}");
    }
    app.stop().await;
}

/// An orchestrator probes the machine's own address; the API answers nothing else there.
async fn probes_answer_under_any_host(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let http = reqwest::Client::new();
    let machine = format!("10.1.2.3:{}", port(&app));
    for path in ["/healthz", "/readyz"] {
        let response = http.get(format!("{}{path}", app.base_url)).header(HOST, &machine).send().await.expect("probe");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    for path in ["/", "/v1/styles", "/v1/files/obj_01m8yr731bxbywwrdycqrygmxb"] {
        let response = http.get(format!("{}{path}", app.base_url)).header(HOST, &machine).send().await.expect("get");
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
    }
    app.stop().await;
}

async fn responses_carry_security_headers(mode: Mode) {
    let app = TestApp::spawn(mode, &[("PUBLIC_URL", "https://localhost:8443")]).await;
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/", app.base_url)).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"), "{csp}");
    assert!(!csp.contains("http"), "the policy names no other host: {csp}");
    for response in [page, http.get(format!("{}/v1/me", app.base_url)).send().await.expect("me")] {
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(headers["strict-transport-security"].to_str().expect("ascii").starts_with("max-age="));
    }
    app.stop().await;
}

/// A cross-site form can send `text/plain`, never `application/json`: a body that does
/// not say it is JSON is refused before it is read.
async fn json_bodies_must_say_application_json(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let body = json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"}).to_string();
    for content_type in [Some("text/plain;x=+json"), Some("text/plain"), None] {
        let mut request = ann.http.post(ann.url("/v1/generations")).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let response = request.send().await.expect("post");
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
        let problem: Value = response.json().await.expect("problem+json");
        assert_eq!(problem["code"], "unsupported_media_type");
    }
    let (_, list) = ann.get("/v1/generations").await;
    assert_eq!(list["data"], json!([]), "nothing was created");
    let response = ann
        .http
        .post(ann.url("/v1/generations"))
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::ACCEPTED, "the positive control");
    app.stop().await;
}
