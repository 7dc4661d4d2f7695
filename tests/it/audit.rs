//! The audit log: policy acceptances and corrections are recorded under a pseudonym
//! (no id, name or address of the person), the rows cannot be changed or deleted
//! (triggers in both backends), and only the retention removes them after their period.

use petportrait_core::privacy::audit;
use petportrait_core::time::now_ms;
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use serde_json::json;

all_modes!(privacy_operations_are_audited_append_only, privacy_operations_are_audited_append_only);

async fn privacy_operations_are_audited_append_only(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let ann = app.user("Ann").await;
    let (_, policy) = ann.get("/v1/policy").await;
    let version = policy["version"].as_str().expect("a policy in force").to_owned();
    let (status, body) = ann.post_json("/v1/policy/accept", &json!({"version": version})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let response = ann.http.patch(ann.url("/v1/me")).json(&json!({"name": "Ann B."})).send().await.expect("PATCH");
    assert_eq!(response.status(), StatusCode::OK);

    let user_id = ann.user_id().await;
    let keyring = app.services.accounts.keyring();
    let entries = app.services.db.audit_entries(&audit::subjects(keyring, &user_id)).await.expect("entries");
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["policy_accepted", "correction_made"], "{entries:?}");
    assert!(entries[1].detail.contains("\"name\""), "{entries:?}");
    let text = format!("{entries:?}");
    for secret in [user_id.as_str(), ann.email.as_str(), "Ann B."] {
        assert!(!text.contains(secret), "an entry names the person ({secret}): {text}");
    }
    let day = 86_400_000;
    assert!(entries.iter().all(|e| e.retain_until - e.created_at == i64::from(audit::AUDIT_RETENTION_DAYS) * day));

    // The application cannot rewrite or remove an entry.
    let id = entries[0].id.clone();
    let update = app.try_raw_execute("UPDATE audit_log SET action = 'nothing' WHERE id = $1", &[id.as_str()]).await;
    assert!(update.expect_err("an update").contains("append-only"));
    let delete = app.try_raw_execute("DELETE FROM audit_log WHERE id = $1", &[id.as_str()]).await;
    assert!(delete.expect_err("a delete").contains("append-only"));
    assert_eq!(app.services.db.delete_expired_audit(now_ms(), 100).await.expect("retention"), 0);

    // Past its period, the retention removes it, and only it.
    app.raw_execute(
        "INSERT INTO audit_log (id, subject, action, detail, created_at, retain_until) \
         VALUES ('aud_old', 'someone', 'policy_accepted', '{}', 1, 2)",
        &[],
    )
    .await;
    assert_eq!(app.services.db.delete_expired_audit(now_ms(), 100).await.expect("retention"), 1);
    let left = app.services.db.audit_entries(&audit::subjects(keyring, &user_id)).await.expect("entries");
    assert_eq!(left.len(), 2);
    app.stop().await;
}
