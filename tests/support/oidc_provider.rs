//! A real OpenID provider for the tests, on 127.0.0.1:0: discovery, JWKS, an
//! authorization endpoint that signs the scripted person in at once, and a token
//! endpoint that checks the code (once), the redirect URI, the client's credentials and
//! the PKCE verifier against the S256 challenge, then issues an RS256 ID token. Its keys
//! are made per provider; the test can rotate them or make the provider lie
//! ([`Forgery`]) to see each lie refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::net::TcpListener;

pub const CLIENT_ID: &str = "petportrait-test-client";
pub const CLIENT_SECRET: &str = "petportrait-test-secret";

/// Who signs in at the provider.
#[derive(Clone, Debug)]
pub struct Person {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub picture: Option<String>,
}

/// How the provider lies in its next ID tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forgery {
    None,
    /// The right key id, a signature that does not verify.
    BadSignature,
    /// Signed with a key the provider never published.
    UnknownKey,
    WrongAudience,
    WrongIssuer,
    /// Expired ten minutes ago (beyond any leeway).
    Expired,
    WrongNonce,
    /// The authorization endpoint records another challenge than the client sent, as
    /// when an attacker injects a code obtained for their own challenge.
    SwappedChallenge,
}

struct Key {
    kid: String,
    private: RsaPrivateKey,
}

impl Key {
    fn generate(kid: &str) -> Key {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key");
        Key { kid: kid.to_owned(), private }
    }

    fn jwk(&self) -> Value {
        let public = self.private.to_public_key();
        json!({
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        })
    }

    fn sign(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signer = SigningKey::<sha2_010::Sha256>::new(self.private.clone());
        let signature = signer.sign(input.as_bytes()).to_vec();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

struct ProviderState {
    issuer: String,
    person: Person,
    forgery: Forgery,
    published: Vec<Key>,
    /// Signs tokens; the first published key unless rotated.
    signing: usize,
    unpublished: Key,
    grants: HashMap<String, Grant>,
    jwks_fetches: usize,
    picture_fetches: usize,
    /// Every access and refresh token handed out, to look for them in our storage.
    issued_tokens: Vec<String>,
}

/// The provider, its URL and its controls.
#[derive(Clone)]
pub struct FakeOidc {
    pub issuer: String,
    state: Arc<Mutex<ProviderState>>,
}

impl FakeOidc {
    pub async fn start(person: Person) -> FakeOidc {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the fake OpenID provider");
        let issuer = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(Mutex::new(ProviderState {
            issuer: issuer.clone(),
            person,
            forgery: Forgery::None,
            published: vec![Key::generate("key-1")],
            signing: 0,
            unpublished: Key::generate("never-published"),
            grants: HashMap::new(),
            jwks_fetches: 0,
            picture_fetches: 0,
            issued_tokens: Vec::new(),
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/picture.png", get(picture))
            .route(
                "/picture.html",
                get(|| async { ([(header::CONTENT_TYPE, "text/html")], "<html>not a picture</html>") }),
            )
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeOidc { issuer, state }
    }

    fn lock(&self) -> MutexGuard<'_, ProviderState> {
        self.state.lock().expect("provider state")
    }

    /// The app's settings for this provider.
    pub fn app_overrides(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GOOGLE_CLIENT_ID", CLIENT_ID.to_owned()),
            ("GOOGLE_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("OIDC_ISSUER_URL", self.issuer.clone()),
            ("DEV_LOGIN", "false".to_owned()),
        ]
    }

    pub fn set_person(&self, person: Person) {
        self.lock().person = person;
    }

    pub fn forge(&self, forgery: Forgery) {
        self.lock().forgery = forgery;
    }

    /// Publishes a new key in place of the old one and signs with it from now on.
    pub fn rotate_keys(&self) {
        let mut state = self.lock();
        let next = format!("key-{}", state.published.len() + 1);
        state.published = vec![Key::generate(&next)];
        state.signing = 0;
    }

    pub fn jwks_fetches(&self) -> usize {
        self.lock().jwks_fetches
    }

    pub fn picture_fetches(&self) -> usize {
        self.lock().picture_fetches
    }

    /// The picture the provider serves at `/picture.png`: a 64 x 64 PNG.
    pub fn picture_png() -> Vec<u8> {
        let image = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 128]));
        crate::fixtures::encode(&image, image::ImageFormat::Png)
    }

    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().issued_tokens.clone()
    }
}

type Shared = State<Arc<Mutex<ProviderState>>>;

async fn discovery(State(state): Shared) -> Response {
    let issuer = state.lock().expect("state").issuer.clone();
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email", "profile"],
    }))
    .into_response()
}

async fn jwks(State(state): Shared) -> Response {
    let mut state = state.lock().expect("state");
    state.jwks_fetches += 1;
    axum::Json(json!({"keys": state.published.iter().map(Key::jwk).collect::<Vec<_>>()})).into_response()
}

async fn picture(State(state): Shared) -> Response {
    state.lock().expect("state").picture_fetches += 1;
    ([(header::CONTENT_TYPE, "image/png")], FakeOidc::picture_png()).into_response()
}

fn refuse(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response()
}

async fn authorize(State(state): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" || get("client_id") != CLIENT_ID || get("code_challenge_method") != "S256" {
        return refuse("invalid_request");
    }
    let scopes: Vec<String> = get("scope").split(' ').map(str::to_owned).collect();
    if !["openid", "email", "profile"].iter().all(|s| scopes.iter().any(|x| x == s)) {
        return refuse("invalid_scope");
    }
    let mut state = state.lock().expect("state");
    let code = format!("code-{}", ulid::Ulid::generate());
    let challenge = if state.forgery == Forgery::SwappedChallenge {
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(b"the attacker's own verifier"))
    } else {
        get("code_challenge")
    };
    state.grants.insert(code.clone(), Grant { nonce: get("nonce"), challenge, redirect_uri: get("redirect_uri") });
    let location = format!("{}?code={code}&state={}", get("redirect_uri"), get("state"));
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// Client credentials from HTTP Basic (what openidconnect sends) or the form. HTTP Basic
/// carries them form-encoded; the test client's id and secret are unreserved characters
/// only, which that encoding leaves as they are, so they compare as sent.
fn client_credentials(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<(String, String)> {
    if let Some(basic) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()?.strip_prefix("Basic ")) {
        let decoded = String::from_utf8(STANDARD.decode(basic).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        return Some((id.to_owned(), secret.to_owned()));
    }
    Some((form.get("client_id")?.clone(), form.get("client_secret")?.clone()))
}

async fn token(State(state): Shared, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    if client_credentials(&headers, &form) != Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    if get("grant_type") != "authorization_code" {
        return refuse("unsupported_grant_type");
    }
    let mut state = state.lock().expect("state");
    // A code is used once, whatever the outcome.
    let Some(grant) = state.grants.remove(&get("code")) else { return refuse("invalid_grant") };
    if grant.redirect_uri != get("redirect_uri") {
        return refuse("invalid_grant");
    }
    let verifier = get("code_verifier");
    if verifier.is_empty() || URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return refuse("invalid_grant");
    }
    let now = petportrait_core::time::now_ms() / 1000;
    let person = state.person.clone();
    let forgery = state.forgery;
    let mut claims = json!({
        "iss": state.issuer,
        "sub": person.sub,
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 600,
        "nonce": grant.nonce,
        "email": person.email,
        "email_verified": person.email_verified,
        "name": person.name,
    });
    if let Some(picture) = &person.picture {
        claims["picture"] = json!(picture);
    }
    match forgery {
        Forgery::WrongAudience => claims["aud"] = json!("somebody-else"),
        Forgery::WrongIssuer => claims["iss"] = json!("https://issuer.evil.example"),
        Forgery::Expired => {
            claims["exp"] = json!(now - 600);
            claims["iat"] = json!(now - 1200);
        }
        Forgery::WrongNonce => claims["nonce"] = json!("a-nonce-from-another-sign-in"),
        _ => {}
    }
    let key = &state.published[state.signing];
    let id_token = match forgery {
        Forgery::UnknownKey => state.unpublished.sign("never-published", &claims),
        Forgery::BadSignature => {
            let token = key.sign(&key.kid, &claims);
            let (input, signature) = token.rsplit_once('.').expect("three parts");
            let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64");
            bytes[10] ^= 0xff;
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
        }
        _ => key.sign(&key.kid, &claims),
    };
    let access = format!("provider-access-{}", ulid::Ulid::generate());
    let refresh = format!("provider-refresh-{}", ulid::Ulid::generate());
    state.issued_tokens.extend([access.clone(), refresh.clone()]);
    axum::Json(json!({
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "openid email profile",
        "id_token": id_token,
    }))
    .into_response()
}

/// A browser going through the sign-in: it keeps cookies and follows no redirect, so
/// each step's answer can be looked at.
pub struct Browser {
    pub http: reqwest::Client,
    app: String,
}

impl Browser {
    pub fn new(app_base: &str) -> Browser {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        Browser { http, app: app_base.to_owned() }
    }

    fn location(response: &reqwest::Response) -> String {
        assert_eq!(response.status(), StatusCode::FOUND, "expected a redirect");
        response.headers()[header::LOCATION].to_str().expect("ascii").to_owned()
    }

    /// `GET /auth/google/start`, then the provider: the callback URL it sends us back to.
    pub async fn to_callback(&self) -> String {
        let start = self.http.get(format!("{}/auth/google/start", self.app)).send().await.expect("start");
        crate::cookies::observe(start.headers());
        let authorize = Browser::location(&start);
        let provider = self.http.get(&authorize).send().await.expect("authorize");
        // The test apps bind port 0, so their PUBLIC_URL (and the redirect URI made
        // from it) names port 0: the browser goes to where the app really listens.
        let callback = Browser::location(&provider);
        match callback.split_once("/auth/google/callback") {
            Some((_, rest)) => format!("{}/auth/google/callback{rest}", self.app),
            None => callback,
        }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        let response = self.http.get(url).send().await.expect("GET");
        crate::cookies::observe(response.headers());
        response
    }

    /// The whole sign-in: the callback's answer.
    pub async fn sign_in(&self) -> reqwest::Response {
        let callback = self.to_callback().await;
        self.get(&callback).await
    }

    pub async fn answer_age(&self, birth_year: i32, birth_month: u32) -> reqwest::Response {
        let response = self
            .http
            .post(format!("{}/auth/age", self.app))
            .json(&json!({"birth_year": birth_year, "birth_month": birth_month}))
            .send()
            .await
            .expect("age");
        crate::cookies::observe(response.headers());
        response
    }

    pub async fn me(&self) -> (StatusCode, Value) {
        let response = self.http.get(format!("{}/v1/me", self.app)).send().await.expect("me");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}
