//! The access and portability export: a ZIP streamed to the object store (never built
//! in memory) holding, for one user,
//!
//! - `manifest.json`: the schema version, what each document holds, the purposes, the
//!   processors, the retention periods and the user's rights;
//! - one JSON document per category (`profile.json`, `generations.json`, …) holding every
//!   exported column of every table about the user, as the inventory lists them, read a
//!   page at a time;
//! - `csv/{table}.csv`: the same rows, one CSV per table;
//! - `files/…`: the user's files still held (gallery items, unexpired outputs and
//!   uploads, the profile picture).
//!
//! Secrets and hashes are never exported (the inventory marks them), and the profile's
//! sealed fields are opened for their owner.

use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWrite;

use crate::config::Config;
use crate::db::{PrivacyRequestRow, StoredObjectRow};
use crate::domain::{ObjectState, StoredObjectKind};
use crate::ids::{PrivacyRequestId, UserId};
use crate::objects::Placement;
use crate::privacy::archive::Archive;
use crate::privacy::audit::{self, AUDIT_RETENTION_DAYS};
use crate::privacy::inventory::{Category, PAYMENT_RETENTION_DAYS, TABLES, Table};
use crate::privacy::requests::PrivacyError;
use crate::services::Services;
use crate::time::{Millis, duration_ms, now_ms, rfc3339};

/// The export's format version: bumped when a document's shape changes.
pub const SCHEMA_VERSION: u32 = 1;
/// Rows read per query: the export's memory does not grow with the user's history.
const PAGE: i64 = 500;

/// The documents and the tables each holds, in the order they are written. A unit test
/// checks that every table with an exported column about a person is in one.
pub const DOCUMENTS: &[(&str, &[&str])] = &[
    ("profile", &["users"]),
    ("uploads", &["uploads"]),
    ("generations", &["generations", "generation_outputs", "generation_webhooks"]),
    ("gallery", &["gallery_items"]),
    ("files", &["stored_objects"]),
    ("credit_ledger", &["credit_ledger"]),
    ("payments", &["payments", "checkout_requests"]),
    ("sessions_and_tokens", &["sessions", "api_tokens"]),
    ("webhooks", &["webhook_secrets", "webhook_endpoints", "webhook_deliveries", "webhook_attempts"]),
    ("policy_acceptances", &["policy_acceptances"]),
    ("privacy_requests", &["privacy_requests"]),
    ("audit_log", &["audit_log"]),
];

/// Writes the export of `request`'s user to the store and returns the archive's object
/// id and when its link expires.
pub async fn write_export(
    config: &Config,
    services: &Services,
    request: &PrivacyRequestRow,
) -> Result<(String, Millis), PrivacyError> {
    let user = UserId::from_db(request.user_id.clone());
    let request_id = PrivacyRequestId::from_db(request.id.clone());
    let started = now_ms();
    // Only `Archive::finish` seals the pipe: an archive abandoned on an error is never
    // stored as complete.
    let (reader, writer) = crate::pipe::pipe(64 * 1024);
    let upload = services.objects.write_stream(
        &user,
        Placement::Export { request: &request_id, attempt: request.attempts },
        "application/zip",
        reader,
        started,
        |written| async move { Ok(written) },
    );
    let produce = async {
        let result = produce(config, services, &user, request, writer).await;
        if let Err(error) = &result {
            tracing::warn!(privacy.request = %request.id, error = %crate::errors::error_chain(error), "export failed while writing");
        }
        result
    };
    let (uploaded, produced) = tokio::join!(upload, produce);
    // A failed producer ends its side of the pipe early; its error wins over whatever
    // the upload made of the truncated stream.
    let files = produced?;
    let written = uploaded?;
    tracing::info!(
        privacy.request = %request.id,
        bytes = written.bytes,
        files,
        took_ms = now_ms() - started,
        "export written"
    );
    Ok((written.id.to_string(), now_ms() + duration_ms(config.lifetimes.export_ttl)))
}

/// Writes every entry into the archive; returns how many files were copied.
async fn produce<W: AsyncWrite + Unpin + Send>(
    config: &Config,
    services: &Services,
    user: &UserId,
    request: &PrivacyRequestRow,
    writer: W,
) -> Result<u64, PrivacyError> {
    let mut zip = Archive::new(writer);
    let manifest = manifest(config, request);
    zip.add_bytes("manifest.json", &serde_json::to_vec_pretty(&manifest).unwrap_or_default()).await?;
    for (document, tables) in DOCUMENTS {
        write_document(services, &mut zip, user, document, tables).await?;
    }
    for table in TABLES.iter().filter(|t| DOCUMENTS.iter().any(|(_, ts)| ts.contains(&t.name))) {
        write_csv(services, &mut zip, user, table).await?;
    }
    let files = write_files(services, &mut zip, user).await?;
    zip.finish().await?;
    Ok(files)
}

/// `{document}.json`: `{"schema_version": 1, "document": …, "tables": {table: [rows]}}`,
/// written row by row.
async fn write_document<W: AsyncWrite + Unpin + Send>(
    services: &Services,
    zip: &mut Archive<W>,
    user: &UserId,
    document: &str,
    tables: &[&str],
) -> Result<(), PrivacyError> {
    let mut entry = zip.entry(&format!("{document}.json")).await?;
    let head = format!("{{\"schema_version\":{SCHEMA_VERSION},\"document\":\"{document}\",\"tables\":{{");
    entry.write(head.as_bytes()).await?;
    for (i, name) in tables.iter().enumerate() {
        let Some(table) = crate::privacy::inventory::table(name) else { continue };
        let open = format!("{}\"{name}\":[", if i > 0 { "," } else { "" });
        entry.write(open.as_bytes()).await?;
        let mut first = true;
        let mut rows = Rows::new(services, table, user);
        while let Some(page) = rows.next().await? {
            for row in page {
                let mut text = if first { String::from("\n") } else { String::from(",\n") };
                first = false;
                text.push_str(&serde_json::Value::Object(row).to_string());
                entry.write(text.as_bytes()).await?;
            }
        }
        entry.write(b"]").await?;
    }
    entry.write(b"}}\n").await?;
    Ok(entry.close().await?)
}

/// `csv/{table}.csv`: a header of the exported columns, then the rows (RFC 4180 quoting;
/// JSON values as their JSON text).
async fn write_csv<W: AsyncWrite + Unpin + Send>(
    services: &Services,
    zip: &mut Archive<W>,
    user: &UserId,
    table: &'static Table,
) -> Result<(), PrivacyError> {
    let columns: Vec<&str> = table.columns.iter().filter(|c| c.exported).map(|c| c.name).collect();
    let mut entry = zip.entry(&format!("csv/{}.csv", table.name)).await?;
    let header: Vec<String> = columns.iter().map(|c| csv_field(c)).collect();
    entry.write(format!("{}\r\n", header.join(",")).as_bytes()).await?;
    let mut rows = Rows::new(services, table, user);
    while let Some(page) = rows.next().await? {
        let mut text = String::new();
        for row in page {
            let fields: Vec<String> = columns
                .iter()
                .map(|c| match row.get(*c) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => csv_field(s),
                    Some(other) => csv_field(&other.to_string()),
                })
                .collect();
            text.push_str(&fields.join(","));
            text.push_str("\r\n");
        }
        entry.write(text.as_bytes()).await?;
    }
    Ok(entry.close().await?)
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

/// `files/{kind}/{name}`: every object of the user still held (not expired, not an
/// export), copied from the store chunk by chunk.
async fn write_files<W: AsyncWrite + Unpin + Send>(
    services: &Services,
    zip: &mut Archive<W>,
    user: &UserId,
) -> Result<u64, PrivacyError> {
    let now = now_ms();
    let mut copied = 0;
    let mut after = String::new();
    loop {
        let page = services.db.objects_of_user_after(user.as_str(), &after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for object in page.iter().filter(|o| exported_file(o, now)) {
            // Names repeat (two portraits of one style): the object's id keeps them apart.
            let name = object.object_key.rsplit('/').next().unwrap_or_default();
            let path = format!("files/{}/{}-{}", object.kind.as_str(), object.id, name);
            if zip.add_object(&path, &services.store, &object.object_key).await? {
                copied += 1;
            }
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    Ok(copied)
}

fn exported_file(object: &StoredObjectRow, now: Millis) -> bool {
    object.state == ObjectState::Active
        && object.kind != StoredObjectKind::Export
        && object.expires_at.is_none_or(|at| at > now)
}

/// The pages of a table's rows of the user; the profile's sealed fields opened.
struct Rows<'a> {
    services: &'a Services,
    table: &'static Table,
    user: &'a UserId,
    offset: i64,
    done: bool,
}

impl<'a> Rows<'a> {
    fn new(services: &'a Services, table: &'static Table, user: &'a UserId) -> Rows<'a> {
        Rows { services, table, user, offset: 0, done: false }
    }

    async fn next(&mut self) -> Result<Option<Vec<serde_json::Map<String, serde_json::Value>>>, PrivacyError> {
        if self.done {
            return Ok(None);
        }
        let mut page = if self.table.name == "audit_log" {
            // Read by pseudonym: every key of the ring may have named the user.
            self.done = true;
            let subjects = audit::subjects(self.services.accounts.keyring(), self.user.as_str());
            let rows = self.services.db.audit_entries(&subjects).await?;
            rows.iter().map(audit_json).collect()
        } else {
            self.services.db.exported_rows(self.table, self.user.as_str(), self.offset, PAGE).await?
        };
        if self.table.name != "audit_log" {
            self.offset += page.len() as i64;
            self.done = (page.len() as i64) < PAGE;
        }
        if self.table.name == "users" {
            self.open_profile(&mut page).await?;
        }
        Ok(if page.is_empty() { None } else { Some(page) })
    }

    /// Replaces the sealed name, e-mail and picture URL by their plaintext.
    async fn open_profile(&self, page: &mut [serde_json::Map<String, serde_json::Value>]) -> Result<(), PrivacyError> {
        let Some(row) = self.services.db.get_user(self.user).await? else { return Ok(()) };
        let profile = self.services.accounts.profile(&row)?;
        for fields in page.iter_mut() {
            fields.insert("name".into(), profile.name.clone().into());
            fields.insert("email".into(), profile.email.clone().into());
            fields.insert("picture_url".into(), profile.picture_url.clone().into());
        }
        Ok(())
    }
}

fn audit_json(row: &crate::db::AuditRow) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    out.insert("id".into(), row.id.clone().into());
    out.insert("action".into(), row.action.clone().into());
    out.insert("detail".into(), serde_json::from_str(&row.detail).unwrap_or(serde_json::Value::Null));
    out.insert("created_at".into(), rfc3339(row.created_at).into());
    out.insert("retain_until".into(), rfc3339(row.retain_until).into());
    out
}

#[derive(Serialize)]
struct Manifest {
    schema_version: u32,
    request: String,
    generated_at: String,
    documents: Vec<DocumentManifest>,
    files: &'static str,
    purposes: &'static [(&'static str, &'static str)],
    processors: Vec<&'static str>,
    retention: Vec<(&'static str, String)>,
    rights: &'static [&'static str],
    contact: &'static str,
}

#[derive(Serialize)]
struct DocumentManifest {
    name: String,
    csv: Vec<String>,
    tables: Vec<TableManifest>,
}

#[derive(Serialize)]
struct TableManifest {
    table: &'static str,
    columns: Vec<(&'static str, Category)>,
}

fn manifest(config: &Config, request: &PrivacyRequestRow) -> Manifest {
    let documents = DOCUMENTS
        .iter()
        .map(|(name, tables)| DocumentManifest {
            name: format!("{name}.json"),
            csv: tables.iter().map(|t| format!("csv/{t}.csv")).collect(),
            tables: tables
                .iter()
                .filter_map(|t| crate::privacy::inventory::table(t))
                .map(|t| TableManifest {
                    table: t.name,
                    columns: t.columns.iter().filter(|c| c.exported).map(|c| (c.name, c.category)).collect(),
                })
                .collect(),
        })
        .collect();
    let mut processors = vec![
        "Google (sign-in: name, e-mail address, profile picture)",
        "Stripe (payments: Checkout Sessions; we never receive card numbers)",
        "our object storage (uploads, generated files, gallery, this export)",
    ];
    if config.models.provider.is_some() {
        processors.push("the model provider (a re-encoded copy of the photo, only to make a requested generation)");
    }
    let days = |d: Duration| format!("{} days", d.as_secs() / 86_400);
    Manifest {
        schema_version: SCHEMA_VERSION,
        request: request.id.clone(),
        generated_at: rfc3339(now_ms()),
        documents,
        files: "files/{kind}/…: gallery items, generated files and uploads not yet expired, and the profile picture",
        purposes: &[
            ("account", "to create and manage your account, authenticate you and provide support"),
            ("content", "solely to make the generations you request"),
            ("usage", "to track credit balances, keep your history and preferences, and improve the service"),
            ("payment", "to process credit purchases and manage billing"),
            ("authentication", "to keep you signed in and secure your account"),
            ("integration", "to send the webhooks you configured"),
            ("consent", "to record which privacy policy you accepted and your privacy requests"),
        ],
        processors,
        retention: vec![
            ("account data", "as long as the account is active".to_owned()),
            (
                "uploaded photos",
                format!("{} after upload, unless a generation is running", days(config.lifetimes.upload_ttl)),
            ),
            ("generated files", format!("{} after the generation", days(config.lifetimes.output_ttl))),
            ("gallery items", "until you delete them or the account".to_owned()),
            ("this export", format!("{} after it is ready", days(config.lifetimes.export_ttl))),
            (
                "payment records",
                format!(
                    "{PAYMENT_RETENTION_DAYS} days (financial regulations), detached from the account once it is deleted"
                ),
            ),
            ("audit log", format!("{AUDIT_RETENTION_DAYS} days, under a pseudonym")),
        ],
        rights: &[
            "access: request a copy of your data (this export)",
            "correction: edit your name (PATCH /v1/me)",
            "deletion: delete your account and its data (POST /v1/privacy/deletion)",
            "portability: this export's JSON and CSV documents",
        ],
        contact: "the e-mail address in the privacy policy (/privacy)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::inventory::Owner;

    #[test]
    fn every_exported_table_is_in_a_document() {
        for table in TABLES {
            let personal = !matches!(table.owner, Owner::Nobody);
            let exported = table.columns.iter().any(|c| c.exported);
            let listed = DOCUMENTS.iter().any(|(_, tables)| tables.contains(&table.name));
            assert_eq!(
                listed,
                personal && exported,
                "{}: in a document iff it has exported personal columns",
                table.name
            );
        }
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
    }
}
