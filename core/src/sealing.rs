//! Personal fields encrypted at rest, and the keyed blind indexes that find them.
//!
//! A sealed value is `pp1.{key id}.{base64url(nonce ‖ ciphertext ‖ tag)}`, made with
//! XChaCha20-Poly1305 under a random 192-bit nonce. The associated data binds it to its
//! table, column and row (`users|email|usr_…`), so a ciphertext copied into another row
//! or column does not open. Every sealed value names its key, so keys can rotate: the
//! newest key seals, every key of the ring opens, and `Keyring::needs_reseal` finds the
//! values the re-encryption must rewrite.
//!
//! A blind index is `base64url(HMAC-SHA256(index key, purpose ‖ 0 ‖ value))`, with an
//! index key derived from each encryption key: lookups compute one index per key of the
//! ring, so rows written under an older key are still found until they are resealed.
//! This protects a database dump, not a compromised process.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

const PREFIX: &str = "pp1";
const NONCE_LEN: usize = 24;
/// The name of the generated key file in `DATA_DIR` (embedded mode only).
pub const KEY_FILE: &str = "encryption.key";

/// A column holding a sealed value: the associated data's first two parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub table: &'static str,
    pub column: &'static str,
}

pub const USER_EMAIL: Column = Column { table: "users", column: "email" };
pub const USER_NAME: Column = Column { table: "users", column: "name" };
pub const USER_PICTURE: Column = Column { table: "users", column: "picture_url" };
/// The pending sign-up cookie: a new user's verified claims until the age question.
pub const PENDING_SIGN_UP: Column = Column { table: "cookies", column: "pending_sign_up" };
pub const USER_SUBJECT: Column = Column { table: "users", column: "subject" };
/// An account's secret for per-generation webhooks.
pub const WEBHOOK_SECRET: Column = Column { table: "webhook_secrets", column: "secret" };
/// A registered webhook endpoint's own secret.
pub const ENDPOINT_SECRET: Column = Column { table: "webhook_endpoints", column: "secret" };

/// What a blind index is for: the same value indexes differently per purpose.
#[derive(Clone, Copy, Debug)]
pub enum IndexPurpose {
    /// A user's e-mail, trimmed and lowercased.
    Email,
    /// The identity provider's `iss` and `sub` of an account (dev sign-in: `dev` and the e-mail).
    Subject,
    /// A user id, as the audit log names its subject (a pseudonym that outlives the account).
    AuditSubject,
}

impl IndexPurpose {
    fn label(self) -> &'static [u8] {
        match self {
            IndexPurpose::Email => b"email",
            IndexPurpose::Subject => b"subject",
            IndexPurpose::AuditSubject => b"audit-subject",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("a sealed value is malformed")]
    Malformed,
    #[error("a sealed value names key {0}, which is not in the key ring")]
    UnknownKey(String),
    #[error("a sealed value does not open: wrong key, another row's value, or tampered with")]
    Forged,
    #[error("ENCRYPTION_KEY must be 32 bytes in base64")]
    BadKey,
    #[error("cannot read or create the key file {path}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

struct FieldKey {
    id: String,
    cipher: XChaCha20Poly1305,
    index_key: [u8; 32],
}

/// The keys that seal and open personal fields; the first seals. `Debug` shows key ids only.
pub struct Keyring {
    keys: Vec<FieldKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("key_ids", &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>()).finish()
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl FieldKey {
    fn new(key: &[u8; 32]) -> FieldKey {
        // Separate keys for separate jobs: the id and the index key are derived, so a
        // leaked index or id says nothing about the encryption key.
        let id = URL_SAFE_NO_PAD.encode(&hmac(key, &[b"petportrait key id v1"])[..6]);
        let index_key = hmac(key, &[b"petportrait blind index v1"]);
        let cipher = XChaCha20Poly1305::new_from_slice(key).expect("a 32-byte key");
        FieldKey { id, cipher, index_key }
    }
}

fn associated_data(column: Column, row_id: &str) -> Vec<u8> {
    format!("{}|{}|{}", column.table, column.column, row_id).into_bytes()
}

impl Keyring {
    /// A ring of base64 32-byte keys, the newest first.
    pub fn from_base64(newest: &Secret, older: &[Secret]) -> Result<Keyring, SealError> {
        let keys = std::iter::once(newest).chain(older).map(|s| decode_key(s.expose())).collect::<Result<_, _>>()?;
        Ok(Keyring { keys })
    }

    /// Embedded mode without `ENCRYPTION_KEY`: the key generated into `DATA_DIR` on the
    /// first start (readable by its owner only), read on every later one.
    pub fn from_key_file(data_dir: &Path, older: &[Secret]) -> Result<Keyring, SealError> {
        let path = data_dir.join(KEY_FILE);
        let file_error = |source| SealError::KeyFile { path: path.display().to_string(), source };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                write_new_key_file(&path, &STANDARD.encode(key)).map_err(file_error)?;
                std::fs::read_to_string(&path).map_err(file_error)?
            }
            Err(e) => return Err(file_error(e)),
        };
        Keyring::from_base64(&Secret::new(text.trim()), older)
    }

    /// A ring of one random key, for tests.
    pub fn random() -> Keyring {
        Keyring { keys: vec![FieldKey::new(&rand::random())] }
    }

    /// The id of the key that seals.
    pub fn newest_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Seals `plaintext` for `column` of the row `row_id` under the newest key.
    pub fn seal(&self, column: Column, row_id: &str, plaintext: &str) -> String {
        let key = &self.keys[0];
        let nonce = XNonce::generate();
        let payload = Payload { msg: plaintext.as_bytes(), aad: &associated_data(column, row_id) };
        let sealed = key.cipher.encrypt(&nonce, payload).expect("XChaCha20-Poly1305 seals any length we store");
        let mut body = Vec::with_capacity(NONCE_LEN + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        format!("{PREFIX}.{}.{}", key.id, URL_SAFE_NO_PAD.encode(body))
    }

    /// Opens a value sealed for `column` of the row `row_id`.
    pub fn open(&self, column: Column, row_id: &str, sealed: &str) -> Result<String, SealError> {
        let (key_id, body) = split_sealed(sealed).ok_or(SealError::Malformed)?;
        let key = self.keys.iter().find(|k| k.id == key_id).ok_or_else(|| SealError::UnknownKey(key_id.to_owned()))?;
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| SealError::Malformed)?;
        if body.len() < NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| SealError::Malformed)?;
        let payload = Payload { msg: ciphertext, aad: &associated_data(column, row_id) };
        let plain = key.cipher.decrypt(&nonce, payload).map_err(|_| SealError::Forged)?;
        String::from_utf8(plain).map_err(|_| SealError::Forged)
    }

    /// Whether a stored value must be rewritten: not sealed at all (written before
    /// encryption at rest), or sealed under a key other than the newest.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        split_sealed(stored).is_none_or(|(key_id, _)| key_id != self.keys[0].id)
    }

    /// Whether a stored value is sealed (by any key), as opposed to a legacy plaintext.
    pub fn is_sealed(stored: &str) -> bool {
        split_sealed(stored).is_some()
    }

    /// The blind index of `value` under the newest key: what a row is written with.
    pub fn index(&self, purpose: IndexPurpose, value: &str) -> String {
        index_under(&self.keys[0], purpose, value)
    }

    /// The blind index of `value` under every key of the ring, newest first: what a
    /// lookup searches for, so rows not yet resealed are found too.
    pub fn indexes(&self, purpose: IndexPurpose, value: &str) -> Vec<String> {
        self.keys.iter().map(|k| index_under(k, purpose, value)).collect()
    }
}

fn index_under(key: &FieldKey, purpose: IndexPurpose, value: &str) -> String {
    URL_SAFE_NO_PAD.encode(hmac(&key.index_key, &[purpose.label(), &[0], value.as_bytes()]))
}

fn split_sealed(stored: &str) -> Option<(&str, &str)> {
    let rest = stored.strip_prefix(PREFIX)?.strip_prefix('.')?;
    rest.split_once('.')
}

fn decode_key(text: &str) -> Result<FieldKey, SealError> {
    let bytes = STANDARD.decode(text.trim()).map_err(|_| SealError::BadKey)?;
    let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
    Ok(FieldKey::new(&key))
}

/// Writes a new key file that only its owner can read; fails if one appeared meanwhile
/// (another process of the same embedded deployment won the race, and its key counts).
fn write_new_key_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = "usr_1";

    #[test]
    fn a_sealed_value_opens_only_in_its_own_row_and_column() {
        let ring = Keyring::random();
        let sealed = ring.seal(USER_EMAIL, ROW, "ann@example.org");
        assert!(!sealed.contains("ann"), "{sealed}");
        assert_eq!(ring.open(USER_EMAIL, ROW, &sealed).expect("opens"), "ann@example.org");
        assert!(matches!(ring.open(USER_EMAIL, "usr_2", &sealed), Err(SealError::Forged)));
        assert!(matches!(ring.open(USER_NAME, ROW, &sealed), Err(SealError::Forged)));
        // Two seals of one value differ (random nonces), so equal values are not visible.
        assert_ne!(sealed, ring.seal(USER_EMAIL, ROW, "ann@example.org"));
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let ring = Keyring::random();
        let sealed = ring.seal(USER_NAME, ROW, "Ann");
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert!(ring.open(USER_NAME, ROW, &tampered).is_err());
        assert!(matches!(ring.open(USER_NAME, ROW, "Ann"), Err(SealError::Malformed)));
    }

    #[test]
    fn rotation_opens_old_values_and_seals_with_the_newest_key() {
        let old = Secret::new(STANDARD.encode([1u8; 32]));
        let new = Secret::new(STANDARD.encode([2u8; 32]));
        let before = Keyring::from_base64(&old, &[]).expect("ring");
        let sealed = before.seal(USER_EMAIL, ROW, "ann@example.org");
        let after = Keyring::from_base64(&new, std::slice::from_ref(&old)).expect("ring");
        assert_eq!(after.open(USER_EMAIL, ROW, &sealed).expect("old key opens"), "ann@example.org");
        assert!(after.needs_reseal(&sealed));
        assert!(!after.needs_reseal(&after.seal(USER_EMAIL, ROW, "ann@example.org")));
        assert!(after.needs_reseal("ann@example.org"), "legacy plaintext is resealed");
        // A lookup finds a row indexed under the old key until it is resealed.
        let old_index = before.index(IndexPurpose::Email, "ann@example.org");
        assert!(after.indexes(IndexPurpose::Email, "ann@example.org").contains(&old_index));
        assert_ne!(after.index(IndexPurpose::Email, "ann@example.org"), old_index);
        // Without the old key the value is refused, not misread.
        let alone = Keyring::from_base64(&new, &[]).expect("ring");
        assert!(matches!(alone.open(USER_EMAIL, ROW, &sealed), Err(SealError::UnknownKey(_))));
    }

    #[test]
    fn indexes_depend_on_purpose_and_key() {
        let ring = Keyring::random();
        let email = ring.index(IndexPurpose::Email, "ann@example.org");
        assert_eq!(email, ring.index(IndexPurpose::Email, "ann@example.org"));
        assert_ne!(email, ring.index(IndexPurpose::Subject, "ann@example.org"));
        assert_ne!(email, Keyring::random().index(IndexPurpose::Email, "ann@example.org"));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        for bad in ["", "not base64!", &STANDARD.encode([0u8; 16])] {
            assert!(matches!(Keyring::from_base64(&Secret::new(bad), &[]), Err(SealError::BadKey)), "{bad}");
        }
    }

    #[test]
    fn the_key_file_is_generated_once_and_private() {
        let dir = std::env::temp_dir().join(format!("pp-keyfile-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("dir");
        let first = Keyring::from_key_file(&dir, &[]).expect("generated");
        let second = Keyring::from_key_file(&dir, &[]).expect("read");
        assert_eq!(first.newest_key_id(), second.newest_key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE)).expect("file").permissions().mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read the key");
        }
        assert!(!format!("{first:?}").contains(&std::fs::read_to_string(dir.join(KEY_FILE)).expect("key")));
        std::fs::remove_dir_all(&dir).ok();
    }
}
