//! Google sign-in against a real OpenID provider started by the test (discovery, JWKS,
//! RS256 ID tokens, PKCE checked at its token endpoint): a new user through the age
//! question, a returning user, a child refused with nothing kept, every forged or
//! mismatched sign-in refused with no user and no session, and a rotated key fetched.

use chrono::Datelike;
use petportrait_core::accounts::Subject;
use petportrait_tests::logs::CapturedLogs;
use petportrait_tests::oidc_provider::{Browser, FakeOidc, Forgery, Person};
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};

all_modes!(a_new_user_signs_up_through_the_age_question, a_new_user_signs_up_through_the_age_question);
all_modes!(a_child_is_refused_and_nothing_is_kept, a_child_is_refused_and_nothing_is_kept);
all_modes!(every_forged_or_mismatched_sign_in_is_refused, every_forged_or_mismatched_sign_in_is_refused);
all_modes!(a_rotated_signing_key_is_fetched_once, a_rotated_signing_key_is_fetched_once);

fn person(sub: &str, name: &str) -> Person {
    Person {
        sub: sub.to_owned(),
        email: format!("{}{}Example.org", name.to_ascii_lowercase(), '@'),
        email_verified: true,
        name: name.to_owned(),
        picture: Some(format!("https://lh3.googleusercontent.com/a/{sub}=s96-c")),
    }
}

async fn spawn(mode: Mode, provider: &FakeOidc) -> TestApp {
    let overrides = provider.app_overrides();
    let overrides: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestApp::spawn(mode, &overrides).await
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().expect("ascii").to_owned()).collect()
}

/// Whether the response sets a cookie `name` to a value (rather than clearing it).
fn sets(response: &reqwest::Response, name: &str) -> bool {
    set_cookies(response).iter().any(|c| c.starts_with(&format!("{name}=")) && !c.contains("Max-Age=0"))
}

async fn account_count(app: &TestApp) -> usize {
    app.services.db.list_sealed_user_fields("", 1000).await.expect("accounts").len()
}

async fn a_new_user_signs_up_through_the_age_question(mode: Mode) {
    let provider = FakeOidc::start(person("google-sub-1001", "Newcomer")).await;
    let app = spawn(mode, &provider).await;
    let browser = Browser::new(&app.base_url);

    // The first callback creates nothing: a sealed pending sign-up and the age question.
    let callback = browser.sign_in().await;
    assert_eq!(callback.status(), StatusCode::FOUND);
    assert_eq!(callback.headers()[LOCATION], "/?sign-up=age");
    assert!(sets(&callback, "pp_signup"), "{:?}", set_cookies(&callback));
    assert!(!sets(&callback, "pp_session"), "a session before the age question");
    let pending = set_cookies(&callback).into_iter().find(|c| c.starts_with("pp_signup=")).expect("pending");
    assert!(pending.contains("HttpOnly"), "the browser's scripts can read it: {pending}");
    assert!(!pending.to_ascii_lowercase().contains("newcomer"), "the pending claims are readable: {pending}");
    assert_eq!(account_count(&app).await, 0);
    assert_eq!(browser.me().await.0, StatusCode::UNAUTHORIZED);

    let adult = browser.answer_age(1990, 6).await;
    assert_eq!(adult.status(), StatusCode::NO_CONTENT);
    assert!(sets(&adult, "pp_session"));
    let (status, me) = browser.me().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["name"], "Newcomer");
    assert_eq!(me["email"], format!("newcomer{}example.org", '@'), "e-mails are kept lowercase");
    assert_eq!(me["credits"]["balance"], 10);
    let id = me["id"].as_str().expect("id").to_owned();

    // A returning user is signed in at the callback; the pending cookie is gone.
    let again = Browser::new(&app.base_url);
    let callback = again.sign_in().await;
    assert_eq!(callback.headers()[LOCATION], "/");
    assert!(sets(&callback, "pp_session"));
    assert_eq!(again.me().await.1["id"], id.as_str());
    assert_eq!(account_count(&app).await, 1);

    // The user's own name survives a sign-in; the provider's e-mail is taken anew.
    let response = again
        .http
        .patch(format!("{}/v1/me", app.base_url))
        .json(&serde_json::json!({"name": "Chosen Name"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(response.status(), StatusCode::OK);
    let mut renamed = person("google-sub-1001", "Provider Rename");
    renamed.email = format!("moved{}example.org", '@');
    provider.set_person(renamed);
    let third = Browser::new(&app.base_url);
    assert_eq!(third.sign_in().await.headers()[LOCATION], "/");
    let (_, me) = third.me().await;
    assert_eq!(
        (me["name"].as_str(), me["email"].as_str()),
        (Some("Chosen Name"), Some(format!("moved{}example.org", '@').as_str()))
    );

    // The provider's access and refresh tokens are not kept anywhere.
    let raw = app.raw_database_text().await;
    for token in provider.issued_tokens() {
        assert!(!raw.contains(&token), "a provider token is stored");
    }
    assert!(!raw.contains("google-sub-1001"), "the subject is stored in plaintext");
    // Every cookie of the flow is checked against the allowlist when the app stops.
    assert!(petportrait_tests::cookies::seen_count() >= 8, "the flow's cookies were not observed");
    app.stop().await;
}

async fn a_child_is_refused_and_nothing_is_kept(mode: Mode) {
    let logs = CapturedLogs::install();
    let provider = FakeOidc::start(person("google-sub-child", "Youngster")).await;
    let app = spawn(mode, &provider).await;
    let browser = Browser::new(&app.base_url);
    assert_eq!(browser.sign_in().await.headers()[LOCATION], "/?sign-up=age");

    let year = chrono::Utc::now().year() - 10;
    let refused = browser.answer_age(year, 1).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(sets(&refused, "pp_age_refused"), "the refusal is not remembered");
    let problem: serde_json::Value = refused.json().await.expect("problem");
    assert_eq!(problem["code"], "under_age");

    // Nothing about the child anywhere: no account, no session, no line in the logs.
    assert_eq!(account_count(&app).await, 0);
    let subject = Subject::Oidc { issuer: provider.issuer.clone(), subject: "google-sub-child".into() };
    assert!(app.services.accounts.find(&subject).await.expect("find").is_none());
    assert_eq!(browser.me().await.0, StatusCode::UNAUTHORIZED);
    let raw = app.raw_database_text().await.to_ascii_lowercase();
    assert!(!raw.contains("youngster") && !raw.contains("google-sub-child"));

    // A second try from the same browser is refused: at the age question, and at once
    // at the callback (no new pending sign-up).
    assert_eq!(browser.answer_age(1980, 1).await.status(), StatusCode::FORBIDDEN);
    let retry = browser.sign_in().await;
    assert_eq!(retry.status(), StatusCode::FORBIDDEN);
    assert!(!sets(&retry, "pp_signup"));
    assert_eq!(account_count(&app).await, 0);

    let text = logs.text().to_ascii_lowercase();
    assert!(text.contains("the age gate refused a sign-up"), "the capture saw no refusal:\n{text}");
    for needle in ["youngster", "google-sub-child"] {
        assert!(!text.contains(needle), "the logs name the child ({needle}):\n{text}");
    }
    app.stop().await;
}

async fn every_forged_or_mismatched_sign_in_is_refused(mode: Mode) {
    let provider = FakeOidc::start(person("google-sub-target", "Target")).await;
    let app = spawn(mode, &provider).await;
    let refused_cleanly = |response: &reqwest::Response, what: &str| {
        assert!(response.status().is_client_error(), "{what}: {}", response.status());
        assert!(!sets(response, "pp_session") && !sets(response, "pp_signup"), "{what}: {:?}", set_cookies(response));
    };

    for (forgery, status) in [
        (Forgery::BadSignature, StatusCode::UNAUTHORIZED),
        (Forgery::UnknownKey, StatusCode::UNAUTHORIZED),
        (Forgery::WrongAudience, StatusCode::UNAUTHORIZED),
        (Forgery::WrongIssuer, StatusCode::UNAUTHORIZED),
        (Forgery::Expired, StatusCode::UNAUTHORIZED),
        (Forgery::WrongNonce, StatusCode::UNAUTHORIZED),
        // The code was issued for another PKCE challenge: our verifier does not match.
        (Forgery::SwappedChallenge, StatusCode::UNAUTHORIZED),
    ] {
        provider.forge(forgery);
        let browser = Browser::new(&app.base_url);
        let response = browser.sign_in().await;
        assert_eq!(response.status(), status, "{forgery:?}");
        refused_cleanly(&response, &format!("{forgery:?}"));
        assert_eq!(browser.me().await.0, StatusCode::UNAUTHORIZED, "{forgery:?}");
    }
    provider.forge(Forgery::None);

    // An unverified e-mail is refused.
    let mut unverified = person("google-sub-unverified", "Unverified");
    unverified.email_verified = false;
    provider.set_person(unverified);
    let response = Browser::new(&app.base_url).sign_in().await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    refused_cleanly(&response, "unverified");
    provider.set_person(person("google-sub-target", "Target"));

    // A callback whose state is not the one we sent.
    let browser = Browser::new(&app.base_url);
    let callback = browser.to_callback().await;
    let tampered = callback.replace("state=", "state=x");
    let response = browser.get(&tampered).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    refused_cleanly(&response, "state mismatch");
    // The attempt is gone with that try: even the genuine callback is refused now.
    let response = browser.get(&callback).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    refused_cleanly(&response, "after a mismatch");

    // A callback replayed after it succeeded.
    let browser = Browser::new(&app.base_url);
    let callback = browser.to_callback().await;
    assert_eq!(browser.get(&callback).await.status(), StatusCode::FOUND);
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST, "a state was used twice");
    refused_cleanly(&replay, "replay");
    // ... and from another browser, which never started a sign-in.
    let stranger = Browser::new(&app.base_url);
    assert_eq!(stranger.get(&callback).await.status(), StatusCode::BAD_REQUEST);

    // Only the one genuine sign-in above got as far as the age question; no account.
    assert_eq!(account_count(&app).await, 0);
    app.stop().await;
}

async fn a_rotated_signing_key_is_fetched_once(mode: Mode) {
    let provider = FakeOidc::start(person("google-sub-rotation", "Rotation")).await;
    let app = spawn(mode, &provider).await;
    let browser = Browser::new(&app.base_url);
    // Discovery fetched the keys; then the provider rotates them.
    let callback = browser.to_callback().await;
    assert_eq!(provider.jwks_fetches(), 1);
    provider.rotate_keys();
    let response = browser.get(&callback).await;
    assert_eq!(response.headers()[LOCATION], "/?sign-up=age", "the rotated key was not fetched");
    assert_eq!(provider.jwks_fetches(), 2);

    // Tokens under a key nobody publishes cost the provider no more fetches for a while.
    provider.forge(Forgery::UnknownKey);
    for _ in 0..3 {
        assert_eq!(Browser::new(&app.base_url).sign_in().await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(provider.jwks_fetches(), 2, "each forged token fetched the keys again");
    app.stop().await;
}

all_modes!(the_profile_picture_is_copied_once_and_served_by_us, the_profile_picture_is_copied_once_and_served_by_us);
all_modes!(a_picture_on_an_internal_address_is_not_fetched, a_picture_on_an_internal_address_is_not_fetched);

/// Our copy of the picture, fetched from where the app really listens.
async fn download_picture(app: &TestApp, browser: &Browser, picture_url: &str) -> reqwest::Response {
    let path = picture_url.strip_prefix(app.config.public_url.as_str()).expect("a URL of ours");
    browser.get(&format!("{}{path}", app.base_url)).await
}

async fn the_profile_picture_is_copied_once_and_served_by_us(mode: Mode) {
    let mut someone = person("google-sub-picture", "Pictured");
    let provider = FakeOidc::start(someone.clone()).await;
    someone.picture = Some(format!("{}/picture.png", provider.issuer));
    provider.set_person(someone.clone());
    let mut overrides = provider.app_overrides();
    // The provider runs on loopback; outside tests only public addresses are fetched.
    overrides.push(("WEBHOOK_ALLOW_PRIVATE", "true".to_owned()));
    let overrides: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn(mode, &overrides).await;

    let browser = Browser::new(&app.base_url);
    browser.sign_in().await;
    assert_eq!(browser.answer_age(1990, 1).await.status(), StatusCode::NO_CONTENT);
    let (_, me) = browser.me().await;
    let picture_url = me["picture_url"].as_str().expect("a picture").to_owned();
    assert!(picture_url.starts_with(&format!("{}/v1/files/obj_", app.config.public_url)), "{picture_url}");
    assert!(!picture_url.contains(&provider.issuer), "the provider's URL is handed out");
    let response = download_picture(&app, &browser, &picture_url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    let served = image::load_from_memory(&response.bytes().await.expect("bytes")).expect("a PNG").to_rgb8();
    let original = image::load_from_memory(&FakeOidc::picture_png()).expect("a PNG").to_rgb8();
    assert_eq!(served, original);
    assert_eq!(provider.picture_fetches(), 1);

    // Signing in again with the same picture fetches nothing.
    let again = Browser::new(&app.base_url);
    assert_eq!(again.sign_in().await.headers()[LOCATION], "/");
    assert_eq!(provider.picture_fetches(), 1, "the picture was fetched again");
    assert_eq!(again.me().await.1["picture_url"], picture_url.as_str());
    // Another browser's session cannot read it.
    let stranger_status = download_picture(&app, &Browser::new(&app.base_url), &picture_url).await.status();
    assert_eq!(stranger_status, StatusCode::UNAUTHORIZED);

    // A new picture at the provider: copied once more, the old copy due for the purge.
    someone.picture = Some(format!("{}/picture.png?v=2", provider.issuer));
    provider.set_person(someone.clone());
    let third = Browser::new(&app.base_url);
    third.sign_in().await;
    assert_eq!(provider.picture_fetches(), 2);
    let new_url = third.me().await.1["picture_url"].as_str().expect("a picture").to_owned();
    assert_ne!(new_url, picture_url);
    let old_id = picture_url.rsplit('/').next().expect("id");
    let user_id = third.me().await.1["id"].as_str().expect("id").to_owned();
    let old = app
        .services
        .db
        .get_object_of_user(old_id, &petportrait_core::ids::UserId::from_db(user_id))
        .await
        .expect("read")
        .expect("the old row");
    assert!(old.expires_at.is_some_and(|at| at <= petportrait_core::time::now_ms()), "the old copy lives on");

    // A picture URL that answers something else than an image leaves the picture as it is.
    someone.picture = Some(format!("{}/picture.html", provider.issuer));
    provider.set_person(someone);
    let fourth = Browser::new(&app.base_url);
    assert_eq!(fourth.sign_in().await.headers()[LOCATION], "/");
    assert_eq!(fourth.me().await.1["picture_url"], new_url.as_str());
    app.stop().await;
}

async fn a_picture_on_an_internal_address_is_not_fetched(mode: Mode) {
    let mut someone = person("google-sub-ssrf", "Internal");
    let provider = FakeOidc::start(someone.clone()).await;
    // An ID token naming a loopback URL as the picture: a server-side request forgery.
    someone.picture = Some(format!("{}/picture.png", provider.issuer));
    provider.set_person(someone);
    let app = spawn(mode, &provider).await;
    let browser = Browser::new(&app.base_url);
    browser.sign_in().await;
    assert_eq!(browser.answer_age(1990, 1).await.status(), StatusCode::NO_CONTENT);
    let (status, me) = browser.me().await;
    assert_eq!(status, StatusCode::OK, "the sign-in goes on without the picture");
    assert_eq!(me["picture_url"], serde_json::Value::Null);
    assert_eq!(provider.picture_fetches(), 0, "an internal address was requested");
    app.stop().await;
}
