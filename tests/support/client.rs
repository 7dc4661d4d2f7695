//! An HTTP client of the API, signed in as one user.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

/// A user's browser-like client: it keeps the session cookie.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub email: String,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
}

impl Client {
    /// Signs a new user in through the dev sign-in.
    pub async fn sign_in(base: &str, name: &str) -> Client {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder().cookie_provider(jar.clone()).build().expect("http client");
        let email = format!("{}{}example.org", name.to_ascii_lowercase(), '@');
        let response = http
            .post(format!("{base}/auth/dev-login"))
            .json(&json!({"email": email, "name": name}))
            .send()
            .await
            .expect("dev-login request");
        crate::cookies::observe(response.headers());
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "dev-login: {:?}", response.text().await);
        Client { base: base.to_owned(), http, email, jar }
    }

    /// The `Cookie` header this client sends, for a request made by another client.
    pub fn cookie_header(&self) -> String {
        use reqwest::cookie::CookieStore;
        let url = self.base.parse().expect("the base URL");
        let value = self.jar.cookies(&url).expect("signed in");
        value.to_str().expect("ascii").to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET returning status and JSON (or `Null` for an empty or non-JSON body).
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(self.url(path)).send().await.expect("GET");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self.http.post(self.url(path)).json(body).send().await.expect("POST");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Uploads bytes as the multipart part `file`.
    pub async fn upload(&self, bytes: Vec<u8>, filename: &str, content_type: &str) -> reqwest::Response {
        let part =
            reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()).mime_str(content_type).expect("mime");
        let form = reqwest::multipart::Form::new().part("file", part);
        self.http.post(self.url("/v1/uploads")).multipart(form).send().await.expect("upload")
    }

    /// Uploads and expects 201; returns the upload id.
    pub async fn upload_ok(&self, bytes: Vec<u8>) -> String {
        let response = self.upload(bytes, "pet.jpg", "image/jpeg").await;
        let status = response.status();
        let body: Value = response.json().await.expect("upload body");
        assert_eq!(status, StatusCode::CREATED, "upload: {body}");
        body["id"].as_str().expect("upload id").to_owned()
    }

    /// Creates a portrait and expects 202; returns the generation object.
    pub async fn create_portrait(&self, upload_id: &str, style: &str) -> Value {
        self.create_generation("portrait", upload_id, style).await
    }

    /// Creates a generation of any kind and expects 202; returns the generation object.
    pub async fn create_generation(&self, kind: &str, upload_id: &str, style: &str) -> Value {
        let (status, body) =
            self.post_json("/v1/generations", &json!({"kind": kind, "upload_id": upload_id, "style": style})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "create generation: {body}");
        body
    }

    /// Polls the generation until it reaches a terminal state.
    pub async fn wait_terminal(&self, id: &str, deadline: Duration) -> Value {
        let path = format!("/v1/generations/{id}");
        crate::wait_until(&format!("generation {id} to finish"), deadline, || async {
            let (status, body) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "poll: {body}");
            matches!(body["status"].as_str(), Some("succeeded" | "failed" | "canceled")).then_some(body)
        })
        .await
    }

    /// Downloads a file.
    pub async fn download(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let response = self.http.get(self.url(path)).send().await.expect("download");
        let status = response.status();
        (status, response.bytes().await.expect("body").to_vec())
    }

    /// The signed-in user's id.
    pub async fn user_id(&self) -> String {
        let (_, me) = self.get("/v1/me").await;
        me["id"].as_str().expect("a user id").to_owned()
    }

    /// Balance minus held credits, from `GET /v1/me`.
    pub async fn available_credits(&self) -> i64 {
        let (status, me) = self.get("/v1/me").await;
        assert_eq!(status, StatusCode::OK);
        me["credits"]["balance"].as_i64().expect("balance") - me["credits"]["held"].as_i64().expect("held")
    }

    /// The ledger entries of the user, newest first.
    pub async fn ledger(&self) -> Vec<Value> {
        let (status, body) = self.get("/v1/credits/ledger?limit=100").await;
        assert_eq!(status, StatusCode::OK);
        body["data"].as_array().cloned().unwrap_or_default()
    }
}
