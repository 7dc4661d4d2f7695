//! Privacy rights end to end: a user with one of everything exports their data (the ZIP,
//! read with the `zip` crate, holds every inventory field of theirs and no byte of
//! another user's), then deletes their account (no row references them afterwards but
//! detached payment records and pseudonymous audit entries, the bucket holds nothing of
//! theirs, their session and token stop working, and running the deletion again changes
//! nothing); and a deletion whose worker dies between its steps resumes and completes.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use petportrait_core::privacy::audit;
use petportrait_core::privacy::export::DOCUMENTS;
use petportrait_core::privacy::inventory::{TABLES, table};
use petportrait_tests::client::Client;
use petportrait_tests::fake_stripe::{paid_session_event, post_event, signature as stripe_signature};
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::receiver::{Answer, Receiver};
use petportrait_tests::{DetachedWorker, Mode, TestApp, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

const STRIPE_SECRET: &str = "whsec_privacy_tests";

all_modes!(export_then_delete_an_account, export_then_delete_an_account);

/// What a seeded user holds, to search for.
struct Seeded {
    client: Client,
    user_id: String,
    token: String,
    ids: Vec<String>,
}

async fn seed(app: &TestApp, name: &str, receiver: &Receiver) -> Seeded {
    let client = app.user(name).await;
    let user_id = client.user_id().await;
    let upload = client.upload_ok(pet_jpeg()).await;
    let generation = client.create_portrait(&upload, "pixel_art").await["id"].as_str().expect("id").to_owned();
    let done = client.wait_terminal(&generation, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (status, saved) = client.post_json(&format!("/v1/generations/{generation}/save"), &json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    // A second portrait of the same style: its file has the same name as the first's.
    let twin = client.create_portrait(&upload, "pixel_art").await["id"].as_str().expect("id").to_owned();
    assert_eq!(client.wait_terminal(&twin, Duration::from_secs(60)).await["status"], "succeeded");
    let (status, token) = client.post_json("/v1/me/tokens", &json!({"name": format!("{name}'s script")})).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let url = receiver.path(&format!("{}-hooks", name.to_lowercase()), Answer::Ok);
    let (status, endpoint) = client
        .post_json(
            "/v1/webhook-endpoints",
            &json!({"url": url, "events": ["privacy_export.ready", "generation.succeeded"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    // A purchase: Stripe's event for a paid Checkout Session of this user.
    let session = format!("cs_{}", name.to_lowercase());
    let event = paid_session_event(&format!("evt_{}", name.to_lowercase()), &session, &user_id, "mini", 199);
    let now = petportrait_core::time::now_ms() / 1000;
    assert_eq!(post_event(app, &event, Some(stripe_signature(&event, STRIPE_SECRET, now))).await, StatusCode::OK);
    let ledger = client.ledger().await;
    assert!(ledger.iter().any(|e| e["kind"] == "purchase"), "{ledger:?}");
    let ids = vec![
        user_id.clone(),
        upload,
        generation,
        saved["data"][0]["id"].as_str().expect("item").to_owned(),
        token["id"].as_str().expect("token id").to_owned(),
        endpoint["id"].as_str().expect("endpoint id").to_owned(),
        client.email.clone(),
        name.to_owned(),
    ];
    Seeded { client, user_id, token: token["token"].as_str().expect("secret").to_owned(), ids }
}

async fn export_then_delete_an_account(mode: Mode) {
    let receiver = Receiver::start().await;
    let vars = [
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("CREDIT_PACKS", "mini:5:199:eur"),
        ("STRIPE_SECRET_KEY", "sk_test_privacy"),
        ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
    ];
    let app = TestApp::spawn(mode, &vars).await;
    let ann = seed(&app, "Annabel", &receiver).await;
    let bob = seed(&app, "Bartholomew", &receiver).await;

    // The export: received (202), the same request while it is open (200), then ready.
    let held = rows_held(&app, &ann.user_id).await;
    for name in [
        "users",
        "uploads",
        "generations",
        "generation_outputs",
        "gallery_items",
        "credit_ledger",
        "payments",
        "api_tokens",
        "sessions",
        "webhook_endpoints",
        "stored_objects",
    ] {
        assert!(held[name] > 0, "Ann holds rows of {name}");
    }
    let (status, request) = ann.client.post_json("/v1/privacy/exports", &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let id = request["id"].as_str().expect("id").to_owned();
    let (status, again) = ann.client.post_json("/v1/privacy/exports", &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    if again["id"] != id.as_str() {
        let (_, first) = ann.client.get(&format!("/v1/privacy/requests/{id}")).await;
        assert_eq!(first["status"], "completed", "a second export only once the first has ended: {again}");
    }
    assert_eq!((request["kind"].as_str(), request["status"].as_str()), (Some("export"), Some("received")));
    let month = petportrait_core::time::one_month_after(
        petportrait_core::time::parse_rfc3339(request["created_at"].as_str().expect("created_at")).expect("time"),
    );
    assert_eq!(request["due_at"].as_str(), Some(petportrait_core::time::rfc3339(month).as_str()));
    let ready = wait_until("the export to be ready", Duration::from_secs(60), || async {
        let (_, r) = ann.client.get(&format!("/v1/privacy/requests/{id}")).await;
        (r["status"] == "completed").then_some(r)
    })
    .await;
    let (_, list) = ann.client.get("/v1/privacy/requests").await;
    assert_eq!(list["data"][0]["id"], id.as_str(), "{list}");
    let (status, _) = bob.client.get(&format!("/v1/privacy/requests/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's request");
    let (status, _) = bob.client.get(&format!("/v1/privacy/requests/{id}/download")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's export");
    let anonymous = reqwest::Client::new();
    for path in ["/v1/privacy/requests", &format!("/v1/privacy/requests/{id}")] {
        let status = anonymous.get(format!("{}{path}", app.base_url)).send().await.expect("GET").status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a session");
    }
    let (status, problem) =
        ann.client.post_json("/v1/privacy/deletion", &json!({"confirm": "DELETE", "also": 1})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "an unknown field: {problem}");
    assert!(problem["code"].is_string(), "a problem: {problem}");
    let (status, zip_bytes) = ann.client.download(ready["download_url"].as_str().expect("download_url")).await;
    assert_eq!(status, StatusCode::OK);

    let entries = read_zip(&zip_bytes);
    for name in ["manifest.json", "profile.json", "generations.json", "csv/generations.csv", "audit_log.json"] {
        assert!(entries.contains_key(name), "{name} missing from {:?}", entries.keys());
    }
    assert!(entries.keys().any(|n| n.starts_with("files/gallery/")), "{:?}", entries.keys());
    let outputs = entries.keys().filter(|n| n.starts_with("files/output/")).count();
    assert_eq!(outputs, 2, "both outputs, though their names are the same: {:?}", entries.keys());
    every_inventory_field_is_exported(&held, &entries);
    let profile = String::from_utf8_lossy(&entries["profile.json"]).into_owned();
    assert!(profile.contains(&ann.client.email) && profile.contains("Annabel"), "{profile}");
    // No byte of the other user, in the archive itself or in any entry.
    for needle in &bob.ids {
        let needle = needle.as_bytes();
        assert!(!contains(&zip_bytes, needle), "the archive holds {:?}", String::from_utf8_lossy(needle));
        for (name, content) in &entries {
            assert!(!contains(content, needle), "{name} holds {:?}", String::from_utf8_lossy(needle));
        }
    }
    // The webhook: `privacy_export.ready` with the request, to Ann's endpoint only.
    let ready_events = receiver.wait_for("annabel-hooks", 1, |r| r.event_type() == "privacy_export.ready").await;
    assert_eq!(ready_events[0].json()["data"]["id"], id.as_str());
    assert!(receiver.received("bartholomew-hooks").iter().all(|r| r.event_type() != "privacy_export.ready"));
    // Past EXPORT_TTL the scheduler's purge deletes the archive; the download is gone.
    let ttl = petportrait_core::time::duration_ms(app.config.lifetimes.export_ttl);
    let later = petportrait_core::time::now_ms() + ttl + 60_000;
    petportrait_scheduler::purge_expired_objects(&app.services, later, 100).await.expect("purge");
    let (status, _) = ann.client.download(ready["download_url"].as_str().expect("download_url")).await;
    assert_eq!(status, StatusCode::GONE, "the export after EXPORT_TTL");

    // The deletion: a wrong confirmation changes nothing; then the account closes at once.
    let (status, problem) = ann.client.post_json("/v1/privacy/deletion", &json!({"confirm": "delete"})).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("confirmation_required")));
    let (status, deletion) = ann.client.post_json("/v1/privacy/deletion", &json!({"confirm": "DELETE"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{deletion}");
    let (status, _) = ann.client.get("/v1/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old session");
    let by_token = reqwest::Client::new()
        .get(format!("{}/v1/me", app.base_url))
        .bearer_auth(&ann.token)
        .send()
        .await
        .expect("GET");
    assert_eq!(by_token.status(), StatusCode::UNAUTHORIZED, "the old token");
    let subjects = audit::subjects(app.services.accounts.keyring(), &ann.user_id);
    let receipt = wait_until("the deletion to complete", Duration::from_secs(60), || async {
        let entries = app.services.db.audit_entries(&subjects).await.expect("audit");
        entries.into_iter().find(|e| e.action == "deletion_completed")
    })
    .await;
    let receipt: Value = serde_json::from_str(&receipt.detail).expect("receipt");
    // Two outputs and the gallery copy (the upload and the export expired above).
    assert!(receipt["objects_removed"].as_u64() >= Some(3), "{receipt}");
    assert!(receipt["retained"][0]["records"] == 1, "one payment record kept: {receipt}");

    // Nothing references Ann but her detached payment and the pseudonymous audit log.
    let rows = every_row_as_text(&app, mode).await;
    for needle in ann.ids.iter().take(6) {
        // The embedded queue's own records of finished jobs name the job's generation id
        // (never a user's) until the queue's retention (an hour) forgets them; no row
        // resolves that id once the generation is deleted.
        let holding: Vec<&String> = rows
            .iter()
            .filter(|(t, row)| !t.starts_with("pp_queue_") && row.contains(needle.as_str()))
            .map(|(t, _)| t)
            .collect();
        assert!(holding.is_empty(), "{needle} still in {holding:?}");
    }
    for t in TABLES {
        assert_eq!(app.services.db.count_rows_of_user(t, &ann.user_id).await.expect("count"), 0, "{}", t.name);
    }
    let payments: Vec<&String> =
        rows.iter().filter(|(t, row)| t == "payments" && row.contains("cs_annabel")).map(|(_, r)| r).collect();
    assert_eq!(payments.len(), 1, "the payment record is kept, detached: {payments:?}");
    assert!(app.services.store.list(&format!("u/{}/", ann.user_id)).await.expect("list").is_empty());
    // Bob is untouched.
    let (status, me) = bob.client.get("/v1/me").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert!(!app.services.store.list(&format!("u/{}/", bob.user_id)).await.expect("list").is_empty());

    // Running the deletion again changes nothing: its job, and its last step alone.
    let before = every_row_as_text(&app, mode).await;
    let state = std::sync::Arc::new(petportrait_worker::WorkerState {
        config: app.config.clone(),
        services: app.services.clone(),
        studio: std::sync::Arc::new(petportrait_studio::LocalStudio::new(app.config.uploads.clone())),
        worker_id: "again".into(),
    });
    let job = petportrait_core::queue::PrivacyJob { request_id: deletion["id"].as_str().expect("id").to_owned() };
    let outcome = petportrait_worker::privacy::handle(state, job).await;
    assert!(matches!(outcome, petportrait_core::queue::JobOutcome::Done), "{outcome:?}");
    let again = app.services.db.delete_user_rows(&ann.user_id, |_, _| unreachable!("nothing to delete")).await;
    assert!(again.expect("delete again").is_none());
    assert_eq!(every_row_as_text(&app, mode).await, before);
    // Signing in again with the same Google account is a new person.
    let back = Client::sign_in(&app.base_url, "Annabel").await;
    assert_ne!(back.user_id().await, ann.user_id);
    app.stop().await;
}

/// How many rows of each table the user holds (the audit log's by pseudonym).
async fn rows_held(app: &TestApp, user: &str) -> BTreeMap<&'static str, i64> {
    let mut held = BTreeMap::new();
    for t in TABLES {
        let count = if t.name == "audit_log" {
            let subjects = audit::subjects(app.services.accounts.keyring(), user);
            app.services.db.audit_entries(&subjects).await.expect("audit").len() as i64
        } else {
            app.services.db.count_rows_of_user(t, user).await.expect("count")
        };
        held.insert(t.name, count);
    }
    held
}

/// Every row the user held before the export (`held`) is in its document, with every
/// exported column of its table; every CSV has the table's exported columns.
fn every_inventory_field_is_exported(held: &BTreeMap<&'static str, i64>, entries: &BTreeMap<String, Vec<u8>>) {
    for (document, tables) in DOCUMENTS {
        let doc: Value = serde_json::from_slice(&entries[&format!("{document}.json")]).expect("a JSON document");
        for name in *tables {
            let t = table(name).expect("registered");
            let rows = doc["tables"][name].as_array().unwrap_or_else(|| panic!("{document}.json: no {name}"));
            let held = held[name];
            // Rows made after the request (its own audit entries, the ready event) may
            // be in it too.
            assert!(rows.len() as i64 >= held, "{name}: {} rows exported, {held} held", rows.len());
            for row in rows {
                for column in t.columns.iter().filter(|c| c.exported) {
                    assert!(row.get(column.name).is_some(), "{name}.{} missing from {row}", column.name);
                }
            }
            let csv = String::from_utf8_lossy(&entries[&format!("csv/{name}.csv")]).into_owned();
            let header: Vec<&str> = csv.lines().next().expect("a header").split(',').collect();
            let exported: Vec<&str> = t.columns.iter().filter(|c| c.exported).map(|c| c.name).collect();
            assert_eq!(header, exported, "csv/{name}.csv header");
        }
    }
}

fn read_zip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a ZIP archive");
    let mut entries = BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).expect("an entry");
        let mut content = Vec::new();
        file.read_to_end(&mut content).expect("the entry reads (CRC checked)");
        entries.insert(file.name().expect("an entry name").into_owned(), content);
    }
    entries
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every row of every table, as `(table, text of its values)`, read with plain SQL.
async fn every_row_as_text(app: &TestApp, mode: Mode) -> Vec<(String, String)> {
    use sqlx::{Connection, Row};
    let columns = app.services.db.schema_columns().await.expect("schema");
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (t, c) in columns {
        tables.entry(t).or_default().push(c);
    }
    let mut conn = sqlx::AnyConnection::connect(app.config.database.url()).await.expect("connect");
    let mut out = Vec::new();
    for (t, cols) in tables {
        // SQLite keeps the embedded queue's payloads as blobs, which are not text.
        let select: Vec<String> = cols
            .iter()
            .map(|c| match mode {
                Mode::Embedded => {
                    format!("CASE WHEN typeof({c}) = 'blob' THEN 'x:' || hex({c}) ELSE CAST({c} AS TEXT) END")
                }
                _ => format!("CAST({c} AS TEXT)"),
            })
            .collect();
        let sql = format!("SELECT {} FROM {t} ORDER BY 1", select.join(", "));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await.expect("read a table");
        for row in rows {
            let values: Vec<String> = (0..cols.len())
                .map(|i| row.try_get::<Option<String>, _>(i).ok().flatten().unwrap_or_default())
                .map(|v| match v.strip_prefix("x:") {
                    Some(hex) => String::from_utf8_lossy(&unhex(hex)).into_owned(),
                    None => v,
                })
                .collect();
            out.push((t.clone(), values.join("|")));
        }
    }
    out
}

// A deletion whose worker dies between its steps. The test holds a lock on the user's
// row (PostgreSQL's `FOR UPDATE`), so the worker finishes its first step (objects) and
// then waits in the second; it is killed there, the lock released, and the scheduler's
// sweep hands the request to a new worker, which resumes after the first step.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deletion_killed_between_steps_resumes_distributed() {
    a_deletion_killed_between_steps_resumes(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deletion_killed_between_steps_resumes_cluster() {
    a_deletion_killed_between_steps_resumes(Mode::Cluster).await;
}

async fn a_deletion_killed_between_steps_resumes(mode: Mode) {
    use sqlx::Connection;
    let roles = petportrait::Roles { web: true, worker: false, scheduler: false };
    let app = TestApp::spawn_with(mode, &[], roles, None).await;
    let ann = app.user("Annabel").await;
    let user = ann.user_id().await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let queued = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    let (status, deletion) = ann.post_json("/v1/privacy/deletion", &json!({"confirm": "DELETE"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{deletion}");
    let id = deletion["id"].as_str().expect("id").to_owned();
    let generation =
        app.services.db.get_generation(&petportrait_core::ids::GenerationId::parse(&queued).expect("id")).await;
    assert_eq!(generation.expect("read").expect("row").status.as_str(), "canceled", "canceled at once");

    // Hold the user's row: the deletion's second step waits for it.
    let mut lock = sqlx::AnyConnection::connect(app.config.database.url()).await.expect("connect");
    sqlx::query("BEGIN").execute(&mut lock).await.expect("begin");
    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE").bind(&user).execute(&mut lock).await.expect("lock");
    let studio = std::sync::Arc::new(petportrait_studio::LocalStudio::new(app.config.uploads.clone()));
    let doomed = DetachedWorker::start(app.config.clone(), studio.clone());
    wait_until("the first step to be recorded", Duration::from_secs(30), || async {
        let row = app.services.db.privacy_request(&id).await.expect("read");
        row.filter(|r| r.step == petportrait_core::privacy::deletion::OBJECTS_DELETED).map(|_| ())
    })
    .await;
    doomed.kill();
    sqlx::query("ROLLBACK").execute(&mut lock).await.expect("release");
    let row = app.services.db.privacy_request(&id).await.expect("read").expect("still there");
    assert_eq!(row.status.as_str(), "in_progress", "the killed worker did not finish");

    // A new worker; the scheduler's sweep (its clock moved past the dead lease) hands the
    // request over, and the job resumes after the first step.
    let _worker = DetachedWorker::start(app.config.clone(), studio);
    let subjects = audit::subjects(app.services.accounts.keyring(), &user);
    let entries = wait_until("the deletion to complete", Duration::from_secs(60), || async {
        let later = petportrait_core::time::now_ms() + 60_000;
        petportrait_scheduler::redispatch_stalled_requests(&app.services, later, later).await.expect("sweep");
        let entries = app.services.db.audit_entries(&subjects).await.expect("audit");
        entries.iter().any(|e| e.action == "deletion_completed").then_some(entries)
    })
    .await;
    let steps: Vec<&str> = entries.iter().filter(|e| e.action == "step_done").map(|e| e.detail.as_str()).collect();
    assert_eq!(steps.len(), 1, "the first step ran once: {steps:?}");
    let receipt = entries.iter().find(|e| e.action == "deletion_completed").expect("receipt");
    let receipt: Value = serde_json::from_str(&receipt.detail).expect("json");
    assert_eq!(receipt["objects_removed"], 1, "the upload, counted by the first step: {receipt}");
    for t in TABLES {
        assert_eq!(app.services.db.count_rows_of_user(t, &user).await.expect("count"), 0, "{}", t.name);
    }
    assert!(app.services.store.list(&format!("u/{user}/")).await.expect("list").is_empty());
    app.stop().await;
}
