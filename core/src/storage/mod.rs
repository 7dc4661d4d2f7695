//! The object store: one aws-sdk-s3 client for every S3-compatible server, including
//! the in-process one of embedded mode (`embedded.rs`); objects written and read chunk
//! by chunk in `streams.rs`.

mod embedded;
mod streams;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use bytes::Bytes;

pub use embedded::{EmbeddedS3, generated_credentials};
pub use streams::ObjectStream;

use crate::config::{S3Config, Secret};

/// Errors talking to the object store. All are worth retrying except where noted.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object store request {operation} failed")]
    Request {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("reading an object body failed")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The source of a streamed write failed (its producer gave up): nothing was
    /// stored. Worth retrying only if the producer's failure is.
    #[error("reading the bytes to store from their source failed")]
    Source(#[source] std::io::Error),
    /// A copy's source key does not exist (the purge deleted it). Not worth retrying.
    #[error("the object {key} to copy from does not exist")]
    SourceMissing { key: String },
    #[error("the in-process S3 server could not start")]
    Embedded(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn request_error(operation: &'static str) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> StorageError {
    move |source| StorageError::Request { operation, source }
}

/// An object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    /// When the object was last written, by the store's clock (milliseconds).
    pub last_modified_ms: i64,
    pub size: i64,
}

/// A bucket on an S3-compatible server.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    client: aws_sdk_s3::Client,
    /// Signs download links for `S3_PUBLIC_ENDPOINT` (the host is part of a signature).
    presigner: Option<aws_sdk_s3::Client>,
    bucket: String,
}

/// Part of an object: `first..=last`, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ObjectStore {
    /// A client for `endpoint` (or AWS itself when `None`) with the given credentials.
    pub fn new(config: &S3Config, endpoint: Option<&str>, access_key: &str, secret_key: &Secret) -> ObjectStore {
        let client = Self::client(config, endpoint, access_key, secret_key);
        let presigner =
            config.public_endpoint.as_deref().map(|public| Self::client(config, Some(public), access_key, secret_key));
        ObjectStore { client, presigner, bucket: config.bucket.clone() }
    }

    fn client(config: &S3Config, endpoint: Option<&str>, access_key: &str, secret_key: &Secret) -> aws_sdk_s3::Client {
        let http =
            aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::v2026_01_12())
            .region(Region::new(config.region.clone()))
            .credentials_provider(Credentials::new(access_key, secret_key.expose(), None, None, "petportrait"))
            .force_path_style(config.force_path_style)
            .http_client(http);
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }

    /// A GET link to `key` on the public endpoint, valid for `ttl`, whose answer names
    /// `content_type` and `disposition`. `None` without a public endpoint.
    pub async fn presigned_get(
        &self,
        key: &str,
        ttl: std::time::Duration,
        content_type: &str,
        disposition: &str,
    ) -> Result<Option<String>, StorageError> {
        let Some(presigner) = &self.presigner else { return Ok(None) };
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
            .map_err(|e| request_error("PresignGetObject")(Box::new(e)))?;
        let request = presigner
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_type(content_type)
            .response_content_disposition(disposition)
            .presigned(config)
            .await
            .map_err(|e| request_error("PresignGetObject")(Box::new(e)))?;
        Ok(Some(request.uri().to_owned()))
    }

    /// Creates the bucket unless it exists already.
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                // s3s-fs answers BucketAlreadyExists even for our own bucket, and a
                // concurrent start may have created it: it is fine if we can reach it.
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()) {
                    self.ping().await
                } else {
                    Err(request_error("CreateBucket")(Box::new(e)))
                }
            }
        }
    }

    /// Answers when the bucket can be reached (readiness).
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| request_error("HeadBucket")(Box::new(e)))
    }

    /// Writes an object. Only the tracked-object writer (`objects.rs`) writes objects.
    pub(crate) async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| request_error("PutObject")(Box::new(e)))
    }

    /// Copies an object inside the bucket on the server side (no bytes pass through us).
    /// Only the tracked-object writer (`objects.rs`) writes objects.
    pub(crate) async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!("{}/{from}", self.bucket))
            .key(to)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                use aws_sdk_s3::error::ProvideErrorMetadata;
                if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchKey") {
                    StorageError::SourceMissing { key: from.to_owned() }
                } else {
                    request_error("CopyObject")(Box::new(e))
                }
            })
    }

    /// The object's bytes, or `None` when there is no such key.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        match self.get_stream(key).await? {
            Some(stream) => Ok(Some(stream.collect().await?)),
            None => Ok(None),
        }
    }

    /// Deletes up to 1000 keys in one request; returns the keys the server reported
    /// deleted (missing keys count as deleted). Keys it reported errors for are left out.
    pub async fn delete_many(&self, keys: &[String]) -> Result<Vec<String>, StorageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| request_error("DeleteObjects")(Box::new(e)))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(false)
            .build()
            .map_err(|e| request_error("DeleteObjects")(Box::new(e)))?;
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| request_error("DeleteObjects")(Box::new(e)))?;
        let failed: Vec<&str> = out.errors().iter().filter_map(|e| e.key()).collect();
        Ok(keys.iter().filter(|k| !failed.contains(&k.as_str())).cloned().collect())
    }

    /// Lists keys under a prefix (tests and reconciliation).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| request_error("ListObjectsV2")(Box::new(e)))?;
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            token = out.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return Ok(keys);
            }
        }
    }

    /// One page of the whole bucket in key order (S3 lists keys by their UTF-8 bytes):
    /// up to `max` objects after `start_after`, and whether more follow. Each call
    /// stands alone, so a walk over many calls can resume from any key it recorded.
    pub async fn list_page(
        &self,
        start_after: Option<&str>,
        max: i32,
    ) -> Result<(Vec<ListedObject>, bool), StorageError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_start_after(start_after.map(str::to_owned))
            .max_keys(max)
            .send()
            .await
            .map_err(|e| request_error("ListObjectsV2")(Box::new(e)))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ListedObject {
                    key: o.key()?.to_owned(),
                    // An object without a date is treated as brand new: never an orphan yet.
                    last_modified_ms: o.last_modified().and_then(|t| t.to_millis().ok()).unwrap_or(i64::MAX),
                    size: o.size().unwrap_or(0),
                })
            })
            .collect();
        Ok((objects, out.is_truncated().unwrap_or(false)))
    }
}
