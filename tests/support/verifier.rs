//! Runs reference libraries from PyPI (pinned in `tests/verifiers/requirements.txt`) on
//! our output: the Standard Webhooks library on what the receiver got (an independent
//! check of our signatures), Prometheus's client on `/metrics`. `scripts/test` installs
//! them into `target/verifiers` and names its Python in `PETPORTRAIT_VERIFIER_PYTHON`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::receiver::Received;

fn python() -> PathBuf {
    if let Ok(path) = std::env::var("PETPORTRAIT_VERIFIER_PYTHON") {
        return PathBuf::from(path);
    }
    let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/verifiers/bin/python");
    if installed.exists() {
        return installed;
    }
    panic!(
        "the Standard Webhooks verifier is not installed: run scripts/test (it installs it), or \
         python3 -m venv target/verifiers && target/verifiers/bin/pip install -r tests/verifiers/requirements.txt"
    );
}

/// Runs `script` with `input` on its stdin; its stdout, or the test fails with its stderr.
fn run(script: &std::path::Path, input: &[u8], what: &str) -> String {
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    child.stdin.take().expect("stdin").write_all(input).unwrap_or_else(|e| panic!("write to {what}: {e}"));
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{what} runs: {e}"));
    assert!(output.status.success(), "{what} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the reference library says of each message under `secret`: `ok <type>` or `error …`.
pub fn verify(secret: &str, messages: &[Received]) -> Vec<String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("verifiers/standard_webhooks.py");
    let input = json!({
        "secret": secret,
        "messages": messages.iter().map(|m| json!({"headers": m.headers, "body": m.body})).collect::<Vec<_>>(),
    });
    run(&script, input.to_string().as_bytes(), "the Standard Webhooks verifier").lines().map(str::to_owned).collect()
}

/// The samples of a Prometheus text exposition, as Prometheus's own Python client
/// parses it (`verifiers/prometheus_text.py`); a document it rejects fails the test.
pub fn prometheus_samples(text: &str) -> Vec<serde_json::Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("verifiers/prometheus_text.py");
    run(&script, text.as_bytes(), "Prometheus's parser")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a sample"))
        .collect()
}

/// Asserts that the library accepts every message under `secret`.
pub fn assert_verified(secret: &str, messages: &[Received]) {
    let verdicts = verify(secret, messages);
    assert_eq!(verdicts.len(), messages.len());
    for (verdict, message) in verdicts.iter().zip(messages) {
        assert!(verdict.starts_with("ok "), "{verdict} for {:?}", message.headers);
    }
}

/// Runs Schemathesis (the property-based API tester, pinned in the same requirements)
/// against the OpenAPI document at `base`/openapi.json with the configuration file
/// `config` and the extra `args`; returns its exit status's success and its report.
pub fn schemathesis(base: &str, config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let python = python();
    let cli = python.with_file_name("schemathesis");
    let output = Command::new(&cli)
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(args)
        .env("NO_COLOR", "1")
        // Its cache directory goes beside the configuration, in the test's own folder.
        .current_dir(config.parent().unwrap_or(std::path::Path::new(".")))
        .output()
        .unwrap_or_else(|e| panic!("start {}: {e}", cli.display()));
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), report)
}
