//! Database tier: the credit and lease rules of `core/src/db`, on a fresh database in
//! each mode, exercised concurrently where a race could break them.

use futures::future::join_all;
use petportrait_core::accounts::{Profile, Subject};
use petportrait_core::db::{ChargeOutcome, ClaimOutcome, CreateOutcome, NewGeneration, NewObject, UploadRow};
use petportrait_core::domain::{GenerationKind, StoredObjectKind};
use petportrait_core::ids::{GenerationId, UploadId, UserId};
use petportrait_core::time::now_ms;
use petportrait_tests::{Mode, TestApp};

all_modes!(holds_never_exceed_the_balance, holds_never_exceed_the_balance);
all_modes!(charge_release_and_refund_happen_once, charge_release_and_refund_happen_once);
all_modes!(one_worker_holds_a_generation_at_a_time, one_worker_holds_a_generation_at_a_time);

const NOTHING: petportrait::Roles = petportrait::Roles { web: false, worker: false, scheduler: false };

/// A user with `credits` and one upload, straight through the database.
async fn user_with_upload(app: &TestApp, credits: i64) -> (UserId, String) {
    let db = &app.services.db;
    let email = format!("ledger{}example.org", '@');
    let profile = Profile { name: "Ledger".into(), email: email.clone(), picture_url: None };
    let (user, _) =
        app.services.accounts.find_or_create(&Subject::Dev { email }, &profile, credits, now_ms()).await.expect("user");
    let user_id = user.user_id();
    let upload = UploadId::generate();
    let key = format!("u/{user_id}/uploads/{upload}.jpg");
    let object = NewObject {
        user_id: &user_id,
        kind: StoredObjectKind::Upload,
        object_key: &key,
        content_type: "image/jpeg",
        bytes: 1,
        expires_at: Some(now_ms() + 60_000),
    };
    let object_id = db.insert_stored_object(&object, now_ms()).await.expect("object");
    let row = UploadRow {
        id: upload.to_string(),
        user_id: user_id.to_string(),
        object_id: object_id.to_string(),
        content_type: "image/jpeg".into(),
        width: 1,
        height: 1,
        orientation: Some(1),
        bytes: 1,
        created_at: now_ms(),
        expires_at: now_ms() + 60_000,
    };
    db.insert_upload(&row).await.expect("upload");
    (user_id, upload.to_string())
}

async fn create(app: &TestApp, user: &UserId, upload: &str, cost: i64) -> (GenerationId, CreateOutcome) {
    let id = GenerationId::generate();
    let new = NewGeneration {
        id: &id,
        user_id: user,
        kind: GenerationKind::Portrait,
        style: "watercolor",
        options: "{}",
        upload_id: upload,
        cost,
        idempotency_key: None,
        request_fingerprint: None,
        dispatch_task: "01KAAAAAAAAAAAAAAAAAAAAAAA",
        webhook: None,
        request_id: None,
    };
    let outcome = app.services.db.create_generation(&new, now_ms()).await.expect("create");
    (id, outcome)
}

async fn holds_never_exceed_the_balance(mode: Mode) {
    let app = TestApp::spawn_with(mode, &[], NOTHING, None).await;
    let (user, upload) = user_with_upload(&app, 10).await;
    // Eight concurrent creations of cost 3 against a balance of 10: exactly three fit.
    let attempts = (0..8).map(|_| create(&app, &user, &upload, 3));
    let outcomes = join_all(attempts).await;
    let created = outcomes.iter().filter(|(_, o)| matches!(o, CreateOutcome::Created(_))).count();
    let refused = outcomes.iter().filter(|(_, o)| matches!(o, CreateOutcome::InsufficientCredits)).count();
    assert_eq!((created, refused), (3, 5));
    let row = app.services.db.get_user(&user).await.expect("read").expect("user");
    assert_eq!((row.credits_balance, row.credits_held), (10, 9));
    app.stop().await;
}

async fn charge_release_and_refund_happen_once(mode: Mode) {
    let app = TestApp::spawn_with(mode, &[], NOTHING, None).await;
    let db = &app.services.db;
    let (user, upload) = user_with_upload(&app, 10).await;

    // Charged: concurrent charges of one generation charge once; failing twice refunds once.
    let (charged, _) = create(&app, &user, &upload, 4).await;
    let now = now_ms();
    assert!(matches!(
        db.claim_generation(&charged, "run-1", now, now + 60_000, None).await.expect("claim"),
        ClaimOutcome::Claimed(_)
    ));
    let results = join_all((0..4).map(|_| db.charge_generation(&charged, "run-1", user.as_str(), 4, now_ms()))).await;
    let results: Vec<ChargeOutcome> = results.into_iter().map(|r| r.expect("charge")).collect();
    assert_eq!(results.iter().filter(|c| **c == ChargeOutcome::Charged).count(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|c| **c == ChargeOutcome::AlreadyCharged).count(), 3, "{results:?}");
    let row = db.get_user(&user).await.expect("read").expect("user");
    assert_eq!((row.credits_balance, row.credits_held), (6, 0));
    let not_holder = db.mark_failed(&charged, Some("someone-else"), "x", "x", false, now_ms()).await.expect("fail");
    assert!(!not_holder, "only the holder fails it");
    assert!(db.mark_failed(&charged, Some("run-1"), "x", "x", false, now_ms()).await.expect("fail"));
    let again = db.mark_failed(&charged, None, "x", "x", false, now_ms()).await.expect("fail again");
    assert!(!again, "terminal states never change");
    let row = db.get_user(&user).await.expect("read").expect("user");
    assert_eq!((row.credits_balance, row.credits_held), (10, 0), "refunded once");

    // Never charged: failing releases the hold, once; a late charge finds nothing to take.
    let (held, _) = create(&app, &user, &upload, 4).await;
    let now = now_ms();
    assert!(matches!(
        db.claim_generation(&held, "run-2", now, now + 60_000, None).await.expect("claim"),
        ClaimOutcome::Claimed(_)
    ));
    assert!(db.mark_failed(&held, None, "x", "x", false, now_ms()).await.expect("fail"));
    assert!(!db.mark_failed(&held, None, "x", "x", false, now_ms()).await.expect("fail again"));
    let late = db.charge_generation(&held, "run-2", user.as_str(), 4, now_ms()).await.expect("charge");
    assert_eq!(late, ChargeOutcome::NotHeld, "a failed generation is never charged");
    let row = db.get_user(&user).await.expect("read").expect("user");
    assert_eq!((row.credits_balance, row.credits_held), (10, 0), "released once, never charged");

    let kinds: Vec<&str> =
        db.ledger_of_generation(charged.as_str()).await.expect("ledger").into_iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["hold", "charge", "refund"]);
    let kinds: Vec<&str> =
        db.ledger_of_generation(held.as_str()).await.expect("ledger").into_iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["hold", "release"]);
    app.stop().await;
}

async fn one_worker_holds_a_generation_at_a_time(mode: Mode) {
    let app = TestApp::spawn_with(mode, &[], NOTHING, None).await;
    let db = &app.services.db;
    let (user, upload) = user_with_upload(&app, 10).await;
    let (id, _) = create(&app, &user, &upload, 4).await;
    let now = now_ms();

    // Three deliveries race, two of them in the same process: one claim wins.
    let owners = ["w1/a", "w1/b", "w2/a"];
    let claims = join_all(owners.map(|w| db.claim_generation(&id, w, now, now + 30_000, None))).await;
    let claimed = claims.iter().filter(|c| matches!(c, Ok(ClaimOutcome::Claimed(_)))).count();
    let leased = claims.iter().filter(|c| matches!(c, Ok(ClaimOutcome::Leased { .. }))).count();
    assert_eq!((claimed, leased), (1, 2), "exactly one worker claims");
    let winner = claims.iter().position(|c| matches!(c, Ok(ClaimOutcome::Claimed(_)))).expect("a winner");
    let holder = owners[winner];
    let other = owners[(winner + 1) % 3];

    // Only the holder may finish; after its lease lapses another worker takes over.
    assert!(!db.mark_succeeded(&id, other, &[], now).await.expect("update"));
    let later = now + 31_000;
    match db.claim_generation(&id, other, later, later + 30_000, None).await.expect("claim") {
        ClaimOutcome::Claimed(row) => assert_eq!(row.attempts, 2),
        outcome => panic!("expected a takeover, got {outcome:?}"),
    }
    assert!(!db.mark_succeeded(&id, holder, &[], later).await.expect("update"), "the old holder lost the lease");
    // A retry waits for its backoff: an early delivery is told when it is due.
    let due = later + 5_000;
    assert!(db.mark_waiting_for_retry(&id, other, later, due, "01KAAAAAAAAAAAAAAAAAAAAAAB").await.expect("retry"));
    assert!(
        matches!(db.claim_generation(&id, "early", later + 1, later + 60_000, None).await.expect("claim"), ClaimOutcome::NotYet { due: d } if d == due)
    );
    match db.claim_generation(&id, other, due, due + 30_000, None).await.expect("claim") {
        ClaimOutcome::Claimed(row) => assert_eq!(row.attempts, 3),
        outcome => panic!("expected the retry to claim, got {outcome:?}"),
    }
    assert!(db.mark_succeeded(&id, other, &[], due).await.expect("update"));
    assert!(matches!(db.claim_generation(&id, "w9", due, due + 1, None).await.expect("claim"), ClaimOutcome::Terminal));
    app.stop().await;
}
