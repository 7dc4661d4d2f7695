//! Sessions and personal API tokens: sign-out ends a session for good, `logout-all`
//! ends every session and revokes every token, a sign-in always gets a new id, idle and
//! expired sessions end, tokens work as `Authorization: Bearer` (and only while they
//! exist), and over https the cookie is `__Host-` prefixed.

use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

all_modes!(sign_out_ends_the_session, sign_out_ends_the_session);
all_modes!(logout_all_ends_every_session_and_token, logout_all_ends_every_session_and_token);
all_modes!(a_sign_in_always_gets_a_new_session, a_sign_in_always_gets_a_new_session);
all_modes!(idle_and_expired_sessions_end, idle_and_expired_sessions_end);
all_modes!(api_tokens_from_creation_to_revocation, api_tokens_from_creation_to_revocation);
all_modes!(over_https_the_session_cookie_is_host_only, over_https_the_session_cookie_is_host_only);

/// A cookie-less client: each request carries exactly the credentials the test gives.
struct Raw {
    base: String,
    http: reqwest::Client,
}

impl Raw {
    fn new(app: &TestApp) -> Raw {
        Raw { base: app.base_url.clone(), http: reqwest::Client::new() }
    }

    /// Dev sign-in as `email`, optionally presenting an old session; returns the
    /// `Set-Cookie` header whole.
    async fn sign_in(&self, email: &str, presenting: Option<&str>) -> String {
        let mut request =
            self.http.post(format!("{}/auth/dev-login", self.base)).json(&json!({"email": email, "name": "Sess"}));
        if let Some(cookie) = presenting {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.expect("dev-login");
        petportrait_tests::cookies::observe(response.headers());
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        response.headers()[SET_COOKIE].to_str().expect("ascii").to_owned()
    }

    async fn me_with(&self, header: (reqwest::header::HeaderName, &str)) -> StatusCode {
        self.http.get(format!("{}/v1/me", self.base)).header(header.0, header.1).send().await.expect("GET").status()
    }

    async fn me(&self, cookie: &str) -> StatusCode {
        self.me_with((COOKIE, cookie)).await
    }

    async fn me_bearer(&self, token: &str) -> StatusCode {
        self.me_with((AUTHORIZATION, &format!("Bearer {token}"))).await
    }

    async fn post(&self, path: &str, cookie: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, cookie)
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, cookie: &str) -> Value {
        let response = self.http.get(format!("{}{path}", self.base)).header(COOKIE, cookie).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("JSON")
    }
}

/// `name=value` of a `Set-Cookie` header.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("a pair").to_owned()
}

fn email(name: &str) -> String {
    format!("{name}{}example.org", '@')
}

async fn sign_out_ends_the_session(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let raw = Raw::new(&app);
    let cookie = pair(&raw.sign_in(&email("leaver"), None).await);
    assert_eq!(raw.me(&cookie).await, StatusCode::OK);
    let (status, _) = raw.post("/auth/logout", &cookie, &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(raw.me(&cookie).await, StatusCode::UNAUTHORIZED, "the old cookie still works");
    app.stop().await;
}

async fn logout_all_ends_every_session_and_token(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let raw = Raw::new(&app);
    let laptop = pair(&raw.sign_in(&email("everywhere"), None).await);
    let phone = pair(&raw.sign_in(&email("everywhere"), None).await);
    let bystander = pair(&raw.sign_in(&email("bystander"), None).await);
    let (status, created) = raw.post("/v1/me/tokens", &laptop, &json!({"name": "script"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let token = created["token"].as_str().expect("token").to_owned();
    assert_eq!(raw.me_bearer(&token).await, StatusCode::OK);

    let (status, _) = raw.post("/auth/logout-all", &phone, &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(raw.me(&laptop).await, StatusCode::UNAUTHORIZED);
    assert_eq!(raw.me(&phone).await, StatusCode::UNAUTHORIZED);
    assert_eq!(raw.me_bearer(&token).await, StatusCode::UNAUTHORIZED, "the token was not revoked");
    assert_eq!(raw.me(&bystander).await, StatusCode::OK, "another user was signed out");
    app.stop().await;
}

async fn a_sign_in_always_gets_a_new_session(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let raw = Raw::new(&app);
    let first = pair(&raw.sign_in(&email("fixated"), None).await);
    // Signing in while presenting a session (planted, or one's own) ends that session.
    let second = pair(&raw.sign_in(&email("fixated"), Some(&first)).await);
    assert_ne!(first, second);
    assert_eq!(raw.me(&first).await, StatusCode::UNAUTHORIZED, "the old id survived the sign-in");
    assert_eq!(raw.me(&second).await, StatusCode::OK);
    app.stop().await;
}

/// The timeouts are checked against the session's row; the test moves the row's times
/// instead of waiting for them to pass.
async fn idle_and_expired_sessions_end(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let raw = Raw::new(&app);
    let idle = pair(&raw.sign_in(&email("idler"), None).await);
    let old = pair(&raw.sign_in(&email("elder"), None).await);
    let fresh = pair(&raw.sign_in(&email("fresh"), None).await);
    let idler = raw.get("/v1/me", &idle).await["id"].as_str().expect("id").to_owned();
    let elder = raw.get("/v1/me", &old).await["id"].as_str().expect("id").to_owned();
    // Idle for longer than SESSION_IDLE_TIMEOUT (7 days by default).
    let eight_days_ago = (petportrait_core::time::now_ms() - 8 * 86_400_000).to_string();
    app.raw_execute(
        "UPDATE sessions SET last_seen_at = CAST($1 AS BIGINT) WHERE user_id = $2",
        &[&eight_days_ago, &idler],
    )
    .await;
    // Past its absolute expiry, though used a moment ago.
    app.raw_execute("UPDATE sessions SET expires_at = 1 WHERE user_id = $1", &[&elder]).await;
    assert_eq!(raw.me(&idle).await, StatusCode::UNAUTHORIZED, "an idle session lived on");
    assert_eq!(raw.me(&old).await, StatusCode::UNAUTHORIZED, "an expired session lived on");
    assert_eq!(raw.me(&fresh).await, StatusCode::OK);
    app.stop().await;
}

async fn api_tokens_from_creation_to_revocation(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let raw = Raw::new(&app);
    let owner = pair(&raw.sign_in(&email("tokenholder"), None).await);
    let other = pair(&raw.sign_in(&email("stranger"), None).await);

    let (status, created) = raw.post("/v1/me/tokens", &owner, &json!({"name": "backup script"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().expect("token").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(token.starts_with("ppat_") && token.len() == 48, "{token}");
    assert_eq!(created["name"], "backup script");

    // Listed without its secret, and not used yet.
    let listed = raw.get("/v1/me/tokens", &owner).await;
    assert!(!listed.to_string().contains(&token[5..]), "the secret is listed: {listed}");
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert_eq!(listed["data"][0]["last_used_at"], Value::Null);

    // A bearer request needs no cookie, and no same-origin proof: browsers never add it.
    assert_eq!(raw.me_bearer(&token).await, StatusCode::OK);
    let cross_site = |auth: (reqwest::header::HeaderName, String)| {
        raw.http
            .post(format!("{}/v1/me/tokens", raw.base))
            .header(auth.0, auth.1)
            .header("sec-fetch-site", "cross-site")
            .json(&json!({"name": "from a script"}))
            .send()
    };
    let by_bearer = cross_site((AUTHORIZATION, format!("Bearer {token}"))).await.expect("POST");
    assert_eq!(by_bearer.status(), StatusCode::CREATED);
    let by_cookie = cross_site((COOKIE, owner.clone())).await.expect("POST");
    assert_eq!(by_cookie.status(), StatusCode::FORBIDDEN, "a cross-site cookie write passed");
    let listed = raw.get("/v1/me/tokens", &owner).await;
    let used = listed["data"].as_array().expect("data").iter().find(|t| t["id"] == id.as_str()).expect("listed");
    assert!(used["last_used_at"].is_string(), "last_used_at not recorded: {used}");

    // Wrong shapes and unknown tokens answer 401, even beside a valid cookie.
    for bad in ["ppat_short", "Basic dXNlcjpwYXNz", &token.replace("ppat_", "xxxx_")] {
        assert_eq!(raw.me_bearer(bad).await, StatusCode::UNAUTHORIZED, "{bad}");
    }
    let status = raw
        .http
        .get(format!("{}/v1/me", raw.base))
        .header(COOKIE, &owner)
        .header(AUTHORIZATION, "Bearer ppat_0000000000000000000000000000000000000000000")
        .send()
        .await
        .expect("GET")
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Only its owner revokes it; then it is refused.
    let delete =
        |cookie: String| raw.http.delete(format!("{}/v1/me/tokens/{id}", raw.base)).header(COOKIE, cookie).send();
    assert_eq!(delete(other).await.expect("DELETE").status(), StatusCode::NOT_FOUND);
    assert_eq!(raw.me_bearer(&token).await, StatusCode::OK);
    assert_eq!(delete(owner.clone()).await.expect("DELETE").status(), StatusCode::NO_CONTENT);
    assert_eq!(raw.me_bearer(&token).await, StatusCode::UNAUTHORIZED, "a revoked token still works");
    app.stop().await;
}

async fn over_https_the_session_cookie_is_host_only(mode: Mode) {
    let app = TestApp::spawn(mode, &[("PUBLIC_URL", "https://localhost")]).await;
    let raw = Raw::new(&app);
    let set = raw.sign_in(&email("secure"), None).await;
    assert!(set.starts_with("__Host-pp_session="), "{set}");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.split("; ").any(|a| a == attribute), "{attribute} missing: {set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    // The plain name is not read over https, so a cookie planted under it signs nobody in.
    assert_eq!(raw.me(&pair(&set)).await, StatusCode::OK);
    assert_eq!(raw.me(&pair(&set).replace("__Host-pp_session", "pp_session")).await, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

all_modes!(
    the_account_routes_refuse_anonymous_and_malformed_calls,
    the_account_routes_refuse_anonymous_and_malformed_calls
);

async fn the_account_routes_refuse_anonymous_and_malformed_calls(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let anonymous = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", app.base_url);
    let problem = |response: reqwest::Response| async move {
        let status = response.status();
        let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
        let body: Value = response.json().await.expect("problem+json");
        assert_eq!(content_type, "application/problem+json");
        (status, body["code"].as_str().unwrap_or_default().to_owned())
    };
    for (method, path) in [
        ("GET", "/v1/me/tokens"),
        ("POST", "/v1/me/tokens"),
        ("DELETE", "/v1/me/tokens/tok_01jf00000000000000000000"),
        ("PATCH", "/v1/me"),
        ("POST", "/v1/policy/accept"),
        ("POST", "/auth/logout-all"),
    ] {
        let request = anonymous.request(method.parse().expect("method"), url(path)).json(&json!({}));
        let (status, code) = problem(request.send().await.expect("send")).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"), "{method} {path}");
    }
    // Without a pending sign-up the age question has nothing to complete.
    let response = anonymous.post(url("/auth/age")).json(&json!({"birth_year": 1990, "birth_month": 1})).send();
    assert_eq!(problem(response.await.expect("send")).await, (StatusCode::BAD_REQUEST, "no_pending_sign_up".into()));
    // Google sign-in is off here (dev sign-in is on): its routes do not exist.
    let response = anonymous.get(url("/auth/google/start")).send().await.expect("send");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Malformed bodies from a signed-in user.
    let raw = Raw::new(&app);
    let cookie = pair(&raw.sign_in(&email("malformed"), None).await);
    for (path, body, code) in [
        ("/v1/me/tokens", json!({"name": ""}), "invalid_name"),
        ("/v1/me/tokens", json!({"name": "x", "scope": "all"}), "invalid_body"),
        ("/v1/policy/accept", json!({}), "invalid_body"),
    ] {
        let (status, answer) = raw.post(path, &cookie, &body).await;
        assert_eq!((status, answer["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)), "{path} {body}");
    }
    let response = raw
        .http
        .delete(format!("{}/v1/me/tokens/not-a-token-id", raw.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}
