//! Rate limits: at most `limit` requests per `period` for one key (a user, a client
//! address), with bursts up to `limit`. The algorithm is GCRA (the generic cell rate
//! algorithm): one number per key, the theoretical arrival time of the next request, so
//! a check is one read and one write. In embedded mode the numbers live in this process;
//! in distributed mode in Redis, read and written by one script (one key, so it runs
//! unchanged on a Redis Cluster), with Redis's clock, so every API process shares them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One limit: `limit` requests per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub period: Duration,
}

impl Rate {
    /// `N/DURATION` (`60/1m`, `1000/1h`); `off` is no limit.
    pub fn parse(text: &str) -> Result<Option<Rate>, String> {
        if text.trim() == "off" {
            return Ok(None);
        }
        let (limit, period) = text.split_once('/').ok_or("expected N/DURATION such as 60/1m, or off")?;
        let limit: u32 = limit.trim().parse().map_err(|_| format!("{limit:?} is not a number of requests"))?;
        let period = crate::config::parse_duration(period.trim()).ok_or(format!("{period:?} is not a duration"))?;
        if limit == 0 || period.is_zero() {
            return Err("both the number and the duration must be above 0 (or say off)".to_owned());
        }
        Ok(Some(Rate { limit, period }))
    }

    /// The time one request uses up.
    fn interval_ms(&self) -> u64 {
        (self.period.as_millis() as u64 / u64::from(self.limit)).max(1)
    }
}

/// What a check says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests left in the window after this one.
    pub remaining: u32,
    /// When a refused request may be sent again; zero when allowed.
    pub retry_after: Duration,
    /// When the whole allowance is back.
    pub reset: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("the rate limit store failed")]
pub struct RateLimitError(#[from] redis::RedisError);

/// The store of every limit of this deployment.
#[derive(Clone)]
pub enum RateLimiter {
    Local(std::sync::Arc<LocalStore>),
    Redis { connection: crate::queue::RedisConnection, prefix: String },
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RateLimiter::Local(_) => "RateLimiter::Local",
            RateLimiter::Redis { .. } => "RateLimiter::Redis",
        })
    }
}

/// GCRA in Redis: KEYS[1] holds the theoretical arrival time (ms, Redis's clock);
/// ARGV: interval ms, period ms. Returns {allowed, remaining, retry_after_ms, reset_ms}.
const GCRA_SCRIPT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, math.floor((period - (new_tat - now)) / interval), 0, new_tat - now}
";

impl RateLimiter {
    pub fn local() -> RateLimiter {
        RateLimiter::Local(std::sync::Arc::new(LocalStore::default()))
    }

    /// On one server or a cluster (the script touches one key, so any node can run it).
    /// A check waits at most a second: past that the request is let through.
    pub async fn redis(target: &crate::queue::RedisTarget, prefix: &str) -> Result<RateLimiter, RateLimitError> {
        let connection = target.connect(Duration::from_secs(1)).await?;
        Ok(RateLimiter::Redis { connection, prefix: format!("{prefix}:ratelimit:") })
    }

    /// Counts one request of `key` (e.g. `generations:usr_…`) against `rate`.
    pub async fn check(&self, key: &str, rate: Rate) -> Result<Decision, RateLimitError> {
        let interval = rate.interval_ms();
        let period = rate.period.as_millis() as u64;
        match self {
            RateLimiter::Local(store) => Ok(store.check(key, interval, period, Instant::now())),
            RateLimiter::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let (allowed, remaining, retry_after, reset): (i64, i64, i64, i64) = redis::Script::new(GCRA_SCRIPT)
                    .key(format!("{prefix}{key}"))
                    .arg(interval)
                    .arg(period)
                    .invoke_async(&mut connection)
                    .await?;
                Ok(Decision {
                    allowed: allowed == 1,
                    remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
                    retry_after: Duration::from_millis(retry_after.max(0) as u64),
                    reset: Duration::from_millis(reset.max(0) as u64),
                })
            }
        }
    }
}

/// The limits of one process (embedded mode).
#[derive(Default)]
pub struct LocalStore {
    arrivals: Mutex<Arrivals>,
}

#[derive(Default)]
struct Arrivals {
    at: HashMap<String, Instant>,
    /// The size past which the next prune runs: twice what the last one left, so a
    /// flood of new keys costs each check a constant amount on average.
    prune_above: usize,
}

/// Past this many keys, the ones whose allowance is whole again are forgotten.
const LOCAL_KEYS_BEFORE_PRUNE: usize = 10_000;

impl LocalStore {
    fn check(&self, key: &str, interval_ms: u64, period_ms: u64, now: Instant) -> Decision {
        let interval = Duration::from_millis(interval_ms);
        let period = Duration::from_millis(period_ms);
        let mut guard = self.arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let arrivals = &mut *guard;
        if arrivals.at.len() > arrivals.prune_above.max(LOCAL_KEYS_BEFORE_PRUNE) {
            arrivals.at.retain(|_, tat| *tat > now);
            arrivals.prune_above = arrivals.at.len() * 2;
        }
        let arrivals = &mut arrivals.at;
        let tat = arrivals.get(key).copied().filter(|tat| *tat > now).unwrap_or(now);
        let new_tat = tat + interval;
        let allow_at = new_tat.checked_sub(period).unwrap_or(now);
        if now < allow_at {
            return Decision { allowed: false, remaining: 0, retry_after: allow_at - now, reset: tat - now };
        }
        arrivals.insert(key.to_owned(), new_tat);
        let used = new_tat - now;
        let remaining = (period.saturating_sub(used).as_millis() / interval.as_millis().max(1)) as u32;
        Decision { allowed: true, remaining, retry_after: Duration::ZERO, reset: used }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_limit_passes_then_one_per_interval() {
        let store = LocalStore::default();
        let start = Instant::now();
        // 3 per 3 s: three at once, the fourth refused for 1 s.
        let decisions: Vec<_> = (0..4).map(|_| store.check("k", 1_000, 3_000, start)).collect();
        assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 3);
        assert_eq!(decisions[0].remaining, 2);
        assert_eq!(decisions[2].remaining, 0);
        assert!(!decisions[3].allowed);
        assert_eq!(decisions[3].retry_after, Duration::from_secs(1));
        assert!(store.check("k", 1_000, 3_000, start + Duration::from_millis(999)).allowed.eq(&false));
        assert!(store.check("k", 1_000, 3_000, start + Duration::from_secs(1)).allowed);
        // Another key has its own allowance.
        assert!(store.check("other", 1_000, 3_000, start).allowed);
    }

    #[test]
    fn rates_parse_and_refuse_nonsense() {
        assert_eq!(Rate::parse("60/1m"), Ok(Some(Rate { limit: 60, period: Duration::from_secs(60) })));
        assert_eq!(Rate::parse("off"), Ok(None));
        assert!(Rate::parse("0/1m").is_err());
        assert!(Rate::parse("60").is_err());
        assert!(Rate::parse("x/1m").is_err());
    }
}
