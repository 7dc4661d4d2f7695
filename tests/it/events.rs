//! `GET /v1/generations/{id}/events`: Server-Sent Events, read with an independent
//! parser (`eventsource-stream`, the WHATWG rules), in both modes (the in-process feed
//! and Redis pub/sub).

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);
const NO_WORKER: petportrait::Roles = petportrait::Roles { web: true, worker: false, scheduler: false };

/// Opens the stream (with `Last-Event-ID` if given) through `request`.
async fn open(request: reqwest::RequestBuilder, last_event_id: Option<&str>) -> reqwest::Response {
    let request = match last_event_id {
        Some(id) => request.header("last-event-id", id),
        None => request,
    };
    request.send().await.expect("GET events")
}

/// Every event until the server ends the stream, within the deadline.
async fn read_to_end(response: reqwest::Response) -> Vec<Event> {
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").map(|v| v.to_str().expect("ascii").to_owned());
    assert_eq!(content_type.as_deref(), Some("text/event-stream"));
    let stream = response.bytes_stream().eventsource();
    let events = tokio::time::timeout(DEADLINE, stream.collect::<Vec<_>>()).await.expect("the stream never ended");
    events.into_iter().map(|e| e.expect("a well-formed event")).collect()
}

fn object(event: &Event) -> Value {
    serde_json::from_str(&event.data).expect("the event's data is JSON")
}

all_modes!(a_stream_follows_a_generation_to_its_end, a_stream_follows_a_generation_to_its_end);

async fn a_stream_follows_a_generation_to_its_end(mode: Mode) {
    let app = TestApp::spawn(mode, &[]).await;
    let ann = app.user("Streamer").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let created = ann.create_portrait(&upload, "watercolor").await;
    let id = created["id"].as_str().expect("id").to_owned();
    let path = created["urls"]["events"].as_str().expect("events url").to_owned();

    let events = read_to_end(open(ann.http.get(ann.url(&path)), None).await).await;
    assert!(!events.is_empty());
    assert!(events[0].retry.is_some(), "the first event carries no retry hint");
    let ids: Vec<i64> = events.iter().map(|e| e.id.parse().expect("numeric ids")).collect();
    let statuses: Vec<String> = events.iter().map(|e| object(e)["status"].as_str().unwrap_or("?").to_owned()).collect();
    // Opened right after the create, the stream sees the run, not just its end.
    assert!(events.len() >= 3, "only {statuses:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids are not increasing: {ids:?}");
    let last = object(events.last().expect("an event"));
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(last["id"], id.as_str());
    assert_eq!(last["outputs"].as_array().map(Vec::len), Some(1), "the full object: {last}");
    let (_, polled) = ann.get(&format!("/v1/generations/{id}")).await;
    assert_eq!(last, polled, "the last event is not the object GET answers");

    // Reconnecting with the terminal event's id: 204, which stops EventSource.
    let final_id = events.last().map(|e| e.id.clone()).expect("id");
    let again = open(ann.http.get(ann.url(&path)), Some(&final_id)).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    // Reconnecting with an older id, or opening afresh: the terminal state at once, then the end.
    for resume in [Some(events[0].id.as_str()), None] {
        let replay = read_to_end(open(ann.http.get(ann.url(&path)), resume).await).await;
        assert_eq!(replay.len(), 1, "{resume:?}: {replay:?}");
        assert_eq!(replay[0].id, final_id);
        assert_eq!(object(&replay[0])["status"], "succeeded");
    }
    // Someone else's generation does not exist for them; nobody's without a session; a
    // malformed id names nothing.
    let other = app.user("Other").await;
    assert_eq!(open(other.http.get(other.url(&path)), None).await.status(), StatusCode::NOT_FOUND);
    let anonymous = open(reqwest::Client::new().get(ann.url(&path)), None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let malformed = open(ann.http.get(ann.url("/v1/generations/gen_nonsense/events")), None).await;
    assert_eq!(malformed.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

all_modes!(a_stream_resumes_waits_and_sees_a_cancel, a_stream_resumes_waits_and_sees_a_cancel);

/// Without workers the generation stays queued: a resumed stream sends nothing until
/// the cancel, which reaches it through the change feed; heartbeats keep it open; a
/// bearer token works like the cookie.
async fn a_stream_resumes_waits_and_sees_a_cancel(mode: Mode) {
    let app = TestApp::spawn_with(mode, &[("SSE_HEARTBEAT", "100ms")], NO_WORKER, None).await;
    let ann = app.user("Waiter").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let created = ann.create_portrait(&upload, "watercolor").await;
    let path = created["urls"]["events"].as_str().expect("events url").to_owned();

    // The first stream gets the queued object at once; heartbeat comments follow.
    let response = open(ann.http.get(ann.url(&path)), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut raw = response.bytes_stream();
    let mut text = String::new();
    let has_event_and_heartbeat =
        |text: &str| text.lines().any(|l| l.starts_with("data:")) && text.lines().any(|l| l.starts_with(':'));
    tokio::time::timeout(DEADLINE, async {
        while !has_event_and_heartbeat(&text) {
            let chunk = raw.next().await.expect("the stream is open").expect("bytes");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("no event and heartbeat arrived");
    drop(raw);
    let first_id = text.lines().find_map(|l| l.strip_prefix("id:")).map(|v| v.trim().to_owned()).expect("an id");

    // A bearer token, resuming from that event: nothing is sent until the cancel.
    let (status, token) = ann.post_json("/v1/me/tokens", &json!({"name": "stream"})).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let bearer = reqwest::Client::new().get(ann.url(&path)).bearer_auth(token["token"].as_str().expect("token"));
    // The stream is registered before its answer's headers are sent, so once `open`
    // returns, the cancel cannot be missed.
    let resumed = open(bearer, Some(&first_id)).await;
    let reader = tokio::spawn(read_to_end(resumed));
    let (status, canceled) =
        ann.post_json(&format!("/v1/generations/{}/cancel", created["id"].as_str().expect("id")), &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{canceled}");
    let events = reader.await.expect("the reader");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(object(&events[0])["status"], "canceled");
    assert!(events[0].id.parse::<i64>().expect("id") > first_id.parse::<i64>().expect("id"));
    app.stop().await;
}

all_modes!(the_status_route_never_answers_an_old_state, the_status_route_never_answers_an_old_state);

/// `GET /v1/generations/{id}` is answered from a short-lived cache; a change (here a
/// cancel) is seen at once, and the old `ETag` no longer matches.
async fn the_status_route_never_answers_an_old_state(mode: Mode) {
    let app = TestApp::spawn_with(mode, &[], NO_WORKER, None).await;
    let ann = app.user("Poller").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let created = ann.create_portrait(&upload, "watercolor").await;
    let path = format!("/v1/generations/{}", created["id"].as_str().expect("id"));
    let first = ann.http.get(ann.url(&path)).send().await.expect("GET");
    let tag = first.headers().get("etag").expect("an ETag").clone();
    for _ in 0..3 {
        let again = ann.http.get(ann.url(&path)).header("if-none-match", tag.clone()).send().await.expect("GET");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }
    let (status, _) = ann.post_json(&format!("{path}/cancel"), &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let after = ann.http.get(ann.url(&path)).header("if-none-match", tag.clone()).send().await.expect("GET");
    assert_eq!(after.status(), StatusCode::OK, "an old ETag matched after the change");
    assert_ne!(after.headers().get("etag"), Some(&tag));
    let body: Value = after.json().await.expect("JSON");
    assert_eq!(body["status"], "canceled");
    // Another user never gets the cached answer.
    let bob = app.user("Bob").await;
    assert_eq!(bob.get(&path).await.0, StatusCode::NOT_FOUND);
    // A revoked token stops reading at once, though its user was just cached.
    let (_, token) = ann.post_json("/v1/me/tokens", &json!({"name": "poller"})).await;
    let (secret, token_id) = (token["token"].as_str().expect("token"), token["id"].as_str().expect("id"));
    let bearer = || reqwest::Client::new().get(ann.url(&path)).bearer_auth(secret).send();
    assert_eq!(bearer().await.expect("GET").status(), StatusCode::OK);
    let revoked = ann.http.delete(ann.url(&format!("/v1/me/tokens/{token_id}"))).send().await.expect("DELETE");
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(bearer().await.expect("GET").status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}
