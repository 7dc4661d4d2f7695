//! `HTTP_*`, `SSE_HEARTBEAT` and `SHUTDOWN_TIMEOUT`: how long the API waits for slow clients, how many
//! connections it holds at once, and how long a stopping API waits for them.

use std::time::Duration;

use super::Reader;

/// Limits on the API's connections.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// A request's headers must arrive within this (`HTTP_HEADER_TIMEOUT`); it is also
    /// how long an idle keep-alive connection waits for the next request.
    pub header_timeout: Duration,
    /// A request's whole body must arrive within this (`HTTP_BODY_TIMEOUT`), else 408.
    pub body_timeout: Duration,
    /// Connections held at once (`HTTP_MAX_CONNECTIONS`); more wait in the listen queue.
    pub max_connections: usize,
    /// How long a stopping API lets open requests finish before it closes every
    /// connection (`SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
    /// The comment an event stream sends while nothing changes, so proxies and clients
    /// keep it open (`SSE_HEARTBEAT`).
    pub sse_heartbeat: Duration,
}

pub(super) fn read_http(r: &mut Reader<'_>) -> HttpLimits {
    let limits = HttpLimits {
        header_timeout: r.duration("HTTP_HEADER_TIMEOUT", Duration::from_secs(10)),
        body_timeout: r.duration("HTTP_BODY_TIMEOUT", Duration::from_secs(60)),
        max_connections: r.parsed("HTTP_MAX_CONNECTIONS", 4096, "a number of connections"),
        shutdown_timeout: r.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(30)),
        sse_heartbeat: r.duration("SSE_HEARTBEAT", Duration::from_secs(15)),
    };
    if limits.max_connections == 0 {
        r.problem("HTTP_MAX_CONNECTIONS", "must be at least 1");
    }
    if limits.sse_heartbeat.is_zero() {
        r.problem("SSE_HEARTBEAT", "must be longer than 0");
    }
    limits
}

/// How long a signed-in browser stays signed in.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// A session unused this long ends (`SESSION_IDLE_TIMEOUT`).
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, used or not (`SESSION_MAX_AGE`).
    pub max_age: Duration,
}

pub(super) fn read_sessions(r: &mut Reader<'_>) -> SessionConfig {
    let sessions = SessionConfig {
        idle_timeout: r.duration("SESSION_IDLE_TIMEOUT", Duration::from_secs(7 * 86_400)),
        max_age: r.duration("SESSION_MAX_AGE", Duration::from_secs(30 * 86_400)),
    };
    if sessions.idle_timeout > sessions.max_age {
        r.problem("SESSION_IDLE_TIMEOUT", "must not be longer than SESSION_MAX_AGE");
    }
    if sessions.idle_timeout < Duration::from_secs(60) {
        r.problem("SESSION_IDLE_TIMEOUT", "must be at least 1m (use is recorded once a minute)");
    }
    sessions
}
