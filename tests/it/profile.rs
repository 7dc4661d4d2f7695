//! The policy's versions and the user's correction of their profile: a version is
//! served only from its effective date, acceptance is recorded per version, and
//! `PATCH /v1/me` changes the name (sealed) and validated preferences.

use petportrait_core::time::now_ms;
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

all_modes!(the_policy_in_force_respects_its_effective_date, the_policy_in_force_respects_its_effective_date);
all_modes!(a_user_corrects_their_profile, a_user_corrects_their_profile);

const LAUNCH: &str = "2026-11-29";

async fn the_policy_in_force_respects_its_effective_date(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let anonymous = reqwest::Client::new();
    let policy = |http: reqwest::Client| {
        let url = format!("{}/v1/policy", app.base_url);
        async move { http.get(url).send().await.expect("GET").json::<Value>().await.expect("JSON") }
    };
    let served = policy(anonymous.clone()).await;
    assert_eq!(served["version"], LAUNCH);
    assert_eq!(served["effective_at"], "2026-11-29T00:00:00.000Z");
    // Under PUBLIC_URL (the tests bind port 0, so theirs names port 0).
    assert_eq!(served["url"], format!("{}/privacy", app.config.public_url));
    let page = anonymous.get(format!("{}/privacy", app.base_url)).send().await.expect("GET");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-security-policy"].to_str().expect("ascii").contains("default-src 'self'"));
    assert!(page.text().await.expect("text").contains("not directed to children under 13"));

    let user = app.user("Reader").await;
    let (_, me) = user.get("/v1/me").await;
    assert_eq!(me["policy"], json!({"accepted_version": null, "current_version": LAUNCH}));

    // Published for later: not served, and not acceptable, before its date.
    let db = &app.services.db;
    assert!(db.publish_policy("2027-future", now_ms() + 3_600_000, "/privacy", now_ms()).await.expect("publish"));
    assert!(!db.publish_policy("2027-future", now_ms(), "/privacy", now_ms()).await.expect("publish"), "changed");
    assert_eq!(policy(anonymous.clone()).await["version"], LAUNCH);
    let (status, problem) = user.post_json("/v1/policy/accept", &json!({"version": "2027-future"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["code"], "policy_version_not_in_force");
    let (status, _) = user.post_json("/v1/policy/accept", &json!({"version": LAUNCH})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = user.post_json("/v1/policy/accept", &json!({"version": LAUNCH})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "accepting twice is harmless");
    assert_eq!(user.get("/v1/me").await.1["policy"]["accepted_version"], LAUNCH);

    // A version whose date has come is in force; the user is asked to accept it.
    assert!(db.publish_policy("2026-12-new", now_ms() - 1_000, "/privacy", now_ms()).await.expect("publish"));
    assert_eq!(policy(anonymous).await["version"], "2026-12-new");
    assert_eq!(
        user.get("/v1/me").await.1["policy"],
        json!({"accepted_version": LAUNCH, "current_version": "2026-12-new"})
    );
    app.stop().await;
}

async fn a_user_corrects_their_profile(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let user = app.user("Typo").await;
    let patch = |body: Value| {
        let request = user.http.patch(user.url("/v1/me")).json(&body).send();
        async move {
            let response = request.await.expect("PATCH");
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, me) = patch(
        json!({"name": "Corrected Name", "preferences": {"default_kind": "portrait", "default_style": "watercolor"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "Corrected Name");
    assert_eq!(me["preferences"], json!({"default_kind": "portrait", "default_style": "watercolor"}));
    assert_eq!(user.get("/v1/me").await.1["name"], "Corrected Name");

    for (body, code) in [
        (json!({"preferences": {"theme": "dark"}}), "invalid_preferences"),
        (json!({"preferences": {"default_style": "cubism"}}), "invalid_preferences"),
        (json!({"preferences": {"default_kind": "music", "default_style": "watercolor"}}), "invalid_preferences"),
        (json!({"name": "  "}), "invalid_name"),
        (json!({"email": "new@example.org"}), "invalid_body"),
    ] {
        let (status, problem) = patch(body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(problem["code"], code, "{body}");
    }
    // Nothing of the refused requests was applied.
    let (_, me) = user.get("/v1/me").await;
    assert_eq!(me["preferences"]["default_style"], "watercolor");

    // A later sign-in keeps the user's own name.
    let again = app.user("Typo").await;
    assert_eq!(again.get("/v1/me").await.1["name"], "Corrected Name");

    // A cross-site page cannot correct anybody's profile with their cookie.
    let response = user
        .http
        .patch(user.url("/v1/me"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"name": "Hijacked"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The corrected name is sealed like the first one.
    assert!(!app.raw_database_text().await.contains("Corrected Name"));
    app.stop().await;
}
