//! Accounts with their personal fields sealed: signing in (find or create by the
//! identity provider's subject), opening a profile, and the re-encryption that moves
//! every row to the newest key (and seals rows written before encryption at rest).

use std::sync::Arc;

use crate::db::{Db, DbError, NewUser, SealedUserFields, UserRow};
use crate::ids::UserId;
use crate::privacy::audit::AuditAction;
use crate::sealing::{IndexPurpose, Keyring, SealError, USER_EMAIL, USER_NAME, USER_PICTURE, USER_SUBJECT};
use crate::time::Millis;

/// What a person is to us: the three fields the privacy policy names, opened.
#[derive(Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    /// Trimmed and lowercased.
    pub email: String,
    pub picture_url: Option<String>,
}

/// Names and e-mails never reach logs or debug output.
impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Profile([redacted])")
    }
}

/// Who signed in, as the identity provider knows them: the account's key.
#[derive(Clone, PartialEq, Eq)]
pub enum Subject {
    /// Development sign-in: the e-mail is the identity.
    Dev { email: String },
    /// OpenID Connect: the issuer and its `sub` claim.
    Oidc { issuer: String, subject: String },
}

impl Subject {
    /// The text the subject index is computed from and the sealed `subject` column holds.
    fn canonical(&self) -> String {
        match self {
            Subject::Dev { email } => format!("dev\n{email}"),
            Subject::Oidc { issuer, subject } => format!("oidc\n{issuer}\n{subject}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("cannot read or write accounts")]
    Db(#[from] DbError),
    #[error("cannot open an account's personal fields")]
    Seal(#[from] SealError),
}

/// What a re-encryption did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    pub examined: u64,
    pub resealed: u64,
}

/// Accounts over the database and the key ring. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Accounts {
    db: Db,
    keyring: Arc<Keyring>,
}

impl Accounts {
    pub fn new(db: Db, keyring: Arc<Keyring>) -> Accounts {
        Accounts { db, keyring }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The account of `subject`, created with `profile` and `starter_credits` when it
    /// does not exist. Returns it and whether it is new.
    pub async fn find_or_create(
        &self,
        subject: &Subject,
        profile: &Profile,
        starter_credits: i64,
        now: Millis,
    ) -> Result<(UserRow, bool), AccountError> {
        if let Some(user) = self.find(subject).await? {
            return Ok((user, false));
        }
        let id = UserId::generate();
        let sealed = self.seal(&id, subject, profile);
        let created = self.db.insert_user(&sealed.as_new_user(&id), starter_credits, now).await?;
        // Not created: another request made the same account between our read and insert.
        let user = if created { self.db.get_user(&id).await? } else { self.find(subject).await? };
        let user = user.ok_or_else(|| DbError::Corrupt("an account vanished as it was created".into()))?;
        Ok((user, created))
    }

    /// A returning user's sign-in: the provider's e-mail replaces ours, and its name too
    /// unless the user corrected theirs (`PATCH /v1/me`). The picture is copied apart.
    pub async fn refresh(&self, user: &UserRow, profile: &Profile) -> Result<(), AccountError> {
        let ring = &self.keyring;
        let id = &user.id;
        self.db
            .refresh_user_profile(
                &user.user_id(),
                &ring.seal(USER_EMAIL, id, &profile.email),
                &ring.index(IndexPurpose::Email, &profile.email),
                &ring.seal(USER_NAME, id, &profile.name),
            )
            .await?;
        Ok(())
    }

    /// The account of `subject`, if there is one.
    pub async fn find(&self, subject: &Subject) -> Result<Option<UserRow>, AccountError> {
        let indexes = self.keyring.indexes(IndexPurpose::Subject, &subject.canonical());
        Ok(self.db.find_user_by_subject(&indexes).await?)
    }

    /// The account whose e-mail address is `email` (as the identity provider gave it,
    /// or in lower case), found by its blind index: for the operator's `users show`.
    pub async fn find_by_email(&self, email: &str) -> Result<Option<UserRow>, AccountError> {
        let mut indexes = self.keyring.indexes(IndexPurpose::Email, email);
        indexes.extend(self.keyring.indexes(IndexPurpose::Email, &email.to_lowercase()));
        Ok(self.db.find_user_by_email(&indexes).await?)
    }

    /// The account's personal fields, opened.
    pub fn profile(&self, user: &UserRow) -> Result<Profile, SealError> {
        Ok(Profile {
            name: self.keyring.open(USER_NAME, &user.id, &user.sealed_name)?,
            email: self.keyring.open(USER_EMAIL, &user.id, &user.sealed_email)?,
            picture_url: user
                .sealed_picture
                .as_deref()
                .map(|p| self.keyring.open(USER_PICTURE, &user.id, p))
                .transpose()?,
        })
    }

    /// The user's correction of their profile: a new name (sealed, and from now on kept
    /// over the identity provider's at sign-in) and/or new preferences (JSON text).
    pub async fn correct(
        &self,
        user: &UserRow,
        name: Option<&str>,
        preferences: Option<&str>,
        now: Millis,
    ) -> Result<bool, AccountError> {
        if name.is_none() && preferences.is_none() {
            // Nothing to correct, and nothing to record.
            return Ok(true);
        }
        let sealed_name = name.map(|n| self.keyring.seal(USER_NAME, &user.id, n));
        // Field names only: what was corrected, never the values.
        let fields: Vec<&str> = [("name", name.is_some()), ("preferences", preferences.is_some())]
            .into_iter()
            .filter_map(|(field, corrected)| corrected.then_some(field))
            .collect();
        let detail = serde_json::json!({ "fields": fields });
        let audit = crate::privacy::audit::entry(&self.keyring, &user.id, AuditAction::CorrectionMade, detail, now);
        Ok(self.db.update_user_profile(&user.user_id(), sealed_name.as_deref(), preferences, now, &audit).await?)
    }

    /// Reseals every account not sealed under the newest key: rows of an older key after
    /// a rotation, and rows written in plaintext before encryption at rest (their
    /// subject is their e-mail, since dev sign-in was the only way in then).
    pub async fn reseal_all(&self) -> Result<ResealReport, AccountError> {
        let mut report = ResealReport::default();
        let mut after = String::new();
        loop {
            let rows = self.db.list_sealed_user_fields(&after, 200).await?;
            let Some(last) = rows.last() else { break };
            after = last.id.clone();
            for row in &rows {
                report.examined += 1;
                if !self.row_needs_reseal(row) {
                    continue;
                }
                let id = UserId::from_db(row.id.clone());
                let (subject, profile) = self.open_any(row)?;
                let sealed = self.seal(&id, &subject, &profile);
                if self.db.reseal_user(row, &sealed.as_new_user(&id)).await? {
                    report.resealed += 1;
                }
            }
        }
        if report.resealed > 0 {
            self.db.forget_overwritten_values().await?;
        }
        Ok(report)
    }

    fn row_needs_reseal(&self, row: &SealedUserFields) -> bool {
        let ring = &self.keyring;
        ring.needs_reseal(&row.email)
            || ring.needs_reseal(&row.name)
            || row.picture_url.as_deref().is_some_and(|p| ring.needs_reseal(p))
            || row.subject.as_deref().is_none_or(|s| ring.needs_reseal(s))
    }

    /// A row's fields whether sealed by any key of the ring or still in plaintext.
    fn open_any(&self, row: &SealedUserFields) -> Result<(Subject, Profile), SealError> {
        let open = |column, value: &str| {
            if Keyring::is_sealed(value) { self.keyring.open(column, &row.id, value) } else { Ok(value.to_owned()) }
        };
        let profile = Profile {
            email: open(USER_EMAIL, &row.email)?,
            name: open(USER_NAME, &row.name)?,
            picture_url: row.picture_url.as_deref().map(|p| open(USER_PICTURE, p)).transpose()?,
        };
        let subject = match row.subject.as_deref() {
            None => Subject::Dev { email: profile.email.clone() },
            Some(sealed) => parse_subject(&self.keyring.open(USER_SUBJECT, &row.id, sealed)?)?,
        };
        Ok((subject, profile))
    }

    fn seal(&self, id: &UserId, subject: &Subject, profile: &Profile) -> SealedAccount {
        let ring = &self.keyring;
        let canonical = subject.canonical();
        SealedAccount {
            email: ring.seal(USER_EMAIL, id.as_str(), &profile.email),
            name: ring.seal(USER_NAME, id.as_str(), &profile.name),
            picture: profile.picture_url.as_deref().map(|p| ring.seal(USER_PICTURE, id.as_str(), p)),
            subject: ring.seal(USER_SUBJECT, id.as_str(), &canonical),
            subject_index: ring.index(IndexPurpose::Subject, &canonical),
            email_index: ring.index(IndexPurpose::Email, &profile.email),
        }
    }
}

fn parse_subject(canonical: &str) -> Result<Subject, SealError> {
    let mut parts = canonical.split('\n');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("dev"), Some(email), None, None) => Ok(Subject::Dev { email: email.to_owned() }),
        (Some("oidc"), Some(issuer), Some(subject), None) => {
            Ok(Subject::Oidc { issuer: issuer.to_owned(), subject: subject.to_owned() })
        }
        _ => Err(SealError::Malformed),
    }
}

struct SealedAccount {
    email: String,
    name: String,
    picture: Option<String>,
    subject: String,
    subject_index: String,
    email_index: String,
}

impl SealedAccount {
    fn as_new_user<'a>(&'a self, id: &'a UserId) -> NewUser<'a> {
        NewUser {
            id,
            sealed_email: &self.email,
            sealed_name: &self.name,
            sealed_picture: self.picture.as_deref(),
            sealed_subject: &self.subject,
            subject_index: &self.subject_index,
            email_index: &self.email_index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_through_their_canonical_text() {
        for subject in [
            Subject::Dev { email: "ann@example.org".into() },
            Subject::Oidc { issuer: "https://accounts.google.com".into(), subject: "1234567890".into() },
        ] {
            assert!(parse_subject(&subject.canonical()).expect("parses") == subject);
        }
        assert!(parse_subject("oidc\nonly-issuer").is_err());
    }

    #[test]
    fn a_profile_debug_shows_nothing_personal() {
        let profile = Profile { name: "Ann Example".into(), email: "ann@example.org".into(), picture_url: None };
        let printed = format!("{profile:?}");
        assert!(!printed.contains("Ann") && !printed.contains("example"), "{printed}");
    }
}
