//! The Cog servers of a process: each one's health, its prediction slots (a Cog
//! container runs one prediction at a time unless started with `COG_MAX_CONCURRENCY`,
//! which it does not report over HTTP, so the operator says it in the URL's
//! `#concurrency=N`), and what it has done, for the log line of each prediction.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::protocol::Health;
use petportrait_core::config::CogServer;

/// How long a server that answered 409 (every slot taken, by another process) is
/// passed over before it is tried again.
const AT_CAPACITY_PAUSE: Duration = Duration::from_millis(250);
/// The prediction times kept per server for its percentiles.
const TIMES_KEPT: usize = 256;

/// One Cog server.
#[derive(Debug)]
pub(super) struct Server {
    /// Base URL without a trailing slash.
    pub url: String,
    pub slots: usize,
    state: Mutex<ServerState>,
}

#[derive(Debug)]
struct ServerState {
    health: Health,
    in_flight: usize,
    paused_until: Option<Instant>,
    /// Whether its `/openapi.json` was read (or found absent).
    schema_checked: bool,
    succeeded: u64,
    failed: u64,
    /// Milliseconds of the latest predictions, oldest first.
    times: VecDeque<u64>,
}

impl Server {
    pub fn new(configured: &CogServer) -> Server {
        Server {
            url: configured.url.clone(),
            slots: configured.slots.max(1),
            state: Mutex::new(ServerState {
                health: Health::Unknown,
                in_flight: 0,
                paused_until: None,
                schema_checked: false,
                succeeded: 0,
                failed: 0,
                times: VecDeque::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn health(&self) -> Health {
        self.state().health.clone()
    }

    /// Records a health check's answer; returns the previous state when it changed.
    pub fn set_health(&self, health: Health) -> Option<Health> {
        let mut state = self.state();
        // A server found misconfigured stays so: its schema does not change while it runs.
        if matches!(state.health, Health::Misconfigured(_)) || state.health == health {
            return None;
        }
        Some(std::mem::replace(&mut state.health, health))
    }

    pub fn schema_checked(&self) -> bool {
        self.state().schema_checked
    }

    pub fn mark_schema_checked(&self) {
        self.state().schema_checked = true;
    }

    fn publish_in_flight(&self, in_flight: usize) {
        let labels = [("provider", "cog".to_owned()), ("server", self.url.clone())];
        metrics::gauge!(petportrait_core::metrics::PREDICTIONS_IN_FLIGHT, &labels).set(in_flight as f64);
    }

    /// After a 409: someone else holds its slots for now.
    pub fn pause(&self) {
        self.state().paused_until = Some(Instant::now() + AT_CAPACITY_PAUSE);
    }

    /// Counts a finished prediction (its lease still held); returns the figures for its
    /// log line, `in_flight` being the others still running.
    pub fn record(&self, succeeded: bool, took: Duration) -> ServerFigures {
        let mut state = self.state();
        if succeeded {
            state.succeeded += 1;
        } else {
            state.failed += 1;
        }
        if state.times.len() == TIMES_KEPT {
            state.times.pop_front();
        }
        state.times.push_back(took.as_millis() as u64);
        let mut sorted: Vec<u64> = state.times.iter().copied().collect();
        sorted.sort_unstable();
        let percentile = |p: usize| sorted[(sorted.len() * p / 100).min(sorted.len() - 1)];
        ServerFigures {
            in_flight: state.in_flight.saturating_sub(1),
            succeeded: state.succeeded,
            failed: state.failed,
            p50_ms: percentile(50),
            p95_ms: percentile(95),
        }
    }
}

/// A server's counts and prediction-time percentiles in this process.
#[derive(Debug)]
pub(super) struct ServerFigures {
    pub in_flight: usize,
    pub succeeded: u64,
    pub failed: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
}

/// Every server of the process, and a wake-up for renders waiting for a slot.
#[derive(Debug)]
pub(super) struct Pool {
    pub servers: Vec<Arc<Server>>,
    freed: Notify,
    /// Held while a render chooses, so two renders never take one server's last slot.
    choosing: Mutex<()>,
}

/// What choosing a server found.
pub(super) enum Choice {
    Leased(Lease),
    /// Some server may take it soon: wait for a slot.
    Wait,
    /// None of the route's servers accepts predictions now.
    NoneUsable(String),
}

impl Pool {
    pub fn new(servers: Vec<Arc<Server>>) -> Pool {
        Pool { servers, freed: Notify::new(), choosing: Mutex::new(()) }
    }

    pub fn server(&self, url: &str) -> Option<&Arc<Server>> {
        self.servers.iter().find(|s| s.url == url)
    }

    /// The least loaded server of `urls` with a free slot, leased. `avoid` are servers
    /// this render already lost a prediction on.
    pub fn choose(self: &Arc<Self>, urls: &[String], avoid: &[String]) -> Choice {
        // Leases only ever end outside this lock, which frees slots: never a problem.
        let _choosing = self.choosing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let mut best: Option<(&Arc<Server>, f64)> = None;
        let mut any_usable = false;
        let mut states = Vec::new();
        for server in urls.iter().filter(|u| !avoid.contains(u)).filter_map(|u| self.server(u)) {
            let state = server.state();
            states.push(format!("{} {}", server.url, state.health.describe()));
            if !state.health.accepts_predictions() {
                continue;
            }
            any_usable = true;
            let paused = state.paused_until.is_some_and(|until| until > now);
            if paused || state.in_flight >= server.slots {
                continue;
            }
            let load = state.in_flight as f64 / server.slots as f64;
            if best.is_none_or(|(_, best_load)| load < best_load) {
                best = Some((server, load));
            }
        }
        match best {
            Some((server, _)) => {
                let mut state = server.state();
                state.in_flight += 1;
                server.publish_in_flight(state.in_flight);
                drop(state);
                Choice::Leased(Lease { server: server.clone(), pool: self.clone() })
            }
            None if any_usable => Choice::Wait,
            None => Choice::NoneUsable(states.join(", ")),
        }
    }

    /// Resolves when a slot may have been freed (a lease ended); `enable` it before
    /// looking for a slot, so a slot freed in between is not missed.
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }
}

/// A slot on one server, given back when dropped.
pub(super) struct Lease {
    pub server: Arc<Server>,
    pool: Arc<Pool>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.server.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        self.server.publish_in_flight(state.in_flight);
        drop(state);
        self.pool.freed.notify_waiters();
    }
}
