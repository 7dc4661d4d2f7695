//! Slow clients cannot hold the server: a request's headers and body each have a
//! deadline, idle sockets do not starve the others, and a stopping API closes what is
//! left at its shutdown deadline.

use std::time::{Duration, Instant};

use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

all_modes!(a_client_that_never_finishes_its_headers_is_cut_off, a_client_that_never_finishes_its_headers_is_cut_off);
all_modes!(a_trickling_upload_answers_408, a_trickling_upload_answers_408);
all_modes!(health_answers_beside_a_thousand_idle_sockets, health_answers_beside_a_thousand_idle_sockets);
all_modes!(
    shutdown_ends_at_its_deadline_with_a_request_half_sent,
    shutdown_ends_at_its_deadline_with_a_request_half_sent
);

fn address(app: &TestApp) -> String {
    app.base_url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|()| received)
}

async fn a_client_that_never_finishes_its_headers_is_cut_off(mode: Mode) {
    let app = TestApp::spawn(mode, &[("HTTP_HEADER_TIMEOUT", "1s")]).await;
    let mut stream = TcpStream::connect(address(&app)).await.expect("connect");
    stream.write_all(b"GET / HTTP/1.1\r\n").await.expect("half a request");
    let started = Instant::now();
    assert!(read_to_close(&mut stream, Duration::from_secs(10)).await.is_some(), "still open after 10 s");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}, the timeout is 1 s");
    app.stop().await;
}

async fn a_trickling_upload_answers_408(mode: Mode) {
    let app = TestApp::spawn(mode, &[("HTTP_BODY_TIMEOUT", "1s")]).await;
    // A session cookie, read by hand: the upload is written byte by byte below.
    let signed_in = reqwest::Client::new()
        .post(format!("{}/auth/dev-login", app.base_url))
        .json(&json!({"email": "slow@example.org", "name": "Slow"}))
        .send()
        .await
        .expect("sign in");
    let cookie =
        signed_in.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("a cookie").to_owned();
    let mut stream = TcpStream::connect(address(&app)).await.expect("connect");
    let head = format!(
        "POST /v1/uploads HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\
         Content-Type: multipart/form-data; boundary=X\r\nContent-Length: 100000\r\n\r\n\
         --X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"pet.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n",
        address(&app)
    );
    stream.write_all(head.as_bytes()).await.expect("the head");
    let (mut reader, mut writer) = stream.into_split();
    // One byte every 200 ms: 500 s for the whole body.
    let trickle = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(200));
        loop {
            ticks.tick().await;
            if writer.write_all(&[0xFF]).await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), reader.read_exact(&mut answer))
        .await
        .expect("an answer within 10 s")
        .expect("read the status line");
    trickle.abort();
    assert_eq!(&answer, b"HTTP/1.1 408", "{}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() < Duration::from_secs(4), "answered after {:?}", started.elapsed());
    app.stop().await;
}

async fn health_answers_beside_a_thousand_idle_sockets(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        idle.push(TcpStream::connect(address(&app)).await.expect("connect"));
    }
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(format!("{}/healthz", app.base_url))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("healthz with 1,000 idle sockets open");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    drop(idle);
    app.stop().await;
}

async fn shutdown_ends_at_its_deadline_with_a_request_half_sent(mode: Mode) {
    let overrides = [("SHUTDOWN_TIMEOUT", "1s"), ("HTTP_HEADER_TIMEOUT", "1h"), ("HTTP_BODY_TIMEOUT", "1h")];
    let app = TestApp::spawn(mode, &overrides).await;
    let mut stream = TcpStream::connect(address(&app)).await.expect("connect");
    // A request whose handler waits for a body that never comes: a graceful shutdown
    // would wait for it for ever; the deadline ends it.
    let head = format!(
        "POST /auth/dev-login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"email\"",
        address(&app)
    );
    stream.write_all(head.as_bytes()).await.expect("half a request");
    // The request is in the handler once the server has read its head; give it the time
    // to (a request to another connection that answers proves the server is serving).
    let response = reqwest::get(format!("{}/healthz", app.base_url)).await.expect("healthz");
    assert_eq!(response.status(), StatusCode::OK);
    let started = Instant::now();
    app.stop().await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "stopped after {took:?}: the half-sent request was not waited for");
    assert!(took < Duration::from_secs(5), "the app stopped after {took:?}; its shutdown deadline is 1 s");
    drop(stream);
}
