//! The real Cog prediction server (PyPI `cog` 0.23, pinned in `tests/cog/requirements.txt`)
//! running a test predictor of `tests/cog/predict.py`. `scripts/test` installs it into
//! `target/cog` and names that environment in `PETPORTRAIT_COG_VENV`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn venv() -> PathBuf {
    let venv = std::env::var("PETPORTRAIT_COG_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/cog"));
    assert!(
        venv.join("bin/python").exists(),
        "the Cog server is not installed at {}: run scripts/test (it installs it), or \
         python3 -m venv target/cog && target/cog/bin/pip install -r tests/cog/requirements.txt",
        venv.display()
    );
    venv
}

/// One Cog server on a free loopback port, in a process group of its own (the server
/// runs the predictor in a child process), killed with the group when dropped.
pub struct CogServer {
    child: Child,
    pub url: String,
    /// `$PREDICTION_LOG`: what the predictor did (`*.start`, `*.end`, `*.canceled`, `*.png`).
    pub log_dir: PathBuf,
}

impl CogServer {
    /// A server running `class` that has finished its setup (`READY`).
    pub async fn start(class: &str) -> CogServer {
        CogServer::start_with(class, 1, "READY").await
    }

    /// A server running `class` with `slots` prediction slots (`COG_MAX_CONCURRENCY`),
    /// once its health check says `status`. The port is found free, then given to the
    /// server: if another process takes it in between, the server exits and it starts
    /// again on another.
    pub async fn start_with(class: &str, slots: usize, status: &str) -> CogServer {
        for _ in 0..3 {
            let mut server = CogServer::spawn(class, slots);
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut every = tokio::time::interval(Duration::from_millis(25));
            loop {
                every.tick().await;
                if server.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if server.health().await.as_deref() == Some(status) {
                    return server;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the Cog server running {class} did not say {status} within a minute"
                );
            }
        }
        panic!("the Cog server running {class} exited three times before it was up");
    }

    fn spawn(class: &str, slots: usize) -> CogServer {
        let venv = venv();
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let log_dir = std::env::temp_dir().join(format!("petportrait-cog-{}-{port}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&log_dir).expect("the prediction log directory");
        // The server runs the predictor with the `python` it finds on PATH.
        let path = format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(venv.join("bin/python"))
                .args(["-m", "cog.server.http", "--host", "127.0.0.1"])
                .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("cog"))
                .env("PATH", path)
                .env("PORT", port.to_string())
                .env("COG_PREDICT_TYPE_STUB", format!("predict.py:{class}"))
                .env("COG_MAX_CONCURRENCY", slots.to_string())
                .env("PREDICTION_LOG", &log_dir)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("start the Cog server")
        };
        CogServer { child, url: format!("http://127.0.0.1:{port}"), log_dir }
    }

    /// `status` of `GET /health-check`, or `None` when it does not answer.
    pub async fn health(&self) -> Option<String> {
        let answer = reqwest::get(format!("{}/health-check", self.url)).await.ok()?;
        let body: serde_json::Value = answer.json().await.ok()?;
        body["status"].as_str().map(str::to_owned)
    }

    /// The names of the predictor's marks ending in `.{what}`.
    pub fn marks(&self, what: &str) -> Vec<String> {
        let suffix = format!(".{what}");
        let mut names: Vec<String> = std::fs::read_dir(&self.log_dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter_map(|name| name.strip_suffix(&suffix).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Each prediction's (start, end) times in seconds, from the predictor's marks.
    pub fn spans(&self) -> Vec<(f64, f64)> {
        let read = |name: &str, what: &str| -> Option<f64> {
            std::fs::read_to_string(self.log_dir.join(format!("{name}.{what}"))).ok()?.trim().parse().ok()
        };
        self.marks("end").iter().filter_map(|name| Some((read(name, "start")?, read(name, "end")?))).collect()
    }

    /// `kill -9` of the server and its predictor process.
    pub fn kill(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-s", "KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl Drop for CogServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

/// The most predictions that overlapped in time among `spans`.
pub fn most_at_once(spans: &[(f64, f64)]) -> usize {
    let mut events: Vec<(f64, i32)> = spans.iter().flat_map(|&(start, end)| [(start, 1), (end, -1)]).collect();
    // Ends before starts at the same instant: back-to-back is not overlap.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut now = 0;
    let mut most = 0;
    for (_, change) in events {
        now += change;
        most = most.max(now);
    }
    most as usize
}
