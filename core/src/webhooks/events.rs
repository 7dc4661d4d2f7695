//! Which events a generation's change makes: a pure decision from its row and how far
//! its events were already announced, so announcing twice (two processes, a retry, the
//! scheduler's catch-up) never makes an event twice.

use crate::domain::{EventType, GenerationStatus};
use crate::time::Millis;

/// Progress events of one generation are at least this far apart.
pub const PROGRESS_INTERVAL_MS: Millis = 500;

/// How far a generation's events have been announced (`generations.webhook_stage`).
pub const STAGE_NONE: i64 = 0;
pub const STAGE_STARTED: i64 = 1;
pub const STAGE_ENDED: i64 = 2;

/// The announcement marks of a generation, before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marks {
    pub stage: i64,
    /// When its last progress event was made (ms), 0 for never.
    pub progress_at: Millis,
}

/// What announcing the generation now does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub events: Vec<EventType>,
    pub marks: Marks,
}

/// The stage a status has reached.
pub fn stage_of(status: GenerationStatus) -> i64 {
    match status {
        GenerationStatus::Queued => STAGE_NONE,
        GenerationStatus::Starting | GenerationStatus::Processing => STAGE_STARTED,
        GenerationStatus::Succeeded | GenerationStatus::Failed | GenerationStatus::Canceled => STAGE_ENDED,
    }
}

fn terminal_event(status: GenerationStatus) -> Option<EventType> {
    match status {
        GenerationStatus::Succeeded => Some(EventType::GenerationSucceeded),
        GenerationStatus::Failed => Some(EventType::GenerationFailed),
        GenerationStatus::Canceled => Some(EventType::GenerationCanceled),
        _ => None,
    }
}

/// The events owed for a generation in `status` (`started` says whether it ever ran)
/// given what was announced (`marks`), or `None` when nothing changes. A progress event
/// is made only while it processes, and only `PROGRESS_INTERVAL_MS` after the last.
pub fn plan(status: GenerationStatus, started: bool, marks: Marks, now: Millis) -> Option<Plan> {
    let stage = stage_of(status);
    let mut events = Vec::new();
    let mut next = marks;
    if marks.stage < STAGE_STARTED && stage >= STAGE_STARTED && started {
        events.push(EventType::GenerationStarted);
    }
    if marks.stage < STAGE_ENDED
        && let Some(end) = terminal_event(status)
    {
        events.push(end);
    }
    if status == GenerationStatus::Processing && now - marks.progress_at >= PROGRESS_INTERVAL_MS {
        events.push(EventType::GenerationProgress);
        next.progress_at = now;
    }
    next.stage = marks.stage.max(stage);
    (next != marks).then_some(Plan { events, marks: next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventType::*;
    use GenerationStatus::*;

    const NONE: Marks = Marks { stage: STAGE_NONE, progress_at: 0 };

    fn events(status: GenerationStatus, started: bool, marks: Marks, now: Millis) -> Vec<EventType> {
        plan(status, started, marks, now).map(|p| p.events).unwrap_or_default()
    }

    #[test]
    fn a_run_is_announced_once_in_order() {
        let start = plan(Starting, true, NONE, 1_000).expect("started");
        assert_eq!(start.events, [GenerationStarted]);
        // Announcing the same state again makes nothing.
        assert_eq!(plan(Starting, true, start.marks, 1_001), None);
        let progress = plan(Processing, true, start.marks, 1_100).expect("progress");
        assert_eq!(progress.events, [GenerationProgress]);
        // Within 500 ms of the last progress event: nothing; after: one more.
        assert_eq!(plan(Processing, true, progress.marks, 1_599), None);
        assert_eq!(events(Processing, true, progress.marks, 1_600), [GenerationProgress]);
        let end = plan(Succeeded, true, progress.marks, 1_700).expect("end");
        assert_eq!(end.events, [GenerationSucceeded]);
        assert_eq!(plan(Succeeded, true, end.marks, 9_999), None);
    }

    #[test]
    fn a_missed_start_is_made_before_the_end() {
        assert_eq!(events(Failed, true, NONE, 5), [GenerationStarted, GenerationFailed]);
        // Canceled before it ever ran: no start.
        assert_eq!(events(Canceled, false, NONE, 5), [GenerationCanceled]);
        // A queued generation has nothing to announce.
        assert_eq!(plan(Queued, false, NONE, 5), None);
    }
}
