//! The S3 server of embedded mode: s3s-fs over a local folder, served on a loopback
//! port so that the ordinary aws-sdk-s3 client code talks to it over HTTP. The same
//! server backs `petportrait s3-server`, a stand-alone S3-compatible server for trying
//! the distributed mode on one machine.

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::StorageError;
use crate::config::Secret;

/// A running in-process S3 server.
#[derive(Debug)]
pub struct EmbeddedS3 {
    pub addr: SocketAddr,
    pub access_key: String,
    pub secret_key: Secret,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl EmbeddedS3 {
    /// Serves `root` on `listener` until [`EmbeddedS3::stop`].
    pub fn start(
        root: &Path,
        listener: TcpListener,
        access_key: String,
        secret_key: Secret,
    ) -> Result<EmbeddedS3, StorageError> {
        let embedded = |e: Box<dyn std::error::Error + Send + Sync>| StorageError::Embedded(e);
        std::fs::create_dir_all(root).map_err(|e| embedded(Box::new(e)))?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| embedded(format!("{e:?}").into()))?;
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key.clone(), secret_key.expose().to_owned()));
        let service = builder.build();
        let addr = listener.local_addr().map_err(|e| embedded(Box::new(e)))?;

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let accept_shutdown = shutdown.clone();
        let conn_tasks = tasks.clone();
        tasks.spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = accept_shutdown.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(error) => {
                            tracing::warn!(error = %error, "embedded s3 accept failed");
                            continue;
                        }
                    },
                };
                // Small answers go out at once: with Nagle's algorithm, an answer written
                // in two pieces waits for the client's delayed ACK (tens of ms a request).
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(error = %error, "embedded s3: could not set TCP_NODELAY");
                }
                let service = service.clone();
                let conn_shutdown = accept_shutdown.clone();
                conn_tasks.spawn(async move {
                    let builder = ConnBuilder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        result = conn.as_mut() => {
                            if let Err(error) = result {
                                tracing::debug!(error = %error, "embedded s3 connection ended with an error");
                            }
                        }
                        () = conn_shutdown.cancelled() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.as_mut().await;
                        }
                    }
                });
            }
        });
        tasks.close();
        Ok(EmbeddedS3 { addr, access_key, secret_key, shutdown, tasks })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets open requests finish, and waits for them.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tasks.wait().await;
    }
}

/// Random credentials for an in-process server that only this process talks to.
pub fn generated_credentials() -> (String, Secret) {
    use rand::Rng;
    let mut rng = rand::rng();
    let access: String = (0..20).map(|_| rng.sample(rand::distr::Alphanumeric) as char).collect();
    let secret: String = (0..40).map(|_| rng.sample(rand::distr::Alphanumeric) as char).collect();
    (access.to_ascii_uppercase(), Secret::new(secret))
}
