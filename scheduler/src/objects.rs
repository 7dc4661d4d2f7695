//! The object walk: the bucket against `stored_objects`, one page of keys per tick.
//!
//! Every object is recorded before its bytes are written and the purge deletes bytes
//! before it marks the row, so the two agree unless something went behind our back: a
//! row deleted with its account (an account's deletion removes rows; the bytes follow
//! here), bytes lost or deleted by hand, a crash between the steps of a write. The walk
//! lists the bucket in key order, resuming after the last key it handled (persisted in
//! `maintenance_cursors`, so a restart or another scheduler goes on from there), and
//! starts over after the last page. On each page it
//!
//! - deletes objects no row owns (no row with that key, or a `deleted` one) whose bytes
//!   are older than `ORPHAN_GRACE_MS`: a fresh object without a row can only be a write
//!   in flight as seen across clocks that disagree;
//! - marks `deleted` the active rows older than the grace whose key falls in the page's
//!   key range but was not listed: their bytes are gone, and downloads answer 410 as for
//!   a purged object.
//!
//! The bucket must hold PetPortrait's objects only: anything else in it is an orphan.

use petportrait_core::services::Services;
use petportrait_core::time::Millis;

use crate::SchedulerError;

/// The walk's row in `maintenance_cursors`.
pub const OBJECT_WALK: &str = "object_walk";
/// Objects younger than this are never orphans, and rows younger than this are never
/// missing: writes in flight and clocks that disagree get a day.
pub const ORPHAN_GRACE_MS: Millis = 24 * 3_600_000;
/// Keys listed per page (S3's own maximum, and `DeleteObjects`').
pub const OBJECT_WALK_PAGE: i32 = 1_000;
/// Pages walked per tick: at the default `SCHEDULER_TICK` (30 s) a bucket of 2.9
/// million objects is walked once a day.
pub const OBJECT_WALK_PAGES_PER_TICK: usize = 1;

/// What the walk did in one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectWalk {
    /// Keys the store listed.
    pub keys_listed: u64,
    /// Objects no row owned, deleted from the store.
    pub orphans_deleted: u64,
    /// Rows whose object was gone, marked `deleted`.
    pub missing_marked: u64,
    /// Whether the walk reached the end of the bucket (it starts over next time).
    pub wrapped: bool,
}

/// Walks up to `pages` pages of `page_size` keys (at most 1,000), from where the walk
/// stopped last. Stops early at the end of the bucket, so one call never lists a key twice.
pub async fn walk_objects(
    services: &Services,
    now: Millis,
    page_size: i32,
    pages: usize,
) -> Result<ObjectWalk, SchedulerError> {
    let mut total = ObjectWalk::default();
    for _ in 0..pages {
        let page = walk_page(services, now, page_size.clamp(1, 1_000)).await?;
        total.keys_listed += page.keys_listed;
        total.orphans_deleted += page.orphans_deleted;
        total.missing_marked += page.missing_marked;
        total.wrapped |= page.wrapped;
        if page.wrapped {
            break;
        }
    }
    Ok(total)
}

async fn walk_page(services: &Services, now: Millis, page_size: i32) -> Result<ObjectWalk, SchedulerError> {
    let db = &services.db;
    let before = now - ORPHAN_GRACE_MS;
    let cursor = db.maintenance_cursor(OBJECT_WALK).await?;
    let (page, more) = services.store.list_page(cursor.as_deref(), page_size).await?;
    let keys: Vec<String> = page.iter().map(|o| o.key.clone()).collect();

    let owned = db.owned_object_keys(&keys).await?;
    let orphans: Vec<String> =
        page.iter().filter(|o| !owned.contains(&o.key) && o.last_modified_ms < before).map(|o| o.key.clone()).collect();
    let deleted = services.store.delete_many(&orphans).await?;
    if deleted.len() < orphans.len() {
        tracing::warn!(
            failed = orphans.len() - deleted.len(),
            "some orphan objects could not be deleted; the next walk retries"
        );
    }
    if !deleted.is_empty() {
        // Keys name users by id only; the count is what an operator needs.
        tracing::info!(objects.orphans = deleted.len(), "orphan objects deleted from the store");
    }

    // The range this page covers: after the cursor, through its last key, or to the end
    // of the bucket on the last page.
    let last = page.last().map(|o| o.key.as_str());
    let through = if more { last } else { None };
    let missing = if cursor.is_none() && page.is_empty() && db.any_active_object_before(before).await? {
        // A whole bucket gone is far likelier a wrong `S3_BUCKET` (`ensure_bucket` creates
        // an empty one) than a real loss: marking every row deleted would then lose them
        // all, and the objects of the right bucket with them a day later.
        tracing::error!(
            "the bucket is empty but the database records objects in it: nothing marked missing (is S3_BUCKET right?)"
        );
        0
    } else {
        db.mark_missing_objects(cursor.as_deref(), through, &keys, before, now).await?
    };
    if missing > 0 {
        tracing::warn!(
            objects.missing = missing,
            "tracked objects were missing from the store; their rows are marked deleted"
        );
    }

    // (A truncated page without keys, which no server should send, starts the walk
    // over rather than pinning it where it is.)
    let next = if more { last } else { None };
    db.set_maintenance_cursor(OBJECT_WALK, next, now).await?;
    Ok(ObjectWalk {
        keys_listed: keys.len() as u64,
        orphans_deleted: deleted.len() as u64,
        missing_marked: missing,
        wrapped: next.is_none(),
    })
}
