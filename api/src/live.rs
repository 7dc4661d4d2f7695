//! Live status inside one API process: the change feed is read by one task, which
//! wakes the streams watching the generation that changed. A stream registers before
//! it reads its row, so a change committed after the read always wakes it; a feed that
//! may have lost notices (`Resync`, or this task falling behind) wakes every stream, and
//! each reads its row again. The same reader keeps the status route's cache true
//! (`status_cache.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use petportrait_core::changes::{ChangeFeed, Notice};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::status_cache::StatusCache;

/// The streams of this process, by the generation they watch.
#[derive(Debug, Default)]
pub struct Watchers {
    by_generation: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// The status route's answers, forgotten as the feed tells of changes.
    pub status: StatusCache,
    /// Cancelled when the API shuts down: every stream ends.
    pub shutdown: CancellationToken,
}

/// One stream's registration; dropping it unregisters.
pub struct Watch {
    pub changes: watch::Receiver<u64>,
    generation: String,
    watchers: Arc<Watchers>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut map = self.watchers.by_generation.lock().unwrap_or_else(|p| p.into_inner());
        // This watch's receiver is still alive here: one left means it was the last.
        if map.get(&self.generation).is_some_and(|sender| sender.receiver_count() <= 1) {
            map.remove(&self.generation);
        }
    }
}

impl Watchers {
    pub fn new(shutdown: CancellationToken) -> Watchers {
        Watchers { by_generation: Mutex::default(), status: StatusCache::default(), shutdown }
    }

    /// Registers a stream watching `generation`.
    pub fn watch(self: &Arc<Self>, generation: &str) -> Watch {
        let mut map = self.by_generation.lock().unwrap_or_else(|p| p.into_inner());
        let changes = map.entry(generation.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe();
        Watch { changes, generation: generation.to_owned(), watchers: self.clone() }
    }

    fn wake(&self, generation: &str) {
        self.status.forget_generation(generation);
        let map = self.by_generation.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = map.get(generation) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn wake_all(&self) {
        self.status.forget_all();
        let map = self.by_generation.lock().unwrap_or_else(|p| p.into_inner());
        for sender in map.values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Reads the feed until shutdown: this process's one subscription (with Redis, the
    /// feed's listener runs beside it).
    pub async fn run(self: Arc<Self>, feed: ChangeFeed) {
        let mut notices = feed.subscribe();
        let listener = {
            let (feed, shutdown) = (feed.clone(), self.shutdown.clone());
            tokio::spawn(async move { feed.listen(shutdown).await })
        };
        loop {
            let notice = tokio::select! {
                () = self.shutdown.cancelled() => break,
                notice = notices.recv() => notice,
            };
            match notice {
                Ok(Notice::Changed(generation)) => self.wake(&generation),
                Ok(Notice::Resync) => self.wake_all(),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "live status fell behind the change feed; every stream rereads");
                    self.wake_all();
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        listener.abort();
    }
}
