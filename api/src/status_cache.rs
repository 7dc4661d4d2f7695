//! The fast path of `GET /v1/generations/{id}`, the route pollers hit most: who a
//! credential belongs to (kept 2 s), and each generation's answer (its `ETag`, and its
//! body once it has left the queue; kept 5 s), in this process.
//!
//! Correctness rests on the change feed, as the event streams' does: every committed
//! change of a generation is published, and this process's one reader of the feed
//! (`live.rs`) forgets that generation at once (everything on a resync). An answer read
//! from the database is kept only if nothing was forgotten while it was read (an epoch
//! counter), so a change racing the read never leaves a stale entry. The lifetimes bound
//! what a lost notice could cost (a dropped Redis connection forgets everything
//! anyway), an output purged at its expiry, and a credential revoked in another API
//! process (this process forgets its own revocations at once). A queued generation's
//! body is never kept: its position moves without a change of its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderValue;

/// How long a credential's user is kept: a credential revoked through another API
/// process still reads statuses here this long (this process forgets its own at once).
const CALLER_LIFETIME: Duration = Duration::from_secs(2);
/// How long a generation's answer is kept: longer than the one-second polling hint, so
/// a poller's next request finds it; the feed forgets it as soon as it changes.
const GENERATION_LIFETIME: Duration = Duration::from_secs(5);
/// Entries per map before it is emptied (a bound on memory, not an eviction policy:
/// every entry is seconds from expiry anyway).
const MAX_ENTRIES: usize = 100_000;

/// A generation's answer as last read.
#[derive(Clone, Debug)]
pub struct CachedGeneration {
    pub user_id: String,
    pub etag: HeaderValue,
    pub terminal: bool,
    /// The 200 body; `None` while queued (its position moves without a change).
    pub body: Option<Bytes>,
}

#[derive(Debug, Default)]
pub struct StatusCache {
    /// Credential hash → user id.
    callers: Mutex<HashMap<String, (String, Instant)>>,
    generations: Mutex<HashMap<String, (CachedGeneration, Instant)>>,
    /// Incremented by every forgetting; a read that saw it move keeps nothing.
    epoch: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn keep<V>(map: &mut HashMap<String, (V, Instant)>, key: String, value: V, lifetime: Duration) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, (value, Instant::now() + lifetime));
}

fn fresh<V: Clone>(map: &HashMap<String, (V, Instant)>, key: &str) -> Option<V> {
    map.get(key).filter(|(_, until)| *until > Instant::now()).map(|(value, _)| value.clone())
}

impl StatusCache {
    /// Taken before a database read whose result may be kept.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn caller(&self, credential: &str) -> Option<String> {
        fresh(&lock(&self.callers), credential)
    }

    pub fn keep_caller(&self, credential: String, user_id: String, epoch: u64) {
        let mut callers = lock(&self.callers);
        if self.epoch() == epoch {
            keep(&mut callers, credential, user_id, CALLER_LIFETIME);
        }
    }

    pub fn generation(&self, id: &str) -> Option<CachedGeneration> {
        fresh(&lock(&self.generations), id)
    }

    pub fn keep_generation(&self, id: String, answer: CachedGeneration, epoch: u64) {
        let mut generations = lock(&self.generations);
        if self.epoch() == epoch {
            keep(&mut generations, id, answer, GENERATION_LIFETIME);
        }
    }

    /// A change of `generation` committed.
    pub fn forget_generation(&self, generation: &str) {
        let mut generations = lock(&self.generations);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        generations.remove(generation);
    }

    /// Notices may have been lost, or a credential was revoked: forget everything.
    pub fn forget_all(&self) {
        let (mut callers, mut generations) = (lock(&self.callers), lock(&self.generations));
        self.epoch.fetch_add(1, Ordering::AcqRel);
        callers.clear();
        generations.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> CachedGeneration {
        CachedGeneration {
            user_id: "usr_1".into(),
            etag: HeaderValue::from_static("\"g.1\""),
            terminal: false,
            body: None,
        }
    }

    #[test]
    fn a_read_racing_a_change_keeps_nothing() {
        let cache = StatusCache::default();
        let before = cache.epoch();
        cache.forget_generation("gen_1");
        cache.keep_generation("gen_1".into(), answer(), before);
        assert!(cache.generation("gen_1").is_none(), "a read older than the change was kept");
        cache.keep_generation("gen_1".into(), answer(), cache.epoch());
        assert!(cache.generation("gen_1").is_some());
        cache.forget_generation("gen_1");
        assert!(cache.generation("gen_1").is_none());
    }

    #[test]
    fn a_revocation_forgets_every_caller() {
        let cache = StatusCache::default();
        cache.keep_caller("b:hash".into(), "usr_1".into(), cache.epoch());
        assert_eq!(cache.caller("b:hash").as_deref(), Some("usr_1"));
        cache.forget_all();
        assert_eq!(cache.caller("b:hash"), None);
    }
}
