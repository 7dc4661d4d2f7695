//! Accounts keep the privacy policy's promises: personal fields are sealed at rest
//! (no plaintext name or e-mail anywhere in the database), rows written before that
//! are sealed by the migration, and a key rotation keeps every account readable.

use std::sync::Arc;

use base64::Engine;
use petportrait_core::accounts::{Accounts, Subject};
use petportrait_core::config::Secret;
use petportrait_core::ids::UserId;
use petportrait_core::sealing::{Keyring, SealError};
use petportrait_core::webhooks;
use petportrait_tests::{Client, Mode, TestApp};
use reqwest::StatusCode;

all_modes!(personal_fields_are_sealed_at_rest, personal_fields_are_sealed_at_rest);
all_modes!(rows_written_before_encryption_are_sealed, rows_written_before_encryption_are_sealed);
all_modes!(a_key_rotation_keeps_accounts_readable, a_key_rotation_keeps_accounts_readable);

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// Every table of the database, read raw, holds neither the name nor the e-mail.
async fn personal_fields_are_sealed_at_rest(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let quill = app.user("Quillfeather").await;
    let other = app.user("Marrowbone").await;
    // The API still answers with the opened fields.
    let (status, me) = quill.get("/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["name"], "Quillfeather");
    assert_eq!(me["email"], quill.email);
    assert_eq!(other.get("/v1/me").await.1["name"], "Marrowbone");

    let raw = app.raw_database_text().await.to_ascii_lowercase();
    assert!(raw.len() > 1000, "the raw dump is too small to mean anything: {} bytes", raw.len());
    for needle in ["quillfeather", "marrowbone"] {
        assert!(!raw.contains(needle), "{needle} is stored in plaintext ({mode:?})");
    }
    // The control: the sealed values themselves are in the dump.
    assert!(raw.contains("pp1."), "no sealed value found in the dump");
    app.stop().await;
}

/// An account written in plaintext before encryption at rest (by dev sign-in, the only
/// way in then) is sealed by the start-up's re-encryption and found by its e-mail.
async fn rows_written_before_encryption_are_sealed(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let id = UserId::generate().to_string();
    let email = format!("oldtimer{}example.org", '@');
    app.raw_execute(
        "INSERT INTO users (id, email, name, preferences, credits_balance, credits_held, created_at) \
         VALUES ($1, $2, $3, '{}', 7, 0, 0)",
        &[&id, &email, "Oldtimer"],
    )
    .await;
    let report = app.services.accounts.reseal_all().await.expect("reseal");
    assert_eq!(report.resealed, 1, "{report:?}");
    let rows = app.services.db.list_sealed_user_fields("", 10).await.expect("rows");
    let row = rows.iter().find(|r| r.id == id).expect("the legacy row");
    assert!(Keyring::is_sealed(&row.email) && Keyring::is_sealed(&row.name), "still plaintext");
    assert!(row.subject.as_deref().is_some_and(Keyring::is_sealed), "no sealed subject");
    // Nothing of the plaintext is left behind, in the rows or (SQLite) the file's free pages.
    let raw = app.raw_database_text().await.to_ascii_lowercase();
    assert!(!raw.contains("oldtimer"), "the legacy plaintext is still in the database ({mode:?})");
    // A second run has nothing to do.
    assert_eq!(app.services.accounts.reseal_all().await.expect("reseal").resealed, 0);

    // Dev sign-in with the same e-mail finds the same account, credits and all.
    let client = Client::sign_in(&app.base_url, "Oldtimer").await;
    let (_, me) = client.get("/v1/me").await;
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["name"], "Oldtimer");
    assert_eq!(me["credits"]["balance"], 7);
    app.stop().await;
}

/// The newest key seals, older keys open; the re-encryption moves every account to the
/// newest key, after which the old key is no longer needed.
async fn a_key_rotation_keeps_accounts_readable(mode: Mode) {
    let (old, new) = (key(1), key(2));
    let app = TestApp::spawn(mode, &[("ENCRYPTION_KEY", &old)]).await;
    let client = app.user("Rotaway").await;
    let user_id = client.user_id().await;
    let subject = Subject::Dev { email: client.email.clone() };
    let (_, webhook_secret) = client.get("/v1/me/webhook-secret").await;

    let rotated = Accounts::new(
        app.services.db.clone(),
        Arc::new(Keyring::from_base64(&Secret::new(&new), &[Secret::new(&old)]).expect("ring")),
    );
    let user = rotated.find(&subject).await.expect("find").expect("found under the old key's index");
    assert_eq!(user.id, user_id);
    assert_eq!(rotated.profile(&user).expect("old key opens").name, "Rotaway");
    let report = rotated.reseal_all().await.expect("reseal");
    assert_eq!((report.examined, report.resealed), (1, 1));
    let db = &app.services.db;
    assert_eq!(webhooks::reseal_secrets(db, rotated.keyring()).await.expect("reseal secrets"), 1);
    assert_eq!(webhooks::reseal_secrets(db, rotated.keyring()).await.expect("again"), 0);

    let new_only =
        Accounts::new(app.services.db.clone(), Arc::new(Keyring::from_base64(&Secret::new(&new), &[]).expect("ring")));
    let user = new_only.find(&subject).await.expect("find").expect("found under the new key's index");
    assert_eq!(new_only.profile(&user).expect("new key opens").email, client.email);
    let old_only =
        Accounts::new(app.services.db.clone(), Arc::new(Keyring::from_base64(&Secret::new(&old), &[]).expect("ring")));
    assert!(matches!(old_only.profile(&user), Err(SealError::UnknownKey(_))), "the old key no longer opens it");
    // The account's webhook secret moved to the new key too, unchanged.
    let new_ring = Arc::new(Keyring::from_base64(&Secret::new(&new), &[]).expect("ring"));
    let hooks = app.services.webhooks.clone().with_keyring(new_ring);
    let secret = hooks.account_secret(&user_id).await.expect("the new key opens the webhook secret");
    assert_eq!(secret.secret.to_text(), webhook_secret["secret"].as_str().expect("a secret"));
    app.stop().await;
}
