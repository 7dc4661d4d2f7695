//! `/openapi.json` and `/docs`: the document describes every answer the API gives, as
//! Schemathesis (a tool we did not write) finds by sending generated requests, signed
//! in, to a running instance that holds one of everything.

use std::time::Duration;

use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::verifier::schemathesis;
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

all_modes!(the_document_describes_every_answer, the_document_describes_every_answer);

/// The checks that say an answer violates the document (or is a server error).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// Examples per operation and phase, and the seed: `PETPORTRAIT_SCHEMATHESIS_EXAMPLES`
/// and `PETPORTRAIT_SCHEMATHESIS_SEED` for a long run (README.md, "Operations"); a few,
/// and always the same, by default so the suite stays quick and repeatable.
fn run_size() -> (String, String) {
    let examples = std::env::var("PETPORTRAIT_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "12".to_owned());
    let seed = std::env::var("PETPORTRAIT_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261205".to_owned());
    (examples, seed)
}

async fn the_document_describes_every_answer(mode: Mode) {
    let app = TestApp::spawn(mode, &[("WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    let ann = app.user("Ann").await;
    // One of everything, so the generated requests reach real resources, not only 404s.
    let (status, endpoint) = ann
        .post_json(
            "/v1/webhook-endpoints",
            &json!({"url": "http://127.0.0.1:9/hook", "events": ["generation.succeeded"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    let upload = ann.upload_ok(pet_jpeg()).await;
    let generation = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    let done = ann.wait_terminal(&generation, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let file = done["outputs"][0]["url"].as_str().expect("an output").trim_start_matches("/v1/files/").to_owned();
    let (status, saved) = ann.post_json(&format!("/v1/generations/{generation}/save"), &json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    let (_, deliveries) =
        ann.get(&format!("/v1/webhook-endpoints/{}/deliveries", endpoint["id"].as_str().expect("id"))).await;
    let (status, token) = ann.post_json("/v1/me/tokens", &json!({"name": "schemathesis"})).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let (status, export) = ann.post_json("/v1/privacy/exports", &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{export}");
    let export = export["id"].as_str().expect("id").to_owned();
    petportrait_tests::wait_until("the export", Duration::from_secs(60), || async {
        (ann.get(&format!("/v1/privacy/requests/{export}")).await.1["status"] == "completed").then_some(())
    })
    .await;

    let ids = [
        ("/v1/uploads/{id}", json!(upload)),
        ("/v1/generations/{id}", json!(generation)),
        ("/v1/generations/{id}/events", json!(generation)),
        ("/v1/generations/{id}/save", json!(generation)),
        ("/v1/generations/{id}/cancel", json!(generation)),
        ("/v1/files/{id}", json!(file)),
        ("/v1/gallery/{id}", saved["data"][0]["id"].clone()),
        ("/v1/webhook-endpoints/{id}", endpoint["id"].clone()),
        ("/v1/webhook-endpoints/{id}/deliveries", endpoint["id"].clone()),
        ("/v1/webhook-deliveries/{id}/retry", deliveries["data"][0]["id"].clone()),
        ("/v1/privacy/requests/{id}", json!(export)),
        ("/v1/privacy/requests/{id}/download", json!(export)),
    ];
    let mut config = format!(
        "[headers]\nAuthorization = \"Bearer {}\"\n\n[parameters]\n\"body.upload_id\" = \"{upload}\"\n",
        token["token"].as_str().expect("a token")
    );
    for (path, id) in ids {
        let Value::String(id) = id else { panic!("no id for {path}") };
        config.push_str(&format!(
            "\n[[operations]]\ninclude-path = \"{path}\"\nparameters = {{ \"path.id\" = \"{id}\" }}\n"
        ));
    }
    // The test's own data folder, removed with it.
    let config_path = app.isolation.data_dir.join("schemathesis.toml");
    std::fs::write(&config_path, config).expect("write the configuration");

    let (examples, seed) = run_size();
    let base = app.base_url.clone();
    let (passed, report) = tokio::task::spawn_blocking(move || {
        schemathesis(
            &base,
            &config_path,
            &[
                "--checks",
                CHECKS,
                "--max-examples",
                &examples,
                "--seed",
                &seed,
                "--workers",
                "2",
                // Signing out everywhere revokes the token every later request carries.
                "--exclude-path",
                "/auth/logout-all",
                "--exclude-path",
                "/auth/logout",
                // So does deleting the account (tested in `privacy::`).
                "--exclude-path",
                "/v1/privacy/deletion",
            ],
        )
    })
    .await
    .expect("schemathesis ran");
    assert!(passed, "Schemathesis found answers the document does not describe:\n{report}");
    assert!(report.contains("passed"), "{report}");
    app.stop().await;
}

#[tokio::test]
async fn the_documentation_page_is_served_from_the_binary() {
    let app = TestApp::spawn(Mode::Embedded, &[]).await;
    let page = reqwest::get(format!("{}/docs/", app.base_url)).await.expect("the page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui-bundle.js"), "{html}");
    // Every asset is ours: relative links only, no other host.
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"), "{html}");
    let config = reqwest::get(format!("{}/docs/swagger-initializer.js", app.base_url)).await.expect("config");
    assert_eq!(config.status(), StatusCode::OK);
    assert!(config.text().await.expect("js").contains("/openapi.json"));
    let bundle = reqwest::get(format!("{}/docs/swagger-ui-bundle.js", app.base_url)).await.expect("bundle");
    assert_eq!(bundle.status(), StatusCode::OK);

    let document: Value =
        reqwest::get(format!("{}/openapi.json", app.base_url)).await.expect("doc").json().await.expect("json");
    assert_eq!(document["openapi"], "3.1.0");
    // Each operation says which problem codes it answers, with the problem body.
    let create = &document["paths"]["/v1/generations"]["post"]["responses"];
    assert!(create["402"]["description"].as_str().expect("402").contains("`insufficient_credits`"), "{create}");
    assert!(create["401"]["description"].as_str().expect("401").contains("`unauthorized`"), "{create}");
    assert_eq!(
        create["422"]["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem",
        "{create}"
    );
    // Rate limits: per user on creating, per address on the routes without sign-in.
    assert!(create["429"]["headers"]["RateLimit"].is_object(), "{create}");
    assert!(document["paths"]["/v1/policy"]["get"]["responses"]["429"].is_object());
    assert!(document["paths"]["/healthz"]["get"]["responses"]["429"].is_null());
    // Dev sign-in is documented only where it is on.
    assert!(document["paths"]["/auth/dev-login"].is_object());
    app.stop().await;
}
