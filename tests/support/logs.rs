//! Every log line of a test, kept to search: installed as the process's subscriber
//! before the app starts (nextest runs each test in a process of its own), at `debug`
//! for our crates, so a personal detail in any of our lines is found.

use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Installs the capture; call it before `TestApp::spawn`. Fails the test if another
    /// subscriber was installed first (the capture would see nothing).
    pub fn install() -> CapturedLogs {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,petportrait=debug,petportrait_api=debug,petportrait_core=debug",
            ))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init()
            .expect("the log capture must be the first subscriber of the process");
        logs
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
