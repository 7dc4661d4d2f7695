//! The one writer of tracked objects. Every object in the store has a `stored_objects`
//! row written before its bytes, so the purge can always find it; once the bytes are in
//! place the caller's own state (an upload, an output, a gallery item) is recorded. This
//! module owns that sequence, the key layout and each kind's expiry; nothing else
//! writes to the object store.

use std::future::Future;

use bytes::Bytes;
use tokio::io::AsyncRead;

use crate::config::ObjectLifetimes;
use crate::db::{Db, DbError, NewObject};
use crate::domain::StoredObjectKind;
use crate::ids::{GalleryItemId, GenerationId, ObjectId, PrivacyRequestId, UploadId, UserId};
use crate::storage::{ObjectStore, StorageError};
use crate::time::{Millis, duration_ms};

/// Outputs and gallery copies are written with this provisional lifetime: the state
/// that makes them lasting (a succeeded generation, a kept gallery item) is recorded
/// after the bytes, and an object whose state never comes (a canceled or crashed
/// attempt, an interrupted save) is purged this long after it was written.
const PROVISIONAL_TTL_MS: Millis = 60 * 60 * 1000;

/// Where an object goes, which also says what kind it is. Keys carry ids only, never
/// personal data.
#[derive(Clone, Copy, Debug)]
pub enum Placement<'a> {
    /// A user's photo, with the extension of its format.
    Upload { upload: &'a UploadId, extension: &'a str },
    /// A file of one attempt of a generation: a run writes keys of its own attempt, so
    /// two runs never write one key.
    Output { generation: &'a GenerationId, attempt: i64, position: usize, filename: &'a str },
    /// A gallery copy, keyed by its item: saving never overwrites anything.
    Gallery { item: &'a GalleryItemId },
    /// A profile picture; each fetch gets a key of its own (`version`, a fresh ULID).
    Picture { version: &'a str },
    /// An access export's archive, keyed by its request and the attempt that wrote it
    /// (an attempt never reuses an earlier one's object, which may be purged meanwhile).
    Export { request: &'a PrivacyRequestId, attempt: i64 },
}

impl Placement<'_> {
    pub fn kind(&self) -> StoredObjectKind {
        match self {
            Placement::Upload { .. } => StoredObjectKind::Upload,
            Placement::Output { .. } => StoredObjectKind::Output,
            Placement::Gallery { .. } => StoredObjectKind::Gallery,
            Placement::Picture { .. } => StoredObjectKind::Picture,
            Placement::Export { .. } => StoredObjectKind::Export,
        }
    }

    /// The object's key under the user's prefix `u/{user}/`.
    pub fn key(&self, user: &UserId) -> String {
        match self {
            Placement::Upload { upload, extension } => format!("u/{user}/uploads/{upload}.{extension}"),
            Placement::Output { generation, attempt, position, filename } => {
                format!("u/{user}/generated/{generation}/a{attempt}-{position}-{filename}")
            }
            Placement::Gallery { item } => format!("u/{user}/gallery/{item}"),
            Placement::Picture { version } => format!("u/{user}/profile/{version}"),
            Placement::Export { request, attempt } => format!("u/{user}/exports/{request}-a{attempt}.zip"),
        }
    }

    /// When the purge deletes the object if its state is never recorded.
    fn expires_at(&self, lifetimes: &ObjectLifetimes, now: Millis) -> Millis {
        match self {
            Placement::Upload { .. } => now + duration_ms(lifetimes.upload_ttl),
            Placement::Output { .. }
            | Placement::Gallery { .. }
            | Placement::Picture { .. }
            | Placement::Export { .. } => now + PROVISIONAL_TTL_MS,
        }
    }
}

/// Where the bytes come from.
#[derive(Clone, Debug)]
pub enum Source {
    Bytes(Bytes),
    /// A server-side copy of another object of ours, `bytes` long.
    CopyOf {
        key: String,
        bytes: i64,
    },
}

impl Source {
    fn len(&self) -> i64 {
        match self {
            Source::Bytes(bytes) => i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            Source::CopyOf { bytes, .. } => *bytes,
        }
    }
}

/// An object whose row and bytes are in place, handed to the caller to record its state.
#[derive(Clone, Debug)]
pub struct WrittenObject {
    pub id: ObjectId,
    pub key: String,
    pub bytes: i64,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// Why an object could not be written; the row, if written, is purged when it expires.
#[derive(Debug, thiserror::Error)]
pub enum ObjectWriteError {
    #[error("recording the object failed")]
    Db(#[from] DbError),
    #[error("writing the object's bytes failed")]
    Storage(#[source] StorageError),
    /// A streamed write's source failed (its producer gave up before finishing):
    /// nothing was stored and `record` was not called.
    #[error("the object's bytes could not be read from their source")]
    Source(#[source] StorageError),
    /// A copy found its source gone: it expired and the purge deleted it meanwhile.
    /// The copy's row stays provisional, so the purge removes it too.
    #[error("the object to copy no longer exists")]
    SourceGone(#[source] StorageError),
    /// The caller's own step, after the bytes were written.
    #[error("recording what the object is for failed")]
    Record(#[source] DbError),
}

/// The database, the store and the lifetimes: everything a write needs.
#[derive(Clone, Debug)]
pub struct ObjectWriter {
    db: Db,
    store: ObjectStore,
    lifetimes: ObjectLifetimes,
}

impl ObjectWriter {
    pub fn new(db: Db, store: ObjectStore, lifetimes: ObjectLifetimes) -> ObjectWriter {
        ObjectWriter { db, store, lifetimes }
    }

    /// The expiry an object of `kind` gets once its state is recorded: an output lives
    /// `OUTPUT_TTL` from its generation's success, a gallery copy until it is deleted.
    pub fn lasting_expiry(&self, kind: StoredObjectKind, now: Millis) -> Option<Millis> {
        lasting_expiry(&self.lifetimes, kind, now)
    }

    /// Writes an object of `user` at `placement`: the row first (active, expiring as the
    /// kind says), then the bytes, then `record` with what was written. Writing the same
    /// key again (a job that runs twice) reuses the row. If `record` fails, the object
    /// is left to the purge at its expiry.
    pub async fn write<T, F, Fut>(
        &self,
        user: &UserId,
        placement: Placement<'_>,
        content_type: &str,
        source: Source,
        now: Millis,
        record: F,
    ) -> Result<T, ObjectWriteError>
    where
        F: FnOnce(WrittenObject) -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let key = placement.key(user);
        let expires_at = placement.expires_at(&self.lifetimes, now);
        let bytes = source.len();
        let row = NewObject {
            user_id: user,
            kind: placement.kind(),
            object_key: &key,
            content_type,
            bytes,
            expires_at: Some(expires_at),
        };
        let id = self.db.insert_stored_object(&row, now).await?;
        match source {
            Source::Bytes(body) => self.store.put(&key, body, content_type).await.map_err(ObjectWriteError::Storage)?,
            Source::CopyOf { key: from, .. } => self.store.copy(&from, &key).await.map_err(|e| match e {
                StorageError::SourceMissing { .. } => ObjectWriteError::SourceGone(e),
                e => ObjectWriteError::Storage(e),
            })?,
        }
        let written = WrittenObject { id, key, bytes, created_at: now, expires_at };
        record(written).await.map_err(ObjectWriteError::Record)
    }

    /// Like [`ObjectWriter::write`], with the bytes read from `reader` as they come (a
    /// multipart upload holding one part in memory, never the whole object): the row
    /// first (its length 0 until known), then the bytes, then the row's length, then
    /// `record`. The object is complete only if `reader` ends cleanly, so a producer
    /// must signal its failure as a read error: write through [`crate::pipe::pipe`],
    /// not a bare `tokio::io::duplex`, whose reader sees a failed producer's dropped
    /// writer as a clean end. On any failure no object is stored at the key (an earlier
    /// one stays), `record` is not called and the row is left to the purge.
    pub async fn write_stream<T, F, Fut, R>(
        &self,
        user: &UserId,
        placement: Placement<'_>,
        content_type: &str,
        reader: R,
        now: Millis,
        record: F,
    ) -> Result<T, ObjectWriteError>
    where
        R: AsyncRead + Unpin + Send,
        F: FnOnce(WrittenObject) -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let key = placement.key(user);
        let expires_at = placement.expires_at(&self.lifetimes, now);
        let row = NewObject {
            user_id: user,
            kind: placement.kind(),
            object_key: &key,
            content_type,
            bytes: 0,
            expires_at: Some(expires_at),
        };
        let id = self.db.insert_stored_object(&row, now).await?;
        let bytes = self.store.put_stream(&key, content_type, reader).await.map_err(|e| match e {
            StorageError::Source(_) => ObjectWriteError::Source(e),
            e => ObjectWriteError::Storage(e),
        })?;
        // Recorded here rather than by the caller's step, so that every streamed
        // object's row says its length whatever the caller records.
        self.db.set_object_bytes(&id, bytes).await?;
        let written = WrittenObject { id, key, bytes, created_at: now, expires_at };
        record(written).await.map_err(ObjectWriteError::Record)
    }
}

fn lasting_expiry(lifetimes: &ObjectLifetimes, kind: StoredObjectKind, now: Millis) -> Option<Millis> {
    match kind {
        StoredObjectKind::Upload => Some(now + duration_ms(lifetimes.upload_ttl)),
        StoredObjectKind::Output => Some(now + duration_ms(lifetimes.output_ttl)),
        StoredObjectKind::Export => Some(now + duration_ms(lifetimes.export_ttl)),
        StoredObjectKind::Gallery | StoredObjectKind::Picture => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keys_carry_ids_only_under_the_users_prefix() {
        let user = UserId::generate();
        let upload = UploadId::generate();
        let generation = GenerationId::generate();
        let item = GalleryItemId::generate();
        let request = PrivacyRequestId::generate();
        let placements = [
            (Placement::Upload { upload: &upload, extension: "jpg" }, format!("u/{user}/uploads/{upload}.jpg")),
            (
                Placement::Output { generation: &generation, attempt: 2, position: 1, filename: "portrait.png" },
                format!("u/{user}/generated/{generation}/a2-1-portrait.png"),
            ),
            (Placement::Gallery { item: &item }, format!("u/{user}/gallery/{item}")),
            (Placement::Export { request: &request, attempt: 2 }, format!("u/{user}/exports/{request}-a2.zip")),
        ];
        for (placement, key) in placements {
            assert_eq!(placement.key(&user), key);
        }
    }

    #[test]
    fn each_kind_expires_by_its_own_lifetime() {
        let lifetimes = ObjectLifetimes {
            upload_ttl: Duration::from_secs(10),
            output_ttl: Duration::from_secs(20),
            export_ttl: Duration::from_secs(30),
        };
        let (upload, generation, item) = (UploadId::generate(), GenerationId::generate(), GalleryItemId::generate());
        let upload = Placement::Upload { upload: &upload, extension: "png" };
        let output = Placement::Output { generation: &generation, attempt: 1, position: 0, filename: "a.wav" };
        let gallery = Placement::Gallery { item: &item };
        assert_eq!(upload.expires_at(&lifetimes, 1_000), 11_000);
        assert_eq!(output.expires_at(&lifetimes, 1_000), 1_000 + PROVISIONAL_TTL_MS);
        assert_eq!(gallery.expires_at(&lifetimes, 1_000), 1_000 + PROVISIONAL_TTL_MS);
        // Once recorded, an output lives OUTPUT_TTL and a gallery copy until deleted.
        assert_eq!(lasting_expiry(&lifetimes, StoredObjectKind::Output, 1_000), Some(21_000));
        assert_eq!(lasting_expiry(&lifetimes, StoredObjectKind::Gallery, 1_000), None);
        assert_eq!(lasting_expiry(&lifetimes, StoredObjectKind::Upload, 1_000), Some(11_000));
        assert_eq!(
            [upload.kind(), output.kind(), gallery.kind()],
            [StoredObjectKind::Upload, StoredObjectKind::Output, StoredObjectKind::Gallery]
        );
    }
}
