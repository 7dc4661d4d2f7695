//! A circuit breaker per provider: after `threshold` consecutive failed calls it opens
//! and every call fails fast for `cooldown`; then one call is let through (half-open):
//! its success closes the breaker, its failure opens it for another cooldown.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// When the one call of the half-open state was let through; a probe that never
    /// reports (its future was dropped) frees the slot after a cooldown.
    probe_since: Option<Instant>,
}

impl Breaker {
    pub(super) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker { threshold: threshold.max(1), cooldown, state: Mutex::new(State::default()) }
    }

    /// `Ok` when a call may go out; otherwise how long the breaker stays open.
    pub(super) fn allow(&self) -> Result<(), Duration> {
        self.allow_at(Instant::now())
    }

    /// Records the outcome of a call that went out. `healthy` means the provider
    /// answered as a working service does (any 2xx, or a 4xx about the request).
    pub(super) fn record(&self, healthy: bool) {
        self.record_at(healthy, Instant::now());
    }

    /// `allow` at a given time (the tests move the clock instead of waiting).
    fn allow_at(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(open_until) = state.open_until else { return Ok(()) };
        if now < open_until {
            return Err(open_until - now);
        }
        match state.probe_since {
            Some(since) if now < since + self.cooldown => Err(since + self.cooldown - now),
            _ => {
                state.probe_since = Some(now);
                Ok(())
            }
        }
    }

    fn record_at(&self, healthy: bool, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if healthy {
            if state.open_until.is_some() {
                tracing::info!("model provider answers again; circuit breaker closed");
            }
            *state = State::default();
            return;
        }
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let half_open = state.open_until.is_some();
        if half_open || state.consecutive_failures >= self.threshold {
            if !half_open {
                tracing::error!(
                    failures = state.consecutive_failures,
                    cooldown_ms = self.cooldown.as_millis() as u64,
                    "model provider keeps failing; circuit breaker open"
                );
            }
            state.open_until = Some(now + self.cooldown);
            state.probe_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_then_lets_one_probe_through() {
        // A clock the test moves: past the 40 ms cooldown without waiting for it.
        let mut now = Instant::now();
        let breaker = Breaker::new(3, Duration::from_millis(40));
        for _ in 0..2 {
            breaker.record_at(false, now);
            assert!(breaker.allow_at(now).is_ok());
        }
        breaker.record_at(true, now);
        for _ in 0..2 {
            breaker.record_at(false, now);
        }
        assert!(breaker.allow_at(now).is_ok(), "a success reset the count");
        breaker.record_at(false, now);
        assert!(breaker.allow_at(now).is_err(), "three in a row open it");

        now += Duration::from_millis(50);
        assert!(breaker.allow_at(now).is_ok(), "the probe");
        assert!(breaker.allow_at(now).is_err(), "only one probe at a time");
        breaker.record_at(false, now);
        assert!(breaker.allow_at(now).is_err(), "a failed probe opens it again");

        now += Duration::from_millis(50);
        assert!(breaker.allow_at(now).is_ok());
        breaker.record_at(true, now);
        assert!(breaker.allow_at(now).is_ok() && breaker.allow_at(now).is_ok(), "a good probe closes it");
    }
}
