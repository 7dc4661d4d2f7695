use super::*;
use crate::domain::GenerationKind;

/// A valid `ENCRYPTION_KEY`, required outside embedded mode.
const KEY: (&str, &str) = ("ENCRYPTION_KEY", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");

fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

#[test]
fn defaults_are_the_embedded_mode() {
    let c = parse(&[]).expect("defaults are valid");
    assert!(c.is_embedded());
    assert!(c.dev_login);
    assert_eq!(c.port, 8080);
    assert_eq!(c.public_url, "http://127.0.0.1:8080");
    assert_eq!(c.s3.bucket, "petportrait");
    assert_eq!(c.starter_credits, 10);
    assert_eq!(c.lifetimes.output_ttl, Duration::from_secs(7 * 86_400));
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = parse(&[
        ("PORT", "eighty"),
        ("DATABASE_URL", "mysql://x"),
        ("UPLOAD_TTL", "forever"),
        ("HOST", "0.0.0.0"),
        ("LOG_FORMAT", "xml"),
    ])
    .expect_err("invalid");
    let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_ref()).collect();
    assert_eq!(names, ["PORT", "PUBLIC_URL", "DATABASE_URL", "DEV_LOGIN", "UPLOAD_TTL", "LOG_FORMAT"]);
    assert!(err.to_string().contains("PORT: expected a port number"));
}

#[test]
fn postgres_needs_redis_and_disables_dev_login() {
    let err = parse(&[("DATABASE_URL", "postgres://localhost/x")]).expect_err("no redis");
    assert_eq!(err.problems[0].variable, "REDIS_URL");
    let c =
        parse(&[("DATABASE_URL", "postgres://localhost/x"), ("REDIS_URL", "redis://127.0.0.1"), KEY]).expect("valid");
    assert!(!c.is_embedded());
    assert!(!c.dev_login);
}

#[test]
fn dev_login_needs_a_loopback_public_url() {
    let err = parse(&[("PUBLIC_URL", "https://pets.example.org")]).expect_err("not loopback");
    assert_eq!(err.problems[0].variable, "DEV_LOGIN");
    assert!(parse(&[("PUBLIC_URL", "http://localhost:8080")]).is_ok());
    assert!(parse(&[("PUBLIC_URL", "http://[::1]:8080")]).is_ok());
    assert!(parse(&[("PUBLIC_URL", "https://pets.example.org"), ("DEV_LOGIN", "false")]).is_ok());
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
    assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("h"), None);
    assert_eq!(parse_duration("3w"), None);
}

#[test]
fn models_are_local_unless_chosen_remote() {
    let c = parse(&[]).expect("valid");
    assert_eq!(c.models.backend(GenerationKind::Portrait), ModelBackend::Local);
    assert!(c.models.provider.is_none());
    // Provider variables alone change nothing.
    let c = parse(&[("PROVIDER_URL", "https://api.example.org")]).expect("valid");
    assert!(c.models.provider.is_none());
}

#[test]
fn a_remote_kind_needs_a_provider_and_its_model() {
    let err = parse(&[("MODEL_PORTRAIT", "remote"), ("MODEL_MUSIC", "cloud")]).expect_err("incomplete");
    let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_ref()).collect();
    assert_eq!(names, ["MODEL_MUSIC", "PROVIDER_URL", "PROVIDER_MODEL_PORTRAIT"]);

    let c = parse(&[
        ("MODEL_PORTRAIT", "remote"),
        ("MODEL_SCULPTURE", "Remote"),
        ("PROVIDER_URL", "https://api.example.org/"),
        ("PROVIDER_MODEL", "acme/pets"),
        ("PROVIDER_MODEL_SCULPTURE", "acme/clay:0123abcd"),
    ])
    .expect("valid");
    let provider = c.models.provider.as_ref().expect("a provider");
    assert_eq!(provider.url, "https://api.example.org");
    assert_eq!(provider.model(GenerationKind::Portrait), Some("acme/pets"));
    assert_eq!(provider.model(GenerationKind::Music), None, "music stays local");
    assert_eq!(provider.model(GenerationKind::Sculpture), Some("acme/clay:0123abcd"));
    assert_eq!(provider.timeout, Duration::from_secs(540), "90% of the default JOB_TIMEOUT");
    assert_eq!(provider.concurrency, 4);
    assert_eq!(c.models.backend(GenerationKind::Music), ModelBackend::Local);
}

#[test]
fn the_provider_must_be_https_and_end_before_the_job_timeout() {
    let remote = [("MODEL_PORTRAIT", "remote"), ("PROVIDER_MODEL", "acme/pets")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut vars = remote.to_vec();
        vars.extend_from_slice(extra);
        parse(&vars)
    };
    let err = with(&[("PROVIDER_URL", "http://models.example.org")]).expect_err("plain http");
    assert_eq!(err.problems[0].variable, "PROVIDER_URL");
    assert!(with(&[("PROVIDER_URL", "http://127.0.0.1:9999")]).is_ok(), "http to loopback is allowed");
    let err = with(&[
        ("PROVIDER_URL", "https://api.example.org"),
        ("JOB_TIMEOUT", "5m"),
        ("PROVIDER_TIMEOUT", "5m"),
        ("PROVIDER_CONCURRENCY", "0"),
    ])
    .expect_err("too long");
    let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_ref()).collect();
    assert_eq!(names, ["PROVIDER_TIMEOUT", "PROVIDER_CONCURRENCY"]);
}

#[test]
fn the_provider_token_is_never_printed() {
    let c = parse(&[
        ("MODEL_PORTRAIT", "remote"),
        ("PROVIDER_MODEL", "acme/pets"),
        ("PROVIDER_URL", "https://api.example.org"),
        ("PROVIDER_TOKEN", "r8_supersecret"),
    ])
    .expect("valid");
    let provider = c.models.provider.as_ref().expect("provider");
    assert_eq!(provider.token.as_ref().map(Secret::expose), Some("r8_supersecret"));
    for text in [format!("{c:?}"), format!("{c:#?}"), c.summary()] {
        assert!(!text.contains("supersecret"), "{text}");
    }
}

#[test]
fn the_s3_secret_is_never_printed() {
    let c = parse(&[
        ("S3_ENDPOINT", "http://127.0.0.1:9000"),
        ("AWS_ACCESS_KEY_ID", "petportrait"),
        ("AWS_SECRET_ACCESS_KEY", "s3-supersecret"),
    ])
    .expect("valid");
    let (access, secret) = c.s3.credentials.as_ref().expect("credentials");
    assert_eq!((access.as_str(), secret.expose()), ("petportrait", "s3-supersecret"));
    for text in [format!("{c:?}"), format!("{c:#?}"), c.summary()] {
        assert!(!text.contains("supersecret"), "{text}");
    }
}

#[test]
fn generated_s3_credentials_are_never_printed() {
    let (_, secret) = crate::storage::generated_credentials();
    assert_eq!(secret.expose().len(), 40);
    assert!(!format!("{secret:?}").contains(secret.expose()));
}

#[test]
fn dev_sign_in_is_refused_with_google_sign_in_or_off_loopback() {
    let google = [("GOOGLE_CLIENT_ID", "id.apps.googleusercontent.com"), ("GOOGLE_CLIENT_SECRET", "s")];
    // Off by default once Google sign-in is configured, refused if asked for.
    assert!(!parse(&google).expect("valid").dev_login);
    let err = parse(&[google[0], google[1], ("DEV_LOGIN", "true")]).expect_err("refused");
    assert_eq!(err.problems[0].variable, "DEV_LOGIN");
    // Bound to an address others can reach: refused, unless turned off.
    let public = ("PUBLIC_URL", "https://pets.example.org");
    let err = parse(&[("HOST", "0.0.0.0"), public, ("DEV_LOGIN", "true")]).expect_err("refused");
    assert_eq!(err.problems[0].variable, "DEV_LOGIN");
    assert!(!parse(&[("HOST", "0.0.0.0"), public, ("DEV_LOGIN", "false")]).expect("valid").dev_login);
    // Distributed mode: off by default, and on only when asked on loopback.
    let distributed = [("DATABASE_URL", "postgres://localhost/x"), ("REDIS_URL", "redis://127.0.0.1"), KEY];
    assert!(!parse(&distributed).expect("valid").dev_login);
    assert!(parse(&[distributed[0], distributed[1], KEY, ("DEV_LOGIN", "true")]).expect("valid").dev_login);
}

#[test]
fn a_public_url_must_name_a_host() {
    // Binding every address without saying where users reach us: no request could name
    // a host the API answers, so start-up says so.
    for host in ["0.0.0.0", "::"] {
        let err = parse(&[("HOST", host), ("DEV_LOGIN", "false")]).expect_err("no public host");
        assert_eq!(err.problems[0].variable, "PUBLIC_URL", "{host}");
    }
    let c = parse(&[("HOST", "0.0.0.0"), ("PUBLIC_URL", "https://pets.example.org"), ("DEV_LOGIN", "false")]);
    assert_eq!(c.expect("valid").public_url, "https://pets.example.org");
}

#[test]
fn a_redis_cluster_is_named_by_its_url_or_the_flag() {
    let postgres = ("DATABASE_URL", "postgres://localhost/x");
    let plain = parse(&[postgres, ("REDIS_URL", "redis://127.0.0.1:6379"), KEY]).expect("one server");
    assert!(!plain.queue.redis_cluster);
    let url = ("REDIS_URL", "redis+cluster://:pw-supersecret@10.0.0.1:7000,10.0.0.2:7000");
    let by_url = parse(&[postgres, url, KEY]).expect("cluster URL");
    assert!(by_url.queue.redis_cluster);
    assert!(!format!("{by_url:?}").contains("supersecret"));
    let flag = [postgres, ("REDIS_URL", "redis://10.0.0.1:7000"), ("REDIS_CLUSTER", "true"), KEY];
    assert!(parse(&flag).expect("flag").queue.redis_cluster);
    let err = parse(&[("REDIS_CLUSTER", "true")]).expect_err("a cluster without a node");
    assert_eq!(err.problems[0].variable, "REDIS_CLUSTER");
    let err = parse(&[postgres, ("REDIS_URL", "cluster://10.0.0.1:7000"), KEY]).expect_err("scheme");
    assert_eq!(err.problems[0].variable, "REDIS_URL");
}

#[test]
fn database_and_redis_passwords_are_never_printed() {
    let c = parse(&[
        ("DATABASE_URL", "postgres://app:pg-supersecret@db.internal:5432/pets?sslmode=require"),
        ("REDIS_URL", "redis://:redis-supersecret@cache.internal:6379/0"),
        KEY,
    ])
    .expect("valid");
    let text = format!("{c:?}");
    assert!(!text.contains("supersecret"), "{text}");
    assert!(text.contains("postgres://app:[redacted]@db.internal:5432/pets?sslmode=require"), "{text}");
    assert!(text.contains("redis://:[redacted]@cache.internal:6379/0"), "{text}");
    assert_eq!(without_password("sqlite://./data/p.db?mode=rwc"), "sqlite://./data/p.db?mode=rwc");
    assert_eq!(without_password("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
}

#[test]
fn the_memory_budget_must_hold_an_upload_and_its_copy() {
    assert_eq!(parse(&[]).expect("defaults").memory_budget, 1 << 30);
    let err = parse(&[("MEMORY_BUDGET", "30000000")]).expect_err("less than two 20 MiB uploads");
    assert_eq!(err.problems[0].variable, "MEMORY_BUDGET");
    let c = parse(&[("MEMORY_BUDGET", "30000000"), ("UPLOAD_MAX_BYTES", "5000000")]).expect("enough");
    assert_eq!(c.memory_budget, 30_000_000);
    assert_eq!(parse(&[("MEMORY_BUDGET", "1GiB")]).expect_err("bytes only").problems[0].variable, "MEMORY_BUDGET");
}

#[test]
fn the_encryption_key_is_required_outside_embedded_mode_and_checked() {
    let distributed = [("DATABASE_URL", "postgres://localhost/x"), ("REDIS_URL", "redis://127.0.0.1")];
    let err = parse(&distributed).expect_err("no key");
    assert_eq!(err.problems[0].variable, "ENCRYPTION_KEY");
    // Embedded mode generates its key into DATA_DIR when none is given.
    assert!(parse(&[]).expect("embedded").encryption.current.is_none());
    for bad in ["short", "AQEBAQEBAQEBAQEBAQEBAQ=="] {
        let err = parse(&[("ENCRYPTION_KEY", bad)]).expect_err("not 32 bytes");
        assert_eq!(err.problems[0].variable, "ENCRYPTION_KEY", "{bad}");
    }
    let err = parse(&[KEY, ("ENCRYPTION_PREVIOUS_KEYS", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=,nope")])
        .expect_err("bad old key");
    assert_eq!(err.problems[0].variable, "ENCRYPTION_PREVIOUS_KEYS");
    let c =
        parse(&[KEY, ("ENCRYPTION_PREVIOUS_KEYS", " AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI= , ")]).expect("valid");
    assert_eq!(c.encryption.previous.len(), 1);
}

#[test]
fn the_encryption_keys_are_never_printed() {
    let c = parse(&[KEY, ("ENCRYPTION_PREVIOUS_KEYS", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=")]).expect("valid");
    let text = format!("{c:?}");
    assert!(!text.contains("AQEBAQEB") && !text.contains("AgICAgIC"), "{text}");
}

#[test]
fn the_google_client_secret_is_never_printed() {
    let c = parse(&[
        ("GOOGLE_CLIENT_ID", "client.apps.googleusercontent.com"),
        ("GOOGLE_CLIENT_SECRET", "GOCSPX-supersecret"),
        ("DEV_LOGIN", "false"),
    ])
    .expect("valid");
    let text = format!("{c:?}");
    assert!(!text.contains("supersecret"), "{text}");
    assert_eq!(c.google.expect("configured").issuer_url, "https://accounts.google.com");
    let err = parse(&[("OIDC_ISSUER_URL", "http://idp.example.org")]).expect_err("plain http off loopback");
    assert_eq!(err.problems[0].variable, "OIDC_ISSUER_URL");
}

#[test]
fn credit_packs_and_stripe_keys() {
    let c = parse(&[]).expect("defaults");
    assert_eq!(c.payments.packs.len(), 3);
    assert!(c.payments.stripe.is_none(), "purchases are off without Stripe keys");
    let err = parse(&[("CREDIT_PACKS", "one:10:100:usd,one:20:200:usd")]).expect_err("duplicate id");
    assert_eq!(err.problems[0].variable, "CREDIT_PACKS");
    let err = parse(&[("STRIPE_SECRET_KEY", "sk_test_x")]).expect_err("half of Stripe");
    assert_eq!(err.problems[0].variable, "STRIPE_WEBHOOK_SECRET");
    let c = parse(&[
        ("STRIPE_SECRET_KEY", "sk_test_supersecret"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_supersecret1, whsec_supersecret2"),
    ])
    .expect("valid");
    let stripe = c.payments.stripe.as_ref().expect("configured");
    assert_eq!((stripe.webhook_secrets.len(), stripe.api_base.as_str()), (2, "https://api.stripe.com"));
    assert!(!format!("{c:?}").contains("supersecret"), "a Stripe key is printed");
}

#[test]
fn the_reconciliation_runs_daily_unless_told_otherwise() {
    assert_eq!(parse(&[]).expect("defaults").scheduler.reconcile_every, Duration::from_secs(86_400));
    assert_eq!(
        parse(&[("RECONCILE_INTERVAL", "6h")]).expect("valid").scheduler.reconcile_every,
        Duration::from_secs(6 * 3600)
    );
    let err = parse(&[("RECONCILE_INTERVAL", "30s")]).expect_err("too often");
    assert_eq!(err.problems[0].variable, "RECONCILE_INTERVAL");
}

#[test]
fn a_public_s3_endpoint_needs_a_server_of_its_own() {
    let err = parse(&[("S3_PUBLIC_ENDPOINT", "https://files.example.org")]).expect_err("no own S3");
    assert_eq!(err.problems[0].variable, "S3_PUBLIC_ENDPOINT");
    let own = [
        ("S3_ENDPOINT", "http://127.0.0.1:9000"),
        ("AWS_ACCESS_KEY_ID", "a"),
        ("AWS_SECRET_ACCESS_KEY", "b"),
        ("S3_PUBLIC_ENDPOINT", "https://files.example.org/"),
    ];
    assert_eq!(parse(&own).expect("valid").s3.public_endpoint.as_deref(), Some("https://files.example.org"));
    let mut not_a_url = own;
    not_a_url[3] = ("S3_PUBLIC_ENDPOINT", "files.example.org");
    assert_eq!(parse(&not_a_url).expect_err("not a URL").problems[0].variable, "S3_PUBLIC_ENDPOINT");
}
