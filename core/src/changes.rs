//! The change feed: "generation X changed", published once after the transaction that
//! changed it commits, and received by every API process through one subscription
//! each (never one per client, never a database poll per client). In embedded mode it
//! is an in-process broadcast; with Redis (distributed mode) a pub/sub channel, which
//! each API process subscribes to once and fans out in memory.
//!
//! On a Redis Cluster the notices are classic pub/sub too: a message published on any
//! node is forwarded to every node, so the subscription is held on one configured node
//! (the next one after that node fails) and the publisher's cluster connection sends
//! each notice wherever it routes it.
//!
//! A notice carries the generation's id only: a listener reads the row itself, so a
//! notice that arrives late or twice is harmless, and one that is lost (a Redis
//! connection that dropped) is covered by `Notice::Resync`, which tells listeners to
//! read every row they watch again.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::errors::error_chain;
use crate::queue::{RedisConnection, RedisTarget};

/// What a listener is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The generation with this id changed (state, progress or cost).
    Changed(String),
    /// Notices may have been missed: read everything watched again.
    Resync,
}

/// How many notices a slow listener may fall behind before it is told to resync.
const BACKLOG: usize = 4096;
/// How long a dropped Redis subscription waits before subscribing again.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);
/// How long a notice's publication may take before it is given up (and logged).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ChangeFeedError {
    #[error("cannot connect to Redis for the change feed")]
    Redis(#[from] redis::RedisError),
}

/// Publishes and receives change notices. Cheap to clone.
#[derive(Clone)]
pub struct ChangeFeed {
    local: broadcast::Sender<Notice>,
    redis: Option<RedisFeed>,
}

#[derive(Clone)]
struct RedisFeed {
    /// Where the subscription may be held: the server, or each configured node of a
    /// cluster, tried in turn.
    subscribers: Vec<redis::Client>,
    publisher: RedisConnection,
    channel: String,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let channel = self.redis.as_ref().map(|r| r.channel.as_str());
        f.debug_struct("ChangeFeed").field("redis_channel", &channel).finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// The in-process feed (embedded mode: the API and the workers share the process).
    pub fn in_process() -> ChangeFeed {
        ChangeFeed { local: broadcast::channel(BACKLOG).0, redis: None }
    }

    /// A feed over Redis pub/sub on `{prefix}:changes`, on one server or a cluster.
    pub async fn redis(target: &RedisTarget, prefix: &str) -> Result<ChangeFeed, ChangeFeedError> {
        let subscribers = target.pubsub_clients()?;
        let publisher = target.connect(PUBLISH_TIMEOUT).await?;
        let channel = format!("{prefix}:changes");
        let feed = RedisFeed { subscribers, publisher, channel };
        Ok(ChangeFeed { local: broadcast::channel(BACKLOG).0, redis: Some(feed) })
    }

    /// Announces that `generation_id` changed. Called after the change committed; a
    /// failure is logged, never returned: the change itself is safe in the database
    /// and pollers see it, and a listener that lost notices resyncs.
    pub async fn publish(&self, generation_id: &str) {
        match &self.redis {
            None => {
                // No receiver (no stream open) is not an error.
                let _ = self.local.send(Notice::Changed(generation_id.to_owned()));
            }
            Some(feed) => {
                let mut connection = feed.publisher.clone();
                let sent: Result<i64, _> =
                    redis::cmd("PUBLISH").arg(&feed.channel).arg(generation_id).query_async(&mut connection).await;
                if let Err(error) = sent {
                    tracing::warn!(generation.id = %generation_id, error = %error_chain(&error), "could not publish a change");
                }
            }
        }
    }

    /// The notices of this process's feed. With Redis, `listen` must be running.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.local.subscribe()
    }

    /// With Redis: holds this process's one subscription until `shutdown`, passing
    /// every notice to the in-process receivers, and subscribing again (with a
    /// `Resync`) whenever the connection drops. Without Redis there is nothing to do.
    pub async fn listen(&self, shutdown: CancellationToken) {
        let Some(feed) = &self.redis else { return };
        // Each failure moves on to the next node (a cluster's), so a node that is down
        // does not hold the feed up.
        let mut nodes = feed.subscribers.iter().cycle();
        while !shutdown.is_cancelled() {
            let Some(client) = nodes.next() else { return };
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&feed.channel).await {
                    Ok(()) => {
                        // Whatever was published before this subscription (at start, or
                        // while the connection was down) was missed: listeners reread.
                        let _ = self.local.send(Notice::Resync);
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                () = shutdown.cancelled() => return,
                                message = messages.next() => match message {
                                    Some(message) => {
                                        if let Ok(id) = message.get_payload::<String>() {
                                            let _ = self.local.send(Notice::Changed(id));
                                        }
                                    }
                                    None => break,
                                },
                            }
                        }
                        tracing::warn!("the change feed's subscription ended; subscribing again");
                    }
                    Err(error) => tracing::warn!(error = %error_chain(&error), "cannot subscribe to the change feed"),
                },
                Err(error) => tracing::warn!(error = %error_chain(&error), "cannot connect for the change feed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
            }
        }
    }
}
