//! A byte pipe whose reader sees a clean end only once the writer has said it is done.
//!
//! `tokio::io::duplex` alone cannot tell a finished producer from a failed one: a write
//! half dropped by an error ends the read half exactly like one shut down after the
//! last byte. A streamed upload reading such a pipe would then store a truncated file
//! as complete. Here only `shutdown` (which `Archive::finish` calls) seals the pipe; a
//! writer dropped without it makes the reader fail, so the upload is abandoned.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// A pipe holding up to `capacity` bytes in flight: a producer writes into the
/// [`PipeWriter`] while the consumer reads the [`PipeReader`], each waiting for the other.
pub fn pipe(capacity: usize) -> (PipeReader, PipeWriter) {
    let (reader, writer) = tokio::io::duplex(capacity);
    let sealed = Arc::new(AtomicBool::new(false));
    (PipeReader { inner: reader, sealed: Arc::clone(&sealed) }, PipeWriter { inner: writer, sealed })
}

/// The producer's end. `shutdown` marks the bytes complete; dropping it without
/// shutting it down makes the reader fail with `UnexpectedEof`.
#[derive(Debug)]
pub struct PipeWriter {
    inner: DuplexStream,
    sealed: Arc<AtomicBool>,
}

/// The consumer's end: the end of the bytes is an error unless the writer shut down.
/// Dropping it makes the writer's next write fail (`BrokenPipe`), so a failed consumer
/// stops its producer.
#[derive(Debug)]
pub struct PipeReader {
    inner: DuplexStream,
    sealed: Arc<AtomicBool>,
}

impl AsyncWrite for PipeWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Sealed before the end is visible, so a reader that sees the end sees the seal.
        self.sealed.store(true, Ordering::Release);
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncRead for PipeReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let asked = buf.remaining() > 0;
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if asked && buf.filled().len() == before && !self.sealed.load(Ordering::Acquire) => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the pipe's writer stopped before finishing",
                )))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn the_end_is_clean_only_after_shutdown() {
        let (mut reader, mut writer) = pipe(16);
        let produce = async move {
            writer.write_all(b"all of it, in several chunks").await.expect("write");
            writer.shutdown().await.expect("shutdown");
        };
        let mut read = Vec::new();
        let (_, result) = tokio::join!(produce, reader.read_to_end(&mut read));
        result.expect("a clean end");
        assert_eq!(read, b"all of it, in several chunks");
    }

    #[tokio::test]
    async fn a_writer_dropped_unfinished_is_an_error() {
        let (mut reader, mut writer) = pipe(16);
        let produce = async move {
            writer.write_all(b"half").await.expect("write");
            drop(writer);
        };
        let mut read = Vec::new();
        let (_, result) = tokio::join!(produce, reader.read_to_end(&mut read));
        let error = result.expect_err("an unfinished pipe");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(read, b"half");
    }

    #[tokio::test]
    async fn a_dropped_reader_stops_the_writer() {
        let (reader, mut writer) = pipe(16);
        drop(reader);
        let error = writer.write_all(b"nobody reads this").await.expect_err("a broken pipe");
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }
}
