//! The web app in a real browser: Debian's Chromium, headless, driven by playwright-core
//! through `tests/browser/app.test.mjs`, against two apps in embedded mode started here:
//! one with the development sign-in, one worker and the real studio at a model's pace
//! (`PacedStudio`, so generations can be watched, queued and canceled), a fake Stripe
//! whose every Checkout session gets paid (with Stripe's signed event), and webhook
//! endpoints resolving to a closed local port (so the delivery log has failures to
//! show); and one with Google sign-in against a fake OpenID provider (the age question). The script checks each
//! screen with axe-core and writes its screenshot to `docs/screenshots/`.
//!
//! It needs Chromium (`apt-get install chromium`) and the script's npm packages
//! (`npm ci --prefix tests/browser`); scripts/test installs the packages and leaves this
//! test out, saying so, when Chromium is missing, unless PETPORTRAIT_REQUIRE_SERVICES=1.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use petportrait_core::outbound::Outbound;
use petportrait_core::time::now_ms;
use petportrait_tests::fake_stripe::{FakeStripe, paid_session_event, post_event_to, signature};
use petportrait_tests::oidc_provider::{FakeOidc, Person};
use petportrait_tests::studios::PacedStudio;
use petportrait_tests::{Mode, TestApp};

const STRIPE_WEBHOOK_SECRET: &str = "whsec_petportrait_browser";

/// The whole script: two screen sizes, three generations each, an export and a deletion.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(600);

/// A folder of this test's own under the system's temporary folder.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("petportrait-browser-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    dir
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser() {
    let root = repository();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install it (apt-get install chromium) or set CHROMIUM; scripts/test leaves \
         this test out, and says so, when it is missing"
    );
    assert!(
        root.join("tests/browser/node_modules/playwright-core").exists(),
        "the browser tests' npm packages are missing: npm ci --prefix tests/browser (scripts/test runs it)"
    );

    let stripe = FakeStripe::start().await;
    // One worker and a model's pace (four stages half a second apart before the real
    // render), so the browser can watch a generation move, see one wait in the queue
    // behind another, and cancel it.
    let dev = TestApp::spawn_reachable(
        Mode::Embedded,
        &[
            ("WORKER_CONCURRENCY", "1"),
            ("STARTER_CREDITS", "40"),
            ("CREDIT_PACKS", "mini:5:199:eur,maxi:50:1499:eur"),
            ("STRIPE_SECRET_KEY", "sk_test_browser"),
            ("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET),
            ("STRIPE_API_BASE", &stripe.base_url),
        ],
        Some(PacedStudio::new(Duration::from_millis(500))),
        |services| {
            // hooks.example.org is this machine, where nothing listens on 443: every
            // delivery fails at once and is logged.
            let hosts: HashMap<String, Vec<IpAddr>> =
                HashMap::from([("hooks.example.org".to_owned(), vec![IpAddr::from([127, 0, 0, 1])])]);
            services.webhooks = services.webhooks.clone().with_outbound(Outbound::with_fixed_hosts(true, hosts));
        },
    )
    .await;
    let provider = FakeOidc::start(Person {
        sub: "google-sub-browser".to_owned(),
        email: format!("newcomer{}example.org", '@'),
        email_verified: true,
        name: "Newcomer".to_owned(),
        picture: None,
    })
    .await;
    let overrides = provider.app_overrides();
    let overrides: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let google = TestApp::spawn_reachable(Mode::Embedded, &overrides, None, |_| {}).await;
    let customer = tokio::spawn(pay_every_checkout(stripe.clone(), dev.base_url.clone()));

    let screenshots = std::env::var("PP_SCREENSHOTS").map_or_else(|_| root.join("docs/screenshots"), PathBuf::from);
    // The script's output goes to files (read at the end) so a chatty run cannot fill a
    // pipe and stall it; the child is killed if the deadline passes.
    let logs = tempfile_dir();
    let mut child = std::process::Command::new(std::env::var("NODE").unwrap_or_else(|_| "node".to_owned()))
        .arg("tests/browser/app.test.mjs")
        .current_dir(&root)
        .env("PP_APP_URL", &dev.base_url)
        .env("PP_GOOGLE_APP_URL", &google.base_url)
        .env("PP_OIDC_ORIGIN", &provider.issuer)
        .env("PP_CHROMIUM", &chromium)
        .env("PP_PHOTO", root.join("tests/fixtures/chelsea.jpg"))
        .env("PP_SCREENSHOTS", &screenshots)
        .stdout(std::fs::File::create(logs.join("stdout")).expect("stdout file"))
        .stderr(std::fs::File::create(logs.join("stderr")).expect("stderr file"))
        .spawn()
        .expect("node runs (is Node.js installed?)");
    let started = std::time::Instant::now();
    let mut every = tokio::time::interval(Duration::from_millis(100));
    let status = loop {
        every.tick().await;
        if let Some(status) = child.try_wait().expect("the script's status") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_DEADLINE {
            let _ = child.kill();
            break None;
        }
    };
    let stdout = std::fs::read_to_string(logs.join("stdout")).unwrap_or_default();
    let stderr = std::fs::read_to_string(logs.join("stderr")).unwrap_or_default();
    println!("{stdout}");
    eprintln!("{stderr}");
    let _ = std::fs::remove_dir_all(&logs);
    let status = status.unwrap_or_else(|| panic!("the browser script did not finish within {SCRIPT_DEADLINE:?}"));
    assert!(status.success(), "the browser script failed ({status}): {stderr}");

    // What the browser did went through the real API: each journey's account is gone,
    // the adult who answered the age question has an account, the child has none.
    let accounts = |app: &TestApp| {
        let db = app.services.db.clone();
        async move { db.list_sealed_user_fields("", 1000).await.expect("accounts").len() }
    };
    assert_eq!(accounts(&google).await, 1, "the adult's account only");
    assert_eq!(stripe.requests().len(), 2, "one Checkout session per journey");
    customer.abort();
    dev.stop().await;
    google.stop().await;
}

/// The customer on Stripe's Checkout page: each session the app opens is paid, and
/// Stripe's signed `checkout.session.completed` event is sent to the app, as Stripe
/// does once a payment goes through.
async fn pay_every_checkout(stripe: FakeStripe, app: String) {
    let mut paid = 0;
    let mut every = tokio::time::interval(Duration::from_millis(100));
    loop {
        every.tick().await;
        for (session, form) in stripe.sessions().into_iter().skip(paid) {
            stripe.mark_paid(&session);
            let pack = form.get("metadata[pack_id]").cloned().unwrap_or_default();
            let amount = if pack == "maxi" { 1499 } else { 199 };
            let user = form.get("client_reference_id").cloned().unwrap_or_default();
            let body = paid_session_event(&format!("evt_browser_{session}"), &session, &user, &pack, amount);
            let signed = signature(&body, STRIPE_WEBHOOK_SECRET, now_ms() / 1000);
            let status = post_event_to(&app, &body, Some(signed)).await;
            assert!(status.is_success(), "Stripe's event was refused: {status}");
            paid += 1;
        }
    }
}

/// The app's files without a browser: the page names the sign-in on offer, files are
/// gzipped when asked and revalidated with their tag, and nothing outside the list is
/// served (a path climbing out of the folder included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_gzipped_revalidated_and_listed_only() {
    let app = TestApp::spawn(Mode::Embedded, &[]).await;
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/", app.base_url)).send().await.expect("page");
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(csp.contains("script-src 'self';"), "no inline script may run: {csp}");
    let html = page.text().await.expect("html");
    assert!(html.contains(r#"data-sign-in="dev""#) && !html.contains("{{"), "{html}");

    let raw = std::fs::read(repository().join("api/web/js/app.js")).expect("the file");
    let asset = format!("{}/assets/js/app.js", app.base_url);
    let gzipped = http.get(&asset).header("accept-encoding", "gzip, br").send().await.expect("asset");
    assert_eq!(gzipped.status(), reqwest::StatusCode::OK);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(gzipped.headers()["vary"], "accept-encoding");
    assert!(gzipped.headers()["content-type"].to_str().expect("ascii").starts_with("text/javascript"));
    let tag = gzipped.headers()["etag"].clone();
    let packed = gzipped.bytes().await.expect("body");
    assert!(packed.len() < raw.len() / 2 && packed.starts_with(&[0x1f, 0x8b]), "{} of {}", packed.len(), raw.len());
    let plain = http.get(&asset).send().await.expect("asset");
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.bytes().await.expect("body").as_ref(), raw.as_slice());
    let again = http.get(&asset).header("if-none-match", tag).send().await.expect("asset");
    assert_eq!(again.status(), reqwest::StatusCode::NOT_MODIFIED);

    for path in ["/assets/js/missing.js", "/assets/../Cargo.toml", "/assets/%2e%2e/src/web.rs", "/assets/index.html"] {
        let answer = http.get(format!("{}{path}", app.base_url)).send().await.expect("GET");
        assert_eq!(answer.status(), reqwest::StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.headers()["content-type"], "application/problem+json", "{path}");
    }
    app.stop().await;
}
