//! Expiry and retention: the scheduler purges expired uploads and outputs (objects and
//! rows), downloads then answer 410, and ticks are single-flight across schedulers;
//! payment records go after their legal period, generation Idempotency-Keys after a
//! day, and the object walk removes orphans and marks rows whose bytes are gone.

use std::time::Duration;

use petportrait_core::ids::{ObjectId, UserId};
use petportrait_core::objects::{Placement, Source, WrittenObject};
use petportrait_core::time::now_ms;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;

/// The test drives the scheduler's ticks itself, with a clock it moves.
const NO_SCHEDULER: petportrait::Roles = petportrait::Roles { web: true, worker: true, scheduler: false };

all_modes!(expired_outputs_are_purged_and_gone, expired_outputs_are_purged_and_gone);
all_modes!(one_scheduler_runs_each_tick, one_scheduler_runs_each_tick);

async fn expired_outputs_are_purged_and_gone(mode: Mode) {
    // Outputs live a day; the purge batch is tiny so the purge takes several batches.
    let overrides = [("OUTPUT_TTL", "1d"), ("UPLOAD_TTL", "2d"), ("PURGE_BATCH", "1"), ("STARTER_CREDITS", "20")];
    let app = TestApp::spawn_with(mode, &overrides, NO_SCHEDULER, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let mut files = Vec::new();
    for style in ["watercolor", "pencil_sketch"] {
        let id = ann.create_portrait(&upload, style).await["id"].as_str().expect("id").to_owned();
        let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
        assert_eq!(done["status"], "succeeded");
        files.push(done["outputs"][0]["url"].as_str().expect("url").to_owned());
    }
    for file in &files {
        assert_eq!(ann.download(file).await.0, StatusCode::OK);
    }
    let (_, me) = ann.get("/v1/me").await;
    let user_prefix = format!("u/{}/", me["id"].as_str().expect("user id"));
    assert_eq!(app.services.store.list(&user_prefix).await.expect("list").len(), 3, "one upload and two outputs");

    // Before expiry nothing is purged.
    let report =
        petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", now_ms()).await.expect("tick");
    assert_eq!((report.ran, report.objects_purged), (true, 0));

    // Thirty hours later the outputs have expired, the upload not yet.
    let later = now_ms() + 30 * 3_600_000;
    let report = petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", later).await.expect("tick");
    assert_eq!(report.objects_purged, 2);
    let left = app.services.store.list(&user_prefix).await.expect("list");
    assert_eq!(left.len(), 1, "only the upload is left: {left:?}");
    assert!(left[0].contains("/uploads/"));
    for file in &files {
        let (status, body) = ann.get(file).await;
        assert_eq!(status, StatusCode::GONE, "{body}");
        assert_eq!(body["code"], "gone");
    }
    // The generation still describes its outputs, without a download link.
    let (_, history) = ann.get("/v1/generations").await;
    assert!(history["data"][0]["outputs"][0]["url"].is_null());

    // Three days later the upload goes too; a second purge finds nothing to do.
    let much_later = now_ms() + 72 * 3_600_000;
    let report =
        petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", much_later).await.expect("tick");
    assert_eq!(report.objects_purged, 1);
    assert!(app.services.store.list(&user_prefix).await.expect("list").is_empty());
    let report =
        petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", much_later + 1).await.expect("tick");
    assert_eq!(report.objects_purged, 0);
    app.stop().await;
}

async fn one_scheduler_runs_each_tick(mode: Mode) {
    let app = TestApp::spawn_with(mode, &[("SCHEDULER_TICK", "10s")], NO_SCHEDULER, None).await;
    let now = now_ms();
    let (a, b) = tokio::join!(
        petportrait_scheduler::tick(&app.config, &app.services, "scheduler-a", now),
        petportrait_scheduler::tick(&app.config, &app.services, "scheduler-b", now),
    );
    let ran = [a.expect("tick a").ran, b.expect("tick b").ran];
    assert_eq!(ran.iter().filter(|r| **r).count(), 1, "exactly one of two schedulers runs a tick: {ran:?}");
    // Within the lease the loser keeps losing; after it lapses the next tick is anyone's.
    let again =
        petportrait_scheduler::tick(&app.config, &app.services, "scheduler-c", now + 5_000).await.expect("tick");
    assert!(!again.ran);
    let next =
        petportrait_scheduler::tick(&app.config, &app.services, "scheduler-c", now + 10_000).await.expect("tick");
    assert!(next.ran);
    app.stop().await;
}

all_modes!(expired_uploads_are_gone, expired_uploads_are_gone);

async fn expired_uploads_are_gone(mode: Mode) {
    let app = TestApp::spawn_with(mode, &[("UPLOAD_TTL", "1s")], NO_SCHEDULER, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let path = format!("/v1/uploads/{upload}");
    let body = petportrait_tests::wait_until("the upload to expire", Duration::from_secs(10), || async {
        let (status, body) = ann.get(&path).await;
        (status == StatusCode::GONE).then_some(body)
    })
    .await;
    assert_eq!(body["code"], "gone");
    let (status, body) = ann
        .post_json(
            "/v1/generations",
            &serde_json::json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("upload_expired")), "{body}");
    assert_eq!(ann.available_credits().await, 10, "nothing was held");
    app.stop().await;
}

const DAY_MS: i64 = 86_400_000;

all_modes!(payment_records_are_deleted_after_their_period, payment_records_are_deleted_after_their_period);
all_modes!(generation_keys_replay_for_a_day_then_are_forgotten, generation_keys_replay_for_a_day_then_are_forgotten);
all_modes!(
    the_object_walk_removes_orphans_and_marks_lost_objects,
    the_object_walk_removes_orphans_and_marks_lost_objects
);
all_modes!(the_object_walk_resumes_from_its_cursor, the_object_walk_resumes_from_its_cursor);

async fn payment_records_are_deleted_after_their_period(mode: Mode) {
    use petportrait_core::privacy::inventory::PAYMENT_RETENTION_DAYS;
    let app = TestApp::spawn_with(mode, &[], NO_SCHEDULER, None).await;
    let ann = app.user("Ann").await;
    let user = UserId::parse(&ann.user_id().await).expect("user id");
    // Test-only SQL: the app never writes a payment dated in the past.
    let now = now_ms();
    for (id, created_at) in [("pay_older", now - 2 * DAY_MS), ("pay_newer", now)] {
        let sql = format!(
            "INSERT INTO payments (id, user_id, pack_id, credits, amount, currency, checkout_session_id, status, \
             created_at) VALUES ($1, $2, 'starter', 10, 500, 'eur', $3, 'paid', {created_at})"
        );
        app.raw_execute(&sql, &[id, user.as_str(), &format!("cs_{id}")]).await;
    }
    let period = i64::from(PAYMENT_RETENTION_DAYS) * DAY_MS;
    let ids = || async {
        let rows = app.services.db.list_payments(&user, None, 10).await.expect("payments");
        rows.into_iter().map(|p| p.id).collect::<Vec<_>>()
    };

    // Within their period both are kept.
    let tick = |at| petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", at);
    assert_eq!(tick(now + period - 3 * DAY_MS).await.expect("tick").payments_deleted, 0);
    assert_eq!(ids().await, ["pay_newer", "pay_older"]);
    // A day after the older one's period ended, it goes; the newer one stays.
    assert_eq!(tick(now + period - DAY_MS).await.expect("tick").payments_deleted, 1);
    assert_eq!(ids().await, ["pay_newer"]);
    app.stop().await;
}

async fn generation_keys_replay_for_a_day_then_are_forgotten(mode: Mode) {
    use petportrait_scheduler::IDEMPOTENCY_KEY_RETENTION_MS;
    let app = TestApp::spawn_with(mode, &[("UPLOAD_TTL", "7d")], NO_SCHEDULER, None).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let body = serde_json::json!({"kind": "portrait", "upload_id": upload, "style": "watercolor"});
    let send = || {
        let request = ann.http.post(ann.url("/v1/generations")).header("idempotency-key", "order-1").json(&body);
        async move {
            let response = request.send().await.expect("post");
            let status = response.status();
            let replayed = response.headers().get("idempotent-replayed").is_some();
            let body = response.json::<serde_json::Value>().await.expect("json");
            (status, replayed, body["id"].as_str().expect("id").to_owned())
        }
    };
    let tick = |at| petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", at);
    let (status, replayed, first) = send().await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, false));

    // Within the day the key replays the first generation.
    let report = tick(now_ms() + IDEMPOTENCY_KEY_RETENTION_MS - 60_000).await.expect("tick");
    assert_eq!(report.generation_keys_cleared, 0);
    assert_eq!(send().await, (StatusCode::ACCEPTED, true, first.clone()));

    // After it the key is forgotten: the same key and body are a new request.
    let report = tick(now_ms() + IDEMPOTENCY_KEY_RETENTION_MS + 60_000).await.expect("tick");
    assert_eq!(report.generation_keys_cleared, 1);
    let (status, replayed, second) = send().await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, false));
    assert_ne!(second, first, "a new generation");
    assert_eq!(send().await, (StatusCode::ACCEPTED, true, second), "which the key now replays");
    assert_eq!(ann.available_credits().await, 2, "two generations held or charged");
    app.stop().await;
}

/// Writes a tracked object (row, then bytes) of `user`, as every writer does.
async fn write_object(app: &TestApp, user: &UserId, version: &str) -> WrittenObject {
    let bytes = version.as_bytes().to_vec().into();
    let placement = Placement::Picture { version };
    app.services
        .objects
        .write(user, placement, "image/png", Source::Bytes(bytes), now_ms(), |written| async move {
            Ok::<_, petportrait_core::db::DbError>(written)
        })
        .await
        .expect("write")
}

async fn the_object_walk_removes_orphans_and_marks_lost_objects(mode: Mode) {
    use petportrait_scheduler::ORPHAN_GRACE_MS;
    let overrides = [("UPLOAD_TTL", "7d"), ("OUTPUT_TTL", "7d")];
    let app = TestApp::spawn_with(mode, &overrides, NO_SCHEDULER, None).await;
    let ann = app.user("Ann").await;
    let user = UserId::parse(&ann.user_id().await).expect("user id");
    let upload = ann.upload_ok(pet_jpeg()).await;
    let id = ann.create_portrait(&upload, "watercolor").await["id"].as_str().expect("id").to_owned();
    let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded");
    let file = done["outputs"][0]["url"].as_str().expect("url").to_owned();

    // An object whose row is gone (an account's deletion removes rows; the bytes follow)…
    let rowless = write_object(&app, &user, "rowless").await;
    app.raw_execute("DELETE FROM stored_objects WHERE id = $1", &[rowless.id.as_str()]).await;
    // …one whose row says deleted (a purge whose delete did not take)…
    let dead = write_object(&app, &user, "dead").await;
    app.services.db.mark_objects_deleted(&[dead.id.to_string()], now_ms()).await.expect("mark");
    // …and an output whose bytes went behind the database's back.
    let outputs = app.services.store.list(&format!("u/{user}/generated/")).await.expect("list");
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    app.services.store.delete_many(&outputs).await.expect("delete");

    // Within the grace nothing is touched: a write may be in flight.
    let tick = |at| petportrait_scheduler::tick(&app.config, &app.services, "test-scheduler", at);
    let walk = tick(now_ms()).await.expect("tick").objects;
    assert_eq!((walk.orphans_deleted, walk.missing_marked, walk.wrapped), (0, 0, true), "{walk:?}");
    assert_eq!(app.services.store.list("").await.expect("list").len(), 3, "the upload and both orphans");

    // A day later the orphans go and the lost output's row is marked; the upload stays.
    let walk = tick(now_ms() + ORPHAN_GRACE_MS + 60_000).await.expect("tick").objects;
    assert_eq!((walk.orphans_deleted, walk.missing_marked), (2, 1), "{walk:?}");
    let left = app.services.store.list("").await.expect("list");
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(&format!("u/{user}/uploads/")), "{left:?}");
    let (status, body) = ann.get(&file).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::GONE, Some("gone")), "{body}");
    let upload_object = app.services.db.get_upload(&upload).await.expect("upload").expect("its row").object_id;
    let row = app.services.db.get_object(&ObjectId::from_db(upload_object)).await.expect("read").expect("row");
    assert!(row.is_available(now_ms()), "the upload is untouched: {row:?}");
    app.stop().await;
}

async fn the_object_walk_resumes_from_its_cursor(mode: Mode) {
    use petportrait_scheduler::{OBJECT_WALK, ORPHAN_GRACE_MS, walk_objects};
    let app = TestApp::spawn_with(mode, &[], NO_SCHEDULER, None).await;
    let ann = app.user("Ann").await;
    let user = UserId::parse(&ann.user_id().await).expect("user id");
    let mut written = Vec::new();
    for n in 0..5 {
        written.push(write_object(&app, &user, &format!("v{n}")).await);
    }
    // The third key in the bucket's order loses its row: one page deletes it.
    let mut keys = app.services.store.list("").await.expect("list");
    keys.sort();
    assert_eq!(keys.len(), 5, "{keys:?}");
    let orphan = written.iter().find(|w| w.key == keys[2]).expect("the third key");
    app.raw_execute("DELETE FROM stored_objects WHERE id = $1", &[orphan.id.as_str()]).await;

    let db = &app.services.db;
    let cursor = || async { db.maintenance_cursor(OBJECT_WALK).await.expect("cursor") };
    assert_eq!(cursor().await, None);
    // Two keys a walk, a day later: each walk goes on where the persisted cursor says,
    // and the one that reaches the end starts the walk over.
    let later = now_ms() + ORPHAN_GRACE_MS + 60_000;
    let expected = [(2, 0, Some(&keys[1])), (2, 1, Some(&keys[3])), (1, 0, None)];
    for (listed, orphans, after) in expected {
        let walk = walk_objects(&app.services, later, 2, 1).await.expect("walk");
        assert_eq!((walk.keys_listed, walk.orphans_deleted, walk.missing_marked), (listed, orphans, 0), "{walk:?}");
        assert_eq!(walk.wrapped, after.is_none());
        assert_eq!(cursor().await.as_ref(), after);
    }
    // From the start again, now without the orphan; several pages in one call stop at
    // the end of the bucket.
    let walk = walk_objects(&app.services, later, 2, 10).await.expect("walk");
    assert_eq!((walk.keys_listed, walk.orphans_deleted, walk.missing_marked, walk.wrapped), (4, 0, 0, true));
    assert_eq!(cursor().await, None);

    // A cursor naming a user's key is reset for the account's deletion, no other.
    walk_objects(&app.services, later, 2, 1).await.expect("walk");
    assert_eq!(cursor().await.as_ref(), Some(&keys[1]));
    let reset =
        |prefix: String| async move { db.reset_maintenance_cursors_under(&prefix, later).await.expect("reset") };
    assert_eq!(reset("u/usr_someone_else/".to_owned()).await, 0);
    assert_eq!(reset(format!("u/{user}/")).await, 1);
    assert_eq!(cursor().await, None);
    app.stop().await;
}
