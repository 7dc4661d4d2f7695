//! The ZIP archive of an access export, written as a stream (async_zip): small
//! documents whole, large ones entry by entry as rows come, and stored objects copied
//! chunk by chunk, so memory holds a chunk and the compressor's window, never a file.
//!
//! To upload what it writes, give it the writer of [`crate::pipe::pipe`] and the reader
//! to `ObjectWriter::write_stream`: only [`Archive::finish`] seals the pipe, so an
//! archive abandoned on an error is never stored as complete.

use std::collections::HashSet;

use async_zip::base::write::EntryStreamWriter;
use async_zip::tokio::write::ZipFileWriter;
use async_zip::{Compression, ZipDateTime, ZipDateTimeBuilder, ZipEntryBuilder};
use chrono::{Datelike, Timelike};
use futures::AsyncWriteExt as _;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio_util::compat::Compat;

use crate::storage::{ObjectStore, StorageError};

/// The longest entry name accepted, in bytes: far above any name the export makes,
/// far below the format's 65 535.
const MAX_NAME_BYTES: usize = 512;

/// Extensions of formats that are compressed already: stored as they are, since
/// deflating them again costs CPU and saves nothing. WAV, GLB and STL are not among
/// them: raw samples and meshes do shrink.
const STORED_EXTENSIONS: [&str; 11] = ["png", "jpg", "jpeg", "webp", "gif", "zip", "gz", "mp3", "ogg", "m4a", "mp4"];

type Erased = Box<dyn std::error::Error + Send + Sync>;

/// Why an archive could not be written. After any error but `InvalidName` and
/// `Duplicate` the archive is unusable: drop it (its pipe then tells the upload).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{name:?} cannot name an archive entry: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("the archive already has an entry {name:?}")]
    Duplicate { name: String },
    #[error("the archive's entry {name:?} was dropped without being closed")]
    EntryLeftOpen { name: String },
    #[error("an earlier failure left the archive unusable")]
    Unusable,
    #[error("writing the archive's entry {name:?} failed")]
    Entry {
        name: String,
        #[source]
        source: Erased,
    },
    #[error("reading the object {key} into the archive failed")]
    Object {
        key: String,
        #[source]
        source: StorageError,
    },
    #[error("finishing the archive failed")]
    Finish(#[source] Erased),
}

/// Where the archive stands between calls.
#[derive(Debug)]
enum State {
    Ready,
    /// An [`EntryWriter`] is (or was, if dropped unclosed) writing this entry.
    EntryOpen(String),
    Failed,
}

/// A ZIP archive written to `W` as it is built. Entries are added one at a time;
/// [`Archive::finish`] writes the central directory and shuts `W` down.
pub struct Archive<W: AsyncWrite + Unpin> {
    zip: ZipFileWriter<W>,
    names: HashSet<String>,
    state: State,
    modified: ZipDateTime,
}

impl<W: AsyncWrite + Unpin> std::fmt::Debug for Archive<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("entries", &self.names.len()).field("state", &self.state).finish()
    }
}

/// One entry being written, as its bytes come. Close it with [`EntryWriter::close`]
/// before the next; the archive refuses to go on after an entry dropped unclosed.
pub struct EntryWriter<'a, W: AsyncWrite + Unpin> {
    inner: EntryStreamWriter<'a, Compat<W>>,
    state: &'a mut State,
}

impl<W: AsyncWrite + Unpin> Archive<W> {
    /// An empty archive writing to `writer`; its entries are dated now (UTC).
    pub fn new(writer: W) -> Archive<W> {
        let now = chrono::Utc::now();
        let modified = ZipDateTimeBuilder::new()
            .year(now.year())
            .month(now.month())
            .day(now.day())
            .hour(now.hour())
            .minute(now.minute())
            .second(now.second())
            .build();
        Archive { zip: ZipFileWriter::with_tokio(writer), names: HashSet::new(), state: State::Ready, modified }
    }

    /// Adds a small document held in memory.
    pub async fn add_bytes(&mut self, name: &str, data: &[u8]) -> Result<(), ArchiveError> {
        let builder = self.begin(name)?;
        self.state = State::Failed;
        self.zip
            .write_entry_whole(builder, data)
            .await
            .map_err(|e| ArchiveError::Entry { name: name.to_owned(), source: Box::new(e) })?;
        self.state = State::Ready;
        Ok(())
    }

    /// Starts an entry written piece by piece (a JSON array row by row, a CSV).
    pub async fn entry(&mut self, name: &str) -> Result<EntryWriter<'_, W>, ArchiveError> {
        let builder = self.begin(name)?;
        // Failed until the entry is open; then open until closed, which a dropped
        // writer never does.
        self.state = State::Failed;
        let inner = self
            .zip
            .write_entry_stream(builder)
            .await
            .map_err(|e| ArchiveError::Entry { name: name.to_owned(), source: Box::new(e) })?;
        self.state = State::EntryOpen(name.to_owned());
        Ok(EntryWriter { inner, state: &mut self.state })
    }

    /// Copies the object at `key` into the entry `name`, chunk by chunk. `false`, with
    /// no entry added, when there is no such object (the purge deleted it meanwhile).
    pub async fn add_object(&mut self, name: &str, store: &ObjectStore, key: &str) -> Result<bool, ArchiveError> {
        self.check(name)?;
        let object = |source| ArchiveError::Object { key: key.to_owned(), source };
        let Some(mut body) = store.get_stream(key).await.map_err(object)? else { return Ok(false) };
        let mut entry = self.entry(name).await?;
        loop {
            match body.next_chunk().await {
                Ok(Some(chunk)) => entry.write(&chunk).await?,
                Ok(None) => break,
                Err(source) => {
                    *entry.state = State::Failed;
                    return Err(object(source));
                }
            }
        }
        entry.close().await?;
        Ok(true)
    }

    /// Writes the central directory and shuts the writer down, which seals a pipe.
    pub async fn finish(self) -> Result<(), ArchiveError> {
        self.ready()?;
        let mut writer = self.zip.close().await.map_err(|e| ArchiveError::Finish(Box::new(e)))?.into_inner();
        writer.shutdown().await.map_err(|e| ArchiveError::Finish(Box::new(e)))
    }

    fn ready(&self) -> Result<(), ArchiveError> {
        match &self.state {
            State::Ready => Ok(()),
            State::EntryOpen(name) => Err(ArchiveError::EntryLeftOpen { name: name.clone() }),
            State::Failed => Err(ArchiveError::Unusable),
        }
    }

    /// Whether `name` may be added now.
    fn check(&self, name: &str) -> Result<(), ArchiveError> {
        self.ready()?;
        check_name(name).map_err(|reason| ArchiveError::InvalidName { name: name.to_owned(), reason })?;
        if self.names.contains(name) {
            return Err(ArchiveError::Duplicate { name: name.to_owned() });
        }
        Ok(())
    }

    /// Checks `name` and claims it; the entry's header, compressed by its extension.
    fn begin(&mut self, name: &str) -> Result<ZipEntryBuilder, ArchiveError> {
        self.check(name)?;
        self.names.insert(name.to_owned());
        Ok(ZipEntryBuilder::new(name.into(), compression_for(name)).last_modification_date(self.modified))
    }
}

impl<W: AsyncWrite + Unpin> EntryWriter<'_, W> {
    /// Appends `data` to the entry.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), ArchiveError> {
        if let Err(e) = self.inner.write_all(data).await {
            let name = self.name();
            *self.state = State::Failed;
            return Err(ArchiveError::Entry { name, source: Box::new(e) });
        }
        Ok(())
    }

    /// Ends the entry (its data descriptor: CRC and sizes); the archive can go on.
    pub async fn close(self) -> Result<(), ArchiveError> {
        let name = self.name();
        match self.inner.close().await {
            Ok(()) => {
                *self.state = State::Ready;
                Ok(())
            }
            Err(e) => {
                *self.state = State::Failed;
                Err(ArchiveError::Entry { name, source: Box::new(e) })
            }
        }
    }

    fn name(&self) -> String {
        match &self.state {
            State::EntryOpen(name) => name.clone(),
            State::Ready | State::Failed => String::new(),
        }
    }
}

/// Why `name` cannot name an entry, if it cannot: it must be a relative path of plain
/// segments with forward slashes, so that no unzip tool writes outside its folder
/// (no absolute path, drive, `..`, backslash or control character).
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("too long");
    }
    if name.starts_with('/') {
        return Err("an absolute path");
    }
    if name.contains('\\') {
        return Err("a backslash (use forward slashes)");
    }
    if name.contains(':') {
        return Err("a colon (a drive or stream on Windows)");
    }
    if name.chars().any(char::is_control) {
        return Err("a control character");
    }
    for segment in name.split('/') {
        match segment {
            "" => return Err("an empty path segment (or a trailing slash)"),
            "." | ".." => return Err("a `.` or `..` segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Deflate, except for formats that are compressed already.
fn compression_for(name: &str) -> Compression {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension {
        Some(e) if STORED_EXTENSIONS.contains(&e.as_str()) => Compression::Stored,
        _ => Compression::Deflate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_plain_relative_paths() {
        for good in ["manifest.json", "data/generations.json", "media/gallery/gal_01.png", "é/ü.txt", "a..b/c"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../outside",
            "data/../../outside",
            "data/./x",
            "data\\x.json",
            "C:/x",
            "data//x",
            "data/",
            "a\nb",
            "a\0b",
            &"x".repeat(MAX_NAME_BYTES + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn compressed_media_is_stored_and_the_rest_deflated() {
        assert_eq!(compression_for("media/a.PNG"), Compression::Stored);
        assert_eq!(compression_for("media/a.jpeg"), Compression::Stored);
        assert_eq!(compression_for("data/generations.json"), Compression::Deflate);
        assert_eq!(compression_for("media/song.wav"), Compression::Deflate);
        assert_eq!(compression_for("README"), Compression::Deflate);
    }

    #[tokio::test]
    async fn names_are_checked_and_claimed_once() {
        let mut zip = Archive::new(tokio::io::sink());
        zip.add_bytes("a.txt", b"a").await.expect("a first entry");
        assert!(matches!(zip.add_bytes("a.txt", b"b").await, Err(ArchiveError::Duplicate { .. })));
        assert!(matches!(zip.entry("../a.txt").await.err(), Some(ArchiveError::InvalidName { .. })));
        zip.finish().await.expect("finished");
    }

    #[tokio::test]
    async fn an_entry_dropped_unclosed_stops_the_archive() {
        let mut zip = Archive::new(tokio::io::sink());
        let mut entry = zip.entry("rows.json").await.expect("an entry");
        entry.write(b"[1,").await.expect("a row");
        drop(entry);
        assert!(matches!(zip.add_bytes("b.txt", b"b").await, Err(ArchiveError::EntryLeftOpen { .. })));
        assert!(matches!(zip.finish().await, Err(ArchiveError::EntryLeftOpen { .. })));
    }
}
