//! An access export's archive streamed into the object store: several multipart parts
//! (an incompressible media object copied in, a large JSON entry written row by row),
//! read back with ZIP readers we did not write (the `zip` crate and Python's
//! `zipfile`); a producer that fails stores and records nothing, and leaves no parts.

use std::io::{Cursor, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use petportrait_core::db::DbError;
use petportrait_core::domain::StoredObjectKind;
use petportrait_core::ids::{GalleryItemId, PrivacyRequestId, UserId};
use petportrait_core::objects::{ObjectWriteError, Placement, Source, WrittenObject};
use petportrait_core::pipe::pipe;
use petportrait_core::privacy::archive::Archive;
use petportrait_core::time::now_ms;
use petportrait_tests::{Mode, TestApp};

all_modes!(an_archive_streams_into_the_store, an_archive_streams_into_the_store);
all_modes!(a_failed_producer_stores_nothing, a_failed_producer_stores_nothing);

/// Over two 8 MiB parts of random bytes, which no compressor shrinks.
const MEDIA_BYTES: usize = 18 * 1024 * 1024 + 321;
/// About 9 MiB of JSON.
const ROWS: usize = 80_000;

/// Deterministic noise (xorshift64*), incompressible enough for a ZIP.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn row(i: usize) -> String {
    format!(
        r#"{{"id":"gen_{i:08}","style":"watercolor","status":"succeeded","cost":3,"created_at":{},"note":"{:x}"}}"#,
        1_700_000_000_000_u64 + i as u64 * 7919,
        (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

fn expected_json() -> Vec<u8> {
    let rows: Vec<String> = (0..ROWS).map(row).collect();
    format!("[{}]", rows.join(",")).into_bytes()
}

async fn user_of(app: &TestApp) -> UserId {
    UserId::from_db(app.user("ann").await.user_id().await)
}

/// A gallery object of `user` holding `bytes`; its key.
async fn media_object(app: &TestApp, user: &UserId, bytes: Vec<u8>) -> String {
    let item = GalleryItemId::generate();
    let written = app
        .services
        .objects
        .write(
            user,
            Placement::Gallery { item: &item },
            "image/png",
            Source::Bytes(bytes.into()),
            now_ms(),
            |w| async { Ok::<_, DbError>(w) },
        )
        .await
        .expect("the media object");
    written.key
}

async fn an_archive_streams_into_the_store(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let user = user_of(&app).await;
    let media = noise(MEDIA_BYTES, 0x5EED);
    let media_key = media_object(&app, &user, media.clone()).await;
    let store = &app.services.store;
    let manifest = br#"{"format":1,"entries":["data/generations.json","media/gallery/portrait.png"]}"#;

    let request = PrivacyRequestId::generate();
    let (reader, writer) = pipe(64 * 1024);
    let upload = app.services.objects.write_stream(
        &user,
        Placement::Export { request: &request, attempt: 1 },
        "application/zip",
        reader,
        now_ms(),
        |written| async move { Ok::<_, DbError>(written) },
    );
    let produce = async {
        let mut zip = Archive::new(writer);
        zip.add_bytes("manifest.json", manifest).await?;
        let mut rows = zip.entry("data/generations.json").await?;
        rows.write(b"[").await?;
        for i in 0..ROWS {
            if i > 0 {
                rows.write(b",").await?;
            }
            rows.write(row(i).as_bytes()).await?;
        }
        rows.write(b"]").await?;
        rows.close().await?;
        assert!(zip.add_object("media/gallery/portrait.png", store, &media_key).await?, "the media is found");
        let gone = format!("u/{user}/gallery/never-written");
        assert!(!zip.add_object("media/gallery/gone.png", store, &gone).await?, "a missing object adds nothing");
        zip.finish().await
    };
    let (uploaded, produced) = tokio::join!(upload, produce);
    produced.expect("the archive is produced");
    let written: WrittenObject = uploaded.expect("the archive is stored and recorded");

    assert_eq!(written.key, format!("u/{user}/exports/{request}-a1.zip"));
    assert!(written.bytes > 2 * 8 * 1024 * 1024, "several parts: {} bytes", written.bytes);
    let row_of = app.services.db.get_object(&written.id).await.expect("read the row").expect("the row");
    assert_eq!(
        (row_of.kind, row_of.bytes, row_of.object_key.as_str()),
        (StoredObjectKind::Export, written.bytes, written.key.as_str())
    );
    let stored = store.get(&written.key).await.expect("get the archive").expect("the archive exists");
    assert_eq!(i64::try_from(stored.len()).expect("a length"), written.bytes);

    // The zip crate checks each entry's CRC-32 as it reads to the end.
    let mut zip = zip::ZipArchive::new(Cursor::new(stored.to_vec())).expect("a readable ZIP");
    let names: Vec<String> = zip.file_names().map(|n| n.expect("a UTF-8 name").into_owned()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let expected: [(&str, Vec<u8>, zip::CompressionMethod); 3] = [
        ("manifest.json", manifest.to_vec(), zip::CompressionMethod::Deflated),
        ("data/generations.json", expected_json(), zip::CompressionMethod::Deflated),
        ("media/gallery/portrait.png", media, zip::CompressionMethod::Stored),
    ];
    for (index, (name, content, method)) in expected.into_iter().enumerate() {
        let mut entry = zip.by_index(index).expect("an entry");
        assert_eq!(entry.name().expect("a UTF-8 name"), name);
        assert_eq!(entry.compression(), method, "{name}");
        let mut read = Vec::new();
        entry.read_to_end(&mut read).unwrap_or_else(|e| panic!("{name} reads back whole (CRC checked): {e}"));
        assert!(read == content, "{name}: {} bytes read, {} written", read.len(), content.len());
    }

    // A second, independent reader.
    let path = app.isolation.data_dir.join("export.zip");
    std::fs::write(&path, &stored).expect("write the archive out");
    let check = std::process::Command::new("python3")
        .args(["-c", "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(len(z.namelist()))"])
        .arg(&path)
        .output()
        .expect("run python3");
    assert!(check.status.success(), "zipfile: {}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "3");

    // An archive under one part goes up as a single PutObject.
    let small = PrivacyRequestId::generate();
    let (reader, writer) = pipe(64 * 1024);
    let upload = app.services.objects.write_stream(
        &user,
        Placement::Export { request: &small, attempt: 1 },
        "application/zip",
        reader,
        now_ms(),
        |written| async move { Ok::<_, DbError>(written) },
    );
    let produce = async {
        let mut zip = Archive::new(writer);
        zip.add_bytes("manifest.json", manifest).await?;
        zip.finish().await
    };
    let (uploaded, produced) = tokio::join!(upload, produce);
    produced.expect("the small archive is produced");
    let written = uploaded.expect("the small archive is stored");
    let stored = store.get(&written.key).await.expect("get").expect("the small archive exists");
    assert_eq!(i64::try_from(stored.len()).expect("a length"), written.bytes);
    let mut zip = zip::ZipArchive::new(Cursor::new(stored.to_vec())).expect("a readable small ZIP");
    let mut read = Vec::new();
    zip.by_name("manifest.json").expect("the manifest").read_to_end(&mut read).expect("read the manifest");
    assert_eq!(read, manifest);
    app.stop().await;
}

async fn a_failed_producer_stores_nothing(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let user = user_of(&app).await;
    let media_key = media_object(&app, &user, noise(MEDIA_BYTES, 0xBAD)).await;
    let store = &app.services.store;

    let request = PrivacyRequestId::generate();
    let recorded = Arc::new(AtomicBool::new(false));
    let (reader, writer) = pipe(64 * 1024);
    let upload = app.services.objects.write_stream(
        &user,
        Placement::Export { request: &request, attempt: 1 },
        "application/zip",
        reader,
        now_ms(),
        |_| {
            let recorded = Arc::clone(&recorded);
            async move {
                recorded.store(true, Ordering::SeqCst);
                Ok::<_, DbError>(())
            }
        },
    );
    // More than a part goes up before the failure, so a multipart upload is under way.
    let produce = async {
        let mut zip = Archive::new(writer);
        assert!(zip.add_object("media/gallery/portrait.png", store, &media_key).await?);
        let mut rows = zip.entry("data/generations.json").await?;
        rows.write(b"[").await?;
        rows.write(row(0).as_bytes()).await?;
        Err::<(), _>(anyhow::anyhow!("the database went away mid-export"))
    };
    let (uploaded, produced) = tokio::join!(upload, produce);
    assert!(produced.is_err());
    assert!(matches!(uploaded, Err(ObjectWriteError::Source(_))), "the upload saw the producer fail: {uploaded:?}");
    assert!(!recorded.load(Ordering::SeqCst), "nothing recorded as written");
    let key = Placement::Export { request: &request, attempt: 1 }.key(&user);
    assert_eq!(store.get(&key).await.expect("get"), None, "no truncated archive stored");
    assert!(store.list(&format!("u/{user}/exports/")).await.expect("list").is_empty());

    // The in-process server keeps a multipart upload's parts and state as `.upload…`
    // files at its root until it is completed or aborted.
    let root = app.isolation.data_dir.join("objects");
    let lingering: Vec<String> = std::fs::read_dir(&root)
        .expect("the S3 root")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".upload") || name.contains(".upload-"))
        .collect();
    assert!(lingering.is_empty(), "no parts linger: {lingering:?}");
    app.stop().await;
}
