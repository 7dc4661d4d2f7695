//! Worker child processes: the benchmark starts this same binary with a hidden
//! subcommand, so producer and worker never share a runtime (and a worker can be killed
//! with SIGKILL). They talk in lines: the child writes `ready`, `progress N`,
//! `result JSON` or `error TEXT` on its stdout; the parent writes `stop` on its stdin
//! (closing stdin means the same).

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub struct Child {
    process: std::process::Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    /// The last `progress N` the child reported.
    pub progress: u64,
}

impl Child {
    pub fn spawn(subcommand: &str, flags: Vec<String>) -> anyhow::Result<Child> {
        let exe = std::env::current_exe().context("locating queue-bench")?;
        let mut process = Command::new(exe)
            .arg(subcommand)
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a worker process")?;
        let stdout = process.stdout.take().context("the child's stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        // A plain thread: the pipe is blocking, and the reader ends with the child.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = process.stdin.take();
        Ok(Child { process, stdin, lines, progress: 0 })
    }

    pub fn id(&self) -> u32 {
        self.process.id()
    }

    /// Waits for a line starting with `word` and returns the rest of it. Progress lines
    /// seen on the way are recorded; an `error` line or the child's exit is an error.
    pub async fn expect(&mut self, word: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => bail!("the worker process exited while we waited for {word:?}"),
                Err(_) => bail!("no {word:?} from the worker process within {timeout:?}"),
            };
            let (head, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            if head == word {
                return Ok(rest.to_owned());
            }
            match head {
                "progress" => self.progress = rest.parse().unwrap_or(self.progress),
                "error" => bail!("worker process: {rest}"),
                _ => tracing::warn!(line, "unexpected line from the worker process"),
            }
        }
    }

    /// Takes in the lines already written (progress, or an error).
    pub fn poll_lines(&mut self) -> anyhow::Result<()> {
        while let Ok(line) = self.lines.try_recv() {
            let (head, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match head {
                "progress" => self.progress = rest.parse().unwrap_or(self.progress),
                "error" => bail!("worker process: {rest}"),
                _ => {}
            }
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.process.kill().context("killing the worker process")?;
        self.process.wait().context("reaping the worker process")?;
        Ok(())
    }

    /// Waits for the child to exit after [`Child::stop`], killing it after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(pid = self.id(), "the worker process did not exit in time; killing it");
        let _ = self.kill();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// The child's side: writes one protocol line to stdout.
pub fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// The child's side: a token cancelled when the parent says `stop` or goes away.
pub fn stop_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) if line.trim() == "stop" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        token.cancel();
    });
    stop
}
