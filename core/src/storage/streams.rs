//! Objects written and read chunk by chunk: a multipart upload from an `AsyncRead`
//! (memory bounded by one part) and a body read as a stream of chunks. Both work
//! against the in-process s3s-fs server and an external S3 server alike.

use std::pin::Pin;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ObjectStore, StorageError, request_error};
use crate::errors::error_chain;

/// The size of every part of a multipart upload but the last. S3 refuses parts under
/// 5 MiB (except the last); 8 MiB keeps the request count low while one part is all a
/// streamed write holds in memory. At 10 000 parts this allows objects up to 78 GiB.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// An object's body, read chunk by chunk as the server sends it.
#[derive(Debug)]
pub struct ObjectStream {
    body: ByteStream,
}

impl ObjectStream {
    /// The next chunk, or `None` at the end of the object.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, StorageError> {
        self.body.try_next().await.map_err(|e| StorageError::Body(Box::new(e)))
    }

    /// The body as a tokio reader, for code that copies with `tokio::io::copy`.
    /// The whole body in memory (small objects only).
    pub async fn collect(self) -> Result<Bytes, StorageError> {
        Ok(self.body.collect().await.map_err(|e| StorageError::Body(Box::new(e)))?.into_bytes())
    }

    pub fn into_async_read(self) -> impl tokio::io::AsyncBufRead + Send + Unpin {
        self.body.into_async_read()
    }
}

impl futures::Stream for ObjectStream {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.body).poll_next(cx).map(|item| item.map(|r| r.map_err(|e| StorageError::Body(Box::new(e)))))
    }
}

impl ObjectStore {
    /// The object's body (or one byte range of it) as a stream of chunks, or `None` when
    /// there is no such key.
    pub async fn get_stream(&self, key: &str) -> Result<Option<ObjectStream>, StorageError> {
        self.get_stream_range(key, None).await
    }

    pub async fn get_stream_range(
        &self,
        key: &str,
        range: Option<super::ByteRange>,
    ) -> Result<Option<ObjectStream>, StorageError> {
        let range = range.map(|r| format!("bytes={}-{}", r.first, r.last));
        match self.client.get_object().bucket(&self.bucket).key(key).set_range(range).send().await {
            Ok(out) => Ok(Some(ObjectStream { body: out.body })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(request_error("GetObject")(Box::new(e))),
        }
    }

    /// Aborts the multipart uploads left under `prefix` (a process killed mid-upload
    /// leaves its parts, which no listing of objects shows); returns how many. A server
    /// without `ListMultipartUploads` (the in-process one keeps none we could reach)
    /// answers an error, which the caller may take as "none".
    pub async fn abort_uploads_under(&self, prefix: &str) -> Result<u64, StorageError> {
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .map_err(|e| request_error("ListMultipartUploads")(Box::new(e)))?;
        let mut aborted = 0;
        for upload in out.uploads() {
            let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else { continue };
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(id)
                .send()
                .await
                .map_err(|e| request_error("AbortMultipartUpload")(Box::new(e)))?;
            aborted += 1;
        }
        Ok(aborted)
    }

    /// Writes an object from `reader` and returns its length. An object shorter than one
    /// part is one PutObject; a longer one is a multipart upload of `PART_SIZE` parts,
    /// aborted on any failure (of the store or of the reader) so that no parts linger
    /// and nothing replaces an object already at `key`. The object exists only if this
    /// returns `Ok`. Only the tracked-object writer (`objects.rs`) writes objects.
    pub(crate) async fn put_stream<R>(&self, key: &str, content_type: &str, mut reader: R) -> Result<i64, StorageError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let first = read_part(&mut reader).await?;
        if first.len() < PART_SIZE {
            let bytes = byte_count(first.len());
            self.put(key, first, content_type).await?;
            return Ok(bytes);
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| request_error("CreateMultipartUpload")(Box::new(e)))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| request_error("CreateMultipartUpload")("the answer named no upload id".into()))?
            .to_owned();
        // Dropping this future (a canceled export) must not leave the parts behind
        // either: the guard aborts in a task of its own unless disarmed.
        let mut guard =
            AbortGuard { store: self.clone(), key: key.to_owned(), upload_id: upload_id.clone(), armed: true };
        let result = self.upload_parts(key, &upload_id, first, &mut reader).await;
        guard.armed = false;
        match result {
            Ok((bytes, parts)) => {
                tracing::debug!(key, upload_id, bytes, parts, "multipart upload completed");
                Ok(bytes)
            }
            Err(error) => {
                // Aborted here rather than by the guard, so that the parts are gone by
                // the time the caller hears of the failure.
                abort(self, key, &upload_id).await;
                Err(error)
            }
        }
    }

    /// Uploads `first` and the parts that follow it, then completes the upload. Returns
    /// the object's length and its number of parts.
    async fn upload_parts<R>(
        &self,
        key: &str,
        upload_id: &str,
        first: Bytes,
        reader: &mut R,
    ) -> Result<(i64, usize), StorageError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let mut completed = Vec::new();
        let mut bytes = 0;
        let mut part = first;
        loop {
            let number =
                i32::try_from(completed.len() + 1).map_err(|_| request_error("UploadPart")("too many parts".into()))?;
            bytes += byte_count(part.len());
            let last = part.len() < PART_SIZE;
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(ByteStream::from(part))
                .send()
                .await
                .map_err(|e| request_error("UploadPart")(Box::new(e)))?;
            // The part's checksum goes back in the completion, as S3 requires of an
            // upload created with a checksum algorithm (s3s-fs returns none).
            completed.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
                    .build(),
            );
            if last {
                break;
            }
            part = read_part(reader).await?;
            // A source ending exactly on a part boundary leaves an empty read; S3
            // accepts no empty part after the first, so the upload ends here.
            if part.is_empty() {
                break;
            }
        }
        let parts = completed.len();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
            .send()
            .await
            .map_err(|e| request_error("CompleteMultipartUpload")(Box::new(e)))?;
        Ok((bytes, parts))
    }
}

/// Reads up to one part: fewer bytes only at the end of the source.
async fn read_part<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Bytes, StorageError> {
    let mut buf = vec![0; PART_SIZE];
    let mut filled = 0;
    while filled < PART_SIZE {
        let n = reader.read(&mut buf[filled..]).await.map_err(StorageError::Source)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

fn byte_count(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

async fn abort(store: &ObjectStore, key: &str, upload_id: &str) {
    let aborted =
        store.client.abort_multipart_upload().bucket(&store.bucket).key(key).upload_id(upload_id).send().await;
    match aborted {
        Ok(_) => tracing::debug!(key, upload_id, "multipart upload aborted"),
        Err(e) => {
            let error = request_error("AbortMultipartUpload")(Box::new(e));
            tracing::warn!(key, upload_id, error = %error_chain(&error), "aborting a multipart upload failed: its parts stay until aborted");
        }
    }
}

/// Aborts a multipart upload whose future was dropped before it finished or failed.
struct AbortGuard {
    store: ObjectStore,
    key: String,
    upload_id: String,
    armed: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (store, key, upload_id) =
            (self.store.clone(), std::mem::take(&mut self.key), std::mem::take(&mut self.upload_id));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { abort(&store, &key, &upload_id).await });
            }
            Err(_) => {
                tracing::warn!(key, upload_id, "a multipart upload was dropped outside a runtime: its parts stay")
            }
        }
    }
}
